"""The pieces under the live pages: reading a log by byte offset in bounded pieces, and the
change feed waking exactly the waiters of what changed."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from action_llama.dashboard import logs
from action_llama.dashboard.live import STATE, Changes, event, run_topic


def write_log(path: Path, count: int, *, partial: str = "", width: int = 0) -> list[int]:
    """A log of `count` records (each padded to about `width` bytes), maybe followed by a
    line still being written; the byte offset after each whole line."""
    ends, data = [], b""
    for n in range(count):
        data += (
            json.dumps({"level": "info", "msg": f"line {n}", "pad": "x" * width}) + "\n"
        ).encode()
        ends.append(len(data))
    path.write_bytes(data + partial.encode())
    return ends


def msgs(piece: logs.Piece) -> list[str]:
    return [r["msg"] for r in piece.records]


def test_reading_from_an_offset_gives_whole_lines_only(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    ends = write_log(log, 5, partial='{"msg": "half')
    piece = logs.read_from(log, ends[1])
    assert msgs(piece) == ["line 2", "line 3", "line 4"]
    assert (piece.start, piece.end) == (ends[1], ends[4])  # the half line waits
    assert logs.read_from(log, piece.end).records == []


def test_a_long_log_is_read_in_bounded_pieces(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    ends = write_log(log, 2000, width=100)
    pieces = list(logs.pieces(log, 0, limit=16 * 1024))
    assert len(pieces) > 10
    assert all(p.end - p.start <= 16 * 1024 for p in pieces)
    assert [m for p in pieces for m in msgs(p)] == [f"line {n}" for n in range(2000)]
    assert pieces[-1].end == ends[-1]


def test_a_line_longer_than_a_piece_still_comes_whole(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    write_log(log, 3, width=50_000)
    piece = logs.read_from(log, 0, limit=1000)
    assert msgs(piece) == ["line 0"]


def test_the_tail_is_the_last_lines_read_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    ends = write_log(log, 3000, width=40, partial='{"half')
    tail = logs.tail(log, 10)
    assert msgs(tail) == [f"line {n}" for n in range(2990, 3000)]
    assert (tail.start, tail.end) == (ends[2989], ends[2999])
    whole = logs.tail(log, 5000)
    assert len(whole.records) == 3000
    assert whole.start == 0
    assert logs.tail(tmp_path / "none.jsonl", 10) == logs.Piece([], 0, 0)


def test_a_waiter_wakes_when_its_topic_moves_even_from_another_thread() -> None:
    changes = Changes()

    async def main() -> tuple[bool, bool, bool]:
        with changes.watching(run_topic("a")) as a, changes.watching(STATE) as state:
            thread = threading.Thread(target=changes.touch, args=(run_topic("a"),))
            thread.start()
            moved = await a.moved(5)
            thread.join()
            other = await state.moved(0.05)  # STATE did not move
            changes.touch(run_topic("b"))  # nobody watches b: nothing happens
            again = await a.moved(0.05)
        return moved, other, again

    assert asyncio.run(main()) == (True, False, False)


def test_a_change_before_the_wait_is_not_missed() -> None:
    changes = Changes()

    async def main() -> bool:
        with changes.watching() as watch:
            changes.touch()
            return await watch.moved(0.01)

    assert asyncio.run(main())


def test_events_put_each_line_of_their_data_on_its_own_data_field() -> None:
    assert event("<p>a</p>\n<p>b</p>", "page", 7) == (
        b"event: page\nid: 7\ndata: <p>a</p>\ndata: <p>b</p>\n\n"
    )
