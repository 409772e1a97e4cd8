"""`al start` for real: cron fires, a webhook starts its agent, Ctrl-C stops it gracefully."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from action_llama.runs.store import RunStore

from support import AL, ProjectFactory, wait_for


@pytest.fixture
def daemon(
    make_project: ProjectFactory, host_users: tuple[str, ...], runs_root: Path, tmp_path: Path
) -> Iterator[tuple[Path, subprocess.Popen[str], int]]:
    user = host_users[0]
    runtime = f'[runtime]\ntype = "host-user"\nrun_as = "{user}"\n'
    script = 'echo "hello from $AL_AGENT via $GATEWAY_URL"\n'
    root = make_project(
        {
            "agents/tick/SKILL.md": "Tick.\n",
            "agents/tick/test-script.sh": script,
            "agents/tick/config.toml": 'schedule = "*/2 * * * * *"\n' + runtime,
            "agents/hook/SKILL.md": "Hook.\n",
            "agents/hook/test-script.sh": script,
            "agents/hook/config.toml": '[[webhooks]]\nsource = "t"\n' + runtime,
        },
        config='[webhooks.t]\ntype = "test"\nallowUnsigned = true\n',
    )
    env = {
        **os.environ,
        "AL_RUNS_DIR": str(runs_root),
        "AL_CREDENTIALS_DIR": str(tmp_path / "creds"),
        "DOCKER_HOST": "unix:///nonexistent.sock",  # host-user agents need no engine
    }
    proc = subprocess.Popen(
        [AL, "start", "-p", str(root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    marker = root / ".al/daemon.json"
    try:
        wait_for(marker.exists)
        yield root, proc, json.loads(marker.read_text())["port"]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_cron_and_webhook_start_runs_and_sigterm_stops_gracefully(
    daemon: tuple[Path, subprocess.Popen[str], int],
) -> None:
    """A seconds-schedule fires runs; a webhook delivery starts the matching agent and gets a
    receipt; SIGTERM ends the daemon with exit 0 and removes its marker file."""
    root, proc, port = daemon
    store = RunStore(root / ".al")
    try:
        wait_for(lambda: len(store.runs("tick")) >= 2)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/webhooks/t",
            json={"event": "issues", "action": "opened", "repo": "o/r"},
            timeout=10,
        )
        assert answer.status_code == 200
        body = answer.json()
        assert body["receiptId"]
        assert body["dispatched"][0]["agent"] == "hook"
        run_id = body["dispatched"][0]["runId"]
        # The daemon records the run a moment after it answers the delivery.
        wait_for(lambda: run_id in {r.run_id for r in store.runs("hook")})
        wait_for(lambda: store.get(run_id).status == "completed")
        assert all(r.trigger == "schedule" for r in store.runs("tick"))
        assert store.get(run_id).trigger == "webhook"
    finally:
        store.close()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "al: stopped" in out
    assert f"hello from hook via http://127.0.0.1:{port}" in out
    assert not (root / ".al/daemon.json").exists()


def test_runs_left_by_a_dead_scheduler_release_their_locks_at_start(
    make_project: ProjectFactory, host_users: tuple[str, ...], tmp_path: Path
) -> None:
    """A run a killed daemon left active gets its record closed and its locks released when
    the next daemon starts, so no agent waits on a holder that is gone."""
    from action_llama.state import Acquired, State

    root = make_project(
        {
            "agents/idle/SKILL.md": "Idle.\n",
            "agents/idle/test-script.sh": "true\n",
            # Host-user, so this daemon needs no Docker engine (the agent never runs).
            "agents/idle/config.toml": f'[runtime]\ntype = "host-user"\nrun_as = "{host_users[0]}"\n',
        }
    )
    state = State.open(root / ".al")
    store = RunStore(root / ".al")
    try:
        store.start("dead0001", "idle", "manual", None, "docker", None)
        state.active_runs.add(
            "dead0001", "idle", runtime="docker", secret="s" * 24, trigger={"type": "manual"}
        )
        assert isinstance(state.locks.acquire("github://o/r/issues/1", "dead0001"), Acquired)
    finally:
        store.close()
        state.close()
    proc = subprocess.Popen(
        [AL, "start", "-p", str(root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "AL_CREDENTIALS_DIR": str(tmp_path / "creds"),
            "DOCKER_HOST": "unix:///nonexistent.sock",
        },
    )
    try:
        wait_for((root / ".al/daemon.json").exists)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    state = State.open(root / ".al")
    store = RunStore(root / ".al")
    try:
        assert state.locks.list() == []
        assert state.active_runs.list() == []
        assert store.get("dead0001").status == "error"
    finally:
        store.close()
        state.close()
