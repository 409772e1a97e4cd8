"""What a delivery means: `WebhookEvent` from a provider, `WebhookContext` for the prompt.

The fields are declared in the order of the prompt's JSON (reference §6.3): `source`,
`event`, `action`, `repo`, `sender`, `timestamp`, then `number`, `title`, `body`, `url`,
`author`, `assignee`, `labels`, `branch`, `conclusion`, `comment`, then Slack's `channel` and
`thread`, and `receiptId` last.
Fields without a value are left out of the JSON, as the original's JSON.stringify did.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Longest `body` or `comment` kept in a context, before "..." is appended.
MAX_TEXT = 4000


def truncate(value: str | None, limit: int = MAX_TEXT) -> str | None:
    """`value` cut to `limit` characters plus "..." when longer; "" becomes None."""
    if not value:
        return None
    return value[:limit] + "..." if len(value) > limit else value


def iso_now(now: datetime | None = None) -> str:
    """An ISO timestamp in UTC with milliseconds, like JavaScript's toISOString()."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WebhookEvent(BaseModel):
    """One delivery, read by its provider: the facts filters match and agents are told."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    #: The provider type (`github`), not the source name.
    source: str
    event: str
    action: str | None = None
    #: `owner/repo` for GitHub; the organization, project, guild or user for other senders.
    repo: str = ""
    sender: str = "unknown"
    #: When the delivery was received (ISO 8601, UTC).
    timestamp: str = Field(default_factory=iso_now)
    number: int | None = None
    title: str | None = None
    body: str | None = None
    url: str | None = None
    author: str | None = None
    assignee: str | None = None
    labels: tuple[str, ...] | None = None
    branch: str | None = None
    conclusion: str | None = None
    comment: str | None = None
    #: Slack: the channel id, and the `ts` to reply to in a thread.
    channel: str | None = None
    thread: str | None = None

    @field_validator("body", "comment")
    @classmethod
    def _cut(cls, value: str | None) -> str | None:
        return truncate(value)

    @property
    def summary(self) -> str:
        """`"<event> <action>"` (or the event alone): what a receipt lists, e.g. "issues opened"."""
        return f"{self.event} {self.action}" if self.action else self.event

    def with_receipt(self, receipt_id: str, timestamp: str | None = None) -> WebhookContext:
        """This event as the prompt's context, stamped with its receipt (and receipt time)."""
        fields = self.model_dump()
        if timestamp is not None:
            fields["timestamp"] = timestamp
        return WebhookContext(**fields, receipt_id=receipt_id)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in §6.3 order, absent values left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_json(self) -> str:
        """The JSON text inside `<webhook-trigger>` (rendered as the agent's prompt renders it)."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


class WebhookContext(WebhookEvent):
    """A `WebhookEvent` with its receipt id: the `<webhook-trigger>` block of a run's prompt."""

    receipt_id: str = Field(alias="receiptId")
