"""The operator CLI against a real `al start` daemon: stat, pause, resume, kill, stop, and
`al run` going through the daemon (streamed, with the agent's exit code, killed by Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from action_llama.runs.store import RunRecord, RunStore

from support import (
    AL,
    ProjectFactory,
    run_al,
    run_processes,
    script_agent,
    script_output,
    stored_runs,
    system_users,
    wait_for,
)

#: This module's own run_as user: other test sessions on the machine remove the shared ones
#: (and kill their processes) when they end, which would break a daemon running here.
OPERATOR_USER = "al-test-ops"


@dataclass
class Daemon:
    root: Path
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    output: Path

    def al(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_al(*args, "-p", str(self.root), env=self.env, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [AL, *args, "-p", str(self.root)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def runs(self, agent: str | None = None) -> list[RunRecord]:
        return stored_runs(self.root, agent)

    def run(self, run_id: str) -> RunRecord:
        return next(r for r in self.runs() if r.run_id == run_id)

    def log(self) -> str:
        return self.output.read_text(errors="replace")


def start_daemon(root: Path, env: dict[str, str], output: Path) -> Daemon:
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [AL, "start", "-p", str(root), "--port", "0"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    daemon = Daemon(root, proc, env, output)
    deadline = time.monotonic() + 300
    while not (root / ".al/daemon.json").exists():
        assert proc.poll() is None, daemon.log()
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    return daemon


@pytest.fixture
def daemon_env(tmp_path: Path, runs_root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AL_RUNS_DIR": str(runs_root),
        "AL_CREDENTIALS_DIR": str(tmp_path / "creds"),
    }


@pytest.fixture(scope="module")
def operator_user() -> Iterator[str]:
    """A system user for this module's host-user runs, removed after it."""
    with system_users(OPERATOR_USER):
        yield OPERATOR_USER


@pytest.fixture
def daemon(
    make_project: ProjectFactory, operator_user: str, daemon_env: dict[str, str], tmp_path: Path
) -> Iterator[Daemon]:
    """A daemon over host-user agents: `tick` every 2 s, `slow` (sleeps, scale 1), `three`
    (prints and exits 3)."""
    runtime = f'[runtime]\ntype = "host-user"\nrun_as = "{operator_user}"\n'
    root = make_project(
        {
            **script_agent("tick", "echo tick\n", 'schedule = "*/2 * * * * *"\n' + runtime),
            **script_agent("slow", "echo slow started\nsleep 120\n", "scale = 1\n" + runtime),
            **script_agent("three", 'echo "three here"\nexit 3\n', runtime),
        }
    )
    # Host-user agents need no engine: a daemon that touched Docker would fail here.
    env = {**daemon_env, "DOCKER_HOST": "unix:///nonexistent.sock"}
    daemon = start_daemon(root, env, tmp_path / "daemon.out")
    try:
        yield daemon
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
        daemon.proc.wait(timeout=30)


def status_json(daemon: Daemon) -> dict[str, Any]:
    answer = daemon.al("stat", "--json")
    assert answer.returncode == 0, answer.stderr
    data: dict[str, Any] = json.loads(answer.stdout)
    return data


@pytest.mark.parametrize(
    "command",
    [("stat",), ("kill", "tick"), ("pause",), ("resume", "tick"), ("stop",)],
    ids=lambda c: c[0],
)
def test_without_a_daemon_each_command_says_so(
    make_project: ProjectFactory, command: tuple[str, ...]
) -> None:
    """With no daemon, or only the marker of a dead one, each operator command says that no
    scheduler is running and how to start one, exits 1, and shows no traceback."""
    root = make_project(script_agent("tick", "true\n"))
    for marker in (None, {"pid": 2**22 + 7, "port": 1, "started": 0}):
        if marker is not None:
            (root / ".al").mkdir(exist_ok=True)
            (root / ".al/daemon.json").write_text(json.dumps(marker))
        answer = run_al(*command, "-p", str(root))
        assert answer.returncode == 1
        assert f"error: No scheduler is running for {root}." in answer.stderr
        assert f"al start -p {root}" in answer.stderr
        assert "Traceback" not in answer.stderr


def test_stat_shows_agents_next_fire_last_result_and_running_runs(daemon: Daemon) -> None:
    """`al stat` lists every agent with state, scale, running runs, next cron fire and the
    last run's result; --json carries the same facts."""
    wait_for(lambda: any(r.status == "completed" for r in daemon.runs("tick")))
    slow = daemon.popen("run", "slow")
    try:
        wait_for(lambda: any(r.status == "running" for r in daemon.runs("slow")))
        view = status_json(daemon)
        agents = view["scheduler"]["agents"]
        assert set(agents) == {"tick", "slow", "three"}
        assert agents["tick"]["nextFire"] is not None
        assert agents["three"]["nextFire"] is None
        assert agents["slow"]["state"] == "running"
        assert agents["slow"]["scale"] == 1
        slow_id = agents["slow"]["running"][0]
        assert view["lastRuns"]["tick"]["status"] in ("completed", "running")
        table = daemon.al("stat")
        assert table.returncode == 0, table.stderr
        lines = {line.split()[0]: line for line in table.stdout.splitlines() if line.strip()}
        assert "NEXT FIRE" in lines["AGENT"]
        assert " in " in lines["tick"]
        assert slow_id in lines["slow"]
        assert "running" in lines["slow"]
    finally:
        slow.send_signal(signal.SIGINT)
        slow.communicate(timeout=60)


