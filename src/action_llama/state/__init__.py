"""The project's durable state, in SQLite (WAL) at `.al/action-llama.db`.

    db.py         opening, the busy timeout, versioned migrations (schema.py holds the list)
    queue.py      WorkQueue: per-agent FIFO work queues, capped, drops recorded
    locks.py      Locks: URI-keyed resource locks with TTL, heartbeat and deadlock detection
    calls.py      Calls: agent-to-agent calls with depth and cycle checks, and their history
    receipts.py   Receipts: one per webhook delivery, deduplicated by delivery id
    active.py     ActiveRuns: the daemon's running runs, so a restart can re-adopt them
    retention.py  prune: history older than `historyRetentionDays`

Every method is synchronous and short; each runs in its own transaction, so one `Database`
can be shared by threads and several processes can use the same file.
"""

from __future__ import annotations

from pathlib import Path

from action_llama.layout import DB_NAME
from action_llama.state.active import ActiveRun, ActiveRuns
from action_llama.state.calls import Call, Calls, Refused
from action_llama.state.db import Database
from action_llama.state.locks import (
    DEFAULT_TTL,
    Acquired,
    AcquireResult,
    Conflict,
    Deadlock,
    InvalidKey,
    Lock,
    Locks,
)
from action_llama.state.queue import PushResult, QueuedItem, QueueDrop, QueueItem, WorkQueue
from action_llama.state.receipts import Duplicate, Inserted, Receipt, Receipts
from action_llama.state.retention import Pruned, prune

__all__ = [
    "DB_NAME",
    "AcquireResult",
    "Acquired",
    "ActiveRun",
    "ActiveRuns",
    "Call",
    "Calls",
    "Conflict",
    "Database",
    "Deadlock",
    "Duplicate",
    "Inserted",
    "InvalidKey",
    "Lock",
    "Locks",
    "Pruned",
    "PushResult",
    "QueueDrop",
    "QueueItem",
    "QueuedItem",
    "Receipt",
    "Receipts",
    "Refused",
    "State",
    "WorkQueue",
    "prune",
]


class State:
    """Every state store of one project, over one shared `Database`."""

    def __init__(self, db: Database, *, lock_ttl: float = DEFAULT_TTL) -> None:
        self.db = db
        self.queue = WorkQueue(db)
        self.locks = Locks(db, default_ttl=lock_ttl)
        self.calls = Calls(db)
        self.receipts = Receipts(db)
        self.active_runs = ActiveRuns(db)

    @classmethod
    def open(cls, state_dir: Path, *, lock_ttl: float = DEFAULT_TTL) -> State:
        """Open (creating and migrating as needed) the state of the project at `state_dir`."""
        return cls(Database.for_project(state_dir), lock_ttl=lock_ttl)

    def prune(self, now: float, days: float) -> Pruned:
        """Forget history older than `days` days (see `action_llama.state.retention`)."""
        return prune(self.db, now, days)

    def close(self) -> None:
        self.db.close()
