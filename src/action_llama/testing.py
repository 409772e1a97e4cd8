"""Fakes for tests of code built on the runtime seam (ours and users').

`FakeRuntime` implements the `Runtime` protocol in memory: each run "takes" a scripted time,
prints scripted lines and exits with a scripted code. It starts nothing, so a scheduler's
dispatch, queueing and rerun logic can be tested in milliseconds; container behaviour itself
is tested against the real runtimes (tests/contract).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from action_llama.runtimes.base import (
    EXIT_TIMEOUT,
    RunHandle,
    RunResult,
    RunSpec,
    status_for,
)


@dataclass(frozen=True)
class FakeRun:
    """What one fake run does."""

    exit_code: int = 0
    seconds: float = 0.05
    lines: tuple[str, ...] = ()


@dataclass
class _Live:
    spec: RunSpec
    plan: FakeRun
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: bool = False


class FakeRuntime:
    """A Runtime whose runs are scripted by `behaviour(spec)`; records every spec started."""

    name = "fake"

    def __init__(self, behaviour: Callable[[RunSpec], FakeRun] | None = None):
        self.behaviour = behaviour or (lambda spec: FakeRun())
        self.started: list[RunSpec] = []
        self.running: dict[str, _Live] = {}
        self.max_concurrent: dict[str, int] = {}

    def concurrent(self, agent: str) -> int:
        return sum(1 for live in self.running.values() if live.spec.agent == agent)

    async def start(self, spec: RunSpec) -> RunHandle:
        self.started.append(spec)
        self.running[spec.run_id] = _Live(spec, self.behaviour(spec))
        now = self.concurrent(spec.agent)
        self.max_concurrent[spec.agent] = max(self.max_concurrent.get(spec.agent, 0), now)
        return RunHandle(
            run_id=spec.run_id,
            agent=spec.agent,
            runtime=self.name,
            ref=spec.run_id,
            project=str(spec.project),
        )

    async def logs(self, handle: RunHandle) -> AsyncIterator[str]:
        live = self.running.get(handle.ref)
        if live is None:
            return
        for line in live.plan.lines:
            yield json.dumps({"_log": True, "level": "info", "msg": line, "ts": 0})
        await live.done.wait()

    async def wait(self, handle: RunHandle, timeout: float) -> RunResult:
        live = self.running[handle.ref]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finish(live), min(live.plan.seconds, timeout) + 0.01)
        if live.stopped:
            return RunResult(exit_code=143, status="killed")
        if live.plan.seconds > timeout:
            return RunResult(exit_code=EXIT_TIMEOUT, status="timeout", timed_out=True)
        return RunResult(exit_code=live.plan.exit_code, status=status_for(live.plan.exit_code))

    async def _finish(self, live: _Live) -> None:
        try:
            await asyncio.wait_for(live.done.wait(), live.plan.seconds)
        except TimeoutError:
            live.done.set()

    async def stop(self, handle: RunHandle, grace: float = 10) -> None:
        live = self.running.get(handle.ref)
        if live is not None:
            live.stopped = True
            live.done.set()

    async def adopt(self, run_id: str) -> RunHandle | None:
        live = self.running.get(run_id)
        if live is None:
            return None
        return RunHandle(
            run_id=run_id,
            agent=live.spec.agent,
            runtime=self.name,
            ref=run_id,
            project=str(live.spec.project),
        )

    async def list_runs(self, project: Path | None = None) -> list[RunHandle]:
        return [
            RunHandle(run_id=r, agent=live.spec.agent, runtime=self.name, ref=r)
            for r, live in self.running.items()
            if project is None or live.spec.project == project
        ]

    async def remove(self, handle: RunHandle) -> None:
        live = self.running.pop(handle.ref, None)
        if live is not None:
            live.done.set()

    async def close(self) -> None:
        self.running.clear()
