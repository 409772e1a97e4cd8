"""Read a project directory into validated models, naming the file and key in every error."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from action_llama.config import AgentFileConfig, ProjectConfig, SkillFile, SkillFrontmatter
from action_llama.config._base import keys
from action_llama.config._base import validate as validate_table
from action_llama.config.agent import check_agent_name
from action_llama.config.environment import passed_to_runs
from action_llama.config.skill import split_frontmatter
from action_llama.errors import ConfigError
from action_llama.layout import AGENT_FILES
from action_llama.project.errors import describe
from action_llama.project.files import parse_frontmatter, parse_toml, read_text, unreadable
from action_llama.project.model import Agent, Project
from action_llama.project.snapshot import file_identity

M = TypeVar("M")


def _label(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _read_toml(path: Path, root: Path) -> dict[str, Any]:
    text = read_text(path, _label(path, root))
    return {} if text is None else parse_toml(text, _label(path, root))


#: Keys written in the wrong file: a hint saying where they belong.
_PROJECT_ONLY = {
    key: f"\"{key}\" belongs in the project's config.toml, not in an agent's."
    for key in keys(ProjectConfig).keys() - keys(AgentFileConfig).keys()
}
_AGENT_ONLY = {
    key: f'"{key}" belongs in an agent\'s config.toml (agents/<name>/config.toml).'
    for key in keys(AgentFileConfig).keys() - keys(ProjectConfig).keys()
}


def _validate(
    model: type[M],
    data: dict[str, Any],
    label: str,
    elsewhere: dict[str, str] | None = None,
    *,
    validate: Callable[[dict[str, Any]], M] | None = None,
) -> tuple[M | None, list[str], list[str]]:
    """`data` as a `model` (through `validate` when the table has its own), or the problems
    and hints that say why it is not one."""
    from pydantic import ValidationError

    try:
        return (validate or (lambda raw: validate_table(model, raw)))(data), [], []
    except ValidationError as exc:
        problems, hints = describe(exc, model, label, elsewhere, data)
        return None, problems, hints


def _raise(problems: list[str], hints: list[str]) -> None:
    if not problems:
        return
    if len(problems) == 1:
        message = problems[0]
    else:
        message = f"{len(problems)} problems in the project files:"
    hint = "\n".join(dict.fromkeys(hints)) or None
    raise ConfigError(message, hint=hint, problems=problems)


def _kind(path: Path, label: str) -> str | None:
    """ "dir", "file" or "other" for what is at `path` (links followed), None for nothing;
    ConfigError when it cannot be looked at (a symbolic link loop, no permission)."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError) as exc:
        if not path.is_symlink():
            return None
        raise unreadable(label, path, exc) from exc
    except OSError as exc:
        raise unreadable(label, path, exc) from exc
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def check_project_dir(root: Path) -> None:
    """Refuse directories that are not projects, with the likely mistake named."""
    kind = _kind(root, f'Project directory "{root}"')
    if kind is None:
        raise ConfigError(
            f'Project directory "{root}" does not exist.',
            hint="Pass the project folder with -p DIR, or create one with: al new <dir>",
        )
    if kind != "dir":
        raise ConfigError(
            f'"{root}" is a file, not a directory: -p takes the project folder.',
            hint=f"Pass the folder that holds config.toml and agents/: -p {root.parent}",
        )
    if _kind(root / "SKILL.md", "SKILL.md") == "file" and root.parent.name == "agents":
        raise ConfigError(
            f'"{root}" looks like an agent directory, not a project directory.',
            hint=f"Run from the project root: -p {root.parent.parent}",
        )
    has_config = _kind(root / "config.toml", "config.toml") is not None
    if not has_config and _kind(root / "agents", "agents") is None:
        raise ConfigError(
            f'"{root}" is not an action-llama project (no config.toml and no agents/ folder).',
            hint="Create one with: al new <dir>   (or pass the project folder with -p DIR)",
        )


def discover_agent_dirs(root: Path) -> list[Path]:
    """Folders under agents/ holding an agent's files, sorted by name (dot-folders and
    node_modules skipped). ConfigError when agents/ (or an entry) cannot be read."""
    agents_dir = root / "agents"
    kind = _kind(agents_dir, "agents")
    if kind is None:
        return []
    if kind != "dir":
        raise ConfigError(
            "agents: is a file, not a folder.",
            hint=f"Agents live in folders agents/<name>/: rename the file {agents_dir}.",
        )
    try:
        entries = sorted(agents_dir.iterdir())
    except OSError as exc:
        raise unreadable("agents", agents_dir, exc) from exc
    found = []
    for entry in entries:
        if entry.name.startswith(".") or entry.name == "node_modules":
            continue
        label = _label(entry, root)
        if _kind(entry, label) == "dir" and any(
            os.path.lexists(entry / name) for name in AGENT_FILES
        ):
            found.append(entry)
    return found


def _load_skill(path: Path, root: Path, problems: list[str], hints: list[str]) -> SkillFile | None:
    label = _label(path, root)
    try:
        text = read_text(path, label)
        if text is None:
            problems.append(f"{label}: is missing")
            hints.append(
                f"Every agent needs a SKILL.md with its instructions: add {label}, or remove "
                f"the folder {_label(path.parent, root)} if it is not an agent."
            )
            return None
        block, body = split_frontmatter(text)
        if block is None and text.lstrip().startswith("---"):
            raise ConfigError(
                f"{label}: the frontmatter opened by the first '---' line is never closed.",
                hint="End it with a second '---' line before the instructions.",
            )
        data = {} if block is None else parse_frontmatter(block, label)
    except ConfigError as exc:
        problems.append(exc.message)
        hints.append(exc.hint or "")
        return None
    fm, p, h = _validate(SkillFrontmatter, data, f"{label} frontmatter")
    problems += p
    hints += h
    if fm is None:
        return None
    return SkillFile(frontmatter=fm, body=body)


