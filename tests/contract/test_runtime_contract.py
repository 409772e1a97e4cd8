"""The Runtime contract, run against every implementation: docker, host-user, swarm (a real
one-node swarm and registry) and the fake the scheduler's tests rely on
(`action_llama.testing.FakeRuntime`).

Each test drives a runtime directly with a RunSpec built here (agent files, staged
credentials), the way the run service does, and checks what every runtime must do alike. What
a run does is written once (`Script`): a shell script for the real runtimes, a `FakeRun` for
the fake.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from action_llama.runtimes.base import Limits, RunHandle, RunResult, RunSpec, Runtime
from action_llama.testing import FakeRun, FakeRuntime

from support import cleanup_project, swarm_objects


@dataclass(frozen=True)
class Script:
    """What a run does: print `first` (and `stderr`), pause, print `then`, exit."""

    first: tuple[str, ...] = ()
    stderr: tuple[str, ...] = ()
    pause: float = 0
    then: tuple[str, ...] = ()
    exit_code: int = 0

    def bash(self) -> str:
        steps = [f"echo {line}" for line in self.first]
        steps += [f"echo {line} >&2" for line in self.stderr]
        steps += [f"sleep {self.pause:g}"] if self.pause else []
        steps += [f"echo {line}" for line in self.then]
        steps += [f"exit {self.exit_code}"] if self.exit_code else []
        return "; ".join(steps) or "true"

    def fake(self) -> FakeRun:
        return FakeRun(
            exit_code=self.exit_code,
            seconds=self.pause,
            lines=self.first,
            stderr=self.stderr,
            later=self.then,
        )


@dataclass
class Case:
    """One runtime, ready to run specs, and how to tell that a run left nothing behind."""

    kind: str
    runtime: Runtime
    project: Path
    owner: tuple[int, int]
    image: str | None = None
    user: str | None = None
    runs_root: Path | None = None
    docker: Any = None
    scratch: list[Path] = field(default_factory=list)
    #: A new runtime object of the same kind (as a restarted scheduler would make).
    fresh: Callable[[], Runtime] | None = None
    #: What each fake run does, by run id.
    plans: dict[str, FakeRun] = field(default_factory=dict)

    def spec(self, script: Script, *, entry_timeout: int = 60) -> RunSpec:
        """A run of `script` in script mode; the entry stops it after `entry_timeout` s."""
        run_id = secrets.token_hex(4)
        self.plans[run_id] = script.fake()
        stage = Path(tempfile.mkdtemp(prefix=f"al-contract-{run_id}-"))
        self.scratch.append(stage)
        static = stage / "static"
        static.mkdir(mode=0o755)
        config = {"name": "contract", "timeout": entry_timeout, "hooks": {}, "credentials": []}
        files = {
            "agent-config.json": json.dumps(config),
            "SKILL.md": "---\ndescription: contract\n---\nRun.\n",
            "test-script.sh": script.bash(),
        }
        for name, text in files.items():
            (static / name).write_text(text, encoding="utf-8")
            (static / name).chmod(0o644)
        # Like the run service's staging: a private directory in /dev/shm, the run's user's.
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        credentials = Path(tempfile.mkdtemp(prefix=f"al-contract-creds-{run_id}-", dir=shm))
        self.scratch.append(credentials)
        os.chown(credentials, *self.owner)
        return RunSpec(
            run_id=run_id,
            agent="contract",
            project=self.project,
            image=self.image,
            static_dir=static,
            credentials_dir=credentials,
            workspace=str(self.project / ".al" / "workspaces" / "contract"),
            user=self.user,
            limits=Limits(memory_bytes=512 * 1024**2, cpus=1),
            timeout=entry_timeout,
        )

    def leftovers(self, handle: RunHandle) -> list[str]:
        """What of the run still exists after `remove`."""
        if isinstance(self.runtime, FakeRuntime):
            return [handle.run_id] if handle.run_id in self.runtime.running else []
        if self.kind == "docker":
            found = self.docker.api.containers(
                all=True, filters={"label": f"al.run={handle.run_id}"}
            )
            return [c["Id"] for c in found]
        if self.kind == "swarm":
            left = swarm_objects(self.docker, f"al.run={handle.run_id}")
            return [name for names in left.values() for name in names]
        assert self.runs_root is not None
        paths = [self.runs_root / handle.run_id]
        paths += [self.runs_root / f"{handle.run_id}.{ext}" for ext in ("pid", "log", "static")]
        return [str(p) for p in paths if p.exists()]


@pytest.fixture(
    params=[
        pytest.param("docker", marks=pytest.mark.docker),
        pytest.param("swarm", marks=pytest.mark.docker),
        pytest.param("host-user"),
        pytest.param("fake"),
    ]
)
def case(request: pytest.FixtureRequest, tmp_path: Path, runs_root: Path) -> Iterator[Case]:
    project = tmp_path / "project"
    project.mkdir()
    if request.param == "docker":
        from action_llama.runtimes.docker import DockerRuntime

        client = request.getfixturevalue("docker_client")
        image = request.getfixturevalue("base_image")
        made = Case("docker", DockerRuntime(client), project, (1000, 1000), image=image)
        made.docker = client
        made.fresh = lambda: DockerRuntime(client)
    elif request.param == "swarm":
        from action_llama.runtimes.swarm import SwarmRuntime

        client = request.getfixturevalue("docker_client")
        image = request.getfixturevalue("swarm_image")
        # `al` reads the staged files itself, to make them the run's secrets and configs.
        owner = (os.geteuid(), os.getegid())
        made = Case("swarm", SwarmRuntime(client), project, owner, image=image)
        made.docker = client
        made.fresh = lambda: SwarmRuntime(client)
    elif request.param == "fake":
        made = Case("fake", FakeRuntime(), project, (os.geteuid(), os.getegid()))
        fake = made.runtime
        assert isinstance(fake, FakeRuntime)
        fake.behaviour = lambda spec: made.plans[spec.run_id]
        made.fresh = fake.sibling
    else:
        import pwd

        from action_llama.runtimes.host_user import HostUserRuntime

        user = request.getfixturevalue("host_users")[0]
        entry = pwd.getpwnam(user)
        made = Case(
            "host-user",
            HostUserRuntime(runs_dir=runs_root),
            project,
            (entry.pw_uid, entry.pw_gid),
            user=user,
            runs_root=runs_root,
        )
        made.fresh = lambda: HostUserRuntime(runs_dir=runs_root)
    yield made
    if made.docker is not None:
        cleanup_project(made.docker, project)
    for path in made.scratch:
        shutil.rmtree(path, ignore_errors=True)


async def _run(case: Case, spec: RunSpec, timeout: float) -> tuple[RunResult, list[str], float]:
    """Start `spec`, collect its output while waiting; (result, lines, seconds), removed."""
    started = time.monotonic()
    handle = await case.runtime.start(spec)
    try:
        lines: list[str] = []

        async def collect() -> None:
            async for line in case.runtime.logs(handle):
                lines.append(line)

        pump = asyncio.ensure_future(collect())
        result = await case.runtime.wait(handle, timeout)
        elapsed = time.monotonic() - started
        await asyncio.wait_for(pump, 10)
    finally:
        await case.runtime.remove(handle)
    return result, lines, elapsed


def _records(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def _script_lines(lines: list[str]) -> list[str]:
    return [r["msg"] for r in _records(lines) if r.get("source") == "script"]


async def _wait_for_line(handle: RunHandle, runtime: Runtime, text: str) -> None:
    async for line in runtime.logs(handle):
        if text in line:
            return
    raise AssertionError(f"the run ended without printing {text!r}")


def test_output_streams_in_order_as_protocol_records(case: Case) -> None:
    """Every line arrives, in order, as the entry's JSON records: start, script lines, end."""
    script = Script(first=tuple(f"line-{i}" for i in range(1, 31)), stderr=("to-stderr",))
    result, lines, _ = asyncio.run(_run(case, case.spec(script), 60))
    assert result == RunResult(exit_code=0, status="completed")
    records = _records(lines)
    assert len(records) == len(lines)
    assert all(r["_log"] is True and {"level", "msg", "ts"} <= r.keys() for r in records)
    assert records[0]["msg"] in ("container starting", "run starting")
    assert records[-1]["msg"] == "run completed"
    script = [r for r in records if r.get("source") == "script"]
    # stdout and stderr are two pipes: each keeps its order, not their interleaving.
    assert [r["msg"] for r in script if r["stream"] == "stdout"] == [
        f"line-{i}" for i in range(1, 31)
    ]
    assert [r["msg"] for r in script if r["stream"] == "stderr"] == ["to-stderr"]


