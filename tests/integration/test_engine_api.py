"""The small engine client runs use (`action_llama.engine_api`), against the real engine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from action_llama.engine_api import EngineAPI, EngineNotFound, NoSuchImage
from action_llama.errors import ImageMissing
from action_llama.runtimes.base import Limits, RunSpec
from action_llama.runtimes.docker import DockerRuntime

from support import cleanup_project

pytestmark = [pytest.mark.docker]


def test_a_container_s_output_exit_code_listing_and_removal(
    tmp_path: Path, docker_client: Any, base_image: str
) -> None:
    """What a run reads of its container: both output streams in full, the exit code,
    the container listed by label until removed, then "not found" for it."""
    api = EngineAPI()
    label = f"al.project={tmp_path}"
    script = "echo out-1; echo err-1 >&2; head -c 100000 /dev/zero | tr '\\0' x; echo; exit 3"
    created = api.create_container(
        {
            "Image": base_image,
            "Entrypoint": ["sh", "-c", script],
            "Labels": {"al.project": str(tmp_path)},
            "HostConfig": {"NetworkMode": "none"},
        },
        f"al-engine-api-{tmp_path.name}",
    )
    try:
        ref = created["Id"]
        api.start(ref)
        assert api.wait(ref)["StatusCode"] == 3
        output = b"".join(api.logs(ref)).decode()
        assert "out-1\n" in output
        assert "err-1\n" in output
        assert "x" * 100000 + "\n" in output
        assert [c["Id"] for c in api.containers({"label": [label]})] == [ref]
        assert api.inspect_container(ref)["State"]["ExitCode"] == 3
    finally:
        api.remove_container(created["Id"], force=True)
    with pytest.raises(EngineNotFound):
        api.inspect_container(created["Id"])
    with pytest.raises(EngineNotFound):
        api.remove_container(created["Id"], force=True)
    assert api.containers({"label": [label]}) == []


def test_an_image_the_engine_lacks_is_no_such_image(docker_client: Any) -> None:
    """Looking up an image that is not there says so (the chain then builds it)."""
    with pytest.raises(NoSuchImage):
        EngineAPI().inspect_image("al-test-no-such-image:never")


def test_a_run_whose_image_is_gone_is_image_missing_and_leaves_nothing(
    tmp_path: Path, docker_client: Any
) -> None:
    """Starting a run from an image the engine no longer has raises ImageMissing, whose hint
    rebuilds it (as before), and leaves no container behind."""
    project = tmp_path / "project"
    static, credentials = tmp_path / "static", tmp_path / "credentials"
    for folder in (static, credentials, project / ".al"):
        folder.mkdir(parents=True)
    spec = RunSpec(
        run_id="imagegone",
        agent="gone",
        project=project,
        image="sha256:" + "0" * 64,
        static_dir=static,
        credentials_dir=credentials,
        workspace=str(project / ".al" / "workspaces" / "gone"),
        limits=Limits(memory_bytes=256 * 1024**2, cpus=1),
        timeout=60,
    )
    try:
        with pytest.raises(ImageMissing) as raised:
            asyncio.run(DockerRuntime().start(spec))
        assert raised.value.hint == "Build it again with: al image build"
        assert not EngineAPI().containers({"label": ["al.run=imagegone"]})
    finally:
        cleanup_project(docker_client, project)
