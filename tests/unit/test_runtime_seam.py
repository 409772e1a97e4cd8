"""What the runtimes answer about the agents they run, so nothing else branches on the kind."""

from __future__ import annotations

import os
from pathlib import Path

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
    assert runtime_for(agents["plain"]).gateway_url(8080) == "http://al-gateway:8080"
    assert runtime_for(agents["onhost"]).gateway_url(8080) == "http://127.0.0.1:8080"


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
