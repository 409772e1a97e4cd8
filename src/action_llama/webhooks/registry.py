"""Providers by `[webhooks.<source>] type`, imported lazily, and where their secrets live."""

from __future__ import annotations

import importlib
import os
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
    "slack": "action_llama.webhooks.slack:SlackProvider",
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
    from action_llama.webhooks.slack import SlackProvider
    from action_llama.webhooks.twitter import TwitterProvider

    _CONFORMING: tuple[Provider, ...] = (
        GitHubProvider(),
        SentryProvider(),
        LinearProvider(),
        MintlifyProvider(),
        DiscordProvider(),
        TwitterProvider(),
        SlackProvider(),
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
    key = (str(store.root), ref.type, ref.instance, provider.credential_field)
    stamp = _stamp(os.path.join(store.root, ref.type, ref.instance), provider.credential_field)
    cached = _SECRETS.get(key)
    if stamp is not None and cached is not None and cached[0] == stamp:
        return list(cached[1])
    # `has` still raises for an unreadable store: that is a problem to report, not "unsigned".
    if not store.has(ref):
        return []
    value = store.read(ref).get(provider.credential_field, "")
    found = [value] if value else []
    if stamp is not None:
        _SECRETS[key] = (stamp, tuple(found))
    return found


#: Secrets already read, by (store root, type, instance, field), with the stamp they had.
#: Every delivery needs its source's secret; reading the store (a directory listing and a
#: file per field) on each one was a large share of the gateway's time per delivery.
_SECRETS: dict[tuple[str, str, str, str], tuple[tuple[int, ...], tuple[str, ...]]] = {}


def _stamp(instance: str, field: str) -> tuple[int, ...] | None:
    """What changes when the credential is rewritten, removed or edited in place.

    The store keeps `<root>/<type>/<instance>/<field>` and replaces an instance as a whole by
    renaming a new directory over it (credentials/store.py), which changes the directory's
    inode; an edit in place changes the file's mtime or size. None when either is missing or
    unreadable: then the store is read (and reports the problem) as before.
    """
    try:
        folder = os.stat(instance)
        file = os.stat(os.path.join(instance, field))
    except OSError:
        return None
    return (folder.st_ino, folder.st_mtime_ns, file.st_ino, file.st_mtime_ns, file.st_size)
