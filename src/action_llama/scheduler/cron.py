"""Fire each agent's `schedule` (5 fields, or 6 with seconds first) in the host's time zone."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from croniter import croniter

from action_llama.errors import ActionLlamaError
from action_llama.runs.trigger import Trigger
from action_llama.scheduler.core import Dispatched, Queued, Scheduler

log = logging.getLogger("action_llama.scheduler.cron")


def next_fire(expr: str, after: datetime) -> datetime | None:
    """The first time strictly after `after` that `expr` fires; None when it never does again
    (the loader refuses schedules that never fire, but croniter only looks so many years on)."""
    try:
        it = croniter(expr, after, second_at_beginning=len(expr.split()) == 6)
        fire: datetime = it.get_next(datetime)
    except (ValueError, KeyError, IndexError, OverflowError) as exc:
        log.warning("schedule %r has no next fire time (%s): it stops firing", expr, exc)
        return None
    return fire


class CronLoop:
    """One task firing every scheduled, enabled agent; `reload` picks up a changed project."""

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler
        self.fired: list[tuple[str, datetime]] = []
        self.upcoming: dict[str, datetime] = {}
        #: The schedule each `upcoming` time was computed from.
        self.schedules: dict[str, str] = {}

    def reload(self) -> None:
        """Follow the scheduler's current project (at start, and on hot reload).

        An agent whose schedule is unchanged keeps its next fire time, so a reload at the
        moment it is due does not skip it; new or changed schedules count from now; agents
        gone, unscheduled or disabled (scale 0) stop firing.
        """
        now = datetime.now().astimezone()
        upcoming: dict[str, datetime] = {}
        schedules: dict[str, str] = {}
        for name, agent in self.scheduler.project.agents.items():
            expr = agent.config.schedule
            if not expr or agent.scale == 0:
                continue
            keep = self.schedules.get(name) == expr and name in self.upcoming
            fire = self.upcoming[name] if keep else next_fire(expr, now)
            if fire is not None:
                upcoming[name] = fire
                schedules[name] = expr
        self.upcoming, self.schedules = upcoming, schedules

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
            try:
                self._fire(name, when)
            except ActionLlamaError as exc:
                # One agent's failing trigger (a full disk under its queue, say) must not stop
                # every other agent's schedule: say why, and go on to its next fire time.
                log.warning("schedule of %s could not be fired: %s", name, exc.message)
            except Exception:
                log.exception("schedule of %s could not be fired", name)
            fire = next_fire(self.schedules[name], when)
            if fire is None:
                del self.upcoming[name]
            else:
                self.upcoming[name] = fire
            self.scheduler.changed()  # its next fire moved

    def _fire(self, name: str, when: datetime) -> None:
        self.fired.append((name, when))
        if self.scheduler.paused or name in self.scheduler.paused_agents:
            log.info("schedule of %s skipped: paused", name)
            return
        decision = self.scheduler.dispatch(name, Trigger(type="schedule"))
        if isinstance(decision, Dispatched):
            # The run's own start line says it; this is for debugging the loop only.
            log.debug("schedule of %s fired: run %s", name, decision.run_id)
        elif isinstance(decision, Queued):
            log.info("schedule of %s fired: queued (every runner is busy)", name)
        else:
            log.warning("schedule of %s refused: %s", name, decision.reason)
