"""The live parts of the pages, as server-sent events (each behind the session).

    /live/agents            event `page`: the agents page's live part, whenever it changes
    /live/agents/{name}     the same for one agent's page (same query as the page)
    /live/activity          the same for the activity page
    /live/runs/{id}         event `line`: log lines (id: the log's byte offset after them),
                            `run`: its status whenever it changes

Every stream says `end` when it is over (the run ended, or the session did), so the browser
closes it instead of reconnecting.

A stream starts from what its page showed: `?v=` (the change version the page was rendered
at; later the Last-Event-ID) for pages, `?after=` (or the Last-Event-ID: a byte offset) for a
run's log, so a reconnecting browser gets exactly what it missed, no line lost or doubled.
An idle stream sleeps until the daemon reports a change (`live.Changes`), with a comment every
`KEEPALIVE_SECONDS`; it ends when its session ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from action_llama.dashboard import logs
from action_llama.dashboard.auth import Session, session_topic
from action_llama.dashboard.live import (
    KEEPALIVE,
    KEEPALIVE_SECONDS,
    SETTLE_SECONDS,
    STATE,
    event,
    run_topic,
    stream,
)
from action_llama.dashboard.login import Gate
from action_llama.dashboard.pages import PageRoute, session_of
from action_llama.dashboard.render import CSRF_SLOT
from action_llama.dashboard.views import HistoryFilter, Views

if TYPE_CHECKING:
    from action_llama.dashboard.site import Dashboard
    from action_llama.gateway.app import GatewayDeps

#: How often the log of a run this daemon does not follow (another process writes it) is
#: looked at: nothing tells when it grows.
UNFOLLOWED_SECONDS = 2.0
#: Log lines arriving within this many seconds go out as one event.
LINES_SETTLE_SECONDS = 0.1
GOING = ("running", "starting")


def _resume_point(request: Request, query: str) -> int | None:
    """Where a stream resumes: the Last-Event-ID a reconnecting browser sends, else `?query=`."""
    for value in (request.headers.get("last-event-id"), request.query_params.get(query)):
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


class StreamRoutes:
    def __init__(self, dashboard: Dashboard, deps: GatewayDeps) -> None:
        self.dashboard = dashboard
        self.changes = dashboard.changes
        self.views = Views(deps)
        self.backend = deps.backend
        self.gate = Gate(dashboard)

    def router(self) -> APIRouter:
        router = APIRouter(
            prefix="/live", route_class=PageRoute, dependencies=[Depends(self.gate.session)]
        )
        router.add_api_route("/agents", self.agents, methods=["GET"])
        router.add_api_route("/agents/{name}", self.agent, methods=["GET"])
        router.add_api_route("/activity", self.activity, methods=["GET"])
        router.add_api_route("/runs/{run_id}", self.run, methods=["GET"])
        return router

    # -- pages -----------------------------------------------------------------------------

    def _page(
        self,
        request: Request,
        key: str,
        template: str,
        gather: Callable[[], Awaitable[dict[str, Any] | None]],
    ) -> StreamingResponse:
        """Send `template` (from what `gather` returns) each time the state has changed."""
        session = session_of(request)
        seen = _resume_point(request, "v")

        async def render() -> str:
            context = await gather()
            if context is None:
                return ""
            return await self.dashboard.templates.page(template, csrf=CSRF_SLOT, **context)

        async def events() -> AsyncIterator[bytes]:
            with self.changes.watching(STATE, session_topic(session)) as watch:
                version_sent = -1 if seen is None else seen
                watch.seen = (version_sent, *watch.seen[1:])
                # Checked once watching: a logout from now on wakes this stream.
                while not session.ended:
                    if not await watch.moved(KEEPALIVE_SECONDS):
                        yield KEEPALIVE
                        continue
                    if session.ended or watch.version == version_sent:
                        continue
                    await asyncio.sleep(SETTLE_SECONDS)  # one update for a burst of changes
                    version_sent = self.changes.version()
                    html = await self.dashboard.renders.get(key, version_sent, render)
                    yield event(html.replace(CSRF_SLOT, session.csrf), "page", version_sent)
            # Said, so the browser closes the stream rather than seeing it fail (see app.js).
            yield event("", "end")

        return stream(events())

    async def agents(self, request: Request) -> StreamingResponse:
        return self._page(request, "agents", "_agents.html", self.views.agents)

    async def agent(
        self, name: str, request: Request, shown: HistoryFilter = Depends(HistoryFilter.of_query)
    ) -> StreamingResponse:
        key = f"agent:{name}:{shown.status}:{shown.trigger}:{shown.page}"
        return self._page(request, key, "_agent.html", lambda: self.views.agent(name, shown))

    async def activity(self, request: Request, status: str | None = None) -> StreamingResponse:
        return self._page(
            request, f"activity:{status}", "_activity.html", lambda: self.views.activity(status)
        )

    # -- a run -----------------------------------------------------------------------------

    async def run(self, run_id: str, request: Request) -> StreamingResponse:
        session = session_of(request)
        offset = _resume_point(request, "after") or 0
        return stream(self._run_events(run_id, session, offset))

    async def _run_events(self, run_id: str, session: Session, offset: int) -> AsyncIterator[bytes]:
        templates = self.dashboard.templates
        shown: dict[str, Any] | None = None
        topics = (STATE, run_topic(run_id), session_topic(session))
        with self.changes.watching(*topics) as watch:
            while True:
                if session.ended:
                    yield event("", "end")
                    return
                scheduler = await self.backend.status()
                found = await asyncio.to_thread(self.views.run_status, run_id, scheduler)
                if found is None:
                    yield event("", "end")
                    return
                path = found["log"]
                while path is not None:
                    piece = await asyncio.to_thread(logs.read_from, path, offset)
                    if piece.end == offset:
                        break
                    html = await templates.page("_lines.html", records=piece.records)
                    offset = piece.end
                    yield event(html, "line", offset)
                if found["run"] != shown:
                    shown = found["run"]
                    html = await templates.page("_run_status.html", csrf=session.csrf, **found)
                    yield event(html, "run")
                if shown is not None and shown["status"] not in GOING:
                    yield event("", "end")
                    return
                followed = any(run_id in a["running"] for a in scheduler.get("agents", {}).values())
                wait = KEEPALIVE_SECONDS if followed else UNFOLLOWED_SECONDS
                if not await watch.moved(wait):
                    if followed:
                        yield KEEPALIVE
                    continue
                await asyncio.sleep(LINES_SETTLE_SECONDS)