def _load_agent(
    path: Path, root: Path, config: ProjectConfig
) -> tuple[Agent | None, list[str], list[str]]:
    problems: list[str] = []
    hints: list[str] = []
    name = path.name
    bad_name = check_agent_name(name)
    if bad_name:
        problems.append(f"{_label(path, root)}: {bad_name}")
        hints.append(f"Rename the folder agents/{name}.")
    skill = _load_skill(path / "SKILL.md", root, problems, hints)
    cfg_path = path / "config.toml"
    try:
        raw = _read_toml(cfg_path, root)
    except ConfigError as exc:
        problems.append(exc.message)
        hints.append(exc.hint or "")
        raw = None
    agent_cfg = None
    if raw is not None:
        agent_cfg, p, h = _validate(AgentFileConfig, raw, _label(cfg_path, root), _PROJECT_ONLY)
        problems += p
        hints += h
    models = []
    if agent_cfg is not None:
        for ref in agent_cfg.models:
            if ref in config.models:
                models.append((ref, config.models[ref]))
                continue
            available = ", ".join(config.models) or "(none)"
            problems.append(
                f'{_label(cfg_path, root)}: key "models": agent "{name}" references model '
                f'"{ref}" which is not defined in config.toml. Available: {available}'
            )
            import difflib

            close = difflib.get_close_matches(ref, list(config.models), n=1)
            hints.append(
                f'did you mean "{close[0]}"?'
                if close
                else f'Define it in config.toml:\n[models.{ref}]\nprovider = "anthropic"\n'
                'model = "claude-sonnet-4-5"'
            )
    dockerfile = _read_optional(path / "Dockerfile", root, problems, hints)
    if problems or skill is None or agent_cfg is None:
        return None, problems, hints
    scale = config.default_agent_scale if agent_cfg.scale is None else agent_cfg.scale
    queue_size = agent_cfg.max_work_queue_size
    # Resolved once here: everything else reads the agent's [runtime] alone.
    given = raw.get("runtime", {}) if raw is not None else {}
    agent_cfg = dataclasses.replace(
        agent_cfg, runtime=agent_cfg.runtime.merged_over(config.runtime, given)
    )
    agent = Agent(
        name=name,
        path=path,
        skill=skill,
        config=agent_cfg,
        models=tuple(models),
        timeout=agent_cfg.timeout or config.local.timeout,
        scale=0 if config.scale == 0 else scale,
        queue_size=config.work_queue_size if queue_size is None else queue_size,
        network=agent_cfg.network or config.network,
        dockerfile_text=dockerfile,
        tokens_per_run=(agent_cfg.limits and agent_cfg.limits.tokens_per_run)
        or config.limits.tokens_per_run,
    )
    return agent, [], []


#: Agents loaded before in this process, by folder, with what they were loaded from: one is
#: reused while its files and the project's config.toml are unchanged, so loading a project
#: again (a hot reload of 1,000 agents) parses only what changed.
_loaded: dict[Path, tuple[tuple[object, ...], Agent]] = {}


def _signature(path: Path, config: str) -> tuple[object, ...]:
    """What an agent loaded from `path` depends on: its files' identity and the project's
    config (`config`, its JSON)."""
    return (config, *(file_identity(path / name) for name in AGENT_FILES))


def _read_optional(path: Path, root: Path, problems: list[str], hints: list[str]) -> str | None:
    """The text of an optional file (a Dockerfile); a file that is there but unusable is a
    problem (a folder, unreadable, not UTF-8)."""
    try:
        return read_text(path, _label(path, root))
    except ConfigError as exc:
        problems.append(exc.message)
        hints.append(exc.hint or "")
        return None


def validate_project(root: Path) -> Project:
    """Read and validate the project at `root` (absolute, links resolved); one ConfigError
    lists every problem found."""
    check_project_dir(root)
    problems: list[str] = []
    hints: list[str] = []
    config = None
    try:
        raw = _read_toml(root / "config.toml", root)
    except ConfigError as exc:
        problems.append(exc.message)
        hints.append(exc.hint or "")
    else:
        config, p, h = _validate(
            ProjectConfig, raw, "config.toml", _AGENT_ONLY, validate=ProjectConfig.from_toml
        )
        problems += p
        hints += h
    dockerfile = _read_optional(root / "Dockerfile", root, problems, hints)
    agents: dict[str, Agent] = {}
    resolved = config or ProjectConfig()
    config_key = repr(resolved)
    for path in discover_agent_dirs(root):
        signature = _signature(path, config_key)
        known = _loaded.get(path)
        if known is not None and known[0] == signature:
            agents[known[1].name] = known[1]
            continue
        agent, p, h = _load_agent(path, root, resolved)
        problems += p
        hints += h
        if agent is not None:
            agents[agent.name] = agent
            _loaded[path] = (signature, agent)
    _raise(problems, [h for h in hints if h])
    assert config is not None  # _raise returned, so validation passed
    return Project(
        root=root,
        config=config,
        agents=agents,
        run_env=passed_to_runs(),
        dockerfile_text=dockerfile,
    )
