"""Egress under `al start`, for container and host-user runs alike: helpers reach the gateway
under `none` (and the default `allowlist`, which the daemon tests exercise throughout), a model
session reaches its base_url, and `al stop` leaves no proxy, network or firewall rule of the
project behind."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.egress import firewall
from action_llama.egress.deploy import LABEL_EGRESS, project_id
from action_llama.runs.store import read_log

from fakes.model_server import FakeModelServer, reply, tool_call
from support import (
    AL,
    ProjectFactory,
    fake_models_config,
    model_agent,
    run_al,
    script_agent,
    stored_runs,
    wait_for,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

#: Every gateway helper, from a run whose network is `none`.
HELPERS = """
rlock test://egress/1 >/dev/null; echo "rlock=$?"
echo '{"n":1}' | al-subagent callee >/dev/null; echo "subagent=$?"
curl -sSf -m 5 http://allowed.example/ >/dev/null 2>&1; echo "outside=$?"
al-shutdown "seen enough" >/dev/null; echo "shutdown=$?"
sleep 30
echo "still here"
"""


@pytest.fixture(params=["container", "host-user"])
def daemon(
    request: pytest.FixtureRequest,
    make_project: ProjectFactory,
    base_image: str,
    model_server: FakeModelServer,
    tmp_path: Path,
) -> Iterator[tuple[Path, int, dict[str, str]]]:
    runtime, model_host, extra_env = "", "host.docker.internal", {}
    if request.param == "host-user":
        user = request.getfixturevalue("host_users")[0]
        runtime = f'[runtime]\ntype = "host-user"\nrun_as = "{user}"\n'
        # The model server is a loopback service to a host-user run, allowed by its base_url.
        model_host = "127.0.0.1"
        extra_env = {"AL_RUNS_DIR": str(request.getfixturevalue("runs_root"))}
    root = make_project(
        {
            **script_agent("sealed", HELPERS, runtime + '[network]\nmode = "none"\n'),
            **script_agent("callee", "echo called\n", runtime),
            **model_agent("talker", config='models = ["primary"]\n' + runtime),
        },
        config=fake_models_config(model_server, model_host),
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "AL_CREDENTIALS_DIR": str(tmp_path / "creds"), **extra_env}
    CredentialStore(tmp_path / "creds").write(CredentialRef("openai_key"), {"token": "sk-fake"})
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [AL, "start", "-p", str(root), "--port", str(port), "--headless"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            return (root / ".al/daemon.json").exists()

        wait_for(up, 300, "daemon start")
        yield root, port, env
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=120)
        log.close()


def trigger(root: Path, port: int, env: dict[str, str], agent: str) -> str:
    key = CredentialStore(Path(env["AL_CREDENTIALS_DIR"])).read(CredentialRef("gateway_api_key"))[
        "key"
    ]
    answer = httpx.post(
        f"http://127.0.0.1:{port}/control/trigger/{agent}",
        headers={"Authorization": f"Bearer {key}"},
        json={},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    run_id: str = answer.json()["runId"]
    return run_id


def ended(root: Path, agent: str, run_id: str) -> Any:
    return next(
        (r for r in stored_runs(root, agent) if r.run_id == run_id and r.status != "running"),
        None,
    )


def test_gateway_helpers_and_models_work_and_al_stop_removes_the_egress(
    daemon: tuple[Path, int, dict[str, str]],
    model_server: FakeModelServer,
    docker_client: Any,
) -> None:
    """Under `none`, rlock, al-subagent and al-shutdown reach the gateway (through the proxy's
    relay) while nothing else is reachable; a model session reaches its base_url; then
    `al stop` removes the project's proxy, networks and firewall rules."""
    root, port, env = daemon
    run_id = trigger(root, port, env, "sealed")
    run = wait_for(lambda: ended(root, "sealed", run_id), 120, "sealed run")
    lines = [r["msg"] for r in read_log(run.log_path) if r.get("source") == "script"]
    assert "rlock=0" in lines
    assert "subagent=0" in lines
    assert "outside=0" not in lines
    assert "still here" not in lines  # al-shutdown stopped it
    assert wait_for(lambda: any(r.status == "completed" for r in stored_runs(root, "callee")))

    model_server.script(tool_call("bash", command="echo from-the-model"), reply("done"))
    talk = trigger(root, port, env, "talker")
    finished = wait_for(lambda: ended(root, "talker", talk), 180, "model run")
    assert finished.status == "completed", finished
    assert len(model_server.requests) >= 2

    label = f"al.project={root}"
    assert docker_client.api.containers(filters={"label": [label, f"{LABEL_EGRESS}=proxy"]})
    stopped = run_al("stop", "-p", str(root), env=env, timeout=180)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not docker_client.api.containers(all=True, filters={"label": [label, LABEL_EGRESS]})
    assert not docker_client.api.networks(filters={"label": [label, LABEL_EGRESS]})
    ours = [
        r
        for chain in ("INPUT", "DOCKER-USER", "OUTPUT", firewall.RUNS_CHAIN)
        for r in firewall._listed(chain)
        if firewall._ours(r, project_id(root))
    ]
    assert ours == []
