"""`al start` for real: it refuses a project that cannot run, and picks up edits while it runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from action_llama.errors import RunNotFound

from support import AL, ProjectFactory, stored_run, stored_runs, write_files

TICK = 'echo "tick of $AL_AGENT"\n'


@dataclass
class Daemon:
    root: Path
    proc: subprocess.Popen[str]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    env: dict[str, str]

    def runs(self, agent: str) -> int:
        return len(stored_runs(self.root, agent))

    def status(self, run_id: str) -> str | None:
        """The run's status; None until the daemon has recorded it."""
        try:
            return stored_run(self.root, run_id).status
        except RunNotFound:
            return None

    def wait_for_output(self, text: str, after: int = 0, timeout: float = 30) -> int:
        """Wait until `text` appears in the output past offset `after`; its end offset."""
        found: list[int] = []

        def seen() -> bool:
            index = self.output().find(text, after)
            if index >= 0:
                found.append(index + len(text))
            return bool(found)

        wait_for(seen, timeout, self)
        return found[0]


def wait_for(
    condition: Callable[[], bool], timeout: float = 30, daemon: Daemon | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if daemon is not None and daemon.proc.poll() is not None:
            pytest.fail(f"the daemon exited ({daemon.proc.returncode}):\n{daemon.output()}")
        assert time.monotonic() < deadline, "condition never held" + (
            f"; daemon output:\n{daemon.output()}" if daemon else ""
        )
        time.sleep(0.1)


def daemon_env(
    tmp_path: Path, runs_root: Path | None = None, docker: bool = False
) -> dict[str, str]:
    env = {**os.environ, "AL_CREDENTIALS_DIR": str(tmp_path / "creds")}
    if runs_root is not None:
        env["AL_RUNS_DIR"] = str(runs_root)
    if not docker:
        env["DOCKER_HOST"] = "unix:///nonexistent.sock"  # host-user agents need no engine
    return env


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(root: Path, env: dict[str, str], *extra: str) -> Daemon:
        log = tmp_path / f"daemon{len(started)}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [AL, "start", "-p", str(root), "--port", "0", *extra],
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
        daemon = Daemon(root, proc, 0, log, env)
        started.append(daemon)
        marker = root / ".al/daemon.json"
        wait_for(marker.exists, 300, daemon)
        daemon.port = json.loads(marker.read_text())["port"]
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGTERM)
            try:
                daemon.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.proc.kill()
                daemon.proc.wait()


def stop(daemon: Daemon) -> str:
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.proc.wait(timeout=60)
    assert daemon.proc.returncode == 0, daemon.output()
    return daemon.output()


