"""Fixtures of the dashboard tests: a real project (loaded from files), its state and run
history in tmp_path, a scheduler-like backend, the gateway app with its dashboard, and a
browser-like TestClient (cookies kept, Origin sent) that can log in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from action_llama.credentials.store import CredentialStore
from action_llama.dashboard.site import Dashboard
from action_llama.gateway import GatewaySettings, create_app
from action_llama.project import load_project
from action_llama.runs.store import RunStore
from action_llama.state import State

from dashboard_support import KEY, PROJECT_FILES, Browser, SchedulerLike
from support import write_files


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    write_files(root, PROJECT_FILES)
    return root


@pytest.fixture
def state(project_root: Path) -> Iterator[State]:
    opened = State.open(project_root / ".al")
    yield opened
    opened.close()


@pytest.fixture
def store(state: State, project_root: Path) -> RunStore:
    return RunStore(project_root / ".al", database=state.db)


@pytest.fixture
def backend() -> SchedulerLike:
    return SchedulerLike(agents={"dev", "reviewer", "listener"})


@pytest.fixture
def dashboard() -> Dashboard:
    return Dashboard()


@pytest.fixture
def settings(project_root: Path, tmp_path: Path) -> GatewaySettings:
    project = load_project(project_root)
    store = CredentialStore(tmp_path / "credentials")
    return GatewaySettings.from_project(project, store, api_key=SecretStr(KEY))


@pytest.fixture
def browser(
    state: State, backend: SchedulerLike, settings: GatewaySettings, dashboard: Dashboard
) -> Browser:
    """Not logged in yet."""
    app = create_app(state, backend, settings, dashboard)
    return Browser(TestClient(app, base_url="http://127.0.0.1:8080"))


@pytest.fixture
def operator(browser: Browser) -> Browser:
    """Logged in with the API key."""
    browser.login()
    return browser
