"""Plan the image chain (pure): which layers exist, their Dockerfile text, their content keys.

    al-agent:latest          base: the package, built from its own Dockerfile
        │
    al-project-base:latest   only when the project Dockerfile has more than a bare FROM
        │
    al-<agent>:latest        only for agents with a Dockerfile

The `:latest` tags are what users write (`FROM al-agent:latest`) and see, and name the image
built last. Builds look up, build and build on tags of their own: project layers are tagged per
project (`al-project-base:<folder>-<hash of its path>`), the base by its key
(`al-agent:k<key>`), so projects (and installs) sharing an engine never retag each other's
images and never rebuild for each other.

A layer's key is a digest of everything that decides its content: the rewritten Dockerfile
text, the parent's image id and the package version. The key is stored as an image label;
an unchanged key means the image is reused without calling the builder at all.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

LayerKind = Literal["base", "project-base", "agent"]

PROJECT_BASE_TAG = "al-project-base:latest"

LABEL_LAYER = "al.layer"
LABEL_KEY = "al.key"
LABEL_PROJECT = "al.project"
LABEL_AGENT = "al.agent"
LABEL_PARENT = "al.parent"
LABEL_PARENT_TAG = "al.parent.tag"
LABEL_VERSION = "al.version"
#: On base images: the package folder that built it (bases of other installs are not ours).
LABEL_INSTALL = "al.install"

_FROM = re.compile(r"^(\s*FROM\s+)((?:--\S+\s+)*)(\S+)(.*)$", re.IGNORECASE | re.MULTILINE)


def agent_tag(agent: str) -> str:
    return f"al-{agent}:latest"


def split_tag(ref: str) -> tuple[str, str]:
    """(repository, tag) of an image reference (`localhost:5000/a` has no tag: "latest")."""
    repository, colon, tag = ref.rpartition(":")
    if not colon or "/" in tag:
        return ref, "latest"
    return repository, tag


def with_tag(ref: str, tag: str) -> str:
    """`ref` with its tag replaced by `tag`."""
    return f"{split_tag(ref)[0]}:{tag}"


def project_scope(root: Path) -> str:
    """The tag naming one project's images: its folder name (as a tag may spell it) and a
    digest of its whole path, so two folders of the same name differ."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", root.name.lower()).strip(".-")[:40] or "project"
    digest = hashlib.sha256(str(root).encode("utf-8", errors="surrogateescape")).hexdigest()
    return f"{name}-{digest[:12]}"


def meaningful_lines(dockerfile: str) -> list[str]:
    """Lines that are neither blank nor comments."""
    return [
        line
        for line in dockerfile.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def is_customized(dockerfile: str | None) -> bool:
    """A project Dockerfile builds a layer only when it has an instruction other than FROM."""
    if dockerfile is None:
        return False
    return any(not _FROM.match(line) for line in meaningful_lines(dockerfile))


def rewrite_from(dockerfile: str, parent: str) -> str:
    """Point the first FROM at `parent`; later stages of a multi-stage build are left alone.

    A Dockerfile without any FROM gets one prepended, so a file of bare RUN lines works too.
    """
    if not _FROM.search(dockerfile):
        return f"FROM {parent}\n{dockerfile}"
    return _FROM.sub(lambda m: f"{m[1]}{m[2]}{parent}{m[4]}", dockerfile, count=1)


def layer_key(*parts: str) -> str:
    """Digest of a layer's inputs, in a fixed order."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class Layer:
    """One image to have: its tag, kind, rewritten Dockerfile (None for base) and owner.

    `tag` is the seed's name (`al-project-base:latest`); a project layer planned with a
    `scope` is built and looked up as `build_tag`, the project's own tag of that image."""

    kind: LayerKind
    tag: str
    dockerfile: str | None = None
    agent: str | None = None
    scope: str = ""

    @property
    def title(self) -> str:
        return f"agent {self.agent}" if self.kind == "agent" else self.kind

    @property
    def build_tag(self) -> str:
        if self.kind == "base" or not self.scope:
            return self.tag
        return with_tag(self.tag, self.scope)


def plan_chain(
    base_tag: str,
    project_dockerfile: str | None,
    agent_dockerfiles: dict[str, str | None],
    scope: str = "",
) -> list[Layer]:
    """The layers to have, in build order, for the given agents (None: no Dockerfile);
    project layers tagged for `scope` (see `project_scope`) besides their seed tag."""
    layers = [Layer("base", base_tag)]
    if is_customized(project_dockerfile):
        assert project_dockerfile is not None
        layers.append(Layer("project-base", PROJECT_BASE_TAG, project_dockerfile, scope=scope))
    for agent, text in sorted(agent_dockerfiles.items()):
        if text is not None:
            layers.append(Layer("agent", agent_tag(agent), text, agent, scope=scope))
    return layers


def parent_of(layer: Layer, layers: list[Layer]) -> Layer | None:
    """The layer `layer` builds on (None for the base)."""
    if layer.kind == "base":
        return None
    base = layers[0]
    project_base = next((lay for lay in layers if lay.kind == "project-base"), None)
    if layer.kind == "project-base" or project_base is None:
        return base
    return project_base


def troubleshooting_hint(layer: Layer, log_tail: str = "") -> str:
    """The advice for a failed build of this layer (`log_tail`: the build's last lines)."""
    if layer.kind == "base":
        return (
            "See the full build output with: al image build --verbose\n"
            "The base image is Debian bookworm: install packages with apt-get."
        )
    where = (
        "the project Dockerfile"
        if layer.kind == "project-base"
        else (f"agents/{layer.agent}/Dockerfile")
    )
    hint = (
        f"Check that {where} starts with FROM al-agent:latest (al rewrites it to the right "
        "parent), switches to USER root before installing packages, and spells package names "
        "correctly. The base is Debian bookworm: apt-get install works, and so does apk add "
        "(al translates Alpine names to Debian ones; see the apk (al) lines above)."
    )
    if re.search(r"\b(node|npm|npx|yarn): (command )?not found", log_tail):
        hint += (
            "\nThe base image has no Node.js (the original's did): add "
            "RUN apk add --no-cache nodejs npm before the line that needs it."
        )
    return hint
