"""`create_app`: the gateway's FastAPI application, bound to one project's state and backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from action_llama.gateway.backend import GatewayBackend
from action_llama.gateway.control import ControlRoutes
from action_llama.gateway.history import HistoryRoutes
from action_llama.gateway.http import install_error_handlers
from action_llama.gateway.runs import RunRoutes
from action_llama.gateway.settings import GatewaySettings
from action_llama.gateway.webhook import WebhookDesk, webhook_routes
from action_llama.runs.store import RunStore
from action_llama.state import State

if TYPE_CHECKING:
    from action_llama.dashboard.site import Dashboard


@dataclass(frozen=True)
class GatewayDeps:
    """What every route works with: the project's state and run history, the daemon, the
    current settings."""

    state: State
    backend: GatewayBackend
    settings: Callable[[], GatewaySettings]
    #: Over the state's database (nothing to close).
    runs: RunStore


def create_app(
    state: State,
    backend: GatewayBackend,
    settings: GatewaySettings | Callable[[], GatewaySettings],
    dashboard: Dashboard | None = None,
) -> FastAPI:
    """The gateway app for one project.

    Args:
        state: the project's open state (locks, calls, receipts and active runs live there).
        backend: the daemon's side: starts, queues and stops runs (see `GatewayBackend`).
        settings: the project facts the routes need, or a function returning the current
            ones (called once per request, so a hot reload takes effect at once).
        dashboard: the web dashboard served at `/` (its sessions, and the change feed the
            daemon fills); a fresh one when not given.

    The app does not choose where it listens: see `action_llama.gateway.bind` and
    `action_llama.gateway.server`.
    """
    current = settings if callable(settings) else (lambda: settings)
    runs = RunStore(state.db.path.parent, database=state.db)
    deps = GatewayDeps(state=state, backend=backend, settings=current, runs=runs)
    app = FastAPI(
        title="action-llama gateway",
        openapi_url=None,  # nothing here is for browsing; no schema to serve unauthenticated
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"ok": True, "status": "ok"})

    desk = WebhookDesk(deps)
    app.include_router(webhook_routes(desk))
    app.include_router(RunRoutes(deps).router())
    app.include_router(ControlRoutes(deps, desk).router())
    app.include_router(HistoryRoutes(deps).router())
    # Imported here: the dashboard's modules import the gateway's.
    from action_llama.dashboard.site import Dashboard, install

    install(app, deps, desk, dashboard or Dashboard())
    return app