def test_exit_code_is_the_scripts(case: Case) -> None:
    """The run's exit code is the script's; non-zero is "failed", 42 is "rerun"."""
    failed, _, _ = asyncio.run(_run(case, case.spec(Script(first=("bye",), exit_code=3)), 60))
    assert (failed.exit_code, failed.status) == (3, "failed")
    rerun, _, _ = asyncio.run(_run(case, case.spec(Script(exit_code=42)), 60))
    assert (rerun.exit_code, rerun.status) == (42, "rerun")


def test_entry_timeout_gives_124_and_timeout(case: Case) -> None:
    """The entry's own timer ends a run past its timeout: exit 124, status timeout, logged."""
    spec = case.spec(Script(("started",), pause=60, then=("never",)), entry_timeout=1)
    result, lines, elapsed = asyncio.run(_run(case, spec, 1))
    assert result == RunResult(exit_code=124, status="timeout", timed_out=True)
    assert elapsed < 10
    assert "never" not in _script_lines(lines)
    assert any("timeout reached after 1s" in r["msg"] for r in _records(lines))


def test_runtime_timeout_stops_a_run_whose_entry_does_not(case: Case) -> None:
    """When the entry's timer is later than the host's, the runtime stops the run at its
    timeout (plus a short grace) and reports exit 124."""
    spec = case.spec(Script(("started",), pause=60), entry_timeout=300)
    result, lines, elapsed = asyncio.run(_run(case, spec, 1))
    assert result == RunResult(exit_code=124, status="timeout", timed_out=True)
    assert elapsed < 15
    assert "started" in _script_lines(lines)


