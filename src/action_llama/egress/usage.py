"""Token usage read out of model answers as they pass through the broker.

Standard library only. An answer is JSON (`usage` at its top) or server-sent events, whose
usage comes in pieces: OpenAI's last chunk carries it (`stream_options.include_usage`),
Anthropic's `message_start` the input and its `message_delta` events the output so far. Each
count is the largest seen, which reads both right.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: JSON answers larger than this are not parsed for usage (a model answer is far smaller).
MAX_JSON = 16 * 1024 * 1024


@dataclass
class Usage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    #: OpenAI counts cached input inside `input`; Anthropic beside it.
    cache_in_input: bool = False

    @property
    def total(self) -> int:
        extra = 0 if self.cache_in_input else self.cache_read + self.cache_write
        return self.input + self.output + extra

    def merge(self, found: dict[str, Any]) -> None:
        """Take the counts of one `usage` object (either provider's spelling)."""

        def count(*names: str) -> int:
            for name in names:
                value = found.get(name)
                if isinstance(value, int) and value >= 0:
                    return value
            return 0

        details = found.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        if "prompt_tokens" in found:
            self.cache_in_input = True
        self.input = max(self.input, count("prompt_tokens", "input_tokens"))
        self.output = max(self.output, count("completion_tokens", "output_tokens"))
        self.cache_read = max(
            self.cache_read,
            cached if isinstance(cached, int) else count("cache_read_input_tokens"),
        )
        self.cache_write = max(self.cache_write, count("cache_creation_input_tokens"))


def _usage_in(event: Any) -> dict[str, Any] | None:
    if not isinstance(event, dict):
        return None
    found = event.get("usage")
    if not isinstance(found, dict):
        message = event.get("message")
        found = message.get("usage") if isinstance(message, dict) else None
    return found if isinstance(found, dict) else None


class Meter:
    """Fed the (de-chunked) body of one answer as it passes; `usage` at its end."""

    def __init__(self, content_type: str):
        self.events = "text/event-stream" in content_type.lower()
        self.usage = Usage()
        self._pending = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> None:
        if self._overflow:
            return
        self._pending += data
        if self.events:
            *lines, rest = bytes(self._pending).split(b"\n")
            self._pending = bytearray(rest)
            for line in lines:
                self._line(line.rstrip(b"\r"))
        elif len(self._pending) > MAX_JSON:
            self._overflow = True
            self._pending.clear()

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        try:
            found = _usage_in(json.loads(line[5:]))
        except ValueError:
            return
        if found:
            self.usage.merge(found)

    def finish(self) -> Usage:
        if self.events:
            self._line(bytes(self._pending).rstrip(b"\r"))
        elif not self._overflow:
            try:
                found = _usage_in(json.loads(bytes(self._pending)))
            except ValueError:
                found = None
            if found:
                self.usage.merge(found)
        self._pending.clear()
        return self.usage
