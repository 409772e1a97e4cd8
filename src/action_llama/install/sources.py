"""Where agents are installed from: a git repository or a local folder, and what it holds.

A source is what the user typed after `al add`: `owner/repo` (its GitHub URL), any git URL
(`https://…`, `file://…`, `git@host:path`), or a local folder (git repository or not, read
as it is on disk). Agents in it are a root `SKILL.md`, and folders under `skills/` and
`agents/` holding one; each is named by its frontmatter `name`, else its folder's name.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from action_llama.config.agent import check_agent_name
from action_llama.errors import InstallError
from action_llama.frontmatter import split_frontmatter

#: The files that make an agent, in the order they are shown. config.toml is installed once
#: (with `source` added) and never overwritten by `al update`.
AGENT_FILES = ("SKILL.md", "Dockerfile", "test-script.sh")
CONFIG = "config.toml"
SHORTHAND = re.compile(r"^[A-Za-z0-9_-]+/[A-Za-z0-9._-]+$")
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")
CLONE_TIMEOUT = 300


@dataclass(frozen=True)
class Origin:
    """A resolved source: what to fetch (`location`), and what config.toml records."""

    location: str
    recorded: str
    #: A folder read as it is (not cloned).
    local: bool = False

    @property
    def repo_name(self) -> str:
        """The repository's (or folder's) name, for an agent at its root without a name."""
        tail = self.location.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        return tail.removesuffix(".git")


def resolve(source: str, cwd: Path | None = None) -> Origin:
    """What `source` means: an existing folder, `owner/repo` on GitHub, or a git URL."""
    path = (cwd or Path.cwd()) / Path(source).expanduser()
    if path.is_dir():
        absolute = str(path.resolve())
        return Origin(absolute, absolute, local=True)
    if SHORTHAND.match(source):
        return Origin(f"https://github.com/{source}.git", source)
    if "://" in source or _SCP_LIKE.match(source):
        return Origin(source, source)
    raise InstallError(
        f'"{source}" is not a folder here, a git URL, or GitHub owner/repo.',
        hint="Examples: al add Action-Llama/agents, al add https://host/team/agents.git, "
        "al add ../my-agents",
    )


def _clone(url: str, dest: Path) -> None:
    if shutil.which("git") is None:
        raise InstallError(
            "git is not installed, and al add needs it to fetch agents.",
            hint="Install it: sudo apt-get install git",
        )
    # Never stop to ask for a password: a private repository fails with git's reason.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    cmd = ["git", "clone", "--quiet", "--depth", "1", "--single-branch", "--", url, str(dest)]
    try:
        done = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=CLONE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise InstallError(
            f"Fetching {url} took over {CLONE_TIMEOUT} s and was stopped.",
            hint="Check your network, or clone it yourself and pass the folder: al add ./repo",
        ) from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["git clone failed"])[-1]
        raise InstallError(
            f"Could not fetch {url}: {reason.removeprefix('fatal: ')}",
            hint=f"Check the address and that you can read it: git clone {url}",
        )


@contextlib.contextmanager
def fetched(origin: Origin) -> Iterator[Path]:
    """The source's files on disk: the folder itself, or a shallow clone removed afterwards."""
    if origin.local:
        yield Path(origin.location)
        return
    with tempfile.TemporaryDirectory(prefix="al-add-") as tmp:
        dest = Path(tmp) / "repo"
        _clone(origin.location, dest)
        yield dest


@dataclass(frozen=True)
class FoundAgent:
    """An agent in a source: its name, its folder there, and its frontmatter description."""

    name: str
    folder: Path
    description: str | None = None

    def read(self, filename: str) -> str | None:
        path = self.folder / filename
        return path.read_text(encoding="utf-8") if path.is_file() else None


def _frontmatter(skill: Path) -> dict[str, object]:
    try:
        block, _ = split_frontmatter(skill.read_text(encoding="utf-8"))
        data = yaml.safe_load(block) if block is not None else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _found(folder: Path, fallback: str) -> FoundAgent:
    meta = _frontmatter(folder / "SKILL.md")
    name = meta.get("name")
    description = meta.get("description")
    chosen = name if isinstance(name, str) and not check_agent_name(name) else fallback
    return FoundAgent(chosen, folder, description if isinstance(description, str) else None)


def discover(tree: Path, repo_name: str) -> list[FoundAgent]:
    """The agents in a fetched source: a root SKILL.md, then skills/*/ and agents/*/."""
    found: list[FoundAgent] = []
    if (tree / "SKILL.md").is_file():
        found.append(_found(tree, repo_name))
    for collection in ("skills", "agents"):
        folder = tree / collection
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and (entry / "SKILL.md").is_file():
                agent = _found(entry, entry.name)
                if all(agent.name != other.name for other in found):
                    found.append(agent)
    return found


def pick(found: list[FoundAgent], wanted: str | None, source: str) -> FoundAgent:
    """The agent `wanted` (by name or folder name), or the only one; InstallError otherwise."""
    names = ", ".join(a.name for a in found)
    if not found:
        raise InstallError(
            f"{source} holds no agent: no SKILL.md at its root, nor in skills/*/ or agents/*/.",
            hint="Check the source; an agent is a folder with a SKILL.md.",
        )
    if wanted is not None:
        for agent in found:
            if wanted in (agent.name, agent.folder.name):
                return agent
        raise InstallError(f'{source} has no agent "{wanted}". It has: {names}')
    if len(found) > 1:
        raise InstallError(
            f"{source} holds {len(found)} agents: {names}.",
            hint=f"Choose one: al add {source} -a {found[0].name}",
        )
    return found[0]


def find_installed(found: list[FoundAgent], installed: str) -> FoundAgent | None:
    """The source's agent an installed agent came from: by folder, by name, or the only one."""
    for agent in found:
        if agent.folder.name == installed and agent.folder.parent.name in ("skills", "agents"):
            return agent
    for agent in found:
        if agent.name == installed:
            return agent
    return found[0] if len(found) == 1 else None
