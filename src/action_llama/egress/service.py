"""What runtimes ask of a project's egress: attach a run to it, and detach it at its end.

A container run under `allowlist` or `none` is attached like this: the project's proxy is
running (started when missing), the agent's internal network exists with the proxy on it and
the bridge's firewall rules in place, the run claims a free address on that network by
registering there, and its container joins the network namespace of that address's holder
(`deploy.py`), whose only DNS server is the proxy; its proxy variables point at the proxy.
Anything that fails raises `EgressUnavailable`: the runtime then starts the run with no
network at all.

A run under `open` that holds brokered secrets (`BrokerPlan.needs_proxy`) is registered with
a secret of its own instead (`attach_open`): nothing restricts it, but its proxy variables send
its HTTP(S) through the proxy, which swaps its placeholders for the hosts they are for and
brokers its models. Containers join the project's outside network for it (the proxy's).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from action_llama.egress.deploy import DeployError, Deployment, Network
from action_llama.egress.firewall import FirewallError, guard_bridge
from action_llama.egress.names import GATEWAY_NAME, PROXY_PORT
from action_llama.egress.registry import (
    Registration,
    register,
    registrations,
    token_digest,
    unregister,
)
from action_llama.layout import STATE_DIR

if TYPE_CHECKING:
    import docker

    from action_llama.egress.brokering import BrokerPlan
    from action_llama.egress.policy import AgentPolicy

EGRESS_DIR = "egress"
#: Hosts every run reaches without the proxy: its own loopback, and the gateway (which
#: the proxy relays itself, so a client needs no proxy support to use it).
NO_PROXY = f"{GATEWAY_NAME},localhost,127.0.0.1"
#: What an open run reaches without the proxy: the host too (it may, and the proxy would
#: refuse it the host's addresses).
OPEN_NO_PROXY = f"{NO_PROXY},host.docker.internal"
#: The ssh helper that opens a CONNECT tunnel through the proxy (in /app/bin).
SSH_HELPER = "al-proxy-connect"
#: How long a run with a gateway waits, at most, for the proxy to listen on its port.
GATEWAY_WAIT = 10.0


class EgressUnavailable(Exception):
    """The run's egress cannot be set up; the message says why, for the run's log."""


def state_of(project: Path) -> Path:
    return project / STATE_DIR / EGRESS_DIR


def proxy_env(
    proxy_url: str,
    proxy: str,
    run_id: str,
    secret: str,
    broker: BrokerPlan | None,
    no_proxy: str = NO_PROXY,
    *,
    ssh: bool = True,
) -> dict[str, str]:
    """The variables that send ordinary clients (curl, git, pip, npm, Python's, Node's) and,
    with `ssh`, git over ssh through the proxy at `proxy`, and the run's model client to its
    broker there (reached directly, hence `proxy` in NO_PROXY)."""
    from action_llama.egress.brokering import broker_env

    no_proxy = f"{no_proxy},{proxy}"
    env = {
        "HTTP_PROXY": proxy_url,
        "http_proxy": proxy_url,
        "HTTPS_PROXY": proxy_url,
        "https_proxy": proxy_url,
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        "NODE_USE_ENV_PROXY": "1",
        **broker_env(proxy, PROXY_PORT, run_id, secret, broker),
    }
    if ssh:
        env["GIT_SSH_COMMAND"] = f'ssh -o ProxyCommand="{SSH_HELPER} %h %p"'
    return env


@dataclass(frozen=True)
class ContainerAttachment:
    """How to create a run's container: in the network namespace of its address's holder
    (whose resolver is the proxy and whose hosts file maps al-gateway to it)."""

    network_mode: str
    address: str
    key: str
    env: dict[str, str] = field(default_factory=dict)


def registration_for(
    run_id: str,
    policy: AgentPolicy,
    gateway: int | None,
    *,
    address: str | None = None,
    token_sha256: str | None = None,
    broker: BrokerPlan | None = None,
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
        models=dict(broker.models) if broker else {},
        tokens_per_run=broker.tokens_per_run if broker else None,
        intercept=broker.intercept if broker else (),
    )


class ProjectEgress:
    """The egress component of one project, as container runs use it."""

    def __init__(self, client: docker.DockerClient | None, project: Path):
        self.project = project
        self.state = state_of(project)
        #: docker-py (connected when a part is missing and must be made, if None here).
        self.deployment = Deployment(client, project, self.state)

    @property
    def client(self) -> docker.DockerClient:
        return self.deployment.client

    def _base_image(self) -> str:
        """The image the proxy runs: the project's base layer, built when missing or stale."""
        from action_llama.images.build import ChainBuilder
        from action_llama.project import load_project

        result = ChainBuilder(self.client, load_project(self.project)).ensure([])
        return result.image_ids[result.layers[0].tag]

    def _ensure_proxy(self) -> None:
        if not self.deployment.proxy_running():
            self.deployment.ensure_proxy(self._base_image())

    def _ready_network(self, agent: str) -> Network:
        """The agent's network with the proxy on it and the bridge's rules in place: checked
        without the lock when all is there (each run), made under it when not."""
        network = self.deployment.ready_network(agent)
        if network is None:
            with self.deployment.locked():
                self._ensure_proxy()
                network = self.deployment.agent_network(agent)
        guard_bridge(network.bridge, self.deployment.id)
        return network

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        """Whatever fails while setting up becomes EgressUnavailable (never an open run)."""
        from action_llama.errors import ActionLlamaError

        try:
            yield
        except (DeployError, FirewallError) as exc:
            raise EgressUnavailable(str(exc)) from None
        except ActionLlamaError as exc:
            raise EgressUnavailable(exc.message) from None
        except Exception as exc:  # the engine refused something: still no open network
            raise EgressUnavailable(f"{type(exc).__name__}: {exc}") from None

    def attach_container(
        self,
        run_id: str,
        policy: AgentPolicy,
        gateway: int | None,
        broker: BrokerPlan | None = None,
    ) -> ContainerAttachment:
        """Claim an address on the agent's network for the run (the first free one, so a
        holder is reused run after run) and the holder of that address; EgressUnavailable
        when that cannot be."""
        secret = secrets.token_urlsafe(24)
        with self._unavailable():
            network = self._ready_network(policy.agent)
            for address in network.run_addresses():
                registration = registration_for(
                    run_id,
                    policy,
                    gateway,
                    address=address,
                    token_sha256=token_digest(secret),
                    broker=broker,
                )
                if register(self.state, registration):
                    break
            else:
                raise EgressUnavailable(f"no free address left on {network.name}")
            try:
                holder = self.deployment.holder(network, address, policy.agent, self._base_image)
            except BaseException:
                unregister(self.state, registration.key)
                raise
        if gateway is not None:
            self._await_gateway_listener(gateway)
        proxy = network.proxy_address
        return ContainerAttachment(
            network_mode=f"container:{holder}",
            address=address,
            key=registration.key,
            env=proxy_env(f"http://{proxy}:{PROXY_PORT}", proxy, run_id, secret, broker),
        )

    def prepare(self, agent: str, mode: str) -> None:
        """What runs of `agent` will need, made now (a scheduler starting) rather than by its
        first run: the proxy, and under a checked `mode` the agent's network and the holder of
        its first address; EgressUnavailable when they cannot be."""
        if mode == "open":
            with self._unavailable(), self.deployment.locked():
                self._ensure_proxy()
            return
        with self._unavailable():
            network = self._ready_network(agent)
            first = next(network.run_addresses())
            self.deployment.holder(network, first, agent, self._base_image)

    def _await_gateway_listener(self, port: int) -> None:
        """The proxy opens the gateway's port when it sees the first run that has it."""
        deadline = time.monotonic() + GATEWAY_WAIT
        while port not in self.deployment.listening():
            if time.monotonic() > deadline:
                break  # the run starts anyway; its gateway calls say "unreachable"
            time.sleep(0.02)

    def attach_open(self, run_id: str, policy: AgentPolicy, broker: BrokerPlan) -> OpenAttachment:
        """Register an open run that holds brokered secrets, by a secret of its own (it has no
        address the proxy knows); EgressUnavailable when the proxy cannot be had."""
        with self._unavailable(), self.deployment.locked():
            self._ensure_proxy()
            proxy = self.deployment.proxy_outside_address()
        env = self._register_by_secret(
            run_id, policy, None, broker, proxy, OPEN_NO_PROXY, ssh=False
        )
        return OpenAttachment(self.deployment.outside_name, env)

    def _register_by_secret(
        self,
        run_id: str,
        policy: AgentPolicy,
        gateway: int | None,
        broker: BrokerPlan | None,
        proxy: str,
        no_proxy: str,
        *,
        ssh: bool = True,
    ) -> dict[str, str]:
        """Register a run the proxy knows by the secret in its proxy URL (not by an address);
        the run's proxy variables."""
        token = secrets.token_urlsafe(24)
        register(
            self.state,
            registration_for(
                run_id, policy, gateway, token_sha256=token_digest(token), broker=broker
            ),
        )
        url = f"http://{run_id}:{token}@{proxy}:{PROXY_PORT}"
        return proxy_env(url, proxy, run_id, token, broker, no_proxy, ssh=ssh)

    def attach_host_user(
        self,
        run_id: str,
        policy: AgentPolicy,
        gateway: int | None,
        broker: BrokerPlan | None = None,
    ) -> HostAttachment:
        """Give the run a cgroup whose packets reach only the proxy, the gateway and loopback
        services its list names, and register it with the secret of its proxy URL.
        FirewallError when that cannot be here; without a proxy (no Docker...) the run is
        restricted to the gateway alone, and the attachment carries a note saying so."""
        proxy: str | None = None
        note = None
        try:
            with self._unavailable(), self.deployment.locked():
                self._ensure_proxy()
                proxy = self.deployment.proxy_outside_address()
        except EgressUnavailable as exc:
            note = f"egress: {exc}; this run has no network but the gateway. See: al doctor"
        procs = restrict_run(self.deployment.id, run_id, policy, gateway, proxy)
        if proxy is None:
            return HostAttachment(procs, env={}, notes=(note,) if note else ())
        env = self._register_by_secret(
            run_id, policy, gateway, broker, proxy, "localhost,127.0.0.1"
        )
        return HostAttachment(procs, env=env)


