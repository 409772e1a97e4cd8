"""How a host-user run is launched: as whom, with which Python, seeing which files.

The entry point (`python -m action_llama.agent`) runs as the agent's OS user. That user can
usually not read the operator's interpreter or package (a pyenv or venv under /root is 0700),
so the run gets a Python it can execute (the system's first) and a root-owned, world-readable
copy of the package under the runs root, both checked by a probe run as that user.

Dropping privileges: as root, `setpriv --reuid --regid --groups --no-new-privs` (or `runuser`
when setpriv is missing); as the agent's own user, nothing; as anyone else, `sudo -n -u`.
Environment values are never put in an argv: the child inherits them (sudo is told their
names with --preserve-env).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import action_llama
from action_llama.errors import RunError

Mode = Literal["setpriv", "runuser", "self", "sudo"]

#: How runs on this host reach the gateway.
LOOPBACK = "127.0.0.1"
#: What the agent's processes get as PATH (the entry puts its helper commands first).
SANE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Interpreters tried, in order, when none is configured: the system's before the operator's.
PYTHON_CANDIDATES = ("/usr/bin/python3", "/usr/local/bin/python3")
MIN_PYTHON = (3, 10)
#: A variable every run keeps through the switch of user (`--preserve-env` under sudo): a
#: probe keeps it too, so it needs the same permission as runs.
KEPT_FOR_PROBE = ("AL_RUN_ID",)
PACKAGE_DIR = Path(action_llama.__file__).resolve().parent
R, W, X = 4, 2, 1


@dataclass(frozen=True)
class RunUser:
    """The OS identity one run has."""

    name: str
    uid: int
    #: The run's primary group: the first configured group, else the user's own.
    gid: int
    #: Every group the run has (primary, the user's supplementary ones, the configured ones).
    gids: tuple[int, ...]
    #: The first configured group's name (`sudo -g`, `runuser -g`), if any.
    group: str | None = None


def resolve_user(name: str, groups: tuple[str, ...] = ()) -> RunUser:
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise RunError(
            f'The host-user run needs OS user "{name}", which does not exist on this machine.',
            hint="Create it with: al doctor --fix",
        ) from exc
    extra = []
    for group in groups:
        try:
            extra.append(grp.getgrnam(group).gr_gid)
        except KeyError as exc:
            raise RunError(
                f'Group "{group}" (in [runtime].groups) does not exist on this machine.',
                hint=f"Create it (groupadd {group}) or remove it from the agent's config.toml.",
            ) from exc
    gid = extra[0] if extra else entry.pw_gid
    gids = tuple(dict.fromkeys([gid, *os.getgrouplist(name, entry.pw_gid), *extra]))
    return RunUser(name, entry.pw_uid, gid, gids, groups[0] if groups else None)


def privilege_mode(user: RunUser) -> Mode:
    """How to become `user` from here."""
    if os.geteuid() == 0:
        if shutil.which("setpriv"):
            return "setpriv"
        if shutil.which("runuser"):
            return "runuser"
        raise RunError(
            "Neither setpriv nor runuser is installed: cannot run an agent as another user.",
            hint="Install util-linux (apt-get install util-linux).",
        )
    if os.geteuid() == user.uid and user.gid in [*os.getgroups(), os.getegid()]:
        return "self"
    if not shutil.which("sudo"):
        raise RunError(
            f"Running agents as user {user.name} needs root or sudo, and sudo is not installed.",
            hint="Run al as root, or install sudo and allow it to run as that user.",
        )
    return "sudo"


def as_user(
    user: RunUser, mode: Mode, argv: list[str], env_names: list[str] | None = None
) -> list[str]:
    """`argv` wrapped to run as `user`; `env_names` are the variables it must keep."""
    if mode == "setpriv":
        groups = ",".join(str(g) for g in user.gids)
        return [
            "setpriv",
            f"--reuid={user.uid}",
            f"--regid={user.gid}",
            f"--groups={groups}",
            "--no-new-privs",
            "--",
            *argv,
        ]
    group = ["-g", user.group] if user.group else []
    if mode == "runuser":
        return ["runuser", "-u", user.name, *group, "--preserve-environment", "--", *argv]
    if mode == "sudo":
        keep = [f"--preserve-env={','.join(env_names)}"] if env_names else []
        return ["sudo", "-n", "-u", user.name, *group, *keep, "--", *argv]
    return list(argv)


def run_as(user: RunUser, mode: Mode, argv: list[str], what: str) -> None:
    """Run a short helper command as `user` (sudo mode), RunError with its stderr if it fails."""
    done = subprocess.run(
        as_user(user, mode, argv), capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise RunError(
            f"Could not {what} as user {user.name}: {done.stderr.strip() or done.returncode}",
            hint=f"Allow it without a password in sudoers: <you> ALL=({user.name}) NOPASSWD: ALL",
        )


def _allowed(st: os.stat_result, user: RunUser, bits: int) -> bool:
    if user.uid == 0:
        return True
    if st.st_uid == user.uid:
        shift = 6
    elif st.st_gid in user.gids:
        shift = 3
    else:
        shift = 0
    return (st.st_mode >> shift) & bits == bits


def can_reach(path: Path, user: RunUser, bits: int) -> bool:
    """Whether `user` may traverse down to `path` and has `bits` on it (by mode bits)."""
    path = Path(os.path.abspath(path))
    try:
        for parent in reversed(path.parents):
            if not _allowed(os.stat(parent), user, X):
                return False
        return _allowed(os.stat(path), user, bits)
    except OSError:
        return False


def can_read_tree(path: Path, user: RunUser) -> bool:
    """`user` can list `path` and read every file directly in it."""
    return can_reach(path, user, R | X) and all(
        _allowed(p.stat(), user, R) for p in path.iterdir() if p.is_file()
    )


def owned_dir(path: Path, mode: int) -> Path:
    """`path` as a directory of ours with `mode`; refuses one somebody else made (or a link)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=mode)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise RunError(
            f"{path} is not a directory owned by you: refusing to keep runs in it.",
            hint=f"Remove it (rm -rf {path}) or choose another place with AL_RUNS_DIR.",
        )
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
    return path


