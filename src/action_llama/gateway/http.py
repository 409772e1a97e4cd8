"""The HTTP edge shared by every route: capped bodies, JSON fields, and errors as statuses.

Every answer other than 200 is JSON `{"ok": false, "error": "<what is wrong>", ...}`. This
module is the only place `ActionLlamaError`s become HTTP statuses (see `status_for`).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import JsonValue
from starlette.exceptions import HTTPException

from action_llama.errors import (
    ActionLlamaError,
    AgentNotFound,
    AgentNotRunnable,
    ConfigError,
    CredentialMissing,
    DaemonUnavailable,
    RunNotFound,
    StateError,
)
from action_llama.webhooks import WebhookRejected

log = logging.getLogger("action_llama.gateway")

#: The largest JSON body a run or operator route reads (an agent call's context included).
MAX_JSON_BODY = 1024 * 1024

_STATUS: tuple[tuple[type[ActionLlamaError], int], ...] = (
    (AgentNotFound, 404),
    (RunNotFound, 404),
    (DaemonUnavailable, 503),
    (StateError, 503),
    # The request is fine; the project is not in a state to do it.
    (AgentNotRunnable, 409),
    (ConfigError, 409),
    (CredentialMissing, 409),
)
_WEBHOOK_STATUS = {"too_large": 413, "validation_failed": 401, "parse_error": 400}


class Problem(Exception):
    """A non-200 answer, raised to end a route early: `{"ok": false, "error": ..., **extra}`.

    Not in `al`'s error tree (`action_llama.errors`): it already is an HTTP answer; errors of
    the tree raised below the gateway become one through `status_for`."""

    def __init__(
        self, status: int, error: str, *, headers: dict[str, str] | None = None, **extra: JsonValue
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.headers = headers
        self.extra = extra

    def response(self) -> JSONResponse:
        body = {"ok": False, "error": self.error, **self.extra}
        return JSONResponse(body, self.status, headers=self.headers)


def ok(**fields: Any) -> JSONResponse:
    """A 200 answer `{"ok": true, **fields}` (what `fields` hold: `action_llama.payloads`)."""
    return JSONResponse({"ok": True, **fields})


def status_for(exc: ActionLlamaError) -> int:
    """The HTTP status of an error raised below the gateway (500 when nothing more fits)."""
    if isinstance(exc, WebhookRejected):
        return _WEBHOOK_STATUS.get(exc.reason, 400)
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as `{"ok": false, "error": ...}` JSON with its status."""

    async def problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return exc.response()

    async def action_llama_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ActionLlamaError)
        status = status_for(exc)
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
        body: dict[str, Any] = {"ok": False, "error": exc.message}
        if exc.hint:
            body["hint"] = exc.hint
        return JSONResponse(body, status)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"ok": False, "error": str(exc.detail)}, exc.status_code, exc.headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"ok": False, "error": f"{where}: {first.get('msg', 'invalid')}"}, 400)

    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s crashed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"ok": False, "error": "internal error"}, 500)

    app.add_exception_handler(Problem, problem)
    app.add_exception_handler(ActionLlamaError, action_llama_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, crash)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it is known to exceed `limit` bytes.

    A larger Content-Length is refused before anything is read; a body sent without one (or
    longer than announced) is read only up to the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise Problem(413, "payload too large", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, "payload too large", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """The JSON object in the body (an empty body is `{}`); 400 when it is not one."""
    raw = await read_body(request, limit)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, "invalid JSON body") from exc
    if not isinstance(data, dict):
        raise Problem(400, "the JSON body must be an object")
    return data


def text_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """The string `body[name]`; 400 when it is missing (if `required`) or not a string."""
    value = body.get(name)
    if value is None:
        if required:
            raise Problem(400, f"missing {name}")
        return None
    if not isinstance(value, str):
        raise Problem(400, f"{name} must be a string")
    if required and not value:
        raise Problem(400, f"missing {name}")
    return value


def seconds_field(body: dict[str, Any], name: str) -> float | None:
    """An optional positive, finite number of seconds; 400 otherwise."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Problem(400, f"{name} must be a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise Problem(400, f"{name} must be a positive number of seconds")
    return float(value)
