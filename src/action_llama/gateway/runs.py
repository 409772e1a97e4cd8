"""Routes the helper commands of a running run call, authenticated by the run's secret.

The secret (`SHUTDOWN_SECRET` in the run's environment) comes in the JSON body, or on GET in
the `X-AL-Secret` header (what the helpers send: a header never shows in a process list, and
curl reads it from stdin) or as `?secret=`. A missing or unknown secret is 403, which the
helpers turn into exit 3.
The answers and statuses are the ones `/app/bin` documents: 200 → exit 0, 409 → 1, 404 → 2,
403 → 3, 400 → 4, 503 → 5.

    POST /shutdown              {secret, reason?}             the kill switch
    POST /locks/acquire         {secret, resourceKey, ttl?}   409 conflict / deadlock, 400 bad key
    POST /locks/release         {secret, resourceKey}         404 not held, 409 held by another
    POST /locks/heartbeat       {secret, resourceKey, ttl?}   as release
    GET  /locks/list            X-AL-Secret                   the run's own locks
    POST /calls                 {secret, targetAgent, context}
    GET  /calls/{id}            X-AL-Secret                   the caller or the callee only
    POST /signals/{status|return|rerun}  {secret, text | value}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from action_llama import payloads
from action_llama.gateway.backend import SignalName
from action_llama.gateway.http import Problem, log, ok, read_json, seconds_field, text_field
from action_llama.payloads import iso
from action_llama.state import Acquired, Conflict, Deadlock, InvalidKey, Refused

if TYPE_CHECKING:
    from action_llama.gateway.app import GatewayDeps
    from action_llama.state import ActiveRun

DEFAULT_SHUTDOWN_REASON = "agent requested shutdown"
SECRET_HEADER = "x-al-secret"
_SIGNAL_FIELD: dict[str, tuple[SignalName, str | None]] = {
    "status": ("status", "text"),
    "return": ("return", "value"),
    "rerun": ("rerun", None),
}


def query_secret(request: Request) -> str | None:
    """A GET's secret: the X-AL-Secret header, else `?secret=`."""
    return request.headers.get(SECRET_HEADER) or request.query_params.get("secret")


