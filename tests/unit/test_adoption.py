"""Taking back, at start, the runs a killed daemon left: over the fake runtime, with the real
state database, run store and scheduler."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from action_llama.daemon.adoption import Adoption
from action_llama.project import Agent, load_project
from action_llama.runs.service import RunService
from action_llama.runs.store import RunStore
from action_llama.runs.trigger import Trigger
from action_llama.runtimes.base import Limits, RunSpec
from action_llama.scheduler.core import Scheduler
from action_llama.state import Acquired, Call, State
from action_llama.testing import FakeRun, FakeRuntime

from support import write_files

HOST_USER = '[runtime]\ntype = "host-user"\n'


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AL_CREDENTIALS_DIR", str(tmp_path / "creds"))
    # Runs no service follows are looked for here (and not found).
    monkeypatch.setenv("AL_RUNS_DIR", str(tmp_path / "runs"))


def _call(state: State, target: str, run_id: str) -> str:
    made = state.calls.create("caller01", "boss", target, "ctx", max_depth=3)
    assert isinstance(made, Call)
    assert state.calls.start(made.call_id, run_id)
    return made.call_id


def _spec(run_id: str, root: Path, files: Path) -> RunSpec:
    """A run of agent `work` of the project at `root` (its stage: `files`)."""
    return RunSpec(
        run_id=run_id,
        agent="work",
        project=root,
        static_dir=files,
        credentials_dir=files,
        workspace="ws",
        limits=Limits(memory_bytes=2**30, cpus=1),
        timeout=60,
    )


def _left(state: State, store: RunStore, run_id: str, agent: str, lock: str) -> str:
    """A run a dead daemon left: recorded as running, active, holding `lock`, called."""
    store.start(run_id, agent, "manual", "the prompt", "fake", None)
    call_id = _call(state, agent, run_id)
    state.active_runs.add(
        run_id,
        agent,
        runtime="host-user",
        secret=run_id * 3,
        trigger={"type": "manual"},
        call_id=call_id,
    )
    assert isinstance(state.locks.acquire(lock, run_id), Acquired)
    return call_id


def test_left_runs_are_adopted_or_finished_and_their_calls_settled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run the runtime still has is adopted: it holds its agent's runner (new work queues),
    keeps its lock and call until it ends, then completes them. A run the runtime lost is
    recorded as an error, its lock released, its call failed and any process of it left is
    stopped, at once. A gateway on another port than the dead daemon's is warned about."""
    root = tmp_path / "proj"
    write_files(
        root,
        {
            "config.toml": "",
            "agents/work/SKILL.md": "Work.\n",
            "agents/work/test-script.sh": "true\n",
            "agents/work/config.toml": "scale = 1\n" + HOST_USER,
        },
    )
    project = load_project(root)
    state, store = State.open(project.state_dir), RunStore(project.state_dir)
    runtime = FakeRuntime(lambda spec: FakeRun(seconds=0.5, lines=("after restart",)))
    marker = tmp_path / "daemon.json"
    marker.write_text(json.dumps({"pid": 2**22 + 1, "port": 8123}))  # beyond pid_max: dead

    async def scenario() -> dict[str, object]:
        await runtime.start(_spec("alive001", root, tmp_path))
        alive_call = _left(state, store, "alive001", "work", "github://o/r/issues/1")
        gone_call = _left(state, store, "gone0001", "work", "github://o/r/issues/2")

        async def no_image(agent: Agent) -> str | None:
            return None

        def service_for(agent: Agent) -> RunService:
            return RunService(project, runtime, store)

        async def never(*args: object) -> object:
            raise AssertionError("nothing new should be launched")

        scheduler = Scheduler(project, state, never)  # type: ignore[arg-type]
        adopted = await Adoption(state, store, scheduler, service_for).adopt_all(9000, marker)
        seen: dict[str, object] = {
            "adopted": adopted,
            "running": list(scheduler.running.get("work", {})),
            "queued": type(scheduler.dispatch("work", Trigger())).__name__,
            "gone": store.get("gone0001"),
            "gone call": state.calls.get(gone_call),
            "alive call while running": state.calls.get(alive_call),
            "locks while running": {lock.key: lock.holder for lock in state.locks.list()},
        }
        scheduler.stopping = True  # keep the queued item queued (`never` launches nothing)
        await asyncio.wait(list(scheduler.running["work"].values()), timeout=10)
        seen["alive call"] = state.calls.get(alive_call)
        return seen

    # A process of the lost run that no runtime knows of (its pid file is gone, say).
    straggler = subprocess.Popen(["sleep", "60"], env={**os.environ, "AL_RUN_ID": "gone0001"})
    try:
        with caplog.at_level(logging.WARNING, "action_llama"):
            seen = asyncio.run(scenario())
        assert straggler.wait(timeout=10) == -9, "a process of the lost run was left running"
        assert seen["adopted"] == ["alive001"]
        assert seen["running"] == ["alive001"]
        assert seen["queued"] == "Queued"
        gone = seen["gone"]
        assert (gone.status, gone.exit_code) == ("error", None)  # type: ignore[attr-defined]
        assert "gone" in gone.error  # type: ignore[attr-defined]
        gone_call = seen["gone call"]
        assert gone_call.status == "error"  # type: ignore[attr-defined]
        assert "gone" in gone_call.error  # type: ignore[attr-defined]
        assert seen["alive call while running"].status == "running"  # type: ignore[attr-defined]
        assert seen["locks while running"] == {"github://o/r/issues/1": "alive001"}
        assert seen["alive call"].status == "completed"  # type: ignore[attr-defined]
        alive = store.get("alive001")
        assert (alive.status, alive.exit_code) == ("completed", 0)
        assert state.locks.list() == []
        assert state.active_runs.list() == []
        assert any(
            "port 8123" in r.getMessage() and "9000" in r.getMessage() for r in caplog.records
        )
    finally:
        straggler.kill()
        straggler.wait()
        store.close()
        state.close()


