"""Dispatch, scale, the durable queue, reruns, pause and cron, over a fake runtime."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from action_llama.daemon.runner import GatewayLauncher
from action_llama.project import Agent, load_project
from action_llama.runs.service import RunService
from action_llama.runs.store import RunStore
from action_llama.runs.trigger import Trigger
from action_llama.runtimes.base import RunSpec
from action_llama.scheduler.core import Dispatched, Queued, Rejected, Scheduler
from action_llama.scheduler.cron import CronLoop, next_fire
from action_llama.state import Call, State
from action_llama.testing import FakeRun, FakeRuntime

from support import write_files


@pytest.fixture(autouse=True)
def _own_credential_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AL_CREDENTIALS_DIR", str(tmp_path / "creds"))


def project_with(tmp_path: Path, agents: dict[str, str], config: str = "") -> Path:
    files = {"config.toml": config}
    for name, agent_config in agents.items():
        files[f"agents/{name}/SKILL.md"] = "Work.\n"
        files[f"agents/{name}/test-script.sh"] = "true\n"
        files[f"agents/{name}/config.toml"] = agent_config
    root = tmp_path / "proj"
    write_files(root, files)
    return root


async def eventually(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait until `condition()` holds (the scheduler exposes no event for these moments)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.02)


class Harness:
    def __init__(self, root: Path, runtime: FakeRuntime):
        self.project = load_project(root)
        self.state = State.open(self.project.state_dir)
        self.store = RunStore(self.project.state_dir)
        self.runtime = runtime

        async def no_image(agent: Agent) -> str | None:
            return None

        # The daemon's own launch path; nothing here calls the gateway it names.
        launch = GatewayLauncher(
            self.state,
            self.store,
            lambda: 9,
            lambda agent: RunService(self.project, runtime, self.store),
            no_image,
        )
        self.scheduler = Scheduler(self.project, self.state, launch, launch.claim)

    async def settle(self, timeout: float = 10) -> None:
        """Until every run ended and every queue is empty."""
        await eventually(
            lambda: self.scheduler.idle() and not any(self.state.queue.lengths().values()),
            timeout,
        )

    def close(self) -> None:
        self.store.close()
        self.state.close()


@pytest.fixture
def harness_factory(tmp_path: Path) -> Iterator[object]:
    made: list[Harness] = []

    def make(
        agents: dict[str, str],
        config: str = "",
        run: FakeRun | None = None,
        behaviour: object = None,
    ) -> Harness:
        runtime = FakeRuntime(behaviour or (lambda spec: run or FakeRun()))  # type: ignore[arg-type]
        harness = Harness(project_with(tmp_path, agents, config), runtime)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


def test_scale_2_runs_two_at_once_and_queues_the_rest(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """Five deliveries to a scale-2 agent: 2 start, 3 wait in the queue, then all run."""
    h = harness_factory({"worker": "scale = 2\n"}, run=FakeRun(seconds=0.2))

    async def scenario() -> list[object]:
        decisions = [h.scheduler.dispatch("worker", Trigger()) for _ in range(5)]
        await h.settle()
        return decisions

    decisions = asyncio.run(scenario())
    assert [type(d) for d in decisions] == [Dispatched, Dispatched, Queued, Queued, Queued]
    assert len(h.runtime.started) == 5
    assert h.runtime.max_concurrent["worker"] == 2
    assert len(h.store.runs("worker", limit=10)) == 5


def test_full_queue_drops_the_oldest_and_records_it(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """With maxWorkQueueSize = 2, a fourth waiting item pushes out the oldest, recorded."""
    h = harness_factory({"worker": "maxWorkQueueSize = 2\n"}, run=FakeRun(seconds=0.3))

    async def scenario() -> list[object]:
        decisions = [h.scheduler.dispatch("worker", Trigger(prompt=f"p{i}")) for i in range(4)]
        await h.settle()
        return decisions

    decisions = asyncio.run(scenario())
    assert isinstance(decisions[3], Queued)
    assert [d.summary for d in decisions[3].dropped] == ["manual prompt: p1"]
    assert [d.summary for d in h.state.queue.drops("worker")] == ["manual prompt: p1"]
    prompts = [r.prompt for r in h.store.runs("worker", limit=10)]
    assert sorted(p or "" for p in prompts) == ["p0", "p2", "p3"]


def test_queued_work_survives_a_restart(harness_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Items queued when the scheduler goes away run when a new one drains at start."""
    h = harness_factory({"worker": ""}, run=FakeRun(seconds=5))

    async def first() -> None:
        h.scheduler.dispatch("worker", Trigger())
        h.scheduler.dispatch("worker", Trigger(prompt="later"))
        await h.scheduler.shutdown(grace=0)

    asyncio.run(first())
    assert h.state.queue.len("worker") == 1
    again = Harness(tmp_path / "proj", FakeRuntime(lambda spec: FakeRun()))
    try:

        async def second() -> list[str]:
            started = again.scheduler.drain()
            await again.settle()
            return started

        assert len(asyncio.run(second())) == 1
        assert any(r.prompt == "later" for r in again.store.runs("worker", limit=5))
    finally:
        again.close()


