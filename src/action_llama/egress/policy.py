"""An agent's effective allow list: its `[network]` entries plus what it needs implicitly.

Implicit entries, under `mode = "allowlist"` only:

- the API host of each of its models (the provider's, or the host and port of `base_url`);
- the hosts each credential it lists exists for (`CredentialType.hosts`, `al creds types`);
- the scheduler's gateway, which is not a host entry: runs reach it as `al-gateway` (containers)
  or on loopback (host users), whatever the mode.

`mode = "none"` keeps nothing but the gateway; `mode = "open"` controls nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from action_llama.egress.rules import PRESETS, Policy, Rule, fix_for, parse_entry

if TYPE_CHECKING:
    from action_llama.config import ModelConfig
    from action_llama.project import Agent

#: API hosts of providers reached at their own endpoint (no `base_url`). Groq, xAI, Mistral
#: and Google are reached at their OpenAI-compatible endpoints (agent/models.py), same hosts.
PROVIDER_HOSTS = {
    "anthropic": "api.anthropic.com",
    "openai": "api.openai.com",
    "openrouter": "openrouter.ai",
    "groq": "api.groq.com",
    "xai": "api.x.ai",
    "mistral": "api.mistral.ai",
    "google": "generativelanguage.googleapis.com",
}
#: How runs name the scheduler's gateway (see `al doctor`).
GATEWAY_ENTRY = "al-gateway (the scheduler's gateway, while al start runs)"


@dataclass(frozen=True)
class AgentPolicy:
    """What one agent's runs may reach, each rule knowing where it comes from."""

    agent: str
    mode: str
    rules: tuple[Rule, ...]
    #: The file to edit to change it: the agent's config.toml when it has `[network]`.
    file: str

    def policy(self) -> Policy:
        return Policy(self.mode, self.rules)

    def fix_for(self, host: str, port: int) -> str:
        """The sentence of a denied connection's log line that says how to allow it."""
        return fix_for(self.mode, self.file, host, port)


def _model_rule(name: str, model: ModelConfig) -> Rule | None:
    if model.base_url:
        parts = urlsplit(model.base_url)
        if not parts.hostname:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return Rule(parts.hostname.lower(), (port,), f"model {name} (base_url)")
    host = PROVIDER_HOSTS.get(model.provider)
    return Rule(host, (443,), f"model {name} ({model.provider})") if host else None


def _credential_rules(refs: list[str]) -> list[Rule]:
    from action_llama.credentials.types import BUILTIN

    rules = []
    for ref in refs:
        kind = BUILTIN.get(ref.partition(":")[0])
        if kind is None:
            continue
        source = f"credential {kind.name}"
        rules += [Rule(r.pattern, r.ports, source) for e in kind.hosts for r in parse_entry(e)]
    return rules


def _listed_rules(entries: list[str], file: str) -> list[Rule]:
    rules = []
    for entry in entries:
        preset = entry.strip().lower()
        source = f"{file} [network] preset {preset}" if preset in PRESETS else f"{file} [network]"
        rules += [Rule(r.pattern, r.ports, source) for r in parse_entry(entry)]
    return rules


def effective_policy(agent: Agent) -> AgentPolicy:
    """The agent's allow list, listed entries first, each destination once (its first source)."""
    network = agent.network
    rules: list[Rule] = []
    if network.mode == "allowlist":
        rules += _listed_rules(network.allow, agent.network_file)
        rules += [r for name, m in agent.models if (r := _model_rule(name, m)) is not None]
        rules += _credential_rules(agent.config.credentials)
    seen: set[tuple[str, tuple[int, ...]]] = set()
    unique = []
    for rule in rules:
        key = (rule.pattern, rule.ports)
        if key not in seen:
            seen.add(key)
            unique.append(rule)
    return AgentPolicy(agent.name, network.mode, tuple(unique), agent.network_file)
