"""Webhook providers: verify, read and route deliveries, with no HTTP server in here.

The gateway hands `intake` a source name, the raw body bytes and the headers, and gets a
`Receipt` back: matched agents and the `WebhookContext` their runs are told, or why none
ran; the same `Receipt` is what the project's state stores and the operator lists.
Providers (github, sentry, linear, mintlify, discord, twitter, slack, generic, test) are
looked up by source type with `get_provider` and imported only when first used. The generic
source's wire format is documented in `action_llama.webhooks.generic`.
"""

from __future__ import annotations

from action_llama.errors import WebhookRejected
from action_llama.webhooks.base import Ignored, Provider, ReceiptReason
from action_llama.webhooks.context import WebhookContext, WebhookEvent
from action_llama.webhooks.intake import MAX_BODY, intake, replay
from action_llama.webhooks.match import MatchResult, match, match_all, unsupported_filters
from action_llama.webhooks.receipt import MAX_STORED_BODY, Receipt, ReceiptStatus
from action_llama.webhooks.registry import PROVIDERS, get_provider, load_secrets, secret_ref

__all__ = [
    "MAX_BODY",
    "MAX_STORED_BODY",
    "PROVIDERS",
    "Ignored",
    "MatchResult",
    "Provider",
    "Receipt",
    "ReceiptReason",
    "ReceiptStatus",
    "WebhookContext",
    "WebhookEvent",
    "WebhookRejected",
    "get_provider",
    "intake",
    "load_secrets",
    "match",
    "match_all",
    "replay",
    "secret_ref",
    "unsupported_filters",
]
