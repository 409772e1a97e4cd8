"""What the daemon tidies: history past retention, stale locks and calls.

Runs a dead daemon left active are not touched here: `daemon.adoption` takes them back (or
finishes them) once the scheduler exists.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from action_llama.errors import ActionLlamaError
from action_llama.runs.store import RunStore
from action_llama.scheduler.core import Scheduler
from action_llama.state import State

if TYPE_CHECKING:
    from action_llama.daemon.adoption import Adoption

log = logging.getLogger("action_llama.daemon")

#: Seconds between lock and call sweeps.
SWEEP_EVERY = 30.0


def at_start(state: State, store: RunStore, retention_days: int) -> None:
    """Prune history older than `retention_days` (runs still active are kept)."""
    now = time.time()
    store.prune(now, retention_days)
    state.prune(now, retention_days)


def sweep(state: State, scheduler: Scheduler) -> None:
    """Evict expired locks and locks of runs that ended; time out and forget old calls."""
    running = {run_id for runs in scheduler.running.values() for run_id in runs}
    now = time.time()
    for evicted in state.locks.sweep(now, lambda holder: holder in running):
        log.info("lock %s of %s evicted: %s", evicted.lock.key, evicted.lock.holder, evicted.reason)
    state.calls.sweep(now)


async def sweep_forever(
    state: State, scheduler: Scheduler, adoption: Adoption | None = None
) -> None:
    """Every SWEEP_EVERY seconds: the sweep, then the runs no one follows reconciled and the
    queues drained (work a fault left, a full disk say, is picked up once it is over)."""
    while not scheduler.stopping:
        await asyncio.sleep(SWEEP_EVERY)
        try:
            sweep(state, scheduler)
            if adoption is not None:
                await adoption.reconcile()
            scheduler.drain()
        except ActionLlamaError as exc:
            log.warning("housekeeping skipped: %s", exc.message)
