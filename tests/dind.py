"""A second swarm node on this machine: a Docker engine in a container (Docker-in-Docker)
joined to the test swarm as a worker.

No registry is reachable here to pull a dind image, so one is built from the Debian image the
base image is built on, plus Debian's docker.io. The engine cannot grant every capability
(`--privileged` fails: CAP_SYS_RESOURCE is outside its bounding set), so the container gets
all the others, no seccomp or AppArmor profile and writable /sys, and its start script makes
its cgroups writable for the inner engine (cgroup v1, as on these machines).

The worker reaches the manager on the host's bridge address (the swarm listens on every
interface). It pulls from the tests' loopback registry through two forwarders: 127.0.0.1:5000
inside the worker to a port on the bridge address of the host, and that port to the
registry. Everything is labelled al.test=dind and removed afterwards; the image is kept.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

START = r"""#!/bin/sh
mount -o remount,rw /sys
mount -o remount,rw /sys/fs/cgroup
awk '$3 == "cgroup" {print $2}' /proc/mounts | while read -r dir; do
  mount -o remount,bind,rw "$dir"
done
exec dockerd --host unix:///var/run/docker.sock --storage-driver overlay2 --bip 10.199.0.1/24
"""
DOCKERFILE = """FROM {os_image}
USER root
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \\
    --no-install-recommends docker.io iptables ca-certificates procps >/dev/null \\
    && rm -rf /var/lib/apt/lists/*
COPY start.sh /start.sh
RUN chmod 0755 /start.sh
LABEL al.test=dind
"""
#: Inside the worker: 127.0.0.1:5000 to the host forwarder (argv: its host and port).
FORWARD = r"""
import socket, sys, threading
target = (sys.argv[1], int(sys.argv[2]))
def pipe(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try: s.shutdown(socket.SHUT_RDWR)
            except OSError: pass
server = socket.create_server(("127.0.0.1", 5000))
while True:
    client, _ = server.accept()
    upstream = socket.create_connection(target)
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
"""


@dataclass(frozen=True)
class Worker:
    """The second node: its swarm node id and hostname, and how to run `docker` on it."""

    node_id: str
    hostname: str
    container: str

    def docker(self, *args: str) -> str:
        """Output of `docker ARGS` on the worker's own engine."""
        return subprocess.run(
            ["docker", "exec", self.container, "docker", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout


def _image(client: Any) -> str:
    from action_llama.images.events import SilentEvents
    from action_llama.images.osimage import ensure_os_image

    os_image = ensure_os_image(client, SilentEvents())
    dockerfile = DOCKERFILE.format(os_image=os_image)
    tag = "al-test-dind:" + hashlib.sha256((dockerfile + START).encode()).hexdigest()[:12]
    if client.api.images(name=tag):
        return tag
    import io
    import tarfile

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in (("Dockerfile", dockerfile), ("start.sh", START)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    build = client.api.build(
        fileobj=context, custom_context=True, tag=tag, decode=True, rm=True, forcerm=True
    )
    for event in build:
        if "error" in event:
            raise RuntimeError(f"building the dind image failed: {event['error']}")
    return tag


def _forwarder(listen: str, target: tuple[str, int]) -> tuple[socket.socket, int]:
    """A thread forwarding connections to `listen`:<port> to `target`; (socket, port)."""
    server = socket.create_server((listen, 0))

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def relay(client: socket.socket) -> None:
        with client, socket.create_connection(target) as upstream:
            back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
            back.start()
            pipe(client, upstream)
            back.join()

    def serve() -> None:
        with suppress(OSError):  # closed at the end
            while True:
                client, _ = server.accept()
                threading.Thread(target=relay, args=(client,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


@contextmanager
def worker_node(client: Any, registry: str) -> Iterator[Worker]:
    """A worker node joined to this manager's swarm, left and removed afterwards."""
    from action_llama.gateway.bind import bridge_addresses

    api = client.api
    bridge = bridge_addresses()[0]
    registry_host, _, registry_port = registry.rpartition(":")
    forwarder, port = _forwarder(bridge, (registry_host, int(registry_port)))
    name = f"al-test-worker-{secrets.token_hex(3)}"
    image = _image(client)
    labels = {"al.test": "dind"}
    node_id = ""
    container = name
    try:
        api.create_volume(f"{name}-data", labels=labels)
        host_config = api.create_host_config(
            cap_add=["ALL"],
            cap_drop=["SYS_RESOURCE"],
            security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            binds={f"{name}-data": {"bind": "/var/lib/docker", "mode": "rw"}},
        )
        # --security-opt systempaths=unconfined, as the CLI sends it: /proc and /sys unmasked.
        host_config.update({"MaskedPaths": [], "ReadonlyPaths": []})
        container = api.create_container(
            image,
            command=["/start.sh"],
            name=name,
            hostname=name,
            labels=labels,
            host_config=host_config,
        )["Id"]
        api.start(container)
        worker = Worker("", name, container)
        deadline = time.monotonic() + 60
        while True:
            try:
                worker.docker("info")
                break
            except subprocess.CalledProcessError:
                assert time.monotonic() < deadline, api.logs(container).decode()[-2000:]
                time.sleep(0.5)
        subprocess.run(
            ["docker", "exec", "-d", container, "python3", "-c", FORWARD, bridge, str(port)],
            check=True,
        )
        token = api.inspect_swarm()["JoinTokens"]["Worker"]
        worker.docker("swarm", "join", "--token", token, f"{bridge}:2377")
        node_id = worker.docker("info", "--format", "{{.Swarm.NodeID}}").strip()
        yield Worker(node_id, name, container)
    finally:
        with suppress(subprocess.CalledProcessError):
            Worker(node_id, name, container).docker("swarm", "leave", "--force")
        if node_id:
            with suppress(Exception):
                api.remove_node(node_id, force=True)
        with suppress(Exception):
            api.remove_container(container, force=True)
        with suppress(Exception):
            api.remove_volume(f"{name}-data", force=True)
        forwarder.close()
