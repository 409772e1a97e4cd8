"""`State`: every store of one project's durable state, over one shared `Database`."""

from __future__ import annotations

from pathlib import Path

from action_llama.state.active import ActiveRuns
from action_llama.state.calls import Calls
from action_llama.state.db import Database
from action_llama.state.locks import DEFAULT_TTL, Locks
from action_llama.state.queue import WorkQueue
from action_llama.state.receipts import Receipts
from action_llama.state.retention import Pruned, prune


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
