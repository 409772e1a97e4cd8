"""One delivery in, one `Receipt` out: size cap, signature, parse, and the agents it fires.

`intake` raises nothing for a bad delivery: every outcome is a receipt whose `reason` says
what happened, so the gateway can store it and answer (413 too_large, 401
validation_failed, 400 parse_error, 200 otherwise) and the operator can see why an agent
did not run. Delivery-id dedupe needs the receipts already stored, so it is the store's
(`state.Receipts.insert`). What is kept of a refused delivery is decided here: no body when
it was too large or not authenticated, and no delivery id (a forged one must not block the
real one).

Signatures: a source whose credential holds secrets only accepts deliveries signed by one
of them. A source with no secret accepts unsigned deliveries only when its own
`[webhooks.<source>]` table says `allowUnsigned = true` (looked up by source name, not
provider type), and such deliveries are matched against bindings like any other.

Replay (`replay`) is an operator action: it re-reads a stored receipt's body and headers
(signature headers were stripped before storing, so there is nothing to re-verify) and
does NOT verify a signature. It must only be reachable by the authenticated operator.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from action_llama.errors import WebhookRejected
from action_llama.webhooks.base import Ignored
from action_llama.webhooks.context import iso_now
from action_llama.webhooks.match import match_all
from action_llama.webhooks.receipt import MAX_STORED_BODY, Receipt
from action_llama.webhooks.registry import get_provider, secret_ref

if TYPE_CHECKING:
    from action_llama.config.agent import WebhookTrigger
    from action_llama.config.project import WebhookSource
    from action_llama.webhooks.base import Provider

#: Larger bodies are refused (the gateway should also refuse a larger Content-Length).
MAX_BODY = 10 * 1024 * 1024
#: Never stored with a receipt: every provider's signature headers, and credentials.
STRIPPED_HEADERS = frozenset(
    {
        "x-hub-signature",
        "x-hub-signature-256",
        "sentry-hook-signature",
        "linear-signature",
        "x-mintlify-signature",
        "mintlify-signature",
        "x-signature-ed25519",
        "x-twitter-webhooks-signature",
        "x-slack-signature",
        "x-al-signature-256",
        "authorization",
        "proxy-authorization",
        "cookie",
    }
)


def stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` with lower-case names, minus signatures and credentials."""
    return {k.lower(): v for k, v in headers.items() if k.lower() not in STRIPPED_HEADERS}


def intake(
    source_name: str,
    source_config: WebhookSource,
    body: bytes,
    headers: Mapping[str, str],
    agents: Mapping[str, Sequence[WebhookTrigger]],
    secrets: Sequence[str],
    *,
    now: datetime | None = None,
) -> Receipt:
    """Check, read and route one delivery to source `source_name`.

    Args:
        source_name: the `<name>` of `[webhooks.<name>]` the delivery was posted to.
        source_config: that table.
        body: the raw request body, exactly as received (signatures cover these bytes).
        headers: the request headers (any case).
        agents: each agent that may run, with its `[[webhooks]]` entries (entries for other
            sources are skipped); leave out agents that cannot take work.
        secrets: the source's secrets (Discord: public keys), from `load_secrets`.
        now: the time of receipt (default: now).
    """
    provider = get_provider(source_config.type)
    receipt = Receipt(
        id=str(uuid.uuid4()),
        source=source_name,
        provider=provider.type,
        received_at=(now or datetime.now(UTC)).timestamp(),
        event_summary=provider.type,
        headers=stored_headers(headers),
    )
    if len(body) > MAX_BODY:
        size = f"{len(body) / 1024 / 1024:.1f} MiB"
        return replace(receipt, reason="too_large", detail=f"body of {size} is over 10 MiB")
    refused = _verify(provider, source_name, source_config, body, headers, secrets)
    if refused is not None:
        return replace(receipt, reason="validation_failed", detail=refused)
    receipt = replace(
        receipt,
        delivery_id=provider.delivery_id(headers, body),
        body=body[:MAX_STORED_BODY],
        body_truncated=len(body) > MAX_STORED_BODY,
    )
    unsigned = provider.credential_type is not None and not secrets
    return _route(receipt, provider, body, headers, agents, unsigned=unsigned)