def test_exit_42_reruns_up_to_max_reruns(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """A schedule run that keeps asking to rerun runs 1 + maxReruns times."""
    h = harness_factory({"looper": ""}, config="maxReruns = 2\n", run=FakeRun(exit_code=42))

    async def scenario() -> None:
        h.scheduler.dispatch("looper", Trigger(type="schedule"))
        await h.settle()

    asyncio.run(scenario())
    assert len(h.runtime.started) == 3
    assert [r.trigger for r in h.store.runs("looper")] == ["schedule"] * 3


def test_an_agent_call_runs_as_one_and_is_told_who_called(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """A call's trigger goes through the launch unchanged: the run is recorded as an
    agent-call, its trigger.json names the caller and the context, and the call completes
    with the run."""
    told: list[dict[str, object]] = []

    def behaviour(spec: RunSpec) -> FakeRun:
        told.append(json.loads((spec.static_dir / "trigger.json").read_text()))
        return FakeRun()

    h = harness_factory({"helper": ""}, behaviour=behaviour)
    made = h.state.calls.create("run-x", "planner", "helper", "fix it", max_depth=3)
    assert isinstance(made, Call)
    call = Trigger(
        type="agent-call",
        caller="planner",
        context="fix it",
        depth=made.depth,
        call_id=made.call_id,
    )

    async def scenario() -> None:
        h.scheduler.dispatch("helper", call)
        await h.settle()

    asyncio.run(scenario())
    assert told == [{"type": "agent-call", "context": "fix it", "caller": "planner"}]
    assert [r.trigger for r in h.store.runs("helper")] == ["agent-call"]
    done = h.state.calls.get(made.call_id)
    assert done is not None
    assert (done.status, done.target_run) == ("completed", h.store.runs("helper")[0].run_id)


def test_webhook_runs_are_not_rerun(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """Exit 42 of a webhook run ends it (reruns are for schedule and manual runs)."""
    h = harness_factory({"hooked": ""}, run=FakeRun(exit_code=42))

    async def scenario() -> None:
        h.scheduler.dispatch("hooked", Trigger(type="webhook", context={"x": 1}))
        await h.settle()

    asyncio.run(scenario())
    assert len(h.runtime.started) == 1


def test_pause_refuses_or_queues_and_resume_drains(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """Global pause refuses new work; a paused agent queues it; resuming runs what waited."""
    h = harness_factory({"worker": ""})

    async def scenario() -> tuple[object, object, list[str]]:
        h.scheduler.pause()
        refused = h.scheduler.dispatch("worker", Trigger())
        h.scheduler.resume()
        h.scheduler.pause("worker")
        queued = h.scheduler.dispatch("worker", Trigger())
        started = h.scheduler.resume("worker")
        await h.settle()
        return refused, queued, started

    refused, queued, started = asyncio.run(scenario())
    assert refused == Rejected("the scheduler is paused")
    assert isinstance(queued, Queued)
    assert len(started) == 1
    assert len(h.runtime.started) == 1


def test_webhooks_arriving_while_paused_wait_and_run_on_resume(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """A paused scheduler queues webhooks and agent calls (maintenance loses no work); they
    run once it resumes."""
    h = harness_factory({"worker": ""})

    async def scenario() -> tuple[object, object, list[str]]:
        h.scheduler.pause()
        webhook = h.scheduler.dispatch("worker", Trigger(type="webhook", summary="push"))
        call = h.scheduler.dispatch("worker", Trigger(type="agent-call", caller="boss"))
        started = h.scheduler.resume()
        await h.settle()
        return webhook, call, started

    webhook, call, started = asyncio.run(scenario())
    assert isinstance(webhook, Queued)
    assert isinstance(call, Queued)
    assert len(started) == 1  # scale 1: the call waits for the webhook's run
    assert len(h.runtime.started) == 2


def test_kill_stops_an_agents_runs(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """Killing an agent cancels its runs; they are recorded as killed."""
    h = harness_factory({"long": ""}, run=FakeRun(seconds=30))

    async def scenario() -> list[str]:
        decision = h.scheduler.dispatch("long", Trigger())
        assert isinstance(decision, Dispatched)
        await eventually(lambda: bool(h.runtime.running))
        killed = h.scheduler.kill("long")
        await h.settle()
        return killed

    killed = asyncio.run(scenario())
    assert len(killed) == 1
    assert h.store.get(killed[0]).status == "killed"


def test_project_scale_is_a_cap_across_agents_not_a_partition(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """With the project's scale = 2, agents late in the alphabet run too: never more than 2
    runs at once across the project, the rest queued and started oldest first as runs end,
    each agent within its own scale; and the gateway refuses no agent's work."""
    from action_llama.credentials.store import CredentialStore
    from action_llama.gateway import GatewaySettings

    agents = {"a": "scale = 2\n", "b": "scale = 2\n", "y": "", "z": "scale = 3\n"}
    h = harness_factory(agents, config="scale = 2\n", run=FakeRun(seconds=0.2))
    order = ["z", "y", "a", "z", "b", "a", "y", "z"]
    peak = 0

    async def scenario() -> list[object]:
        nonlocal peak
        decisions = [h.scheduler.dispatch(name, Trigger()) for name in order]

        def settled() -> bool:
            nonlocal peak
            peak = max(peak, sum(h.runtime.concurrent(n) for n in agents))
            return h.scheduler.idle() and not any(h.state.queue.lengths().values())

        await eventually(settled)
        return decisions

    decisions = asyncio.run(scenario())
    assert [type(d) for d in decisions] == [Dispatched, Dispatched] + [Queued] * 6
    assert peak == 2
    # Queued work started in the order it arrived.
    assert [spec.agent for spec in h.runtime.started] == order
    assert all(h.runtime.max_concurrent[name] <= 2 for name in agents)
    settings = GatewaySettings.from_project(h.project, CredentialStore())
    assert settings.disabled == frozenset()


def test_a_project_scale_of_0_disables_every_agent(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """The project's scale = 0: every agent is refused, by the scheduler and the gateway alike."""
    from action_llama.credentials.store import CredentialStore
    from action_llama.gateway import GatewaySettings

    h = harness_factory({"a": "scale = 2\n", "b": ""}, config="scale = 0\n")
    decision = asyncio.run(_dispatch_in_loop(h.scheduler, "a"))
    assert decision == Rejected("agent a is disabled (the project's scale is 0)")
    assert GatewaySettings.from_project(h.project, CredentialStore()).disabled == {"a", "b"}


async def _dispatch_in_loop(scheduler: Scheduler, agent: str) -> object:
    return scheduler.dispatch(agent, Trigger())


def test_unknown_and_disabled_agents_are_refused(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """Dispatch to an unknown or scale-0 agent says why."""
    h = harness_factory({"off": "scale = 0\n"})

    async def scenario() -> tuple[object, object]:
        return (
            h.scheduler.dispatch("nope", Trigger()),
            h.scheduler.dispatch("off", Trigger()),
        )

    unknown, off = asyncio.run(scenario())
    assert unknown == Rejected('agent "nope" not found')
    assert off == Rejected("agent off is disabled (scale = 0)")


def test_cron_with_seconds_fires_a_run(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """A 6-field schedule firing every second starts schedule runs."""
    h = harness_factory({"ticker": 'schedule = "* * * * * *"\n'})

    async def scenario() -> None:
        loop = CronLoop(h.scheduler)
        task = asyncio.create_task(loop.run())
        await eventually(lambda: bool(h.runtime.started), timeout=5)
        await h.scheduler.shutdown(grace=5)
        await task

    asyncio.run(scenario())
    assert h.runtime.started
    assert h.store.runs("ticker")[0].trigger == "schedule"


def test_one_agent_whose_trigger_fails_never_stops_the_others_schedules(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """When firing one agent's schedule raises (its queue's disk is full, say), the cron loop
    logs it and goes on: the other agent's schedule keeps firing, and so does its own."""
    h = harness_factory({"bad": 'schedule = "* * * * * *"\n', "good": 'schedule = "* * * * * *"\n'})
    attempts: list[str] = []
    dispatch = h.scheduler.dispatch

    def failing(name: str, item: Trigger) -> object:
        attempts.append(name)
        if name == "bad":
            raise OSError(28, "No space left on device")
        return dispatch(name, item)

    h.scheduler.dispatch = failing

    async def scenario() -> None:
        loop = CronLoop(h.scheduler)
        task = asyncio.create_task(loop.run())
        await eventually(lambda: attempts.count("bad") >= 2 and len(h.store.runs("good")) >= 2)
        await h.scheduler.shutdown(grace=5)
        await task

    asyncio.run(scenario())


def test_next_fire_of_a_schedule_that_never_fires_is_none() -> None:
    """A date that does not exist never comes: no next fire time (the loop drops it)."""
    assert next_fire("0 0 31 2 *", datetime(2026, 1, 1)) is None


def test_next_fire_reads_five_and_six_field_schedules() -> None:
    """Five fields are minute-based; six have seconds first (like the original's croner)."""
    start = datetime(2026, 1, 1, 12, 0, 0)
    assert next_fire("*/15 * * * *", start) == datetime(2026, 1, 1, 12, 15)
    assert next_fire("30 * * * * *", start) == datetime(2026, 1, 1, 12, 0, 30)
