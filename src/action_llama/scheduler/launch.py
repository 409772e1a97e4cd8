"""Turn a queued item into a run through the run service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from action_llama.project import Agent
from action_llama.runs.service import LineCallback, RunOutcome, RunService
from action_llama.scheduler.core import Launch
from action_llama.state import QueueItem

#: Queue item type → the trigger its run's prompt describes.
TRIGGERS = {
    "schedule": "schedule",
    "manual": "manual",
    "webhook": "webhook",
    "agent-trigger": "agent-call",
}


async def run_item(
    service: RunService,
    agent: Agent,
    item: QueueItem,
    run_id: str,
    *,
    image: str | None,
    on_line: LineCallback | None = None,
    env: dict[str, str] | None = None,
) -> RunOutcome:
    """Run one queued item to its end: its trigger, prompt, context and caller as the run's."""
    payload = item.payload
    # Reruns keep the prompt (the original dropped it).
    prompt = payload.get("prompt") if item.type == "manual" else None
    caller = payload.get("sourceAgent")
    return await service.run(
        agent,
        image=image,
        trigger=TRIGGERS[item.type],
        prompt=prompt if isinstance(prompt, str) else None,
        run_id=run_id,
        context=payload.get("context"),
        caller=caller if isinstance(caller, str) else None,
        on_line=on_line,
        env=env,
    )


def service_launcher(
    service_for: Callable[[Agent], RunService],
    image_for: Callable[[Agent], Awaitable[str | None]],
    on_line: Callable[[Agent, str], LineCallback | None] | None = None,
) -> Launch:
    """A `Launch` that builds what the agent needs (`image_for`) and runs it to its end."""

    async def launch(agent: Agent, item: QueueItem, run_id: str, rerun: int) -> RunOutcome:
        return await run_item(
            service_for(agent),
            agent,
            item,
            run_id,
            image=await image_for(agent),
            on_line=on_line(agent, run_id) if on_line else None,
        )

    return launch
