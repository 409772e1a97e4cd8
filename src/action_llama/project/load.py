"""`load_project`: a project as every command receives it, validated once per change of its
files (`project.snapshot` keeps the last validated load), and its agents by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from action_llama import oserrors
from action_llama.config.agent import check_agent_name
from action_llama.config.environment import passed_to_runs
from action_llama.errors import AgentNotFound
from action_llama.project import snapshot
from action_llama.project.model import Agent, Project


def load_project(root: Path | str) -> Project:
    """The project at `root`, validated; one ConfigError lists every problem found.

    Files as they were at the project's last load are not read and validated again: the
    load is taken from its snapshot (and pydantic, which validates, is not even imported)."""
    root = oserrors.project_root(root)
    taken = snapshot.inputs(root)
    known = snapshot.read(root, taken)
    if known is not None:
        return dataclasses.replace(known, run_env=passed_to_runs())
    from action_llama.project.loader import validate_project

    project = validate_project(root)
    snapshot.write(project, taken)
    return project


def get_agent(project: Project, name: str) -> Agent:
    """The agent called `name`, or AgentNotFound naming the ones that exist."""
    if name in project.agents:
        return project.agents[name]
    bad_name = check_agent_name(name)
    if bad_name:
        available = ", ".join(project.agents) or "(none)"
        raise AgentNotFound(bad_name, hint=f"Available agents: {available}")
    folder = project.root / "agents" / name
    if folder.is_dir():
        raise AgentNotFound(
            f"Agent config not found at {folder / 'SKILL.md'}.",
            hint=f"Every agent needs a SKILL.md with its instructions: add agents/{name}/SKILL.md",
        )
    available = ", ".join(project.agents) or "(none)"
    import difflib

    close = difflib.get_close_matches(name, list(project.agents), n=1)
    hint = f'Did you mean "{close[0]}"?' if close else f"Available agents: {available}"
    raise AgentNotFound(f'Agent "{name}" not found in {project.root / "agents"}.', hint=hint)
