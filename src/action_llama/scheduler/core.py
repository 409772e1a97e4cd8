"""Dispatch: start a run now, queue it durably, or refuse it, and drain queues as runners free.

Every trigger (cron tick, webhook, manual run, agent call) is a `Trigger` handed to
`Scheduler.dispatch`. An agent runs at most its scale at once, and the project at most its
`scale` (the cap) across all agents; the rest waits in the project database's work queue
(oldest dropped when an agent's queue is full, the drop recorded). Whenever a run ends, queued
work starts, oldest first among the agents with a free runner. Work arriving while the
scheduler or the agent is paused waits in the queue too (a manual run of a paused scheduler is
refused, so its operator knows at once). Schedule and manual runs that exit 42 rerun, up to
`maxReruns`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from action_llama.errors import ActionLlamaError
from action_llama.project import Agent, Project
from action_llama.runs.service import RunOutcome, new_run_id
from action_llama.runs.trigger import Trigger
from action_llama.state import QueueDrop, State

log = logging.getLogger("action_llama.scheduler")

#: Runs one trigger of an agent to its end: (agent, trigger, run id, rerun number) -> outcome.
Launch = Callable[[Agent, Trigger, str, int], Awaitable[RunOutcome]]
#: Records, durably, that run `run id` has taken `trigger` (before it starts; in the same
#: transaction as the queue pop it comes from), so work a crash or a full disk interrupts
#: before the run began goes back to the queue instead of being lost. May raise StateError:
#: then nothing starts and the trigger stays where it was.
Claim = Callable[[Agent, Trigger, str], None]

RERUN_TYPES = ("schedule", "manual")


@dataclass(frozen=True)
class Dispatched:
    run_id: str


@dataclass(frozen=True)
class Queued:
    item_id: int
    dropped: list[QueueDrop] = field(default_factory=list)


@dataclass(frozen=True)
class Rejected:
    reason: str


Decision = Dispatched | Queued | Rejected


class Scheduler:
    """Owns the runners of one project; every method runs on the daemon's event loop."""

    def __init__(self, project: Project, state: State, launch: Launch, claim: Claim | None = None):
        self.project = project
        self.state = state
        self.launch = launch
        self.claim = claim
        self.paused = False
        self.paused_agents: set[str] = set()
        self.running: dict[str, dict[str, asyncio.Task[None]]] = {}
        self.stopping = False
        #: Called whenever what the scheduler holds in memory changes (runs start or end,
        #: pauses, a reload): how live views learn of it without asking.
        self.on_change: Callable[[], None] | None = None

    def changed(self) -> None:
        """Tell `on_change` that the state changed."""
        if self.on_change is not None:
            self.on_change()

    # -- what is going on -------------------------------------------------------------------

    def active(self, agent: str) -> int:
        return len(self.running.get(agent, {}))

    def total(self) -> int:
        """Runs going on across the project."""
        return sum(len(runs) for runs in self.running.values())

    def _has_room(self, agent: Agent) -> bool:
        """Whether `agent` may start a run now: its scale and the project's cap allow it."""
        cap = self.project.cap
        return (
            agent.name not in self.paused_agents
            and self.active(agent.name) < agent.scale
            and (cap is None or self.total() < cap)
        )

    def idle(self) -> bool:
        return not any(self.running.values())

    # -- dispatch ---------------------------------------------------------------------------

    def dispatch(self, agent_name: str, item: Trigger) -> Decision:
        """Run `item` now if `agent_name` has a free runner, else queue it; or say why not."""
        agent = self.project.agents.get(agent_name)
        if agent is None:
            return Rejected(f'agent "{agent_name}" not found')
        if self.stopping:
            return Rejected("the scheduler is stopping")
        if self.paused and item.type == "manual":
            # Whoever typed `al run` is told now, rather than finding it queued later.
            return Rejected("the scheduler is paused")
        if agent.scale == 0:
            reason = "the project's scale is 0" if self.project.cap == 0 else "scale = 0"
            return Rejected(f"agent {agent_name} is disabled ({reason})")
        if not self.paused and self._has_room(agent):
            return Dispatched(self._start(agent, item))
        # A pause is for maintenance: work arriving meanwhile (webhooks, calls) waits.
        return self._enqueue(agent, item)

    def _enqueue(self, agent: Agent, item: Trigger) -> Queued:
        # The queue records and logs each item it drops to make room.
        pushed = self.state.queue.push(agent.name, item, agent.queue_size)
        return Queued(pushed.item_id, pushed.dropped)

    def _start(self, agent: Agent, item: Trigger) -> str:
        """Claim `item` for a new run and start it; StateError (nothing started) when the
        claim cannot be written."""
        run_id = new_run_id()
        if self.claim is not None:
            self.claim(agent, item, run_id)
        self._supervised(agent, item, run_id)
        return run_id

    def _supervised(
        self, agent: Agent, item: Trigger, run_id: str, first: Launch | None = None
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._supervise(agent, item, run_id, first))
        self.running.setdefault(agent.name, {})[run_id] = task
        self.changed()

    def adopt(self, agent: Agent, item: Trigger, run_id: str, resume: Launch) -> None:
        """Count run `run_id`, which a previous scheduler started, as running for `agent`:
        `resume` follows it to its end. It holds a runner, can be killed, reruns as `item`
        would, and drains the queue when it ends."""
        self._supervised(agent, item, run_id, first=resume)

    async def _supervise(
        self, agent: Agent, item: Trigger, run_id: str, first: Launch | None = None
    ) -> None:
        reruns = 0
        failed = False
        try:
            while True:
                launch, first = first or self.launch, None
                try:
                    outcome = await launch(agent, item, run_id, reruns)
                except asyncio.CancelledError:
                    raise
                except ActionLlamaError as exc:
                    log.error("run %s of %s failed to start: %s", run_id, agent.name, exc.message)
                    failed = True
                    break
                except Exception as exc:
                    log.exception("run %s of %s failed to start: %s", run_id, agent.name, exc)
                    failed = True
                    break
                if not self._should_rerun(agent, item, outcome, reruns):
                    break
                reruns += 1
                old = run_id
                run_id = new_run_id()
                tasks = self.running.setdefault(agent.name, {})
                tasks[run_id] = tasks.pop(old)
        finally:
            self.running.get(agent.name, {}).pop(run_id, None)
            self.changed()
            # After a failed start the fault (a full disk, say) may last: the periodic sweep
            # drains then, rather than starting the next item into it at once.
            if not self.stopping and not failed:
                self.drain()

    def _should_rerun(self, agent: Agent, item: Trigger, outcome: RunOutcome, reruns: int) -> bool:
        if outcome.result.status != "rerun" or item.type not in RERUN_TYPES:
            return False
        if self.paused or agent.name in self.paused_agents or self.stopping:
            return False
        if reruns >= self.project.config.max_reruns:
            log.warning("%s hit the max reruns limit (%d)", agent.name, reruns)
            return False
        return True

    def drain(self) -> list[str]:
        """Start queued items while runners are free, the oldest item first among the agents
        with room (so under the project's cap no agent waits behind later work of others);
        the run ids started."""
        if self.paused or self.stopping:
            return []
        started: list[str] = []
        while True:
            ready = [a.name for a in self.project.agents.values() if self._has_room(a)]
            if not ready:
                return started
            run_id = new_run_id()
            try:
                # The pop and the run's claim on the trigger commit together, or not at all.
                with self.state.db.write():
                    queued = self.state.queue.pop_oldest(ready)
                    if queued is None:
                        return started
                    agent = self.project.agents[queued.agent]
                    if self.claim is not None:
                        self.claim(agent, queued.trigger, run_id)
            except ActionLlamaError as exc:
                log.warning("queued work waits: %s", exc.message)
                return started
            self._supervised(agent, queued.trigger, run_id)
            started.append(run_id)

    def replace_project(self, project: Project) -> None:
        """Run `project` from now on (hot reload): its agents and scales take effect for new
        work; running runs keep the definition they started with; pauses, kept by agent
        name, still apply."""
        self.project = project
        self.changed()

    # -- operator actions -------------------------------------------------------------------

    def pause(self, agent: str | None = None) -> None:
        if agent is None:
            self.paused = True
        else:
            self.paused_agents.add(agent)
        self.changed()

    def resume(self, agent: str | None = None) -> list[str]:
        if agent is None:
            self.paused = False
        else:
            self.paused_agents.discard(agent)
        self.changed()
        return self.drain()

    def kill(self, target: str) -> list[str]:
        """Stop one run (by id) or every run of an agent; the run ids stopped."""
        killed = []
        for agent, tasks in self.running.items():
            for run_id, task in list(tasks.items()):
                if target in (run_id, agent):
                    task.cancel()
                    killed.append(run_id)
        return killed

    async def shutdown(self, grace: float) -> None:
        """No new runs; wait up to `grace` seconds for running ones, then stop them."""
        self.stopping = True
        self.changed()
        tasks = [t for runs in self.running.values() for t in runs.values()]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=30)
