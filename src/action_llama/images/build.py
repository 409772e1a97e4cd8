"""Make the planned image chain exist in the engine, building only layers whose key changed."""

from __future__ import annotations

import contextlib
import io
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import action_llama
from action_llama.errors import ImageBuildError
from action_llama.images import base, osimage
from action_llama.images.events import BuildEvents, SilentEvents
from action_llama.images.plan import (
    LABEL_AGENT,
    LABEL_INSTALL,
    LABEL_KEY,
    LABEL_LAYER,
    LABEL_PARENT,
    LABEL_PARENT_TAG,
    LABEL_PROJECT,
    LABEL_VERSION,
    Layer,
    layer_key,
    parent_of,
    plan_chain,
    project_scope,
    rewrite_from,
    split_tag,
    troubleshooting_hint,
    with_tag,
)

if TYPE_CHECKING:
    import docker

    from action_llama.project import Project

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class ChainResult:
    """Image ids of the chain's layers, by tag, and which of them were (re)built."""

    layers: list[Layer]
    image_ids: dict[str, str] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)
    #: The tag each layer (by its seed tag) was looked up and built as, and children build on.
    refs: dict[str, str] = field(default_factory=dict)

    def image_for(self, agent: str) -> str:
        """The image id an agent runs: its own layer, else the project base, else the base."""
        for layer in reversed(self.layers):
            if layer.kind == "agent" and layer.agent == agent:
                return self.image_ids[layer.tag]
        for layer in reversed(self.layers):
            if layer.kind in ("project-base", "base"):
                return self.image_ids[layer.tag]
        raise KeyError(agent)


def base_key() -> str:
    """The key of the base image this install builds: its package files, and a chosen OS image
    (AL_OS_IMAGE; the default one is not an input, so the base does not rebuild when its OS
    layer is re-made identically)."""
    return layer_key("base", base.package_digest(), os.environ.get("AL_OS_IMAGE", ""))


def base_ref(tag: str, key: str | None = None) -> str:
    """The tag this install's base is built and found as: `[local].image` tagged by its key,
    so installs of different versions sharing an engine each keep theirs."""
    return with_tag(tag, f"k{(key or base_key())[:16]}")


def _is_content_tag(tag: str, image_id: str) -> bool:
    """Whether `tag` names the image by its own id (a copy published to a registry by
    content), not by a name someone chose."""
    version = tag.rsplit(":", 1)[-1] if ":" in tag.rsplit("/", 1)[-1] else ""
    return len(version) >= 12 and image_id.removeprefix("sha256:").startswith(version)


def _labels_of(tag: str) -> tuple[str, dict[str, str]] | None:
    """(image id, labels) of `tag`, or None when the engine has no such image."""
    from action_llama.engine import api
    from action_llama.engine_api import NoSuchImage

    try:
        attrs = api().inspect_image(tag)
    except NoSuchImage:
        return None
    return attrs["Id"], (attrs.get("Config") or {}).get("Labels") or {}


