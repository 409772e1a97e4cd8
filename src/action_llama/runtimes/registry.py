"""Runtimes by name, imported lazily (a host-user run must not need the docker package).

Everything outside `runtimes/` that depends on where an agent runs asks its runtime (see the
`Runtime` protocol) through these functions, never the agent's `[runtime] type`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from action_llama.project import Agent, Project
    from action_llama.runtimes.base import Runtime

RUNTIMES = {
    "docker": "action_llama.runtimes.docker:DockerRuntime",
    "host-user": "action_llama.runtimes.host_user:HostUserRuntime",
    "swarm": "action_llama.runtimes.swarm:SwarmRuntime",
}
#: The runtime for each `[runtime] type` of an agent's config.
BY_AGENT_TYPE = {"container": "docker", "host-user": "host-user", "swarm": "swarm"}


def runtime_name(agent: Agent) -> str:
    return BY_AGENT_TYPE[agent.config.runtime.type]


def runtime_class(name: str) -> type[Runtime]:
    """The class of the runtime called `name` (KeyError for an unknown name)."""
    module_name, _, attr = RUNTIMES[name].partition(":")
    factory: type[Runtime] = getattr(importlib.import_module(module_name), attr)
    return factory


def get_runtime(name: str) -> Runtime:
    """A new runtime of the kind `name` (KeyError for an unknown name)."""
    return runtime_class(name)()


def runtime_for(agent: Agent) -> Runtime:
    """A new runtime of the kind `agent` runs on."""
    return get_runtime(runtime_name(agent))


def by_runtime(agents: Iterable[Agent]) -> dict[str, list[Agent]]:
    """`agents` grouped by the name of their runtime; every runtime is a key, maybe with none."""
    groups: dict[str, list[Agent]] = {name: [] for name in RUNTIMES}
    for agent in agents:
        groups[runtime_name(agent)].append(agent)
    return groups


def image_agents(project: Project) -> list[str]:
    """The agents of `project` whose runs need an image of the chain, by name."""
    return [
        agent.name
        for agent in project.agents.values()
        if runtime_class(runtime_name(agent)).needs_image
    ]


def publish_images(project: Project, image_ids: Mapping[str, str]) -> dict[str, str]:
    """What each agent's runs start from, given the chain's image ids on this engine by agent:
    each runtime makes its agents' images reachable where their runs start."""
    refs: dict[str, str] = {}
    for name, agents in by_runtime(project.agents.values()).items():
        mine = {a.name: image_ids[a.name] for a in agents if a.name in image_ids}
        if mine:
            refs.update(get_runtime(name).publish(project, mine))
    return refs


def gateway_hosts(project: Project, port: int) -> list[str]:
    """The hosts runs of `project` reach the gateway by (each runtime in use says), so the
    gateway also listens on those that are addresses of this machine."""
    from urllib.parse import urlsplit

    hosts: list[str] = []
    for name, agents in by_runtime(project.agents.values()).items():
        host = urlsplit(get_runtime(name).gateway_url(project, port)).hostname if agents else None
        if host and host not in hosts:
            hosts.append(host)
    return hosts


async def live_run_ids(project: Path) -> set[str] | None:
    """Ids of the runs of the project at `project` that some runtime still has (running or
    not yet removed); None when a runtime cannot tell (its engine is down)."""
    from action_llama.errors import ActionLlamaError

    found: set[str] = set()
    for name in RUNTIMES:
        runtime = get_runtime(name)
        try:
            found |= {handle.run_id for handle in await runtime.list_runs(project)}
        except ActionLlamaError:
            return None
    return found
