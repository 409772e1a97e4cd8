"""The scheduler's part in keeping its project's egress: tidy and prepared at start, removed
at stop.

At start, after adoption, registrations of runs that no runtime has any more are forgotten
(the runs adopted keep theirs, and the proxy and networks they use are left as they are). At
a graceful stop, once no run of the project uses it, the project's egress component (proxy,
networks, firewall rules) is removed; the next run makes it again.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from action_llama.errors import ActionLlamaError

if TYPE_CHECKING:
    from action_llama.project import Project

log = logging.getLogger("action_llama.daemon")
#: How long a stopping scheduler waits for its preparing to end before tearing down.
PREPARE_WAIT = 60.0


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


async def prepare(project: Project) -> None:
    """Each runtime makes ready what its agents' runs need (egress networks, address holders)
    while the scheduler already takes requests: a run that comes first just waits for it."""
    from action_llama.runtimes.registry import by_runtime, get_runtime

    for name, agents in by_runtime(project.agents.values()).items():
        if not agents:
            continue
        try:
            await get_runtime(name).prepare(project, agents)
        except Exception as exc:  # the runs will meet it, and say it in their logs
            log.warning("could not prepare runs of %s: %s", ", ".join(a.name for a in agents), exc)
