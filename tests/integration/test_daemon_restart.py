"""Restart safety, for real: `kill -9` the daemon during runs, start it again on the same port.

Runs outlive their daemon (containers keep running, host-user runs have their own session);
the next daemon re-adopts them: their records continue and end with the script's exit code,
their logs hold every line once, their locks stay held until they end, the work queued
behind them runs, and a run whose container vanished meanwhile is recorded as ended.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.staging import stages_of
from action_llama.credentials.store import CredentialStore
from action_llama.errors import RunNotFound
from action_llama.runs.store import RunRecord, read_log
from action_llama.state import State

from support import (
    AL,
    ProjectFactory,
    left_in_swarm,
    script_agent,
    stored_run,
    stored_runs,
    system_users,
    wait_for,
)

#: Swarm runs cannot enforce a [network] policy: their projects open egress.
OPEN = '[network]\nmode = "open"\n'

#: This module's own run_as user: other test sessions on the machine remove the shared ones
#: (and kill their processes) when they end, which would kill a run meant to outlive its daemon.
RESTART_USER = "al-test-restart"

SLOW = (
    "rlock github://o/r/issues/5 >/dev/null || exit 9\n"
    "echo first\n"
    "sleep {seconds}\n"
    "echo second\n"
    "exit 3\n"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Daemon:
    """`al start -p ROOT --port PORT`, started (and killed) as often as a test needs."""

    root: Path
    port: int
    env: dict[str, str]
    output: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        marker = self.root / ".al/daemon.json"
        marker_before = marker.read_text() if marker.exists() else None
        with self.output.open("ab") as sink:
            proc = subprocess.Popen(
                [AL, "start", "-p", str(self.root), "--port", str(self.port)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        self.procs.append(proc)

        def up() -> bool:
            assert proc.poll() is None, self.output.read_text(errors="replace")
            return marker.exists() and marker.read_text() != marker_before

        wait_for(up, 300, "daemon start")

    def kill_9(self) -> None:
        proc = self.procs[-1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)

    def control(self, path: str) -> dict[str, Any]:
        """POST /control/<path> with the operator's key; the answer's JSON (200 expected)."""
        key = CredentialStore(Path(self.env["AL_CREDENTIALS_DIR"])).read(
            CredentialRef("gateway_api_key")
        )["key"]
        answer = httpx.post(
            f"http://127.0.0.1:{self.port}/control/{path}",
            headers={"Authorization": f"Bearer {key}"},
            json={},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def trigger(self, agent: str) -> dict[str, Any]:
        return self.control(f"trigger/{agent}")

    def runs(self, agent: str) -> list[RunRecord]:
        return sorted(stored_runs(self.root, agent, limit=100), key=lambda r: r.started_at)

    def run(self, run_id: str) -> RunRecord:
        return stored_run(self.root, run_id)

    def finished(self, run_id: str) -> bool:
        """Whether run `run_id` is recorded as ended (False before it is recorded at all)."""
        try:
            return self.run(run_id).finished_at is not None
        except RunNotFound:
            return False

    def records(self, run_id: str) -> list[dict[str, Any]]:
        return list(read_log(self.run(run_id).log_path))

    def script_lines(self, run_id: str) -> list[str]:
        """What the run's script printed so far (nothing before the run is recorded)."""
        try:
            records = self.records(run_id)
        except RunNotFound:
            return []
        return [r["msg"] for r in records if r.get("source") == "script"]

    def lock_holders(self) -> dict[str, str]:
        state = State.open(self.root / ".al")
        try:
            return {lock.key: lock.holder for lock in state.locks.list()}
        finally:
            state.close()

    def text(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture(scope="module")
def restart_user() -> Iterator[str]:
    """A system user for this module's host-user runs, removed after it."""
    with system_users(RESTART_USER):
        yield RESTART_USER


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[[Path, dict[str, str]], Daemon]]:
    made: list[Daemon] = []

    def make(root: Path, env: dict[str, str]) -> Daemon:
        creds = tmp_path / "creds"
        full_env = {**os.environ, "AL_CREDENTIALS_DIR": str(creds), **env}
        daemon = Daemon(root, free_port(), full_env, tmp_path / "daemon.log")
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.stop()


