"""`al add` and `al update` as services: install an agent from a source, and bring it up to date.

`add_agent` copies SKILL.md, config.toml (with `source = "<what was typed>"` added, so `al
update` knows where to look) and, when the source has them, Dockerfile and test-script.sh
into `agents/<name>/`. `plan_update` compares an installed agent's SKILL.md, Dockerfile and
test-script.sh with its source; `apply_update` writes the source's versions. config.toml is
never overwritten (it holds the user's models, credentials and schedule); a file the source
no longer has is kept.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from action_llama.config.agent import check_agent_name
from action_llama.errors import AgentNotFound, InstallError
from action_llama.install.sources import (
    AGENT_FILES,
    CONFIG,
    FoundAgent,
    discover,
    fetched,
    find_installed,
    pick,
    resolve,
)

_SOURCE_LINE = re.compile(r"^source\s*=.*\n?", re.MULTILINE)
_TABLE = re.compile(r"^\s*\[", re.MULTILINE)


def with_source(config: str, source: str) -> str:
    """`config` (an agent config.toml's text) with `source` set, comments and order kept."""
    first_table = _TABLE.search(config)
    cut = first_table.start() if first_table else len(config)
    head, tail = _SOURCE_LINE.sub("", config[:cut]), config[cut:]
    # A JSON string is a valid TOML basic string.
    return f"source = {json.dumps(source, ensure_ascii=False)}\n{head}{tail}"


@dataclass(frozen=True)
class Installed:
    """What `al add` did: the agent's name, its folder, the files written, where from."""

    name: str
    folder: Path
    files: tuple[str, ...]
    source: str
    description: str | None


def add_agent(
    project_root: Path,
    source: str,
    *,
    agent: str | None = None,
    name: str | None = None,
    cwd: Path | None = None,
) -> Installed:
    """Install one agent of `source` into the project as `agents/<name>/`."""
    origin = resolve(source, cwd)
    with fetched(origin) as tree:
        found = pick(discover(tree, origin.repo_name), agent, source)
        target_name = name or found.name
        problem = check_agent_name(target_name)
        if problem:
            raise InstallError(problem, hint="Install it under another name: --name NEW-NAME")
        folder = project_root / "agents" / target_name
        if folder.exists():
            raise InstallError(
                f"agents/{target_name} already exists; al add never overwrites an agent.",
                hint=f"Update it with: al update {target_name}   (or install this one under "
                f"another name: --name NEW-NAME)",
            )
        written = _write(found, folder, origin.recorded)
    return Installed(target_name, folder, written, origin.recorded, found.description)


def _write(found: FoundAgent, folder: Path, recorded: str) -> tuple[str, ...]:
    folder.mkdir(parents=True)
    written = []
    for filename in (AGENT_FILES[0], CONFIG, *AGENT_FILES[1:]):
        text = found.read(filename)
        if filename == CONFIG:
            text = with_source(text or "", recorded)
        if text is None:
            continue
        (folder / filename).write_text(text, encoding="utf-8")
        written.append(filename)
    if (folder / "test-script.sh").is_file():
        (folder / "test-script.sh").chmod(0o755)
    return tuple(written)


def installed_sources(project_root: Path, agent: str | None = None) -> list[tuple[str, str]]:
    """(agent, source) of the project's agents installed with `al add` (or only `agent`)."""
    from action_llama.project.loader import discover_agent_dirs

    found = []
    folders = discover_agent_dirs(project_root)
    if agent is not None:
        folders = [f for f in folders if f.name == agent]
        if not folders:
            raise AgentNotFound(
                f'Agent "{agent}" not found in {project_root / "agents"}.',
                hint="al update takes the name of a folder under agents/.",
            )
    for folder in folders:
        source = _recorded_source(folder / CONFIG)
        if source:
            found.append((folder.name, source))
    if agent is not None and not found:
        raise InstallError(
            f"agents/{agent}/config.toml has no source: it was not installed with al add, so "
            "al update does not know where it comes from.",
            hint=f'Add the line source = "<owner/repo, git URL or folder>" to '
            f"agents/{agent}/config.toml, or reinstall it with al add.",
        )
    return found


def _recorded_source(config: Path) -> str | None:
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    source = data.get("source")
    return source.strip() if isinstance(source, str) and source.strip() else None


@dataclass(frozen=True)
class FileChange:
    """One agent file whose source version differs (`new` None: the source dropped it)."""

    filename: str
    old: str | None
    new: str | None

    def diff(self, agent: str) -> list[str]:
        """Unified diff lines, local → source."""
        return list(
            difflib.unified_diff(
                (self.old or "").splitlines(),
                (self.new or "").splitlines(),
                f"agents/{agent}/{self.filename}" if self.old is not None else "/dev/null",
                f"source/{self.filename}" if self.new is not None else "/dev/null",
                lineterm="",
            )
        )


@dataclass(frozen=True)
class UpdatePlan:
    """What `al update` would change in one agent (nothing, when `changes` is empty)."""

    agent: str
    folder: Path
    source: str
    changes: tuple[FileChange, ...]
    #: The source's config.toml differs from the agent's (never applied; said).
    config_differs: bool

    @property
    def applicable(self) -> tuple[FileChange, ...]:
        """The changes `apply_update` writes (files the source dropped are kept)."""
        return tuple(c for c in self.changes if c.new is not None)


def plan_update(project_root: Path, agent: str, source: str) -> UpdatePlan:
    """Fetch `source` again and compare the agent's files with it."""
    folder = project_root / "agents" / agent
    origin = resolve(source, project_root)
    with fetched(origin) as tree:
        found = find_installed(discover(tree, origin.repo_name), agent)
        if found is None:
            raise InstallError(
                f"{source} no longer holds an agent that matches {agent}.",
                hint="Check the source, or remove the source line from "
                f"agents/{agent}/config.toml.",
            )
        changes = []
        for filename in AGENT_FILES:
            path = folder / filename
            old = path.read_text(encoding="utf-8") if path.is_file() else None
            new = found.read(filename)
            if old != new:
                changes.append(FileChange(filename, old, new))
        upstream = with_source(found.read(CONFIG) or "", source)
        config = folder / CONFIG
        local = config.read_text(encoding="utf-8") if config.is_file() else ""
    return UpdatePlan(agent, folder, source, tuple(changes), with_source(local, source) != upstream)


def apply_update(plan: UpdatePlan) -> list[str]:
    """Write the source's versions of the changed files; the files written."""
    written = []
    for change in plan.applicable:
        assert change.new is not None
        path = plan.folder / change.filename
        path.write_text(change.new, encoding="utf-8")
        if change.filename == "test-script.sh":
            path.chmod(0o755)
        written.append(change.filename)
    return written
