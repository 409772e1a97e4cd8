"""`apk` for Dockerfiles written for the original runner, whose base image was Alpine.

Our base is Debian bookworm, so `RUN apk add --no-cache github-cli` would fail at once. The
base image installs this module as `/usr/local/bin/apk`: it reads the apk command line,
translates Alpine package names to Debian ones (a table for what agent images commonly
install, `py3-*` → `python3-*`, other names passed through) and runs apt-get from the Debian
mirror, saying what it mapped. A name Debian does not have fails the build, naming the
package and the `apt-get install` to write instead.

    apk add [--no-cache] [--update|-U] [--virtual|-t NAME] PKG...    apt-get install
    apk del NAME...                   apt-get purge --auto-remove (a --virtual NAME: its group)
    apk update                        apt-get update
    apk upgrade                       apt-get upgrade

Layers stay small: downloaded .debs are always removed, and `--no-cache` removes the apt
lists too (without it they are kept, so a later `apk add` need not update again).

Standard library only (with `apk_names`, the table of names): it runs inside image builds
(the base image's python3), and `al doctor` uses `parse_command` on the host to say what a
Dockerfile's apk lines will install.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from action_llama.images.apk_names import Translation, translate

PREFIX = "apk (al):"
DOCKER_BIN = Path("/usr/local/bin/docker")
#: What al's own entry point and helper commands need: `apk del` never removes these.
PROTECTED = frozenset(
    {
        "python3",
        "python3-minimal",
        "libc6",
        "git",
        "curl",
        "jq",
        "ca-certificates",
        "openssh-client",
        "bash",
        "coreutils",
        "dash",
    }
)
VIRTUAL_DIR = Path("/var/lib/al-apk/virtual")
APT_LISTS = Path("/var/lib/apt/lists")
#: Seconds apt lists are trusted before `apk add` updates them anyway.
LISTS_MAX_AGE = 3600
#: Options that take a value (`--virtual NAME`, `-X URL`).
VALUE_OPTIONS = frozenset(
    {
        "--virtual",
        "-t",
        "--repository",
        "-X",
        "--root",
        "-p",
        "--arch",
        "--cache-dir",
        "--keys-dir",
        "--repositories-file",
        "--wait",
        "--timeout",
    }
)


@dataclass
class Command:
    """One apk command line: the subcommand, its options and its arguments."""

    action: str | None = None
    args: list[str] = field(default_factory=list)
    no_cache: bool = False
    update: bool = False
    virtual: str | None = None
    #: Options we accept and ignore (repositories, --allow-untrusted, ...).
    ignored: list[str] = field(default_factory=list)


def parse_command(argv: list[str]) -> Command:
    """Read an apk command line; options may come before or after the subcommand."""
    command = Command()
    items = iter(argv)
    for item in items:
        option, _, inline = item.partition("=") if item.startswith("--") else (item, "", "")
        if item.startswith("-") and len(item) > 1:
            value = None
            if option in VALUE_OPTIONS:
                value = inline or next(items, "")
            if option == "--no-cache":
                command.no_cache = True
            elif option in ("--update", "-U", "--update-cache"):
                command.update = True
            elif option in ("--virtual", "-t"):
                command.virtual = value
            elif option not in ("--quiet", "-q", "--no-progress", "--upgrade", "-u"):
                command.ignored.append(f"{option} {value}" if value else option)
        elif command.action is None:
            command.action = item
        else:
            command.args.append(item)
    return command


class ApkFailed(Exception):
    """The apk command cannot be carried out: the message says why and what to write."""


def say(text: str) -> None:
    print(f"{PREFIX} {text}", flush=True)


def apt_get(*args: str) -> None:
    """Run apt-get non-interactively; ApkFailed when it fails (its output is in the log)."""
    # No translations (6 MB per update), no recommends (Alpine has none), and no fsync per
    # file while unpacking (halves install time; a crash only fails the build anyway).
    argv = [
        "apt-get",
        "-q",
        "-y",
        "-o",
        "Acquire::Languages=none",
        "-o",
        "APT::Install-Recommends=false",
        "-o",
        "Dpkg::Options::=--force-unsafe-io",
        *args,
    ]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(argv, env=env, check=False).returncode != 0:
        raise ApkFailed(f"apt-get {' '.join(args)} failed (see the lines above)")


def _lists_fresh() -> bool:
    """True when apt's package lists were fetched within the hour (an earlier RUN line of
    this build); older ones may name versions the mirror no longer has."""
    if not APT_LISTS.is_dir():
        return False
    stamps = [p.stat().st_mtime for p in APT_LISTS.glob("*_Packages*")]
    return bool(stamps) and time.time() - max(stamps) < LISTS_MAX_AGE


def _known(package: str) -> bool:
    """True when the configured Debian archive has `package` (apt lists must be present)."""
    result = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", package],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0 and bool(result.stdout.strip())


def _installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return result.returncode == 0 and "install ok installed" in result.stdout


def _suggest(name: str) -> str | None:
    """The Debian package name closest to `name` among those sharing its stem, if any."""
    stem = name.removesuffix("-dev").removeprefix("python3-").removeprefix("lib")
    result = subprocess.run(
        ["apt-cache", "search", "--names-only", re.escape(stem)],
        capture_output=True,
        text=True,
        check=False,
    )
    names = [line.split(" - ", 1)[0] for line in result.stdout.splitlines()]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return close[0] if close else None


def _no_such_package(alpine: str, name: str) -> str:
    """What to say about an Alpine name whose Debian translation `name` does not exist."""
    guess = _suggest(name)
    install = "RUN apt-get update && apt-get install -y --no-install-recommends"
    if guess:
        fix = f"{install} {guess}   (the closest Debian name; check it: apt-cache show {guess})"
    else:
        stem = name.removesuffix("-dev")
        fix = f"{install} <debian-name>   (find it: apt-cache search {stem})"
    return (
        f'"{alpine}": Debian bookworm has no package "{name}". Install the Debian package '
        f"instead: {fix}"
    )


def _resolve(translations: list[Translation]) -> list[str]:
    """The Debian packages to install; ApkFailed naming every name Debian does not have."""
    packages: list[str] = []
    missing: list[str] = []
    for item in translations:
        if item.unavailable:
            missing.append(f'"{item.alpine}": Debian has no package for it; {item.unavailable}')
            continue
        for name in item.debian:
            if item.docker_client or _known(name):
                packages.append(name)
            elif name.endswith("-dev") and _known(alt := "lib" + name):
                say(f"{name} is called {alt} on Debian")
                packages.append(alt)
            else:
                missing.append(_no_such_package(item.alpine, name))
    if missing:
        raise ApkFailed("cannot install " + "\n".join(missing))
    return list(dict.fromkeys(packages))


def _install_docker_client() -> None:
    """/usr/bin/docker out of Debian's docker.io package, without its daemon."""
    with tempfile.TemporaryDirectory(prefix="al-apk-") as tmp:
        download = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", "docker.io"]
        if subprocess.run(download, cwd=tmp, check=False).returncode != 0:
            raise ApkFailed("apt-get download docker.io failed (see the lines above)")
        debs = list(Path(tmp).glob("docker.io_*.deb"))
        tree = Path(tmp) / "tree"
        unpacked = (
            bool(debs)
            and subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tree)], check=False).returncode
            == 0
        )
        if not unpacked or not (tree / "usr/bin/docker").is_file():
            raise ApkFailed("the docker client could not be taken out of Debian's docker.io")
        shutil.copy2(tree / "usr/bin/docker", DOCKER_BIN)
    DOCKER_BIN.chmod(0o755)


