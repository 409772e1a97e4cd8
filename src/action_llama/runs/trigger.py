"""Why a run happens: one `Trigger` from the moment work arrives to the run it becomes.

A cron tick, a webhook delivery, an operator's `al run` and another agent's call each make a
`Trigger`; the scheduler dispatches it, the durable work queue keeps it while every runner is
busy (`state.queue`), the run service runs it, the run's record says its `type`, and the run
itself is told the part it needs (`RUN_FIELDS`, in its trigger.json: the last block of the
prompt reads it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, JsonValue
from pydantic.alias_generators import to_camel

TriggerType = Literal["manual", "schedule", "webhook", "agent-call"]
#: What a run is told of its trigger (its trigger.json).
RUN_FIELDS = frozenset({"type", "prompt", "context", "caller"})
_SUMMARY_CHARS = 200


class Trigger(BaseModel):
    """Why a run happens. Stored (the work queue) and sent (trigger.json) as camelCase JSON."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    type: TriggerType = "manual"
    #: manual: the task it was given (`al run --prompt`), if any.
    prompt: str | None = None
    #: webhook: what the delivery was about; agent-call: what the caller asked.
    context: JsonValue = None
    #: agent-call: the calling agent, the call the run answers and how deep the chain is.
    caller: str | None = None
    call_id: str | None = None
    depth: int | None = None
    #: One line for logs and `al stat`; made up from the fields above when empty.
    summary: str = ""

    def describe(self) -> str:
        """The summary, or one made up from the type and the best-known fields."""
        if self.summary:
            return _one_line(self.summary)
        detail = ""
        if self.type == "agent-call":
            detail = f"from {self.caller or '?'}"
        elif self.type == "manual" and self.prompt:
            detail = f"prompt: {self.prompt}"
        elif self.type == "webhook" and isinstance(self.context, dict):
            keys = ("event", "action", "repo")
            detail = " ".join(str(self.context[k]) for k in keys if self.context.get(k))
        return _one_line(f"{self.type} {detail}".strip())

    def for_run(self) -> str:
        """The run's trigger.json."""
        return self.model_dump_json(include=set(RUN_FIELDS), exclude_none=True)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 1] + "…"