def test_a_second_al_start_for_the_project_is_refused_and_the_first_keeps_serving(
    daemon: Daemon,
) -> None:
    """One scheduler per project: a second `al start` exits 1 naming the running one's pid,
    without a traceback, and leaves the first one (and its marker) alone."""
    first = json.loads((daemon.root / ".al/daemon.json").read_text())
    second = daemon.al("start", "--port", "0", "--headless", timeout=60)
    assert second.returncode == 1
    assert "A scheduler is already running" in second.stderr
    assert f"pid {first['pid']}" in second.stderr
    assert "al stop -p" in second.stderr
    assert "Traceback" not in second.stderr + second.stdout
    assert json.loads((daemon.root / ".al/daemon.json").read_text()) == first
    assert daemon.al("stat").returncode == 0


def test_pause_stops_cron_runs_and_resume_restarts_them(daemon: Daemon) -> None:
    """`al pause tick` stops its cron runs (and `al run tick` is refused while the scheduler is
    paused); `al resume tick` starts them again."""
    wait_for(lambda: len(daemon.runs("tick")) >= 1)
    answer = daemon.al("pause", "tick")
    assert answer.returncode == 0, answer.stderr
    assert "paused tick" in answer.stdout
    assert status_json(daemon)["scheduler"]["agents"]["tick"]["state"] == "paused"
    wait_for(lambda: all(r.status != "running" for r in daemon.runs("tick")))
    before = len(daemon.runs("tick"))
    skipped = daemon.log().count("schedule of tick skipped: paused")
    wait_for(lambda: daemon.log().count("schedule of tick skipped: paused") >= skipped + 2)
    assert len(daemon.runs("tick")) == before

    assert daemon.al("pause").returncode == 0
    refused = daemon.al("run", "three")
    assert refused.returncode == 1
    assert "The scheduler refused: the scheduler is paused." in refused.stderr
    assert daemon.al("resume").returncode == 0

    answer = daemon.al("resume", "tick")
    assert answer.returncode == 0, answer.stderr
    wait_for(lambda: len(daemon.runs("tick")) > before, timeout=20)
    missing = daemon.al("pause", "nope")
    assert missing.returncode == 1
    assert 'Agent "nope" not found.' in missing.stderr


def test_kill_stops_a_running_run_and_a_busy_agent_queues(daemon: Daemon) -> None:
    """`al kill <run id>` stops a run (recorded killed, its processes gone, the `al run`
    following it exits 130); while it runs, a second `al run` of the scale-1 agent is queued
    and exits 0; `al kill <agent>` stops the queued one once it started."""
    follower = daemon.popen("run", "slow")
    wait_for(lambda: any(r.status == "running" for r in daemon.runs("slow")))
    run_id = daemon.runs("slow")[0].run_id
    wait_for(lambda: bool(run_processes(run_id)))

    queued = daemon.al("run", "slow")
    assert queued.returncode == 0, queued.stderr
    assert "the run is queued (position 1 in its queue)" in queued.stderr

    answer = daemon.al("kill", run_id)
    assert answer.returncode == 0, answer.stderr
    assert run_id in answer.stdout
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 130, err
    assert "slow started" in out
    assert daemon.run(run_id).status == "killed"
    wait_for(lambda: not run_processes(run_id), timeout=10)

    # The queued run starts when the runner frees; killing the agent stops it too.
    wait_for(lambda: any(r.status == "running" for r in daemon.runs("slow")))
    second = next(r.run_id for r in daemon.runs("slow") if r.status == "running")
    assert daemon.al("kill", "slow").returncode == 0
    wait_for(lambda: daemon.run(second).status == "killed")
    gone = daemon.al("kill", "nosuchrun")
    assert gone.returncode == 1
    assert "neither an agent nor a running run" in gone.stderr