class ChainBuilder:
    """Builds the layers of one project's chain against one engine (DOCKER_HOST's).

    `client`: docker-py's client of that engine, for building; connected when a layer needs
    building (None: not before), so a chain that is up to date costs a few small calls."""

    def __init__(
        self,
        client: docker.DockerClient | None,
        project: Project,
        events: BuildEvents | None = None,
        *,
        no_cache: bool = False,
    ):
        self._client = client
        self.project = project
        self.events = events or SilentEvents()
        self.no_cache = no_cache

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            from action_llama.engine import connect

            self._client = connect()
        return self._client

    def ensure(self, agents: list[str] | None = None) -> ChainResult:
        """Have every layer the given agents (default: all whose runs need an image) need."""
        from action_llama.runtimes.registry import image_agents

        project = self.project
        names = agents if agents is not None else image_agents(project)
        # The texts the loader read (and checked): one read per file, errors named there.
        dockerfiles = {name: project.agents[name].dockerfile_text for name in names}
        layers = plan_chain(
            project.config.local.image,
            project.dockerfile_text,
            dockerfiles,
            project_scope(project.root),
        )
        result = ChainResult(layers)
        for layer in layers:
            parent = parent_of(layer, layers)
            parent_id = result.image_ids[parent.tag] if parent else ""
            result.image_ids[layer.tag] = self._ensure_layer(layer, parent, parent_id, result)
        return result

    def _ensure_layer(
        self, layer: Layer, parent: Layer | None, parent_id: str, result: ChainResult
    ) -> str:
        dockerfile = ""
        if layer.kind == "base":
            key = base_key()
            supplied = self._supplied_base(layer)
            if supplied is not None:
                result.refs[layer.tag] = layer.tag
                return supplied
            ref = base_ref(layer.tag, key)
        else:
            assert layer.dockerfile is not None
            assert parent is not None
            # The parent as this chain has it: another project's `:latest` may differ.
            dockerfile = rewrite_from(layer.dockerfile, result.refs[parent.tag])
            key = layer_key(layer.kind, dockerfile, parent_id, action_llama.__version__)
            ref = layer.build_tag
        result.refs[layer.tag] = ref
        existing = _labels_of(ref)
        if existing and not self.no_cache and existing[1].get(LABEL_KEY) == key:
            self.events.layer(layer.title, f"up to date ({layer.tag})")
            return existing[0]
        started = time.monotonic()
        shown = _labels_of(layer.tag) if ref != layer.tag else None
        if layer.kind == "base":
            image_id = self._build_base(layer, ref, key)
        else:
            assert parent is not None
            image_id = self._build(layer, ref, dockerfile, key, parent_id, parent.tag)
        result.built.append(layer.tag)
        if ref != layer.tag:
            # What users type and see (`al-agent:latest`) names the image built last.
            self.client.api.tag(image_id, *split_tag(layer.tag))
        for old in {existing[0] if existing else "", shown[0] if shown else ""} - {"", image_id}:
            self._discard(old)
        if layer.kind == "base":
            self._discard_older_bases(image_id)
        self.events.layer(layer.title, f"built {layer.tag} in {time.monotonic() - started:.1f}s")
        return image_id

    def _supplied_base(self, layer: Layer) -> str | None:
        """The id of a base image the user made (`[local].image` without our key label)."""
        existing = _labels_of(layer.tag)
        if existing is None or self.no_cache or LABEL_KEY in existing[1]:
            return None
        self.events.layer(layer.title, f"up to date ({layer.tag})")
        return existing[0]

    def _discard(self, image_id: str) -> None:
        """Remove an image a build replaced once nothing names it any more (another project's
        tag, a user's own tag), unless a container or a child image still uses it."""
        from docker.errors import APIError

        with contextlib.suppress(APIError):
            image = self.client.api.inspect_image(image_id)  # type: ignore[no-untyped-call]
            tags = image.get("RepoTags") or []
            if any(not _is_content_tag(tag, image["Id"]) for tag in tags):
                return
            # Its copies for a registry (tagged with its own id) go with it: removing the last
            # tag removes the image.
            for tag in tags:
                self.client.api.remove_image(tag, noprune=False)
            if not tags:
                self.client.api.remove_image(image_id, noprune=False)

    def _discard_older_bases(self, current: str) -> None:
        """Remove the bases this install built before (an upgrade, an edit of the package):
        bases of other installs sharing the engine are theirs, and stay."""
        from docker.errors import APIError

        mine = [f"{LABEL_LAYER}=base", f"{LABEL_INSTALL}={base.PACKAGE_DIR}"]
        with contextlib.suppress(APIError):
            for image in self.client.api.images(filters={"label": mine}):
                # One tag (its key): removing by id drops it, or fails whole while in use.
                if image["Id"] != current and len(image.get("RepoTags") or []) <= 1:
                    with contextlib.suppress(APIError):
                        self.client.api.remove_image(image["Id"], noprune=False)

    def _labels(self, layer: Layer, key: str, parent_id: str, parent_tag: str) -> dict[str, str]:
        labels = {
            LABEL_PARENT_TAG: parent_tag,
            LABEL_LAYER: layer.kind,
            LABEL_KEY: key,
            LABEL_VERSION: action_llama.__version__,
            LABEL_PARENT: parent_id,
        }
        if layer.kind == "base":
            labels[LABEL_INSTALL] = str(base.PACKAGE_DIR)
        else:
            labels[LABEL_PROJECT] = str(self.project.root)
        if layer.agent:
            labels[LABEL_AGENT] = layer.agent
        return labels

    def _build_base(self, layer: Layer, ref: str, key: str) -> str:
        os_image = osimage.ensure_os_image(self.client, self.events)
        os_found = _labels_of(os_image)
        assert os_found is not None  # ensure_os_image just made sure it exists
        os_id = os_found[0]
        site = base.site_dir(self.events)
        self.events.layer(layer.title, f"building {layer.tag} from {os_image}")
        return self._run_build(
            layer,
            ref,
            base.base_context(site),
            base.DOCKERFILE,
            self._labels(layer, key, os_id, os_image),
            {"AL_OS_IMAGE": os_image},
        )

    def _build(
        self, layer: Layer, ref: str, dockerfile: str, key: str, parent_id: str, parent_tag: str
    ) -> str:
        self.events.layer(layer.title, f"building {layer.tag}")
        return self._run_build(
            layer,
            ref,
            base.package_context(dockerfile),
            base.LAYER_DOCKERFILE,
            self._labels(layer, key, parent_id, parent_tag),
            {},
        )

    def _run_build(
        self,
        layer: Layer,
        ref: str,
        context: io.BytesIO,
        dockerfile: str,
        labels: dict[str, str],
        buildargs: dict[str, str],
    ) -> str:
        from docker.errors import APIError

        tail: list[str] = []
        image_id: str | None = None
        error: str | None = None
        try:
            stream = self.client.api.build(
                fileobj=context,
                custom_context=True,
                dockerfile=dockerfile,
                tag=ref,
                labels=labels,
                buildargs=buildargs,
                nocache=self.no_cache,
                rm=True,
                forcerm=True,
                decode=True,
                pull=False,
            )
            for chunk in stream:
                if "stream" in chunk:
                    for line in _ANSI.sub("", chunk["stream"]).splitlines():
                        if line.strip():
                            tail = [*tail[-39:], line]
                            self.events.line(layer.title, line)
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk:
                    error = chunk["error"].strip()
        except APIError as exc:
            error = str(exc.explanation or exc)
        if error or image_id is None:
            raise ImageBuildError(
                f"Building the {layer.title} image ({layer.tag}) failed: "
                f"{error or 'the builder returned no image'}",
                layer=layer.kind,
                log_tail="\n".join(tail[-20:]),
                hint=troubleshooting_hint(layer, "\n".join(tail)),
            )
        return image_id


def build_images(
    project: Project, agents: list[str] | None = None, events: BuildEvents | None = None
) -> dict[str, str]:
    """What the runs of each of `agents` (default: every agent whose runs need an image)
    start from: the chain built where it changed, then published where each agent's runtime
    starts its runs (the image ids of this engine, or references in a cluster's registry);
    none without such agents (and then no engine is needed)."""
    from action_llama.runtimes.registry import image_agents, publish_images

    names = image_agents(project) if agents is None else agents
    if not names:
        return {}
    chain = ChainBuilder(None, project, events).ensure(names)
    return publish_images(project, {name: chain.image_for(name) for name in names})
