"""The network of a host-user run, from its `[network]` policy.

A process of the host cannot be put on another network, so the run gets a cgroup of its own and
iptables rejects everything that cgroup sends except the project's egress proxy, the gateway
and loopback services the allow list names (`egress.firewall`, `egress.cgroups`); its proxy
variables carry a secret of its own, which tells the proxy which run a connection is. Only the
run's processes are restricted, not its OS user. This needs root (iptables, cgroups); without
it the run is refused, with the fix, rather than run unchecked. Without Docker (no proxy) the
run is still restricted, to the gateway alone. A run under `open` is not restricted; when it
holds brokered secrets its proxy variables still point at the proxy, which swaps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from action_llama.errors import RunError, RuntimeUnavailable
from action_llama.runtimes.docker_network import gateway_port, unbrokered_note

if TYPE_CHECKING:
    from action_llama.egress.policy import AgentPolicy
    from action_llama.runtimes.base import RunSpec


@dataclass(frozen=True)
class HostNetworkPlan:
    env: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    #: The run's cgroup to start it in (its `cgroup.procs`); None: no restriction.
    procs: Path | None = None

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` started inside the run's cgroup, when it has one."""
        if self.procs is None:
            return argv
        from action_llama.egress.cgroups import join_argv

        return join_argv(self.procs, argv)


def cannot_enforce(policy: AgentPolicy, why: str) -> RunError:
    return RunError(
        f"[network] of agent {policy.agent} cannot be enforced for host-user runs here: {why}.",
        hint=f"Run al as root (it restricts each run with iptables and a cgroup), or set "
        f'[network] mode = "open" in {policy.file} to run it unchecked.',
    )


def plan_host_network(spec: RunSpec) -> HostNetworkPlan:
    """Restrict the run and give it its proxy variables; RunError when that is impossible."""
    from action_llama.egress import cgroups, firewall
    from action_llama.egress.deploy import project_id
    from action_llama.egress.service import ProjectEgress, restrict_run

    policy = spec.network
    if policy is None or policy.mode == "open":
        return _open_plan(spec)
    why = firewall.available() or (
        None if cgroups.root() else "this host has no cgroup v2 hierarchy"
    )
    if why is not None:
        raise cannot_enforce(policy, why)
    gateway = gateway_port(spec)
    try:
        from action_llama.engine import connect

        client = connect()
    except (RuntimeUnavailable, ImportError) as exc:  # no engine, or no docker package
        why = exc.message if isinstance(exc, RuntimeUnavailable) else "no docker package"
        try:
            procs = restrict_run(project_id(Path(spec.project)), spec.run_id, policy, gateway, None)
        except firewall.FirewallError as error:
            raise cannot_enforce(policy, str(error)) from None
        note = (
            f"egress: no proxy without Docker ({why}); this run has no network but "
            "the gateway. See: al doctor"
        )
        return HostNetworkPlan(notes=(note,), procs=procs)
    try:
        attached = ProjectEgress(client, spec.project).attach_host_user(
            spec.run_id, policy, gateway, spec.broker
        )
    except firewall.FirewallError as exc:
        raise cannot_enforce(policy, str(exc)) from None
    return HostNetworkPlan(env=attached.env, notes=attached.notes, procs=attached.procs)


def _open_plan(spec: RunSpec) -> HostNetworkPlan:
    if spec.network is None or spec.broker is None or not spec.broker.needs_proxy:
        return HostNetworkPlan()
    from action_llama.egress.service import EgressUnavailable, ProjectEgress

    try:
        from action_llama.engine import connect

        attached = ProjectEgress(connect(), spec.project).attach_open(
            spec.run_id, spec.network, spec.broker
        )
    except RuntimeUnavailable as exc:
        return HostNetworkPlan(notes=(unbrokered_note(f"no proxy without Docker ({exc.message})"),))
    except EgressUnavailable as exc:
        return HostNetworkPlan(notes=(unbrokered_note(str(exc)),))
    return HostNetworkPlan(env=attached.env)


def release_host_network(project: str, run_id: str) -> None:
    if project:
        from action_llama.egress.service import release_host_run

        release_host_run(Path(project), run_id)