def restrict_run(
    project: str, run_id: str, policy: AgentPolicy, gateway: int | None, proxy: str | None
) -> Path:
    """The run's cgroup and its firewall rules; the cgroup's `cgroup.procs` (FirewallError
    when either cannot be made)."""
    from action_llama.egress import cgroups
    from action_llama.egress.firewall import guard_run

    cgroup = cgroups.path_of(project, run_id)
    try:
        procs = cgroups.make(cgroup)
    except OSError as exc:
        raise FirewallError(f"cannot make the run's cgroup: {exc}") from None
    ports = [p for r in policy.rules if r.pattern in LOOPBACK_NAMES for p in r.ports]
    guard_run(project, cgroup, proxy, PROXY_PORT, [*ports, *([gateway] if gateway else [])])
    return procs


def release_host_run(project: Path, run_id: str) -> None:
    """Forget a host-user run's registration, rules and cgroup, once it has ended."""
    from action_llama.egress import cgroups
    from action_llama.egress.deploy import project_id
    from action_llama.egress.firewall import remove_run

    release_run(project, run_id)
    cgroup = cgroups.path_of(project_id(project), run_id)
    with contextlib.suppress(FirewallError):
        remove_run(cgroup)
    cgroups.remove(cgroup)


@dataclass(frozen=True)
class OpenAttachment:
    """An open run's network (for a container: the proxy's outside one) and variables."""

    network: str
    env: dict[str, str]


@dataclass(frozen=True)
class HostAttachment:
    """The run's cgroup (its `cgroup.procs`), what its environment gets (empty without a
    proxy), and notes."""

    procs: Path
    env: dict[str, str]
    notes: tuple[str, ...] = ()


#: Allow entries naming the host's loopback: host-user runs reach them directly.
LOOPBACK_NAMES = ("localhost", "127.0.0.1")


def release_run(project: Path, run_id: str) -> None:
    """Forget the run's registration (its address or proxy secret) and model keys, once it
    has ended."""
    from action_llama.egress.brokering import remove_keys
    from action_llama.egress.deploy import project_id

    remove_keys(project_id(project), run_id)
    state = state_of(project)
    with contextlib.suppress(OSError):
        for registration in registrations(state):
            if registration.run == run_id:
                unregister(state, registration.key)
