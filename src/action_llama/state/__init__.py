"""The project's durable state, in SQLite (WAL) at `.al/action-llama.db`.

    db.py         opening, the busy timeout, versioned migrations (schema.py holds the list)
    queue.py      WorkQueue: per-agent FIFO work queues of triggers, capped, drops recorded
    locks.py      Locks: URI-keyed resource locks with TTL, heartbeat and deadlock detection
    calls.py      Calls: agent-to-agent calls with depth and cycle checks, and their history
    receipts.py   Receipts: the `webhooks.Receipt` of every delivery, deduplicated by delivery id
    active.py     ActiveRuns: the daemon's running runs, so a restart can re-adopt them
    retention.py  prune: history older than `historyRetentionDays` (the run history's own
                  retention is `action_llama.runs.store`'s)
    stores.py     State: all of the above over one `Database`

Every method is synchronous and short; each runs in its own transaction, so one `Database`
can be shared by threads and several processes can use the same file.

The names below are imported from their modules on first use: `action_llama.state.db` is
standard library only, and the run history (`action_llama.runs.store`), which `al run`
reads through a running scheduler, must not load pydantic by importing this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from action_llama.layout import DB_NAME

if TYPE_CHECKING:
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
    from action_llama.state.queue import PushResult, QueuedItem, QueueDrop, WorkQueue
    from action_llama.state.receipts import Duplicate, Inserted, Receipts
    from action_llama.state.retention import Pruned, prune
    from action_llama.state.stores import State

#: Exported name -> the module of this package that defines it.
_HOMES = {
    "ActiveRun": "active",
    "ActiveRuns": "active",
    "Call": "calls",
    "Calls": "calls",
    "Refused": "calls",
    "Database": "db",
    "DEFAULT_TTL": "locks",
    "Acquired": "locks",
    "AcquireResult": "locks",
    "Conflict": "locks",
    "Deadlock": "locks",
    "InvalidKey": "locks",
    "Lock": "locks",
    "Locks": "locks",
    "PushResult": "queue",
    "QueuedItem": "queue",
    "QueueDrop": "queue",
    "WorkQueue": "queue",
    "Duplicate": "receipts",
    "Inserted": "receipts",
    "Receipts": "receipts",
    "Pruned": "retention",
    "prune": "retention",
    "State": "stores",
}

__all__ = [
    "DB_NAME",
    "DEFAULT_TTL",
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
    "QueuedItem",
    "Receipts",
    "Refused",
    "State",
    "WorkQueue",
    "prune",
]


if not TYPE_CHECKING:  # hidden from mypy, which would take any name as defined by it

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
        globals()[name] = value
        return value
