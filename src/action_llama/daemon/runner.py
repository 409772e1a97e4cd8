"""The daemon's one way to launch a run: known to the gateway (a fresh secret, its URL, its
locks) and unregistered however it ends; and following a run a previous daemon started."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import JsonValue

from action_llama.credentials.staging import remove_tree, stages_of
from action_llama.errors import ActionLlamaError, RuntimeUnavailable, StateError
from action_llama.project import Agent
from action_llama.runs.service import (
    LineCallback,
    Rebuild,
    RunOutcome,
    RunService,
    complete_lines,
)
from action_llama.runs.store import RunStore
from action_llama.runs.trigger import Trigger
from action_llama.runtimes.base import RunHandle
from action_llama.runtimes.registry import runtime_name
from action_llama.scheduler.core import Launch
from action_llama.state import State

log = logging.getLogger("action_llama.daemon")


class GatewayLauncher:
    """A `Launch` whose runs can reach the gateway: registered with a per-run secret (only its
    hash is stored), told GATEWAY_URL and SHUTDOWN_SECRET, and unregistered (locks released,
    calls settled) however they end.

    `claim` registers a run before it starts, with the trigger it takes (the scheduler calls
    it in the transaction that pops the trigger from the queue): a run that ends before it
    began (the daemon killed, the disk full, the engine restarting) gives its trigger back to
    the queue, here or, after a crash, through adoption."""

    def __init__(
        self,
        state: State,
        store: RunStore,
        port: Callable[[], int],
        service_for: Callable[[Agent], RunService],
        image_for: Callable[[Agent], Awaitable[str | None]],
        on_line: Callable[[Agent, str], LineCallback | None] | None = None,
        rebuild: Rebuild | None = None,
    ) -> None:
        self.state = state
        self.store = store
        self.port = port
        self.service_for = service_for
        self.image_for = image_for
        self.on_line = on_line
        self.rebuild = rebuild
        self._secrets: dict[str, str] = {}

    def claim(self, agent: Agent, trigger: Trigger, run_id: str) -> None:
        secret = secrets.token_urlsafe(24)
        self.state.active_runs.add(
            run_id,
            agent.name,
            runtime=runtime_name(agent),  # what a restarted daemon adopts it through
            secret=secret,
            trigger=claimed(trigger),
            call_id=trigger.call_id if trigger.type == "agent-call" else None,
        )
        self._secrets[run_id] = secret

    async def __call__(self, agent: Agent, trigger: Trigger, run_id: str, rerun: int) -> RunOutcome:
        if run_id not in self._secrets:  # a rerun: a new run id, claimed here
            self.claim(agent, trigger, run_id)
        secret = self._secrets.pop(run_id)
        if self.state.active_runs.get(run_id) is None:
            # Its claim was rolled back with the transaction it was made in (the webhook's
            # receipt could not be stored, say): the work was not taken, so it does not run.
            raise ActionLlamaError(f"run {run_id} of {agent.name} was not taken: not started")
        call_id = trigger.call_id if trigger.type == "agent-call" else None
        if call_id is not None:
            self.state.calls.start(call_id, run_id)
        service = self.service_for(agent)
        env = {
            "GATEWAY_URL": service.runtime.gateway_url(service.project, self.port()),
            "SHUTDOWN_SECRET": secret,
        }
        outcome: RunOutcome | None = None
        given_back = False  # the work went back to the queue (or will, at the sweep)
        try:
            outcome = await service.run(
                agent,
                trigger,
                image=await self.image_for(agent),
                run_id=run_id,
                env=env,
                on_line=self.on_line(agent, run_id) if self.on_line else None,
                rebuild=self.rebuild,
            )
            return outcome
        except FAULTS as exc:
            # A fault (the disk full, the engine restarting) before the run's script began:
            # its work goes back to the queue, now or (when even that cannot be written) at
            # the next sweep.
            if not began(self.store, agent, run_id):
                # Its claim stays when this cannot be written: the sweep requeues it then.
                given_back = True
                why = exc.message if isinstance(exc, ActionLlamaError) else str(exc)
                requeue(self.state, self.store, agent, trigger, run_id, f"could not begin: {why}")
            raise
        finally:
            if not given_back:
                end_run(self.state, self.store, run_id, call_id, outcome)


#: Failures that say nothing about the work: it can run once they are over.
FAULTS = (StateError, OSError, RuntimeUnavailable)


def claimed(trigger: Trigger) -> dict[str, Any]:
    """What a run's active_runs row keeps of its trigger: its type, and the whole trigger
    (`work`) to queue again if the run never begins."""
    return {"type": trigger.type, "work": trigger.to_stored()}


def claimed_work(row: JsonValue) -> Trigger | None:
    """The trigger a run's row holds (None for rows written before rows held it)."""
    if not isinstance(row, dict) or not isinstance(row.get("work"), dict):
        return None
    try:
        return Trigger.from_stored(row["work"])
    except ValueError:
        return None


