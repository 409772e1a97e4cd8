"""The small engine client says "Docker is not running" as `engine.connect` does."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from action_llama import engine
from action_llama.engine_api import EngineAPI
from action_llama.errors import RuntimeUnavailable


def test_a_missing_socket_is_docker_not_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No engine at DOCKER_HOST: the same error, detail and hint as connecting with docker-py."""
    host = f"unix://{tmp_path}/none.sock"
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(RuntimeUnavailable) as raised:
        engine.api().inspect_image("al-agent:latest")
    assert raised.value.message == (
        f"Docker is not running (or cannot be reached). (DOCKER_HOST={host}: "
        "[Errno 2] No such file or directory)"
    )
    with pytest.raises(RuntimeUnavailable) as connected:
        engine.connect()
    assert connected.value.message == raised.value.message
    assert connected.value.hint == raised.value.hint


def test_a_socket_nobody_answers_on_is_docker_not_running(tmp_path: Path) -> None:
    """A socket file whose engine is gone (connection refused) is the same error."""
    path = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # bound, never listening: connecting is refused
        with pytest.raises(RuntimeUnavailable, match="Docker is not running"):
            EngineAPI(f"unix://{path}").ping()


def test_an_unsupported_docker_host_is_named() -> None:
    """A DOCKER_HOST scheme the client cannot speak is named in the error."""
    with pytest.raises(RuntimeUnavailable, match=r"DOCKER_HOST=ssh://box"):
        EngineAPI("ssh://box")