@pytest.mark.docker
@pytest.mark.slow
def test_kill_9_then_restart_re_adopts_containers_and_runs_the_queue(
    make_project: ProjectFactory,
    base_image: str,
    docker_client: Any,
    daemon_factory: Callable[[Path, dict[str, str]], Daemon],
) -> None:
    """A container run outlives a `kill -9` of its daemon; the next daemon (same port)
    re-adopts it: its lock stays held, its record ends with the script's exit 3 and holds
    both lines once, the lock is released, and the run queued behind it (scale 1) then runs.
    A container removed while no daemon ran is recorded as ended and its lock released; an
    adopted run can be killed like any other."""
    root = make_project(
        {
            **script_agent("slow", SLOW.format(seconds=20), config="scale = 1\n"),
            **script_agent(
                "doomed",
                "rlock github://o/r/issues/6 >/dev/null || exit 9\necho started\nsleep 300\n",
            ),
            **script_agent("victim", "echo started\nsleep 300\n"),
        }
    )
    daemon = daemon_factory(root, {})
    daemon.start()
    first = daemon.trigger("slow")
    assert first["outcome"] == "started", first
    adopted = first["runId"]
    assert daemon.trigger("slow")["outcome"] == "queued"
    doomed = daemon.trigger("doomed")["runId"]
    victim = daemon.trigger("victim")["runId"]
    wait_for(lambda: daemon.script_lines(adopted) == ["first"], 120, "the slow run's first line")
    wait_for(lambda: daemon.script_lines(doomed) == ["started"], 120, "the doomed run's line")
    wait_for(lambda: daemon.script_lines(victim) == ["started"], 120, "the victim run's line")

    daemon.kill_9()
    for container in docker_client.api.containers(filters={"label": f"al.run={doomed}"}):
        docker_client.api.remove_container(container["Id"], force=True)
    assert daemon.run(adopted).status == "running"
    daemon.start()

    assert daemon.run(adopted).status == "running", "the run ended before it could be adopted"
    assert daemon.lock_holders().get("github://o/r/issues/5") == adopted
    wait_for(lambda: daemon.run(doomed).status != "running", 30, "the doomed run's record")
    assert daemon.run(doomed).status == "error"
    assert "gone" in (daemon.run(doomed).error or "")
    assert "github://o/r/issues/6" not in daemon.lock_holders()
    assert daemon.control(f"kill/{victim}")["killed"] == [victim]
    wait_for(lambda: daemon.run(victim).finished_at, 30, "the killed run's end")
    assert daemon.run(victim).status == "killed"

    wait_for(lambda: daemon.run(adopted).finished_at, 120, "the adopted run's end")
    ended = daemon.run(adopted)
    assert (ended.status, ended.exit_code) == ("failed", 3)
    assert daemon.script_lines(adopted) == ["first", "second"]
    messages = [r["msg"] for r in daemon.records(adopted)]
    assert messages.count("run completed") == 1, messages
    assert len([m for m in messages if m.endswith("starting")]) == 1, messages
    # Its container is gone before its record is closed; its stage goes right after.
    assert not docker_client.api.containers(all=True, filters={"label": f"al.run={adopted}"})
    wait_for(lambda: stages_of(adopted) == [], 30, "the adopted run's stage removed")

    runs = wait_for(
        lambda: (rs := daemon.runs("slow")) and len(rs) == 2 and rs[1].finished_at and rs,
        120,
        "the queued run",
    )
    assert runs[1].started_at >= ended.finished_at - 1  # it waited for the adopted run's runner
    assert (runs[1].status, runs[1].exit_code) == ("failed", 3)
    assert daemon.script_lines(runs[1].run_id) == ["first", "second"]
    wait_for(lambda: daemon.lock_holders() == {}, 30, "the queued run's lock released")
    assert "re-adopted" in daemon.text()


#: Lists the run's ssh-agent's key, waits for the agent to go (its scheduler killed), then for
#: it to come back (the next scheduler adopted the run); bounded, 2 minutes each.
SSH_AGENT_BACK = r"""
ssh-add -l >/dev/null && echo served
i=0; while ssh-add -l >/dev/null 2>&1 && [ $i -lt 600 ]; do i=$((i+1)); sleep 0.2; done
ssh-add -l >/dev/null 2>&1 && echo "never gone" || echo gone
i=0; until ssh-add -l >/dev/null 2>&1 || [ $i -ge 600 ]; do i=$((i+1)); sleep 0.2; done
echo "back $(ssh-add -l | cut -d' ' -f2)"
"""