def test_stop_ends_the_run_within_seconds_and_reports_killed(case: Case) -> None:
    """`stop` ends a running run promptly; `wait` then reports it killed, with a signal exit."""

    async def scenario() -> tuple[RunResult, float, list[str]]:
        handle = await case.runtime.start(
            case.spec(Script(("started",), pause=60), entry_timeout=300)
        )
        try:
            await asyncio.wait_for(_wait_for_line(handle, case.runtime, "started"), 30)
            sent = time.monotonic()
            await case.runtime.stop(handle, grace=5)
            result = await case.runtime.wait(handle, 30)
            lines = [line async for line in case.runtime.logs(handle)]
            return result, time.monotonic() - sent, lines
        finally:
            await case.runtime.remove(handle)

    result, elapsed, lines = asyncio.run(scenario())
    assert elapsed < 8
    assert result.status == "killed"
    assert result.exit_code in (130, 137, 143)
    assert any("stop requested" in r["msg"] for r in _records(lines))


def test_list_runs_shows_a_started_run_and_remove_leaves_nothing(case: Case) -> None:
    """A started run is listed (for its project, not another); after `remove` it is gone:
    no container, or no work dir, pid file or log."""

    async def listed(project: Path) -> list[str]:
        return [h.run_id for h in await case.runtime.list_runs(project)]

    async def scenario() -> dict[str, Any]:
        handle = await case.runtime.start(case.spec(Script(pause=1)))
        seen = {"run_id": handle.run_id, "running": await listed(case.project)}
        seen["elsewhere"] = await listed(case.project / "other")
        await case.runtime.wait(handle, 30)
        seen["ended"] = await listed(case.project)
        await case.runtime.remove(handle)
        seen["removed"] = await listed(case.project)
        seen["leftovers"] = case.leftovers(handle)
        return seen

    seen = asyncio.run(scenario())
    assert seen["run_id"] in seen["running"]
    assert seen["run_id"] not in seen["elsewhere"]
    assert seen["run_id"] in seen["ended"], "an ended run stays listed until it is removed"
    assert seen["run_id"] not in seen["removed"]
    assert seen["leftovers"] == []


def test_logs_of_an_ended_run_are_complete(case: Case) -> None:
    """Asking for the logs after the run ended still gives every line from the start."""

    async def scenario() -> list[str]:
        handle = await case.runtime.start(case.spec(Script(("first", "second"))))
        try:
            await case.runtime.wait(handle, 30)
            return [line async for line in case.runtime.logs(handle)]
        finally:
            await case.runtime.remove(handle)

    lines = asyncio.run(scenario())
    assert _script_lines(lines) == ["first", "second"]
    assert _records(lines)[-1]["msg"] == "run completed"


def test_another_runtime_object_adopts_a_run_by_id(case: Case) -> None:
    """A run started by one runtime object is found by id by another (a restarted scheduler):
    its logs replay from the start and go on, `wait` gives the script's exit code, `remove`
    frees it; an unknown id is not found."""
    assert case.fresh is not None

    async def scenario() -> tuple[RunHandle | None, RunResult, list[str], list[str]]:
        spec = case.spec(Script(("first",), pause=3, then=("second",), exit_code=3))
        handle = await case.runtime.start(spec)
        try:
            await asyncio.wait_for(_wait_for_line(handle, case.runtime, "first"), 30)
            later = case.fresh()
            adopted = await later.adopt(spec.run_id)
            assert adopted is not None
            lines = [line async for line in later.logs(adopted)]
            result = await later.wait(adopted, 30)
            await later.remove(adopted)
            return await later.adopt("0000dead"), result, lines, case.leftovers(handle)
        finally:
            await case.runtime.remove(handle)

    unknown, result, lines, leftovers = asyncio.run(scenario())
    assert unknown is None
    assert result == RunResult(exit_code=3, status="failed")
    assert _script_lines(lines) == ["first", "second"]
    assert leftovers == []


def test_an_adopted_run_can_be_stopped(case: Case) -> None:
    """`stop` through a runtime object that adopted the run ends it within seconds, and
    `wait` reports it killed."""
    assert case.fresh is not None

    async def scenario() -> tuple[RunResult, float]:
        spec = case.spec(Script(("started",), pause=60), entry_timeout=300)
        handle = await case.runtime.start(spec)
        try:
            await asyncio.wait_for(_wait_for_line(handle, case.runtime, "started"), 30)
            later = case.fresh()
            adopted = await later.adopt(spec.run_id)
            assert adopted is not None
            sent = time.monotonic()
            await later.stop(adopted, grace=5)
            result = await later.wait(adopted, 30)
            return result, time.monotonic() - sent
        finally:
            await case.runtime.remove(handle)

    result, elapsed = asyncio.run(scenario())
    assert elapsed < 8
    assert result.status == "killed"
