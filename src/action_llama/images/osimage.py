"""The Debian bookworm OS layer: from the engine, a registry, or built here with debootstrap.

Registries are often unreachable (air-gapped hosts, CI here), so when the image is neither
present nor pullable, it is made from the Debian mirror the host's apt already uses.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from action_llama.errors import ImageBuildError
from action_llama.images.events import BuildEvents

if TYPE_CHECKING:
    import docker

REGISTRY_IMAGE = "debian:bookworm-slim"
LOCAL_IMAGE = "al-os:bookworm"
TITLE = "os (debian bookworm)"
#: What the base image needs; debootstrap installs it so the base build needs no network.
PACKAGES = ("python3", "git", "curl", "ca-certificates", "openssh-client", "jq")
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def _exists(client: docker.DockerClient, ref: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(ref)
    except ImageNotFound:
        return False
    return True


def ensure_os_image(client: docker.DockerClient, events: BuildEvents) -> str:
    """A Debian bookworm image reference present in the engine, made if need be.

    AL_OS_IMAGE names another image to build the base from (it must be Debian-like).
    """
    chosen = os.environ.get("AL_OS_IMAGE")
    if chosen:
        if not _exists(client, chosen):
            raise ImageBuildError(
                f"AL_OS_IMAGE is {chosen}, which is not in the Docker engine.",
                layer="base",
                hint=f"Load it (docker pull {chosen}) or unset AL_OS_IMAGE.",
            )
        return chosen
    for ref in (REGISTRY_IMAGE, LOCAL_IMAGE):
        if _exists(client, ref):
            return ref
    events.layer(TITLE, f"pulling {REGISTRY_IMAGE}")
    from docker.errors import APIError

    try:
        client.images.pull(REGISTRY_IMAGE)
        return REGISTRY_IMAGE
    except APIError as exc:
        events.line(TITLE, f"pull failed ({exc.explanation or exc}); building it locally instead")
    build_with_debootstrap(client, events)
    return LOCAL_IMAGE


def apt_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive URI the host's apt is configured with (AL_DEBIAN_MIRROR wins)."""
    override = os.environ.get("AL_DEBIAN_MIRROR")
    if override:
        return override
    candidates: list[str] = []
    files = [*sorted(sources_dir.glob("sources.list.d/*.sources")), sources_dir / "sources.list"]
    files += sorted(sources_dir.glob("sources.list.d/*.list"))
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            candidates += [
                u for m in re.finditer(r"^URIs:\s*(.+)$", text, re.M) for u in m[1].split()
            ]
        else:
            candidates += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M)
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    return DEFAULT_MIRROR


def _debootstrap_binary(events: BuildEvents) -> str:
    found = shutil.which("debootstrap")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        events.layer(TITLE, "installing debootstrap")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "debootstrap"],
            env=env,
            capture_output=True,
            check=False,
        )
        found = shutil.which("debootstrap")
        if found:
            return found
    raise ImageBuildError(
        f"No Debian image is available: {REGISTRY_IMAGE} cannot be pulled and debootstrap "
        "is not installed to build one.",
        layer="base",
        hint=f"Install debootstrap (sudo apt-get install debootstrap) or load the image: "
        f"docker pull {REGISTRY_IMAGE}",
    )


def build_with_debootstrap(client: docker.DockerClient, events: BuildEvents) -> None:
    """debootstrap bookworm from the host's mirror into a temp dir, then import it."""
    if os.geteuid() != 0:
        raise ImageBuildError(
            f"{REGISTRY_IMAGE} cannot be pulled, and building it with debootstrap needs root.",
            layer="base",
            hint=f"Run once as root (sudo al image build), or load the image: "
            f"docker pull {REGISTRY_IMAGE}",
        )
    binary = _debootstrap_binary(events)
    mirror = apt_mirror()
    events.layer(TITLE, f"building with debootstrap from {mirror} (about a minute)")
    with tempfile.TemporaryDirectory(prefix="al-os-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        cmd = [
            binary,
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            "bookworm",
            str(root),
            mirror,
        ]
        tail: list[str] = []
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                tail = [*tail[-29:], line]
                events.line(TITLE, line)
        if proc.returncode != 0:
            raise ImageBuildError(
                f"debootstrap of Debian bookworm from {mirror} failed (exit {proc.returncode}).",
                layer="base",
                log_tail="\n".join(tail),
                hint="Check that the mirror is reachable (set AL_DEBIAN_MIRROR to use another), "
                f"or load the image: docker pull {REGISTRY_IMAGE}",
            )
        # Keep the image small (the package lists alone are 50 MB; builds that install
        # packages fetch fresh ones) and its apt usable from containers.
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        for listed in (root / "var/lib/apt/lists").glob("*"):
            if listed.is_file():
                listed.unlink()
        events.layer(TITLE, "importing into Docker")
        archive = Path(tmp) / "root.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
        repo, tag = LOCAL_IMAGE.split(":")
        client.api.import_image_from_file(str(archive), repository=repo, tag=tag)
    events.layer(TITLE, f"imported as {LOCAL_IMAGE}")
