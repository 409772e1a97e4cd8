"""History retention (`historyRetentionDays`): forget call edges, receipts and queue drops
older than N days. The run history prunes itself (`action_llama.runs.store.RunStore.prune`).

Call edges of runs the daemon still tracks as active (their depth is read from them) are kept
whatever their age.
"""

from __future__ import annotations

from dataclasses import dataclass

from action_llama.state.db import Database

DAY = 86400.0


@dataclass(frozen=True)
class Pruned:
    """What `prune` deleted: how many call edges, receipts and queue drops."""

    call_edges: int
    receipts: int
    queue_drops: int


def prune(db: Database, now: float, days: float) -> Pruned:
    """Delete history that started (or arrived) more than `days` days before `now`."""
    if days < 0:
        raise ValueError(f"history retention must be >= 0 days, got {days}")
    cutoff = now - days * DAY
    with db.write() as conn:
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
    return Pruned(call_edges=edges, receipts=receipts, queue_drops=drops)
