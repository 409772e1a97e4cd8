"""History retention (`historyRetentionDays`): forget runs, call edges, receipts and queue drops
older than N days.

Rows of runs the daemon still tracks as active (and the call edges those runs' depth is read
from) are kept whatever their age. Log files are the caller's to delete: `prune` returns the
pruned runs' log paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from action_llama.state.db import Database

DAY = 86400.0


@dataclass(frozen=True)
class PrunedRun:
    """A run whose record was deleted; its log file is at `log_path`, for the caller to remove."""

    run_id: str
    agent: str
    log_path: Path


@dataclass(frozen=True)
class Pruned:
    """What `prune` deleted: the runs, and how many call edges, receipts and queue drops."""

    runs: list[PrunedRun]
    call_edges: int
    receipts: int
    queue_drops: int


def prune(db: Database, now: float, days: float) -> Pruned:
    """Delete history that started (or arrived) more than `days` days before `now`."""
    if days < 0:
        raise ValueError(f"history retention must be >= 0 days, got {days}")
    cutoff = now - days * DAY
    with db.write() as conn:
        runs = conn.execute(
            "DELETE FROM runs WHERE started_at < ? "
            "AND run_id NOT IN (SELECT run_id FROM active_runs) "
            "RETURNING run_id, agent, log_path",
            (cutoff,),
        ).fetchall()
        edges = conn.execute(
            "DELETE FROM call_edges WHERE started_at < ? "
            "AND outcome NOT IN ('pending', 'running') "
            "AND coalesce(target_run, '') NOT IN (SELECT run_id FROM active_runs)",
            (cutoff,),
        ).rowcount
        receipts = conn.execute(
            "DELETE FROM webhook_receipts WHERE received_at < ?", (cutoff,)
        ).rowcount
        drops = conn.execute("DELETE FROM queue_drops WHERE dropped_at < ?", (cutoff,)).rowcount
    pruned = [PrunedRun(r["run_id"], r["agent"], Path(r["log_path"])) for r in runs]
    return Pruned(
        runs=sorted(pruned, key=lambda r: r.run_id),
        call_edges=edges,
        receipts=receipts,
        queue_drops=drops,
    )
