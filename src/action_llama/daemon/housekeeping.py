"""What the daemon tidies: history past retention, stale locks and calls.

Runs a dead daemon left active are not touched here: `daemon.adoption` takes them back (or
finishes them) once the scheduler exists.
"""

from __future__ import annotations

import asyncio
import logging
import time

from action_llama.runs.store import RunStore
from action_llama.scheduler.core import Scheduler
from action_llama.state import State

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


async def sweep_forever(state: State, scheduler: Scheduler) -> None:
    while not scheduler.stopping:
        await asyncio.sleep(SWEEP_EVERY)
        sweep(state, scheduler)
