"""A project's egress component in the Docker engine: one proxy container, its networks.

    al-egress-<id>            the outside network (a bridge with a route out), and the proxy
                              container on it, with the project's egress state at /egress
    al-egress-<id>-<agent>    one `--internal` network per agent: its runs and the proxy, no
                              route anywhere; runs of different agents never share one
    al-egress-<id>-<agent>-N  a holder of the address .N on it: a container that only sleeps,
                              whose network namespace (address, resolver, hosts) a run joins
                              (`container:<holder>`); made once, reused by run after run of
                              the agent, which makes a run's start cheaper than on a bridge

`<id>` is a digest of the project's path. Subnets are /24s of POOL that no Docker network and
no route of this host uses; on each, the host's bridge is .1 and the proxy .2. Everything
carries the labels `al.project` and `al.egress` (`outside`, `agent`, `proxy`), so leftovers are
found and removed by label. Creating is serialized per project by a lock file in the state
folder; other projects racing for a subnet get the engine's "overlaps" error and take the next.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from action_llama.egress.names import (
    GATEWAY_NAME,
    HEARTBEAT_FILE,
    KEYS_DIR,
    PROXY_PORT,
    STATUS_FILE,
)

if TYPE_CHECKING:
    import docker

LABEL_PROJECT = "al.project"
LABEL_AGENT = "al.agent"
LABEL_EGRESS = "al.egress"
#: The base image the proxy container runs.
LABEL_IMAGE = "al.egress.image"
#: What the proxy container is made with (its mounts, its command); one made by an older al
#: is replaced.
LABEL_VERSION = "al.egress.version"
PROXY_VERSION = "2"
POOL = ipaddress.IPv4Network("10.213.0.0/16")
PROXY_HOST_INDEX = 2
READY_SECONDS = 15.0
#: A proxy whose heartbeat is older than this is taken for dead.
HEARTBEAT_STALE = 5.0


class DeployError(Exception):
    """The egress component could not be set up (the message says what failed)."""


def project_id(root: Path) -> str:
    return hashlib.sha256(str(root).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Network:
    """One of the project's egress networks."""

    name: str
    bridge: str
    subnet: ipaddress.IPv4Network

    @property
    def proxy_address(self) -> str:
        return str(self.subnet[PROXY_HOST_INDEX])

    def run_addresses(self) -> Iterator[str]:
        """Addresses a run may take: the lower half after the bridge, the proxy and a few
        spare (the engine gives the upper half to containers that join without one)."""
        for index in range(10, self.subnet.num_addresses // 2):
            yield str(self.subnet[index])


def _host_routes() -> list[ipaddress.IPv4Network]:
    nets = []
    with contextlib.suppress(OSError), open("/proc/net/route", encoding="ascii") as fh:
        for row in (line.split() for line in fh.read().splitlines()[1:]):
            if row[1] == "00000000":
                continue
            dest = ipaddress.IPv4Address(int(row[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(row[7], 16).to_bytes(4, "little"))
            nets.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    return nets


def _subnet_of(attrs: dict[str, Any]) -> ipaddress.IPv4Network | None:
    for config in (attrs.get("IPAM") or {}).get("Config") or []:
        with contextlib.suppress(ValueError, TypeError):
            net = ipaddress.ip_network(config.get("Subnet", ""))
            if isinstance(net, ipaddress.IPv4Network):
                return net
    return None


def _outdated(proxy: dict[str, Any]) -> bool:
    labels = (proxy.get("Config") or {}).get("Labels") or {}
    return labels.get(LABEL_VERSION) != PROXY_VERSION


class Deployment:
    """The egress component of the project at `root`, its state folder `state`.

    What each run checks (the proxy, its network, its address's holder are there) goes
    through the small engine client; docker-py (`client`, connected when None) makes them."""

    def __init__(self, client: docker.DockerClient | None, root: Path, state: Path):
        self._client = client
        self.root = root
        self.state = state
        self.id = project_id(root)
        self.proxy_name = f"al-egress-{self.id}"
        self.outside_name = f"al-egress-{self.id}"

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            from action_llama.engine import connect

            self._client = connect()
        return self._client

    def network_name(self, agent: str) -> str:
        return f"al-egress-{self.id}-{agent}"

    @staticmethod
    def holder_name(network: Network, address: str) -> str:
        return f"{network.name}-{address.rsplit('.', 1)[1]}"

    def _labels(self, kind: str, agent: str | None = None) -> dict[str, str]:
        labels = {LABEL_PROJECT: str(self.root), LABEL_EGRESS: kind}
        if agent:
            labels[LABEL_AGENT] = agent
        return labels

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Only one al process of this project sets up its egress at a time."""
        self.state.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- networks ----------------------------------------------------------------------------

    def _inspect_network(self, name: str) -> Network | None:
        from action_llama.engine import api
        from action_llama.engine_api import EngineNotFound

        try:
            attrs = api().inspect_network(name)
        except EngineNotFound:
            return None
        subnet = _subnet_of(attrs)
        bridge = (attrs.get("Options") or {}).get("com.docker.network.bridge.name", "")
        if subnet is None or not bridge:
            raise DeployError(f"network {name} exists but is not one al made; remove it")
        return Network(name, bridge, subnet)

    def _create_network(self, name: str, bridge: str, labels: dict[str, str]) -> Network:
        from docker.errors import APIError
        from docker.types import IPAMConfig, IPAMPool

        for _ in range(20):
            taken = [n for a in self.client.api.networks() if (n := _subnet_of(a))]
            taken += _host_routes()
            subnet = next(
                (s for s in POOL.subnets(new_prefix=24) if not any(s.overlaps(t) for t in taken)),
                None,
            )
            if subnet is None:
                raise DeployError(f"no free /24 left in {POOL} for network {name}")
            # Addresses the engine hands out by itself: never the proxy's, never a run's.
            upper = str(list(subnet.subnets(prefixlen_diff=1))[1])
            try:
                self.client.api.create_network(
                    name,
                    driver="bridge",
                    internal=labels[LABEL_EGRESS] == "agent",
                    check_duplicate=True,
                    labels=labels,
                    options={"com.docker.network.bridge.name": bridge},
                    ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet), iprange=upper)]),
                )
            except APIError as exc:
                found = self._inspect_network(name)
                if found is not None:
                    return found  # another al process made it meanwhile
                if "overlap" in str(exc).lower():
                    continue  # another project took that subnet: look again
                raise DeployError(f"cannot create network {name}: {exc.explanation}") from None
            return Network(name, bridge, subnet)
        raise DeployError(f"cannot find a free subnet for network {name}")

    def _bridge_name(self, *parts: str) -> str:
        digest = hashlib.sha256("\0".join([str(self.root), *parts]).encode()).hexdigest()
        return f"al{parts[0][0]}{digest[:12]}"

    def outside(self) -> Network:
        found = self._inspect_network(self.outside_name)
        if found is not None:
            return found
        return self._create_network(
            self.outside_name, self._bridge_name("outside"), self._labels("outside")
        )

    def ready_network(self, agent: str) -> Network | None:
        """The agent's network when it exists with the proxy running on it; else None."""
        from action_llama.engine import api
        from action_llama.engine_api import EngineNotFound

        proxy = self._proxy()
        if proxy is None or not proxy["State"].get("Running") or _outdated(proxy):
            return None
        try:
            attrs = api().inspect_network(self.network_name(agent))
        except EngineNotFound:
            return None
        subnet = _subnet_of(attrs)
        bridge = (attrs.get("Options") or {}).get("com.docker.network.bridge.name", "")
        if subnet is None or not bridge or proxy["Id"] not in (attrs.get("Containers") or {}):
            return None
        return Network(attrs["Name"], bridge, subnet)

    def agent_network(self, agent: str) -> Network:
        """The agent's internal network (made when missing) with the proxy attached."""
        name = self.network_name(agent)
        network = self._inspect_network(name)
        if network is None:
            network = self._create_network(
                name, self._bridge_name("agent", agent), self._labels("agent", agent)
            )
        self._attach_proxy(network)
        return network

    def _attach_proxy(self, network: Network) -> None:
        from docker.errors import APIError

        attrs = self.client.api.inspect_network(network.name)
        proxy = self._proxy()
        if proxy is None or proxy["Id"] in (attrs.get("Containers") or {}):
            return
        try:
            self.client.api.connect_container_to_network(
                proxy["Id"], network.name, ipv4_address=network.proxy_address
            )
        except APIError as exc:
            if "already exists" not in str(exc):
                raise DeployError(
                    f"cannot attach the egress proxy to {network.name}: {exc.explanation}"
                ) from None

    # -- the proxy ---------------------------------------------------------------------------

    def _proxy(self) -> dict[str, Any] | None:
        from action_llama.engine import api
        from action_llama.engine_api import EngineNotFound

        try:
            return api().inspect_container(self.proxy_name)
        except EngineNotFound:
            return None

    def proxy_running(self) -> bool:
        proxy = self._proxy()
        return proxy is not None and bool(proxy["State"].get("Running")) and not _outdated(proxy)

    def proxy_alive(self) -> bool:
        """The proxy container runs and its heartbeat is fresh."""
        proxy = self._proxy()
        if proxy is None or not proxy["State"].get("Running"):
            return False
        try:
            age = time.time() - (self.state / HEARTBEAT_FILE).stat().st_mtime
        except FileNotFoundError:
            return False
        return age < HEARTBEAT_STALE

    def ensure_proxy(self, image: str) -> None:
        """The proxy running (started, or created from `image`), attached to every network of
        the project's agents."""
        proxy = self._proxy()
        if proxy is not None and _outdated(proxy):
            self.client.api.remove_container(proxy["Id"], force=True)
            proxy = None
        if proxy is not None and proxy["State"].get("Running"):
            return
        outside = self.outside()
        (self.state / STATUS_FILE).unlink(missing_ok=True)
        if proxy is None:
            self._create_proxy(image, outside)
        else:
            from action_llama.egress.brokering import keys_dir

            keys_dir(self.id)  # its mount's source, gone if /dev/shm was emptied (a reboot)
            self.client.api.start(proxy["Id"])
        for attrs in self.client.api.networks(
            filters={"label": [f"{LABEL_PROJECT}={self.root}", f"{LABEL_EGRESS}=agent"]}
        ):
            found = self._inspect_network(attrs["Name"])
            if found is not None:
                self._attach_proxy(found)
        self._wait_ready()

    def _create_proxy(self, image: str, outside: Network) -> None:
        from docker.errors import APIError
        from docker.types import Mount

        from action_llama.egress.brokering import keys_dir

        api = self.client.api
        (self.state / "runs").mkdir(parents=True, exist_ok=True)
        keys = keys_dir(self.id)
        host_config = api.create_host_config(
            mounts=[
                Mount("/egress", str(self.state), type="bind"),
                Mount(str(KEYS_DIR), str(keys), type="bind", read_only=True),
            ],
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=16m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            # Binding 53 (the runs' resolver) and low gateway ports without a capability.
            sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
            mem_limit=256 * 1024**2,
            # Two threads per open tunnel (kernel splice), plus the event loop.
            pids_limit=2048,
            restart_policy={"Name": "unless-stopped"},
            extra_hosts={"host.docker.internal": "host-gateway"},
            network_mode=outside.name,
        )
        endpoint = api.create_endpoint_config(ipv4_address=outside.proxy_address)
        # types-docker says one EndpointConfig; the SDK takes a mapping of network to one.
        networking = api.create_networking_config({outside.name: endpoint})  # type: ignore[arg-type]
        created = None
        try:
            created = api.create_container(
                image,
                name=self.proxy_name,
                user=f"{os.getuid()}:{os.getgid()}",
                entrypoint=["python3", "-m", "action_llama.egress", "--state", "/egress"],
                command=[],
                labels={**self._labels("proxy"), LABEL_IMAGE: image, LABEL_VERSION: PROXY_VERSION},
                host_config=host_config,
                networking_config=networking,
            )
            api.start(created["Id"])
        except APIError as exc:
            if created is None and self._proxy() is not None:
                return  # another al process of this project made it meanwhile
            if created is not None:
                with contextlib.suppress(APIError):
                    api.remove_container(created["Id"], force=True)
            raise DeployError(f"cannot start the egress proxy: {exc.explanation}") from None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while not (self.state / STATUS_FILE).exists():
            if time.monotonic() > deadline:
                logs = self.client.api.logs(self.proxy_name, tail=5).decode(errors="replace")
                raise DeployError(f"the egress proxy did not start: {logs.strip()[-300:]}")
            time.sleep(0.02)

    def proxy_outside_address(self) -> str:
        return self.outside().proxy_address

    def listening(self) -> set[int]:
        """Ports the proxy listens on (its own and the gateway ports of registered runs)."""
        import json

        try:
            data = json.loads((self.state / STATUS_FILE).read_text())
            return {int(p) for p in data.get("listening", [])}
        except (OSError, ValueError):
            return set()

    # -- holders -----------------------------------------------------------------------------

    def holder(self, network: Network, address: str, agent: str, image: Callable[[], str]) -> str:
        """The id of the running holder of `address` on `network` (made from `image()` when
        missing, started when stopped)."""
        from action_llama.engine import api
        from action_llama.engine_api import EngineNotFound

        name = self.holder_name(network, address)
        try:
            attrs = api().inspect_container(name)
        except EngineNotFound:
            return self._running(self._create_holder(network, address, agent, image()))
        if attrs["State"].get("Running"):
            return str(attrs["Id"])
        return self._running(str(attrs["Id"]))

    def _running(self, container: str) -> str:
        """`container` started (by us, or by another al process making it at the same time)
        and seen running: a run can only join the namespace of a running holder."""
        from action_llama.engine import api
        from action_llama.engine_api import EngineAPIError

        deadline = time.monotonic() + READY_SECONDS
        while not api().inspect_container(container)["State"].get("Running"):
            with contextlib.suppress(EngineAPIError):  # already started meanwhile
                api().start(container)
            if time.monotonic() > deadline:
                raise DeployError(f"address holder {container[:12]} does not start")
            time.sleep(0.05)
        return container

    def _create_holder(self, network: Network, address: str, agent: str, image: str) -> str:
        from docker.errors import APIError

        api = self.client.api
        proxy = network.proxy_address
        host_config = api.create_host_config(
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            mem_limit=16 * 1024**2,
            pids_limit=8,
            init=True,
            restart_policy={"Name": "unless-stopped"},
            network_mode=network.name,
            dns=[proxy],
            extra_hosts={GATEWAY_NAME: proxy},
        )
        endpoint = api.create_endpoint_config(ipv4_address=address)
        name = self.holder_name(network, address)
        try:
            created = api.create_container(
                image,
                name=name,
                user="65534:65534",
                entrypoint=["sleep", "infinity"],
                command=[],
                labels={**self._labels("holder", agent)},
                host_config=host_config,
                networking_config=api.create_networking_config({network.name: endpoint}),  # type: ignore[arg-type]
            )
        except APIError as exc:
            found = self._inspect_holder(name)
            if found is not None:
                return found  # another al process made it meanwhile
            raise DeployError(f"cannot start {name}: {exc.explanation}") from None
        return str(created["Id"])

    def _inspect_holder(self, name: str) -> str | None:
        from action_llama.engine import api
        from action_llama.engine_api import EngineNotFound

        try:
            return str(api().inspect_container(name)["Id"])
        except EngineNotFound:
            return None

    # -- removing ----------------------------------------------------------------------------

    def teardown(self) -> list[str]:
        """Remove the proxy and every egress network of the project; what was removed."""
        from docker.errors import NotFound

        from action_llama.egress.brokering import drop_keys_dir

        removed = []
        with contextlib.suppress(NotFound):
            self.client.api.remove_container(self.proxy_name, force=True)
            removed.append(f"container {self.proxy_name}")
        drop_keys_dir(self.id)
        holders = self.client.api.containers(
            all=True, filters={"label": [f"{LABEL_PROJECT}={self.root}", f"{LABEL_EGRESS}=holder"]}
        )
        for attrs in holders:
            with contextlib.suppress(NotFound):
                self.client.api.remove_container(attrs["Id"], force=True)
        if holders:
            removed.append(f"{len(holders)} address holder{'s' * (len(holders) > 1)}")
        nets = self.client.api.networks(filters={"label": [f"{LABEL_PROJECT}={self.root}"]})
        for attrs in nets:
            if LABEL_EGRESS not in (attrs.get("Labels") or {}):
                continue
            disconnect_all(self.client, attrs["Id"])
            with contextlib.suppress(NotFound):
                self.client.api.remove_network(attrs["Id"])
                removed.append(f"network {attrs['Name']}")
        return removed

    def bridges(self) -> list[str]:
        """Bridge interfaces of the project's egress networks."""
        nets = self.client.api.networks(filters={"label": [f"{LABEL_PROJECT}={self.root}"]})
        return [
            (a.get("Options") or {}).get("com.docker.network.bridge.name", "")
            for a in nets
            if LABEL_EGRESS in (a.get("Labels") or {})
        ]


__all__ = ["PROXY_PORT", "DeployError", "Deployment", "Network", "project_id"]


def disconnect_all(client: docker.DockerClient, network: str) -> None:
    """Disconnect whatever the network still lists, so it can be removed. An endpoint whose
    container is gone (left by a dockerd restart) is only found by its name."""
    from docker.errors import APIError

    attached = client.api.inspect_network(network).get("Containers") or {}
    for container, endpoint in attached.items():
        for ref in (container, endpoint.get("Name")):
            try:
                client.api.disconnect_container_from_network(ref, network, force=True)
                break
            except APIError:
                continue
