"""The operator API under `/control/`: `Authorization: Bearer <gateway API key>` or 401.

The key is the `gateway_api_key` credential (made by `al doctor`), read on every request so it
can be rotated without a restart, and compared in constant time.

    GET  /control/status                    scheduler view + active runs, queues, locks,
                                            the latest queue drops, each agent's last run
    GET  /control/runs                      runs in progress
    GET  /control/locks                     every held lock, with its holder's agent
    GET  /control/calls                     agent calls pending or running
    POST /control/pause[/{agent}]           pause the scheduler, or one agent (404 unknown)
    POST /control/resume[/{agent}]
    POST /control/kill/{target}             a run id, or every run of an agent (404 neither)
    POST /control/trigger/{agent}           {prompt?}: started or queued; 409 refused
    POST /control/stop                      graceful shutdown of the daemon
    GET  /control/agents/{agent}            one agent: state, configuration, figures over
                                            24 h and 7 d, the receipts that matched it
    GET  /control/receipts?limit=&source=   webhook receipts, newest first
    GET  /control/receipts/{id}             one receipt, with its headers and body
    POST /control/receipts/{id}/replay      route a stored delivery again (no signature check)

The run history (`/control/logs/{agent}`, `/control/stats`) is served by `gateway/history.py`.
What each answer holds is `action_llama.payloads`.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from action_llama import payloads
from action_llama.gateway.http import Problem, log, ok, read_json, text_field
from action_llama.gateway.operator import OperatorView

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from action_llama.gateway.app import GatewayDeps
    from action_llama.gateway.webhook import WebhookDesk
    from action_llama.payloads import KilledPayload

MAX_RECEIPTS = 500
Routes = tuple[tuple[str, "Callable[..., Awaitable[JSONResponse]]"], ...]
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def operator_auth(deps: GatewayDeps) -> Callable[[Request], Awaitable[None]]:
    """The dependency that lets only the bearer of the gateway API key through."""

    async def check(request: Request) -> None:
        key = deps.settings().operator_key()
        if key is None:
            raise Problem(
                401,
                "Unauthorized",
                headers=_CHALLENGE,
                hint="No gateway API key has been made yet: run al doctor.",
            )
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, key.encode()):
            raise Problem(401, "Unauthorized", headers=_CHALLENGE)

    return check


class ControlRoutes:
    """The operator routes, all behind `operator_auth`."""

    def __init__(self, deps: GatewayDeps, desk: WebhookDesk) -> None:
        self.deps = deps
        self.desk = desk
        self.state = deps.state
        self.backend = deps.backend
        self.view = OperatorView(deps)

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/control", dependencies=[Depends(operator_auth(self.deps))])
        gets: Routes = (
            ("/status", self.status),
            ("/runs", self.runs),
            ("/locks", self.locks),
            ("/calls", self.calls),
            ("/agents/{agent}", self.agent),
            ("/receipts", self.receipts),
            ("/receipts/{receipt_id}", self.receipt),
        )
        posts: Routes = (
            ("/pause", self.pause),
            ("/pause/{agent}", self.pause),
            ("/resume", self.resume),
            ("/resume/{agent}", self.resume),
            ("/kill/{target}", self.kill),
            ("/trigger/{agent}", self.trigger),
            ("/stop", self.stop),
            ("/receipts/{receipt_id}/replay", self.replay),
        )
        for method, routes in (("GET", gets), ("POST", posts)):
            for path, endpoint in routes:
                router.add_api_route(path, endpoint, methods=[method])
        return router

    async def status(self) -> JSONResponse:
        scheduler = await self.backend.status()
        # The database reads: off the event loop.
        return ok(**await asyncio.to_thread(self.view.status, scheduler))

    async def agent(self, agent: str) -> JSONResponse:
        scheduler = await self.backend.status()
        found = await asyncio.to_thread(self.view.agent, agent, scheduler)
        if found is None:
            raise Problem(404, f'Agent "{agent}" not found.')
        return ok(**found)

    async def runs(self) -> JSONResponse:
        return ok(runs=[payloads.active_run(run) for run in self.state.active_runs.list()])

    async def locks(self) -> JSONResponse:
        return ok(locks=await asyncio.to_thread(self.view.held_locks))

    async def calls(self) -> JSONResponse:
        return ok(calls=[payloads.active_call(c) for c in self.state.calls.active()])

    async def pause(self, agent: str | None = None) -> JSONResponse:
        await self.backend.pause(agent)
        log.info("%s paused by the operator", agent or "scheduler")
        return ok(paused=agent or "scheduler")

    async def resume(self, agent: str | None = None) -> JSONResponse:
        await self.backend.resume(agent)
        log.info("%s resumed by the operator", agent or "scheduler")
        return ok(resumed=agent or "scheduler")

    async def kill(self, target: str) -> JSONResponse:
        killed: KilledPayload = {"killed": await self.backend.kill(target)}
        return ok(**killed)

    async def trigger(self, agent: str, request: Request) -> JSONResponse:
        prompt = text_field(await read_json(request), "prompt", required=False) or None
        dispatch = await self.backend.trigger(agent, prompt)
        if not dispatch.accepted:
            reason = dispatch.reason or "refused by the scheduler"
            raise Problem(409, reason, reason=reason)
        return ok(**payloads.dispatch(dispatch))

    async def stop(self) -> JSONResponse:
        log.info("daemon stop requested by the operator")
        await self.backend.stop()
        return ok(message="stopping")

    async def receipts(self, limit: int = 50, source: str | None = None) -> JSONResponse:
        if not 1 <= limit <= MAX_RECEIPTS:
            raise Problem(400, f"limit must be between 1 and {MAX_RECEIPTS}")
        return ok(receipts=await asyncio.to_thread(self.view.receipts, limit, source))

    async def receipt(self, receipt_id: str) -> JSONResponse:
        found = self.state.receipts.get(receipt_id)
        if found is None:
            raise Problem(404, f"receipt not found: {receipt_id}")
        return ok(receipt=payloads.receipt(found, full=True))

    async def replay(self, receipt_id: str) -> JSONResponse:
        return await self.desk.replay(receipt_id)
