"""Host-user runs for real: agents run as OS users made for the session, with no Docker.

What an agent sees, what it cannot reach (the operator's credential store, another run's
credentials, home and log, the runs root's listing), that its processes all end with the
run, and that a run can be reattached by another runtime object (a restarted scheduler).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.runtimes.base import EXIT_TIMEOUT, Limits, RunHandle, RunResult, RunSpec
from action_llama.runtimes.host_user import EXIT_UNKNOWN, HostUserRuntime

from support import (
    AL,
    HOST_USER_A,
    HOST_USER_B,
    ProjectFactory,
    json_records,
    run_al,
    run_processes,
    script_agent,
)

TOKEN = "ghp_hostUserSecret0123456789"
SpecFactory = Callable[..., RunSpec]


def host_agent(name: str, script: str, user: str, extra: str = "") -> dict[str, str]:
    """Files of a script-mode agent run as `user`, listing github_token."""
    config = (
        f'credentials = ["github_token"]\n{extra}[runtime]\ntype = "host-user"\nrun_as = "{user}"\n'
    )
    return script_agent(name, script, config)


@pytest.fixture
def no_docker(tmp_path: Path) -> dict[str, str]:
    """Environment for `al`: Docker unreachable, and importing the docker package fails."""
    fake = tmp_path / "fake-site" / "docker"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        'raise ImportError("the docker package must not be imported for a host-user run")\n'
    )
    return {
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
        "PYTHONPATH": str(fake.parent),
    }


@pytest.fixture
def store_dir() -> Iterator[Path]:
    """A credential store (AL_CREDENTIALS_DIR) below a directory every user may pass, so only
    the store's own modes keep agents out; it holds github_token."""
    base = Path(tempfile.mkdtemp(prefix="al-test-store-", dir="/tmp"))
    base.chmod(0o755)
    root = base / "credentials"
    CredentialStore(root).write(CredentialRef("github_token"), {"token": TOKEN})
    yield root
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def al_env(
    host_users: tuple[str, ...], runs_root: Path, store_dir: Path, no_docker: dict[str, str]
) -> dict[str, str]:
    """Environment for `al run` of host-user agents: test runs root and store, no Docker, and
    an operator variable that must not reach the agent."""
    return {
        **no_docker,
        "AL_RUNS_DIR": str(runs_root),
        "AL_CREDENTIALS_DIR": str(store_dir),
        "AL_TEST_OPERATOR_ONLY": "operator-env-value",
    }


PROBE = r"""
store=$(printf '%s\n' "$PROMPT" | sed -n 2p)  # the --prompt, line 2 of the <user-prompt> block
fact() { echo "$1=$2"; }
can() { if eval "$1" >/dev/null 2>&1; then echo yes; else echo no; fi; }
fact uid "$(id -u)"
fact user "$(id -un)"
fact home "$HOME"
fact cwd "$(pwd)"
fact path "$PATH"
fact work "$AL_WORK_DIR"
fact work_mode "$(stat -c '%a %U' "$AL_WORK_DIR")"
fact no_new_privs "$(awk '/^NoNewPrivs/ {print $2}' /proc/self/status)"
fact python "$(readlink /proc/$PPID/exe)"
fact token_exported "$(test -n "$GITHUB_TOKEN" && echo yes || echo no)"
fact operator_env "${AL_TEST_OPERATOR_ONLY:-absent}"
fact store_readable "$(can "cat '$store/github_token/default/token'")"
fact store_listable "$(can "ls '$store'")"
fact runs_root_listable "$(can "ls '$(dirname "$AL_WORK_DIR")'")"
fact lib_writable "$(can "touch '$PYTHONPATH/probe'")"
fact static_writable "$(can "touch '$AL_STATIC_DIR/probe'")"
fact root_home_listable "$(can "ls /root")"
fact bin_dir_first "$(test "${PATH%%:*}" = "$AL_BIN_DIR" && echo yes || echo no)"
"""


def _facts(stdout: str) -> dict[str, str]:
    lines = [r["msg"] for r in json_records(stdout) if r.get("source") == "script"]
    return dict(line.split("=", 1) for line in lines if "=" in line)