def scheduler_view(daemon: Daemon) -> dict[str, Any]:
    """The daemon's `/control/status`, with the API key al start made in its store."""
    from action_llama.credentials.store import CredentialStore
    from action_llama.gateway.settings import API_KEY_FIELD, API_KEY_REF

    creds = Path(daemon.env["AL_CREDENTIALS_DIR"])
    key = CredentialStore(creds).read(API_KEY_REF)[API_KEY_FIELD]
    answer = httpx.get(
        f"http://127.0.0.1:{daemon.port}/control/status",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def assert_stops_firing(daemon: Daemon, agent: str) -> None:
    """After a reload that unscheduled (or removed) `agent`, the scheduler comes to hold nothing
    that could start a run of it: no run going, no work queued, no fire time within a day."""

    def idle() -> bool:
        view = scheduler_view(daemon)
        entry = view["scheduler"]["agents"].get(agent)
        fire = entry and entry["nextFire"]
        soon = bool(fire) and datetime.fromisoformat(fire) < datetime.now(UTC) + timedelta(days=1)
        return not (entry and entry["running"]) and not view["queues"].get(agent) and not soon

    wait_for(idle, 30, daemon)


def test_start_refuses_a_project_whose_runs_would_fail(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    """A missing credential, a missing run_as user and a webhook source without its secret
    stop `al start` before anything runs: exit 1, each problem and its fix, no traceback."""
    root = make_project(
        {
            "agents/needy/SKILL.md": "Needy.\n",
            "agents/needy/test-script.sh": "true\n",
            "agents/needy/config.toml": (
                'credentials = ["github_token"]\n'
                '[runtime]\ntype = "host-user"\nrun_as = "al-no-such-user"\n'
                '[[webhooks]]\nsource = "gh"\n'
            ),
        },
        config='[webhooks.gh]\ntype = "github"\n',
    )
    proc = subprocess.run(
        [AL, "start", "-p", str(root), "--port", "0", "--headless"],
        capture_output=True,
        text=True,
        env=daemon_env(tmp_path),
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: The project cannot start: 3 problems")
    assert "github_token" in proc.stderr
    assert "al creds add github_token" in proc.stderr
    assert 'User "al-no-such-user"' in proc.stderr
    assert "webhook secret gh" in proc.stderr
    assert not (root / ".al/daemon.json").exists()


def test_start_refuses_container_agents_when_docker_is_down(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    """With a container agent and no Docker engine, `al start` says Docker is needed and by
    which agents, and exits 1 before building or listening."""
    root = make_project({"agents/box/SKILL.md": "Box.\n", "agents/box/test-script.sh": "true\n"})
    proc = subprocess.run(
        [AL, "start", "-p", str(root), "--port", "0"],
        capture_output=True,
        text=True,
        env=daemon_env(tmp_path),
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: The project cannot start: 1 problem")
    assert "Container agents need it: box" in proc.stderr
    assert not (root / ".al/daemon.json").exists()


@pytest.mark.docker
def test_start_refuses_an_agent_dockerfile_that_does_not_build(
    make_project: ProjectFactory, base_image: str, docker_client: Any, tmp_path: Path
) -> None:
    """An agent Dockerfile that fails to build stops `al start` with the layer named and the
    build's output, exit 1, no traceback, nothing listening."""
    root = make_project(
        {
            "agents/box/SKILL.md": "Box.\n",
            "agents/box/test-script.sh": "true\n",
            "agents/box/Dockerfile": "FROM al-agent:latest\nRUN echo about to fail && false\n",
        }
    )
    proc = subprocess.run(
        [AL, "start", "-p", str(root), "--port", "0"],
        capture_output=True,
        text=True,
        env=daemon_env(tmp_path, docker=True),
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ")
    assert "box" in proc.stderr
    assert not (root / ".al/daemon.json").exists()


def test_hot_reload_adds_changes_keeps_on_errors_and_removes_agents(
    make_project: ProjectFactory,
    host_users: tuple[str, ...],
    runs_root: Path,
    tmp_path: Path,
    start_daemon: Callable[..., Daemon],
) -> None:
    """Started with no agents (a warning, not an error), the daemon picks up an added agent
    with a seconds-schedule, keeps running it when its config.toml breaks (the error names the
    file and key), follows its schedule when it changes, and stops firing it once removed."""
    runtime = f'[runtime]\ntype = "host-user"\nrun_as = "{host_users[0]}"\n'
    root = make_project({"agents/.keep": ""})
    daemon = start_daemon(root, daemon_env(tmp_path, runs_root), "--headless")
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d warning: project: no agents yet", daemon.output(), re.M
    )

    write_files(
        root,
        {
            "agents/tick/SKILL.md": "Tick.\n",
            "agents/tick/test-script.sh": TICK,
            "agents/tick/config.toml": 'schedule = "*/2 * * * * *"\n' + runtime,
        },
    )
    offset = daemon.wait_for_output("reload: project reloaded: added tick")
    wait_for(lambda: daemon.runs("tick") >= 2, 30, daemon)

    (root / "agents/tick/config.toml").write_text(
        'schedule = "*/2 * * * * *"\nsheduel = "typo"\n' + runtime
    )
    offset = daemon.wait_for_output("reload: error:", offset)
    daemon.wait_for_output("still running the previous project", offset)
    error = daemon.output()[offset - len("reload: error:") :]
    assert "agents/tick/config.toml" in error
    assert "sheduel" in error
    firing = daemon.runs("tick")
    wait_for(lambda: daemon.runs("tick") >= firing + 2, 30, daemon)

    (root / "agents/tick/config.toml").write_text('schedule = "0 0 1 1 *"\n' + runtime)
    offset = daemon.wait_for_output("reload: project reloaded: changed tick", offset)
    assert_stops_firing(daemon, "tick")

    (root / "agents/tick/config.toml").write_text('schedule = "*/3 * * * * *"\n' + runtime)
    offset = daemon.wait_for_output("reload: project reloaded: changed tick", offset)
    firing = daemon.runs("tick")
    wait_for(lambda: daemon.runs("tick") >= firing + 2, 30, daemon)

    for path in sorted((root / "agents/tick").iterdir()):
        path.unlink()
    (root / "agents/tick").rmdir()
    daemon.wait_for_output("reload: project reloaded: removed tick", offset)
    assert_stops_firing(daemon, "tick")

    out = stop(daemon)
    assert "tick of tick" in out
    assert "al: stopped" in out


def test_hot_reload_routes_webhooks_to_an_added_agent_and_source(
    make_project: ProjectFactory,
    host_users: tuple[str, ...],
    runs_root: Path,
    tmp_path: Path,
    start_daemon: Callable[..., Daemon],
) -> None:
    """A webhook source added to config.toml and an agent listening to it, both added while the
    daemon runs, get the next delivery: before the reload it matched nothing. An added agent
    whose credentials are missing is loaded with a warning."""
    runtime = f'[runtime]\ntype = "host-user"\nrun_as = "{host_users[0]}"\n'
    root = make_project(
        {
            "agents/other/SKILL.md": "Other.\n",
            "agents/other/test-script.sh": "true\n",
            "agents/other/config.toml": runtime,
        }
    )
    daemon = start_daemon(root, daemon_env(tmp_path, runs_root), "--headless")
    url = f"http://127.0.0.1:{daemon.port}/webhooks/t"
    event = {"event": "issues", "action": "opened", "repo": "o/r"}
    before = httpx.post(url, json=event, timeout=10)
    assert before.status_code == 404, before.text

    (root / "config.toml").write_text('[webhooks.t]\ntype = "test"\nallowUnsigned = true\n')
    write_files(
        root,
        {
            "agents/hook/SKILL.md": "Hook.\n",
            "agents/hook/test-script.sh": 'echo "hook got $AL_AGENT"\n',
            "agents/hook/config.toml": '[[webhooks]]\nsource = "t"\n' + runtime,
            "agents/needy/SKILL.md": "Needy.\n",
            "agents/needy/test-script.sh": "true\n",
            "agents/needy/config.toml": 'credentials = ["github_token"]\n' + runtime,
        },
    )
    offset = daemon.wait_for_output(
        "reload: project reloaded: added hook, needy; config.toml changed"
    )
    # Valid, so loaded; but what `al start` would refuse is said.
    daemon.wait_for_output("reload: warning: credentials needy: missing", offset)
    answer = httpx.post(url, json=event, timeout=10)
    assert answer.status_code == 200, answer.text
    dispatched = answer.json()["dispatched"]
    assert [d["agent"] for d in dispatched] == ["hook"]
    wait_for(lambda: daemon.status(dispatched[0]["runId"]) == "completed", 30, daemon)
    assert "hook got hook" in stop(daemon)


def test_a_paused_agent_stays_paused_when_a_reload_gives_it_a_schedule(
    make_project: ProjectFactory,
    host_users: tuple[str, ...],
    runs_root: Path,
    tmp_path: Path,
    start_daemon: Callable[..., Daemon],
) -> None:
    """`al pause <agent>` holds for the schedule a reload brings (the original's reloaded cron
    jobs ignored pauses): nothing fires until it is resumed, and the status shows the new
    next fire time."""
    from action_llama.credentials.store import CredentialStore
    from action_llama.gateway.settings import API_KEY_FIELD, API_KEY_REF

    runtime = f'[runtime]\ntype = "host-user"\nrun_as = "{host_users[0]}"\n'
    yearly = 'schedule = "0 0 1 1 *"\n'
    root = make_project(
        {
            "agents/tick/SKILL.md": "Tick.\n",
            "agents/tick/test-script.sh": TICK,
            "agents/tick/config.toml": yearly + runtime,
        }
    )
    daemon = start_daemon(root, daemon_env(tmp_path, runs_root), "--headless")
    key = CredentialStore(tmp_path / "creds").read(API_KEY_REF)[API_KEY_FIELD]
    control = httpx.Client(
        base_url=f"http://127.0.0.1:{daemon.port}/control",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    with control:
        assert control.post("/pause/tick").status_code == 200
        (root / "agents/tick/config.toml").write_text('schedule = "*/2 * * * * *"\n' + runtime)
        daemon.wait_for_output("reload: project reloaded: changed tick")
        tick = control.get("/status").json()["scheduler"]["agents"]["tick"]
        assert tick["state"] == "paused"
        assert tick["nextFire"] is not None
        skipped = "schedule of tick skipped: paused"
        wait_for(lambda: daemon.output().count(skipped) >= 2, 30, daemon)
        assert daemon.runs("tick") == 0, daemon.output()
        assert control.post("/resume/tick").status_code == 200
        wait_for(lambda: daemon.runs("tick") >= 1, 30, daemon)
    stop(daemon)


@pytest.mark.docker
def test_hot_reload_rebuilds_a_changed_agent_dockerfile(
    make_project: ProjectFactory,
    base_image: str,
    docker_client: Any,
    tmp_path: Path,
    start_daemon: Callable[..., Daemon],
) -> None:
    """Editing a container agent's Dockerfile while the daemon runs rebuilds its image, and the
    next run uses the new one."""
    dockerfile = "FROM al-agent:latest\nUSER root\nRUN echo {} > /etc/agent-marker\nUSER node\n"
    root = make_project(
        {
            "agents/box/SKILL.md": "Box.\n",
            "agents/box/test-script.sh": 'echo "marker $(cat /etc/agent-marker)"\n',
            "agents/box/config.toml": '[[webhooks]]\nsource = "t"\n',
            "agents/box/Dockerfile": dockerfile.format("first"),
        },
        config='[webhooks.t]\ntype = "test"\nallowUnsigned = true\n',
    )
    daemon = start_daemon(root, daemon_env(tmp_path, docker=True), "--headless")
    (root / "agents/box/Dockerfile").write_text(dockerfile.format("second"))
    daemon.wait_for_output("reload: project reloaded: changed box", timeout=300)
    answer = httpx.post(
        f"http://127.0.0.1:{daemon.port}/webhooks/t",
        json={"event": "issues", "action": "opened", "repo": "o/r"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    daemon.wait_for_output("marker second", timeout=120)
    assert "marker first" not in daemon.output()
    stop(daemon)
