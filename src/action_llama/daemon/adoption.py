"""Runs a killed daemon left behind, taken back by the next one (restart safety).

A run stays in `state.active_runs` until its daemon has recorded its end, so the rows a killed
daemon (`kill -9`, a crash, a power cut of the daemon alone) left name runs that may well go
on without it: containers keep running, and so do host-user runs (their own session, their
output in a log file). At start each is found again through its runtime (`Runtime.adopt`:
the container by its label, the host-user process through its pid file) and followed to its
end like any run: the same record and log, continued after the last line stored; its timeout
counted from its real start; killable; holding one of its agent's runners. Its gateway secret
keeps working (only its hash was stored) as long as the gateway listens on the same port.

A run that cannot be followed is finished from what is known: gone (no container, no pid
file) it is recorded as an error; its agent removed from the project or moved to another
runtime, it is stopped first. Either way its locks are released and the call that started
it fails, so nothing waits on a holder that is gone. A run that never got as far as its
record (the daemon was killed, or the disk full, between taking the work and starting it)
gives its work back to its agent's queue: nothing is lost.

The same reconciliation runs every sweep for the rows no run of this daemon follows (a run
whose end or requeue could not be written while the disk was full).
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast, get_args

from action_llama.credentials.staging import remove_tree, run_pids, stages_of
from action_llama.daemon.runner import claimed_work, end_run, requeue, resumer
from action_llama.errors import ActionLlamaError
from action_llama.procs import signal_all
from action_llama.project import Agent
from action_llama.runs.service import LineCallback, RunService, complete_lines
from action_llama.runs.store import RunRecord, RunStore
from action_llama.runs.trigger import Trigger, TriggerType
from action_llama.runtimes.base import Runtime
from action_llama.runtimes.registry import get_runtime, runtime_name
from action_llama.scheduler.core import Launch, Scheduler
from action_llama.state import ActiveRun, State

log = logging.getLogger("action_llama.daemon")

NEVER_RAN = "its scheduler was stopped, or a fault"
GONE = (
    "the scheduler stopped while this run was active, and the run is gone "
    "(its container or process no longer exists)"
)


def previous_daemon(marker: Path) -> tuple[int | None, int | None]:
    """(pid, port) of the daemon that wrote `marker` (.al/daemon.json) and never removed it."""
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    pid, port = data.get("pid"), data.get("port")
    return (pid if isinstance(pid, int) else None), (port if isinstance(port, int) else None)


@dataclass
class Adoption:
    """Takes back the runs left in `state.active_runs` for `scheduler`."""

    state: State
    store: RunStore
    scheduler: Scheduler
    service_for: Callable[[Agent], RunService]
    #: Where an adopted run's log records go (as for launched runs), per (agent, run id).
    on_line: Callable[[Agent, str], LineCallback | None] | None = None
    #: Wraps each adopted run's `Launch` (the daemon's board notes how it ends).
    track: Callable[[Launch], Launch] | None = None
    #: Runtimes used only to stop runs no service follows; never closed, since a docker
    #: runtime's client is the process-wide one the services share.
    _runtimes: dict[str, Runtime] = field(default_factory=dict)

    async def adopt_all(self, port: int, marker: Path) -> list[str]:
        """Adopt, or finish and forget, every run left active; the ids of those adopted.

        `port` is where this daemon's gateway listens; `marker` is the daemon file the dead
        daemon left (its port tells whether adopted runs can still reach the gateway).
        """
        # No other scheduler can be following them: `serve` holds the project's lock.
        _pid, previous_port = previous_daemon(marker)
        adopted = []
        for left in self.state.active_runs.list():
            try:
                if await self._adopt(left):
                    adopted.append(left.run_id)
                    self._warn_port(left, previous_port, port)
            except ActionLlamaError as exc:
                await self._give_up(left, f"the run could not be re-adopted: {exc.message}")
            except Exception:
                # Not this run's fault to stop the daemon: its row stays for the next start,
                # and the lock sweep frees its locks meanwhile (it holds no runner).
                log.exception("run %s of %s could not be re-adopted", left.run_id, left.agent)
        await self.remove_ended()
        return adopted

    async def reconcile(self) -> None:
        """Adopt, finish, or requeue the rows no run of this scheduler follows."""
        followed = {run_id for runs in self.scheduler.running.values() for run_id in runs}
        for left in self.state.active_runs.list():
            if left.run_id in followed:
                continue
            try:
                await self._adopt(left)
            except Exception:
                log.exception("run %s of %s could not be reconciled", left.run_id, left.agent)
        await self.remove_ended()

    async def remove_ended(self) -> list[str]:
        """Remove what runtimes still hold of runs recorded as ended: a container whose
        removal failed as its run ended (the engine was restarting, say) would stay forever.
        Runs without a record, or recorded as running (`al run --local`), are not touched.
        The ids removed."""
        project = self.scheduler.project
        active = {left.run_id for left in self.state.active_runs.list()}
        removed = []
        for name in sorted({runtime_name(agent) for agent in project.agents.values()}):
            runtime = self._runtime(name)
            try:
                handles = await runtime.list_runs(project.root)
            except ActionLlamaError:
                continue  # its engine is down: the next sweep
            for handle in handles:
                record = self.store.find(handle.run_id)
                if handle.run_id in active or record is None or record.status == "running":
                    continue
                try:
                    await runtime.remove(handle)
                except ActionLlamaError as exc:
                    log.info("run %s: not removed yet (%s)", handle.run_id, exc.message)
                    continue
                log.warning(
                    "run %s of %s had ended but was left: removed", record.run_id, record.agent
                )
                removed.append(handle.run_id)
        return removed

    def _runtime(self, name: str) -> Runtime:
        if name not in self._runtimes:
            self._runtimes[name] = get_runtime(name)
        return self._runtimes[name]

    async def _adopt(self, left: ActiveRun) -> bool:
        record = self.store.find(left.run_id)
        if record is None and self._requeue(left):
            return False
        if record is None or record.status != "running":
            # Ended before its script began (the disk full, the engine restarting): its work
            # goes back to the queue; ended after: only its bookkeeping is left.
            if record is not None and not self._started(left) and self._requeue(left):
                await self._remove(left)
                return False
            await self._forget_ended(left, record)
            return False
        agent = self.scheduler.project.agents.get(left.agent)
        if agent is None:
            await self._give_up(left, f"agent {left.agent} is no longer in the project")
            return False
        if runtime_name(agent) != left.runtime:
            why = f"agent {agent.name} now runs on the {runtime_name(agent)} runtime"
            await self._give_up(left, why)
            return False
        service = self.service_for(agent)
        handle = await service.runtime.adopt(left.run_id)
        if handle is None:
            if not self._started(left) and self._requeue(left):
                return False
            await self._give_up(left, GONE)
            return False
        kind = left.trigger.get("type") if isinstance(left.trigger, dict) else None
        # What a rerun needs (reruns are for schedule and manual runs only): the trigger its
        # row holds, or (a row written before rows held it) one made up from its record.
        trigger = claimed_work(left.trigger) or Trigger(
            type=cast("TriggerType", kind) if kind in get_args(TriggerType) else "manual",
            prompt=record.prompt if kind == "manual" else None,
        )
        resume = resumer(self.state, self.store, service, handle, left.call_id, self.on_line)
        track = self.track(resume) if self.track else resume
        self.scheduler.adopt(agent, trigger, left.run_id, track)
        log.warning("run %s of %s was followed by no one: re-adopted", left.run_id, left.agent)
        return True

    def _started(self, left: ActiveRun) -> bool:
        """Whether the run ever printed (its entry's first line): one that did not, and that
        its runtime no longer has, never ran."""
        return complete_lines(self.store.log_path(left.agent, left.run_id)) > 0

    def _requeue(self, left: ActiveRun) -> bool:
        """Queue again the work of a run that never began (closing its record, written if it
        has none); False when its row does not hold the work (written before rows did) or its
        agent is gone."""
        agent = self.scheduler.project.agents.get(left.agent)
        work = claimed_work(left.trigger)
        if agent is None or work is None:
            return False
        return requeue(self.state, self.store, agent, work, left.run_id, NEVER_RAN)

    async def _forget_ended(self, left: ActiveRun, record: RunRecord | None) -> None:
        """The run was recorded as ended (or never started): only its bookkeeping is left."""
        await self._remove(left)
        if record is not None and record.status in ("completed", "rerun") and left.call_id:
            self.state.calls.complete(left.call_id, record.return_value)
            end_run(self.state, self.store, left.run_id, None, None)
            return
        why = record.error if record is not None and record.error else "the run never started"
        end_run(self.state, self.store, left.run_id, left.call_id, None, why)

    async def _give_up(self, left: ActiveRun, why: str) -> None:
        """Stop whatever is left of a run no one can follow, record it as an error, forget it."""
        await self._remove(left)
        record = self.store.find(left.run_id)
        if record is not None and record.status == "running":
            self.store.finish(left.run_id, "error", None, why)
        end_run(self.state, self.store, left.run_id, left.call_id, None, why)
        log.warning(
            "run %s of %s was left by a stopped scheduler: %s", left.run_id, left.agent, why
        )

    async def _remove(self, left: ActiveRun) -> None:
        """Stop and remove the run in its runtime, if it is still there, and delete its stage."""
        try:
            runtime = self._runtime(left.runtime)
            handle = await runtime.adopt(left.run_id)
            if handle is not None:
                await runtime.stop(handle, grace=5)
                await runtime.remove(handle)
        except (KeyError, ActionLlamaError) as exc:
            # Unknown runtime, or its engine is unreachable.
            log.info("run %s: nothing to stop in runtime %s (%s)", left.run_id, left.runtime, exc)
        # Whatever the runtime could not find (a pid file gone, another runs directory) but
        # still carries the run's id is stopped too: no one would ever watch it end.
        signal_all(run_pids(left.run_id), signal.SIGKILL)
        for stage in stages_of(left.run_id):
            remove_tree(stage)

    @staticmethod
    def _warn_port(left: ActiveRun, previous: int | None, port: int) -> None:
        if previous is None or previous == port:
            return
        log.warning(
            "run %s of %s was given the gateway on port %d, but this scheduler listens on %d: "
            "its locks, calls and al-shutdown fail until it ends. Start al with --port %d "
            "(or set [gateway].port) so runs survive a restart.",
            left.run_id,
            left.agent,
            previous,
            port,
            previous,
        )
