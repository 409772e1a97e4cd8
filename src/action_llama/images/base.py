"""Everything the base image is made from: the package's files and the packages it needs.

The build context is the installed package's root. It is sent as a tar made here, so that
`_site/` (the wheelhouse, installed on the host for the image's Python) can sit beside the
package without writing into site-packages.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import action_llama
from action_llama.errors import ImageBuildError
from action_llama.images.events import BuildEvents

if TYPE_CHECKING:
    import tarfile

PACKAGE_DIR = Path(action_llama.__file__).resolve().parent
DOCKERFILE = "action_llama/docker/Dockerfile"
#: Debian bookworm's interpreter, which runs the entry point inside the container.
IMAGE_PYTHON = "3.11"
#: Third-party packages the in-run entry point imports (model sessions only; script mode and
#: the helper commands use the standard library alone).
IMAGE_REQUIREMENTS = ("pydantic-ai-slim[openai,anthropic]>=2.68,<3",)
TITLE = "base"


def _package_files() -> list[Path]:
    return sorted(
        p
        for p in PACKAGE_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def _package_stats() -> list[tuple[str, int, int, int]]:
    """(relative path, size, mtime, inode) of each of the package's files, sorted."""
    found = []
    pending = [str(PACKAGE_DIR)]
    # Entries' paths start with the folder scanned, so cutting the prefix gives the relative
    # path (os.path.relpath costs every run milliseconds over a few hundred files).
    start = len(pending[0]) + 1
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    if entry.name != "__pycache__":
                        pending.append(entry.path)
                elif entry.is_file() and not entry.name.endswith((".pyc", ".pyo")):
                    stat = entry.stat()
                    found.append((entry.path[start:], stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return sorted(found)


def package_digest() -> str:
    """Digest of the package's files: a changed or upgraded package means a new base image.

    Reading and hashing every file costs every `al run` tens of milliseconds, so the digest
    is kept in the cache folder under a key of the files' sizes, times and inodes (what
    any edit, install or upgrade changes) and computed again only when that key changes."""
    stats = json.dumps([action_llama.__version__, _package_stats()])
    key = hashlib.sha256(stats.encode()).hexdigest()[:32]
    # One memo per install (its folder), replaced when its files change.
    memo = cache_dir() / "package-digest" / hashlib.sha256(bytes(PACKAGE_DIR)).hexdigest()[:16]
    try:
        known_key, _, known = memo.read_text(encoding="ascii").partition(" ")
        if known_key == key and len(known) == 32:
            return known
    except (OSError, UnicodeDecodeError):
        pass
    digest = _package_digest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        partial = memo.with_suffix(f".{os.getpid()}")
        partial.write_text(f"{key} {digest}", encoding="ascii")
        partial.replace(memo)
    except OSError:
        pass  # a read-only cache: computed again next time
    return digest


def _package_digest() -> str:
    digest = hashlib.sha256(action_llama.__version__.encode())
    for path in _package_files():
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
        digest.update(path.read_bytes())
    digest.update("\n".join(IMAGE_REQUIREMENTS).encode())
    return digest.hexdigest()[:32]


def _pip_platforms() -> list[str]:
    import platform

    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    return [f"manylinux_2_{minor}_{machine}" for minor in (36, 28, 17)] + [
        f"manylinux2014_{machine}"
    ]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "action-llama"


def site_dir(events: BuildEvents) -> Path:
    """The image's third-party packages, installed on the host into a cached folder."""
    key = hashlib.sha256(
        "|".join([IMAGE_PYTHON, *_pip_platforms(), *IMAGE_REQUIREMENTS]).encode()
    ).hexdigest()[:16]
    target = cache_dir() / f"site-{key}"
    if (target / ".complete").is_file():
        return target
    events.layer(TITLE, "resolving Python packages for the image")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(partial),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        IMAGE_PYTHON,
    ]
    for plat in _pip_platforms():
        cmd += ["--platform", plat]
    result = subprocess.run(
        [*cmd, *IMAGE_REQUIREMENTS], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ImageBuildError(
            "Could not fetch the Python packages the base image needs "
            f"({', '.join(IMAGE_REQUIREMENTS)}) for Python {IMAGE_PYTHON}.",
            layer="base",
            log_tail="\n".join((result.stderr or result.stdout).splitlines()[-15:]),
            hint="Check that pip can reach your package index (pip config list).",
        )
    partial.rename(target) if not target.exists() else shutil.rmtree(partial)
    (target / ".complete").touch()
    return target


def _add_tree(tar: tarfile.TarFile, src: Path, arcname: str) -> None:
    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if "__pycache__" in info.name or info.name.endswith((".pyc", ".pyo")):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    tar.add(src, arcname=arcname, filter=clean)


def base_context(site: Path) -> io.BytesIO:
    """The base build context: action_llama/ (the package) and _site/ (its dependencies)."""
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add_tree(tar, PACKAGE_DIR, "action_llama")
        _add_tree(tar, site, "_site")
    buffer.seek(0)
    return buffer


LAYER_DOCKERFILE = "Dockerfile.al-layer"


def package_context(dockerfile: str) -> io.BytesIO:
    """The context of project and agent layers: the package root (as the seed says) plus the
    rewritten Dockerfile, stored as LAYER_DOCKERFILE."""
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add_tree(tar, PACKAGE_DIR, "action_llama")
        data = dockerfile.encode()
        info = tarfile.TarInfo(LAYER_DOCKERFILE)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer
