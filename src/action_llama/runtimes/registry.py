"""Runtimes by name, imported lazily (a host-user run must not need the docker package)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from action_llama.project import Agent
    from action_llama.runtimes.base import Runtime


def runtime_name(agent: Agent) -> str:
    return BY_AGENT_TYPE[agent.config.runtime.type]


RUNTIMES = {
    "docker": "action_llama.runtimes.docker:DockerRuntime",
    "host-user": "action_llama.runtimes.host_user:HostUserRuntime",
}
#: The runtime for each `[runtime] type` of an agent's config.
BY_AGENT_TYPE = {"container": "docker", "host-user": "host-user"}


def get_runtime(name: str) -> Runtime:
    """A new runtime of the kind `name` (KeyError for an unknown name)."""
    module_name, _, attr = RUNTIMES[name].partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    runtime: Runtime = factory()
    return runtime
