"""`al doctor`'s view of each agent's `[network]`: its effective allow list, entry by entry,
with where each comes from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from action_llama.doctor.result import Check
from action_llama.egress.policy import GATEWAY_ENTRY, effective_policy

if TYPE_CHECKING:
    from action_llama.project import Agent, Project


def network_checks(project: Project) -> list[Check]:
    return [check_network(agent) for agent in project.agents.values()]


def check_network(agent: Agent) -> Check:
    """What the agent's runs may reach (a warning for `open`, and for a `none` that starves
    a model session)."""
    name = f"network {agent.name}"
    policy = effective_policy(agent)
    where = f"[network] of {policy.file}" if agent.config.network else "config.toml [network]"
    if policy.mode == "open":
        return Check(
            name,
            "warn",
            f'mode = "open" ({where}): runs may connect anywhere, nothing is checked',
            f'Set mode = "allowlist" in {policy.file} and list the hosts the agent needs.',
        )
    width = max([len(r.describe()) for r in policy.rules] + [10])
    lines = [f"{r.describe():<{width}}  {r.source}" for r in policy.rules]
    lines.append(GATEWAY_ENTRY)
    count = len(policy.rules)
    head = f"{policy.mode} ({where}): {count} entr{'y' if count == 1 else 'ies'}"
    if policy.mode == "none" and agent.script is None and agent.models:
        return Check(
            name,
            "warn",
            "\n".join([f'mode = "none" ({where}): only the gateway', *lines[-1:]]),
            f'Its models cannot be reached: use mode = "allowlist" in {policy.file} (model '
            "hosts are allowed without listing them).",
        )
    return Check(name, "ok", "\n".join([head, *lines]))
