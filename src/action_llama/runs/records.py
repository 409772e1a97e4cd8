"""Turn raw output lines of a run into stored log records, and records into text."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

#: Keys of a record shown in its own columns rather than as trailing key=value fields.
_BUILTIN = ("ts", "level", "msg", "stream", "source")


def parse_line(line: str) -> dict[str, Any]:
    """A stored record for one raw output line: protocol lines keep their fields."""
    line = line.rstrip("\r")
    if line.startswith("{"):
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("_log"):
            data.pop("_log")
            data.setdefault("level", "info")
            data.setdefault("msg", "")
            data.setdefault("ts", int(time.time() * 1000))
            return data
    return {"ts": int(time.time() * 1000), "level": "info", "msg": line, "raw": True}


def _clock(ts: Any) -> str:
    """`HH:MM:SS` of a record's millisecond timestamp ("" for one that is not a time: runs
    write their own records, and any number can come out of them)."""
    if not isinstance(ts, int) or isinstance(ts, bool):
        return ""
    try:
        return datetime.fromtimestamp(ts / 1000).strftime("%H:%M:%S")
    except (ValueError, OverflowError, OSError):
        return ""


def format_record(record: dict[str, Any], *, color: bool = False) -> str:
    """One human line: `11:04:05 info  message key=value`."""
    clock = _clock(record.get("ts"))
    level = str(record.get("level", "info"))
    msg = str(record.get("msg", ""))
    extras = {k: v for k, v in record.items() if k not in _BUILTIN and k != "raw"}
    if record.get("source") in ("script", "hooks.pre", "hooks.post"):
        # Output of the agent's own commands: show it as it was printed.
        text = msg
    else:
        fields = " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in extras.items())
        text = f"{msg} {fields}".rstrip()
    if color:
        style = {"error": "31", "warn": "33", "debug": "2"}.get(level)
        level_text = f"\x1b[{style}m{level:<5}\x1b[0m" if style else f"{level:<5}"
    else:
        level_text = f"{level:<5}"
    return f"{clock} {level_text} {text}"
