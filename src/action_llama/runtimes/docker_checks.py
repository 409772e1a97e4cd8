"""What `al doctor` checks for container agents: the engine answers, the base image exists or
can be built (and, from `doctor.dockerfiles`, what their Dockerfiles install)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING

from action_llama.doctor.result import Check

if TYPE_CHECKING:
    import docker

    from action_llama.project import Agent, Project


def engine_checks(project: Project, agents: Sequence[Agent]) -> list[Check]:
    """Docker answers, and the base image exists or can be built: only when `agents` (the
    project's container agents) need them."""
    from action_llama.engine import connect
    from action_llama.errors import RuntimeUnavailable

    containers = [a.name for a in agents]
    if not containers:
        why = 'no agent has type = "container"' if project.agents else "no agents"
        return [Check("docker", "ok", f"not needed ({why})")]
    try:
        client = connect(timeout=10)
    except RuntimeUnavailable as exc:
        detail = f"{exc.message}\nContainer agents need it: {', '.join(containers)}"
        return [Check("docker", "fail", detail, exc.hint)]
    from docker.errors import DockerException

    try:
        version = str(client.version().get("Version", "?"))
    except DockerException:
        version = "?"
    return [Check("docker", "ok", f"engine {version} reachable"), check_base_image(client, project)]


def check_base_image(client: docker.DockerClient, project: Project) -> Check:
    """`[local].image` exists, or can be built from a Debian image here or with debootstrap.

    Doctor never builds it: `al image build` does, and `al run` builds what is missing.
    """
    from docker.errors import APIError, ImageNotFound

    from action_llama.images.osimage import LOCAL_IMAGE, REGISTRY_IMAGE, apt_mirror

    tag = project.config.local.image
    present: list[str] = []
    for ref in (tag, REGISTRY_IMAGE, LOCAL_IMAGE):
        try:
            client.images.get(ref)
            present.append(ref)
        except ImageNotFound:
            continue
        except APIError as exc:
            return Check("base image", "fail", f"Cannot inspect {ref}: {exc.explanation or exc}")
    if tag in present:
        return Check("base image", "ok", f"{tag} present")
    later = "al image build (or the first al run) builds it; doctor does not"
    if present:
        return Check("base image", "ok", f"{tag} not built yet: {later}, from {present[0]}")
    if os.geteuid() == 0 and (shutil.which("debootstrap") or shutil.which("apt-get")):
        return Check(
            "base image",
            "ok",
            f"{tag} not built yet: {later}, making the Debian layer first with debootstrap "
            f"from {apt_mirror()} (a few minutes)",
        )
    return Check(
        "base image",
        "warn",
        f"{tag} not built yet, and no Debian image is here to build it from: the build will "
        f"try to pull {REGISTRY_IMAGE}.",
        f"docker pull {REGISTRY_IMAGE}, or install debootstrap (apt-get install debootstrap) "
        "and run al image build as root once.",
    )
