"""What `al doctor` checks so that `[network]` can be enforced for agents of each runtime."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from action_llama.doctor.result import Check

if TYPE_CHECKING:
    from action_llama.project import Agent


def _checked(agents: Sequence[Agent]) -> list[Agent]:
    return [a for a in agents if a.network.mode != "open"]


def container_egress_checks(agents: Sequence[Agent]) -> list[Check]:
    """Container runs under `allowlist`/`none` need host firewall rules (root, iptables)."""
    from action_llama.egress import firewall

    checked = _checked(agents)
    if not checked:
        return []
    names = ", ".join(a.name for a in checked)
    why = firewall.available()
    if why is not None:
        return [
            Check(
                "egress containers",
                "fail",
                f"{why}: runs of {names} would get no network at all (never an unchecked one)",
                'Run al as root with iptables installed, or set [network] mode = "open" for '
                "agents that may run unchecked.",
            )
        ]
    return [Check("egress containers", "ok", f"enforced for {names} (proxy + firewall rules)")]


def host_user_egress_checks(agents: Sequence[Agent]) -> list[Check]:
    """Host-user runs under `allowlist`/`none` get a cgroup each, whose packets iptables
    restricts (root, iptables, cgroup v2); their proxy runs in Docker. Said plainly when any of
    it is missing."""
    from action_llama.egress import cgroups, firewall

    checked = _checked(agents)
    if not checked:
        return []
    names = ", ".join(a.name for a in checked)
    why = firewall.available() or (None if cgroups.root() else "no cgroup v2 hierarchy")
    if why is not None:
        return [
            Check(
                "egress host users",
                "fail",
                f"[network] cannot be enforced for host-user runs on this host: {why}. "
                f"Runs of {names} are refused rather than run unchecked.",
                'Run al as root, or set [network] mode = "open" in the config.toml of agents '
                "that may run unchecked.",
            )
        ]
    return [_proxy_check(names), *_bypass_checks(agents)]


def _proxy_check(names: str) -> Check:
    from action_llama.engine import connect
    from action_llama.errors import RuntimeUnavailable

    try:
        connect()
    except RuntimeUnavailable as exc:
        return Check(
            "egress host users",
            "warn",
            f"{exc.message}: without Docker there is no egress proxy, so runs of {names} get "
            "no network but the gateway (they are restricted all the same)",
            exc.hint,
        )
    return Check(
        "egress host users",
        "ok",
        f"enforced for {names}: each run reaches only the egress proxy and the gateway",
    )


def _bypass_checks(agents: Sequence[Agent]) -> list[Check]:
    """A way around the firewall that configuration opens: the Docker socket."""
    return [
        Check(
            f"egress {agent.name}",
            "warn",
            "its runs are in the docker group: they can start containers on any network, "
            "around its [network]",
            f"Remove docker from [runtime] groups in agents/{agent.name}/config.toml, or use a "
            "container agent.",
        )
        for agent in agents
        if "docker" in agent.config.runtime.groups and agent.network.mode != "open"
    ]
