"""Fixtures of the gateway tests: a real State (SQLite in tmp_path) with three registered runs,
a credential store holding the GitHub secret, a RecordingBackend, and a TestClient on the app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.gateway import GatewaySettings, create_app
from action_llama.gateway.testing import RecordingBackend
from action_llama.state import State

from gateway_support import AGENTS, RUNS, SECRET, make_settings


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    opened = State.open(tmp_path / ".al")
    for run_id, (agent, secret) in RUNS.items():
        opened.active_runs.add(run_id, agent, runtime="docker", secret=secret, trigger={})
    yield opened
    opened.close()


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    creds = CredentialStore(tmp_path / "credentials")
    creds.write(CredentialRef("github_webhook_secret"), {"secret": SECRET})
    return creds


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend(agents=set(AGENTS))


@pytest.fixture
def settings(store: CredentialStore) -> GatewaySettings:
    return make_settings(store)


@pytest.fixture
def client(state: State, backend: RecordingBackend, settings: GatewaySettings) -> TestClient:
    return TestClient(create_app(state, backend, settings))
