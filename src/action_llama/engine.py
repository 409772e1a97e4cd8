"""The one place that connects to the Docker engine and translates "cannot reach it".

`docker` is imported lazily: commands that never touch the engine (`al new`, `al logs`)
should not pay for importing it, and runs do not either: the calls a run makes go through
`action_llama.engine_api` (`api()`), docker-py serves the rest (`connect()`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from action_llama.errors import RunError, docker_not_running

if TYPE_CHECKING:
    import docker

    from action_llama.engine_api import EngineAPI


_clients: dict[str | None, docker.DockerClient] = {}
_apis: dict[str | None, EngineAPI] = {}


def api() -> EngineAPI:
    """The small client of the engine DOCKER_HOST names (one per process and DOCKER_HOST),
    for the calls runs make. Not checked alive: its first call says "Docker is not running"
    when the engine cannot be reached, as `connect` does."""
    from action_llama.engine_api import EngineAPI

    key = os.environ.get("DOCKER_HOST")
    if key not in _apis:
        _apis[key] = EngineAPI(key)
    return _apis[key]


def connect(timeout: int = 60) -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (or the default socket), checked alive.

    One client per process and DOCKER_HOST: image building and runs share its connections.
    """
    key = os.environ.get("DOCKER_HOST")
    if key in _clients:
        return _clients[key]
    _clients[key] = client = _connect(timeout)
    return client


def _connect(timeout: int) -> docker.DockerClient:
    import docker
    from docker.errors import DockerException

    _probe_socket(timeout)
    try:
        client = docker.from_env(timeout=timeout)
        client.api.ping()
    except DockerException as exc:
        raise docker_not_running(reason(exc)) from exc
    return client


def _probe_socket(timeout: int) -> None:
    """Connect to the engine's unix socket once ourselves: docker-py leaks the socket of a
    connection that fails (an fd per attempt, for a scheduler retrying while dockerd is down)."""
    import socket

    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(host.removeprefix("unix://"))
        except OSError as exc:
            raise docker_not_running(reason(exc)) from exc


def reason(exc: BaseException) -> str | None:
    """Why the engine could not be reached (for "Docker is not running"), when known."""
    text = str(exc) or type(exc).__name__
    host = os.environ.get("DOCKER_HOST")
    if host:
        return f"(DOCKER_HOST={host}: {text.splitlines()[0][:200]})"
    for needle in ("No such file or directory", "Connection refused", "Permission denied"):
        if needle in text:
            if needle == "Permission denied":
                return "Permission denied on the Docker socket (add yourself to the docker group)."
            return f"({needle.lower()} on the Docker socket)"
    return None


@contextlib.contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Translate what the engine raises while doing `what` ("waiting for run x"), through
    either client: a container that is gone becomes RunError; a lost connection, "Docker is
    not running". (docker-py's errors can only be raised once it is loaded.)"""
    from action_llama.engine_api import EngineAPIError, EngineNotFound

    try:
        yield
    except EngineNotFound as exc:
        raise RunError(f"Docker no longer has it while {what}: {exc.explanation}") from exc
    except EngineAPIError as exc:
        raise docker_not_running(reason(exc)) from exc
    except Exception as exc:
        if "docker.errors" not in sys.modules:
            raise
        from docker.errors import DockerException, NotFound
        from requests import RequestException

        if isinstance(exc, NotFound):
            explanation = exc.explanation or exc
            raise RunError(f"Docker no longer has it while {what}: {explanation}") from exc
        if isinstance(exc, DockerException | RequestException):
            raise docker_not_running(reason(exc)) from exc
        raise