def test_run_goes_through_the_daemon_and_local_bypasses_it(daemon: Daemon) -> None:
    """With a daemon running, `al run` starts the run in it (without loading pydantic),
    streams its output and exits with the agent's exit code; `--local` runs it in-process
    (without loading the option parser)."""
    answer = daemon.al("run", "three", "--prompt", "count to three")
    assert answer.returncode == 3, answer.stderr
    assert "three here" in answer.stdout
    assert "running in the scheduler for" in answer.stderr
    assert "Agent three exited with code 3." in answer.stderr
    [run] = daemon.runs("three")
    assert run.trigger == "manual"
    assert run.prompt == "count to three"
    assert f"three {run.run_id} " in daemon.log()  # the daemon printed the run's lines

    # Thin: the daemon path loads no pydantic (typer's option parsing would).
    env = {**daemon.env, "PYTHONPROFILEIMPORTTIME": "1"}
    traced = run_al("run", "three", "-q", "--json", f"--project={daemon.root}", env=env)
    assert traced.returncode == 3, traced.stderr
    assert "three here" in script_output(traced.stdout)
    assert "action_llama.daemon.client" in traced.stderr
    assert "pydantic" not in traced.stderr

    # Forms the fast path leaves to the option parser go through the daemon all the same.
    parsed = run_al("--debug", "run", "three", "-p", str(daemon.root), env=daemon.env)
    assert parsed.returncode == 3, parsed.stderr
    assert "running in the scheduler for" in parsed.stderr
    assert len(daemon.runs("three")) == 3

    # --local runs here, also without the option parser.
    local = run_al("run", "three", "--local", "-p", str(daemon.root), env=env)
    assert local.returncode == 3, local.stderr
    assert "three here" in local.stdout
    assert "running in the scheduler" not in local.stderr
    assert "action_llama.runs.local" in local.stderr
    assert "typer" not in local.stderr
    newest = daemon.runs("three")[0]
    assert newest.run_id != run.run_id
    assert newest.run_id not in daemon.log()


def test_ctrl_c_on_al_run_kills_the_run_in_the_daemon(daemon: Daemon) -> None:
    """Ctrl-C on an `al run` that goes through the daemon stops that run there: recorded
    killed, its processes gone, `al run` exits 130."""
    follower = daemon.popen("run", "slow")
    wait_for(lambda: any(r.status == "running" for r in daemon.runs("slow")))
    run_id = daemon.runs("slow")[0].run_id
    wait_for(lambda: bool(run_processes(run_id)))
    follower.send_signal(signal.SIGINT)
    _out, err = follower.communicate(timeout=60)
    assert follower.returncode == 130, err
    assert "stopped; the run is recorded as killed" in err
    assert daemon.run(run_id).status == "killed"
    wait_for(lambda: not run_processes(run_id), timeout=10)


def test_logs_follow_a_running_run_live_until_it_ends(daemon: Daemon) -> None:
    """`al logs AGENT -f` follows the agent's running run (even when a newer one has ended),
    printing its lines as they come, and returns when it ends, with its final state; without
    -f (not a terminal) `al logs` prints the latest run and returns at once."""
    follower = daemon.popen("run", "slow")
    try:
        wait_for(lambda: any(r.status == "running" for r in daemon.runs("slow")))
        run_id = daemon.runs("slow")[0].run_id
        wait_for(lambda: bool(run_processes(run_id)))
        snapshot = daemon.al("logs", "slow", timeout=20)
        assert snapshot.returncode == 0, snapshot.stderr
        assert f"── run {run_id} · manual · running" in snapshot.stdout
        # A newer run that has already ended, as a second runner would leave it.
        store = RunStore(daemon.root / ".al")
        try:
            store.start("d0ne0001", "slow", "manual", None, "host-user", None)
            store.finish("d0ne0001", "completed", 0, None)
        finally:
            store.close()
        assert "── run d0ne0001 · manual · completed" in daemon.al("logs", "slow").stdout
        live = daemon.popen("logs", "slow", "-f")
        assert live.stdout is not None
        seen = [live.stdout.readline()]
        while "slow started" not in seen[-1]:
            assert seen[-1], f"the follower ended early: {seen}"
            seen.append(live.stdout.readline())
        assert live.poll() is None  # still following
        assert daemon.al("kill", run_id).returncode == 0
        rest, err = live.communicate(timeout=30)
        out = "".join(seen) + rest
        assert live.returncode == 0, err
        assert f"── run {run_id} · manual · killed exit 130" in out
    finally:
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=60)


def test_stop_ends_the_daemon_gracefully(daemon: Daemon) -> None:
    """`al stop` asks the daemon to stop and returns once it has exited (status 0, marker
    gone); `al stat` then says no scheduler runs."""
    answer = daemon.al("stop", "--timeout", "90")
    assert answer.returncode == 0, answer.stderr
    assert "stopped" in answer.stdout
    assert daemon.proc.wait(timeout=10) == 0
    assert "al: stopped" in daemon.log()
    assert not (daemon.root / ".al/daemon.json").exists()
    after = daemon.al("stat")
    assert after.returncode == 1
    assert "No scheduler is running" in after.stderr


@pytest.mark.docker
def test_run_of_a_container_agent_goes_through_the_daemon(
    make_project: ProjectFactory, base_image: str, daemon_env: dict[str, str], tmp_path: Path
) -> None:
    """A container agent run with `al run` while a daemon runs: the run happens in the daemon,
    its output streams back and `al run` exits with the container's exit code."""
    root = make_project(script_agent("boxed", 'echo "boxed in $AL_AGENT"\nexit 5\n'))
    daemon = start_daemon(root, daemon_env, tmp_path / "daemon.out")
    try:
        answer = daemon.al("run", "boxed")
        assert answer.returncode == 5, answer.stderr
        assert "boxed in boxed" in answer.stdout
        assert "running in the scheduler for" in answer.stderr
        [run] = daemon.runs("boxed")
        assert run.runtime == "docker"
        assert f"boxed {run.run_id} " in daemon.log()
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=90) == 0, daemon.log()