_digests: dict[Path, str] = {}


def _package_digest() -> str:
    if PACKAGE_DIR not in _digests:
        from action_llama.images.base import package_digest

        _digests[PACKAGE_DIR] = package_digest()[:16]
    return _digests[PACKAGE_DIR]


def expose_package(runs_root: Path) -> Path:
    """A directory holding a read-only copy of `action_llama/` every user can import.

    `<runs root>/lib/<digest>/action_llama`, owned by us (root), directories 0755 and files
    0644 (helper commands 0755), beside the third-party packages model sessions need (the
    base image's, for its Python 3.11). Made once per package version; concurrent makers race
    safely.
    """
    lib = owned_dir(runs_root / "lib", 0o711)
    target = lib / _package_digest()
    if target.is_dir():
        return target
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=lib))
    try:
        from action_llama.images.base import site_dir
        from action_llama.images.events import SilentEvents

        shutil.copytree(
            site_dir(SilentEvents()),
            partial,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(".complete", "bin"),
        )
        shutil.copytree(
            PACKAGE_DIR,
            partial / "action_llama",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"),
        )
        for dirpath, _dirs, files in os.walk(partial):
            os.chmod(dirpath, 0o755)
            for name in files:
                file = os.path.join(dirpath, name)
                os.chmod(file, 0o755 if os.stat(file).st_mode & 0o100 else 0o644)
        partial.rename(target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


_probed: dict[tuple[str, int, str, str], bool] = {}


def _probe(python: str, user: RunUser, mode: Mode, lib: Path) -> bool:
    """Can `user` run `python` and import the entry point from `lib`? (cached)"""
    key = (python, user.uid, mode, str(lib))
    if key not in _probed:
        code = (
            "import sys; import action_llama.agent.entry; "
            f"sys.exit(0 if sys.version_info >= {MIN_PYTHON!r} else 3)"
        )
        env = {"PATH": SANE_PATH, "LANG": "C.UTF-8", "PYTHONPATH": str(lib)}
        argv = as_user(user, mode, [python, "-s", "-c", code], list(env))
        try:
            done = subprocess.run(
                argv, cwd=lib, env=env, capture_output=True, timeout=30, check=False
            )
            _probed[key] = done.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _probed[key] = False
    return _probed[key]


def choose_python(user: RunUser, mode: Mode, lib: Path, configured: str | None) -> str:
    """The first interpreter `user` can run the entry point with; RunError if there is none."""
    candidates = [configured] if configured else [*PYTHON_CANDIDATES, sys.executable]
    tried = []
    for candidate in dict.fromkeys(candidates):
        if not (os.path.isfile(candidate) and can_reach(Path(candidate), user, X)):
            tried.append(f"{candidate} (not executable by {user.name})")
            continue
        if _probe(candidate, user, mode, lib):
            return candidate
        tried.append(f"{candidate} (cannot import the entry point, or older than 3.10)")
    raise RunError(
        f"No Python that user {user.name} can run the agent with: " + "; ".join(tried) + ".",
        hint="Install the system's python3 (apt-get install python3), or set AL_HOST_PYTHON "
        "to an interpreter every user can execute.",
    )
