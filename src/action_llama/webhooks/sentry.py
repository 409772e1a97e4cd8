"""Sentry integration webhooks: `Sentry-Hook-Signature: <hex HMAC-SHA256>` (client secret).

The event is the `Sentry-Hook-Resource` header (event_alert, metric_alert, issue, error,
comment, ...), matched by the `resources` filter. `repo` holds the Sentry project slug (the
triggered rule for event alerts, the organization for metric alerts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from action_llama.webhooks.base import (
    Ignored,
    dig,
    first_text,
    header,
    hmac_sha256_matches,
    load_object,
    text,
)
from action_llama.webhooks.context import WebhookEvent, truncate


def _fields(resource: str, body: dict[str, Any]) -> dict[str, Any]:
    data = body.get("data")
    if resource == "event_alert":
        event = dig(data, "event")
        return {
            "repo": text(dig(data, "triggered_rule")) or "",
            "title": truncate(text(dig(event, "title"))),
            "url": text(dig(event, "web_url")),
            "body": text(dig(event, "message")),
        }
    if resource == "metric_alert":
        alert = dig(data, "metric_alert")
        return {
            "repo": text(dig(alert, "organization", "slug")) or "",
            "title": truncate(text(dig(alert, "title"))),
            "url": text(dig(alert, "web_url")),
        }
    if resource in ("issue", "error", "comment"):
        # A comment's `data` carries the issue it is on next to the comment itself.
        item = dig(data, "issue" if resource == "comment" else resource)
        return {
            "repo": text(dig(item, "project", "slug")) or "",
            "title": truncate(text(dig(item, "title"))),
            "url": text(dig(item, "web_url")),
            "body": text(dig(item, "message")) if resource == "error" else None,
            "assignee": text(dig(item, "assignedTo", "name")) if resource == "issue" else None,
            "comment": text(dig(data, "comment", "text")) if resource == "comment" else None,
        }
    return {"title": text(body.get("action")) or resource}


class SentryProvider:
    """Sentry internal-integration webhooks."""

    type = "sentry"
    credential_type = "sentry_client_secret"
    credential_field = "secret"
    signature_headers = ("sentry-hook-signature",)

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> bool:
        return hmac_sha256_matches(body, header(headers, "sentry-hook-signature"), secrets)

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        return header(headers, "request-id") or None

    def parse(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent | Ignored:
        resource = header(headers, "sentry-hook-resource")
        if not resource:
            return Ignored("no Sentry-Hook-Resource header")
        data = load_object(body, headers)
        return WebhookEvent(
            source=self.type,
            event=resource,
            action=text(data.get("action")),
            sender=first_text(dig(data, "actor", "name"), dig(data, "actor", "type")) or "unknown",
            **_fields(resource, data),
        )
