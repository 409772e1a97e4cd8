"""What `al start` shows: a live status view in a terminal, plain timestamped lines otherwise.

Everything the daemon has to say (its own messages, scheduler logs, run log lines, runs starting
and ending) goes to one `Board`. Headless, the board writes each line out with a timestamp, for
servers and systemd. In a terminal, `show_live` redraws a table of the agents plus the board's
last lines from the scheduler's own state, at most twice a second, on the daemon's event loop
(so it never reads the scheduler while the scheduler changes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from action_llama.runs.records import format_record

if TYPE_CHECKING:
    from action_llama.project import Agent
    from action_llama.runs.service import LineCallback, RunOutcome
    from action_llama.runs.store import RunRecord
    from action_llama.runs.trigger import Trigger
    from action_llama.scheduler.core import Launch, Scheduler
    from action_llama.scheduler.cron import CronLoop

#: Redraws per second of the live view: enough to follow runs, cheap for the daemon.
REFRESH_PER_SECOND = 2
#: How many recent lines the live view keeps under the agents.
RECENT_LINES = 8


def _now() -> datetime:
    return datetime.now().astimezone()


@dataclass(frozen=True)
class LastRun:
    run_id: str
    status: str
    ended: datetime
    duration: float


class Board:
    """The daemon's recent lines and each agent's last result; `sink` also gets every line."""

    def __init__(self, sink: Callable[[str], None] | None = None, keep: int = RECENT_LINES):
        self.sink = sink
        self.lines: deque[str] = deque(maxlen=keep)
        self.last: dict[str, LastRun] = {}
        # Build threads and the event loop both log here.
        self._lock = threading.Lock()

    def seed(self, runs: Iterable[RunRecord]) -> None:
        """Last results from the history (runs that ended before this daemon started)."""
        for run in runs:
            if run.finished_at is not None and run.agent not in self.last:
                ended = datetime.fromtimestamp(run.finished_at).astimezone()
                self.last[run.agent] = LastRun(run.run_id, run.status, ended, run.duration or 0.0)

    def note(self, text: str) -> None:
        with self._lock:
            self.lines.append(text)
            if self.sink is not None:
                self.sink(text)

    def recent(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self.lines)

    def run_lines(self, agent: Agent, run_id: str) -> LineCallback:
        """Where one run's log records go (the launcher's `on_line`)."""

        def emit(record: dict[str, Any]) -> None:
            self.note(f"{agent.name} {run_id} {format_record(record)}")

        return emit

    def track(self, launch: Launch) -> Launch:
        """`launch`, noting each run's start and how it ended."""

        async def tracked(agent: Agent, trigger: Trigger, run_id: str, rerun: int) -> RunOutcome:
            again = f", rerun {rerun}" if rerun else ""
            self.note(f"{agent.name} {run_id} started ({trigger.type}{again})")
            outcome = await launch(agent, trigger, run_id, rerun)
            status = outcome.result.status
            self.last[agent.name] = LastRun(run_id, status, _now(), outcome.duration)
            why = f": {outcome.error}" if outcome.error else ""
            self.note(f"{agent.name} {run_id} {status} in {outcome.duration:.1f}s{why}")
            return outcome

        return tracked


class BoardHandler(logging.Handler):
    """Scheduler and gateway log records onto the board (warnings say so)."""

    def __init__(self, board: Board):
        super().__init__(logging.INFO)
        self.board = board

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.levelno >= logging.WARNING:
                text = f"{record.levelname.lower()}: {text}"
            self.board.note(text)
        except Exception:  # a log line must never take the daemon down
            self.handleError(record)


def headless_sink(stream: TextIO) -> Callable[[str], None]:
    """Plain lines, each prefixed with the local time, flushed at once (journald, log files)."""

    def write(text: str) -> None:
        stamp = _now().strftime("%Y-%m-%d %H:%M:%S")
        stream.write("".join(f"{stamp} {line}\n" for line in text.splitlines() or [""]))
        stream.flush()

    return write


# -- the live view ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentStatus:
    name: str
    state: str  # idle, running, paused, disabled
    scale: int
    running: tuple[str, ...]
    queued: int
    next_fire: datetime | None
    last: LastRun | None


@dataclass(frozen=True)
class Snapshot:
    """Everything one frame of the live view shows."""

    project: str
    gateway: str
    paused: bool
    stopping: bool
    agents: tuple[AgentStatus, ...]
    lines: tuple[str, ...]
    now: datetime


def snapshot(board: Board, scheduler: Scheduler, cron: CronLoop, gateway: str) -> Snapshot:
    """The scheduler's state now: call on the daemon's event loop."""
    queued = scheduler.state.queue.lengths()
    agents = []
    for name, agent in sorted(scheduler.project.agents.items()):
        scale = agent.scale
        running = tuple(scheduler.running.get(name, {}))
        if scale == 0:
            state = "disabled"
        elif scheduler.paused or name in scheduler.paused_agents:
            state = "paused"
        else:
            state = "running" if running else "idle"
        agents.append(
            AgentStatus(
                name,
                state,
                scale,
                running,
                queued.get(name, 0),
                cron.upcoming.get(name),
                board.last.get(name),
            )
        )
    return Snapshot(
        project=str(scheduler.project.root),
        gateway=gateway,
        paused=scheduler.paused,
        stopping=scheduler.stopping,
        agents=tuple(agents),
        lines=board.recent(),
        now=_now(),
    )


STATE_STYLES = {"idle": "green", "running": "bold cyan", "paused": "yellow", "disabled": "dim"}


def _ago(when: datetime, now: datetime) -> str:
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def _until(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = max(0, int((when - now).total_seconds()))
    clock = when.strftime("%H:%M:%S")
    return f"{clock} (in {seconds}s)" if seconds < 3600 else clock


def render(snap: Snapshot) -> RenderableType:
    """One frame: a header, the agents table, the last lines."""
    status = "stopping" if snap.stopping else ("paused" if snap.paused else "running")
    header = Text.assemble(
        ("al start ", "bold"),
        f"{snap.project}  ",
        ("scheduler ", "dim"),
        (status, "yellow" if status != "running" else "green"),
        ("  gateway ", "dim"),
        snap.gateway,
    )
    table = Table(expand=True, box=None, pad_edge=False, header_style="bold")
    for column in ("agent", "state", "runs", "last run", "queue", "next fire"):
        table.add_column(column, overflow="fold")
    for agent in snap.agents:
        last = "-"
        if agent.last is not None:
            last = f"{agent.last.status} {_ago(agent.last.ended, snap.now)}"
        table.add_row(
            agent.name,
            Text(agent.state, style=STATE_STYLES.get(agent.state, "")),
            " ".join(agent.running) or "-",
            last,
            str(agent.queued),
            _until(agent.next_fire, snap.now),
        )
    if not snap.agents:
        table.add_row("(no agents)", "", "", "", "", "")
    recent = Text("\n".join(snap.lines) if snap.lines else "(nothing yet)", style="dim")
    return Group(header, Text(""), table, Text(""), recent)


async def show_live(frame: Callable[[], Snapshot], console: Console, stop: asyncio.Event) -> None:
    """Redraw `frame()` in the terminal until `stop` is set (or this task is cancelled)."""
    from rich.live import Live

    # auto_refresh off: rich would redraw from its own thread, reading the scheduler mid-change.
    with Live(render(frame()), console=console, auto_refresh=False) as live:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1 / REFRESH_PER_SECOND)
            live.update(render(frame()), refresh=True)
