"""How many runs of each agent may go at once."""

from __future__ import annotations

from action_llama.project import Project


def runner_counts(project: Project) -> dict[str, int]:
    """Per agent: its `scale` (else `defaultAgentScale`), within the project-wide `scale` cap.

    Agents take from the cap in name order; once it is used up, later agents get 0 (the
    original pinned them to 1, exceeding the cap and even waking scale-0 agents).
    """
    cap = project.config.scale
    remaining = cap
    counts: dict[str, int] = {}
    for name in sorted(project.agents):
        agent = project.agents[name]
        wanted = agent.config.scale
        if wanted is None:
            wanted = project.config.default_agent_scale
        if remaining is not None:
            wanted = min(wanted, max(remaining, 0))
            remaining -= wanted
        counts[name] = wanted
    return counts