def replay(
    original: Receipt,
    source_config: WebhookSource,
    agents: Mapping[str, Sequence[WebhookTrigger]],
    *,
    now: datetime | None = None,
) -> Receipt:
    """Route a stored delivery again, WITHOUT verifying a signature (operator action only).

    The new receipt has its own id, no delivery id (the original holds it), the summary
    `replay:<summary>` and `replay_of` set. Raises WebhookRejected when the original body
    was not kept whole or the source's type has changed since.
    """
    if not original.replayable:
        raise WebhookRejected(
            f"Receipt {original.id} has no stored payload.",
            reason="parse_error",
            hint=f"Only bodies up to {MAX_STORED_BODY // 1024} KiB are kept for replay.",
        )
    provider = get_provider(source_config.type)
    if original.provider and provider.type != original.provider:
        raise WebhookRejected(
            f"Source {original.source} is now {provider.type}, but receipt {original.id} "
            f"came from {original.provider}.",
            reason="parse_error",
        )
    receipt = replace(
        original,
        id=str(uuid.uuid4()),
        provider=provider.type,
        received_at=(now or datetime.now(UTC)).timestamp(),
        delivery_id=None,
        event_summary=provider.type,
        status="dead-letter",
        reason=None,
        detail="",
        matched_agents=(),
        unmatched={},
        context=None,
        reply=None,
        replay_of=original.id,
    )
    routed = _route(
        receipt, provider, original.body, original.headers, agents, unsigned=receipt.unsigned
    )
    return replace(routed, event_summary=f"replay:{routed.event_summary}")


def _verify(
    provider: Provider,
    source_name: str,
    source_config: WebhookSource,
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
) -> str | None:
    """Why the delivery's signature is not accepted, or None when it is."""
    if provider.credential_type is None:
        return None
    if not secrets:
        if source_config.allow_unsigned:
            return None
        return (
            f"source {source_name} has no signing secret ({secret_ref(source_config)}) and "
            f"does not set allowUnsigned = true"
        )
    try:
        if provider.verify(body, headers, secrets):
            return None
    except WebhookRejected as exc:
        return f"{exc.message} {exc.hint or ''}".strip()
    present = [h for h in provider.signature_headers if h in {k.lower() for k in headers}]
    if not present:
        return f"no signature header ({' or '.join(provider.signature_headers)})"
    return f"{present[0]} does not match the secret of source {source_name}"


def _route(
    receipt: Receipt,
    provider: Provider,
    body: bytes,
    headers: Mapping[str, str],
    agents: Mapping[str, Sequence[WebhookTrigger]],
    *,
    unsigned: bool,
) -> Receipt:
    # One `replace` per outcome: on a busy gateway each copy of this wide dataclass counted.
    try:
        parsed = provider.parse(body, headers)
    except WebhookRejected as exc:
        # Refused: its delivery id is not claimed (a broken delivery must not block a retry).
        return replace(
            receipt,
            reason=exc.reason,
            detail=exc.message,
            unsigned=unsigned,
            delivery_id=None,
            event_summary=exc.summary or receipt.event_summary,
        )
    if isinstance(parsed, Ignored):
        return replace(
            receipt,
            status="processed",
            reason="ignored",
            detail=parsed.reason,
            reply=parsed.reply,
            unsigned=unsigned,
            event_summary=parsed.summary or receipt.event_summary,
        )
    context = parsed.with_receipt(
        receipt.id, iso_now(datetime.fromtimestamp(receipt.received_at, UTC))
    )
    parsed_fields: dict[str, Any] = {
        "event_summary": parsed.summary,
        "context": context,
        "unsigned": unsigned,
    }
    matched: list[str] = []
    unmatched: dict[str, str] = {}
    for agent, triggers in agents.items():
        if not any(t.source == receipt.source for t in triggers):
            continue
        result = match_all(parsed, receipt.source, triggers, provider.type)
        if result.matched:
            matched.append(agent)
        else:
            unmatched[agent] = result.reason
    if matched:
        return replace(
            receipt,
            status="processed",
            detail=f"matched {', '.join(matched)}",
            matched_agents=tuple(matched),
            unmatched=unmatched,
            **parsed_fields,
        )
    if not unmatched:
        detail = f"no agent listens to source {receipt.source}"
    else:
        detail = "no agent matched: " + "; ".join(f"{a}: {r}" for a, r in unmatched.items())
    return replace(receipt, reason="no_match", detail=detail, unmatched=unmatched, **parsed_fields)
