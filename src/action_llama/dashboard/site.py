"""The dashboard as a whole: its sessions, login links, change feed and templates, and
`install`, which adds its routes, static files and response headers to the gateway's app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from action_llama.dashboard.auth import COOKIE, LoginLinks, Sessions
from action_llama.dashboard.headers import SecurityHeaders
from action_llama.dashboard.live import Changes, Renders
from action_llama.dashboard.login import Forbidden, LoginRequired, LoginRoutes, login_redirect
from action_llama.dashboard.render import Templates

if TYPE_CHECKING:
    from action_llama.gateway.app import GatewayDeps
    from action_llama.gateway.webhook import WebhookDesk


class PageError(Exception):
    """A dashboard request that cannot be answered with its page: an HTML error page."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.hint = hint


class Dashboard:
    """What the dashboard keeps while the gateway runs (all of it in memory).

    `changes` is how the daemon tells open pages that something changed (see `live`).
    """

    def __init__(self, changes: Changes | None = None) -> None:
        self.sessions = Sessions()
        self.links = LoginLinks()
        self.changes = changes or Changes()
        self.renders = Renders()
        self.templates = Templates()

    def login_link(self, base_url: str) -> str:
        """A new one-time login link under `base_url` (`http://127.0.0.1:8080`)."""
        return f"{base_url.rstrip('/')}/login/{self.links.issue()}"

    async def error_page(self, request: Request, exc: PageError) -> Response:
        session = self.sessions.find(request.cookies.get(COOKIE))
        context: dict[str, Any] = {
            "status": exc.status,
            "heading": {404: "Not found", 403: "Refused", 409: "Not possible now"}.get(
                exc.status, "Something went wrong"
            ),
            "message": exc.message,
            "hint": exc.hint,
        }
        if session is not None:
            context["csrf"] = session.csrf
        return HTMLResponse(await self.templates.page("error.html", **context), exc.status)


def install(app: FastAPI, deps: GatewayDeps, desk: WebhookDesk, dashboard: Dashboard) -> None:
    """Serve `dashboard` from `app`: `/` and its pages, `/login`, `/static/`."""
    from action_llama.dashboard.actions import ActionRoutes
    from action_llama.dashboard.pages import PageRoutes
    from action_llama.dashboard.streams import StreamRoutes

    app.add_middleware(SecurityHeaders)
    app.mount(
        "/static",
        StaticFiles(packages=[("action_llama.dashboard", "static")]),
        name="static",
    )

    async def login_required(request: Request, exc: Exception) -> Response:
        return login_redirect(request)

    async def forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Forbidden)
        return await dashboard.error_page(request, PageError(403, exc.message))

    async def page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return await dashboard.error_page(request, exc)

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(PageError, page_error)
    app.include_router(LoginRoutes(dashboard, deps).router())
    app.include_router(PageRoutes(dashboard, deps).router())
    app.include_router(StreamRoutes(dashboard, deps).router())
    app.include_router(ActionRoutes(dashboard, deps, desk).router())
