"""Agent-to-agent calls: depth and cycle checks across whole chains, states, timeouts, history.

A run started by a call has that call's depth and chain (the agents from the chain's root down to
it); any other run is the root of its own chain, at depth 0. So a call made by a run at depth d
has depth d + 1 and is refused beyond `maxCallDepth`, and a call to an agent already in the
caller's chain is refused as a cycle. Every call asked for, refused or not, leaves a row in
`call_edges` (kept until history retention) for stats.

    pending ──start──▶ running ──complete──▶ completed(return value)
       │                  └──────fail──────▶ error(message)
       └───────fail / timeout sweep────────▶ error
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from action_llama.state.db import Database

#: Calls still pending or running this long after they were made end as errors.
CALL_TIMEOUT = 2 * 3600.0
#: Finished calls stay readable (for `al-subagent-wait`) this long, then are removed.
FINISHED_CALL_KEPT = 10 * 60.0

CallStatus = Literal["pending", "running", "completed", "error"]


@dataclass(frozen=True)
class Call:
    """One agent-to-agent call and how far it has got."""

    call_id: str
    caller_run: str
    caller_agent: str
    target_agent: str
    target_run: str | None
    context: str
    depth: int
    #: The agents from the chain's root down to the target.
    chain: tuple[str, ...]
    status: CallStatus
    return_value: str | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True)
class Refused:
    """The call was not made; `reason` says why, in words an agent can act on."""

    reason: str


@dataclass(frozen=True)
class CallEdge:
    """One call asked for, as kept for stats. `outcome`: refused, pending, running, completed
    or error (`error` then says why, or why it was refused)."""

    id: int
    call_id: str | None
    caller_run: str
    caller_agent: str
    target_agent: str
    target_run: str | None
    depth: int
    chain: tuple[str, ...]
    outcome: str
    error: str | None
    started_at: float
    finished_at: float | None


@dataclass(frozen=True)
class CallSweep:
    """What `Calls.sweep` did: calls it ended as timed out, ids of finished calls it removed."""

    timed_out: list[Call]
    removed: list[str]


def new_call_id() -> str:
    """A fresh, unguessable call id."""
    return "call-" + secrets.token_hex(8)


class Calls:
    """The project's agent-to-agent calls."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def create(
        self,
        caller_run: str,
        caller_agent: str,
        target_agent: str,
        context: str,
        max_depth: int,
    ) -> Call | Refused:
        """Record a pending call from `caller_run` (an instance of `caller_agent`), or refuse it.

        Refused when the caller calls itself, when the call would be deeper than `max_depth`,
        or when `target_agent` is already in the caller's chain. Refusals are recorded too.
        """
        now = self.clock()
        with self.db.write() as conn:
            depth, chain = _chain_of(conn, caller_run, caller_agent)
            depth += 1
            chain = (*chain, target_agent)
            reason = _refusal(caller_agent, target_agent, depth, chain, max_depth)
            call_id = new_call_id()
            conn.execute(
                "INSERT INTO call_edges (call_id, caller_run, caller_agent, target_agent, depth, "
                "chain, outcome, error, started_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    None if reason else call_id,
                    caller_run,
                    caller_agent,
                    target_agent,
                    depth,
                    json.dumps(chain),
                    "refused" if reason else "pending",
                    reason,
                    now,
                    now if reason else None,
                ),
            )
            if reason:
                return Refused(reason)
            conn.execute(
                "INSERT INTO calls (call_id, caller_run, caller_agent, target_agent, context, "
                "depth, chain, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                (call_id, caller_run, caller_agent, target_agent, context, depth,
                 json.dumps(chain), now),
            )  # fmt: skip
            row = conn.execute("SELECT * FROM calls WHERE call_id = ?", (call_id,)).fetchone()
        return _call(row)

    def start(self, call_id: str, target_run: str) -> bool:
        """The call is being run by `target_run`: pending → running. False if it was not pending."""
        now = self.clock()
        with self.db.write() as conn:
            changed = conn.execute(
                "UPDATE calls SET status = 'running', target_run = ?, started_at = ? "
                "WHERE call_id = ? AND status = 'pending'",
                (target_run, now, call_id),
            ).rowcount
            if changed:
                conn.execute(
                    "UPDATE call_edges SET outcome = 'running', target_run = ? WHERE call_id = ?",
                    (target_run, call_id),
                )
        return changed > 0

    def complete(self, call_id: str, return_value: str | None) -> bool:
        """The target run finished: running → completed. False if the call was not running."""
        return self._finish(call_id, "completed", return_value, None, ("running",))

    def fail(self, call_id: str, message: str) -> bool:
        """The call cannot succeed (run failed, target disabled, dropped from a queue, ...).

        pending or running → error. False if the call had already ended.
        """
        return self._finish(call_id, "error", None, message, ("pending", "running"))

    def _finish(
        self,
        call_id: str,
        status: CallStatus,
        return_value: str | None,
        error: str | None,
        allowed: tuple[str, ...],
    ) -> bool:
        now = self.clock()
        marks = ",".join("?" * len(allowed))
        with self.db.write() as conn:
            changed = conn.execute(
                "UPDATE calls SET status = ?, return_value = ?, error = ?, finished_at = ? "
                f"WHERE call_id = ? AND status IN ({marks})",
                (status, return_value, error, now, call_id, *allowed),
            ).rowcount
            if changed:
                conn.execute(
                    "UPDATE call_edges SET outcome = ?, error = ?, finished_at = ? "
                    "WHERE call_id = ?",
                    (status, error, now, call_id),
                )
        return changed > 0

    def get(self, call_id: str) -> Call | None:
        """The call, while it is live or recently finished; None once removed or unknown."""
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM calls WHERE call_id = ?", (call_id,)).fetchone()
        return None if row is None else _call(row)

    def started_by(self, run_id: str) -> Call | None:
        """The live call that `run_id` is running, if it was started by one."""
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM calls WHERE target_run = ?", (run_id,)).fetchone()
        return None if row is None else _call(row)

    def active(self) -> list[Call]:
        """Pending and running calls, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM calls WHERE status IN ('pending', 'running') ORDER BY created_at"
            ).fetchall()
        return [_call(r) for r in rows]

    def sweep(
        self,
        now: float,
        timeout: float = CALL_TIMEOUT,
        keep: float = FINISHED_CALL_KEPT,
    ) -> CallSweep:
        """End calls made more than `timeout` ago as `call timed out`; remove calls that ended
        more than `keep` ago."""
        with self.db.write() as conn:
            rows = conn.execute(
                "UPDATE calls SET status = 'error', error = 'call timed out', finished_at = ? "
                "WHERE status IN ('pending', 'running') AND created_at <= ? RETURNING *",
                (now, now - timeout),
            ).fetchall()
            timed_out = sorted((_call(r) for r in rows), key=lambda c: c.created_at)
            conn.executemany(
                "UPDATE call_edges SET outcome = 'error', error = 'call timed out', "
                "finished_at = ? WHERE call_id = ?",
                [(now, c.call_id) for c in timed_out],
            )
            removed = conn.execute(
                "DELETE FROM calls WHERE status IN ('completed', 'error') AND finished_at <= ? "
                "RETURNING call_id",
                (now - keep,),
            ).fetchall()
        return CallSweep(timed_out=timed_out, removed=sorted(r["call_id"] for r in removed))

    def edges(self, limit: int = 100) -> list[CallEdge]:
        """The most recent call edges (for `al stat`), newest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM call_edges ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [CallEdge(**{**dict(r), "chain": tuple(json.loads(r["chain"]))}) for r in rows]


def _chain_of(conn: sqlite3.Connection, run_id: str, agent: str) -> tuple[int, tuple[str, ...]]:
    """The depth and chain of `run_id`: from the call that started it, else a root at depth 0.

    Read from `call_edges`, which outlive the calls table's short-lived rows.
    """
    row = conn.execute(
        "SELECT depth, chain FROM call_edges WHERE target_run = ? ORDER BY id DESC LIMIT 1",
        (run_id,),
    ).fetchone()
    if row is None:
        return 0, (agent,)
    return int(row["depth"]), tuple(json.loads(row["chain"]))


def _refusal(
    caller: str, target: str, depth: int, chain: tuple[str, ...], max_depth: int
) -> str | None:
    if caller == target:
        return "agent cannot call itself"
    if target in chain[:-1]:
        return "call cycle: " + " → ".join(chain)
    if depth > max_depth:
        return f"call depth limit ({max_depth}) reached"
    return None


def _call(row: sqlite3.Row) -> Call:
    data = dict(row)
    data["chain"] = tuple(json.loads(data["chain"]))
    return Call(**data)
