"""X (Twitter) Account Activity: `X-Twitter-Webhooks-Signature: sha256=<base64 HMAC-SHA256>`.

The secret is the app's consumer secret (`x_twitter_api` field `consumer_secret`). The event
is the payload's first list-valued key (`tweet_create_events`, `favorite_events`, ...) and
the action its last word before `_events` (`create`, `favorite`). `repo` holds
`for_user_id`, the subscribed user (the `repos` filter). The CRC challenge X sends with a
GET is answered by `crc_response`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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

_METADATA = ("for_user_id", "user_has_blocked")
_RELATIONS = {
    "follow_events": "followed",
    "unfollow_events": "unfollowed",
    "block_events": "blocked",
    "unblock_events": "unblocked",
    "mute_events": "muted",
    "unmute_events": "unmuted",
}


def crc_response(crc_token: str, consumer_secret: str) -> dict[str, str]:
    """The JSON answer to X's CRC check (`GET ?crc_token=...`)."""
    mac = hmac.new(consumer_secret.encode("utf-8"), crc_token.encode("utf-8"), hashlib.sha256)
    return {"response_token": "sha256=" + base64.b64encode(mac.digest()).decode("ascii")}


def _status_url(user: Any, status_id: Any) -> str | None:
    name, sid = text(dig(user, "screen_name")), text(status_id)
    return f"https://twitter.com/{name}/status/{sid}" if name and sid else None


def _screen(user: Any) -> str:
    return first_text(dig(user, "screen_name"), dig(user, "id_str"), dig(user, "id")) or "unknown"


def _fields(key: str, item: Any) -> dict[str, Any]:
    if key == "tweet_create_events":
        return {
            "sender": _screen(dig(item, "user")),
            "title": truncate(text(dig(item, "text"))),
            "body": text(dig(item, "text")),
            "url": _status_url(dig(item, "user"), dig(item, "id_str")),
        }
    if key == "tweet_delete_events":
        return {
            "sender": text(dig(item, "user_id")) or "unknown",
            "title": f"Deleted tweet {text(dig(item, 'status', 'id')) or 'unknown'}",
        }
    if key == "favorite_events":
        liked = dig(item, "favorited_status")
        return {
            "sender": _screen(dig(item, "user")),
            "title": f"Liked tweet by @{text(dig(liked, 'user', 'screen_name')) or 'unknown'}",
            "body": text(dig(liked, "text")),
            "url": _status_url(dig(liked, "user"), dig(liked, "id_str")),
        }
    if key in _RELATIONS:
        source, target = dig(item, "source"), dig(item, "target")
        who = text(dig(source, "screen_name")) or "unknown"
        whom = text(dig(target, "screen_name")) or "unknown"
        return {"sender": _screen(source), "title": f"@{who} {_RELATIONS[key]} @{whom}"}
    if key == "direct_message_events":
        sender = text(dig(item, "message_create", "sender_id")) or "unknown"
        return {
            "sender": sender,
            "title": f"Direct message from {sender}",
            "body": text(dig(item, "message_create", "message_data", "text")),
        }
    if key == "direct_message_indicate_typing_events":
        sender = text(dig(item, "sender_id")) or "unknown"
        return {"sender": sender, "title": f"Typing indicator from {sender}"}
    if key == "direct_message_mark_read_events":
        sender = text(dig(item, "sender_id")) or "unknown"
        return {"sender": sender, "title": f"Message read by {sender}"}
    return {"title": key}


class TwitterProvider:
    """X Account Activity API webhooks."""

    type = "twitter"
    credential_type = "x_twitter_api"
    credential_field = "consumer_secret"
    signature_headers = ("x-twitter-webhooks-signature",)

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> bool:
        signature = header(headers, "x-twitter-webhooks-signature")
        return hmac_sha256_matches(body, signature, secrets, prefix="sha256=", encoding="base64")

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        return None

    def parse(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent | Ignored:
        data = load_object(body, headers)
        key = next((k for k, v in data.items() if k not in _METADATA and isinstance(v, list)), None)
        if key is None:
            return Ignored("X payload without an event list")
        stem = key.removesuffix("_events")
        user = data.get("for_user_id")
        base: dict[str, Any] = {
            "source": self.type,
            "event": key,
            "action": stem.rpartition("_")[2],
            "repo": str(user) if isinstance(user, str | int) else "unknown",
        }
        items = data[key]
        extra = _fields(key, items[0]) if items else {}
        return WebhookEvent(**base, **extra)
