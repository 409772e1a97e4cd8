"""Finding and signalling the processes of a run (host-user runs, where there is no container).

In a container the engine ends every process when the entry exits. A host-user run has only
its process group: the entry and everything it starts share it (AL_SHARED_PGROUP=1), so the
host can stop the whole run with one signal, and the entry itself finds the members in /proc
to end its children (on Linux; elsewhere only the direct child is signalled). The host side
(runtimes/host_user.py) uses the same helpers to watch a run it did not start itself.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid [1], pgrp [2])."""
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or ')'.
    return raw[raw.rfind(b")") + 2 :].decode("ascii", errors="replace").split()


def _pids() -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]
    return []


def group_members(pgid: int, exclude: int | None = None) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`."""
    found = []
    for pid in _pids():
        fields = _stat_fields(pid)
        if fields and fields[2] == str(pgid) and fields[0] != "Z" and pid != exclude:
            found.append(pid)
    return found


def descendants(root: int) -> list[int]:
    """`root` and every live process below it (those re-parented elsewhere are not found)."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        fields = _stat_fields(pid)
        if fields and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_group_except_self(sig: int, rounds: int = 5) -> int:
    """Send `sig` to every other member of our process group until none is left; how many."""
    me, pgid = os.getpid(), os.getpgrp()
    seen: set[int] = set()
    for _ in range(rounds):
        others = group_members(pgid, exclude=me)
        if not others:
            break
        seen.update(others)
        signal_all(others, sig)
        time.sleep(0.05)
    return len(seen)


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (None without procfs)."""
    fields = _stat_fields(pid)
    with contextlib.suppress(IndexError, ValueError):
        return int(fields[19]) if fields else None
    return None


def alive(pid: int, ticks: int | None) -> bool:
    """Whether `pid` still runs and is the process that started at `ticks` (not a zombie,
    not a reused pid)."""
    if not (PROC / "self").exists():  # no procfs: signal 0 is all there is
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = _stat_fields(pid)
    if not fields or fields[0] == "Z":
        return False
    return ticks is None or start_ticks(pid) == ticks


def tagged(uid: int, run_id: str) -> list[int]:
    """Processes of `uid` whose environment says they belong to run `run_id`.

    That finds the run's processes that left its process group (setsid, daemons); reading
    another user's environment needs root.
    """
    tag = f"AL_RUN_ID={run_id}".encode()
    found = []
    for pid in _pids():
        with contextlib.suppress(OSError):
            entry = PROC / str(pid)
            if entry.stat().st_uid == uid and tag in (entry / "environ").read_bytes().split(b"\0"):
                found.append(pid)
    return found
