"""What `al start` shows: the live view's frame, and the plain lines of `--headless`."""

from __future__ import annotations

import asyncio
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from action_llama.daemon.view import (
    AgentStatus,
    Board,
    LastRun,
    Snapshot,
    headless_sink,
    render,
    snapshot,
)
from action_llama.project import load_project
from action_llama.runs.service import RunOutcome
from action_llama.runs.trigger import Trigger
from action_llama.runtimes.base import RunResult
from action_llama.scheduler.core import Scheduler
from action_llama.scheduler.cron import CronLoop
from action_llama.state import State

from support import write_files

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def text_of(snap: Snapshot, width: int = 120) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(render(snap))
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def row(text: str, agent: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(agent + " "))


def test_frame_shows_each_agents_state_runs_last_result_queue_and_next_fire() -> None:
    """One line per agent with its state, running run ids, last result and when, queue length
    and next cron fire; the gateway address in the header; the last lines underneath."""
    snap = Snapshot(
        project="/srv/proj",
        gateway="127.0.0.1:8080",
        paused=False,
        stopping=False,
        agents=(
            AgentStatus(
                "dev",
                "running",
                2,
                ("ab12cd34", "ef56ab78"),
                3,
                NOW + timedelta(seconds=40),
                LastRun("00ff00ff", "completed", NOW - timedelta(seconds=90), 4.2),
            ),
            AgentStatus("ops", "paused", 1, (), 0, None, None),
            AgentStatus("off", "disabled", 0, (), 0, None, None),
        ),
        lines=("dev ab12cd34 started (webhook)", "warning: schedule of ops skipped: paused"),
        now=NOW,
    )
    text = text_of(snap)
    assert "/srv/proj" in text
    assert "gateway 127.0.0.1:8080" in text
    dev = row(text, "dev")
    assert re.search(
        r"running\s+ab12cd34 ef56ab78\s+completed 1m ago\s+3\s+12:00:40 \(in 40s\)", dev
    )
    assert re.search(r"ops\s+paused\s+-\s+-\s+0\s+-", row(text, "ops"))
    assert "disabled" in row(text, "off")
    assert text.rstrip().endswith("warning: schedule of ops skipped: paused")


def test_frame_of_a_paused_scheduler_with_no_agents_says_so() -> None:
    """A paused scheduler shows "paused" in the header, and an empty project "(no agents)"."""
    snap = Snapshot("/p", "127.0.0.1:1", True, False, (), (), NOW)
    text = text_of(snap, width=80)
    assert "scheduler paused" in text
    assert "(no agents)" in text
    assert "(nothing yet)" in text


def test_snapshot_reads_states_and_queue_from_the_scheduler(tmp_path: Path) -> None:
    """The frame comes from the scheduler and its state: paused, disabled and idle agents,
    queue lengths from the durable queue, next fires from the cron loop."""
    write_files(
        tmp_path,
        {
            "config.toml": "",
            "agents/a/SKILL.md": "A.\n",
            "agents/a/config.toml": 'schedule = "*/5 * * * *"\n',
            "agents/b/SKILL.md": "B.\n",
            "agents/c/SKILL.md": "C.\n",
            "agents/c/config.toml": "scale = 0\n",
        },
    )
    project = load_project(tmp_path)
    state = State.open(tmp_path / ".al")
    try:

        async def never(*_: object) -> RunOutcome:
            raise AssertionError("nothing runs here")

        scheduler = Scheduler(project, state, never)
        scheduler.pause("b")
        state.queue.push("b", Trigger())
        cron = CronLoop(scheduler)
        cron.reload()
        snap = snapshot(Board(), scheduler, cron, "127.0.0.1:9")
    finally:
        state.close()
    states = {a.name: (a.state, a.queued, a.next_fire is not None) for a in snap.agents}
    assert states == {
        "a": ("idle", 0, True),
        "b": ("paused", 1, False),
        "c": ("disabled", 0, False),
    }


def test_board_tracks_runs_and_headless_lines_carry_a_timestamp(tmp_path: Path) -> None:
    """Headless, every line (a run starting, ending, multi-line messages) is written at once
    with the local time in front; the board remembers each agent's last result."""
    out = io.StringIO()
    board = Board(headless_sink(out))
    write_files(tmp_path, {"config.toml": "", "agents/dev/SKILL.md": "Dev.\n"})
    agent = load_project(tmp_path).agents["dev"]

    async def launch(agent: object, item: Trigger, run_id: str, rerun: int) -> RunOutcome:
        return RunOutcome(
            run_id, "dev", RunResult(exit_code=1, status="failed"), 0.4, tmp_path, "it broke"
        )

    asyncio.run(board.track(launch)(agent, Trigger(type="schedule"), "r1", 0))
    board.note("reload: error: bad\nreload: still running the previous project")
    lines = out.getvalue().splitlines()
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    assert [re.sub(stamp, "", line) for line in lines] == [
        "dev r1 started (schedule)",
        "dev r1 failed in 0.4s: it broke",
        "reload: error: bad",
        "reload: still running the previous project",
    ]
    assert all(re.match(stamp, line) for line in lines)
    assert board.last["dev"].status == "failed"


def test_board_keeps_only_the_last_lines() -> None:
    """The live view shows the most recent lines only."""
    board = Board(keep=3)
    for n in range(10):
        board.note(f"line {n}")
    assert board.recent() == ("line 7", "line 8", "line 9")


def test_board_starts_from_each_agents_last_recorded_result(tmp_path: Path) -> None:
    """Runs that ended before the daemon started give the view its "last run" column; a run
    still recorded as running does not."""
    from action_llama.runs.store import RunStore

    store = RunStore(tmp_path)
    try:
        store.start("old", "dev", "manual", None, "docker", None)
        store.finish("old", "completed", 0, None)
        store.start("open", "ops", "manual", None, "docker", None)
        board = Board()
        board.seed([*store.runs("dev", limit=1), *store.runs("ops", limit=1)])
    finally:
        store.close()
    assert board.last["dev"].run_id == "old"
    assert board.last["dev"].status == "completed"
    assert "ops" not in board.last
