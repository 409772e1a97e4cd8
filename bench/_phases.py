"""One `al run AGENT -p DIR -q`, done in-process the way cli/run.py does it, timing each phase.

Run by launch_overhead.py as `python bench/_phases.py DIR AGENT`; prints one JSON object of
{phase: seconds}. The phases follow cli/run.py step by step; if that command changes, change
this too (the benchmark compares the total against the real `al run` to show drift).
"""

from __future__ import annotations

import time

ENTERED = time.monotonic()  # CLOCK_MONOTONIC is system-wide: the parent compares it to spawn time

import json  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402


def main(root: str, agent_name: str) -> dict[str, float]:
    phases: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = phases.get(name, 0.0) + now - mark
        mark = now

    import action_llama.cli.local  # noqa: F401  # what the console script imports first

    lap("import action_llama.cli.local")
    import asyncio
    from pathlib import Path

    from action_llama.cli.render import QuietEvents
    from action_llama.images import base
    from action_llama.images.build import ChainBuilder
    from action_llama.project import get_agent, load_project
    from action_llama.runs.service import RunService, check_runnable
    from action_llama.runs.store import RunStore
    from action_llama.runtimes.base import RunHandle, RunResult, RunSpec
    from action_llama.runtimes.docker import DockerRuntime

    project = load_project(Path(root))
    agent = get_agent(project, agent_name)
    check_runnable(agent)
    lap("load_project")

    digest = base.package_digest
    digest_time = 0.0

    def timed_digest() -> str:
        nonlocal digest_time
        started = time.perf_counter()
        try:
            return digest()
        finally:
            digest_time += time.perf_counter() - started

    base.package_digest = timed_digest  # wrapped to time it, not to change it
    chain = ChainBuilder(None, project, QuietEvents()).ensure([agent.name])
    lap("image chain ensure()")
    phases["  of which package_digest()"] = digest_time

    calls: dict[str, float] = {}

    class TimedRuntime(DockerRuntime):
        async def start(self, spec: RunSpec) -> RunHandle:
            started = time.perf_counter()
            try:
                return await super().start(spec)
            finally:
                calls["  runtime.start (workspace, create, start)"] = time.perf_counter() - started

        async def wait(self, handle: RunHandle, timeout: float) -> RunResult:
            started = time.perf_counter()
            try:
                return await super().wait(handle, timeout)
            finally:
                calls["  runtime.wait (container life + inspect)"] = time.perf_counter() - started

        async def remove(self, handle: RunHandle) -> None:
            started = time.perf_counter()
            try:
                await super().remove(handle)
            finally:
                calls["  runtime.remove"] = time.perf_counter() - started

    def show(record: dict[str, Any]) -> None:
        pass

    store = RunStore(project.state_dir)
    service = RunService(project, TimedRuntime(), store)
    lap("run store open")
    try:
        outcome = asyncio.run(service.run(agent, image=chain.image_for(agent.name), on_line=show))
    finally:
        store.close()
    lap("RunService.run")
    phases.update(calls)
    phases["  rest of RunService.run (staging, store, log drain)"] = phases["RunService.run"] - sum(
        calls.values()
    )
    if outcome.result.exit_code != 0:
        raise SystemExit(f"run failed: {outcome}")
    return phases


if __name__ == "__main__":
    result = main(sys.argv[1], sys.argv[2])
    result["entered (monotonic)"] = ENTERED
    result["left (monotonic)"] = time.monotonic()
    json.dump(result, sys.stdout)
