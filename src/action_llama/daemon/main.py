"""Run the scheduler, its cron loop and its gateway until Ctrl-C / SIGTERM (or `al stop`).

Before anything starts, the project gets `al doctor`'s checks (`daemon.preflight`) and its image
chain is built. While it runs, edits to the project are hot-reloaded (`daemon.reload`) and what
happens is shown live in a terminal or logged as plain lines (`daemon.view`). Shutdown is graceful
and bounded: triggers stop, running runs get `grace` seconds to end, then they are stopped; a
second signal stops them at once. `.al/daemon.json` tells other `al` commands where the daemon
listens while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from action_llama.credentials.store import CredentialStore
from action_llama.layout import DAEMON_FILE
from action_llama.project import Agent, Project
from action_llama.runs.service import RunService
from action_llama.runs.store import RunStore
from action_llama.runtimes.registry import get_runtime, image_agents, runtime_name

if TYPE_CHECKING:
    from action_llama.daemon.view import Board

SHUTDOWN_GRACE = 60.0
#: Held (flock) by the one scheduler of a project, in its state folder.
LOCK_FILE = "daemon.lock"


def daemon_file(project: Project) -> Path:
    return project.state_dir / DAEMON_FILE


async def serve(
    project: Project,
    *,
    port: int | None = None,
    expose: bool = False,
    grace: float = SHUTDOWN_GRACE,
    stream: TextIO = sys.stdout,
    live: bool = False,
) -> None:
    """The daemon's whole life; returns after a graceful (or forced) shutdown.

    Raises DaemonRunning (another scheduler has the project), NotReadyToStart (checks failed)
    or ImageBuildError before anything starts.
    `live`: redraw a status view on `stream` (a terminal) instead of logging lines to it.
    """
    claim = _claim(project)
    try:
        await _serve(project, port=port, expose=expose, grace=grace, stream=stream, live=live)
    finally:
        os.close(claim)


def _claim(project: Project) -> int:
    """One scheduler per project: an exclusive lock on `.al/daemon.lock`, held open for the
    daemon's life (the kernel drops it however the process ends, `kill -9` included, so a
    crashed daemon never blocks the next one). Its file descriptor."""
    import fcntl

    from action_llama.daemon.adoption import previous_daemon
    from action_llama.errors import DaemonRunning

    project.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(project.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid, port = previous_daemon(daemon_file(project))
        where = f" (pid {pid}, gateway port {port})" if pid is not None else ""
        raise DaemonRunning(
            f"A scheduler is already running for {project.root}{where}.",
            hint=f"See it with: al stat -p {project.root}; stop it with: al stop -p "
            f"{project.root}",
        ) from None
    return fd


async def _serve(
    project: Project,
    *,
    port: int | None,
    expose: bool,
    grace: float,
    stream: TextIO,
    live: bool,
) -> None:
    from action_llama.daemon.adoption import Adoption
    from action_llama.daemon.backend import SchedulerBackend
    from action_llama.daemon.preflight import preflight
    from action_llama.daemon.reload import Current, Reloader, fingerprint
    from action_llama.daemon.runner import gateway_launcher
    from action_llama.daemon.view import Board, headless_sink, show_live, snapshot
    from action_llama.gateway import GatewaySettings, create_app, ensure_api_key
    from action_llama.gateway.server import open_server
    from action_llama.scheduler.core import Scheduler
    from action_llama.scheduler.cron import CronLoop
    from action_llama.state import State

    board = Board(headless_sink(stream))
    # Taken first, so edits made while the checks and builds run are reloaded at once.
    watched = fingerprint(project.root)
    credentials = CredentialStore()
    with _logs_to(board):
        ensure_api_key(credentials)
        for warning in preflight(project, credentials):
            fix = f" ({warning.fix})" if warning.fix else ""
            board.note(f"warning: {warning.name}: {warning.detail}{fix}")
        if image_agents(project):
            board.note("al: building images")
        current = Current(
            project,
            await asyncio.to_thread(_build_images, project),
            GatewaySettings.from_project(project, credentials),
        )

        async def image_for(agent: Agent) -> str | None:
            return current.image_ids.get(agent.name)

        from action_llama.daemon import housekeeping

        state = State.open(project.state_dir)
        store = RunStore(project.state_dir)
        board.seed(run for name in project.agents for run in store.runs(name, limit=1))
        housekeeping.at_start(state, store, project.config.history_retention_days)
        services: dict[str, RunService] = {}

        def service_for(agent: Agent) -> RunService:
            name = runtime_name(agent)
            if name not in services:
                services[name] = RunService(current.project, get_runtime(name), store, credentials)
            return services[name]

        stopping = asyncio.Event()
        holder: dict[str, int] = {}
        launch = gateway_launcher(
            state, store, lambda: holder["port"], service_for, image_for, board.run_lines
        )
        scheduler = Scheduler(project, state, board.track(launch))
        cron = CronLoop(scheduler)
        backend = SchedulerBackend(scheduler, cron, stopping.set)
        app = create_app(state, backend, lambda: current.settings)
        server = open_server(
            app, port=project.config.gateway.port if port is None else port, expose=expose
        )
        holder["port"] = server.port
        # Before the gateway takes requests: runs a killed daemon left hold their runners first.
        await Adoption(
            state, store, scheduler, service_for, board.run_lines, board.track
        ).adopt_all(server.port, daemon_file(project))
        await server.start()
        marker = daemon_file(project)
        marker.write_text(
            json.dumps({"pid": os.getpid(), "port": server.port, "started": time.time()})
        )
        _on_signals(stopping, scheduler)
        gateway = ", ".join(f"{a}:{p}" for a, p in server.addresses)
        board.note(f"al: scheduler running for {project.root}, gateway on {gateway}")
        reloader = Reloader(
            current,
            scheduler=scheduler,
            cron=cron,
            services=services,
            credentials=credentials,
            build=_build_images,
            note=board.note,
            seen=watched,
        )
        tasks = [
            asyncio.create_task(cron.run()),
            asyncio.create_task(housekeeping.sweep_forever(state, scheduler)),
            asyncio.create_task(reloader.watch()),
        ]
        if live:
            board.sink = None  # the live view shows the lines instead
            frame = lambda: snapshot(board, scheduler, cron, gateway)  # noqa: E731
            tasks.append(asyncio.create_task(show_live(frame, _console(stream), asyncio.Event())))
        scheduler.drain()
        try:
            await stopping.wait()
            board.note("al: stopping: no new runs; waiting for running ones")
            await scheduler.shutdown(grace)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            board.sink = headless_sink(stream)
            await server.stop()
            for service in services.values():
                await service.runtime.close()
            marker.unlink(missing_ok=True)
            store.close()
            state.close()
        board.note("al: stopped")


@contextlib.contextmanager
def _logs_to(board: Board) -> Iterator[None]:
    """While the daemon runs, its loggers (scheduler, gateway, state) write to the board."""
    from action_llama.daemon.view import BoardHandler

    logger = logging.getLogger("action_llama")
    handler = BoardHandler(board)
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # else Python's last-resort handler prints warnings twice
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _console(stream: TextIO) -> Any:
    from rich.console import Console

    return Console(file=stream)


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
    """Image ids of the agents whose runs need one (building what changed)."""
    agents = image_agents(project)
    if not agents:
        return {}
    from action_llama.engine import connect
    from action_llama.images.build import ChainBuilder

    chain = ChainBuilder(connect(), project).ensure(agents)
    return {name: chain.image_for(name) for name in agents}
