"""The persistent, size-capped `/workspace` of container runs.

Docker's `local` volume driver cannot cap a volume's size on overlay2/ext4 (its `o=loop`
option fails, since loop setup is mount(8)'s job, not mount(2)'s). So each agent's
workspace is an ext4 file system in a sparse file, `.al/workspaces/<agent>.ext4`, attached
to a loop device here, and a Docker volume of type ext4 on that device. The engine mounts
it while a container uses it; the file system's size is the cap (writes beyond it fail
with "No space left on device"), and its content persists between runs.

Without root or loop devices this falls back to an ordinary named volume with no cap, and
says so once per run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from action_llama.runtimes.base import CONTAINER_UID

if TYPE_CHECKING:
    import docker

    from action_llama.engine_api import EngineAPI

WORKSPACE_BYTES = 2 * 1024**3
LABEL_WORKSPACE = "al.workspace"


@dataclass(frozen=True)
class Workspace:
    volume: str
    capped: bool


def volume_name(project: Path, agent: str) -> str:
    digest = hashlib.sha256(str(project).encode()).hexdigest()[:10]
    return f"al-ws-{digest}-{agent}"


def _backs(device: str, target: str) -> bool:
    """Whether the loop device `device` (/dev/loopN) is backed by the file `target`."""
    backing = Path("/sys/block") / Path(device).name / "loop" / "backing_file"
    try:
        return backing.read_text().strip().removesuffix(" (deleted)") == target
    except OSError:
        return False


def _loop_for(image: Path) -> str | None:
    """The loop device currently backed by `image`, if any."""
    target = str(image.resolve())
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        device = f"/dev/{backing.parent.parent.name}"
        if _backs(device, target):
            return device
    return None


def _can_cap() -> bool:
    return os.geteuid() == 0 and bool(shutil.which("losetup")) and bool(shutil.which("mkfs.ext4"))


def _make_image(image: Path, size: int) -> None:
    image.parent.mkdir(parents=True, exist_ok=True)
    partial = image.with_suffix(".partial")
    with open(partial, "wb") as fh:
        fh.truncate(size)
    # -m 0: no blocks reserved for root, so the agent gets the whole size.
    subprocess.run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            f"root_owner={CONTAINER_UID}:{CONTAINER_UID}",
            str(partial),
        ],
        check=True,
        capture_output=True,
    )
    partial.rename(image)


def ensure_workspace(api: EngineAPI, project: Path, agent: str, location: Path) -> Workspace:
    """The volume to mount at /workspace for `agent`, created or repaired as needed."""
    from action_llama.engine_api import EngineNotFound

    name = volume_name(project, agent)
    labels = {"al.project": str(project), "al.agent": agent, LABEL_WORKSPACE: "1"}
    if not _can_cap():
        try:
            api.inspect_volume(name)
        except EngineNotFound:
            api.create_volume(name, labels=labels)
        return Workspace(name, capped=False)

    image = location.with_suffix(".ext4")
    if not image.exists():
        _make_image(image, WORKSPACE_BYTES)
    try:
        existing: dict[str, Any] | None = api.inspect_volume(name)
    except EngineNotFound:
        existing = None
    current = ((existing or {}).get("Options") or {}).get("device")
    # The common case, checked alone: the volume's device is still this file's loop device.
    if current and _backs(current, str(image.resolve())):
        return Workspace(name, capped=True)
    device = _loop_for(image)
    if device is None:
        device = subprocess.run(
            ["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True
        ).stdout.strip()
    if existing is not None:
        # The loop device changed (a reboot, a detach): point the volume at the new one.
        with contextlib.suppress(EngineNotFound):
            api.remove_volume(name, force=True)
    api.create_volume(
        name, driver="local", driver_opts={"type": "ext4", "device": device}, labels=labels
    )
    return Workspace(name, capped=True)


def release_workspaces(client: docker.DockerClient, project: Path) -> None:
    """Remove a project's workspace volumes and detach their loop devices (files stay)."""
    from docker.errors import APIError

    volumes = client.api.volumes(filters={"label": [f"al.project={project}", LABEL_WORKSPACE]})
    for volume in volumes.get("Volumes") or []:
        device = (volume.get("Options") or {}).get("device")
        try:
            client.api.remove_volume(volume["Name"], force=True)
        except APIError:
            continue
        if device and device.startswith("/dev/loop"):
            subprocess.run(["losetup", "-d", device], check=False, capture_output=True)
