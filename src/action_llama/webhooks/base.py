"""The provider contract, and the helpers every provider shares.

A provider knows one sender's wire format: how its deliveries are signed, how to read a
delivery id from the headers, and how to turn a body into a `WebhookEvent`. Providers are
stateless and pure; the secrets come in as arguments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import parse_qs

from action_llama.errors import WebhookRejected

if TYPE_CHECKING:
    from action_llama.webhooks.context import WebhookEvent

#: Why a delivery started no run (the `webhook_receipts.dead_letter_reason` vocabulary, plus
#: "ignored" for deliveries that are valid but carry nothing to act on, such as pings, and
#: "not_dispatched" for matched ones the scheduler did not take).
ReceiptReason = Literal[
    "validation_failed",
    "parse_error",
    "no_match",
    "too_large",
    "duplicate",
    "ignored",
    "not_dispatched",
]


@dataclass(frozen=True)
class Ignored:
    """A well-formed delivery with nothing to act on (a ping, an event without a repository).

    `reply` is a JSON body the sender expects back instead of the usual answer (Discord's
    PING must be answered with `{"type": 1}`).
    """

    reason: str
    reply: Mapping[str, Any] | None = field(default=None)
    #: What the delivery was ("ping", "push"), for its receipt; None: the provider's type.
    summary: str | None = None


class Provider(Protocol):
    """One webhook sender's format. Implementations are stateless; one instance is shared."""

    @property
    def type(self) -> str:
        """The `[webhooks.<source>] type` this provider serves."""
        ...

    @property
    def credential_type(self) -> str | None:
        """The credential type holding the secrets; None when nothing is signed (test)."""
        ...

    @property
    def credential_field(self) -> str | None:
        """The field of `credential_type` that holds one secret (or public key)."""
        ...

    @property
    def signature_headers(self) -> tuple[str, ...]:
        """Headers that carry signatures (never stored with a receipt)."""
        ...

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> bool:
        """True when the delivery is signed by any of `secrets` (timing-safe, length-checked).

        Raises WebhookRejected when this process cannot check the signature at all, or when
        the delivery is refused whatever its signature (a stale Slack timestamp).
        """
        ...

    def parse(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent | Ignored:
        """The event in the delivery, or why there is nothing to act on.

        Raises WebhookRejected (reason "parse_error") for a body that is not what the
        sender documents (not JSON, not an object, fields of the wrong type).
        """
        ...

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """The sender's unique id of this delivery (for dedupe), when it sends one (in the
        headers, or for Slack in the body)."""
        ...


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name` (lower case), whatever the case of the keys in `headers`."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, item in headers.items():
        if key.lower() == name:
            return item
    return None


def load_object(body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """The JSON object in `body`, or in the `payload` field of a form-encoded body."""
    content_type = (header(headers, "content-type") or "").lower()
    raw: bytes | str = body
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode("utf-8", errors="replace"))
        if not form.get("payload"):
            raise WebhookRejected("missing payload in form body", reason="parse_error")
        raw = form["payload"][0]
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookRejected(f"invalid JSON body: {exc}", reason="parse_error") from exc
    except RecursionError as exc:
        raise WebhookRejected(
            "invalid JSON body: nested too deeply to be read", reason="parse_error"
        ) from exc
    if not isinstance(data, dict):
        raise WebhookRejected(
            f"the JSON body is a {type(data).__name__}, not an object", reason="parse_error"
        )
    return data


def hmac_sha256_matches(
    body: bytes,
    signature: str | None,
    secrets: Sequence[str],
    *,
    prefix: str = "",
    encoding: Literal["hex", "base64"] = "hex",
) -> bool:
    """True when `signature` is `prefix` + HMAC-SHA256(secret, body) for some secret.

    Comparison is timing-safe and length-checked. Empty secrets are skipped: a blank
    credential file must not turn into "signed with the empty key".
    """
    if not signature:
        return False
    got = signature.strip()
    if encoding == "hex":
        got = got.lower()
    received = got.encode("utf-8", errors="replace")
    for secret in secrets:
        if not secret:
            continue
        mac = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
        text = mac.hex() if encoding == "hex" else base64.b64encode(mac).decode("ascii")
        expected = (prefix + text).encode("ascii")
        if len(received) == len(expected) and hmac.compare_digest(received, expected):
            return True
    return False


def dig(data: Any, *path: str) -> Any:
    """`data[path[0]][path[1]]...`, or None as soon as a step is missing or not an object."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def text(value: Any) -> str | None:
    """`value` if it is a non-empty string (JSON `null`, numbers and "" become None)."""
    return value if isinstance(value, str) and value else None


def first_text(*values: Any) -> str | None:
    """The first non-empty string among `values` (the original's `a || b || c`)."""
    for value in values:
        found = text(value)
        if found is not None:
            return found
    return None


def integer(value: Any) -> int | None:
    """`value` if it is a JSON integer (not a bool)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def names(items: Any) -> tuple[str, ...]:
    """The `name` of each object in a JSON list (GitHub and Linear labels)."""
    if not isinstance(items, list):
        return ()
    return tuple(name for item in items if (name := text(dig(item, "name"))) is not None)
