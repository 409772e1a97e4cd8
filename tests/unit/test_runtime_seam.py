"""What the runtimes answer about the agents they run, so nothing else branches on the kind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from action_llama.errors import AgentNotRunnable
from action_llama.project import load_project
from action_llama.runtimes.base import CONTAINER_UID, RunIdentity
from action_llama.runtimes.registry import by_runtime, image_agents, runtime_for

from support import write_files

HOST = '[runtime]\ntype = "host-user"\nrun_as = "{user}"\ngroups = {groups}\n'


def _project(tmp_path: Path, user: str = "root", groups: str = "[]") -> object:
    write_files(
        tmp_path / "proj",
        {
            "config.toml": '[local]\nmemory = "2g"\n',
            "agents/boxed/SKILL.md": "Boxed.\n",
            "agents/boxed/Dockerfile": "FROM al-agent:latest\n",
            "agents/plain/SKILL.md": "Plain.\n",
            "agents/onhost/SKILL.md": "On the host.\n",
            "agents/onhost/Dockerfile": "FROM al-agent:latest\n",
            "agents/onhost/config.toml": HOST.format(user=user, groups=groups),
        },
    )
    return load_project(tmp_path / "proj")


def test_only_agents_whose_runtime_needs_an_image_get_one(tmp_path: Path) -> None:
    """Container agents are built an image; a host-user agent is not."""
    project = _project(tmp_path)
    assert image_agents(project) == ["boxed", "plain"]  # type: ignore[arg-type]
    groups = by_runtime(project.agents.values())  # type: ignore[attr-defined]
    assert [a.name for a in groups["docker"]] == ["boxed", "plain"]
    assert [a.name for a in groups["host-user"]] == ["onhost"]


def test_runs_reach_the_gateway_the_way_their_runtime_can(tmp_path: Path) -> None:
    """Containers use al-gateway (a name each container maps: to the egress proxy, which
    relays it, or to the host); host-user runs use loopback."""
    project = _project(tmp_path)
    agents = project.agents  # type: ignore[attr-defined]
    url = runtime_for(agents["plain"]).gateway_url(project, 8080)  # type: ignore[arg-type]
    assert url == "http://al-gateway:8080"
    url = runtime_for(agents["onhost"]).gateway_url(project, 8080)  # type: ignore[arg-type]
    assert url == "http://127.0.0.1:8080"


def test_who_a_run_is(tmp_path: Path) -> None:
    """A container run is the image's uid 1000 whoever starts it; a host-user run is its
    run_as user with its groups."""
    project = _project(tmp_path, user="root", groups='["root"]')
    agents = project.agents  # type: ignore[attr-defined]
    assert runtime_for(agents["plain"]).identity(agents["plain"]) == RunIdentity(
        CONTAINER_UID, CONTAINER_UID
    )
    assert runtime_for(agents["onhost"]).identity(agents["onhost"]) == RunIdentity(
        0, 0, "root", ("root",)
    )


def test_a_missing_run_as_user_is_not_runnable_with_the_fix(tmp_path: Path) -> None:
    """A host-user agent whose user does not exist cannot run; the hint says how to make it."""
    project = _project(tmp_path, user="al-no-such-user-x")
    agent = project.agents["onhost"]  # type: ignore[attr-defined]
    with pytest.raises(AgentNotRunnable) as info:
        runtime_for(agent).identity(agent)
    assert "al-no-such-user-x" in info.value.message
    assert info.value.hint == "Create it with: al doctor --fix"


def test_container_settings_are_said_not_to_apply_to_a_host_user_agent(tmp_path: Path) -> None:
    """A host-user agent's Dockerfile and the project's [local] are warned about, once; a
    container agent gets no such warning."""
    project = _project(tmp_path)
    agents = project.agents  # type: ignore[attr-defined]
    (warning,) = runtime_for(agents["onhost"]).warnings(project, agents["onhost"])  # type: ignore[arg-type]
    assert "agents/onhost/Dockerfile and [local] in config.toml do not apply" in warning
    assert runtime_for(agents["boxed"]).warnings(project, agents["boxed"]) == []  # type: ignore[arg-type]
    assert runtime_for(agents["onhost"]).describe(agents["onhost"]) == "host user root"
    assert runtime_for(agents["boxed"]).describe(agents["boxed"]) == "container"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_doctor_switches_users_the_way_runs_do(tmp_path: Path) -> None:
    """The host-user runtime's doctor check runs `true` as the agent's user with the run's
    groups, by the same switch runs use."""
    project = _project(tmp_path, user="nobody", groups='["nogroup"]')
    agent = project.agents["onhost"]  # type: ignore[attr-defined]
    checks = runtime_for(agent).checks(project, [agent], fix=False)  # type: ignore[arg-type]
    by_name = {c.name: c for c in checks}
    assert by_name["switch to nobody"].status == "ok"
    assert "no sudo rule needed" in by_name["switch to nobody"].detail


SWARM_PROJECT = """
[swarm]
registry = "registry.internal:5000"
advertise = "http://10.0.0.5:8080/"

