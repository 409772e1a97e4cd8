"""`RecordingBackend`: an in-memory `GatewayBackend` for tests of the gateway and its clients.

It records every call in order (`calls`, as `(method, args)` tuples) and answers as told:
agents it knows (`agents`; None: any name), runs it knows (`runs`), work it refuses
(`refuse`: agent → reason), whether work starts or queues (`outcome`), and an optional
`on_shutdown` hook for a test that must really stop something.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from action_llama.errors import AgentNotFound, RunNotFound
from action_llama.gateway.backend import Dispatch, SignalName

if TYPE_CHECKING:
    from action_llama.payloads import AgentStatePayload, SchedulerPayload
    from action_llama.state import Call
    from action_llama.webhooks import Receipt


@dataclass
class RecordingBackend:
    """A `GatewayBackend` that records what it is asked and changes nothing outside itself."""

    agents: set[str] | None = None
    runs: dict[str, str] = field(default_factory=dict)
    refuse: dict[str, str] = field(default_factory=dict)
    outcome: Literal["started", "queued"] = "started"
    #: The scheduler's agents, as `status` answers them.
    agent_states: dict[str, AgentStatePayload] = field(default_factory=dict)
    on_shutdown: Callable[[str, str], Awaitable[None]] | None = None
    calls: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)
    paused: set[str | None] = field(default_factory=set)
    stopped: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def named(self, method: str) -> list[tuple[object, ...]]:
        """The arguments of every call to `method`, in order."""
        return [args for name, args in self.calls if name == method]

    def _agent(self, name: str) -> None:
        if self.agents is not None and name not in self.agents:
            raise AgentNotFound(f'Agent "{name}" not found.')

    def _dispatch(self, agent: str) -> Dispatch:
        if None in self.paused:
            return Dispatch(agent, "refused", reason="scheduler is paused")
        if agent in self.refuse:
            return Dispatch(agent, "refused", reason=self.refuse[agent])
        if self.outcome == "queued":
            return Dispatch(agent, "queued")
        run_id = f"run-{next(self._ids)}"
        self.runs[run_id] = agent
        return Dispatch(agent, "started", run_id=run_id)

    async def shutdown_run(self, run_id: str, reason: str) -> None:
        self.calls.append(("shutdown_run", (run_id, reason)))
        if self.on_shutdown is not None:
            await self.on_shutdown(run_id, reason)

    async def dispatch_webhook(self, receipt: Receipt, agents: Sequence[str]) -> list[Dispatch]:
        self.calls.append(("dispatch_webhook", (receipt, tuple(agents))))
        return [self._dispatch(agent) for agent in agents]

    async def start_call(self, call: Call) -> Dispatch:
        self.calls.append(("start_call", (call,)))
        self._agent(call.target_agent)
        return self._dispatch(call.target_agent)

    async def signal(self, run_id: str, name: SignalName, value: str | None) -> None:
        self.calls.append(("signal", (run_id, name, value)))

    async def status(self) -> SchedulerPayload:
        self.calls.append(("status", ()))
        paused = None in self.paused
        return {"paused": paused, "stopping": self.stopped, "agents": self.agent_states}

    async def pause(self, agent: str | None) -> None:
        self.calls.append(("pause", (agent,)))
        if agent is not None:
            self._agent(agent)
        self.paused.add(agent)

    async def resume(self, agent: str | None) -> None:
        self.calls.append(("resume", (agent,)))
        if agent is not None:
            self._agent(agent)
        self.paused.discard(agent)

    async def kill(self, target: str) -> list[str]:
        self.calls.append(("kill", (target,)))
        if target in self.runs:
            del self.runs[target]
            return [target]
        if self.agents is not None and target in self.agents:
            killed = sorted(run for run, agent in self.runs.items() if agent == target)
            for run in killed:
                del self.runs[run]
            return killed
        raise RunNotFound(f"No run or agent named {target} is running.")

    async def trigger(self, agent: str, prompt: str | None) -> Dispatch:
        self.calls.append(("trigger", (agent, prompt)))
        self._agent(agent)
        return self._dispatch(agent)

    async def stop(self) -> None:
        self.calls.append(("stop", ()))
        self.stopped = True


if TYPE_CHECKING:
    from action_llama.gateway.backend import GatewayBackend

    # Never run: makes mypy check RecordingBackend against the protocol.
    _CONFORMS: GatewayBackend = RecordingBackend()
