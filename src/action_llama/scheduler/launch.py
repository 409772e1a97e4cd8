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


def service_launcher(
    service_for: Callable[[Agent], RunService],
    image_for: Callable[[Agent], Awaitable[str | None]],
    on_line: Callable[[Agent, str], LineCallback | None] | None = None,
) -> Launch:
    """A `Launch` that builds what the agent needs (`image_for`) and runs it to its end."""

    async def launch(agent: Agent, item: QueueItem, run_id: str, rerun: int) -> RunOutcome:
        payload = item.payload
        # Reruns keep the prompt (the original dropped it).
        prompt = payload.get("prompt") if item.type == "manual" else None
        caller = payload.get("sourceAgent")
        return await service_for(agent).run(
            agent,
            image=await image_for(agent),
            trigger=TRIGGERS[item.type],
            prompt=prompt if isinstance(prompt, str) else None,
            run_id=run_id,
            context=payload.get("context"),
            caller=caller if isinstance(caller, str) else None,
            on_line=on_line(agent, run_id) if on_line else None,
        )

    return launch
