"""Fire each agent's `schedule` (5 fields, or 6 with seconds first) in the host's time zone."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from croniter import croniter

from action_llama.scheduler.core import Dispatched, Queued, Scheduler
from action_llama.state import QueueItem

log = logging.getLogger("action_llama.scheduler.cron")


def next_fire(expr: str, after: datetime) -> datetime:
    """The first time strictly after `after` that `expr` fires."""
    it = croniter(expr, after, second_at_beginning=len(expr.split()) == 6)
    fire: datetime = it.get_next(datetime)
    return fire


class CronLoop:
    """One task firing every scheduled, enabled agent; `reload` picks up a changed project."""

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler
        self.fired: list[tuple[str, datetime]] = []
        self.upcoming: dict[str, datetime] = {}

    def reload(self) -> None:
        """Recompute every next fire time (the project or the scales changed)."""
        now = datetime.now().astimezone()
        self.upcoming = {
            name: next_fire(agent.config.schedule, now)
            for name, agent in self.scheduler.project.agents.items()
            if agent.config.schedule and self.scheduler.scales.get(name, 0) > 0
        }

    async def run(self) -> None:
        self.reload()
        while not self.scheduler.stopping:
            if not self.upcoming:
                await asyncio.sleep(1)
                continue
            name, when = min(self.upcoming.items(), key=lambda kv: kv[1])
            delay = (when - datetime.now().astimezone()).total_seconds()
            if delay > 0:
                # Short sleeps, so a reload or a stop is seen within a second.
                await asyncio.sleep(min(delay, 1.0))
                continue
            self._fire(name, when)
            schedule = self.scheduler.project.agents[name].config.schedule
            if schedule:
                self.upcoming[name] = next_fire(schedule, when)
            else:
                self.upcoming.pop(name, None)

    def _fire(self, name: str, when: datetime) -> None:
        self.fired.append((name, when))
        if self.scheduler.paused or name in self.scheduler.paused_agents:
            log.info("schedule of %s skipped: paused", name)
            return
        decision = self.scheduler.dispatch(name, QueueItem(type="schedule"))
        if isinstance(decision, Dispatched | Queued):
            log.info("schedule of %s fired: %s", name, decision)
        else:
            log.warning("schedule of %s refused: %s", name, decision.reason)
