"""Make the planned image chain exist in the engine, building only layers whose key changed."""

from __future__ import annotations

import contextlib
import io
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import action_llama
from action_llama.errors import ImageBuildError
from action_llama.images import base, osimage
from action_llama.images.events import BuildEvents, SilentEvents
from action_llama.images.plan import (
    LABEL_AGENT,
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
    rewrite_from,
    troubleshooting_hint,
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

    def image_for(self, agent: str) -> str:
        """The image id an agent runs: its own layer, else the project base, else the base."""
        for layer in reversed(self.layers):
            if layer.kind == "agent" and layer.agent == agent:
                return self.image_ids[layer.tag]
        for layer in reversed(self.layers):
            if layer.kind in ("project-base", "base"):
                return self.image_ids[layer.tag]
        raise KeyError(agent)


def _labels_of(client: docker.DockerClient, tag: str) -> tuple[str, dict[str, str]] | None:
    """(image id, labels) of `tag`, or None when the engine has no such image."""
    from docker.errors import ImageNotFound

    try:
        # types-docker leaves inspect_image unannotated; it returns the inspect JSON.
        attrs: dict[str, Any] = client.api.inspect_image(tag)  # type: ignore[no-untyped-call]
    except ImageNotFound:
        return None
    return attrs["Id"], (attrs.get("Config") or {}).get("Labels") or {}


class ChainBuilder:
    """Builds the layers of one project's chain against one engine."""

    def __init__(
        self,
        client: docker.DockerClient,
        project: Project,
        events: BuildEvents | None = None,
        *,
        no_cache: bool = False,
    ):
        self.client = client
        self.project = project
        self.events = events or SilentEvents()
        self.no_cache = no_cache

    def ensure(self, agents: list[str] | None = None) -> ChainResult:
        """Have every layer the given agents (default: all whose runs need an image) need."""
        from action_llama.runtimes.registry import image_agents

        project = self.project
        names = agents if agents is not None else image_agents(project)
        # The texts the loader read (and checked): one read per file, errors named there.
        dockerfiles = {name: project.agents[name].dockerfile_text for name in names}
        layers = plan_chain(project.config.local.image, project.dockerfile_text, dockerfiles)
        result = ChainResult(layers)
        for layer in layers:
            parent = parent_of(layer, layers)
            parent_id = result.image_ids[parent.tag] if parent else ""
            result.image_ids[layer.tag] = self._ensure_layer(layer, parent, parent_id, result)
        return result

    def _ensure_layer(
        self, layer: Layer, parent: Layer | None, parent_id: str, result: ChainResult
    ) -> str:
        if layer.kind == "base":
            # A chosen OS image (AL_OS_IMAGE) is an input too; the default one is not, so the
            # base does not rebuild when its OS layer is re-made identically.
            key = layer_key("base", base.package_digest(), os.environ.get("AL_OS_IMAGE", ""))
        else:
            assert layer.dockerfile is not None
            assert parent is not None
            dockerfile = rewrite_from(layer.dockerfile, parent.tag)
            key = layer_key(layer.kind, dockerfile, parent_id, action_llama.__version__)
        existing = _labels_of(self.client, layer.tag)
        if existing and not self.no_cache:
            image_id, labels = existing
            user_supplied = layer.kind == "base" and LABEL_KEY not in labels
            if user_supplied or labels.get(LABEL_KEY) == key:
                self.events.layer(layer.title, f"up to date ({layer.tag})")
                return image_id
        started = time.monotonic()
        replaced = existing[0] if existing else None
        if layer.kind == "base":
            image_id = self._build_base(layer, key)
        else:
            assert parent is not None
            image_id = self._build(layer, dockerfile, key, parent_id, parent.tag)
        result.built.append(layer.tag)
        if replaced and replaced != image_id:
            self._discard(replaced)
        self.events.layer(layer.title, f"built {layer.tag} in {time.monotonic() - started:.1f}s")
        return image_id

    def _discard(self, image_id: str) -> None:
        """Remove the image a rebuild replaced, unless a container or a child still uses it."""
        from docker.errors import APIError

        with contextlib.suppress(APIError):
            self.client.api.remove_image(image_id, noprune=False)

    def _labels(self, layer: Layer, key: str, parent_id: str, parent_tag: str) -> dict[str, str]:
        labels = {
            LABEL_PARENT_TAG: parent_tag,
            LABEL_LAYER: layer.kind,
            LABEL_KEY: key,
            LABEL_VERSION: action_llama.__version__,
            LABEL_PARENT: parent_id,
        }
        if layer.kind != "base":
            labels[LABEL_PROJECT] = str(self.project.root)
        if layer.agent:
            labels[LABEL_AGENT] = layer.agent
        return labels

    def _build_base(self, layer: Layer, key: str) -> str:
        os_image = osimage.ensure_os_image(self.client, self.events)
        os_found = _labels_of(self.client, os_image)
        assert os_found is not None  # ensure_os_image just made sure it exists
        os_id = os_found[0]
        site = base.site_dir(self.events)
        self.events.layer(layer.title, f"building {layer.tag} from {os_image}")
        return self._run_build(
            layer,
            base.base_context(site),
            base.DOCKERFILE,
            self._labels(layer, key, os_id, os_image),
            {"AL_OS_IMAGE": os_image},
        )

    def _build(
        self, layer: Layer, dockerfile: str, key: str, parent_id: str, parent_tag: str
    ) -> str:
        self.events.layer(layer.title, f"building {layer.tag}")
        return self._run_build(
            layer,
            base.package_context(dockerfile),
            base.LAYER_DOCKERFILE,
            self._labels(layer, key, parent_id, parent_tag),
            {},
        )

    def _run_build(
        self,
        layer: Layer,
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
                tag=layer.tag,
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
    from action_llama.engine import connect
    from action_llama.runtimes.registry import image_agents, publish_images

    names = image_agents(project) if agents is None else agents
    if not names:
        return {}
    chain = ChainBuilder(connect(), project, events).ensure(names)
    return publish_images(project, {name: chain.image_for(name) for name in names})
