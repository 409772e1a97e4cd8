"""Slack Events API: `X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<ts>:<body>")>`.

The secret is the app's signing secret (`slack_signing_secret` field `secret`), and
`X-Slack-Request-Timestamp` must be within 5 minutes of now, so a captured delivery cannot be
replayed later. Slack checks the request URL once with a signed `url_verification` body,
answered with its `challenge`. Slack retries a delivery it thinks failed (with
`X-Slack-Retry-Num`); every retry carries the same `event_id`, the delivery id, so it runs
nothing twice.

An `event_callback` becomes a context: `event` is the inner event's type (`message`,
`app_mention`, `reaction_added`, ...), `action` a message's subtype, `repo` the team
(workspace) id, `sender` the user (or bot) id, `channel` the channel id and, for messages
and mentions, `body` the text, `title` its first line, and `thread` the `ts` to reply to in
a thread (chat.postMessage's `thread_ts`). Events the app itself caused (its own messages)
are ignored, so an agent that answers in a channel does not trigger itself.

Filters: `events`, `channels`, `users` and `team_ids` (lists; each given one must match).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from action_llama.errors import WebhookRejected
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

#: Oldest (or furthest in the future) request timestamp accepted, in seconds.
MAX_AGE = 5 * 60
TITLE_LENGTH = 100


def _message_fields(event: Mapping[str, Any]) -> dict[str, Any]:
    # An edit carries the new message in `message`; other subtypes carry their own fields.
    message = event.get("message") if isinstance(event.get("message"), dict) else event
    words = text(dig(message, "text"))
    ts = text(dig(message, "ts")) or text(event.get("ts"))
    return {
        "title": truncate(words.splitlines()[0], TITLE_LENGTH) if words else None,
        "body": words,
        "thread": text(dig(message, "thread_ts")) or ts,
        "sender": first_text(dig(message, "user"), dig(message, "bot_id"), event.get("user"))
        or "unknown",
    }


def _own_event(data: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """True for events the receiving app itself caused (its bot's messages)."""
    app = text(data.get("api_app_id"))
    return app is not None and app in (
        text(event.get("app_id")),
        text(dig(event, "bot_profile", "app_id")),
        text(dig(event, "message", "app_id")),
    )


class SlackProvider:
    """Slack Events API deliveries (event subscriptions of a Slack app)."""

    type = "slack"
    credential_type = "slack_signing_secret"
    credential_field = "secret"
    signature_headers = ("x-slack-signature",)

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> bool:
        signature = header(headers, "x-slack-signature")
        stamp = header(headers, "x-slack-request-timestamp")
        if not signature or not stamp or not stamp.strip().isdigit():
            return False
        age = int(time.time()) - int(stamp)
        if abs(age) > MAX_AGE:
            raise WebhookRejected(
                f"X-Slack-Request-Timestamp is {abs(age)} s "
                f"{'old' if age > 0 else 'in the future'}, over the 5 minutes allowed "
                "(a replayed delivery, or this host's clock is off)",
                reason="validation_failed",
            )
        signed = b"v0:" + stamp.strip().encode("ascii") + b":" + body
        return hmac_sha256_matches(signed, signature, secrets, prefix="v0=")

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        # Retries of one event carry its event_id; only event callbacks have one.
        if b'"event_id"' not in body:
            return None
        try:
            data = json.loads(body)
        except ValueError:
            return None
        return text(data.get("event_id")) if isinstance(data, dict) else None

    def parse(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent | Ignored:
        data = load_object(body, headers)
        kind = data.get("type")
        if kind == "url_verification":
            challenge = data.get("challenge")
            if not isinstance(challenge, str):
                raise WebhookRejected("url_verification without a challenge", reason="parse_error")
            return Ignored("url verification (Slack checking the URL)", {"challenge": challenge})
        if kind != "event_callback":
            return Ignored(f"Slack delivery of type {kind!r}, not an event_callback")
        event = data.get("event")
        if not isinstance(event, dict) or not text(event.get("type")):
            raise WebhookRejected("event_callback without an event type", reason="parse_error")
        if _own_event(data, event):
            return Ignored("an event caused by this Slack app itself (its own message)")
        fields: dict[str, Any] = {
            "source": self.type,
            "event": event["type"],
            "repo": text(data.get("team_id")) or text(event.get("team")) or "",
            "sender": first_text(event.get("user"), event.get("bot_id")) or "unknown",
            "channel": first_text(event.get("channel"), dig(event, "item", "channel")),
        }
        if event["type"] in ("message", "app_mention"):
            fields.update(_message_fields(event), action=text(event.get("subtype")))
        elif event["type"] in ("reaction_added", "reaction_removed"):
            fields["title"] = text(event.get("reaction"))
            fields["thread"] = text(dig(event, "item", "ts"))
        else:
            fields["title"] = event["type"]
            fields["body"] = text(event.get("text"))
        return WebhookEvent(**fields)
