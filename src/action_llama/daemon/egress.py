"""The scheduler's part in keeping its project's egress: tidy at start, removed at stop.

At start, after adoption, registrations of runs that no runtime has any more are forgotten
(the runs adopted keep theirs, and the proxy and networks they use are left as they are). At
a graceful stop, once no run of the project uses it, the project's egress component (proxy,
networks, firewall rules) is removed; the next run makes it again.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from action_llama.errors import ActionLlamaError

log = logging.getLogger("action_llama.daemon")


async def at_start(project: Path) -> None:
    from action_llama.egress.maintenance import sweep_registrations
    from action_llama.runtimes.registry import live_run_ids

    live = await live_run_ids(project)
    if live is None:
        return
    gone = await asyncio.to_thread(sweep_registrations, project, live)
    if gone:
        log.info("egress: forgot the addresses of runs that are gone: %s", ", ".join(gone))


async def at_stop(project: Path) -> None:
    from action_llama.egress.maintenance import teardown
    from action_llama.egress.registry import registrations
    from action_llama.egress.service import state_of
    from action_llama.engine import connect

    if registrations(state_of(project)):
        return  # a run started outside the scheduler (al run --local) still uses it
    try:
        client = connect()
    except ActionLlamaError:
        client = None  # no engine: only firewall rules (of host-user runs) to remove
    try:
        removed = await asyncio.to_thread(teardown, client, project)
    except Exception as exc:  # the scheduler stops whatever the engine says
        log.warning("egress: could not remove the project's egress: %s", exc)
        return
    if removed:
        log.info("egress: removed %s", ", ".join(removed))
