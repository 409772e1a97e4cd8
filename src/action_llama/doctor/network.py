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
            f'mode = "open" ({where}): runs may connect anywhere and nothing is checked '
            "(their brokered keys and tokens still go through the egress proxy, which alone "
            "holds the real values)",
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


def check_egress_state(project: Project, *, fix: bool = False) -> Check | None:
    """What of the project's egress exists, and what is stray; `fix` removes the strays (and
    the project's whole egress when nothing of the project runs: the next run makes it
    again). None without a Docker engine to ask."""
    from action_llama.egress.maintenance import (
        inspect_state,
        remove_strays,
        sweep_registrations,
        teardown,
    )
    from action_llama.engine import connect
    from action_llama.errors import RuntimeUnavailable

    try:
        client = connect()
    except RuntimeUnavailable:
        return None
    users = {a.name for a in project.agents.values() if a.network.mode != "open"}
    found = inspect_state(client, project.root, users)
    strays = found.orphans + [f"network {n}" for n in found.stray_networks]
    live = _live_runs(project)
    idle = live is not None and not live and not _scheduler_runs(project)
    if fix:
        removed = remove_strays(client, found)
        if live is not None:
            sweep_registrations(project.root, live)
        if idle and (found.proxy or found.networks):
            removed += teardown(client, project.root)
            removed.append("(idle: the next run makes it again)")
        detail = f"removed {', '.join(removed)}" if removed else "nothing stray"
        return Check("egress", "ok", detail)
    if strays:
        return Check(
            "egress",
            "warn",
            f"left behind: {', '.join(strays)}",
            "al doctor --fix removes them",
        )
    if found.proxy:
        use = f"{found.registered} run{'s' * (found.registered != 1)} registered"
        return Check(
            "egress", "ok", f"proxy {found.proxy} and {len(found.networks)} networks; {use}"
        )
    return Check("egress", "ok", "no proxy yet (the first checked run starts it)")


def _live_runs(project: Project) -> set[str] | None:
    """Runs of the project some runtime still has (asked in a thread of its own: `al start`
    makes these checks from inside its event loop)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from action_llama.runtimes.registry import live_run_ids

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, live_run_ids(project.root)).result()


def _scheduler_runs(project: Project) -> bool:
    from action_llama.daemon.client import find_daemon

    return find_daemon(project.root) is not None


def check_brokering(agent: Agent) -> Check | None:
    """A warning for credentials the agent takes raw (`raw_credentials`): its runs hold the
    real values, which an agent talked into it can send anywhere it may reach."""
    if not agent.config.raw_credentials:
        return None
    raw = ", ".join(agent.config.raw_credentials)
    return Check(
        f"raw credentials {agent.name}",
        "warn",
        f"raw_credentials = [{raw}]: its runs hold these values themselves, not placeholders; "
        "a run talked into it can send them to any host it may reach",
        f"Remove them from raw_credentials in agents/{agent.name}/config.toml unless a tool "
        "needs the value itself (al creds types says how each type is brokered).",
    )
