"""What `al doctor` checks for swarm agents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from action_llama.doctor.result import Check
    from action_llama.project import Agent, Project
    from action_llama.runtimes.swarm import SwarmRuntime


def swarm_checks(runtime: SwarmRuntime, project: Project, agents: Sequence[Agent]) -> list[Check]:
    return []
