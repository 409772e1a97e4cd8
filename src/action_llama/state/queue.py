"""The durable per-agent work queue: FIFO, capped, dropping the oldest item when full.

Work that finds no free runner waits here, as its `Trigger` (`action_llama.runs.trigger`),
until one frees. Items survive a daemon restart. Every drop is written to `queue_drops` (and
logged) so `al stat` and the logs can show it.

    work_queue.type     the trigger's type
    work_queue.payload  the rest of it as camelCase JSON: {"prompt"}, {"context"},
                        {"caller", "context", "depth", "callId"} ... (None fields left out)
    work_queue.summary  its one line (`Trigger.describe`)
"""

from __future__ import annotations

import builtins
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from action_llama.runs.trigger import Trigger
from action_llama.state.db import Database

log = logging.getLogger(__name__)

#: The cap when neither the agent's `maxWorkQueueSize` nor the project's `workQueueSize` is set.
DEFAULT_CAP = 20


@dataclass(frozen=True)
class QueuedItem:
    """An item as stored: its id, agent and arrival time."""

    id: int
    agent: str
    trigger: Trigger
    received_at: float


@dataclass(frozen=True)
class QueueDrop:
    """An item the queue dropped, and why."""

    item_id: int
    agent: str
    type: str
    summary: str
    received_at: float
    dropped_at: float
    reason: str


@dataclass(frozen=True)
class PushResult:
    """What `push` did: the new item's id, and the items dropped to make room (oldest first).

    With a cap of 0 the new item itself is dropped; `queued` is then False.
    """

    item_id: int
    dropped: list[QueueDrop]

    @property
    def queued(self) -> bool:
        """Whether the pushed item is in the queue (False only when the cap is 0)."""
        return all(drop.item_id != self.item_id for drop in self.dropped)


