"""How runtimes turn a run's `[network]` into its network, without the engine: open runs keep
the bridge, and a host-user run whose policy cannot be enforced is refused, never run open."""

from __future__ import annotations

from pathlib import Path

import pytest

from action_llama.egress import firewall
from action_llama.egress.policy import effective_policy
from action_llama.errors import RunError
from action_llama.project import load_project
from action_llama.runtimes.base import Limits, RunSpec
from action_llama.runtimes.docker_network import gateway_port, plan_network
from action_llama.runtimes.host_user_network import plan_host_network

from support import write_files


def spec(tmp_path: Path, network: str) -> RunSpec:
    write_files(
        tmp_path / "proj",
        {
            "config.toml": network,
            "agents/a/SKILL.md": "A.\n",
            "agents/a/test-script.sh": "true\n",
        },
    )
    project = load_project(tmp_path / "proj")
    return RunSpec(
        run_id="r1",
        agent="a",
        project=project.root,
        static_dir=tmp_path,
        credentials_dir=tmp_path,
        workspace=str(tmp_path),
        limits=Limits(memory_bytes=2**30, cpus=1),
        timeout=60,
        env={"GATEWAY_URL": "http://al-gateway:8123"},
        network=effective_policy(project.agents["a"]),
    )


def test_open_runs_stay_on_the_bridge_with_the_gateway_name_mapped(tmp_path: Path) -> None:
    """`mode = "open"`: no egress network, al-gateway and host.docker.internal are the host."""
    plan = plan_network(None, spec(tmp_path, '[network]\nmode = "open"\n'))  # type: ignore[arg-type]
    assert plan.network_mode is None
    assert plan.extra_hosts == {
        "host.docker.internal": "host-gateway",
        "al-gateway": "host-gateway",
    }
    assert plan.env == {}


def test_the_gateway_port_comes_from_the_runs_gateway_url(tmp_path: Path) -> None:
    """The runtime registers the gateway's port it gave the run in GATEWAY_URL."""
    assert gateway_port(spec(tmp_path, "")) == 8123


def test_host_user_runs_are_refused_when_their_policy_cannot_be_enforced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No iptables (or no root): the run does not start, and the error says how to go on."""
    monkeypatch.setattr(firewall, "available", lambda: "iptables refused: Permission denied")
    with pytest.raises(RunError) as info:
        plan_host_network(spec(tmp_path, ""))
    assert "cannot be enforced for host-user runs here" in info.value.message
    assert info.value.hint is not None
    assert 'mode = "open" in config.toml' in info.value.hint


def test_host_user_runs_under_open_are_left_alone(tmp_path: Path) -> None:
    """`open` asks nothing of the firewall."""
    plan = plan_host_network(spec(tmp_path, '[network]\nmode = "open"\n'))
    assert plan.env == {}
    assert plan.notes == ()
