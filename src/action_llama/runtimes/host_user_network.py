"""The network of a host-user run, from its `[network]` policy.

A process of the host cannot be put on another network, so the policy is enforced for the
run's OS user: iptables rejects everything that user sends except the project's egress proxy,
the gateway and loopback services the allow list names (`egress.firewall`), and the run's
proxy variables carry a secret of its own, which tells the proxy which run a connection is.
This needs root (iptables); without it the run is refused, with the fix, rather than run
unchecked. Without Docker (no proxy) the user is still restricted, to the gateway alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from action_llama.errors import RunError, RuntimeUnavailable
from action_llama.runtimes.docker_network import gateway_port

if TYPE_CHECKING:
    from action_llama.egress.policy import AgentPolicy
    from action_llama.runtimes.base import RunSpec


@dataclass(frozen=True)
class HostNetworkPlan:
    env: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def cannot_enforce(policy: AgentPolicy, why: str) -> RunError:
    return RunError(
        f"[network] of agent {policy.agent} cannot be enforced for host-user runs here: {why}.",
        hint=f"Run al as root (it restricts the agent's OS user with iptables), or set "
        f'[network] mode = "open" in {policy.file} to run it unchecked.',
    )


def plan_host_network(spec: RunSpec, uid: int) -> HostNetworkPlan:
    """Restrict the run's user and give it its proxy variables; RunError when impossible."""
    from action_llama.egress import firewall
    from action_llama.egress.deploy import project_id
    from action_llama.egress.proxy import PROXY_PORT
    from action_llama.egress.service import LOOPBACK_NAMES, ProjectEgress

    policy = spec.network
    if policy is None or policy.mode == "open":
        return HostNetworkPlan()
    why = firewall.available()
    if why is not None:
        raise cannot_enforce(policy, why)
    gateway = gateway_port(spec)
    try:
        from action_llama.engine import connect

        client = connect()
    except RuntimeUnavailable as exc:
        loopback = sorted({p for r in policy.rules if r.pattern in LOOPBACK_NAMES for p in r.ports})
        try:
            firewall.guard_user(
                uid, project_id(Path(spec.project)), None, PROXY_PORT, gateway, loopback
            )
        except firewall.FirewallError as error:
            raise cannot_enforce(policy, str(error)) from None
        return HostNetworkPlan(
            notes=(
                f"egress: no proxy without Docker ({exc.message}); this run has no network "
                "but the gateway. See: al doctor",
            )
        )
    try:
        attached = ProjectEgress(client, spec.project).attach_host_user(
            spec.run_id, policy, gateway, uid
        )
    except firewall.FirewallError as exc:
        raise cannot_enforce(policy, str(exc)) from None
    return HostNetworkPlan(env=attached.env, notes=attached.notes)


def release_host_network(project: str, run_id: str) -> None:
    if project:
        from action_llama.egress.service import release_run

        release_run(Path(project), run_id)
