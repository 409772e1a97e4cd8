"""OS errors in words a user can act on: the one translation every reader of user files uses.

`reason(exc)` says what is wrong with a path ("is a symbolic link loop", "permission denied"),
`fix(exc, path)` what to do about it, and `project_root` resolves the folder `-p` names with
its failures in those words (Python 3.11 raises RuntimeError for a symbolic link loop).

Standard library only: the light client of a running scheduler (`al run`) imports it.
"""

from __future__ import annotations

import errno
from pathlib import Path

_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "does not exist",
    errno.ENOTDIR: "a folder in its path is a file",
    errno.EISDIR: "is a folder, not a file",
    errno.ELOOP: "is a symbolic link loop",
    errno.ENAMETOOLONG: "its name is too long",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EEXIST: "already exists",
    errno.EIO: "input/output error (a failing disk?)",
}


def reason(exc: OSError) -> str:
    """What went wrong, in a few words (never the path: callers name it their own way)."""
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def fix(exc: OSError, path: Path | str) -> str:
    """What to do about `exc` raised for `path`."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"Make it readable by this user (chmod u+r {path}), or run al as its owner."
    if exc.errno == errno.ELOOP:
        return f"Point the symbolic link {path} at a real file or folder (ls -l shows it)."
    if exc.errno == errno.ENAMETOOLONG:
        return "Use a shorter path."
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "Free some space on that file system, then try again."
    if exc.errno == errno.EROFS:
        return "Remount it read-write, or move the project to a writable file system."
    if exc.errno == errno.ENOTDIR:
        return f"A part of {path} is a file where a folder should be: rename or remove it."
    return f"Check {path} (ls -l), fix it, then try again."


def project_root(path: Path | str) -> Path:
    """The project folder `-p` names, absolute and with links resolved; ConfigError for a
    path that cannot be resolved (a symbolic link loop, a folder it cannot look into)."""
    from action_llama.errors import ConfigError

    try:
        try:
            return Path(path).resolve()
        except RuntimeError as exc:  # "Symlink loop from ..." (3.13 raises OSError itself)
            raise OSError(errno.ELOOP, "Too many levels of symbolic links", str(path)) from exc
    except OSError as exc:
        raise ConfigError(
            f'Project directory "{path}" cannot be used: {reason(exc)}.', hint=fix(exc, path)
        ) from exc
