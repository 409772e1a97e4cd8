"""A cgroup (v2) of its own for each host-user run, so the firewall can tell its packets apart.

Host processes cannot be put on another network; but every socket carries the cgroup v2 of the
process that made it, and iptables matches it (`-m cgroup --path`). So a host-user run is
started inside `<v2 root>/al-egress/<project id>-<run id>` (its first process moves itself in
before it drops to the run's user; an unprivileged process cannot move out), and its rules
match that path. On a host with only cgroup v1 (no unified hierarchy) this is impossible, and
`root()` says so.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PARENT = "al-egress"
#: Where the unified (v2) hierarchy is mounted: alone, or beside v1 controllers (hybrid).
CANDIDATES = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))


def root() -> Path | None:
    """The cgroup v2 hierarchy's mount, or None when this host has none."""
    for candidate in CANDIDATES:
        if (candidate / "cgroup.procs").exists() and (
            (candidate / "cgroup.controllers").exists() or candidate.name == "unified"
        ):
            return candidate
    return None


def path_of(project: str, run_id: str) -> str:
    """The run's cgroup, relative to the v2 root (as iptables names it)."""
    return f"{PARENT}/{project}-{run_id}"


def make(path: str) -> Path:
    """Create the run's cgroup; its `cgroup.procs` file (a process writing its pid joins)."""
    base = root()
    if base is None:
        raise OSError("this host has no cgroup v2 hierarchy (needed to tell a run's packets apart)")
    folder = base / path
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "cgroup.procs"


def exists(path: str) -> bool:
    base = root()
    return base is not None and (base / path).is_dir()


def remove(path: str) -> None:
    """Remove the run's cgroup (once its processes are gone; a leftover is harmless)."""
    base = root()
    if base is not None:
        with contextlib.suppress(OSError):
            os.rmdir(base / path)


def remove_idle(older_than: float = 60.0) -> int:
    """Remove run cgroups no process is in (runs of an al that was killed); how many. Young
    ones are left: a run may be about to join."""
    import time

    base = root()
    if base is None or not (base / PARENT).is_dir():
        return 0
    count = 0
    for folder in (base / PARENT).iterdir():
        with contextlib.suppress(OSError):
            idle = not (folder / "cgroup.procs").read_text().strip()
            if idle and time.time() - folder.stat().st_mtime > older_than:
                os.rmdir(folder)
                count += 1
    return count


def join_argv(procs: Path, argv: list[str]) -> list[str]:
    """`argv` run by a shell that first moves itself into the cgroup of `procs`."""
    return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(procs), *argv]
