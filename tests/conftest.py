"""Fixtures shared by every test layer: temp projects, the real Docker engine, host users.

Everything a test creates in Docker carries the label `al.project=<its temp dir>` and is
removed when the test ends, with the project's workspace volumes and loop devices. The OS
users host-user runs use are made for the session and removed after it (tests needing them
are skipped unless the tests run as root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.model_server import FakeModelServer
from support import (
    HOST_USER_A,
    HOST_USER_B,
    ProjectFactory,
    cleanup_project,
    swarm_for_tests,
    system_users,
    write_files,
)

HOST_USERS = (HOST_USER_A, HOST_USER_B)
#: The registry swarm tests push to (scripts/lib.sh starts Debian's docker-registry there).
REGISTRY = os.environ.get("AL_TEST_REGISTRY", "127.0.0.1:5000")


@pytest.fixture
def make_project(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ProjectFactory]:
    """Write a project from a {relative path: text} mapping; clean its Docker leftovers after."""
    made: list[Path] = []

    def factory(files: dict[str, str] | None = None, config: str = "", name: str = "proj") -> Path:
        root = tmp_path / name
        root.mkdir()
        write_files(root, {"config.toml": config, **(files or {})})
        made.append(root.resolve())
        return root.resolve()

    yield factory
    if not made:
        return
    if request.node.get_closest_marker("docker"):
        client = request.getfixturevalue("docker_client")
    else:
        # Runs that need no image still get an egress proxy on the engine when one is there.
        client = _engine_if_running()
    if client is not None:
        for root in made:
            cleanup_project(client, root)
    from action_llama.egress.brokering import drop_keys_dir
    from action_llama.egress.deploy import project_id

    for root in made:  # runs of a fake runtime hand the (absent) proxy keys too
        drop_keys_dir(project_id(root))


_engine: list[Any] = []


def _engine_if_running() -> Any:
    """The Docker engine when one answers (asked once per session), else None."""
    if not _engine:
        from action_llama.engine import connect
        from action_llama.errors import RuntimeUnavailable

        try:
            _engine.append(connect())
        except RuntimeUnavailable:
            _engine.append(None)
    return _engine[0]


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """The real engine. Its absence is a failure, not a skip: use -m 'not docker' to leave it out."""
    from action_llama.engine import connect
    from action_llama.errors import RuntimeUnavailable

    try:
        return connect()
    except RuntimeUnavailable as exc:
        pytest.fail(f"Docker engine needed by this test: {exc} ({exc.hint})")


@pytest.fixture(scope="session")
def base_image(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base image, built once per session (debootstrapping the OS layer if need be).

    Pinned by a tag of the session's own for as long as the session lasts: a test that
    rebuilds the base (`--no-cache`) replaces it under its usual tags, and a build discards
    an image that no name holds any more, while later tests still start containers from
    this id."""
    from action_llama.images.build import ChainBuilder
    from action_llama.project import load_project

    root = tmp_path_factory.mktemp("base-project")
    (root / "config.toml").write_text("")
    result = ChainBuilder(docker_client, load_project(root)).ensure()
    image_id = result.image_ids[result.layers[0].tag]
    pin = ("al-test-base", f"session-{os.getpid()}")
    docker_client.api.tag(image_id, *pin)
    try:
        yield image_id
    finally:
        with contextlib.suppress(Exception):
            docker_client.api.remove_image(":".join(pin), noprune=False)


@pytest.fixture(scope="session")
def sshd_image(docker_client: Any, base_image: str) -> Iterator[str]:
    """An image of the base with OpenSSH's server (`fakes.sshd`), built once per session
    (from the Debian mirror) and removed after it."""
    import docker.errors

    from fakes.sshd import build_image

    tag = build_image(docker_client, base_image)
    try:
        yield tag
    finally:
        with contextlib.suppress(docker.errors.APIError):
            docker_client.api.remove_image(tag, noprune=False)


@pytest.fixture(scope="session")
def swarm(docker_client: Any) -> Iterator[str]:
    """This engine as a swarm manager (made for the tests when it is in no swarm); its node id."""
    with swarm_for_tests(docker_client) as node_id:
        yield node_id


@pytest.fixture(scope="session")
def registry() -> str:
    """The address of a registry the engine can push to, on loopback (started by
    scripts/test; a missing one fails the test, with the command that starts it)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5) as answer:
            assert answer.status == 200
    except OSError as exc:
        pytest.fail(
            f"no registry answers at {REGISTRY} ({exc}); start one with: "
            "source scripts/lib.sh && start_registry"
        )
    return REGISTRY


@pytest.fixture(scope="session")
def swarm_image(docker_client: Any, base_image: str, swarm: str, registry: str) -> Iterator[str]:
    """The base image in the registry, where swarm tasks pull it from; its registry name is
    taken off this engine afterwards (else each source version's base image stays)."""
    import docker.errors

    from action_llama.runtimes.swarm_images import push

    ref = push(docker_client, registry, base_image)
    yield ref
    with contextlib.suppress(docker.errors.APIError):
        docker_client.api.remove_image(ref)


@pytest.fixture(scope="session")
def host_users() -> Iterator[tuple[str, ...]]:
    """Two system users with no login shell for host-user runs, removed after the session."""
    with system_users(*HOST_USERS) as names:
        yield names


@pytest.fixture
def runs_root() -> Iterator[Path]:
    """A runs root (AL_RUNS_DIR) for host-user runs, below a directory every user can pass."""
    base = Path(tempfile.mkdtemp(prefix="al-test-runs-", dir="/tmp"))
    base.chmod(0o755)
    yield base / "runs"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    """A fake model provider (OpenAI Chat Completions and Anthropic Messages over real HTTP) on
    a free port of 0.0.0.0, answering from the test's script and recording every request."""
    server = FakeModelServer()
    yield server
    server.close()
