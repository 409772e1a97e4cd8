"""Fakes for tests of code built on the runtime seam (ours and users').

`FakeRuntime` implements the `Runtime` protocol in memory and is held to the same contract
suite as the real runtimes (tests/contract): each run prints scripted lines as the in-run
entry's log records, takes a scripted time, and exits with a scripted code; the entry's own
timer, `stop`, the host-side timeout and adoption by another runtime object behave as they do
for containers. It starts nothing, so a scheduler's dispatch, queueing and rerun logic can be
tested in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from action_llama.runtimes.base import (
    EXIT_TIMEOUT,
    RunHandle,
    RunIdentity,
    RunResult,
    RunSpec,
    status_for,
)

if TYPE_CHECKING:
    from action_llama.doctor.result import Check
    from action_llama.project import Agent, Project

#: Exit code of a run ended by `stop` (SIGTERM, as the engine's stop sends).
EXIT_STOPPED = 143
#: How long past its timeout the host waits before it stops a run itself (the entry's own
#: timer ends it first when they agree), as the real runtimes do with a few seconds.
TIMEOUT_GRACE = 0.2


@dataclass(frozen=True)
class FakeRun:
    """What one fake run does: print `lines` (stdout) and `stderr`, take `seconds`, print
    `later`, exit with `exit_code`."""

    exit_code: int = 0
    seconds: float = 0.05
    lines: tuple[str, ...] = ()
    stderr: tuple[str, ...] = ()
    later: tuple[str, ...] = ()


def _record(msg: str, level: str = "info", **fields: Any) -> str:
    return json.dumps(
        {"_log": True, "level": level, "msg": msg, **fields, "ts": int(time.time() * 1000)}
    )


@dataclass
class _Live:
    spec: RunSpec
    plan: FakeRun
    output: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    result: RunResult | None = None
    driver: asyncio.Task[None] | None = None

    def say(self, line: str) -> None:
        self.output.append(line)
        self.changed.set()

    def end(self, result: RunResult) -> None:
        if self.result is None:
            self.result = result
            self.say(_record("run completed", exitCode=result.exit_code))
            self.done.set()


class FakeRuntime:
    """A Runtime whose runs are scripted by `behaviour(spec)`; records every spec started.

    `sibling()` is another runtime object on the same fake engine, as a restarted scheduler
    would make: it finds (`adopt`) the runs this one started.
    """

    name = "fake"
    needs_image: ClassVar[bool] = False
    brokers: ClassVar[bool] = True

    def __init__(
        self,
        behaviour: Callable[[RunSpec], FakeRun] | None = None,
        *,
        _runs: dict[str, _Live] | None = None,
    ):
        self.behaviour = behaviour or (lambda spec: FakeRun())
        self.started: list[RunSpec] = []
        #: Runs not yet removed (running or ended), by run id; shared with siblings.
        self.running: dict[str, _Live] = {} if _runs is None else _runs
        self.max_concurrent: dict[str, int] = {}
        self._stopped: set[str] = set()

    def sibling(self) -> FakeRuntime:
        return FakeRuntime(self.behaviour, _runs=self.running)

    # -- what callers ask about the agents it runs -------------------------------------------

    def identity(self, agent: Agent) -> RunIdentity:
        return RunIdentity(os.geteuid(), os.getegid())

    def publish(self, project: Project, images: Mapping[str, str]) -> dict[str, str]:
        return dict(images)

    def gateway_url(self, project: Project, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def describe(self, agent: Agent) -> str:
        return "fake runtime"

    def warnings(self, project: Project, agent: Agent) -> list[str]:
        return []

    def checks(self, project: Project, agents: Sequence[Agent], *, fix: bool) -> list[Check]:
        return []

    async def prepare(self, project: Project, agents: Sequence[Agent]) -> None:
        return None

    # -- runs ------------------------------------------------------------------------------

    def concurrent(self, agent: str) -> int:
        """Runs of `agent` that have not ended."""
        return sum(
            1
            for live in self.running.values()
            if live.spec.agent == agent and not live.done.is_set()
        )

    async def start(self, spec: RunSpec) -> RunHandle:
        self.started.append(spec)
        live = _Live(spec, self.behaviour(spec))
        self.running[spec.run_id] = live
        live.driver = asyncio.get_running_loop().create_task(self._drive(live))
        now = self.concurrent(spec.agent)
        self.max_concurrent[spec.agent] = max(self.max_concurrent.get(spec.agent, 0), now)
        return self._handle(live)

    def _handle(self, live: _Live) -> RunHandle:
        return RunHandle(
            run_id=live.spec.run_id,
            agent=live.spec.agent,
            runtime=self.name,
            ref=live.spec.run_id,
            name=f"fake-{live.spec.agent}-{live.spec.run_id}",
            project=str(live.spec.project),
        )

    async def _drive(self, live: _Live) -> None:
        """What the in-run entry does: announce, print, take its time (its own timer ends a
        run past `spec.timeout` with 124), print the rest, exit."""
        plan, timeout = live.plan, live.spec.timeout
        live.say(_record("run starting", agent=live.spec.agent))
        for line in plan.lines:
            live.say(_record(line, stream="stdout", source="script"))
        for line in plan.stderr:
            live.say(_record(line, stream="stderr", source="script"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(live.interrupt.wait(), min(plan.seconds, timeout))
        if live.done.is_set():
            return
        if plan.seconds > timeout:
            message = f"timeout reached after {timeout}s, stopping the run"
            live.say(_record(message, "error", timeout=timeout))
            live.end(RunResult(exit_code=EXIT_TIMEOUT, status="timeout", timed_out=True))
            return
        for line in plan.later:
            live.say(_record(line, stream="stdout", source="script"))
        live.end(RunResult(exit_code=plan.exit_code, status=status_for(plan.exit_code)))

    async def logs(self, handle: RunHandle) -> AsyncIterator[str]:
        live = self.running.get(handle.run_id)
        if live is None:
            return
        sent = 0
        while True:
            live.changed.clear()
            while sent < len(live.output):
                yield live.output[sent]
                sent += 1
            if live.done.is_set() and sent == len(live.output):
                return
            await live.changed.wait()

    async def wait(self, handle: RunHandle, timeout: float) -> RunResult:
        live = self.running[handle.run_id]
        try:
            await asyncio.wait_for(live.done.wait(), timeout + TIMEOUT_GRACE)
        except TimeoutError:
            live.interrupt.set()
            live.end(RunResult(exit_code=EXIT_TIMEOUT, status="timeout", timed_out=True))
        assert live.result is not None
        if handle.run_id in self._stopped and live.result.status != "timeout":
            return RunResult(exit_code=live.result.exit_code, status="killed")
        return live.result

    async def stop(self, handle: RunHandle, grace: float = 10) -> None:
        live = self.running.get(handle.run_id)
        if live is None:
            return
        self._stopped.add(handle.run_id)
        if not live.done.is_set():
            live.say(_record("stop requested, ending the run", "warn", signal="SIGTERM"))
            live.interrupt.set()
            live.end(RunResult(exit_code=EXIT_STOPPED, status="killed"))

    async def adopt(self, run_id: str) -> RunHandle | None:
        live = self.running.get(run_id)
        return None if live is None else self._handle(live)

    async def list_runs(self, project: Path | None = None) -> list[RunHandle]:
        return [
            self._handle(live)
            for live in self.running.values()
            if project is None or live.spec.project == project
        ]

    async def remove(self, handle: RunHandle) -> None:
        self._stopped.discard(handle.run_id)
        live = self.running.pop(handle.run_id, None)
        if live is not None and live.driver is not None:
            live.interrupt.set()
            live.driver.cancel()
            live.done.set()
            live.changed.set()

    async def close(self) -> None:
        """Nothing to release: runs stay on the fake engine, as containers outlive a client."""
