"""The dashboard's pages (GET), each behind a session.

    /                       Agents: state, runs, queue, next fire, last result, triggers
    /agents/{name}          one agent: history (?status=&trigger=&page=), figures, configuration
    /runs/{id}              one run: its status and log (live while it runs)
    /runs/{id}/log.txt      the whole log as text, streamed from the file
    /activity               webhook receipts (?status=), queue drops, held locks
    /scheduler/stop         asks to confirm stopping the scheduler

Each page is rendered whole on the server; its live part is then kept current by the stream
of the same name under `/live/` (see `streams`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from fastapi.routing import APIRoute

from action_llama.dashboard import logs
from action_llama.dashboard.auth import Session
from action_llama.dashboard.login import Gate
from action_llama.dashboard.render import log_line
from action_llama.dashboard.site import PageError
from action_llama.dashboard.views import HistoryFilter, Views
from action_llama.errors import ActionLlamaError
from action_llama.gateway.http import status_for

if TYPE_CHECKING:
    from action_llama.dashboard.site import Dashboard
    from action_llama.gateway.app import GatewayDeps


class PageRoute(APIRoute):
    """A dashboard route: errors of `al` become HTML error pages, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ActionLlamaError as exc:
                raise PageError(status_for(exc), exc.message, exc.hint) from exc

        return route


def session_of(request: Request) -> Session:
    """The session `Gate.session` found for this request."""
    session: Session = request.state.session
    return session


class PageRoutes:
    def __init__(self, dashboard: Dashboard, deps: GatewayDeps) -> None:
        self.dashboard = dashboard
        self.views = Views(deps)
        self.gate = Gate(dashboard)

    def router(self) -> APIRouter:
        router = APIRouter(route_class=PageRoute, dependencies=[Depends(self.gate.session)])
        for path, endpoint in (
            ("/", self.agents),
            ("/agents/{name}", self.agent),
            ("/runs/{run_id}", self.run),
            ("/runs/{run_id}/log.txt", self.log_text),
            ("/activity", self.activity),
            ("/scheduler/stop", self.confirm_stop),
        ):
            router.add_api_route(path, endpoint, methods=["GET"])
        return router

    async def page(self, request: Request, template: str, **context: Any) -> HTMLResponse:
        """`template` rendered (in a worker thread) for this request's session."""
        session = session_of(request)
        html = await self.dashboard.templates.page(
            template, csrf=session.csrf, notes=session.take_notes(), **context
        )
        return HTMLResponse(html)

    async def agents(self, request: Request) -> HTMLResponse:
        version = self.dashboard.changes.version()
        data = await self.views.agents()
        return await self.page(request, "agents.html", nav="agents", version=version, **data)

    async def agent(
        self, name: str, request: Request, shown: HistoryFilter = Depends(HistoryFilter.of_query)
    ) -> HTMLResponse:
        version = self.dashboard.changes.version()
        data = await self.views.agent(name, shown)
        if data is None:
            raise PageError(404, f'The project has no agent "{name}".')
        return await self.page(request, "agent.html", nav="agents", version=version, **data)

    async def run(self, run_id: str, request: Request, all: bool = False) -> HTMLResponse:
        version = self.dashboard.changes.version()
        data = await self.views.run(run_id, whole=all)
        if data is None:
            raise PageError(404, f'No run "{run_id}" is recorded.')
        return await self.page(request, "run.html", nav="agents", version=version, **data)

    async def log_text(self, run_id: str) -> StreamingResponse:
        record = await asyncio.to_thread(self.views.operator.runs.find, run_id)
        if record is None:
            raise PageError(404, f'No run "{run_id}" is recorded.')
        path = record.log_path

        def lines() -> Iterator[str]:  # iterated in a worker thread by Starlette
            for piece in logs.pieces(path):
                yield "".join(log_line(record) + "\n" for record in piece.records)

        filename = f"{record.agent}-{run_id}.log"
        return StreamingResponse(
            lines(),
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": f'inline; filename="{filename}"'},
        )

    async def activity(self, request: Request, status: str | None = None) -> HTMLResponse:
        version = self.dashboard.changes.version()
        data = await self.views.activity(status)
        return await self.page(request, "activity.html", nav="activity", version=version, **data)

    async def confirm_stop(self, request: Request) -> HTMLResponse:
        return await self.page(request, "stop.html", nav="agents")
