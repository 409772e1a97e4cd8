"""Per-connection records: what the proxy did for each connection attempt of a run.

Standard library only. One JSON line per attempt in `<state>/records/<run id>.jsonl`:

    {"ts": 1732871000123, "run": "ab12cd34", "agent": "triage", "kind": "connect",
     "host": "evil.example", "port": 443, "decision": "denied", "reason": "not in the allow
     list", "fix": "add \\"evil.example\\" to allow in agents/triage/config.toml",
     "sent": 0, "received": 0, "ms": 0}

`kind` is `connect` (a CONNECT tunnel), `http` (a plain-HTTP request), `gateway` (the
scheduler's gateway), `dns` (a name lookup, always refused), `model` (a model request the
broker forwarded, with its token counts) or `limit` (the run reached its token limit).
Allowed connections are recorded when they close, with the bytes each way; denied ones when
they are refused.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from action_llama.egress.registry import RECORDS


@dataclass
class Record:
    run: str
    agent: str
    kind: str
    host: str
    port: int
    decision: str
    reason: str = ""
    #: The allow rule that let it through, with its source.
    rule: str = ""
    fix: str = ""
    #: Bytes from the run to the destination, and back.
    sent: int = 0
    received: int = 0
    ms: int = 0
    ts: int = 0
    #: Model requests (kind `model`) and the token limit (kind `limit`): which model, and
    #: the tokens the broker counted (the run's total, for `limit`).
    model: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    tokens: int | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["ts"] = self.ts or int(time.time() * 1000)
        return json.dumps(
            {k: v for k, v in data.items() if v != "" and v is not None}, ensure_ascii=False
        )


def records_path(state: Path, run_id: str) -> Path:
    return state / RECORDS / f"{run_id}.jsonl"


def append(state: Path, record: Record) -> None:
    """Add `record` to its run's file (one write of one line: appends never interleave)."""
    folder = state / RECORDS
    folder.mkdir(parents=True, exist_ok=True)
    line = (record.to_json() + "\n").encode()
    fd = os.open(records_path(state, record.run), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read(path: Path) -> Iterator[dict[str, object]]:
    """The records in `path` (a partial last line is left for later)."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.endswith("\n"):
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue
    except FileNotFoundError:
        return


class Tail:
    """New complete records of one file, each time `new()` is asked."""

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0

    def new(self) -> list[dict[str, object]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self._offset += end
        found = []
        for line in data[:end].splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found


def model_usage(state: Path, run_id: str) -> dict[str, int] | None:
    """The token usage the model broker counted for a run (keys as a run's `token-usage`
    record spells them); None when the broker forwarded nothing for it."""
    totals = {"inputTokens": 0, "outputTokens": 0, "cacheReadTokens": 0, "cacheWriteTokens": 0}
    fields = {
        "input_tokens": "inputTokens",
        "output_tokens": "outputTokens",
        "cache_read_tokens": "cacheReadTokens",
        "cache_write_tokens": "cacheWriteTokens",
    }
    requests = 0
    for record in read(records_path(state, run_id)):
        if record.get("kind") != "model":
            continue
        requests += 1
        for name, key in fields.items():
            value = record.get(name)
            if isinstance(value, int):
                totals[key] += value
    if not requests:
        return None
    return {**totals, "turnCount": requests}
