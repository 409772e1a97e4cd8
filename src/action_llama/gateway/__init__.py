"""The daemon's HTTP gateway: health, webhooks, the in-run helper routes, the operator API.

    app.py       create_app(state, backend, settings) -> FastAPI
    backend.py   GatewayBackend: what the routes ask of the scheduler (a Protocol), Dispatch
    settings.py  GatewaySettings: the project facts the routes use; the operator API key
    http.py      capped bodies, JSON fields, and the one mapping of errors to HTTP statuses
    webhook.py   POST /webhooks/{source}: verify, receipt, dedupe, dispatch
    runs.py      /shutdown, /locks/*, /calls, /signals/*: authenticated by a run's secret
    control.py   /control/*: authenticated by the operator's bearer key
    bind.py      where to listen: loopback + the Docker bridge, or everywhere with --expose
    server.py    serving the app with uvicorn in the daemon's loop (imported on demand)
    testing.py   RecordingBackend, for tests

Routes, by who may call them:

    open          GET /health, POST /webhooks/{source} (GET for X's CRC check)
    a run         POST /shutdown, /locks/acquire|release|heartbeat, GET /locks/list,
                  POST /calls, GET /calls/{id}, POST /signals/{status|return|rerun}
    the operator  /control/* (see action_llama.gateway.control)

Every error answer is JSON `{"ok": false, "error": "..."}`.
"""

from __future__ import annotations

from action_llama.gateway.app import GatewayDeps, create_app
from action_llama.gateway.backend import Dispatch, DispatchOutcome, GatewayBackend, SignalName
from action_llama.gateway.settings import GatewaySettings, ensure_api_key

__all__ = [
    "Dispatch",
    "DispatchOutcome",
    "GatewayBackend",
    "GatewayDeps",
    "GatewaySettings",
    "SignalName",
    "create_app",
    "ensure_api_key",
]
