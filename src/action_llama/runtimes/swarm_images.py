"""The chain's images in the cluster's registry, where every node pulls them from.

An image is pushed under a tag that is its content (the image id), `<registry>/<its local
repository>:<id>`: a tag already in the registry holds exactly that image, so a chain that
did not change costs one question to the registry per image and pushes nothing. The engine
asks the registry (`GET /distribution/<ref>/json`), so its registry settings (TLS, insecure
registries, logins) are the ones that apply, as for the push itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from action_llama.errors import RuntimeUnavailable
from action_llama.runtimes.swarm_spec import swarm_api

if TYPE_CHECKING:
    import docker

#: Characters of the image id kept in the tag (as unique as the id, in practice).
TAG_LENGTH = 24


def reference(client: docker.DockerClient, registry: str, image_id: str) -> str:
    """Where the image `image_id` lives in `registry`: named like its local tag, tagged with
    its id."""
    attrs: dict[str, Any] = swarm_api(client).inspect_image(image_id)
    local = [t for t in attrs.get("RepoTags") or [] if "/" not in t.rsplit(":", 1)[0]]
    name = local[0].rsplit(":", 1)[0] if local else "al-image"
    name = re.sub(r"[^a-z0-9._-]", "-", name.lower())
    return f"{registry}/{name}:{image_id.removeprefix('sha256:')[:TAG_LENGTH]}"


def in_registry(client: docker.DockerClient, ref: str) -> bool:
    """Whether the registry has `ref` (asked through the engine)."""
    from docker.errors import APIError

    try:
        swarm_api(client).inspect_distribution(ref)
    except APIError:
        return False
    return True


def push(client: docker.DockerClient, registry: str, image_id: str) -> str:
    """The registry reference of `image_id`, pushed there unless it already is."""
    ref = reference(client, registry, image_id)
    if in_registry(client, ref):
        return ref
    repository, tag = ref.rsplit(":", 1)
    from docker.errors import APIError

    try:
        client.api.tag(image_id, repository, tag)
        events = client.api.push(repository, tag=tag, stream=True, decode=True)
        failure = next((e for e in events if e.get("error")), None)
    except APIError as exc:
        failure = {"error": exc.explanation or str(exc)}
    if failure is not None:
        raise RuntimeUnavailable(
            f"Cannot push {ref} to the swarm's registry {registry}: {failure['error']}",
            hint="Check [swarm] registry in config.toml and that every node can reach it "
            "(al doctor checks it); a registry without TLS must be listed in each engine's "
            '"insecure-registries" (loopback ones are allowed already).',
        )
    return ref


def publish(
    client: docker.DockerClient, registry: str, images: Mapping[str, str]
) -> dict[str, str]:
    """Registry references of the agents' images (by agent), pushing what is missing."""
    refs = {image_id: push(client, registry, image_id) for image_id in set(images.values())}
    return {agent: refs[image_id] for agent, image_id in images.items()}
