"""The gateway's view of the scheduler: `GatewayBackend` implemented over `Scheduler`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from action_llama import payloads
from action_llama.errors import AgentNotFound, RunNotFound
from action_llama.gateway.backend import Dispatch, SignalName
from action_llama.runs.trigger import Trigger
from action_llama.scheduler.core import Decision, Dispatched, Queued, Scheduler

if TYPE_CHECKING:
    from action_llama.payloads import SchedulerPayload
    from action_llama.scheduler.cron import CronLoop
    from action_llama.state import Call
    from action_llama.webhooks import Receipt

log = logging.getLogger("action_llama.daemon")


def _dispatch(agent: str, decision: Decision) -> Dispatch:
    if isinstance(decision, Dispatched):
        return Dispatch(agent, "started", run_id=decision.run_id)
    if isinstance(decision, Queued):
        dropped = ", ".join(d.summary for d in decision.dropped)
        return Dispatch(
            agent, "queued", reason=f"dropped to make room: {dropped}" if dropped else None
        )
    return Dispatch(agent, "refused", reason=decision.reason)


class SchedulerBackend:
    """Routes gateway requests to the scheduler; `on_stop` begins the daemon's shutdown."""

    def __init__(self, scheduler: Scheduler, cron: CronLoop, on_stop: Callable[[], None]):
        self.scheduler = scheduler
        self.cron = cron
        self.on_stop = on_stop

    def _known(self, agent: str | None) -> None:
        if agent is not None and agent not in self.scheduler.project.agents:
            raise AgentNotFound(f'Agent "{agent}" not found.')

    async def shutdown_run(self, run_id: str, reason: str) -> None:
        log.warning("run %s asked to be shut down: %s", run_id, reason)
        if not self.scheduler.kill(run_id):
            raise RunNotFound(f'No running run "{run_id}".')

    async def dispatch_webhook(self, receipt: Receipt, agents: Sequence[str]) -> list[Dispatch]:
        context = receipt.context.to_dict() if receipt.context is not None else {}
        trigger = Trigger(type="webhook", context=context, summary=receipt.event_summary or "")
        return [_dispatch(agent, self.scheduler.dispatch(agent, trigger)) for agent in agents]

    async def start_call(self, call: Call) -> Dispatch:
        trigger = Trigger(
            type="agent-call",
            caller=call.caller_agent,
            context=call.context,
            depth=call.depth,
            call_id=call.call_id,
            summary=f"call from {call.caller_agent}",
        )
        return _dispatch(call.target_agent, self.scheduler.dispatch(call.target_agent, trigger))

    async def signal(self, run_id: str, name: SignalName, value: str | None) -> None:
        log.info("run %s: %s %s", run_id, name, (value or "")[:200])

    async def status(self) -> SchedulerPayload:
        scheduler = self.scheduler
        agents = {}
        for name, agent in sorted(scheduler.project.agents.items()):
            fire = self.cron.upcoming.get(name)
            state = (
                "paused"
                if scheduler.paused or name in scheduler.paused_agents
                else ("running" if scheduler.active(name) else "idle")
            )
            agents[name] = payloads.agent_state(
                state,
                agent.scale,
                scheduler.running.get(name, {}),
                fire.timestamp() if isinstance(fire, datetime) else None,
                paused=name in scheduler.paused_agents,
            )
        return {"paused": scheduler.paused, "stopping": scheduler.stopping, "agents": agents}

    async def pause(self, agent: str | None) -> None:
        self._known(agent)
        self.scheduler.pause(agent)

    async def resume(self, agent: str | None) -> None:
        self._known(agent)
        self.scheduler.resume(agent)

    async def kill(self, target: str) -> list[str]:
        if target not in self.scheduler.project.agents and not any(
            target in runs for runs in self.scheduler.running.values()
        ):
            raise RunNotFound(f'"{target}" is neither an agent nor a running run.')
        return self.scheduler.kill(target)

    async def trigger(self, agent: str, prompt: str | None) -> Dispatch:
        self._known(agent)
        return _dispatch(agent, self.scheduler.dispatch(agent, Trigger(prompt=prompt or None)))

    async def stop(self) -> None:
        asyncio.get_running_loop().call_soon(self.on_stop)
