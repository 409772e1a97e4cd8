"""Helpers for the unit tests: load a project expecting an error, run `al` without Docker."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from action_llama.errors import ConfigError
from action_llama.project import load_project

from support import run_al


@pytest.fixture
def load_error() -> Callable[[Path], ConfigError]:
    """Load the project at a path and return the ConfigError it must raise."""

    def load(root: Path) -> ConfigError:
        with pytest.raises(ConfigError) as info:
            load_project(root)
        return info.value

    return load


@pytest.fixture
def missing_docker_host(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A DOCKER_HOST whose socket does not exist, so no test can reach a real engine."""
    sock = tmp_path_factory.mktemp("nodocker") / "missing.sock"
    assert not sock.exists()
    return f"unix://{sock}"


@pytest.fixture
def al(
    monkeypatch: pytest.MonkeyPatch, missing_docker_host: str
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`al ARGS` in a subprocess, with no --debug and with Docker out of reach."""
    monkeypatch.delenv("AL_DEBUG", raising=False)

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_al(*args, cwd=cwd, env={"DOCKER_HOST": missing_docker_host}, timeout=60)

    return run
