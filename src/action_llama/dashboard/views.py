"""What each page shows: the operator API's own payloads (`gateway.operator.OperatorView`:
`/control/status`, `/control/agents/{agent}`, `/control/history/{agent}`, `/control/runs/{id}`,
the receipts), with the little the pages add (which agents are described how, a log's tail).

The scheduler's part is asked on the event loop (its state lives there); everything read from
the project database and the logs is read in a worker thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast, get_args

from action_llama.dashboard import logs
from action_llama.gateway.operator import OperatorView
from action_llama.runs.trigger import TriggerType
from action_llama.webhooks.receipt import ReceiptStatus

if TYPE_CHECKING:
    from pathlib import Path

    from action_llama.gateway.app import GatewayDeps
    from action_llama.payloads import SchedulerPayload

#: Runs per page of an agent's history.
PAGE_SIZE = 25
#: Log lines the run page starts with (the rest: the whole log as text, or live).
TAIL_LINES = 500
RECEIPTS_SHOWN = 50
DROPS_SHOWN = 20
STATUSES = ("running", "completed", "rerun", "failed", "error", "timeout", "oom", "killed")
TRIGGERS: tuple[str, ...] = get_args(TriggerType)
RECEIPT_STATUSES: tuple[str, ...] = get_args(ReceiptStatus)


@dataclass(frozen=True)
class HistoryFilter:
    """What an agent page's run history shows: one page, maybe one status and trigger only."""

    status: str | None = None
    trigger: str | None = None
    page: int = 1

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE

    @classmethod
    def of_query(
        cls, status: str | None = None, trigger: str | None = None, page: int = 1
    ) -> HistoryFilter:
        """From an agent page's query (`?status=&trigger=&page=`); values it does not know
        show everything (a FastAPI dependency)."""
        return cls(
            status=status if status in STATUSES else None,
            trigger=trigger if trigger in TRIGGERS else None,
            page=max(1, page),
        )


class Views:
    def __init__(self, deps: GatewayDeps) -> None:
        self.deps = deps
        self.backend = deps.backend
        self.operator = OperatorView(deps)

    async def _scheduler(self) -> SchedulerPayload:
        return await self.backend.status()

    # -- the agents page -------------------------------------------------------------------

    async def agents(self) -> dict[str, Any]:
        return await asyncio.to_thread(self._agents, await self._scheduler())

    def _agents(self, scheduler: SchedulerPayload) -> dict[str, Any]:
        status = self.operator.status(scheduler)
        project = self.deps.settings().project
        triggers = {}
        if project is not None:
            for name, agent in project.agents.items():
                triggers[name] = {
                    "description": agent.skill.frontmatter.description,
                    "schedule": agent.config.schedule,
                    "webhooks": list(dict.fromkeys(w.source for w in agent.config.webhooks)),
                }
        return {
            "status": status,
            "agents_info": triggers,
            "queued": sum(status["queues"].values()),
        }

    # -- one agent -------------------------------------------------------------------------

    async def agent(self, name: str, shown: HistoryFilter) -> dict[str, Any] | None:
        """None when the project has no such agent and it never ran."""
        return await asyncio.to_thread(self._agent, name, await self._scheduler(), shown)

    def _agent(
        self, name: str, scheduler: SchedulerPayload, shown: HistoryFilter
    ) -> dict[str, Any] | None:
        agent = self.operator.agent(name, scheduler)
        if agent is None:
            return None
        history = self.operator.history(
            name,
            status=shown.status,
            trigger=shown.trigger,
            offset=shown.offset,
            limit=PAGE_SIZE,
        )
        return {
            "agent": agent,
            "name": name,
            "scheduler": scheduler,
            "history": history,
            "shown": shown,
            "pages": max(1, -(-history["total"] // PAGE_SIZE)),
            "statuses": STATUSES,
            "triggers": TRIGGERS,
        }

    # -- one run ---------------------------------------------------------------------------

    async def run(self, run_id: str, *, whole: bool = False) -> dict[str, Any] | None:
        """None when no such run is recorded or going on. The page starts with the log's last
        `TAIL_LINES` lines, or with none when the `whole` log is to be streamed into it."""
        return await asyncio.to_thread(self._run, run_id, await self._scheduler(), whole)

    def run_status(self, run_id: str, scheduler: SchedulerPayload) -> dict[str, Any] | None:
        """The run (`/control/runs/{id}`) and where its log is; before it has a record, what
        the scheduler knows of it."""
        found = self.operator.run(run_id)
        if found is not None:
            log: Path = self.operator.runs.log_path(found["agent"], run_id)
            return {"run": found, "log": log}
        for name, agent in scheduler["agents"].items():
            if run_id in agent["running"]:
                return {"run": {"runId": run_id, "agent": name, "status": "starting"}, "log": None}
        return None

    def _run(self, run_id: str, scheduler: SchedulerPayload, whole: bool) -> dict[str, Any] | None:
        found = self.run_status(run_id, scheduler)
        if found is None:
            return None
        path = found["log"]
        tail = logs.Piece([], 0, 0) if path is None or whole else logs.tail(path, TAIL_LINES)
        return {**found, "records": tail.records, "start": tail.start, "end": tail.end}

    # -- activity --------------------------------------------------------------------------

    async def activity(self, status: str | None) -> dict[str, Any]:
        return await asyncio.to_thread(self._activity, status)

    def _activity(self, status: str | None) -> dict[str, Any]:
        wanted = cast("ReceiptStatus", status) if status in RECEIPT_STATUSES else None
        return {
            "receipts": self.operator.receipts(RECEIPTS_SHOWN, status=wanted),
            "status": wanted,
            "statuses": RECEIPT_STATUSES,
            "drops": self.operator.drops(DROPS_SHOWN),
            "locks": self.operator.held_locks(),
        }
