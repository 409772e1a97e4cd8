"""Helpers for tests: writing projects, running `al` as a user would, reading its output."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from action_llama.runs.store import RunRecord

    from fakes.model_server import FakeModelServer

AL = str(Path(sys.executable).parent / "al")

ProjectFactory = Callable[..., Path]


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def skill(description: str = "test agent") -> str:
    return f"---\ndescription: {description}\n---\nDo the test.\n"


def script_agent(
    name: str, script: str, config: str = "", dockerfile: str | None = None
) -> dict[str, str]:
    """Files of an agent that runs `script` in script mode."""
    files = {
        f"agents/{name}/SKILL.md": skill(),
        f"agents/{name}/test-script.sh": script,
    }
    if config:
        files[f"agents/{name}/config.toml"] = config
    if dockerfile is not None:
        files[f"agents/{name}/Dockerfile"] = dockerfile
    return files


#: A script that prints what a run sees from inside (`facts` reads its output).
PROBE = r"""
fact() { echo "$1=$2"; }
can_write() { if touch "$1/.probe" 2>/dev/null; then rm -f "$1/.probe"; echo yes; else echo no; fi; }
size_mb() { df -Pm "$1" | awk 'NR==2 {print $2}'; }
fstype() { awk -v m="$1" '$2 == m {print $3}' /proc/mounts | tail -1; }
fact uid "$(id -u)"
fact user "$(id -un)"
fact home "$HOME"
fact cwd "$(pwd)"
fact path "$PATH"
fact root_writable "$(can_write /)"
fact etc_writable "$(can_write /etc)"
fact app_writable "$(can_write /app)"
fact app_static_writable "$(can_write /app/static)"
fact credentials_writable "$(can_write /credentials)"
fact credentials_exists "$(test -d /credentials && echo yes || echo no)"
fact tmp_writable "$(can_write /tmp)"
fact tmp_type "$(fstype /tmp)"
fact tmp_mb "$(size_mb /tmp)"
fact workspace_writable "$(can_write /workspace)"
fact workspace_mb "$(size_mb /workspace)"
fact home_writable "$(can_write /home/node)"
fact home_type "$(fstype /home/node)"
fact home_mb "$(size_mb /home/node)"
fact app_has_package "$(test -f /app/lib/action_llama/__init__.py && echo yes || echo no)"
fact skill_present "$(test -f /app/static/SKILL.md && echo yes || echo no)"
fact cap_eff "$(awk '/^CapEff/ {print $2}' /proc/self/status)"
fact no_new_privs "$(awk '/^NoNewPrivs/ {print $2}' /proc/self/status)"
fact mem_limit "$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
fact cpu_quota "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max)"
fact cpu_period "$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cut -d' ' -f2 /sys/fs/cgroup/cpu.max)"
fact pids_max "$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
for tool in git curl jq ssh python3; do fact "has_$tool" "$(command -v $tool >/dev/null && echo yes || echo no)"; done
"""


def facts(stdout: str) -> dict[str, str]:
    """What PROBE printed, from `al run --json` output."""
    return dict(line.split("=", 1) for line in script_output(stdout) if "=" in line)


def cleanup_project(client: Any, root: Path) -> None:
    from action_llama.egress.maintenance import teardown
    from action_llama.runtimes.docker_workspace import release_workspaces

    label = f"al.project={root}"
    if (client.info().get("Swarm") or {}).get("ControlAvailable"):
        remove_swarm_objects(client, label)
    for container in client.api.containers(all=True, filters={"label": label}):
        if "com.docker.swarm.task.id" not in container["Labels"]:  # swarm removes its own
            client.api.remove_container(container["Id"], force=True)
    teardown(client, root)  # its egress proxy, networks and firewall rules
    release_workspaces(client, root)
    for image in client.api.images(filters={"label": label}):
        client.api.remove_image(image["Id"], force=True)


def swarm_objects(client: Any, label: str) -> dict[str, list[str]]:
    """The names of the swarm's services, secrets and configs labelled `label` ("k=v"), and
    of the run volumes (al.run) on this node that are."""
    api = client.api
    filters = {"label": [label]}
    runs = {"label": [label, "al.run"]}
    return {
        "services": [s["Spec"]["Name"] for s in api.services(filters=filters)],
        "secrets": [s["Spec"]["Name"] for s in api.secrets(filters=filters)],
        "configs": [c["Spec"]["Name"] for c in api.configs(filters=filters)],
        "volumes": [v["Name"] for v in api.volumes(filters=runs).get("Volumes") or []],
    }


def left_in_swarm(client: Any, root: Path) -> dict[str, list[str]]:
    """The services, secrets, configs and run volumes of project `root` still there, by kind
    (none is expected once its runs ended)."""
    left = swarm_objects(client, f"al.project={root}")
    return {kind: names for kind, names in left.items() if names}


def remove_swarm_objects(client: Any, label: str) -> None:
    """Remove the services (first: they hold the rest), secrets, configs and run volumes
    labelled `label` ("k=v")."""
    import docker.errors

    api = client.api
    filters = {"label": [label]}
    for kind, remove in (
        ("services", api.remove_service),
        ("secrets", api.remove_secret),
        ("configs", api.remove_config),
    ):
        for item in getattr(api, kind)(filters=filters):
            try:
                remove(item["ID"])
            except docker.errors.NotFound:
                continue
    runs = {"label": [label, "al.run"]}
    for volume in api.volumes(filters=runs).get("Volumes") or []:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_volume(volume["Name"], force=True)


SWARM_INIT_LOCK = Path("/tmp/al-test-swarm.init.lock")
SWARM_USE_LOCK = Path("/tmp/al-test-swarm.use.lock")
#: Present while a swarm made by a test session exists (one not made by tests is never left).
SWARM_MADE = Path("/tmp/al-test-swarm.made")


@contextmanager
def swarm_for_tests(client: Any) -> Iterator[str]:
    """This engine as a swarm manager; its node id. A swarm is made (advertised on loopback)
    when there is none, and left after the last test session that uses it ends; a swarm the
    tests did not make is never left. Sessions on the machine share it: each holds a shared
    lock on SWARM_USE_LOCK while it runs."""
    import fcntl

    def locked(path: Path) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    using = os.open(SWARM_USE_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    init = locked(SWARM_INIT_LOCK)
    try:
        swarm = client.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") == "inactive":
            subprocess.run(
                ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
                check=True,
                capture_output=True,
            )
            SWARM_MADE.touch()
            swarm = client.info().get("Swarm") or {}
        fcntl.flock(using, fcntl.LOCK_SH)
    finally:
        os.close(init)
    if not swarm.get("ControlAvailable"):
        os.close(using)
        import pytest

        pytest.fail("this engine is in a swarm but not a manager: swarm tests need a manager")
    try:
        yield str(swarm["NodeID"])
    finally:
        init = locked(SWARM_INIT_LOCK)
        try:
            fcntl.flock(using, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if SWARM_MADE.exists():
                subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True)
                SWARM_MADE.unlink()
        except BlockingIOError:
            pass  # another session still uses the swarm: the last one leaves it
        finally:
            os.close(using)
            os.close(init)


def run_al(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`al ARGS` as a user types it."""
    return subprocess.run(
        [AL, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def json_records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def script_output(stdout: str) -> list[str]:
    """Lines the agent's script printed, from `al run --json` output."""
    return [r["msg"] for r in json_records(stdout) if r.get("source") == "script"]


def kill_processes_of(uid: int) -> None:
    """SIGKILL every process of `uid` (an OS user the tests made), one pid at a time."""
    import signal

    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if entry.stat().st_uid == uid:
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


#: The OS users host-user tests run as, unique to this test session: sessions on one machine
#: (developers' worktrees) never remove or kill each other's.
_SESSION = secrets.token_hex(2)
HOST_USER_A, HOST_USER_B = f"al-t{_SESSION}-a", f"al-t{_SESSION}-b"


@contextmanager
def system_users(*names: str) -> Iterator[tuple[str, ...]]:
    """OS users with no login shell for host-user runs (reused if a killed session left them);
    afterwards their processes are killed and they are removed. Skips without root."""
    import pwd
    import shutil

    import pytest

    if os.geteuid() != 0 or not (shutil.which("useradd") and shutil.which("setpriv")):
        pytest.skip("host-user runs need root (to create OS users and to run as them)")
    for name in names:
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--shell", "/usr/sbin/nologin", name],
                check=True,
                capture_output=True,
            )
    try:
        yield names
    finally:
        for name in names:
            try:
                uid = pwd.getpwnam(name).pw_uid
            except KeyError:
                continue  # another test session on this machine removed it already
            kill_processes_of(uid)
            subprocess.run(["userdel", name], check=False, capture_output=True)


def run_processes(run_id: str) -> list[int]:
    """Live processes whose environment carries AL_RUN_ID=<run_id> (those of one run)."""
    tag = f"AL_RUN_ID={run_id}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            if state != b"Z" and tag in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def fake_models_config(
    server: FakeModelServer, host: str = "host.docker.internal", extra: str = ""
) -> str:
    """Two models on the fake server: `primary` (OpenAI API) and `backup` (Anthropic API)."""
    return (
        f"{extra}"
        "[models.primary]\n"
        'provider = "openai"\n'
        'model = "gpt-fake"\n'
        f'base_url = "{server.openai_url(host)}"\n\n'
        "[models.backup]\n"
        'provider = "anthropic"\n'
        'model = "claude-fake"\n'
        f'base_url = "{server.anthropic_url(host)}"\n'
    )


def model_agent(name: str, skill_body: str = "Do the task.\n", config: str = "") -> dict[str, str]:
    return {
        f"agents/{name}/SKILL.md": f"---\ndescription: session test\n---\n{skill_body}",
        f"agents/{name}/config.toml": config or 'models = ["primary", "backup"]\n',
    }


def stored_runs(root: Path, agent: str | None = None, limit: int = 1000) -> list[RunRecord]:
    """The runs recorded in the project at `root` (of one agent), as `al logs --runs` lists
    them (newest first)."""
    from action_llama.runs.store import RunStore

    store = RunStore(root / ".al")
    try:
        return store.runs(agent, limit=limit)
    finally:
        store.close()


def stored_run(root: Path, run_id: str) -> RunRecord:
    """One recorded run of the project at `root`; RunNotFound until it is recorded."""
    from action_llama.runs.store import RunStore

    store = RunStore(root / ".al")
    try:
        return store.get(run_id)
    finally:
        store.close()


def wait_for(condition: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy (returned), failing the test after
    `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout} s"
        time.sleep(0.05)
