"""The daemon's one way to launch a run: known to the gateway (a fresh secret, its URL, its
locks) and unregistered however it ends; and following a run a previous daemon started."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

from action_llama.project import Agent
from action_llama.runs.service import LineCallback, RunOutcome, RunService
from action_llama.runs.store import RunStore
from action_llama.runs.trigger import Trigger
from action_llama.runtimes.base import RunHandle
from action_llama.runtimes.registry import runtime_name
from action_llama.scheduler.core import Launch
from action_llama.state import State

log = logging.getLogger("action_llama.daemon")


def gateway_launcher(
    state: State,
    store: RunStore,
    port: Callable[[], int],
    service_for: Callable[[Agent], RunService],
    image_for: Callable[[Agent], Awaitable[str | None]],
    on_line: Callable[[Agent, str], LineCallback | None] | None = None,
) -> Launch:
    """A `Launch` whose runs can reach the gateway: registered with a per-run secret (only its
    hash is stored), told GATEWAY_URL and SHUTDOWN_SECRET, and unregistered (locks released,
    calls settled) however they end."""

    async def launch(agent: Agent, trigger: Trigger, run_id: str, rerun: int) -> RunOutcome:
        secret = secrets.token_urlsafe(24)
        call_id = trigger.call_id if trigger.type == "agent-call" else None
        state.active_runs.add(
            run_id,
            agent.name,
            runtime=runtime_name(agent),  # what a restarted daemon adopts it through
            secret=secret,
            trigger={"type": trigger.type},
            call_id=call_id,
        )
        if call_id is not None:
            state.calls.start(call_id, run_id)
        service = service_for(agent)
        env = {
            "GATEWAY_URL": service.runtime.gateway_url(service.project, port()),
            "SHUTDOWN_SECRET": secret,
        }
        outcome: RunOutcome | None = None
        try:
            outcome = await service.run(
                agent,
                trigger,
                image=await image_for(agent),
                run_id=run_id,
                env=env,
                on_line=on_line(agent, run_id) if on_line else None,
            )
            return outcome
        finally:
            end_run(state, store, run_id, call_id, outcome)

    return launch


def resumer(
    state: State,
    store: RunStore,
    service: RunService,
    handle: RunHandle,
    call_id: str | None,
    on_line: Callable[[Agent, str], LineCallback | None] | None = None,
) -> Launch:
    """A `Launch` that follows a run a previous daemon started (`handle`, re-adopted) to its
    end, then unregisters it as `gateway_launcher` does. Its secret and gateway URL are the
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
