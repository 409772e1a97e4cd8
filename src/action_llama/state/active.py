"""The daemon's own bookkeeping of the runs it started, for restart safety.

A row is added when a run starts and removed when the daemon has seen it end and recorded it.
After a crash (`kill -9`), the rows left say which containers or host-user processes to re-adopt
(or stop and record), which depth and call each run had, and let the gateway keep accepting
the per-run secrets those runs still hold. Only a SHA-256 of each secret is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
from dataclasses import dataclass

from pydantic import JsonValue

from action_llama.state.db import Database


def secret_hash(secret: str) -> str:
    """The stored form of a run's gateway secret (the secret is random, so a plain hash will do)."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ActiveRun:
    """A run the daemon started and has not yet seen end."""

    run_id: str
    agent: str
    #: The runtime's registry name (docker, host-user, ...).
    runtime: str
    #: What the runtime needs to find the run again: a container id, a pid file path, ...
    runtime_ref: str | None
    secret_sha256: str
    started_at: float
    trigger: JsonValue
    depth: int = 0
    call_id: str | None = None

    def has_secret(self, secret: str) -> bool:
        """Whether `secret` is this run's gateway secret (compared in constant time)."""
        return hmac.compare_digest(secret_hash(secret), self.secret_sha256)


class ActiveRuns:
    """Runs the daemon has started and not yet seen end."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        run_id: str,
        agent: str,
        *,
        runtime: str,
        secret: str,
        trigger: JsonValue,
        runtime_ref: str | None = None,
        depth: int = 0,
        call_id: str | None = None,
        started_at: float | None = None,
    ) -> ActiveRun:
        """Record a run as started. `secret` is hashed; the plain secret is never stored."""
        run = ActiveRun(
            run_id=run_id,
            agent=agent,
            runtime=runtime,
            runtime_ref=runtime_ref,
            secret_sha256=secret_hash(secret),
            started_at=time.time() if started_at is None else started_at,
            trigger=trigger,
            depth=depth,
            call_id=call_id,
        )
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO active_runs (run_id, agent, runtime, runtime_ref, secret_sha256, "
                "started_at, trigger, depth, call_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run.run_id, run.agent, run.runtime, run.runtime_ref, run.secret_sha256,
                 run.started_at, json.dumps(run.trigger), run.depth, run.call_id),
            )  # fmt: skip
        return run

    def set_runtime_ref(self, run_id: str, runtime_ref: str) -> bool:
        """Record the container id or pid file once the runtime has started the run."""
        with self.db.write() as conn:
            cursor = conn.execute(
                "UPDATE active_runs SET runtime_ref = ? WHERE run_id = ?", (runtime_ref, run_id)
            )
            return cursor.rowcount > 0

    def remove(self, run_id: str) -> bool:
        """The run has ended and been recorded; False if it was not active."""
        with self.db.write() as conn:
            cursor = conn.execute("DELETE FROM active_runs WHERE run_id = ?", (run_id,))
            return cursor.rowcount > 0

    def get(self, run_id: str) -> ActiveRun | None:
        """The active run with this id, or None."""
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM active_runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _active(row)

    def by_secret(self, secret: str) -> ActiveRun | None:
        """The active run whose gateway secret is `secret` (how the gateway authenticates it)."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT * FROM active_runs WHERE secret_sha256 = ?", (secret_hash(secret),)
            ).fetchone()
        return None if row is None else _active(row)

    def list(self) -> list[ActiveRun]:
        """Every active run, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM active_runs ORDER BY started_at").fetchall()
        return [_active(r) for r in rows]


def _active(row: sqlite3.Row) -> ActiveRun:
    data = dict(row)
    data["trigger"] = json.loads(data["trigger"])
    return ActiveRun(**data)
