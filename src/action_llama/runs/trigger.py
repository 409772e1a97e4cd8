"""Why a run happens: one `Trigger` from the moment work arrives to the run it becomes.

A cron tick, a webhook delivery, an operator's `al run` and another agent's call each make a
`Trigger`; the scheduler dispatches it, the durable work queue keeps it while every runner is
busy (`state.queue`), the run service runs it, the run's record says its `type`, and the run
itself is told the part it needs (`RUN_FIELDS`, in its trigger.json: the last block of the
prompt reads it).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from pydantic import ConfigDict, JsonValue, TypeAdapter

TriggerType = Literal["manual", "schedule", "webhook", "agent-call"]
#: What a run is told of its trigger (its trigger.json).
RUN_FIELDS = frozenset({"type", "prompt", "context", "caller"})
_SUMMARY_CHARS = 200


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


@dataclass(frozen=True, kw_only=True)
class Trigger:
    """Why a run happens. Stored (the work queue) and sent (trigger.json) as camelCase JSON.

    A plain dataclass, so that a run started by hand imports no pydantic; what is read back
    from storage is validated (`from_stored`).
    """

    # How pydantic reads a stored trigger: camelCase keys (field names accepted too), and an
    # unknown key is an error rather than silently dropped.
    __pydantic_config__: ClassVar[ConfigDict] = {
        "extra": "forbid",
        "alias_generator": _camel,
        "populate_by_name": True,
    }

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

    @classmethod
    def from_stored(cls, data: object) -> Trigger:
        """The trigger `to_stored` (or a version of `al` before it) wrote; ValueError (a
        pydantic ValidationError) when `data` is not one."""
        return _adapter().validate_python(data)

    def to_stored(self, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Its fields but those in `exclude` and those that are None, by their camelCase names."""
        return {
            _camel(f.name): value
            for f in dataclasses.fields(self)
            if f.name not in exclude and (value := getattr(self, f.name)) is not None
        }

    def to_json(self, *, exclude: frozenset[str] = frozenset()) -> str:
        """`to_stored` as compact JSON (text kept as it is, not escaped)."""
        return json.dumps(
            self.to_stored(exclude=exclude), ensure_ascii=False, separators=(",", ":")
        )

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
        return self.to_json(exclude=_NOT_FOR_RUN)


_NOT_FOR_RUN = frozenset(f.name for f in dataclasses.fields(Trigger)) - RUN_FIELDS


@cache
def _adapter() -> TypeAdapter[Trigger]:
    # Built on first use: pydantic is imported only when a stored trigger is read.
    from pydantic import JsonValue, TypeAdapter  # noqa: F401 (JsonValue: see below)

    # `context`'s annotation names JsonValue, which this module imports only for type checkers:
    # pydantic finds it here, in the namespace of the frame that builds the adapter.
    return TypeAdapter(Trigger)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 1] + "…"
