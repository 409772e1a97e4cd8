"""Linear: `Linear-Signature: <hex HMAC-SHA256>`, delivery id in `Linear-Delivery`.

`type` Issue becomes the event `issues`, Comment becomes `issue_comment`, anything else its
lower-cased type. `repo` holds the organization id (the `organizations` filter); author and
assignee are e-mail addresses.
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
    integer,
    load_object,
    names,
    text,
)
from action_llama.webhooks.context import WebhookEvent

_EVENTS = {"Issue": "issues", "Comment": "issue_comment"}


def _fields(kind: str, data: dict[str, Any], action: str) -> dict[str, Any] | None:
    if kind == "Issue":
        return {
            "number": integer(data.get("number")),
            "title": text(data.get("title")),
            "body": text(data.get("description")),
            "url": text(data.get("url")),
            "author": text(dig(data, "creator", "email")),
            "assignee": text(dig(data, "assignee", "email")),
            "labels": names(data.get("labels")),
        }
    if kind == "Comment":
        issue = data.get("issue")
        if not isinstance(issue, dict):
            return None
        return {
            "number": integer(issue.get("number")),
            "title": text(issue.get("title")),
            "url": first_text(data.get("url"), issue.get("url")),
            "author": text(dig(issue, "creator", "email")),
            "labels": names(issue.get("labels")),
            "comment": text(data.get("body")),
        }
    return {"title": first_text(data.get("title"), action, kind), "url": text(data.get("url"))}


class LinearProvider:
    """Linear workspace webhooks."""

    type = "linear"
    credential_type = "linear_webhook_secret"
    credential_field = "secret"
    signature_headers = ("linear-signature",)

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> bool:
        return hmac_sha256_matches(body, header(headers, "linear-signature"), secrets)

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        return header(headers, "linear-delivery") or None

    def parse(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent | Ignored:
        payload = load_object(body, headers)
        action, kind = text(payload.get("action")), text(payload.get("type"))
        if action is None or kind is None:
            return Ignored("Linear payload without action or type")
        data = payload.get("data")
        organization = first_text(
            payload.get("organizationId"), dig(data, "team", "organization", "id")
        )
        if organization is None:
            return Ignored(f"Linear {kind} without an organization id")
        fields = _fields(kind, data, action) if isinstance(data, dict) else None
        if fields is None:
            return Ignored(f"Linear {kind} without its data")
        sender = first_text(
            dig(payload, "createdBy", "email"),
            dig(payload, "updatedBy", "email"),
            dig(payload, "actor", "email"),
            dig(payload, "actor", "name"),
        )
        return WebhookEvent(
            source=self.type,
            event=_EVENTS.get(kind, kind.lower()),
            action=action,
            repo=organization,
            sender=sender or "unknown",
            **fields,
        )
