"""Which of a project's images exist in the engine, with their layer and parent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from action_llama.images.plan import (
    LABEL_KEY,
    LABEL_LAYER,
    LABEL_PARENT,
    LABEL_PARENT_TAG,
    LABEL_PROJECT,
)

if TYPE_CHECKING:
    import docker

    from action_llama.project import Project


@dataclass(frozen=True)
class ImageRow:
    tag: str
    layer: str
    parent: str
    short_id: str
    size_mb: float
    created: float


def names_local_first(tags: list[str]) -> list[str]:
    """An image's names, those of this engine first: a copy published to a cluster's registry
    (or pulled back from it by a swarm task) is also `<registry>/<name>:<id>`."""
    named = [t for t in tags if t != "<none>:<none>"]
    return sorted(named, key=lambda tag: "/" in tag.rsplit(":", 1)[0])


def project_images(client: docker.DockerClient, project: Project) -> list[ImageRow]:
    """The base image in use plus the project-base and agent images built for this project."""
    images = client.api.images(filters={"label": LABEL_LAYER})
    names: dict[str, str] = {}
    for image in images:
        tags = names_local_first(image.get("RepoTags") or [])
        # The seed's name (`al-hello:latest`) when this image still holds it, else the
        # project's own tag (another project sharing the engine built `:latest` last).
        tags.sort(key=lambda t: ("/" in t.rsplit(":", 1)[0], not t.endswith(":latest")))
        names[image["Id"]] = tags[0] if tags else image["Id"][7:19]
    from action_llama.images.build import base_ref

    base_tag = project.config.local.image
    # This install's base (found by its key), or a base the user made themselves (no key).
    own_base = base_ref(base_tag)
    order = {"base": 0, "project-base": 1, "agent": 2}
    rows = []
    for image in images:
        labels = image.get("Labels") or {}
        tags = image.get("RepoTags") or []
        mine = (
            labels.get(LABEL_PROJECT) == str(project.root)
            or own_base in tags
            or (base_tag in tags and LABEL_KEY not in labels)
        )
        if not mine:
            continue
        parent_id = labels.get(LABEL_PARENT, "")
        rows.append(
            ImageRow(
                tag=names[image["Id"]],
                layer=labels.get(LABEL_LAYER, "base"),
                parent=names.get(parent_id)
                or labels.get(LABEL_PARENT_TAG)
                or parent_id.removeprefix("sha256:")[:12]
                or "-",
                short_id=image["Id"].removeprefix("sha256:")[:12],
                size_mb=image.get("Size", 0) / 1e6,
                created=image.get("Created", 0),
            )
        )
    return sorted(rows, key=lambda r: (order.get(r.layer, 3), r.tag))