@pytest.fixture
def probed(
    make_project: ProjectFactory, al_env: dict[str, str], store_dir: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    root = make_project(host_agent("probe", PROBE, HOST_USER_A))
    result = run_al(
        "run", "probe", "-p", str(root), "--json", "-q", "--prompt", str(store_dir), env=al_env
    )
    return result, _facts(result.stdout)


def test_al_run_needs_no_docker_engine_nor_the_docker_package(
    probed: tuple[subprocess.CompletedProcess[str], dict[str, str]],
) -> None:
    """With DOCKER_HOST at a dead socket and `import docker` failing, a host-user agent runs."""
    result, facts = probed
    assert result.returncode == 0, result.stderr
    assert facts["user"] == HOST_USER_A
    assert "warning" not in result.stderr


def test_agent_runs_as_its_user_in_a_private_home(
    probed: tuple[subprocess.CompletedProcess[str], dict[str, str]], runs_root: Path
) -> None:
    """The run is the agent's user, with no new privileges, HOME = cwd = its own 0700 work
    dir under the runs root, the helper commands first on PATH, and the system's Python."""
    _, facts = probed
    assert facts["home"] == facts["cwd"] == facts["work"]
    assert Path(facts["work"]).parent == runs_root
    assert facts["work_mode"] == f"700 {HOST_USER_A}"
    assert facts["no_new_privs"] == "1"
    assert facts["bin_dir_first"] == "yes"
    assert not facts["python"].startswith("/root")


def test_agent_gets_its_credentials_but_not_the_operators_environment_or_store(
    probed: tuple[subprocess.CompletedProcess[str], dict[str, str]],
) -> None:
    """GITHUB_TOKEN is exported from the staged copy; the operator's store (0700) cannot be
    read or listed, nor /root, and the operator's environment does not leak into the run."""
    result, facts = probed
    assert facts["token_exported"] == "yes"
    assert facts["store_readable"] == "no"
    assert facts["store_listable"] == "no"
    assert facts["root_home_listable"] == "no"
    assert facts["operator_env"] == "absent"
    assert TOKEN not in result.stdout


def test_runs_root_package_and_agent_files_are_read_only_for_the_agent(
    probed: tuple[subprocess.CompletedProcess[str], dict[str, str]], runs_root: Path
) -> None:
    """The runs root cannot be listed; the package copy and the agent's files cannot be
    written; the run's files are gone after it (only the shared package copy remains)."""
    _, facts = probed
    assert facts["runs_root_listable"] == "no"
    assert facts["lib_writable"] == "no"
    assert facts["static_writable"] == "no"
    assert sorted(p.name for p in runs_root.iterdir()) == ["lib"]
    assert (runs_root.stat().st_mode & 0o7777, runs_root.stat().st_uid) == (0o711, 0)


WAITER = r"""
echo "paths=$AL_CREDENTIALS_PATH $AL_WORK_DIR $AL_RUN_ID $$"
echo private > "$AL_WORK_DIR/note"
i=0
while [ ! -e "$AL_WORK_DIR/release" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
echo released
"""

INTRUDER = r"""
set -- $(printf '%s\n' "$PROMPT" | sed -n 2p)
creds=$1 work=$2 run=$3 pid=$4 root=$(dirname "$2")
try() { if eval "$2" >/dev/null 2>&1; then echo "$1=yes"; else echo "$1=no"; fi; }
try creds_list "ls '$creds'"
try creds_read "cat '$creds/github_token/default/token'"
try work_list "ls '$work'"
try work_read "cat '$work/note'"
try log_read "cat '$root/$run.log'"
try pid_read "cat '$root/$run.pid'"
try root_list "ls '$root'"
try signal_other "kill -0 $pid"
try own_home_write "touch '$AL_WORK_DIR/mine'"
"""


def test_a_run_cannot_reach_another_concurrent_runs_credentials_home_or_log(
    make_project: ProjectFactory, al_env: dict[str, str], runs_root: Path
) -> None:
    """While agent alpha (user a) runs holding github_token, agent beta (user b),
    given alpha's paths, can neither list nor read alpha's staged credentials, home, log
    or pid file, cannot list the runs root and cannot signal alpha's processes."""
    root = make_project(
        {
            **host_agent("alpha", WAITER, HOST_USER_A),
            **host_agent("beta", INTRUDER, HOST_USER_B),
        }
    )
    alpha = subprocess.Popen(
        [AL, "run", "alpha", "-p", str(root), "--json", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **al_env},
    )
    try:
        assert alpha.stdout is not None
        paths = ""
        for line in alpha.stdout:
            msg = json.loads(line)["msg"]
            if msg.startswith("paths="):
                paths = msg.removeprefix("paths=")
                break
        creds, work, _run_id, _pid = paths.split()
        assert Path(creds).is_dir()
        assert Path(work).is_dir()
        beta = run_al("run", "beta", "-p", str(root), "--json", "-q", "--prompt", paths, env=al_env)
        assert beta.returncode == 0, beta.stderr
        Path(work, "release").touch()
        out, err = alpha.communicate(timeout=60)
    finally:
        if alpha.poll() is None:
            alpha.kill()
            alpha.wait()
    assert alpha.returncode == 0, err
    assert "released" in out
    facts = _facts(beta.stdout)
    assert facts.pop("own_home_write") == "yes"
    assert facts == {
        key: "no"
        for key in (
            "creds_list",
            "creds_read",
            "work_list",
            "work_read",
            "log_read",
            "pid_read",
            "root_list",
            "signal_other",
        )
    }
    assert TOKEN not in beta.stdout


def test_no_secret_appears_in_any_process_arguments(
    make_project: ProjectFactory, al_env: dict[str, str]
) -> None:
    """While a run holding a credential is live, no process on the machine has the secret
    in its command line."""
    script = 'echo ready; i=0; while [ ! -e "$AL_WORK_DIR/release" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done'
    root = make_project(host_agent("holder", script, HOST_USER_A))
    proc = subprocess.Popen(
        [AL, "run", "holder", "-p", str(root), "--json", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **al_env},
    )
    try:
        assert proc.stdout is not None
        run_id = None
        for line in proc.stdout:
            record = json.loads(line)
            run_id = run_id or record.get("runId")
            if record["msg"] == "ready":
                break
        assert run_id is not None
        assert run_processes(run_id), "the run should be live while its argv is checked"
        offenders = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                if TOKEN.encode() in (entry / "cmdline").read_bytes():
                    offenders.append(entry.name)
            except OSError:
                continue
        assert offenders == []
        Path(al_env["AL_RUNS_DIR"], run_id, "release").touch()
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


def test_container_settings_beside_a_host_user_agent_get_one_warning(
    make_project: ProjectFactory, al_env: dict[str, str]
) -> None:
    """A Dockerfile and [local] settings do not apply to a host-user agent: `al run` says so
    once, builds nothing, and runs the agent."""
    files = host_agent("solo", "echo ran", HOST_USER_A)
    files["agents/solo/Dockerfile"] = "FROM al-agent:latest\n"
    root = make_project(files, config='[local]\nmemory = "1g"\n')
    result = run_al("run", "solo", "-p", str(root), "-q", env=al_env)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: agents/solo/Dockerfile and [local] in config.toml do not apply to agent "
        "solo: it runs as a host user, not in a container."
    ]
    assert "ran" in result.stdout


