"""Run the scheduler, its cron loop and its gateway until Ctrl-C / SIGTERM (or `al stop`).

Shutdown is graceful and bounded: triggers stop, running runs get `grace` seconds to end,
then they are stopped; a second signal stops them at once. `.al/daemon.json` tells other
`al` commands where the daemon listens while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from action_llama.credentials.store import CredentialStore
from action_llama.project import Agent, Project
from action_llama.runs.records import format_record
from action_llama.runs.service import LineCallback, RunService
from action_llama.runs.store import RunStore
from action_llama.runtimes.registry import get_runtime, runtime_name

DAEMON_FILE = "daemon.json"
SHUTDOWN_GRACE = 60.0


def daemon_file(project: Project) -> Path:
    return project.state_dir / DAEMON_FILE


def _printer(stream: TextIO) -> Callable[[Agent, str], LineCallback]:
    def for_run(agent: Agent, run_id: str) -> LineCallback:
        def emit(record: dict[str, Any]) -> None:
            stream.write(f"{agent.name} {run_id} {format_record(record)}\n")
            stream.flush()

        return emit

    return for_run


async def serve(
    project: Project,
    *,
    port: int | None = None,
    expose: bool = False,
    grace: float = SHUTDOWN_GRACE,
    stream: TextIO = sys.stdout,
) -> None:
    """The daemon's whole life; returns after a graceful (or forced) shutdown."""
    from action_llama.daemon.backend import SchedulerBackend
    from action_llama.daemon.runner import gateway_launcher
    from action_llama.gateway import GatewaySettings, create_app, ensure_api_key
    from action_llama.gateway.server import open_server
    from action_llama.scheduler.core import Scheduler
    from action_llama.scheduler.cron import CronLoop
    from action_llama.state import State

    credentials = CredentialStore()
    ensure_api_key(credentials)
    image_ids = await asyncio.to_thread(_build_images, project)

    async def image_for(agent: Agent) -> str | None:
        return image_ids.get(agent.name)

    from action_llama.daemon import housekeeping

    state = State.open(project.state_dir)
    store = RunStore(project.state_dir)
    housekeeping.at_start(state, store, project.config.history_retention_days)
    services: dict[str, RunService] = {}

    def service_for(agent: Agent) -> RunService:
        name = runtime_name(agent)
        if name not in services:
            services[name] = RunService(project, get_runtime(name), store, credentials)
        return services[name]

    stopping = asyncio.Event()
    holder: dict[str, int] = {}
    launch = gateway_launcher(
        state, store, lambda: holder["port"], service_for, image_for, _printer(stream)
    )
    scheduler = Scheduler(project, state, launch)
    cron = CronLoop(scheduler)
    backend = SchedulerBackend(scheduler, cron, stopping.set)
    app = create_app(state, backend, GatewaySettings.from_project(project, credentials))
    server = open_server(
        app, port=project.config.gateway.port if port is None else port, expose=expose
    )
    holder["port"] = server.port
    await server.start()
    marker = daemon_file(project)
    marker.write_text(json.dumps({"pid": os.getpid(), "port": server.port, "started": time.time()}))
    _on_signals(stopping, scheduler)
    stream.write(
        f"al: scheduler running for {project.root}, gateway on "
        f"{', '.join(f'{a}:{p}' for a, p in server.addresses)}\n"
    )
    stream.flush()
    cron_task = asyncio.create_task(cron.run())
    sweeper = asyncio.create_task(housekeeping.sweep_forever(state, scheduler))
    scheduler.drain()
    try:
        await stopping.wait()
        stream.write("al: stopping: no new runs; waiting for running ones\n")
        stream.flush()
        await scheduler.shutdown(grace)
    finally:
        for task in (cron_task, sweeper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await server.stop()
        for service in services.values():
            await service.runtime.close()
        marker.unlink(missing_ok=True)
        store.close()
        state.close()
    stream.write("al: stopped\n")


def _on_signals(stopping: asyncio.Event, scheduler: Any) -> None:
    """First Ctrl-C/SIGTERM: graceful stop. Second: stop the runs now."""
    loop = asyncio.get_running_loop()

    def handle() -> None:
        if stopping.is_set():
            for runs in scheduler.running.values():
                for task in runs.values():
                    task.cancel()
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle)


def _build_images(project: Project) -> dict[str, str]:
    """Image ids of the container agents (building what changed); none without such agents."""
    agents = [a.name for a in project.agents.values() if a.is_container]
    if not agents:
        return {}
    from action_llama.engine import connect
    from action_llama.images.build import ChainBuilder

    chain = ChainBuilder(connect(), project).ensure(agents)
    return {name: chain.image_for(name) for name in agents}
