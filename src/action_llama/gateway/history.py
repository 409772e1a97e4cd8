"""Operator routes over the run history, behind the same bearer key as `/control/*`.

    GET /control/logs/{agent}?run=&lines=   the last `lines` records of the agent's latest run
                                            (or of run `run`), with the run itself
    GET /control/stats?hours=               per agent over the last `hours`: runs by status,
                                            mean, median and p90 duration, tokens and cost
    GET /control/runs/{id}                  one run of the history (going or ended)
    GET /control/history/{agent}?status=&trigger=&offset=&limit=
                                            a page of an agent's runs, most recent first

They read the history the runs write (`action_llama.runs.store`), so they answer for runs of
`al run --local` and of earlier daemons too.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from action_llama import payloads
from action_llama.errors import RunNotFound
from action_llama.gateway.control import operator_auth
from action_llama.gateway.http import Problem, ok
from action_llama.gateway.operator import OperatorView
from action_llama.runs.store import read_log

if TYPE_CHECKING:
    from action_llama.gateway.app import GatewayDeps
    from action_llama.payloads import LogsPayload, StatsPayload

MAX_LINES = 5000
MAX_PAGE = 500
MAX_HOURS = 24 * 366


class HistoryRoutes:
    """The history routes. The run store's SQLite and log-file reads block, so they run in a
    worker thread, never on the event loop the gateway and the scheduler share."""

    def __init__(self, deps: GatewayDeps) -> None:
        self.deps = deps
        self.store = deps.runs
        self.view = OperatorView(deps)

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/control", dependencies=[Depends(operator_auth(self.deps))])
        router.add_api_route("/logs/{agent}", self.logs, methods=["GET"])
        router.add_api_route("/stats", self.stats, methods=["GET"])
        router.add_api_route("/runs/{run_id}", self.run, methods=["GET"])
        router.add_api_route("/history/{agent}", self.history, methods=["GET"])
        return router

    async def run(self, run_id: str) -> JSONResponse:
        found = await asyncio.to_thread(self.view.run, run_id)
        if found is None:
            raise RunNotFound(f'No run with id "{run_id}".')
        return ok(**found)

    async def history(
        self,
        agent: str,
        status: str | None = None,
        trigger: str | None = None,
        offset: int = 0,
        limit: int = 25,
    ) -> JSONResponse:
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise Problem(400, f"limit must be between 1 and {MAX_PAGE}, offset at least 0")
        page = await asyncio.to_thread(
            self.view.history, agent, status=status, trigger=trigger, offset=offset, limit=limit
        )
        return ok(**page)

    async def logs(self, agent: str, run: str | None = None, lines: int = 100) -> JSONResponse:
        if not 1 <= lines <= MAX_LINES:
            raise Problem(400, f"lines must be between 1 and {MAX_LINES}")
        return ok(**await asyncio.to_thread(self._logs, agent, run, lines))

    def _logs(self, agent: str, run: str | None, lines: int) -> LogsPayload:
        if run is None:
            record = self.store.latest(agent)
            if record is None:
                raise Problem(404, f"no runs of {agent} are recorded")
        else:
            record = self.store.get(run)  # RunNotFound → 404
            if record.agent != agent:
                raise RunNotFound(f'Run "{run}" is not a run of {agent}.')
        tail = list(deque(read_log(record.log_path), maxlen=lines))
        return {"run": payloads.run(record), "records": tail}

    async def stats(self, hours: float = 24) -> JSONResponse:
        if not 0 < hours <= MAX_HOURS:
            raise Problem(400, f"hours must be more than 0 and at most {MAX_HOURS}")
        return ok(**await asyncio.to_thread(self._stats, hours))

    def _stats(self, hours: float) -> StatsPayload:
        since = time.time() - hours * 3600
        agents = self.store.stats(since)
        return {
            "since": payloads.iso(since),
            "hours": hours,
            "agents": {name: payloads.agent_stats(entry) for name, entry in agents.items()},
        }
