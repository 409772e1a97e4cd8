"""Logging in and out, and the gate every other dashboard route stands behind.

    GET  /login                  the form (the gateway API key)
    POST /login                  key, csrf (the form's cookie), next
    GET  /login/{token}          a one-time login link
    POST /logout                 ends the session
    POST /control/dashboard/login-link   (bearer key) a new one-time link, for `al dashboard`

`Gate.session` is the dependency of the dashboard's pages, streams and actions: no session
means the login page (a 401 for live streams and htmx requests); a POST also needs the
session's CSRF token and to come from this site (`auth.from_here`).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from action_llama.dashboard.auth import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    LINK_TTL,
    LOGIN_COOKIE,
    MAX_AGE,
    Session,
    from_here,
    safe_next,
    session_topic,
)
from action_llama.gateway.control import operator_auth
from action_llama.gateway.http import Problem, ok, read_body

if TYPE_CHECKING:
    from action_llama.dashboard.site import Dashboard
    from action_llama.gateway.app import GatewayDeps

#: The largest form a dashboard POST may send (a run's prompt is the big one).
MAX_FORM_BYTES = 256 * 1024
MAX_FIELDS = 20
FORM_TYPE = "application/x-www-form-urlencoded"
LOGIN_PATH = "/login"


async def read_form(request: Request) -> dict[str, str]:
    """The request's url-encoded form (what every dashboard form sends), read once and at
    most `MAX_FORM_BYTES`; a field given twice keeps its last value."""
    cached: dict[str, str] | None = getattr(request.state, "form", None)
    if cached is not None:
        return cached
    form: dict[str, str] = {}
    if request.headers.get("content-type", "").startswith(FORM_TYPE):
        try:
            body = await read_body(request, MAX_FORM_BYTES)
        except Problem as exc:
            raise Forbidden(f"The form is larger than {MAX_FORM_BYTES // 1024} KiB.") from exc
        text = body.decode("utf-8", errors="replace")
        form = dict(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS))
    request.state.form = form
    return form


class LoginRequired(Exception):
    """No live session: the login page (or a 401 for a live stream or an htmx request)."""


class Forbidden(Exception):
    """A POST that did not come from this site's pages (CSRF token or Origin wrong)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


class Gate:
    """The session check every dashboard route but the login pages depends on."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def session(self, request: Request) -> Session:
        session = self.dashboard.sessions.find(request.cookies.get(COOKIE))
        if session is None:
            raise LoginRequired
        if request.method == "POST":
            await self.check_post(request, session.csrf)
        request.state.session = session
        return session

    @staticmethod
    async def check_post(request: Request, token: str | None) -> None:
        """Refuse a POST sent from another site, or without `token` (Forbidden)."""
        if not from_here(request):
            raise Forbidden("This request did not come from the dashboard's own pages.")
        given = request.headers.get(CSRF_HEADER) or (await read_form(request)).get(CSRF_FIELD)
        if not token or given is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise Forbidden("The form has expired: reload the page and try again.")


def login_redirect(request: Request) -> Response:
    """Where a request without a session goes."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = LOGIN_PATH if request.method != "GET" else f"{LOGIN_PATH}?next={quote(target)}"
    if request.url.path.startswith("/live/"):
        return Response("log in first", 401, media_type="text/plain")
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": location})
    return RedirectResponse(location, 303)


class LoginRoutes:
    def __init__(self, dashboard: Dashboard, deps: GatewayDeps) -> None:
        self.dashboard = dashboard
        self.deps = deps
        self.gate = Gate(dashboard)

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route(LOGIN_PATH, self.form, methods=["GET"])
        router.add_api_route(LOGIN_PATH, self.login, methods=["POST"])
        router.add_api_route(LOGIN_PATH + "/{token}", self.link, methods=["GET"])
        router.add_api_route("/logout", self.logout, methods=["POST"])
        router.add_api_route(
            "/control/dashboard/login-link",
            self.new_link,
            methods=["POST"],
            dependencies=[Depends(operator_auth(self.deps))],
        )
        return router

    async def _form(
        self, request: Request, error: str | None = None, status: int = 200
    ) -> Response:
        token = secrets.token_urlsafe(24)
        html = await self.dashboard.templates.page(
            "login.html",
            login_token=token,
            next=safe_next(request.query_params.get("next")),
            error=error,
        )
        response = HTMLResponse(html, status)
        _cookie(response, request, LOGIN_COOKIE, token, 3600)
        return response

    async def form(self, request: Request) -> Response:
        if self.dashboard.sessions.find(request.cookies.get(COOKIE)) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), 303)
        return await self._form(request)

    def _logged_in(self, request: Request, response: Response) -> Response:
        cookie, _ = self.dashboard.sessions.begin()
        _cookie(response, request, COOKIE, cookie, int(MAX_AGE))
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    async def login(self, request: Request) -> Response:
        await Gate.check_post(request, request.cookies.get(LOGIN_COOKIE))
        form = await read_form(request)
        given, target = form.get("key"), form.get("next")
        # Read from the credential store (a file) on each login, so a rotated key counts.
        key = await asyncio.to_thread(self.deps.settings().operator_key)
        if key is None:
            error = "No gateway API key has been made yet: run al doctor --fix, then log in."
            return await self._form(request, error, 401)
        if given is None or not hmac.compare_digest(given.strip().encode(), key.encode()):
            return await self._form(request, "That is not the gateway API key.", 401)
        next_page = safe_next(target)
        return self._logged_in(request, RedirectResponse(next_page, 303))

    async def link(self, token: str, request: Request) -> Response:
        if not self.dashboard.links.redeem(token):
            error = (
                "This login link has expired or was used already. Run al dashboard for a new "
                "one, or log in with the gateway API key."
            )
            return await self._form(request, error, 401)
        # A page, not a redirect: a SameSite=Strict cookie is not sent on a redirect that
        # began on another site (a link clicked in a chat), but is on this page's refresh.
        html = await self.dashboard.templates.page("continue.html", target="/")
        response = HTMLResponse(html, headers={"Referrer-Policy": "no-referrer"})
        return self._logged_in(request, response)

    async def logout(self, request: Request) -> Response:
        session = await self.gate.session(request)
        self.dashboard.sessions.end(session)
        # Its open live streams end now.
        self.dashboard.changes.touch(session_topic(session))
        response = RedirectResponse(LOGIN_PATH, 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def new_link(self) -> JSONResponse:
        token = self.dashboard.links.issue()
        return ok(path=f"{LOGIN_PATH}/{token}", expiresIn=LINK_TTL)
