"""The seam between the gateway and the scheduler: what the HTTP routes ask the daemon to do.

The gateway authenticates, validates and records (receipts, locks, calls live in `State`);
everything that starts, queues or stops runs is the backend's. The scheduler implements
`GatewayBackend`; `action_llama.gateway.testing.RecordingBackend` is an in-memory one for tests.

Errors a backend may raise, and what the caller gets (only the gateway maps them to HTTP):

    AgentNotFound        404   an agent name the project does not have
    RunNotFound          404   a run id that is not running
    DaemonUnavailable    503   starting up or shutting down: try again later
    any other error      500   logged; the caller is told "internal error"

A refusal that is part of normal operation (paused, disabled) is not an error: it is a
`Dispatch` with outcome "refused" and a reason the caller (an agent, or an operator) can read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from action_llama.payloads import SchedulerPayload
    from action_llama.state import Call
    from action_llama.webhooks import Receipt

#: The `/signals/<name>` a run may send (al-status, al-return, al-rerun).
SignalName = Literal["status", "return", "rerun"]
SIGNALS: tuple[SignalName, ...] = ("status", "return", "rerun")

DispatchOutcome = Literal["started", "queued", "refused"]


@dataclass(frozen=True)
class Dispatch:
    """What the scheduler did with one piece of work for one agent.

    `run_id` is set when a run was started; `reason` says why work was refused (for example
    "scheduler is paused", "agent is disabled (scale = 0)") or, optionally, why it was queued
    ("all 2 runners busy") or which queued item was dropped to make room.
    """

    agent: str
    outcome: DispatchOutcome
    run_id: str | None = None
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        """True when the work will run (now or from the queue)."""
        return self.outcome != "refused"


class GatewayBackend(Protocol):
    """The daemon as the gateway sees it. Every method is called from the event loop the
    gateway runs in, so it must not block: hand long work (stopping a container) to a task
    or a thread and return."""

    async def shutdown_run(self, run_id: str, reason: str) -> None:
        """The run's kill switch (`al-shutdown`): stop run `run_id` now.

        Must really stop it (container or host-user processes) within seconds, and record
        `reason` with the run. May return as soon as the stop is under way (the caller is the
        run itself, whose request dies with it). RunNotFound if it is not running.
        """
        ...

    async def dispatch_webhook(self, receipt: Receipt, agents: Sequence[str]) -> list[Dispatch]:
        """Start or queue one run per agent in `agents` for a verified delivery.

        `agents` are `receipt.matched_agents`; `receipt.context` is what each run is told.
        Returns one `Dispatch` per agent, in order. Raise DaemonUnavailable only when no
        work can be taken at all: the delivery's id is then forgotten so a retry is taken.
        """
        ...

    async def start_call(self, call: Call) -> Dispatch:
        """Start or queue a run of `call.target_agent` for a call already recorded pending.

        When the run starts, the scheduler must mark the call with `state.calls.start(
        call.call_id, run_id)` (that is what gives the callee its depth and chain) and later
        `complete` or `fail` it. A refused dispatch makes the gateway fail the call.
        """
        ...

    async def signal(self, run_id: str, name: SignalName, value: str | None) -> None:
        """A signal from a running run: `status` (value: the status text), `return` (value:
        the return value) or `rerun` (no value). The files the run writes stay authoritative;
        these let the daemon show them while the run goes on."""
        ...

    async def status(self) -> SchedulerPayload:
        """The scheduler's view for `al stat`: agents, their state, scale, running runs, next
        cron fire.

        The gateway adds active runs, queue lengths, locks, drops and last runs itself.
        """
        ...

    async def pause(self, agent: str | None) -> None:
        """Pause every trigger of one agent, or of the whole scheduler when `agent` is None.

        AgentNotFound for an unknown agent.
        """
        ...

    async def resume(self, agent: str | None) -> None:
        """Undo `pause` (and drain the queues that can now run). AgentNotFound as for pause."""
        ...

    async def kill(self, target: str) -> list[str]:
        """Stop one run (`target` is a run id) or every run of an agent (an agent name).

        Returns the ids of the runs being stopped (possibly none, for an idle agent).
        RunNotFound when `target` is neither a running run nor an agent.
        """
        ...

    async def trigger(self, agent: str, prompt: str | None) -> Dispatch:
        """A manual run of `agent` (`al run` through the daemon), with an optional prompt.

        AgentNotFound for an unknown agent.
        """
        ...

    async def stop(self) -> None:
        """Begin the daemon's graceful shutdown and return at once (the HTTP answer must still
        be sent before the gateway closes)."""
        ...