def test_what_a_runtime_still_holds_of_an_ended_run_is_removed(tmp_path: Path) -> None:
    """A run recorded as ended whose runtime still has it (its removal failed while the
    engine restarted) is removed by the sweep; a run recorded as running with no scheduler
    row (`al run --local`) and one not recorded yet (starting) are left alone."""
    root = tmp_path / "proj"
    write_files(
        root,
        {
            "config.toml": "",
            "agents/work/SKILL.md": "Work.\n",
            "agents/work/test-script.sh": "true\n",
            "agents/work/config.toml": HOST_USER,
        },
    )
    project = load_project(root)
    state, store = State.open(project.state_dir), RunStore(project.state_dir)
    runtime = FakeRuntime(lambda spec: FakeRun(seconds=60))

    async def scenario() -> tuple[list[str], set[str]]:
        for run_id in ("ended001", "local001", "starting"):
            await runtime.start(
                RunSpec(
                    run_id=run_id,
                    agent="work",
                    project=project.root,
                    static_dir=tmp_path,
                    credentials_dir=tmp_path,
                    workspace="ws",
                    limits=Limits(memory_bytes=2**30, cpus=1),
                    timeout=60,
                )
            )
        for run_id in ("ended001", "local001"):
            store.start(run_id, "work", "manual", None, "host-user", None)
        store.finish("ended001", "completed", 0, None)

        async def never(*args: object) -> object:
            raise AssertionError("nothing new should be launched")

        scheduler = Scheduler(project, state, never)  # type: ignore[arg-type]
        adoption = Adoption(
            state,
            store,
            scheduler,
            lambda agent: RunService(project, runtime, store),
            _runtimes={"host-user": runtime},
        )
        removed = await adoption.remove_ended()
        left = {handle.run_id for handle in await runtime.list_runs(project.root)}
        for run_id in left:
            await runtime.remove(await runtime.adopt(run_id))  # type: ignore[arg-type]
        return removed, left

    try:
        removed, left = asyncio.run(scenario())
    finally:
        state.close()
        store.close()
    assert removed == ["ended001"]
    assert left == {"local001", "starting"}


def test_an_adopted_runs_output_is_redacted_of_the_tokens_its_proxy_swaps_in(
    tmp_path: Path,
) -> None:
    """A run holding placeholders whose upstream echoed the real token back: once adopted by
    another scheduler, its log holds the token redacted, as its launcher would have stored it
    (the values are read from what the proxy holds for the run)."""
    from action_llama.egress.brokering import drop_keys_dir, write_keys
    from action_llama.egress.deploy import project_id
    from action_llama.runs.store import read_log

    token = "ghp_echoedBackByAnUpstream0c41"
    root = tmp_path / "proj"
    write_files(
        root,
        {"config.toml": "", "agents/work/SKILL.md": "Work.\n", "agents/work/test-script.sh": ""},
    )
    project = load_project(root)
    store = RunStore(project.state_dir)
    runtime = FakeRuntime(lambda spec: FakeRun(lines=(f"the API said: token {token}",)))
    row = {"placeholder": "alph_" + "1" * 40, "value": token, "hosts": ["github.com"]}
    write_keys(project_id(root), "echo0001", {}, [row])

    async def scenario() -> None:
        await runtime.start(_spec("echo0001", root, tmp_path))
        store.start("echo0001", "work", "manual", None, "fake", None)
        handle = await runtime.sibling().adopt("echo0001")
        assert handle is not None
        await RunService(project, runtime, store).resume(project.agents["work"], handle)

    try:
        asyncio.run(scenario())
        said = [str(r.get("msg")) for r in read_log(store.log_path("work", "echo0001"))]
    finally:
        drop_keys_dir(project_id(root))
    assert any(m.startswith("the API said: token ") for m in said), said
    assert not any(token in m for m in said), said