class WorkQueue:
    """The work queues of every agent of a project."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def push(self, agent: str, trigger: Trigger, cap: int = DEFAULT_CAP) -> PushResult:
        """Append `trigger` to `agent`'s queue, then drop the oldest items beyond `cap`.

        Each drop is recorded in `queue_drops` and logged as a warning.
        """
        if cap < 0:
            raise ValueError(f"queue cap must be >= 0, got {cap}")
        now = self.clock()
        with self.db.write() as conn:
            item_id = conn.execute(
                "INSERT INTO work_queue (agent, type, payload, summary, received_at) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                (agent, trigger.type, _payload(trigger), trigger.describe(), now),
            ).fetchone()[0]
            count = self._length_if_over(conn, agent, int(item_id), cap)
            dropped = self._drop_oldest(conn, agent, count - cap, cap, now) if count > cap else []
        for drop in dropped:
            log.warning(
                "queue full for agent %s, oldest event dropped: item %d (%s)",
                agent,
                drop.item_id,
                drop.summary,
            )
        return PushResult(item_id=int(item_id), dropped=dropped)

    @staticmethod
    def _length_if_over(conn: sqlite3.Connection, agent: str, newest: int, cap: int) -> int:
        """`agent`'s queue length when it may exceed `cap`, else 0 (nothing to drop).

        Counting is linear in the queue's length, which made every push slower as a long
        queue grew. Ids only increase, so the queue holds at most `newest - oldest + 1` items:
        when that span fits the cap (always, for an agent whose queue is long because its cap
        is large) the count is skipped; the oldest id is one index lookup.
        """
        (oldest,) = conn.execute(
            "SELECT min(id) FROM work_queue WHERE agent = ?", (agent,)
        ).fetchone()
        if newest - int(oldest) + 1 <= cap:
            return 0
        (count,) = conn.execute(
            "SELECT count(*) FROM work_queue WHERE agent = ?", (agent,)
        ).fetchone()
        return int(count)

    @staticmethod
    def _drop_oldest(
        conn: sqlite3.Connection, agent: str, excess: int, cap: int, now: float
    ) -> builtins.list[QueueDrop]:
        rows = conn.execute(
            "DELETE FROM work_queue WHERE id IN "
            "(SELECT id FROM work_queue WHERE agent = ? ORDER BY id LIMIT ?) "
            "RETURNING id, type, summary, received_at",
            (agent, excess),
        ).fetchall()
        reason = f"queue full (cap {cap})"
        drops = [
            QueueDrop(r["id"], agent, r["type"], r["summary"], r["received_at"], now, reason)
            for r in sorted(rows, key=lambda r: int(r["id"]))
        ]
        conn.executemany(
            "INSERT INTO queue_drops (agent, item_id, type, summary, received_at, dropped_at, "
            "reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (d.agent, d.item_id, d.type, d.summary, d.received_at, d.dropped_at, d.reason)
                for d in drops
            ],
        )
        return drops

    def pop(self, agent: str) -> QueuedItem | None:
        """Remove and return the oldest item of `agent`'s queue (None when it is empty)."""
        with self.db.write() as conn:
            row = conn.execute(
                "DELETE FROM work_queue WHERE id = "
                "(SELECT id FROM work_queue WHERE agent = ? ORDER BY id LIMIT 1) RETURNING *",
                (agent,),
            ).fetchone()
        return None if row is None else _queued(row)

    def pop_oldest(self, agents: Collection[str]) -> QueuedItem | None:
        """Remove and return the oldest item queued for any of `agents` (None when none is)."""
        names = list(agents)
        marks = ", ".join("?" * len(names))
        with self.db.write() as conn:
            row = conn.execute(
                "DELETE FROM work_queue WHERE id = "
                f"(SELECT id FROM work_queue WHERE agent IN ({marks}) ORDER BY id LIMIT 1) "
                "RETURNING *",
                names,
            ).fetchone()
        return None if row is None else _queued(row)

    def peek(self, agent: str) -> QueuedItem | None:
        """The oldest item of `agent`'s queue, left in place."""
        items = self.list(agent, limit=1)
        return items[0] if items else None

    def list(self, agent: str, limit: int | None = None) -> list[QueuedItem]:
        """`agent`'s queued items, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM work_queue WHERE agent = ? ORDER BY id LIMIT ?",
                (agent, -1 if limit is None else limit),
            ).fetchall()
        return [_queued(r) for r in rows]

    def len(self, agent: str) -> int:
        """How many items wait in `agent`'s queue."""
        with self.db.read() as conn:
            row = conn.execute("SELECT count(*) FROM work_queue WHERE agent = ?", (agent,))
            return int(row.fetchone()[0])

    def lengths(self) -> dict[str, int]:
        """Queue length per agent, for agents with something queued."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT agent, count(*) FROM work_queue GROUP BY agent")
            return {agent: int(n) for agent, n in rows.fetchall()}

    def remove(self, item_id: int) -> bool:
        """Remove one item by id (say, work for an agent that was deleted); False if not queued."""
        with self.db.write() as conn:
            cursor = conn.execute("DELETE FROM work_queue WHERE id = ?", (item_id,))
            return cursor.rowcount > 0

    def drops(self, agent: str | None = None, limit: int = 20) -> builtins.list[QueueDrop]:
        """The most recent drops (of one agent, or all), newest first."""
        where, args = ("WHERE agent = ?", (agent,)) if agent else ("", ())
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT agent, item_id, type, summary, received_at, dropped_at, reason "
                f"FROM queue_drops {where} ORDER BY id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [QueueDrop(**dict(r)) for r in rows]


def _payload(trigger: Trigger) -> str:
    return trigger.to_json(exclude=frozenset({"type", "summary"}))


def _queued(row: sqlite3.Row) -> QueuedItem:
    trigger = Trigger.from_stored(
        {**json.loads(row["payload"]), "type": row["type"], "summary": row["summary"]}
    )
    return QueuedItem(
        id=row["id"], agent=row["agent"], trigger=trigger, received_at=row["received_at"]
    )
