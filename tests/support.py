"""Helpers for tests: writing projects, running `al` as a user would, reading its output."""

from __future__ import annotations

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


def cleanup_project(client: Any, root: Path) -> None:
    from action_llama.egress.maintenance import teardown
    from action_llama.runtimes.docker_workspace import release_workspaces

    label = f"al.project={root}"
    for container in client.api.containers(all=True, filters={"label": label}):
        client.api.remove_container(container["Id"], force=True)
    teardown(client, root)  # its egress proxy, networks and firewall rules
    release_workspaces(client, root)
    for image in client.api.images(filters={"label": label}):
        client.api.remove_image(image["Id"], force=True)


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
