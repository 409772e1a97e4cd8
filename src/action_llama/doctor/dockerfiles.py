"""What `al doctor` says about Dockerfiles written for the original's Alpine-and-Node base.

`apk` lines build (the base image translates them to apt-get): doctor says what each will
install, warns about names Debian has no package for, and warns about Dockerfiles that run
`npm`, `npx`, `node` or `yarn` without installing Node.js, which our base image lacks.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from action_llama.doctor.result import Check
from action_llama.images.apk import parse_command
from action_llama.images.apk_names import Translation, translate

if TYPE_CHECKING:
    from action_llama.project import Agent, Project

_RUN = re.compile(r"^\s*RUN\s+(.*)$", re.IGNORECASE | re.DOTALL)
_SEPARATORS = frozenset({"&&", "||", ";", "|", "&", "(", ")", ";;"})
_WRAPPERS = frozenset({"sudo", "env", "exec", "command"})
NODE_COMMANDS = frozenset({"node", "npm", "npx", "yarn", "corepack"})
NODE_FIX = "RUN apk add --no-cache nodejs npm   (after USER root)"


@dataclass(frozen=True)
class Usage:
    """What one Dockerfile's RUN lines do that matters here."""

    apk: tuple[Translation, ...]
    #: Node.js commands run (npm, npx, ...), and whether the file installs Node.js.
    node_commands: tuple[str, ...]
    installs_node: bool


def run_commands(dockerfile: str) -> list[str]:
    """The shell text of each RUN instruction (continuation lines joined, comments dropped)."""
    lines: list[str] = []
    current = ""
    for raw in dockerfile.splitlines():
        if not current and raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append(current + raw)
        current = ""
    if current:
        lines.append(current)
    found = []
    for line in lines:
        match = _RUN.match(line)
        if not match:
            continue
        text = match[1].strip()
        if text.startswith("["):  # exec form: RUN ["apk", "add", "jq"]
            try:
                argv = json.loads(text)
            except ValueError:
                argv = None
            if isinstance(argv, list):
                text = shlex.join(str(a) for a in argv)
        found.append(text)
    return found


def simple_commands(shell: str) -> list[list[str]]:
    """The words of each simple command in `shell` (split at &&, ||, ;, | and &)."""
    lexer = shlex.shlex(shell, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: the build will say so
        return []
    commands: list[list[str]] = [[]]
    for token in tokens:
        if token in _SEPARATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    result = []
    for words in commands:
        while words and ("=" in words[0] or words[0] in _WRAPPERS):
            words = words[1:]
        if words:
            result.append(words)
    return result


def usage_of(dockerfile: str) -> Usage:
    apk: list[Translation] = []
    node: list[str] = []
    installs_node = False
    for shell in run_commands(dockerfile):
        for words in simple_commands(shell):
            program = Path(words[0]).name
            if program == "apk":
                command = parse_command(words[1:])
                if command.action == "add":
                    apk += [translate(spec) for spec in command.args]
                    installs_node |= any("nodejs" in t.debian for t in apk)
            elif program in ("apt-get", "apt") and "nodejs" in words:
                installs_node = True
            elif program in NODE_COMMANDS and program not in node:
                node.append(program)
    return Usage(tuple(apk), tuple(node), installs_node)


def check_dockerfiles(project: Project, agents: Sequence[Agent]) -> list[Check]:
    """One check per Dockerfile of `agents` (container agents) and of the project (when there
    are such agents) that uses apk or Node.js; none for the others."""
    files: list[tuple[str, Path]] = []
    if project.dockerfile is not None and agents:
        files.append(("Dockerfile", project.dockerfile))
    for agent in agents:
        if agent.dockerfile is not None:
            files.append((f"agents/{agent.name}/Dockerfile", agent.dockerfile))
    usages = {label: usage_of(path.read_text(encoding="utf-8")) for label, path in files}
    shared_node = "Dockerfile" in usages and usages["Dockerfile"].installs_node
    checks = []
    for label, usage in usages.items():
        check = _check(label, usage, has_node=usage.installs_node or shared_node)
        if check is not None:
            checks.append(check)
    return checks


def _check(label: str, usage: Usage, *, has_node: bool) -> Check | None:
    problems, fixes = [], []
    for item in usage.apk:
        if item.unavailable:
            problems.append(f'apk add {item.alpine}: Debian has no package for "{item.alpine}"')
            fixes.append(item.unavailable)
    if usage.node_commands and not has_node:
        problems.append(
            f"runs {', '.join(usage.node_commands)}, but installs no Node.js: the base image "
            "is Debian with Python and has none (the original's was Node on Alpine)"
        )
        fixes.append(f"add before that line: {NODE_FIX}")
    if not usage.apk and not problems:
        return None
    lines = []
    if usage.apk:
        mapped = ", ".join(t.describe() for t in usage.apk)
        lines.append(f"uses apk (Alpine); al installs with apt-get instead: {mapped}")
    lines += problems
    return Check(label, "warn" if problems else "ok", "\n".join(lines), "\n".join(fixes) or None)
