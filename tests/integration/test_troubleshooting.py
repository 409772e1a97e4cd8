"""The seed's troubleshooting list, each case reproduced as a user meets it."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

from support import ProjectFactory, run_al, script_agent

pytestmark = [pytest.mark.docker]


@pytest.fixture
def empty_os_image(docker_client: Any) -> Iterator[str]:
    """An OS image with no shell and no package manager: the base cannot build on it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("etc/os-release")
        data = b"ID=nothing\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    docker_client.api.import_image_from_data(
        buffer.getvalue(), repository="al-test-empty-os", tag="latest"
    )
    yield "al-test-empty-os:latest"
    empty = docker_client.api.inspect_image("al-test-empty-os:latest")["Id"]
    # The failed build keeps its first step (an ENV layer on this image) for its cache.
    for image in docker_client.api.images(all=True, quiet=True):
        if docker_client.api.inspect_image(image).get("Parent") == empty:
            docker_client.api.remove_image(image, force=True)
    docker_client.api.remove_image(empty, force=True)


def test_base_image_build_failure_points_at_the_verbose_build(
    make_project: ProjectFactory, empty_os_image: str, docker_client: Any
) -> None:
    """A base that cannot build says which layer failed, shows its last lines, and how to see
    the whole build output; `al image build --verbose` then shows every step."""
    root = make_project(
        script_agent("hello", "echo hi"), config='[local]\nimage = "al-test-broken-base:latest"\n'
    )
    env = {"AL_OS_IMAGE": empty_os_image}
    result = run_al("run", "hello", "-p", str(root), env=env)
    assert result.returncode == 1
    assert "Building the base image (al-test-broken-base:latest) failed" in result.stderr
    assert "al image build --verbose" in result.stderr
    assert "Traceback" not in result.stderr
    verbose = run_al("image", "build", "-p", str(root), "--verbose", env=env)
    assert verbose.returncode == 1
    shown = verbose.stderr.split("error:")[0]
    assert "Step 1/" in shown
    assert " ---> " in shown  # the builder's own lines, which the default view leaves out
    assert " ---> " not in result.stderr.split("error:")[0]
    assert not docker_client.api.images(name="al-test-broken-base")


def test_logs_of_an_agent_missing_its_skill_md_say_so(
    make_project: ProjectFactory, base_image: str
) -> None:
    """An agent folder without SKILL.md: `al run` and `al logs` both name the missing file."""
    root = make_project(script_agent("hello", "echo hi"))
    (root / "agents/hello/SKILL.md").unlink()
    for command in ("run", "logs"):
        result = run_al(command, "hello", "-p", str(root))
        assert result.returncode == 1
        assert "SKILL.md" in result.stderr
        assert "add agents/hello/SKILL.md" in result.stderr


def test_logs_of_an_agent_with_an_invalid_model_config_say_so(
    make_project: ProjectFactory, base_image: str
) -> None:
    """A model the project does not define: `al logs` shows the config error in plain words."""
    root = make_project(
        script_agent("hello", "echo hi", 'models = ["sonet"]\n'),
        config='[models.sonnet]\nprovider = "anthropic"\nmodel = "claude-sonnet-4-5"\n',
    )
    result = run_al("logs", "hello", "-p", str(root))
    assert result.returncode == 1
    assert 'references model "sonet" which is not defined' in result.stderr
    assert 'did you mean "sonnet"?' in result.stderr
