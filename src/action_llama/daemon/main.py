"""Run the scheduler, its cron loop and its gateway until Ctrl-C / SIGTERM (or `al stop`).

`Daemon` owns one project's scheduler for its whole life, as uvicorn's `Server` owns a server:
`start` (the project's checks, its images, the state database, the scheduler, the gateway, runs
a killed daemon left), `serve` (until a stop is asked), `replace` (a hot reload swaps the
project in), `shutdown` (graceful and bounded: triggers stop, running runs get `grace` seconds
to end, then they are stopped; a second signal stops them at once). Edits to the project are
watched by `daemon.reload`; what happens is shown live in a terminal or logged as plain lines
(`daemon.view`). `.al/daemon.json` tells other `al` commands where the daemon listens while it
runs.
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
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from action_llama.credentials.store import CredentialStore
from action_llama.layout import DAEMON_FILE, DAEMON_LOCK
from action_llama.project import Agent, Project
from action_llama.runs.service import RunService
from action_llama.runtimes.registry import gateway_hosts, get_runtime, image_agents, runtime_name

if TYPE_CHECKING:
    from action_llama.daemon.view import Board
    from action_llama.dashboard.site import Dashboard
    from action_llama.gateway import GatewaySettings
    from action_llama.gateway.server import GatewayServer
    from action_llama.runs.service import LineCallback
    from action_llama.runs.store import RunStore
    from action_llama.scheduler.core import Scheduler
    from action_llama.scheduler.cron import CronLoop
    from action_llama.state import State

SHUTDOWN_GRACE = 60.0
#: Held (flock) by the one scheduler of a project, in its state folder.
LOCK_FILE = DAEMON_LOCK


def daemon_file(project: Project) -> Path:
    return project.state_dir / DAEMON_FILE


class Daemon:
    """One project's scheduler, gateway and state, from start to shutdown.

    `serve` is its whole life; it raises DaemonRunning (another scheduler has the project),
    NotReadyToStart (checks failed) or ImageBuildError before anything starts. `live`: redraw
    a status view on `stream` (a terminal) instead of logging lines to it.
    """

    def __init__(
        self,
        project: Project,
        *,
        port: int | None = None,
        expose: bool = False,
        grace: float = SHUTDOWN_GRACE,
        stream: TextIO = sys.stdout,
        live: bool = False,
    ):
        from action_llama.daemon.view import Board, headless_sink

        #: The project runs are started from now; a hot reload replaces it (`replace`).
        self.project = project
        #: Image ids of the agents whose runs need one, for `project`.
        self.image_ids: dict[str, str] = {}
        self._rebuilding = asyncio.Lock()
        self.port = project.config.gateway.port if port is None else port
        self.expose = expose
        self.grace = grace
        self.stream = stream
        self.live = live
        self.board = Board(headless_sink(stream))
        self.credentials = CredentialStore()
        #: One run service per runtime, made when an agent of that runtime first runs.
        self.services: dict[str, RunService] = {}
        self.settings: GatewaySettings
        self.state: State
        self.store: RunStore
        self.scheduler: Scheduler
        self.cron: CronLoop
        self.server: GatewayServer
        self.dashboard: Dashboard
        self._stopping: asyncio.Event
        #: What `start` opened, closed by `shutdown` in reverse (also when `start` fails).
        self._opened = contextlib.AsyncExitStack()

    @property
    def marker(self) -> Path:
        return daemon_file(self.project)

    # -- life ------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Start, run until a stop is asked (signal, `al stop`), shut down."""
        claim = _claim(self.project)
        try:
            with _logs_to(self.board):
                self._stopping = asyncio.Event()
                try:
                    await self.start()
                    await self._stopping.wait()
                finally:
                    await self.shutdown()
            self.board.note("al: stopped")
        finally:
            os.close(claim)

    async def start(self) -> None:
        """Everything up to taking requests; raises before anything runs if the project
        cannot start (checks, images)."""
        from action_llama.daemon import egress, housekeeping
        from action_llama.daemon.backend import SchedulerBackend
        from action_llama.daemon.preflight import preflight
        from action_llama.daemon.reload import Reloader
        from action_llama.daemon.runner import GatewayLauncher
        from action_llama.dashboard.site import Dashboard
        from action_llama.gateway import GatewaySettings, create_app, ensure_api_key
        from action_llama.gateway.server import open_server
        from action_llama.images.build import build_images
        from action_llama.runs.store import RunStore
        from action_llama.scheduler.core import Scheduler
        from action_llama.scheduler.cron import CronLoop
        from action_llama.state import State

        project, board = self.project, self.board
        # Watching starts first, so edits made while the checks and builds run are reloaded.
        reloader = Reloader(self)
        ensure_api_key(self.credentials)
        for warning in preflight(project, self.credentials):
            fix = f" ({warning.fix})" if warning.fix else ""
            board.note(f"warning: {warning.name}: {warning.detail}{fix}")
        if image_agents(project):
            board.note("al: building images")
        self.image_ids = await asyncio.to_thread(build_images, project)
        self.settings = GatewaySettings.from_project(project, self.credentials)
        opened = self._opened
        self.state = State.open(project.state_dir)
        opened.callback(self.state.close)
        self.store = RunStore(project.state_dir, database=self.state.db)
        opened.callback(self.store.close)
        self.dashboard = Dashboard()
        # What changes in the database or the scheduler reaches the dashboard's open pages.
        self.state.db.on_write = self.dashboard.changes.touch
        opened.push_async_callback(self._close_runtimes)
        # Closed after the runs and the gateway, before the runtimes: the project's egress.
        opened.push_async_callback(egress.at_stop, project.root)
        board.seed(self.store.latest_of(project.agents).values())
        housekeeping.at_start(self.state, self.store, project.config.history_retention_days)
        launch = GatewayLauncher(
            self.state,
            self.store,
            lambda: self.server.port,
            self.service_for,
            self.image_for,
            self.run_lines,
            self.rebuild_image,
        )
        self.scheduler = Scheduler(project, self.state, board.track(launch), launch.claim)
        self.scheduler.on_change = self.dashboard.changes.touch
        self.cron = CronLoop(self.scheduler)
        backend = SchedulerBackend(self.scheduler, self.cron, self._stopping.set)
        app = create_app(self.state, backend, lambda: self.settings, self.dashboard)
        reached_at = await asyncio.to_thread(gateway_hosts, project, self.port)
        self.server = open_server(app, port=self.port, expose=self.expose, also=reached_at)
        opened.push_async_callback(self.server.stop)
        # Before the gateway takes requests: runs a killed daemon left hold their runners first.
        await self._adopt()
        await egress.at_start(project.root)
        self._prepare(egress.prepare(project))
        await self.server.start()
        marker = self.marker
        marker.write_text(
            json.dumps({"pid": os.getpid(), "port": self.server.port, "started": time.time()})
        )
        opened.callback(marker.unlink, missing_ok=True)
        self._on_signals()
        gateway = ", ".join(f"{a}:{p}" for a, p in self.server.addresses)
        board.note(f"al: scheduler running for {project.root}, gateway on {gateway}")
        local = f"http://127.0.0.1:{self.server.port}"
        board.note(f"al: dashboard on {local}/ (al dashboard prints a login link)")
        board.note(f"al: log in once, within 15 minutes: {self.dashboard.login_link(local)}")
        self._background(self.cron.run())
        self._background(housekeeping.sweep_forever(self.state, self.scheduler, self.adoption))
        self._background(reloader.watch())
        if self.live:
            self._background(self._show_live(f"{gateway}  dashboard {local}/"))
        self.scheduler.drain()

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` until shutdown."""
        task = asyncio.create_task(work)

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self._opened.push_async_callback(cancel)

    def _prepare(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` now; at shutdown wait for it (bounded) rather than cancel it: its engine
        calls would go on in their thread behind the teardown."""
        from action_llama.daemon.egress import PREPARE_WAIT

        task = asyncio.create_task(work)

        async def finish() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, PREPARE_WAIT)

        self._opened.push_async_callback(finish)

    async def _close_runtimes(self) -> None:
        for service in self.services.values():
            await service.runtime.close()

    async def _adopt(self) -> None:
        from action_llama.daemon.adoption import Adoption

        self.adoption = Adoption(
            self.state,
            self.store,
            self.scheduler,
            self.service_for,
            self.run_lines,
            self.board.track,
        )
        await self.adoption.adopt_all(self.server.port, self.marker)

    async def _show_live(self, gateway: str) -> None:
        from rich.console import Console

        from action_llama.daemon.view import headless_sink, show_live, snapshot

        self.board.sink = None  # the live view shows the lines instead
        frame = lambda: snapshot(self.board, self.scheduler, self.cron, gateway)  # noqa: E731
        try:
            await show_live(frame, Console(file=self.stream), asyncio.Event())
        finally:
            self.board.sink = headless_sink(self.stream)

    def stop(self) -> None:
        """Ask for a graceful shutdown (as the first Ctrl-C does)."""
        self._stopping.set()

    async def shutdown(self) -> None:
        """No new runs; running ones get `grace` seconds; then close what `start` opened."""
        if hasattr(self, "scheduler"):
            self.board.note("al: stopping: no new runs; waiting for running ones")
            await self.scheduler.shutdown(self.grace)
        await self._opened.aclose()

    def _on_signals(self) -> None:
        """First Ctrl-C/SIGTERM: graceful stop. Second: stop the runs now."""
        loop = asyncio.get_running_loop()

        def handle() -> None:
            if self._stopping.is_set():
                for runs in self.scheduler.running.values():
                    for task in runs.values():
                        task.cancel()
            self._stopping.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handle)

    # -- what runs need --------------------------------------------------------------------

    def run_lines(self, agent: Agent, run_id: str) -> LineCallback:
        """Where a run's log records go: the board, and the run's open dashboard pages."""
        from action_llama.dashboard.live import run_topic

        note = self.board.run_lines(agent, run_id)
        touch, topic = self.dashboard.changes.touch, run_topic(run_id)

        def emit(record: dict[str, Any]) -> None:
            note(record)
            touch(topic)

        return emit

    def service_for(self, agent: Agent) -> RunService:
        name = runtime_name(agent)
        if name not in self.services:
            runtime = get_runtime(name)
            self.services[name] = RunService(self.project, runtime, self.store, self.credentials)
        return self.services[name]

    async def image_for(self, agent: Agent) -> str | None:
        return self.image_ids.get(agent.name)

    async def rebuild_image(self, agent: Agent) -> str | None:
        """Build `agent`'s image again, gone from the engine since it was built (an image
        prune, say); what its runs start from now. Runs finding it gone at once build it once:
        the others find it up to date."""
        from action_llama.images.build import build_images

        async with self._rebuilding:
            self.board.note(f"al: the image of {agent.name} is gone; building it again")
            built = await asyncio.to_thread(build_images, self.project, [agent.name])
            self.image_ids = {**self.image_ids, **built}
            return built.get(agent.name)

    # -- hot reload ------------------------------------------------------------------------

    def replace(self, project: Project, image_ids: dict[str, str]) -> None:
        """Run `project` (with its images) from now on: new work uses it; running runs keep
        the definition they started with."""
        from action_llama.gateway import GatewaySettings

        self.project = project
        self.image_ids = image_ids
        self.settings = GatewaySettings.from_project(project, self.credentials)
        for service in self.services.values():
            service.project = project
        self.scheduler.replace_project(project)
        self.cron.reload()
        if not self.scheduler.stopping:
            self.scheduler.drain()  # a raised scale (or a returning agent) may take queued work


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
    except BlockingIOError as exc:
        os.close(fd)
        pid, port = previous_daemon(daemon_file(project))
        where = f" (pid {pid}, gateway port {port})" if pid is not None else ""
        raise DaemonRunning(
            f"A scheduler is already running for {project.root}{where}.",
            hint=f"See it with: al stat -p {project.root}; stop it with: al stop -p {project.root}",
        ) from exc
    return fd


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
