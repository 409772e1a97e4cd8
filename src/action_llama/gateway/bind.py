"""Where the gateway listens: loopback and the Docker bridge, or everywhere with `--expose`.

Runs in containers reach the daemon as `host.docker.internal`, which Docker resolves
(`host-gateway`) to the default bridge's gateway address on the host, so a gateway bound to
127.0.0.1 alone is unreachable from them on Linux (the original's bug). By default the
gateway therefore listens on 127.0.0.1 (the CLI, host-user runs) and on each bridge gateway
address that is an address of this host (on Docker Desktop it is not: there, container
traffic to the host arrives on loopback). `--expose` listens on every interface instead.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
import sys
from collections.abc import Iterable, Sequence

from action_llama.errors import GatewayError

LOOPBACK = "127.0.0.1"
EVERYWHERE = "0.0.0.0"
#: The default bridge's interface on Linux, read directly when the engine cannot be asked.
BRIDGE_INTERFACE = "docker0"
_SIOCGIFADDR = 0x8915


def listen_addresses(*, expose: bool = False, bridge: Iterable[str] = ()) -> list[str]:
    """The addresses to listen on: everywhere with `expose`; else loopback plus those of
    `bridge` that belong to this host (each once, loopback first)."""
    if expose:
        return [EVERYWHERE]
    found = [LOOPBACK]
    for address in bridge:
        if address not in found and is_local_address(address):
            found.append(address)
    return found


def is_local_address(address: str) -> bool:
    """Whether this host can listen on IPv4 `address` (it is one of its interfaces')."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


def interface_address(name: str) -> str | None:
    """The IPv4 address of network interface `name` (Linux), or None."""
    if sys.platform != "linux":
        return None
    import fcntl

    request = struct.pack("256s", name[:15].encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def bridge_addresses() -> list[str]:
    """Candidate addresses containers reach the host by: the gateways of Docker's default
    `bridge` network (asked of the engine), and docker0's address. [] when there are none."""
    found: list[str] = []
    # Any failure (no engine, no such network, a connection error) leaves only docker0.
    with contextlib.suppress(Exception):
        from action_llama.engine import connect

        network = connect(timeout=5).api.inspect_network("bridge")
        for config in (network.get("IPAM") or {}).get("Config") or []:
            gateway = str(config.get("Gateway") or "").split("/")[0]
            if gateway and ":" not in gateway:  # IPv4 only: that is what host-gateway gives
                found.append(gateway)
    interface = interface_address(BRIDGE_INTERFACE)
    if interface is not None and interface not in found:
        found.append(interface)
    return found


def bind_sockets(addresses: Sequence[str], port: int) -> list[socket.socket]:
    """Listening sockets on `port` at every address (port 0: one free port, the same on all).

    Raises GatewayError when the port is taken or an address cannot be used.
    """
    for _ in range(5 if port == 0 else 1):
        sockets: list[socket.socket] = []
        chosen = port
        try:
            for address in addresses:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, chosen))
                chosen = sock.getsockname()[1]
                sock.listen(2048)
                sock.setblocking(False)
            return sockets
        except OSError as exc:
            for sock in sockets:
                sock.close()
            if port == 0 and exc.errno == errno.EADDRINUSE:
                continue  # the free port of the first address is taken on another: try again
            raise _bind_error(addresses, port, exc) from exc
    raise GatewayError(f"Could not find one free port on {', '.join(addresses)}.")


def _bind_error(addresses: Sequence[str], port: int, exc: OSError) -> GatewayError:
    if exc.errno == errno.EADDRINUSE:
        return GatewayError(
            f"Port {port} is already in use, so the gateway cannot listen on it.",
            hint="Stop whatever uses it, or pick another port: al start --port N "
            "(or [gateway] port in config.toml).",
        )
    return GatewayError(
        f"The gateway cannot listen on {', '.join(addresses)} port {port}: {exc.strerror}.",
        hint="Check the port and the addresses (see al doctor).",
    )