def began(store: RunStore, agent: Agent, run_id: str) -> bool:
    """Whether the run got as far as printing its first line (its entry began)."""
    return recorded(store, run_id) and complete_lines(store.log_path(agent.name, run_id)) > 0


def recorded(store: RunStore, run_id: str) -> bool:
    """Whether run `run_id` got as far as its record (anything before is safe to start again)."""
    return store.find(run_id) is not None


def requeue(
    state: State, store: RunStore, agent: Agent, trigger: Trigger, run_id: str, why: str
) -> bool:
    """Queue again the work of run `run_id`, which never began, and close its record saying
    `why` (writing one when the run got no further than its claim: its id may have been
    announced, and `al logs` then finds it and says what became of it), in one transaction
    where the store shares the state's database. When its record cannot be written its work
    is given back all the same. False (the claim stays, for the sweep or the next start) when
    even that cannot be written now."""
    shared = store.database is state.db
    try:
        with state.db.write():
            give_back(state, agent, trigger, run_id)
            if shared:  # the daemon's: its record closed in the same transaction
                _close_unbegun(store, agent, trigger, run_id, why)
        if not shared:
            with contextlib.suppress(ActionLlamaError):
                _close_unbegun(store, agent, trigger, run_id, why)
    except ActionLlamaError as exc:
        if recorded(store, run_id):
            log.warning("run %s of %s never began; its work waits: %s", run_id, agent.name, exc)
            return False
        try:  # its record could not be written: the work goes back without one
            with state.db.write():
                give_back(state, agent, trigger, run_id)
        except ActionLlamaError as again:
            log.warning("run %s of %s never began; its work waits: %s", run_id, agent.name, again)
            return False
    log.warning("run %s of %s never began (%s): its work is queued again", run_id, agent.name, why)
    return True


def _close_unbegun(store: RunStore, agent: Agent, trigger: Trigger, run_id: str, why: str) -> None:
    if store.find(run_id) is None:
        store.start(run_id, agent.name, trigger.type, trigger.prompt, runtime_name(agent), None)
    store.finish(run_id, "error", None, f"this run never began ({why}); queued again")


def give_back(state: State, agent: Agent, trigger: Trigger, run_id: str) -> None:
    """`requeue`'s writes, for a caller's transaction (StateError when they fail)."""
    for stage in stages_of(run_id):
        remove_tree(stage)
    state.queue.push(agent.name, trigger, agent.queue_size)
    state.active_runs.remove(run_id)


def resumer(
    state: State,
    store: RunStore,
    service: RunService,
    handle: RunHandle,
    call_id: str | None,
    on_line: Callable[[Agent, str], LineCallback | None] | None = None,
) -> Launch:
    """A `Launch` that follows a run a previous daemon started (`handle`, re-adopted) to its
    end, then unregisters it as `GatewayLauncher` does. Its secret and gateway URL are the
    ones the run already has."""

    async def resume(agent: Agent, trigger: Trigger, run_id: str, rerun: int) -> RunOutcome:
        outcome: RunOutcome | None = None
        try:
            outcome = await service.resume(
                agent, handle, on_line=on_line(agent, run_id) if on_line else None
            )
            return outcome
        finally:
            end_run(state, store, run_id, call_id, outcome)

    return resume


def end_run(
    state: State,
    store: RunStore,
    run_id: str,
    call_id: str | None,
    outcome: RunOutcome | None,
    why: str | None = None,
) -> None:
    """Unregister a run that ended: release its locks, forget its secret, settle the call
    that started it (with its outcome; else failed, saying `why`)."""
    released = state.locks.release_all(run_id)
    if released:
        log.info("released locks of run %s: %s", run_id, ", ".join(released))
    state.active_runs.remove(run_id)
    if call_id is not None:
        _settle_call(state, store, call_id, run_id, outcome, why)


def _settle_call(
    state: State,
    store: RunStore,
    call_id: str,
    run_id: str,
    outcome: RunOutcome | None,
    why: str | None,
) -> None:
    """The caller's `al-subagent-wait` sees the callee's return value, or why it failed."""
    if outcome is not None and outcome.result.status in ("completed", "rerun"):
        state.calls.complete(call_id, store.get(run_id).return_value)
    else:
        state.calls.fail(call_id, (outcome.error if outcome else why) or "agent run failed")
