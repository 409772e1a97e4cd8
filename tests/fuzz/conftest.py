"""The fuzz suite never reaches a Docker engine: doctor's checks and the chain planner see
DOCKER_HOST at a socket that does not exist (a real engine would make each example slow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="module")
def _no_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    patch = pytest.MonkeyPatch()
    sock = tmp_path_factory.mktemp("nodocker") / "missing.sock"
    patch.setenv("DOCKER_HOST", f"unix://{sock}")
    patch.setenv("AL_CREDENTIALS_DIR", str(Path(tmp_path_factory.mktemp("creds"))))
    yield
    patch.undo()
