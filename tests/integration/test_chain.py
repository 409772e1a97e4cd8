"""The image chain on a real engine: which images exist, their parents, no-op rebuilds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from action_llama.errors import ImageBuildError
from action_llama.images.build import ChainBuilder
from action_llama.images.plan import project_scope
from action_llama.project import load_project

from support import ProjectFactory, run_al, script_agent, script_output

pytestmark = [pytest.mark.docker]

CUSTOM_PROJECT_DOCKERFILE = """
FROM al-agent:latest
USER root
RUN echo from-project > /etc/project-marker
USER node
"""
AGENT_DOCKERFILE = """
# written for the original: starts from the base name, switches user
FROM al-agent:latest
USER root
RUN echo from-agent > /etc/agent-marker
USER node
"""
CHECK = (
    "cat /etc/project-marker 2>/dev/null || echo no-project; "
    "cat /etc/agent-marker 2>/dev/null || echo no-agent"
)


def labels(client: Any, tag: str) -> dict[str, str]:
    return client.api.inspect_image(tag)["Config"]["Labels"]


def image_id(client: Any, tag: str) -> str:
    return str(client.api.inspect_image(tag)["Id"])


def tags_of_project(client: Any, root: Path) -> set[str]:
    images = client.api.images(filters={"label": f"al.project={root}"})
    return {tag for image in images for tag in image["RepoTags"] or []}


def test_bare_project_dockerfile_and_no_agent_dockerfiles_mean_base_only(
    make_project: ProjectFactory, base_image: str, docker_client: Any
) -> None:
    """A bare FROM project Dockerfile builds no project layer; agents run the base image."""
    root = make_project(
        {
            "Dockerfile": "# just the base\nFROM al-agent:latest\n",
            **script_agent("plain", CHECK),
        }
    )
    result = ChainBuilder(docker_client, load_project(root)).ensure()
    assert [layer.kind for layer in result.layers] == ["base"]
    assert result.image_for("plain") == base_image
    assert tags_of_project(docker_client, root) == set()
    out = run_al("run", "plain", "-p", str(root), "--json", "-q")
    assert script_output(out.stdout) == ["no-project", "no-agent"]


def test_customized_project_and_agent_dockerfiles_build_a_three_layer_chain(
    make_project: ProjectFactory, base_image: str, docker_client: Any
) -> None:
    """base → al-project-base → al-<agent>, each labelled with its parent; agents without a
    Dockerfile run the project base."""
    root = make_project(
        {
            "Dockerfile": CUSTOM_PROJECT_DOCKERFILE,
            **script_agent("tooled", CHECK, dockerfile=AGENT_DOCKERFILE),
            **script_agent("plain", CHECK),
        }
    )
    result = ChainBuilder(docker_client, load_project(root)).ensure()
    assert [layer.kind for layer in result.layers] == ["base", "project-base", "agent"]
    # By id: on an engine shared with other projects, `:latest` is whoever built last.
    project_base = result.image_ids["al-project-base:latest"]
    agent_image = result.image_ids["al-tooled:latest"]
    assert labels(docker_client, project_base)["al.parent"] == base_image
    assert labels(docker_client, agent_image)["al.parent"] == project_base
    assert labels(docker_client, agent_image)["al.layer"] == "agent"
    assert result.image_for("tooled") == agent_image
    assert result.image_for("plain") == project_base

    tooled = run_al("run", "tooled", "-p", str(root), "--json", "-q")
    assert script_output(tooled.stdout) == ["from-project", "from-agent"]
    plain = run_al("run", "plain", "-p", str(root), "--json", "-q")
    assert script_output(plain.stdout) == ["from-project", "no-agent"]


def test_agent_dockerfile_without_project_layer_builds_on_the_base(
    make_project: ProjectFactory, base_image: str, docker_client: Any
) -> None:
    """With no project layer, an agent image's parent is the base image itself."""
    root = make_project(script_agent("tooled", CHECK, dockerfile=AGENT_DOCKERFILE))
    result = ChainBuilder(docker_client, load_project(root)).ensure()
    assert [layer.kind for layer in result.layers] == ["base", "agent"]
    assert labels(docker_client, result.image_ids["al-tooled:latest"])["al.parent"] == base_image
    assert tags_of_project(docker_client, root) == {
        "al-tooled:latest",
        f"al-tooled:{project_scope(root)}",
    }


def test_unchanged_chain_builds_nothing_and_an_edit_rebuilds_only_that_layer(
    make_project: ProjectFactory, base_image: str, docker_client: Any
) -> None:
    """A second build with no changes calls the builder zero times; editing one agent's
    Dockerfile rebuilds that image only; --no-cache rebuilds all."""
    root = make_project(
        {
            "Dockerfile": CUSTOM_PROJECT_DOCKERFILE,
            **script_agent("one", CHECK, dockerfile=AGENT_DOCKERFILE),
            **script_agent("two", CHECK, dockerfile=AGENT_DOCKERFILE.replace("agent-marker", "m2")),
        }
    )
    first = ChainBuilder(docker_client, load_project(root)).ensure()
    assert set(first.built) == {"al-project-base:latest", "al-one:latest", "al-two:latest"}

    again = ChainBuilder(docker_client, load_project(root)).ensure()
    assert again.built == []
    assert again.image_ids == first.image_ids

    (root / "agents/two/Dockerfile").write_text(AGENT_DOCKERFILE + "RUN true\n")
    edited = ChainBuilder(docker_client, load_project(root)).ensure()
    assert edited.built == ["al-two:latest"]
    assert edited.image_ids["al-one:latest"] == first.image_ids["al-one:latest"]

    forced = ChainBuilder(docker_client, load_project(root), no_cache=True).ensure(["one"])
    assert "al-one:latest" in forced.built
    assert "al-project-base:latest" in forced.built


