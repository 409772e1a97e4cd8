"""Discord interactions: Ed25519 signature over `X-Signature-Timestamp` + raw body.

The "secrets" are the application's public keys (`discord_bot` field `public_key`, 64 hex
characters); `X-Signature-Ed25519` is the 128-hex-character signature. Verification needs
the `cryptography` package or PyNaCl; with neither installed, every signed Discord delivery
is rejected with a message saying what to install (al does not depend on either).

A PING (interaction type 1) is answered with `{"type": 1}` and starts nothing. In the
context, `repo` holds the guild id and `branch` the channel id (as in the original), and
the `title` of a command is the command's name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from action_llama.errors import WebhookRejected
from action_llama.webhooks.base import (
    Ignored,
    dig,
    first_text,
    header,
    integer,
    load_object,
    text,
)
from action_llama.webhooks.context import WebhookEvent

PING = 1
#: Interaction types by number (https://discord.com/developers/docs/interactions).
EVENTS = {2: "application_command", 3: "message_component", 4: "autocomplete", 5: "modal_submit"}
#: Events whose `title` is a command name (the `commands` filter looks only at these).
COMMAND_EVENTS = ("application_command", "autocomplete")

Verifier = Callable[[bytes, bytes, bytes], bool]


def _cryptography_verifier() -> Verifier:
    ed25519 = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ed25519")
    invalid = importlib.import_module("cryptography.exceptions").InvalidSignature

    def check(key: bytes, signature: bytes, message: bytes) -> bool:
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
        except (invalid, ValueError):
            return False
        return True

    return check


def _nacl_verifier() -> Verifier:
    signing = importlib.import_module("nacl.signing")
    exceptions = importlib.import_module("nacl.exceptions")

    def check(key: bytes, signature: bytes, message: bytes) -> bool:
        try:
            signing.VerifyKey(key).verify(message, signature)
        except (exceptions.CryptoError, ValueError, TypeError):
            return False
        return True

    return check


def ed25519_verifier() -> Verifier:
    """`check(public_key, signature, message)` from whichever Ed25519 library is installed.

    Raises WebhookRejected (validation_failed) naming the package to install when none is.
    """
    for factory in (_cryptography_verifier, _nacl_verifier):
        try:
            return factory()
        except ImportError:
            continue
    raise WebhookRejected(
        "Discord signatures are Ed25519, and neither the cryptography package nor PyNaCl is "
        "installed, so this delivery cannot be verified.",
        reason="validation_failed",
        hint="Install one into al's environment: pip install cryptography",
    )


def _unhex(value: str | None, size: int) -> bytes | None:
    if value is None or len(value) != 2 * size:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def _fields(kind: int, data: Any) -> dict[str, Any]:
    if kind in (2, 4):
        command = text(dig(data, "name")) or "unknown"
        options = dig(data, "options")
        body = None
        if kind == 2 and isinstance(options, list) and options:
            body = ", ".join(f"{dig(o, 'name')}: {dig(o, 'value')}" for o in options)
        return {"action": command, "title": command, "body": body}
    if kind == 3:
        component = dig(data, "component_type")
        return {
            "action": str(component) if component is not None else "unknown",
            "title": text(dig(data, "custom_id")) or "component",
        }
    custom_id = text(dig(data, "custom_id")) or "modal"
    return {"action": custom_id, "title": custom_id}


class DiscordProvider:
    """Discord application interactions (slash commands, components, modals)."""

    type = "discord"
    credential_type = "discord_bot"
    credential_field = "public_key"
    signature_headers = ("x-signature-ed25519",)

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> bool:
        keys = [key for s in secrets if (key := _unhex(s.strip(), 32)) is not None]
        if not keys:
            return False
        check = ed25519_verifier()
        signature = _unhex(header(headers, "x-signature-ed25519"), 64)
        timestamp = header(headers, "x-signature-timestamp")
        if signature is None or not timestamp:
            return False
        message = timestamp.encode("utf-8") + body
        return any(check(key, signature, message) for key in keys)

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        return header(headers, "x-interaction-id") or None

    def parse(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent | Ignored:
        data = load_object(body, headers)
        kind = integer(data.get("type"))
        if kind == PING:
            return Ignored("ping (Discord checking the endpoint)", reply={"type": 1})
        event = EVENTS.get(kind) if kind is not None else None
        if kind is None or event is None:
            return Ignored(f"unknown Discord interaction type {data.get('type')!r}")
        user = dig(data, "member", "user") or data.get("user")
        return WebhookEvent(
            source=self.type,
            event=event,
            repo=text(data.get("guild_id")) or "",
            sender=text(dig(user, "username")) or "unknown",
            branch=first_text(data.get("channel_id")),
            **_fields(kind, data.get("data")),
        )
