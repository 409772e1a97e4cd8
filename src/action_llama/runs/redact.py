"""Keep staged secrets out of stored logs and the terminal, even when an agent prints them."""

from __future__ import annotations

from typing import Any

MASK = "[redacted]"
#: Lines of multi-line secrets (keys) shorter than this are not redacted on their own.
MIN_LINE = 16


class Redactor:
    """Replaces every occurrence of known secret values in log records."""

    def __init__(self, secrets: tuple[str, ...] | list[str]):
        needles = set()
        for secret in secrets:
            needles.add(secret)
            needles.update(
                line.strip() for line in secret.splitlines() if len(line.strip()) >= MIN_LINE
            )
        # Longest first, so a secret containing another is masked whole.
        self._needles = sorted((n for n in needles if n), key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._needles)

    def text(self, value: str) -> str:
        for needle in self._needles:
            if needle in value:
                value = value.replace(needle, MASK)
        return value

    def record(self, record: dict[str, Any]) -> dict[str, Any]:
        return {key: self._any(value) for key, value in record.items()}

    def _any(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._any(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._any(v) for v in value]
        return value
