"""Providers by `[webhooks.<source>] type`, imported lazily, and where their secrets live."""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from action_llama.credentials.refs import CredentialRef

if TYPE_CHECKING:
    from action_llama.config.project import WebhookSource
    from action_llama.credentials.store import CredentialStore
    from action_llama.webhooks.base import Provider

PROVIDERS = {
    "github": "action_llama.webhooks.github:GitHubProvider",
    "sentry": "action_llama.webhooks.sentry:SentryProvider",
    "linear": "action_llama.webhooks.linear:LinearProvider",
    "mintlify": "action_llama.webhooks.mintlify:MintlifyProvider",
    "discord": "action_llama.webhooks.discord:DiscordProvider",
    "twitter": "action_llama.webhooks.twitter:TwitterProvider",
    "generic": "action_llama.webhooks.generic:GenericProvider",
    "test": "action_llama.webhooks.generic:TestProvider",
}


if TYPE_CHECKING:
    # Never run: makes mypy check each provider against the Provider protocol.
    from action_llama.webhooks.discord import DiscordProvider
    from action_llama.webhooks.generic import GenericProvider, TestProvider
    from action_llama.webhooks.github import GitHubProvider
    from action_llama.webhooks.linear import LinearProvider
    from action_llama.webhooks.mintlify import MintlifyProvider
    from action_llama.webhooks.sentry import SentryProvider
    from action_llama.webhooks.twitter import TwitterProvider

    _CONFORMING: tuple[Provider, ...] = (
        GitHubProvider(),
        SentryProvider(),
        LinearProvider(),
        MintlifyProvider(),
        DiscordProvider(),
        TwitterProvider(),
        GenericProvider(),
        TestProvider(),
    )


@cache
def get_provider(kind: str) -> Provider:
    """The (shared, stateless) provider for source type `kind`; KeyError for an unknown type."""
    module_name, _, attr = PROVIDERS[kind].partition(":")
    provider: Provider = getattr(importlib.import_module(module_name), attr)()
    return provider


def secret_ref(source: WebhookSource) -> CredentialRef | None:
    """The credential instance that verifies `source`'s deliveries (None for the test type)."""
    kind = get_provider(source.type).credential_type
    return CredentialRef(kind, source.credential) if kind else None


def load_secrets(source: WebhookSource, store: CredentialStore) -> list[str]:
    """The secrets (or Discord public keys) that verify `source`; [] when none is stored.

    An empty list is not an error here: `intake` then accepts deliveries only if the source
    says `allowUnsigned = true`, and records why it refused them otherwise.
    """
    provider = get_provider(source.type)
    ref = secret_ref(source)
    if ref is None or provider.credential_field is None:
        return []
    # `has` still raises for an unreadable store: that is a problem to report, not "unsigned".
    if not store.has(ref):
        return []
    value = store.read(ref).get(provider.credential_field, "")
    return [value] if value else []
