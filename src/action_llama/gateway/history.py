"""Operator routes over the run history, behind the same bearer key as `/control/*`.

    GET /control/logs/{agent}?run=&lines=   the last `lines` records of the agent's latest run
                                            (or of run `run`), with the run itself
    GET /control/stats?hours=               per agent over the last `hours`: runs by status,
                                            mean duration, tokens and cost

Both read the history the runs write (`action_llama.runs.store`), so they answer for runs of
`al run --local` and of earlier daemons too.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from action_llama.errors import RunNotFound
from action_llama.gateway.control import operator_auth
from action_llama.gateway.http import Problem, iso
from action_llama.gateway.runs import ok
from action_llama.runs.store import RunRecord, RunStore, read_log

if TYPE_CHECKING:
    from action_llama.gateway.app import GatewayDeps

MAX_LINES = 5000
MAX_HOURS = 24 * 366


def history_json(run: RunRecord) -> dict[str, Any]:
    return {
        "runId": run.run_id,
        "agent": run.agent,
        "trigger": run.trigger,
        "status": run.status,
        "exitCode": run.exit_code,
        "error": run.error,
        "startedAt": iso(run.started_at),
        "finishedAt": iso(run.finished_at) if run.finished_at is not None else None,
        "duration": run.duration,
        "inputTokens": run.input_tokens,
        "outputTokens": run.output_tokens,
        "cost": run.cost,
        "preHooksSeconds": run.pre_hooks_seconds,
        "postHooksSeconds": run.post_hooks_seconds,
    }


class HistoryRoutes:
    def __init__(self, deps: GatewayDeps) -> None:
        self.deps = deps

    def _store(self) -> RunStore:
        # Shares the gateway's open database (in the state folder): nothing to close.
        db = self.deps.state.db
        return RunStore(db.path.parent, database=db)

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/control", dependencies=[Depends(operator_auth(self.deps))])
        router.add_api_route("/logs/{agent}", self.logs, methods=["GET"])
        router.add_api_route("/stats", self.stats, methods=["GET"])
        return router

    async def logs(self, agent: str, run: str | None = None, lines: int = 100) -> JSONResponse:
        if not 1 <= lines <= MAX_LINES:
            raise Problem(400, f"lines must be between 1 and {MAX_LINES}")
        store = self._store()
        if run is None:
            latest = store.runs(agent, limit=1)
            if not latest:
                raise Problem(404, f"no runs of {agent} are recorded")
            record = latest[0]
        else:
            record = store.get(run)  # RunNotFound → 404
            if record.agent != agent:
                raise RunNotFound(f'Run "{run}" is not a run of {agent}.')
        tail = deque(read_log(record.log_path), maxlen=lines)
        return ok(run=history_json(record), records=list(tail))

    async def stats(self, hours: float = 24) -> JSONResponse:
        if not 0 < hours <= MAX_HOURS:
            raise Problem(400, f"hours must be more than 0 and at most {MAX_HOURS}")
        since = time.time() - hours * 3600
        with self.deps.state.db.read() as conn:
            rows = conn.execute(
                "SELECT agent, status, count(*) AS n, count(finished_at) AS ended, "
                "sum(finished_at - started_at) AS took, "
                "sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)) AS tokens, "
                "sum(coalesce(cost, 0)) AS cost "
                "FROM runs WHERE started_at >= ? GROUP BY agent, status",
                (since,),
            ).fetchall()
        agents: dict[str, dict[str, Any]] = {}
        for row in rows:
            entry = agents.setdefault(
                row["agent"],
                {"runs": 0, "byStatus": {}, "tokens": 0, "cost": 0.0, "_took": 0.0, "_ended": 0},
            )
            entry["runs"] += row["n"]
            entry["byStatus"][row["status"]] = row["n"]
            entry["tokens"] += row["tokens"] or 0
            entry["cost"] += row["cost"] or 0.0
            entry["_took"] += row["took"] or 0.0
            entry["_ended"] += row["ended"]
        for entry in agents.values():
            took, ended = entry.pop("_took"), entry.pop("_ended")
            entry["meanDuration"] = took / ended if ended else None
        return ok(since=iso(since), hours=hours, agents=agents)
