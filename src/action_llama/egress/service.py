"""What runtimes ask of a project's egress: attach a run to it, and detach it at its end.

A container run under `allowlist` or `none` is attached like this: the project's proxy is
running (started when missing), the agent's internal network exists with the proxy on it and
the bridge's firewall rules in place, the run claims a free address on that network by
registering there, and its container is created on that network at that address, with the
proxy as its only DNS server and its proxy variables pointing at the proxy. Anything that
fails raises `EgressUnavailable`: the runtime then starts the run with no network at all.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from action_llama.egress.deploy import DeployError, Deployment, Network
from action_llama.egress.firewall import FirewallError, guard_bridge
from action_llama.egress.proxy import GATEWAY_NAME, PROXY_PORT
from action_llama.egress.registry import RUNS, Registration, register, unregister
from action_llama.layout import STATE_DIR

if TYPE_CHECKING:
    import docker

    from action_llama.egress.policy import AgentPolicy

EGRESS_DIR = "egress"
#: Hosts every run reaches without the proxy: its own loopback, and the gateway (which
#: the proxy relays itself, so a client needs no proxy support to use it).
NO_PROXY = f"{GATEWAY_NAME},localhost,127.0.0.1"
#: The ssh helper that opens a CONNECT tunnel through the proxy (in /app/bin).
SSH_HELPER = "al-proxy-connect"
GATEWAY_WAIT = 3.0


class EgressUnavailable(Exception):
    """The run's egress cannot be set up; the message says why, for the run's log."""


def state_of(project: Path) -> Path:
    return project / STATE_DIR / EGRESS_DIR


def proxy_env(proxy_url: str) -> dict[str, str]:
    """The variables that send ordinary clients (curl, git, pip, npm, Python's, Node's) and
    git over ssh through the proxy."""
    return {
        "HTTP_PROXY": proxy_url,
        "http_proxy": proxy_url,
        "HTTPS_PROXY": proxy_url,
        "https_proxy": proxy_url,
        "NO_PROXY": NO_PROXY,
        "no_proxy": NO_PROXY,
        "NODE_USE_ENV_PROXY": "1",
        "GIT_SSH_COMMAND": f'ssh -o ProxyCommand="{SSH_HELPER} %h %p"',
    }


@dataclass(frozen=True)
class ContainerAttachment:
    """How to create a run's container on its agent's network."""

    network: str
    address: str
    key: str
    env: dict[str, str] = field(default_factory=dict)
    extra_hosts: dict[str, str] = field(default_factory=dict)
    dns: tuple[str, ...] = ()


def registration_for(
    run_id: str,
    policy: AgentPolicy,
    gateway: int | None,
    *,
    address: str | None = None,
    token_sha256: str | None = None,
) -> Registration:
    return Registration(
        run=run_id,
        agent=policy.agent,
        mode=policy.mode,
        rules=tuple((r.pattern, r.ports, r.source) for r in policy.rules),
        file=policy.file,
        address=address,
        token_sha256=token_sha256,
        gateway=gateway,
    )


class ProjectEgress:
    """The egress component of one project, as container runs use it."""

    def __init__(self, client: docker.DockerClient, project: Path):
        self.project = project
        self.state = state_of(project)
        self.deployment = Deployment(client, project, self.state)

    def _ready_network(self, agent: str, image: str) -> Network:
        with self.deployment.locked():
            self.deployment.ensure_proxy(image)
            network = self.deployment.agent_network(agent)
            guard_bridge(network.bridge, self.deployment.id)
        return network

    def attach_container(
        self, run_id: str, policy: AgentPolicy, gateway: int | None, image: str
    ) -> ContainerAttachment:
        """Register the run on its agent's network; EgressUnavailable when that cannot be."""
        try:
            network = self._ready_network(policy.agent, image)
        except (DeployError, FirewallError) as exc:
            raise EgressUnavailable(str(exc)) from None
        except Exception as exc:  # the engine refused something: still no open network
            raise EgressUnavailable(f"{type(exc).__name__}: {exc}") from None
        for address in network.run_addresses():
            registration = registration_for(run_id, policy, gateway, address=address)
            if register(self.state, registration):
                break
        else:
            raise EgressUnavailable(f"no free address left on {network.name}")
        if gateway is not None:
            self._await_gateway_listener(gateway)
        proxy = network.proxy_address
        return ContainerAttachment(
            network=network.name,
            address=address,
            key=registration.key,
            env=proxy_env(f"http://{proxy}:{PROXY_PORT}"),
            extra_hosts={GATEWAY_NAME: proxy},
            dns=(proxy,),
        )

    def _await_gateway_listener(self, port: int) -> None:
        """The proxy opens the gateway's port when it sees the first run that has it."""
        deadline = time.monotonic() + GATEWAY_WAIT
        while port not in self.deployment.listening():
            if time.monotonic() > deadline:
                break  # the run starts anyway; its gateway calls say "unreachable"
            time.sleep(0.02)

    def detach(self, key: str) -> None:
        unregister(self.state, key)


def teardown(client: docker.DockerClient, project: Path) -> list[str]:
    """Remove the project's proxy, egress networks, firewall rules and registrations; what
    was removed (nothing when there was nothing)."""
    import shutil

    from action_llama.egress import firewall

    deployment = Deployment(client, project, state_of(project))
    removed = deployment.teardown()
    with contextlib.suppress(firewall.FirewallError):
        count = firewall.remove(deployment.id)
        if count:
            removed.append(f"{count} firewall rule{'s' * (count > 1)}")
    shutil.rmtree(state_of(project) / RUNS, ignore_errors=True)
    return removed