# -- the runtime directly ----------------------------------------------------------------


@pytest.fixture
def spec_for(host_users: tuple[str, ...], tmp_path: Path) -> Iterator[SpecFactory]:
    """Build RunSpecs of a script, run as user a (credentials: an empty staged dir)."""
    import pwd
    import secrets

    made: list[Path] = []
    entry = pwd.getpwnam(host_users[0])

    def build(script: str, entry_timeout: int = 60) -> RunSpec:
        run_id = secrets.token_hex(4)
        static = tmp_path / run_id / "static"
        static.mkdir(parents=True)
        config = {"name": "direct", "timeout": entry_timeout}
        (static / "agent-config.json").write_text(json.dumps(config))
        (static / "test-script.sh").write_text(script)
        creds = Path(tempfile.mkdtemp(prefix="al-test-creds-", dir="/dev/shm"))
        os.chown(creds, entry.pw_uid, entry.pw_gid)
        made.append(creds)
        return RunSpec(
            run_id=run_id,
            agent="direct",
            project=tmp_path,
            static_dir=static,
            credentials_dir=creds,
            workspace=str(tmp_path / "ws"),
            user=host_users[0],
            limits=Limits(memory_bytes=1 << 30, cpus=1),
            timeout=entry_timeout,
        )

    yield build
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def test_another_runtime_reattaches_and_reads_logs_and_exit_code(
    spec_for: SpecFactory, runs_root: Path
) -> None:
    """A second runtime (a restarted scheduler) finds a run by its id: it is listed, its
    whole log streams, and `wait` reports the exit code the entry left behind."""

    async def scenario() -> tuple[RunResult, list[str], list[str], RunHandle | None]:
        first, second = HostUserRuntime(runs_root), HostUserRuntime(runs_root)
        spec = spec_for("echo one; sleep 1; echo two; exit 5")
        started = await first.start(spec)
        handle = await second.reattach(started.run_id)
        assert handle is not None
        listed = [h.run_id for h in await second.list_runs(spec.project)]
        lines = [line async for line in second.logs(handle)]
        result = await second.wait(handle, 30)
        await second.remove(handle)
        return result, listed, lines, await second.reattach(started.run_id)

    result, listed, lines, gone = asyncio.run(scenario())
    assert result == RunResult(exit_code=5, status="failed")
    assert len(listed) == 1
    msgs = [json.loads(line)["msg"] for line in lines]
    assert msgs.index("one") < msgs.index("two") < msgs.index("run completed")
    assert gone is None