@pytest.mark.docker
@pytest.mark.slow
def test_an_adopted_runs_ssh_agent_is_served_again(
    make_project: ProjectFactory,
    base_image: str,
    tmp_path: Path,
    daemon_factory: Callable[[Path, dict[str, str]], Daemon],
) -> None:
    """A brokered git_ssh key is served by the scheduler running its run: when that one is
    killed (`kill -9`) the run's agent stops answering, and the next scheduler, adopting the
    run, serves the same key on the same socket again until the run ends."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(key)], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    root = make_project(script_agent("keyed", SSH_AGENT_BACK, 'credentials = ["git_ssh"]\n'))
    daemon = daemon_factory(root, {})
    CredentialStore(Path(daemon.env["AL_CREDENTIALS_DIR"])).write(
        CredentialRef("git_ssh"), {"id_rsa": key.read_text(), "username": "A", "email": "a@b.c"}
    )
    daemon.start()
    run_id = daemon.trigger("keyed")["runId"]
    wait_for(lambda: daemon.script_lines(run_id) == ["served"], 120, "the run's key listed")

    daemon.kill_9()
    daemon.start()
    wait_for(lambda: daemon.finished(run_id), 180, "the adopted run's end")
    assert daemon.script_lines(run_id) == ["served", "gone", f"back {fingerprint}"]
    assert daemon.run(run_id).status == "completed", daemon.records(run_id)
    wait_for(lambda: stages_of(run_id) == [], 30, "the run's stage removed")


def test_kill_9_then_restart_reattaches_a_host_user_run_through_its_pid_file(
    make_project: ProjectFactory,
    restart_user: str,
    runs_root: Path,
    daemon_factory: Callable[[Path, dict[str, str]], Daemon],
) -> None:
    """A host-user run outlives a `kill -9` of its daemon; the next daemon finds it through
    its pid file and follows it: the record ends with exit 3, its log holds both lines once,
    its lock is released, and its pid file, log and credentials stage are removed."""
    runtime = f'[runtime]\ntype = "host-user"\nrun_as = "{restart_user}"\n'
    root = make_project(script_agent("hosted", SLOW.format(seconds=12), config=runtime))
    daemon = daemon_factory(
        root,
        # Host-user agents need no engine.
        {"AL_RUNS_DIR": str(runs_root), "DOCKER_HOST": "unix:///nonexistent.sock"},
    )
    daemon.start()
    run_id = daemon.trigger("hosted")["runId"]
    wait_for(lambda: daemon.script_lines(run_id) == ["first"], 60, "the run's first line")

    daemon.kill_9()
    pid_file = runs_root / f"{run_id}.pid"
    assert pid_file.exists()
    pid = json.loads(pid_file.read_text())["pid"]
    assert Path(f"/proc/{pid}").exists(), "the run died with its daemon"
    daemon.start()
    assert daemon.run(run_id).status == "running"
    assert daemon.lock_holders().get("github://o/r/issues/5") == run_id

    wait_for(lambda: daemon.run(run_id).finished_at, 60, "the reattached run's end")
    ended = daemon.run(run_id)
    assert (ended.status, ended.exit_code) == ("failed", 3)
    assert daemon.script_lines(run_id) == ["first", "second"]
    assert [r["msg"] for r in daemon.records(run_id)].count("run completed") == 1
    wait_for(lambda: stages_of(run_id) == [], 30, "the run's stage removed")
    wait_for(lambda: daemon.lock_holders() == {}, 30, "the run's lock released")
    assert not pid_file.exists()
    assert not (runs_root / f"{run_id}.log").exists()


@pytest.mark.docker
@pytest.mark.slow
def test_kill_9_then_restart_re_adopts_a_swarm_run_and_kills_another(
    make_project: ProjectFactory,
    swarm_image: str,
    registry: str,
    docker_client: Any,
    daemon_factory: Callable[[Path, dict[str, str]], Daemon],
) -> None:
    """Swarm runs reach the gateway (their lock is taken through it) and outlive a `kill -9`
    of their daemon; the next daemon re-adopts them by label: the adopted run's record ends
    with exit 3 and holds both lines once, its lock is released; another adopted run is
    killed through the gateway; afterwards no service, secret, config or volume of either is
    left in the swarm."""
    swarm = f'[swarm]\nregistry = "{registry}"\n\n[runtime]\ntype = "swarm"\n\n{OPEN}'
    root = make_project(
        {
            **script_agent("slow", SLOW.format(seconds=15)),
            **script_agent("victim", "echo started\nsleep 300\n", "timeout = 600\n"),
        },
        config=swarm,
    )
    daemon = daemon_factory(root, {})
    daemon.start()
    adopted = daemon.trigger("slow")["runId"]
    victim = daemon.trigger("victim")["runId"]
    wait_for(lambda: daemon.script_lines(adopted) == ["first"], 120, "the slow run's first line")
    wait_for(lambda: daemon.script_lines(victim) == ["started"], 120, "the victim run's line")
    assert daemon.lock_holders().get("github://o/r/issues/5") == adopted

    daemon.kill_9()
    daemon.start()
    assert daemon.run(adopted).status == "running", "the run ended before it could be adopted"
    assert daemon.control(f"kill/{victim}")["killed"] == [victim]
    wait_for(lambda: daemon.run(victim).finished_at, 30, "the killed run's end")
    assert daemon.run(victim).status == "killed"

    wait_for(lambda: daemon.run(adopted).finished_at, 120, "the adopted run's end")
    ended = daemon.run(adopted)
    assert (ended.status, ended.exit_code) == ("failed", 3)
    assert daemon.script_lines(adopted) == ["first", "second"]
    assert [r["msg"] for r in daemon.records(adopted)].count("run completed") == 1
    wait_for(lambda: daemon.lock_holders() == {}, 30, "the adopted run's lock released")

    wait_for(
        lambda: left_in_swarm(docker_client, root) == {},
        30,
        "nothing of either run left in the swarm",
    )
    assert "re-adopted" in daemon.text()


@pytest.mark.docker
@pytest.mark.slow
def test_swarm_runs_call_each_other_and_shut_themselves_down_through_the_gateway(
    make_project: ProjectFactory,
    swarm_image: str,
    registry: str,
    docker_client: Any,
    daemon_factory: Callable[[Path, dict[str, str]], Daemon],
) -> None:
    """From swarm tasks, at the gateway address their runtime gives them: a run calls another
    agent (al-subagent), which runs as a swarm service too, and gets its al-return back; a run
    that would sleep 60 s after `al-shutdown` ends within seconds of asking; nothing of the
    three runs is left in the swarm."""
    swarm = f'[swarm]\nregistry = "{registry}"\n\n[runtime]\ntype = "swarm"\n\n{OPEN}'
    root = make_project(
        {
            **script_agent(
                "caller",
                "id=$(echo ctx | al-subagent callee | python3 -c "
                "'import json, sys; print(json.load(sys.stdin)[\"callId\"])')\n"
                'echo "waited: $(al-subagent-wait "$id" --timeout 90)"\n',
            ),
            **script_agent("callee", 'al-return "callee ran"\n'),
            **script_agent(
                "quitter", 'echo asking\nal-shutdown "done early"\nsleep 60\necho late\n'
            ),
        },
        config=swarm,
    )
    daemon = daemon_factory(root, {})
    daemon.start()
    caller = daemon.trigger("caller")["runId"]
    quitter = daemon.trigger("quitter")["runId"]

    wait_for(lambda: daemon.finished(quitter), 45, "the quitter's end")
    said = daemon.script_lines(quitter)
    assert said[0] == "asking"
    assert json.loads(said[1])["killed"] is True
    assert "late" not in said
    assert (daemon.run(quitter).duration or 0) < 30

    wait_for(lambda: daemon.finished(caller), 150, "the caller's end")
    assert daemon.run(caller).status == "completed", daemon.records(caller)
    (callee,) = daemon.runs("callee")
    assert (callee.trigger, callee.runtime) == ("agent-call", "swarm")
    (waited,) = [line for line in daemon.script_lines(caller) if line.startswith("waited: ")]
    (answer,) = json.loads(waited.removeprefix("waited: ")).values()
    assert (answer["status"], answer["returnValue"]) == ("completed", "callee ran")

    wait_for(
        lambda: left_in_swarm(docker_client, root) == {},
        30,
        "nothing of the runs left in the swarm",
    )
