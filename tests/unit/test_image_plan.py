"""Planning the image chain: which layers exist, their parents, Dockerfile rewriting, keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from action_llama.images.plan import (
    PROJECT_BASE_TAG,
    Layer,
    agent_tag,
    is_customized,
    layer_key,
    parent_of,
    plan_chain,
    project_scope,
    rewrite_from,
    troubleshooting_hint,
)

BASE = "al-agent:latest"
BARE = "# Shared tools.\nFROM al-agent:latest\n"
CUSTOM = "FROM al-agent:latest\nRUN apt-get install -y jq\n"

# --- is_customized ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        (None, False),
        ("", False),
        ("# only a comment\n\n   # another\n", False),
        (BARE, False),
        ("  FROM al-agent:latest  \n\n", False),
        (CUSTOM, True),
        ("FROM al-agent:latest\n# comment\nENV A=1\n", True),
    ],
    ids=[
        "missing",
        "empty",
        "comments-only",
        "bare-from",
        "bare-from-padded",
        "from-run",
        "from-env",
    ],
)
def test_project_dockerfile_is_customized_only_beyond_its_from_line(
    dockerfile: str | None, expected: bool
) -> None:
    """A project Dockerfile adds a layer only when it has instructions beyond FROM."""
    assert is_customized(dockerfile) is expected


def test_project_dockerfile_of_only_a_run_line_is_customized() -> None:
    """A project Dockerfile holding just `RUN ...` (no FROM) still adds a layer."""
    assert is_customized("RUN apt-get install -y jq\n")


# --- rewrite_from -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        ("FROM al-agent:latest\nRUN x\n", "FROM P\nRUN x\n"),
        ("FROM debian:12 AS build\nRUN x\n", "FROM P AS build\nRUN x\n"),
        ("FROM --platform=linux/amd64 debian:12\n", "FROM --platform=linux/amd64 P\n"),
        ("FROM --platform=$BUILDPLATFORM x AS b\n", "FROM --platform=$BUILDPLATFORM P AS b\n"),
        ("from debian\nRUN x\n", "from P\nRUN x\n"),
        ("  FROM debian\n", "  FROM P\n"),
        ("ARG V=1\nFROM debian\n", "ARG V=1\nFROM P\n"),
        ("# FROM old\nFROM debian\n", "# FROM old\nFROM P\n"),
    ],
    ids=[
        "plain",
        "keeps-as-stage",
        "keeps-platform",
        "platform-and-stage",
        "lowercase",
        "indented",
        "arg-before",
        "commented-from-skipped",
    ],
)
def test_rewrite_from_points_first_from_at_parent(dockerfile: str, expected: str) -> None:
    """The first FROM's image becomes the parent; flags, stage names and other lines are kept."""
    assert rewrite_from(dockerfile, "P") == expected


def test_rewrite_from_leaves_later_stages_alone() -> None:
    """In a multi-stage Dockerfile only the first FROM is rewritten."""
    dockerfile = (
        "FROM al-agent:latest AS tools\nRUN make\nFROM alpine:3\nCOPY --from=tools /out /out\n"
    )
    assert rewrite_from(dockerfile, "P") == (
        "FROM P AS tools\nRUN make\nFROM alpine:3\nCOPY --from=tools /out /out\n"
    )


def test_rewrite_from_prepends_from_when_there_is_none() -> None:
    """A Dockerfile of bare RUN lines gets `FROM <parent>` added on top."""
    assert rewrite_from("RUN echo hi\n", "al-agent:latest") == (
        "FROM al-agent:latest\nRUN echo hi\n"
    )


def test_rewrite_from_ignores_from_inside_other_instructions() -> None:
    """The word FROM inside a RUN line is not taken for a FROM instruction."""
    assert rewrite_from("RUN echo FROM here\n", "P") == "FROM P\nRUN echo FROM here\n"


# --- plan_chain and parent_of -------------------------------------------------------------------


def test_no_dockerfiles_plans_only_the_base() -> None:
    """With no project Dockerfile and no agent Dockerfiles, only the base image is needed."""
    layers = plan_chain(BASE, None, {"hello": None, "triage": None})
    assert layers == [Layer("base", BASE)]
    assert parent_of(layers[0], layers) is None


def test_bare_project_dockerfile_plans_only_the_base() -> None:
    """The project Dockerfile `al new` writes (a bare FROM) adds no project-base layer."""
    assert [lay.kind for lay in plan_chain(BASE, BARE, {"hello": None})] == ["base"]


def test_customized_project_dockerfile_adds_project_base() -> None:
    """A customized project Dockerfile adds al-project-base on top of the base."""
    layers = plan_chain(BASE, CUSTOM, {"hello": None})
    assert layers == [Layer("base", BASE), Layer("project-base", PROJECT_BASE_TAG, CUSTOM)]
    assert parent_of(layers[1], layers) == layers[0]


def test_agent_dockerfile_builds_on_project_base_when_there_is_one() -> None:
    """With a customized project Dockerfile, an agent's layer builds on al-project-base."""
    layers = plan_chain(BASE, CUSTOM, {"dev": "RUN make\n", "hello": None})
    assert [lay.tag for lay in layers] == [BASE, PROJECT_BASE_TAG, "al-dev:latest"]
    agent = layers[-1]
    assert (agent.kind, agent.agent, agent.dockerfile) == ("agent", "dev", "RUN make\n")
    assert parent_of(agent, layers) == layers[1]