def test_changing_the_project_layer_rebuilds_the_agents_on_top(
    make_project: ProjectFactory, base_image: str, docker_client: Any
) -> None:
    """A changed parent image id changes the child's key, so the child rebuilds too."""
    root = make_project(
        {
            "Dockerfile": CUSTOM_PROJECT_DOCKERFILE,
            **script_agent("one", CHECK, dockerfile=AGENT_DOCKERFILE),
        }
    )
    ChainBuilder(docker_client, load_project(root)).ensure()
    (root / "Dockerfile").write_text(CUSTOM_PROJECT_DOCKERFILE + "RUN true\n")
    rebuilt = ChainBuilder(docker_client, load_project(root)).ensure()
    assert set(rebuilt.built) == {"al-project-base:latest", "al-one:latest"}


def test_two_projects_on_one_engine_never_rebuild_for_each_other(
    make_project: ProjectFactory, base_image: str, docker_client: Any
) -> None:
    """Two projects with their own project layer and an agent of the same name, built and run
    in turn: each builds once, then is up to date whichever built last, and runs its own
    images; `:latest` names the images of the project built last."""
    files = {
        "Dockerfile": CUSTOM_PROJECT_DOCKERFILE,
        **script_agent("tooled", CHECK, dockerfile=AGENT_DOCKERFILE),
    }
    a = make_project(files, name="a")
    b = make_project(
        {name: text.replace("from-", "b-from-") for name, text in files.items()}, name="b"
    )
    first_a = ChainBuilder(docker_client, load_project(a)).ensure()
    first_b = ChainBuilder(docker_client, load_project(b)).ensure()
    assert (
        set(first_a.built) == set(first_b.built) == {"al-project-base:latest", "al-tooled:latest"}
    )
    assert image_id(docker_client, "al-tooled:latest") == first_b.image_ids["al-tooled:latest"]
    for root, first in ((a, first_a), (b, first_b), (a, first_a)):
        again = ChainBuilder(docker_client, load_project(root)).ensure()
        assert (again.built, again.image_ids) == ([], first.image_ids)

    ran_a = run_al("run", "tooled", "-p", str(a), "--json")
    assert script_output(ran_a.stdout) == ["from-project", "from-agent"]
    assert "building" not in ran_a.stderr
    ran_b = run_al("run", "tooled", "-p", str(b), "--json")
    assert script_output(ran_b.stdout) == ["b-from-project", "b-from-agent"]
    assert "building" not in ran_b.stderr


@pytest.mark.parametrize(
    ("where", "layer", "hint_part"),
    [
        ("agents/broken/Dockerfile", "agent", "agents/broken/Dockerfile starts with FROM"),
        ("Dockerfile", "project-base", "the project Dockerfile starts with FROM"),
    ],
)
def test_failed_build_names_the_layer_shows_the_log_tail_and_the_hint(
    make_project: ProjectFactory,
    base_image: str,
    docker_client: Any,
    where: str,
    layer: str,
    hint_part: str,
) -> None:
    """A Dockerfile installing packages as the base's user node fails with the layer, the log
    (apk naming USER root) and the hint."""
    root = make_project(
        {
            **script_agent("broken", "true"),
            where: "FROM al-agent:latest\nRUN apk add --no-cache ripgrep\n",
        }
    )
    with pytest.raises(ImageBuildError) as caught:
        ChainBuilder(docker_client, load_project(root)).ensure()
    assert caught.value.layer == layer
    assert "apk (al): error: installing packages needs root" in caught.value.log_tail
    assert caught.value.hint is not None
    assert hint_part in caught.value.hint
    assert "USER root" in caught.value.hint

    cli = run_al("run", "broken", "-p", str(root))
    assert cli.returncode != 0
    assert "Traceback" not in cli.stderr
    assert "error: Building the" in cli.stderr
    assert "put USER root before this RUN line" in cli.stderr
    assert docker_client.api.containers(all=True, filters={"label": f"al.project={root}"}) == []


def test_image_build_and_ls_show_the_chain(make_project: ProjectFactory, base_image: str) -> None:
    """`al image build` shows the tree; `al image ls` lists layer and parent of each image."""
    root = make_project(
        {
            "Dockerfile": CUSTOM_PROJECT_DOCKERFILE,
            **script_agent("tooled", CHECK, dockerfile=AGENT_DOCKERFILE),
            **script_agent("plain", CHECK),
        }
    )
    built = run_al("image", "build", "-p", str(root))
    assert built.returncode == 0, built.stderr
    assert "└─ al-project-base:latest" in built.stdout
    assert "└─ al-tooled:latest" in built.stdout
    assert "run al-project-base:latest: plain" in built.stdout
    listed = run_al("image", "ls", "-p", str(root))
    rows = {line.split()[1]: line.split() for line in listed.stdout.splitlines()[1:]}
    # An image shows as :latest, or by its project's tag once another project (a test session
    # beside this one) has built an image of that name since.
    ours = {"al-project-base:latest", f"al-project-base:{project_scope(load_project(root).root)}"}
    assert rows["agent"][:2] == ["al-tooled:latest", "agent"]
    assert rows["agent"][2] in ours
    assert (rows["project-base"][0] in ours, rows["project-base"][1]) == (True, "project-base")
    # The base shows as al-agent:latest, or by its key while another install holds :latest.
    assert rows["project-base"][2].startswith("al-agent:")
    assert rows["base"][0].startswith("al-agent:")
    quiet = run_al("image", "build", "-p", str(root), "-q")
    assert quiet.returncode == 0
    assert quiet.stdout == quiet.stderr == ""
