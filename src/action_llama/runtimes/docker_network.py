"""The network of a run's container, from its `[network]` policy.

- `open` (or no policy): the default bridge, as before egress control; the host is
  `host.docker.internal` and the gateway `al-gateway`, both the bridge's gateway address.
  A run that holds brokered secrets joins the project's outside network instead, where the
  proxy is, with its proxy variables set (`ProjectEgress.attach_open`); when the proxy cannot
  be had it runs on the bridge all the same, with a note that its brokered secrets will not
  work (they are placeholders either way: nothing real is ever in the run).
- `allowlist` and `none`: the network namespace of a holder of an address on the agent's
  internal network, through the project's egress component (`action_llama.egress.service`):
  the proxy is the only way out, the only resolver, and `al-gateway` (it relays the gateway).
- When that cannot be set up: no network at all (Docker's `none`), and a note for the run's
  log saying why. Never an open one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from action_llama.egress.names import GATEWAY_NAME

if TYPE_CHECKING:
    import docker

    from action_llama.runtimes.base import RunSpec

#: How runs name the host; the engine maps it to the bridge's gateway address.
CONTAINER_HOST = "host.docker.internal"


@dataclass
class NetworkPlan:
    """What the container is created with, network-wise."""

    network_mode: str | None = None
    extra_hosts: dict[str, str] = field(default_factory=dict)
    dns: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def gateway_port(spec: RunSpec) -> int | None:
    """The gateway's port on the host, from the GATEWAY_URL the runtime gave the run."""
    url = spec.env.get("GATEWAY_URL")
    return urlsplit(url).port if url else None


def plan_network(client: docker.DockerClient | None, spec: RunSpec) -> NetworkPlan:
    """The network for the run of `spec`; `client`: docker-py, for making what the project's
    egress lacks (None: connected then)."""
    policy = spec.network
    if policy is None or policy.mode == "open":
        return _open_network(client, spec)
    from action_llama.egress.service import EgressUnavailable, ProjectEgress

    try:
        attached = ProjectEgress(client, spec.project).attach_container(
            spec.run_id, policy, gateway_port(spec), spec.broker
        )
    except EgressUnavailable as exc:
        return NetworkPlan(
            network_mode="none",
            notes=(
                f"egress: {exc}; this run has no network at all (its [network] mode is "
                f'"{policy.mode}", and al never runs it unchecked). See: al doctor',
            ),
        )
    return NetworkPlan(network_mode=attached.network_mode, env=dict(attached.env))


def _open_network(client: docker.DockerClient | None, spec: RunSpec) -> NetworkPlan:
    hosts = {CONTAINER_HOST: "host-gateway", GATEWAY_NAME: "host-gateway"}
    if spec.network is None or spec.broker is None or not spec.broker.needs_proxy:
        return NetworkPlan(extra_hosts=hosts)
    from action_llama.egress.service import EgressUnavailable, ProjectEgress

    try:
        attached = ProjectEgress(client, spec.project).attach_open(
            spec.run_id, spec.network, spec.broker
        )
    except EgressUnavailable as exc:
        return NetworkPlan(extra_hosts=hosts, notes=(unbrokered_note(str(exc)),))
    return NetworkPlan(network_mode=attached.network, extra_hosts=hosts, env=attached.env)


def unbrokered_note(why: str) -> str:
    return (
        f"egress: {why}; this open run's brokered credentials and models will not work (it "
        "holds placeholders, which only the proxy swaps). See: al doctor"
    )


def release_network(project: str, run_id: str) -> None:
    """Give back the address the run claimed on its egress network (if it claimed one)."""
    if project:
        from action_llama.egress.service import release_run

        release_run(Path(project), run_id)
