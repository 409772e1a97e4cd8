"""The structured log protocol: every line the entry writes is one JSON object.

    {"_log": true, "level": "info", "msg": "...", "ts": <epoch ms>, ...fields}

The host stores these per run and renders them in `al logs`; anything else on the stream
(a stray print, a crash before logging started) is kept as a plain text line.
"""

from __future__ import annotations

import json
import sys
import threading
import time

# typing.TYPE_CHECKING without importing typing: this module loads in every run's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

LEVELS = ("debug", "info", "warn", "error")


class Logger:
    """Writes protocol lines to one stream; safe to call from several threads."""

    def __init__(self, stream: TextIO | None = None):
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()

    def log(self, level: str, msg: str, **fields: Any) -> None:
        record = {"_log": True, "level": level, "msg": msg, **fields, "ts": int(time.time() * 1000)}
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def debug(self, msg: str, **fields: Any) -> None:
        self.log("debug", msg, **fields)

    def info(self, msg: str, **fields: Any) -> None:
        self.log("info", msg, **fields)

    def warn(self, msg: str, **fields: Any) -> None:
        self.log("warn", msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self.log("error", msg, **fields)
