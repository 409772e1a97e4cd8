"""Reading a run's stored log by byte offset, a bounded piece at a time.

A run's log (`.al/logs/<agent>/<run id>.jsonl`) only grows, one JSON record per line. A
position in it is the byte offset just after a whole line, so a reader that was sent every
line up to offset N resumes exactly at N: no line is lost or sent twice. Nothing here reads a
whole log into memory; every function blocks (file reads), so callers on the event loop run
them in a worker thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The most a `read_from` returns at once (a chunk of a long log).
CHUNK_BYTES = 64 * 1024
_BACK_STEP = 64 * 1024


@dataclass(frozen=True)
class Piece:
    """Records read from a log: they end at byte `end` (where the next read starts)."""

    records: list[dict[str, Any]]
    start: int
    end: int


def _records(data: bytes) -> list[dict[str, Any]]:
    records = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = {"level": "info", "msg": line.decode("utf-8", errors="replace")}
        records.append(record if isinstance(record, dict) else {"msg": str(record)})
    return records


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read_from(path: Path, offset: int, limit: int = CHUNK_BYTES) -> Piece:
    """The whole lines from byte `offset` on, about `limit` bytes of them (at least one line
    when one is there); a line still being written is left for the next read."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return Piece([], offset, offset)
    with fh:
        fh.seek(offset)
        data = fh.read(limit)
        end = data.rfind(b"\n") + 1
        while end == 0 and data:
            # One line longer than `limit`: read on to its end.
            more = fh.read(limit)
            if not more:
                break
            data += more
            end = data.rfind(b"\n") + 1
    return Piece(_records(data[:end]), offset, offset + end)


def tail(path: Path, lines: int) -> Piece:
    """The last `lines` whole lines, read backwards from the end in blocks."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return Piece([], 0, 0)
    with fh:
        end = fh.seek(0, os.SEEK_END)
        fh.seek(0)
        block = b""
        position = end
        # Only whole lines count: ignore what follows the last newline (still being written).
        while position > 0 and block.count(b"\n") <= lines:
            step = min(_BACK_STEP, position)
            position -= step
            fh.seek(position)
            block = fh.read(step) + block
        stop = block.rfind(b"\n") + 1
        whole = block[:stop]
        cut = 0
        if position > 0 or whole.count(b"\n") > lines:
            # Keep the last `lines` lines; the first one found may be a partial line.
            parts = whole.split(b"\n")[:-1]
            keep = parts[-lines:] if lines else []
            cut = len(whole) - sum(len(p) + 1 for p in keep)
        return Piece(_records(whole[cut:]), position + cut, position + stop)


def pieces(path: Path, offset: int = 0, limit: int = CHUNK_BYTES) -> Iterator[Piece]:
    """Every whole line from `offset` to the current end, a piece at a time."""
    while True:
        piece = read_from(path, offset, limit)
        if piece.end == offset:
            return
        yield piece
        offset = piece.end