class RunRoutes:
    """The routes of the in-run helper commands."""

    def __init__(self, deps: GatewayDeps) -> None:
        self.deps = deps
        self.state = deps.state

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/shutdown", self.shutdown, methods=["POST"])
        router.add_api_route("/locks/acquire", self.acquire, methods=["POST"])
        router.add_api_route("/locks/release", self.release, methods=["POST"])
        router.add_api_route("/locks/heartbeat", self.heartbeat, methods=["POST"])
        router.add_api_route("/locks/list", self.list_locks, methods=["GET"])
        router.add_api_route("/calls", self.call, methods=["POST"])
        router.add_api_route("/calls/{call_id}", self.get_call, methods=["GET"])
        router.add_api_route("/signals/{name}", self.signal, methods=["POST"])
        return router

    def authenticate(self, secret: object) -> ActiveRun:
        """The active run whose secret this is; 403 when there is none."""
        if not isinstance(secret, str) or not secret:
            raise Problem(403, "missing secret")
        run = self.state.active_runs.by_secret(secret)
        if run is None:
            raise Problem(403, "invalid secret")
        return run

    async def _run_body(self, request: Request) -> tuple[ActiveRun, dict[str, Any]]:
        body = await read_json(request)
        return self.authenticate(body.get("secret")), body

    def _who(self, run_id: str) -> str:
        run = self.state.active_runs.get(run_id)
        return f"run {run_id} (agent {run.agent})" if run else f"run {run_id}"

    def _not_held(self, key: str) -> Problem:
        holder = next((lock.holder for lock in self.state.locks.list() if lock.key == key), None)
        if holder is None:
            return Problem(404, f"lock not found: {key} is not held", reason="lock not found")
        return Problem(409, f"{key} is held by {self._who(holder)}", reason=f"held by {holder}")

    async def shutdown(self, request: Request) -> JSONResponse:
        run, body = await self._run_body(request)
        reason = text_field(body, "reason", required=False) or DEFAULT_SHUTDOWN_REASON
        log.warning("run %s (%s) asked to be shut down: %s", run.run_id, run.agent, reason[:200])
        await self.deps.backend.shutdown_run(run.run_id, reason)
        return ok(killed=True, runId=run.run_id)

    async def acquire(self, request: Request) -> JSONResponse:
        run, body = await self._run_body(request)
        key = text_field(body, "resourceKey") or ""
        ttl = seconds_field(body, "ttl") or self.deps.settings().lock_ttl
        result = self.state.locks.acquire(key, run.run_id, ttl)
        if isinstance(result, Acquired):
            return ok(**payloads.lock(result.lock))
        if isinstance(result, InvalidKey):
            raise Problem(400, result.reason)
        if isinstance(result, Conflict):
            holder = self.state.active_runs.get(result.holder)
            raise Problem(
                409,
                f"{key} is held by {self._who(result.holder)} until {iso(result.expires_at)}",
                reason="conflict",
                holder=result.holder,
                holderAgent=holder.agent if holder else None,
                expiresAt=iso(result.expires_at),
            )
        assert isinstance(result, Deadlock)
        path = " → ".join(f"{h} → {k}" for h, k in result.cycle) + f" → {result.cycle[0][0]}"
        raise Problem(
            409,
            f"possible deadlock: {path}; release your locks and try again later",
            reason="deadlock",
            deadlock=True,
            cycle=[{"holder": h, "resourceKey": k} for h, k in result.cycle],
        )

    async def release(self, request: Request) -> JSONResponse:
        run, body = await self._run_body(request)
        key = text_field(body, "resourceKey") or ""
        if self.state.locks.release(key, run.run_id):
            return ok(resourceKey=key)
        raise self._not_held(key)

    async def heartbeat(self, request: Request) -> JSONResponse:
        run, body = await self._run_body(request)
        key = text_field(body, "resourceKey") or ""
        ttl = seconds_field(body, "ttl") or self.deps.settings().lock_ttl
        if self.state.locks.heartbeat(key, run.run_id, ttl):
            mine = [lock for lock in self.state.locks.list(run.run_id) if lock.key == key]
            return ok(**payloads.lock(mine[0])) if mine else ok(resourceKey=key)
        raise self._not_held(key)

    async def list_locks(self, request: Request) -> JSONResponse:
        run = self.authenticate(query_secret(request))
        return ok(locks=[payloads.lock(lock) for lock in self.state.locks.list(run.run_id)])

    async def call(self, request: Request) -> JSONResponse:
        run, body = await self._run_body(request)
        target = text_field(body, "targetAgent") or ""
        context = text_field(body, "context", required=False) or ""
        settings = self.deps.settings()
        if target not in settings.agents:
            raise Problem(404, f'target agent "{target}" not found', reason="not found")
        if target in settings.disabled:
            reason = f'target agent "{target}" is disabled (scale = 0)'
            raise Problem(409, reason, reason=reason)
        calls = self.state.calls
        made = calls.create(run.run_id, run.agent, target, context, settings.max_call_depth)
        if isinstance(made, Refused):
            raise Problem(409, made.reason, reason=made.reason)
        try:
            dispatch = await self.deps.backend.start_call(made)
        except BaseException as exc:  # even a cancelled request must not leave it pending
            calls.fail(made.call_id, f"not dispatched: {exc}")
            raise
        if not dispatch.accepted:
            reason = dispatch.reason or "refused by the scheduler"
            calls.fail(made.call_id, reason)
            raise Problem(409, reason, reason=reason, callId=made.call_id)
        return ok(callId=made.call_id, depth=made.depth, **payloads.dispatch(dispatch))

    async def get_call(self, call_id: str, request: Request) -> JSONResponse:
        run = self.authenticate(query_secret(request))
        found = self.state.calls.get(call_id)
        # Another run's call is "not found" too: call ids are not for others to probe.
        if found is None or run.run_id not in (found.caller_run, found.target_run):
            raise Problem(404, "call not found")
        return ok(**payloads.call(found))

    async def signal(self, name: str, request: Request) -> JSONResponse:
        if name not in _SIGNAL_FIELD:
            raise Problem(404, f"unknown signal {name!r}: use status, return or rerun")
        run, body = await self._run_body(request)
        signal_name, field = _SIGNAL_FIELD[name]
        value = None
        if field is not None:
            value = text_field(body, field, required=signal_name == "status") or ""
        await self.deps.backend.signal(run.run_id, signal_name, value)
        return ok()