[runtime]
type = "swarm"
constraints = ["node.labels.al == true"]
"""


def _swarm_project(tmp_path: Path) -> Any:
    write_files(
        tmp_path / "proj",
        {
            "config.toml": SWARM_PROJECT,
            "agents/spread/SKILL.md": "Spread.\n",
            "agents/spread/config.toml": '[runtime]\nworkspace = "per-run"\n',
            "agents/kept/SKILL.md": "Kept.\n",
            "agents/boxed/SKILL.md": "Boxed.\n",
            "agents/boxed/config.toml": '[runtime]\ntype = "container"\nrun_as = "x"\n',
        },
    )
    return load_project(tmp_path / "proj")


def test_the_project_runtime_is_every_agents_default_key_by_key(tmp_path: Path) -> None:
    """[runtime] in the project's config.toml is the default of every agent; an agent's own
    keys override it one by one."""
    agents = _swarm_project(tmp_path).agents
    assert agents["kept"].config.runtime.type == "swarm"
    assert agents["kept"].config.runtime.workspace == "pinned"
    assert agents["spread"].config.runtime.workspace == "per-run"
    assert agents["spread"].config.runtime.constraints == ["node.labels.al == true"]
    assert agents["boxed"].config.runtime.type == "container"


def test_swarm_agents_get_images_pushed_and_reach_the_advertised_gateway(tmp_path: Path) -> None:
    """Swarm runs need the chain's images; they reach the gateway at [swarm] advertise; `al`
    itself owns their staged files (it makes them secrets and configs); the keys that do
    not apply are said, on either side."""
    project = _swarm_project(tmp_path)
    agents = project.agents
    assert image_agents(project) == ["boxed", "kept", "spread"]
    assert [a.name for a in by_runtime(agents.values())["swarm"]] == ["kept", "spread"]
    swarm = runtime_for(agents["kept"])
    assert swarm.gateway_url(project, 8080) == "http://10.0.0.5:8080"
    assert swarm.identity(agents["kept"]) == RunIdentity(os.geteuid(), os.getegid())
    assert "this node" in swarm.describe(agents["kept"])
    assert "node.labels.al == true" in swarm.describe(agents["spread"])
    (ignored,) = runtime_for(agents["boxed"]).warnings(project, agents["boxed"])
    assert '[runtime] constraints of agent boxed only apply to type = "swarm"' in ignored


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"config.toml": '[runtime]\ntype = "swarm"\nconstraints = ["node.labels.al"]\n'},
            '"node.labels.al" is not a placement constraint',
        ),
        (
            {"config.toml": '[swarm]\nregistry = "http://reg:5000"\n'},
            "is not a registry address",
        ),
        (
            {"agents/a/config.toml": '[swarm]\nregistry = "reg:5000"\n'},
            "belongs in the project's config.toml",
        ),
        (
            {"agents/a/config.toml": '[runtime]\nworkspace = "shared"\n'},
            "workspace",
        ),
    ],
)
def test_swarm_settings_are_checked_when_the_project_loads(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    """A malformed constraint, registry or workspace, or [swarm] in an agent's file, is a
    ConfigError naming the file and key."""
    from action_llama.errors import ConfigError

    write_files(tmp_path / "proj", {"agents/a/SKILL.md": "A.\n", **files})
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path / "proj")
    assert expected in str(info.value) + str(info.value.hint)


def test_swarm_agents_without_open_egress_fail_doctor_with_the_fix(tmp_path: Path) -> None:
    """A swarm agent under the default allowlist (or none) is a failing check naming the file
    and both fixes: its runs would be refused, since no node has the egress proxy."""
    from action_llama.runtimes.swarm_checks import network_checks

    project = _swarm_project(tmp_path)
    agents = project.agents
    write_files(tmp_path / "proj", {"agents/spread/config.toml": '[network]\nmode = "open"\n'})
    opened = load_project(tmp_path / "proj").agents["spread"]
    [check] = network_checks([agents["kept"], opened])
    assert check.name == "network kept"
    assert check.status == "fail"
    assert 'mode = "allowlist"' in check.detail
    assert check.fix is not None
    assert '[runtime] type = "docker"' in check.fix
    assert 'mode = "open"' in check.fix