def test_reattached_run_killed_outright_reports_an_unknown_exit_as_failed(
    spec_for: SpecFactory, runs_root: Path
) -> None:
    """A run whose entry is SIGKILLed leaves no exit status: its own runtime reports 137, a
    reattached one (which cannot know) reports failure with exit 1."""

    async def scenario() -> tuple[RunResult, RunResult]:
        first, second = HostUserRuntime(runs_root), HostUserRuntime(runs_root)
        started = await first.start(spec_for("echo up; sleep 60"))
        handle = await second.reattach(started.run_id)
        assert handle is not None
        await asyncio.wait_for(_printed(second, handle, "up"), 30)
        os.kill(int(handle.ref), signal.SIGKILL)
        reattached = await second.wait(handle, 30)
        own = await first.wait(started, 30)
        await first.remove(started)
        return own, reattached

    own, reattached = asyncio.run(scenario())
    assert own == RunResult(exit_code=137, status="failed")
    assert reattached == RunResult(exit_code=EXIT_UNKNOWN, status="failed")


async def _printed(runtime: HostUserRuntime, handle: RunHandle, text: str) -> None:
    """Until the run has printed a line holding `text` (its output replays from the start)."""
    async for line in runtime.logs(handle):
        if text in line:
            return
    raise AssertionError(f"the run ended without printing {text!r}")


SPAWNER = """
sleep 300 >/dev/null 2>&1 &
setsid sleep 301 >/dev/null 2>&1 &
echo started
sleep 302
"""


@pytest.mark.parametrize("how", ["entry timeout", "runtime timeout", "stop", "exit"])
def test_every_process_of_the_run_ends_with_it(
    spec_for: SpecFactory, runs_root: Path, how: str
) -> None:
    """Background children, and those that left the process group with setsid, end with
    the run: at the entry's timeout, the runtime's, on stop, and on a normal exit."""
    script = SPAWNER.replace("sleep 302", "exit 0") if how == "exit" else SPAWNER

    async def scenario() -> tuple[RunResult, list[int], float]:
        runtime = HostUserRuntime(runs_root)
        spec = spec_for(script, entry_timeout=2 if how == "entry timeout" else 300)
        handle = await runtime.start(spec)
        began = time.monotonic()
        try:
            if how == "stop":
                await asyncio.wait_for(_printed(runtime, handle, "started"), 30)
                await runtime.stop(handle, grace=3)
            result = await runtime.wait(handle, 1 if how == "runtime timeout" else 2)
            left = run_processes(spec.run_id)
            return result, left, time.monotonic() - began
        finally:
            await runtime.remove(handle)

    result, left, elapsed = asyncio.run(scenario())
    assert left == []
    assert elapsed < 12
    expected = {
        "entry timeout": EXIT_TIMEOUT,
        "runtime timeout": EXIT_TIMEOUT,
        "stop": 143,
        "exit": 0,
    }[how]
    assert result.exit_code == expected


def test_timeout_of_al_run_is_exit_124_with_the_timeout_hint(
    make_project: ProjectFactory, al_env: dict[str, str], runs_root: Path
) -> None:
    """A host-user run past its timeout is stopped, exit 124, with the same message and hint
    as a container run; nothing of it is left in the runs root."""
    root = make_project(
        host_agent("sleepy", "echo start; sleep 60; echo never", HOST_USER_A, "timeout = 1\n")
    )
    result = run_al("run", "sleepy", "-p", str(root), env=al_env, timeout=60)
    assert result.returncode == 124
    assert "never" not in result.stdout
    assert "timed out after 1s" in result.stderr
    assert "timeout" in result.stderr.split("hint:")[1]
    assert sorted(p.name for p in runs_root.iterdir()) == ["lib"]


def test_interrupting_al_run_stops_the_host_user_run_and_records_it_killed(
    make_project: ProjectFactory, al_env: dict[str, str], runs_root: Path
) -> None:
    """Ctrl-C during `al run` of a host-user agent ends the run's processes within seconds,
    records the run as killed, and removes its files."""
    root = make_project(host_agent("long", "echo started; sleep 120", HOST_USER_A))
    proc = subprocess.Popen(
        [AL, "run", "long", "-p", str(root), "--json", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **al_env},
    )
    assert proc.stdout is not None
    run_id = None
    for line in proc.stdout:
        record = json.loads(line)
        run_id = run_id or record.get("runId")
        if record["msg"] == "started":
            break
    assert run_id is not None
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 130
    assert run_processes(run_id) == []
    assert sorted(p.name for p in runs_root.iterdir()) == ["lib"]
    runs = run_al("logs", "long", "-p", str(root), "--runs", env=al_env)
    assert f"run {run_id} · manual · killed" in runs.stdout
