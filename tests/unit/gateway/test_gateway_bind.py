"""Where the gateway listens (loopback + the Docker bridge, or everywhere with --expose), and
serving it with uvicorn inside an event loop."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request

import pytest

from action_llama.errors import GatewayError
from action_llama.gateway import create_app
from action_llama.gateway.bind import (
    bind_sockets,
    interface_address,
    is_local_address,
    listen_addresses,
)
from action_llama.gateway.server import open_server
from action_llama.gateway.settings import GatewaySettings
from action_llama.gateway.testing import RecordingBackend
from action_llama.state import State

#: TEST-NET-1 (RFC 5737): never an address of this host.
FOREIGN = "192.0.2.1"


def test_expose_listens_everywhere() -> None:
    """--expose: one socket on 0.0.0.0, whatever the bridge is."""
    assert listen_addresses(expose=True, bridge=["172.17.0.1"]) == ["0.0.0.0"]


def test_default_is_loopback_plus_local_bridge_addresses() -> None:
    """Loopback first, then each bridge address this host has, once; foreign ones are left out
    (Docker Desktop: the bridge lives in a VM, and container traffic arrives on loopback)."""
    assert listen_addresses() == ["127.0.0.1"]
    bridge = ["127.0.0.2", FOREIGN, "127.0.0.1", "127.0.0.2"]
    assert listen_addresses(bridge=bridge) == ["127.0.0.1", "127.0.0.2"]
    assert is_local_address("127.0.0.1")
    assert not is_local_address(FOREIGN)


@pytest.mark.skipif(not hasattr(socket, "if_nameindex"), reason="needs interface names")
def test_interface_addresses_are_read_from_the_kernel() -> None:
    """docker0's address is found like any interface's; a missing interface gives None."""
    import sys

    if sys.platform != "linux":
        pytest.skip("reads interfaces with a Linux ioctl")
    assert interface_address("lo") == "127.0.0.1"
    assert interface_address("no-such-if0") is None


def test_one_free_port_is_shared_by_every_address() -> None:
    """Port 0 picks a free port on the first address and uses it on the others."""
    sockets = bind_sockets(["127.0.0.1", "127.0.0.2"], 0)
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == 1
        assert [s.getsockname()[0] for s in sockets] == ["127.0.0.1", "127.0.0.2"]
    finally:
        for s in sockets:
            s.close()


def test_a_taken_port_is_a_gateway_error_naming_the_fix() -> None:
    """Another listener on the port: GatewayError, with --port in the hint."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(GatewayError) as info:
            bind_sockets(["127.0.0.1"], port)
    assert f"Port {port}" in info.value.message
    assert info.value.hint is not None
    assert "--port" in info.value.hint


def test_the_server_serves_in_the_callers_loop_and_stops(tmp_path) -> None:
    """open_server + start serve the app on a real socket inside a running loop; stop closes
    it (and uvicorn touched neither signals nor logging)."""
    import logging
    import signal

    state = State.open(tmp_path / ".al")
    app = create_app(state, RecordingBackend(), GatewaySettings())
    root_handlers = list(logging.getLogger().handlers)

    async def scenario() -> tuple[dict[str, object], list[tuple[str, int]]]:
        handler = signal.getsignal(signal.SIGINT)
        server = open_server(app, port=0, bridge=[])
        await server.start()
        url = f"http://127.0.0.1:{server.port}/health"

        def get() -> dict[str, object]:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())

        try:
            answer = await asyncio.to_thread(get)
            assert signal.getsignal(signal.SIGINT) is handler
        finally:
            await server.stop()
        return answer, server.addresses

    try:
        answer, addresses = asyncio.run(scenario())
    finally:
        state.close()
    assert answer == {"ok": True, "status": "ok"}
    assert [a for a, _ in addresses] == ["127.0.0.1"]
    with pytest.raises(ConnectionRefusedError), socket.create_connection(addresses[0], timeout=1):
        pass
    assert logging.getLogger().handlers == root_handlers
