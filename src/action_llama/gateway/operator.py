"""What the operator sees of the daemon, as payloads (`action_llama.payloads`): built here once
for the operator API (`/control/*`) and for the dashboard, which renders the same ones.

Every method reads the project database (and the project's files), so it blocks: call it in a
worker thread, never on the event loop. What the scheduler holds in memory (its
`SchedulerPayload`) is asked of the backend on the loop first and passed in.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from action_llama import payloads

if TYPE_CHECKING:
    from action_llama.gateway.app import GatewayDeps
    from action_llama.payloads import (
        AgentPayload,
        DropPayload,
        HeldLockPayload,
        HistoryPayload,
        ReceiptPayload,
        RunDetailPayload,
        SchedulerPayload,
        StatusPayload,
    )
    from action_llama.webhooks.receipt import ReceiptStatus

#: Queue drops `/control/status` lists (newest first).
RECENT_DROPS = 10
#: Receipts an agent's payload carries.
AGENT_RECEIPTS = 10
#: The periods of an agent's figures: (hours, seconds per bucket of its `started`).
PERIODS = ((24.0, 3600.0), (7 * 24.0, 86400.0))


class OperatorView:
    def __init__(self, deps: GatewayDeps) -> None:
        self.deps = deps
        self.state = deps.state
        self.runs = deps.runs

    def held_locks(self) -> list[HeldLockPayload]:
        holders = {run.run_id: run.agent for run in self.state.active_runs.list()}
        return [payloads.held_lock(lock, holders) for lock in self.state.locks.list()]

    def drops(self, limit: int = RECENT_DROPS) -> list[DropPayload]:
        """Work full queues dropped, newest first."""
        return [payloads.drop(d) for d in self.state.queue.drops(limit=limit)]

    def status(self, scheduler: SchedulerPayload) -> StatusPayload:
        """`GET /control/status`: the scheduler's view with what the state adds."""
        last = self.runs.latest_of(scheduler["agents"])
        return {
            "scheduler": scheduler,
            "runs": [payloads.active_run(run) for run in self.state.active_runs.list()],
            "queues": self.state.queue.lengths(),
            "locks": self.held_locks(),
            "drops": self.drops(),
            "lastRuns": {agent: payloads.run(run) for agent, run in last.items()},
        }

    def receipts(
        self,
        limit: int,
        source: str | None = None,
        *,
        status: ReceiptStatus | None = None,
        agent: str | None = None,
    ) -> list[ReceiptPayload]:
        found = self.state.receipts.recent(limit, source, status=status, agent=agent)
        return [payloads.receipt(r) for r in found]

    def run(self, run_id: str) -> RunDetailPayload | None:
        record = self.runs.find(run_id)
        return None if record is None else payloads.run_detail(record)

    def history(
        self,
        agent: str,
        *,
        status: str | None = None,
        trigger: str | None = None,
        offset: int = 0,
        limit: int = 25,
    ) -> HistoryPayload:
        found, total = self.runs.history(
            agent, status=status, trigger=trigger, offset=offset, limit=limit
        )
        return {"runs": [payloads.run(r) for r in found], "total": total}

    def agent(self, name: str, scheduler: SchedulerPayload) -> AgentPayload | None:
        """`GET /control/agents/{agent}`; None when the project has no such agent and the
        history no run of it."""
        project = self.deps.settings().project
        agent = project.agents.get(name) if project is not None else None
        state = scheduler["agents"].get(name)
        now = time.time()
        figures = []
        for hours, width in PERIODS:
            since = now - hours * 3600
            stats = self.runs.stats(since, agent=name).get(name)
            started = self.runs.started_per(name, since, width)
            figures.append(payloads.figures(hours, since, stats, started, width))
        never = not figures[-1]["stats"]["runs"] and self.runs.latest(name) is None
        if agent is None and state is None and never:
            return None
        return {
            "name": name,
            "state": state,
            "queued": self.state.queue.len(name),
            "config": payloads.agent_config(agent, project) if agent and project else None,
            "figures": figures,
            "receipts": self.receipts(AGENT_RECEIPTS, agent=name),
        }
