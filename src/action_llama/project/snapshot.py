"""The last validated load of a project, kept in its state folder for the next process.

Validating a project means importing pydantic and building its validators: a fifth of a
second, more than the rest of a short `al run`. A process that finds the project's files as
they were when it was last validated (same inode, size and times, the same agent folders, the
same `al` code) takes the validated result from `.al/project.snapshot` instead.

The snapshot is a pickle read by an unpickler that builds only the config tables and the
types they hold (nothing else can be named in it, so a planted file cannot run code), and only
when it belongs to this user and nobody else may write it. Any doubt means a fresh load.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from action_llama.layout import AGENT_FILES, PROJECT_FILES, STATE_DIR
from action_llama.project.model import Project

SNAPSHOT = "project.snapshot"
#: What a snapshot may name: the project's dataclasses, the config tables and paths.
_ALLOWED_MODULES = {
    "action_llama.project.model",
    "action_llama.config.agent",
    "action_llama.config.network",
    "action_llama.config.project",
    "action_llama.config.skill",
}
_ALLOWED = {("pathlib", "PosixPath"), ("pathlib", "Path")}
_CODE = Path(__file__).resolve().parent.parent
#: A file changed this recently may change again within its file system's timestamp
#: granularity (a few milliseconds) without its stat changing: no snapshot is taken of it yet.
SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class Inputs:
    """What a load of a project depends on, as cheaply as it can be told: the stat of every
    file it reads, the agent folders there are, and the code that loads them."""

    key: tuple[Any, ...]
    #: When the most recently changed of them changed (its ctime, which nobody can set back).
    newest: float


def inputs(root: Path) -> Inputs:
    """The `Inputs` of the project at `root`, taken before its files are read."""
    stats = [file_identity(root / name) for name in PROJECT_FILES]
    agents = root / "agents"
    stats.append(file_identity(agents))
    try:
        entries = sorted(os.scandir(agents), key=lambda entry: entry.name)
    except OSError:
        entries = []
    names = []
    for entry in entries:
        names.append(entry.name)
        stats.append(file_identity(Path(entry.path)))
        if entry.is_dir():
            stats += [file_identity(Path(entry.path, name)) for name in AGENT_FILES]
    newest = max((st[3] for st in stats if st is not None), default=0) / 1e9
    return Inputs((_code_version(), tuple(names), tuple(stats)), newest)


def read(root: Path, expected: Inputs) -> Project | None:
    """The project as last validated, if its inputs were `expected`; else None."""
    path = root / STATE_DIR / SNAPSHOT
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        try:
            stored_inputs, project = _Unpickler(io.BytesIO(fh.read())).load()
        except Exception:  # a damaged or foreign snapshot is simply not used
            return None
    if stored_inputs != expected.key or not isinstance(project, Project) or project.root != root:
        return None
    return project


def write(project: Project, taken: Inputs) -> None:
    """Keep `project`, validated from files whose inputs were `taken` before reading them,
    when the project has a state folder (a project that never ran gets none from a load) and
    its files have settled."""
    state = project.root / STATE_DIR
    if taken.newest > time.time() - SETTLE_SECONDS or not state.is_dir():
        return
    path = state / SNAPSHOT
    # One temporary name per writer (processes, and threads: a scheduler loads in threads).
    temp = state / f".{SNAPSHOT}.{os.getpid()}.{threading.get_ident()}"
    with contextlib.suppress(OSError):
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fh:
                pickle.dump((taken.key, project), fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module in _ALLOWED_MODULES and "." not in name:
            found = super().find_class(module, name)
            # A class defined there (a table, Project, Agent); never a function or a module.
            if isinstance(found, type) and found.__module__ == module:
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a project snapshot")


def file_identity(path: Path) -> tuple[int, ...] | None:
    """What any change of the file at `path` changes (None: nothing is there)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


#: The code a load runs: the tables and the loader, and what their checks call (egress entries,
#: credential types and references, frontmatter). A check that calls elsewhere adds it here.
_CODE_PACKAGES = ("config", "project", "credentials", "egress")
_CODE_FILES = ("__init__.py", "frontmatter.py")


def _code_version() -> tuple[Any, ...]:
    """The stat of the source files a load runs: a changed `al` never reads an old shape or
    keeps what an older check let through."""
    found = [(name, file_identity(_CODE / name)) for name in _CODE_FILES]
    for package in _CODE_PACKAGES:
        with contextlib.suppress(OSError), os.scandir(_CODE / package) as entries:
            found += [
                (f"{package}/{e.name}", file_identity(Path(e.path)))
                for e in entries
                if e.name.endswith(".py")
            ]
    return tuple(sorted(found, key=lambda item: item[0]))