def add(command: Command) -> None:
    translations = [translate(spec) for spec in command.args]
    if translations:
        say("installing with apt-get: " + ", ".join(t.describe() for t in translations))
    if command.update or command.no_cache or not _lists_fresh():
        apt_get("update")
    packages = _resolve(translations)
    docker = any(t.docker_client for t in translations)
    packages = [p for p in packages if not (docker and p == "docker.io")]
    new = [p for p in packages if not _installed(p)]
    if packages:
        apt_get("install", *packages)
    if docker:
        _install_docker_client()
    if command.virtual:
        VIRTUAL_DIR.mkdir(parents=True, exist_ok=True)
        group = VIRTUAL_DIR / command.virtual
        previous = group.read_text().split() if group.is_file() else []
        # Only what this line installed: apk del NAME must not remove what was there before.
        group.write_text("\n".join(dict.fromkeys([*previous, *new])) + "\n")


def delete(command: Command) -> None:
    packages: list[str] = []
    for name in command.args:
        group = VIRTUAL_DIR / name
        if group.is_file():
            packages += group.read_text().split()
            group.unlink()
            continue
        item = translate(name)
        if item.docker_client:
            DOCKER_BIN.unlink(missing_ok=True)
            continue
        packages += item.debian
    kept = [p for p in packages if p in PROTECTED]
    if kept:
        say(f"keeping {', '.join(kept)}: al's entry point and helper commands need them")
    remove = [p for p in dict.fromkeys(packages) if p not in PROTECTED and _installed(p)]
    if remove:
        say("removing with apt-get: " + ", ".join(remove))
        apt_get("purge", "--auto-remove", *remove)


def clean(no_cache: bool) -> None:
    """Leave no downloaded packages in the layer (and no lists with --no-cache)."""
    subprocess.run(["apt-get", "clean"], check=False)
    if no_cache and APT_LISTS.is_dir():
        for entry in APT_LISTS.iterdir():
            if entry.is_file():
                entry.unlink()


def run(command: Command) -> None:
    """Carry out `command`; ApkFailed when it cannot be."""
    if command.action is None:
        raise ApkFailed("no command given (al translates apk add, del, update and upgrade)")
    if command.action not in ("add", "del", "update", "upgrade"):
        raise ApkFailed(
            f'"apk {command.action}" is not translated (al translates apk add, del, update and '
            "upgrade): use the apt equivalent (dpkg -l, apt-cache search, apt-cache show)"
        )
    if os.geteuid() != 0:
        raise ApkFailed(
            "installing packages needs root, and the base image runs as user node: put "
            "USER root before this RUN line (and USER node after it)"
        )
    if command.ignored:
        say(f"ignored (Alpine-only): {' '.join(command.ignored)}")
    try:
        if command.action == "add":
            add(command)
        elif command.action == "del":
            delete(command)
        elif command.action == "update":
            apt_get("update")
        else:
            if command.update or command.no_cache or not _lists_fresh():
                apt_get("update")
            apt_get("upgrade")
    finally:
        clean(command.no_cache)


def main(argv: list[str] | None = None) -> int:
    command = parse_command(sys.argv[1:] if argv is None else argv)
    try:
        run(command)
    except ApkFailed as exc:
        for i, line in enumerate(str(exc).splitlines()):
            say(("error: " if i == 0 else "       ") + line)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
