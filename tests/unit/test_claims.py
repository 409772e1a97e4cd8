"""Work a fault interrupts between taking it and recording its run goes back to the queue:
the pop and the run's claim commit together, a run that cannot be recorded (disk full) gives
its trigger back, and a claim a killed daemon left is requeued at the next start (or sweep)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from action_llama.daemon.adoption import Adoption
from action_llama.daemon.runner import GatewayLauncher
from action_llama.errors import StateError
from action_llama.project import Agent, load_project
from action_llama.runs.service import RunService
from action_llama.runs.store import RunStore
from action_llama.runs.trigger import Trigger
from action_llama.scheduler.core import Dispatched, Scheduler
from action_llama.state import State
from action_llama.testing import FakeRuntime

from support import write_files

WEBHOOK = Trigger(type="webhook", context={"title": "d1"}, summary="soak d1")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("AL_CREDENTIALS_DIR", str(tmp_path / "creds"))
    root = tmp_path / "proj"
    write_files(
        root,
        {
            "config.toml": "",
            "agents/hook/SKILL.md": "Work.\n",
            "agents/hook/test-script.sh": "true\n",
            "agents/hook/config.toml": "scale = 1\n",
        },
    )
    return load_project(root)


def parts(project: object) -> tuple[State, RunStore, GatewayLauncher, Scheduler]:
    state = State.open(project.state_dir)  # type: ignore[attr-defined]
    store = RunStore(project.state_dir, database=state.db)  # type: ignore[attr-defined]

    async def no_image(agent: Agent) -> str | None:
        return None

    runtime = FakeRuntime()
    launcher = GatewayLauncher(
        state,
        store,
        lambda: 1,
        lambda agent: RunService(project, runtime, store),
        no_image,  # type: ignore[arg-type]
    )
    return state, store, launcher, Scheduler(project, state, launcher, launcher.claim)  # type: ignore[arg-type]


def test_a_claim_that_cannot_be_written_leaves_the_item_queued(project: object) -> None:
    """The pop and the claim are one transaction: a claim failing (disk full) un-pops."""
    state, _store, launcher, scheduler = parts(project)

    def full(agent: Agent, item: Trigger, run_id: str) -> None:
        launcher.claim(agent, item, run_id)
        raise StateError("disk full")

    async def scenario() -> list[str]:
        scheduler.pause()
        scheduler.dispatch("hook", WEBHOOK)
        scheduler.paused = False
        scheduler.claim = full
        return scheduler.drain()

    assert asyncio.run(scenario()) == []
    assert state.queue.lengths() == {"hook": 1}
    assert state.active_runs.list() == []
    state.close()


def test_a_run_that_cannot_be_recorded_gives_its_item_back(project: object) -> None:
    """A StateError before the run's record (the disk full at store.start) requeues the item
    and forgets the claim; no run is recorded, nothing is started."""
    state, store, _launcher, scheduler = parts(project)
    real_start = store.start

    def full(*args: object) -> None:
        raise StateError("disk full")

    store.start = full  # type: ignore[method-assign]

    async def scenario() -> object:
        decision = scheduler.dispatch("hook", WEBHOOK)
        await asyncio.wait(list(scheduler.running["hook"].values()), timeout=10)
        return decision

    assert isinstance(asyncio.run(scenario()), Dispatched)
    store.start = real_start  # type: ignore[method-assign]
    assert state.active_runs.list() == []
    [queued] = state.queue.list("hook")
    assert queued.trigger == WEBHOOK
    assert store.runs("hook") == []
    state.close()


def test_a_claim_left_by_a_killed_daemon_is_queued_again(project: object) -> None:
    """A claim with no run record (the daemon was killed between taking the work and
    recording its run) is requeued by the next daemon's adoption, then runs; the claimed
    run's id gets a record saying it never began."""
    state, store, launcher, scheduler = parts(project)
    launcher.claim(project.agents["hook"], WEBHOOK, "killed01")  # type: ignore[attr-defined]

    async def scenario() -> list[str]:
        adoption = Adoption(state, store, scheduler, launcher.service_for)
        adopted = await adoption.adopt_all(1, Path("/nonexistent/daemon.json"))
        assert state.queue.lengths() == {"hook": 1}
        started = scheduler.drain()
        await asyncio.wait(list(scheduler.running["hook"].values()), timeout=10)
        return adopted + started

    [started] = asyncio.run(scenario())
    assert store.get(started).status == "completed"
    # Its id may have been announced (a webhook's answer names it): its record says why it
    # did not run.
    killed = store.get("killed01")
    assert killed.status == "error"
    assert "never began" in (killed.error or "")
    assert state.queue.lengths() == {}
    assert state.active_runs.list() == []
    state.close()


def test_a_recorded_run_that_never_printed_and_is_gone_is_closed_and_queued_again(
    project: object,
) -> None:
    """A run recorded but with no output, which its runtime no longer has (the daemon was
    killed between creating its container and starting it, and the next one removed it), is
    closed as never having run, and its work queued again."""
    state, store, launcher, scheduler = parts(project)
    launcher.claim(project.agents["hook"], WEBHOOK, "created1")  # type: ignore[attr-defined]
    store.start("created1", "hook", "webhook", None, "fake", None)

    async def scenario() -> list[str]:
        adoption = Adoption(state, store, scheduler, launcher.service_for)
        return await adoption.adopt_all(1, Path("/nonexistent/daemon.json"))

    assert asyncio.run(scenario()) == []
    record = store.get("created1")
    assert record.status == "error"
    assert "queued again" in (record.error or "")
    assert [q.trigger for q in state.queue.list("hook")] == [WEBHOOK]
    assert state.active_runs.list() == []
    state.close()
