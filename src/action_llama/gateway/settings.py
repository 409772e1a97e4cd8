"""What the gateway needs to know about the project, resolved once per (re)load, and its API key.

The daemon builds a `GatewaySettings` from the loaded project (`GatewaySettings.from_project`)
and hands `create_app` either the settings or a function returning the current ones, so a hot
reload (new webhook sources, agents, `maxCallDepth`) takes effect on the next request.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import SecretStr

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.layout import API_KEY_FIELD, API_KEY_TYPE
from action_llama.state.locks import DEFAULT_TTL

if TYPE_CHECKING:
    from action_llama.config.agent import WebhookTrigger
    from action_llama.config.project import WebhookSource
    from action_llama.project import Project

#: Where the operator API's bearer key lives in the credential store.
API_KEY_REF = CredentialRef(API_KEY_TYPE)


@dataclass(frozen=True)
class GatewaySettings:
    """The project facts the gateway's routes use.

    Attributes:
        webhooks: the `[webhooks.<source>]` tables, by source name.
        agents: every agent of the project, with its `[[webhooks]]` entries. An agent named
            here can be called by `al-subagent`; unknown names are refused with 404.
        disabled: agents that cannot take work (scale = 0): webhooks do not match them and
            calls to them are refused.
        credentials: the store holding webhook secrets (and the API key, see `api_key`).
        max_call_depth: `maxCallDepth`: how deep agent-call chains may go.
        lock_ttl: `resourceLockTimeout` in seconds: the TTL of a lock taken without `ttl`.
        api_key: the operator API's bearer key. None: read it from the credential store on
            every request (`gateway_api_key`, field `key`), so it can be rotated live.
        project: the loaded project these settings come from (the dashboard shows each
            agent's configuration); None in tests that need none.
    """

    webhooks: Mapping[str, WebhookSource] = field(default_factory=dict)
    agents: Mapping[str, Sequence[WebhookTrigger]] = field(default_factory=dict)
    disabled: frozenset[str] = frozenset()
    credentials: CredentialStore = field(default_factory=CredentialStore)
    max_call_depth: int = 3
    lock_ttl: float = DEFAULT_TTL
    api_key: SecretStr | None = None
    project: Project | None = None

    @classmethod
    def from_project(
        cls,
        project: Project,
        credentials: CredentialStore,
        *,
        api_key: SecretStr | None = None,
    ) -> GatewaySettings:
        """The settings of a loaded project (scale = 0 agents are `disabled`)."""
        config = project.config
        return cls(
            webhooks=dict(config.webhooks),
            agents={name: tuple(a.config.webhooks) for name, a in project.agents.items()},
            disabled=project.disabled,
            credentials=credentials,
            max_call_depth=config.max_call_depth,
            lock_ttl=float(config.resource_lock_timeout),
            api_key=api_key,
            project=project,
        )

    def webhook_agents(self) -> dict[str, Sequence[WebhookTrigger]]:
        """The agents deliveries are matched against: those with entries that can take work."""
        return {
            name: triggers
            for name, triggers in self.agents.items()
            if triggers and name not in self.disabled
        }

    def disabled_listeners(self, source: str) -> list[str]:
        """Agents with entries for `source` that take no work now (scale = 0)."""
        return [
            name
            for name, triggers in self.agents.items()
            if name in self.disabled and any(t.source == source for t in triggers)
        ]

    def operator_key(self) -> str | None:
        """The current operator API key, or None when none has been made (`al doctor` makes it).

        Raises CredentialMissing when the credential store cannot be read.
        """
        if self.api_key is not None:
            return self.api_key.get_secret_value() or None
        if not self.credentials.has(API_KEY_REF):
            return None
        return self.credentials.read(API_KEY_REF).get(API_KEY_FIELD) or None


def ensure_api_key(store: CredentialStore) -> str:
    """The operator API key in `store`, made first (32 random bytes, base64url) if missing."""
    if store.has(API_KEY_REF):
        existing = store.read(API_KEY_REF).get(API_KEY_FIELD)
        if existing:
            return existing
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    store.write(API_KEY_REF, {API_KEY_FIELD: key})
    return key