def test_agent_dockerfile_builds_on_base_without_project_base() -> None:
    """Without a customized project Dockerfile, an agent's layer builds on the base."""
    layers = plan_chain(BASE, BARE, {"dev": "RUN make\n", "hello": None})
    assert [lay.tag for lay in layers] == [BASE, "al-dev:latest"]
    assert parent_of(layers[1], layers) == layers[0]


def test_only_agents_with_dockerfiles_get_layers_in_name_order() -> None:
    """Agents without a Dockerfile get no layer; agent layers come in name order."""
    layers = plan_chain(BASE, None, {"zed": "RUN z\n", "hello": None, "alpha": "RUN a\n"})
    assert [lay.agent for lay in layers] == [None, "alpha", "zed"]


def test_custom_base_tag_heads_the_chain() -> None:
    """The [local].image tag is the base layer's tag."""
    assert plan_chain("my-base:1", None, {})[0] == Layer("base", "my-base:1")


def test_agent_tag_and_layer_titles() -> None:
    """Agent images are tagged al-<agent>:latest; layer titles name the agent."""
    assert agent_tag("dev") == "al-dev:latest"
    assert Layer("agent", "al-dev:latest", "RUN x", "dev").title == "agent dev"
    assert Layer("project-base", PROJECT_BASE_TAG, CUSTOM).title == "project-base"
    assert Layer("base", BASE).title == "base"


def test_project_layers_get_a_build_tag_of_their_project() -> None:
    """With a scope, project layers are built as <repo>:<scope>; the base keeps its tag."""
    layers = plan_chain(BASE, CUSTOM, {"dev": "RUN make\n"}, scope="proj-0123")
    assert [lay.tag for lay in layers] == [BASE, PROJECT_BASE_TAG, "al-dev:latest"]
    assert [lay.build_tag for lay in layers] == [
        BASE,
        "al-project-base:proj-0123",
        "al-dev:proj-0123",
    ]


def test_project_scope_is_a_tag_naming_the_folder_and_differing_per_path() -> None:
    """Folders of the same name at different paths get different scopes, each a valid tag."""
    one, two = project_scope(Path("/srv/My Agents")), project_scope(Path("/home/x/My Agents"))
    assert one != two
    assert one.startswith("my-agents-")
    assert re.fullmatch(r"[\w][\w.-]{0,127}", one)
    assert re.fullmatch(r"[\w][\w.-]{0,127}", project_scope(Path("/..."))) is not None


# --- layer_key ----------------------------------------------------------------------------------

KEY_INPUTS = ("agent", "FROM P\nRUN make\n", "sha256:abc", "0.1.0")


def test_layer_key_is_stable_for_same_inputs() -> None:
    """The same inputs give the same key every time."""
    assert layer_key(*KEY_INPUTS) == layer_key(*KEY_INPUTS)


@pytest.mark.parametrize(
    "index", range(len(KEY_INPUTS)), ids=["kind", "dockerfile", "parent", "version"]
)
def test_layer_key_changes_when_any_input_changes(index: int) -> None:
    """Changing the kind, Dockerfile text, parent image id or version changes the key."""
    changed = list(KEY_INPUTS)
    changed[index] += "x"
    assert layer_key(*changed) != layer_key(*KEY_INPUTS)


def test_layer_key_keeps_input_boundaries() -> None:
    """Moving text from one input to the next changes the key."""
    assert layer_key("ab", "c") != layer_key("a", "bc")
    assert layer_key("a", "") != layer_key("a")


# --- troubleshooting_hint -----------------------------------------------------------------------


def test_base_build_hint_says_verbose_and_apt_get() -> None:
    """A failed base build suggests --verbose and apt-get (the base is Debian)."""
    hint = troubleshooting_hint(Layer("base", BASE))
    assert "al image build --verbose" in hint
    assert "apt-get" in hint


@pytest.mark.parametrize(
    ("layer", "where"),
    [
        (Layer("project-base", PROJECT_BASE_TAG, CUSTOM), "the project Dockerfile"),
        (Layer("agent", "al-dev:latest", "RUN x", "dev"), "agents/dev/Dockerfile"),
    ],
)
def test_layer_build_hint_names_the_file_and_from_line(layer: Layer, where: str) -> None:
    """A failed project or agent layer names its Dockerfile, FROM al-agent:latest, USER root,
    and says both apt-get and apk (translated) work."""
    hint = troubleshooting_hint(layer)
    assert f"Check that {where} starts with FROM al-agent:latest" in hint
    assert "USER root" in hint
    assert "apt-get install works, and so does apk add" in hint
    assert "Node.js" not in hint


def test_layer_build_hint_offers_node_when_the_log_says_npm_is_missing() -> None:
    """A build that failed on `npm: not found` is told how to add Node.js."""
    layer = Layer("agent", "al-dev:latest", "RUN npm i -g x", "dev")
    hint = troubleshooting_hint(layer, "/bin/sh: 1: npm: not found")
    assert "RUN apk add --no-cache nodejs npm" in hint


def test_al_image_ls_names_an_image_by_its_local_tag_before_its_registry_copy() -> None:
    """An image also published to a swarm's registry (or pulled back from it) is listed by
    its name on this engine; a base image from a registry keeps its only name."""
    from action_llama.images.inventory import names_local_first

    published = ["127.0.0.1:5000/al-agent:5e087aee6b88", "al-agent:latest", "<none>:<none>"]
    assert names_local_first(published) == ["al-agent:latest", published[0]]
    assert names_local_first(["ghcr.io/org/base:1"]) == ["ghcr.io/org/base:1"]
