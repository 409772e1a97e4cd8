"""What the dashboard can do (POST forms, each behind the session, its CSRF token and an Origin
check), through the same backend calls as the operator API:

    /agents/{name}/run          prompt?: start (or queue) a run; its page when it started
    /agents/{name}/pause|resume|kill
    /scheduler/pause|resume
    /scheduler/stop             confirm=yes (the page at GET /scheduler/stop asks)
    /runs/{id}/kill
    /runs/{id}/rerun            the same agent and prompt again
    /receipts/{id}/replay       route a stored webhook delivery again

Plain forms work without JavaScript: each answers with a redirect to the page to show next
(htmx requests get `HX-Location`), and what happened is a note on that page.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from action_llama.dashboard.auth import safe_next
from action_llama.dashboard.login import Gate, read_form
from action_llama.dashboard.pages import PageRoute, session_of
from action_llama.dashboard.views import Views
from action_llama.errors import ActionLlamaError
from action_llama.gateway.http import Problem

if TYPE_CHECKING:
    from action_llama.dashboard.auth import Session
    from action_llama.dashboard.site import Dashboard
    from action_llama.gateway.app import GatewayDeps
    from action_llama.gateway.backend import Dispatch
    from action_llama.gateway.webhook import WebhookDesk

MAX_PROMPT = 100_000


def go(request: Request, target: str) -> Response:
    """Show `target` next."""
    if request.headers.get("hx-request"):
        return Response(status_code=200, headers={"HX-Location": target})
    return RedirectResponse(target, 303)


def back(request: Request) -> str:
    """The page the form was on (this site's only)."""
    referer = urlsplit(request.headers.get("referer", ""))
    return safe_next(referer.path + (f"?{referer.query}" if referer.query else ""))


class ActionRoutes:
    def __init__(self, dashboard: Dashboard, deps: GatewayDeps, desk: WebhookDesk) -> None:
        self.dashboard = dashboard
        self.backend = deps.backend
        self.desk = desk
        self.views = Views(deps)
        self.gate = Gate(dashboard)

    def router(self) -> APIRouter:
        router = APIRouter(route_class=PageRoute, dependencies=[Depends(self.gate.session)])
        for path, endpoint in (
            ("/agents/{name}/run", self.run),
            ("/agents/{name}/pause", self.pause),
            ("/agents/{name}/resume", self.resume),
            ("/agents/{name}/kill", self.kill),
            ("/scheduler/pause", self.pause),
            ("/scheduler/resume", self.resume),
            ("/scheduler/stop", self.stop),
            ("/runs/{run_id}/kill", self.kill_run),
            ("/runs/{run_id}/rerun", self.rerun),
            ("/receipts/{receipt_id}/replay", self.replay),
        ):
            router.add_api_route(path, endpoint, methods=["POST"])
        return router

    def _done(self, request: Request, text: str, target: str | None = None) -> Response:
        session_of(request).note(text)
        return go(request, target or back(request))

    def _failed(self, request: Request, exc: ActionLlamaError | Problem) -> Response:
        message = exc.message if isinstance(exc, ActionLlamaError) else exc.error
        session_of(request).note(message, error=True)
        return go(request, back(request))

    def _started(self, request: Request, session: Session, dispatch: Dispatch) -> Response:
        if dispatch.outcome == "started" and dispatch.run_id:
            session.note(f"{dispatch.agent}: run {dispatch.run_id} started")
            return go(request, f"/runs/{dispatch.run_id}")
        if dispatch.outcome == "queued":
            why = f" ({dispatch.reason})" if dispatch.reason else ""
            session.note(f"{dispatch.agent}: queued, every runner is busy{why}")
        else:
            session.note(f"{dispatch.agent}: refused: {dispatch.reason}", error=True)
        return go(request, back(request))

    async def run(self, name: str, request: Request) -> Response:
        text = (await read_form(request)).get("prompt", "").strip()[:MAX_PROMPT]
        try:
            dispatch = await self.backend.trigger(name, text or None)
        except ActionLlamaError as exc:
            return self._failed(request, exc)
        return self._started(request, session_of(request), dispatch)

    async def pause(self, request: Request, name: str | None = None) -> Response:
        try:
            await self.backend.pause(name)
        except ActionLlamaError as exc:
            return self._failed(request, exc)
        return self._done(request, f"paused {name or 'the scheduler'}: no new runs")

    async def resume(self, request: Request, name: str | None = None) -> Response:
        try:
            await self.backend.resume(name)
        except ActionLlamaError as exc:
            return self._failed(request, exc)
        return self._done(request, f"resumed {name or 'the scheduler'}")

    async def _kill(self, request: Request, target: str) -> Response:
        try:
            killed = await self.backend.kill(target)
        except ActionLlamaError as exc:
            return self._failed(request, exc)
        if not killed:
            return self._done(request, f"nothing of {target} is running")
        return self._done(request, f"stopping {', '.join(killed)} (recorded as killed)")

    async def kill(self, name: str, request: Request) -> Response:
        return await self._kill(request, name)

    async def kill_run(self, run_id: str, request: Request) -> Response:
        return await self._kill(request, run_id)

    async def rerun(self, run_id: str, request: Request) -> Response:
        record = await asyncio.to_thread(self.views.operator.run, run_id)
        if record is None:
            session_of(request).note(f'No run "{run_id}" is recorded.', error=True)
            return go(request, "/")
        try:
            dispatch = await self.backend.trigger(record["agent"], record["prompt"])
        except ActionLlamaError as exc:
            return self._failed(request, exc)
        return self._started(request, session_of(request), dispatch)

    async def stop(self, request: Request) -> Response:
        if (await read_form(request)).get("confirm") != "yes":
            return go(request, "/scheduler/stop")
        await self.backend.stop()
        html = await self.dashboard.templates.page("stopped.html")
        return HTMLResponse(html)

    async def replay(self, receipt_id: str, request: Request) -> Response:
        try:
            settled = await self.desk.replayed(receipt_id)
        except (ActionLlamaError, Problem) as exc:
            return self._failed(request, exc)
        answer = settled.answer
        ran = [d["agent"] for d in answer.get("dispatched", []) if d["outcome"] != "refused"]
        what = f"dispatched to {', '.join(ran)}" if ran else answer.get("detail", "")
        return self._done(request, f"replayed {receipt_id} as {settled.receipt_id}: {what}")
