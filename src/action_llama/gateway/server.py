"""Serving the gateway app with uvicorn inside the daemon's event loop.

The daemon owns the signals (Ctrl-C, SIGTERM) and the logging setup: uvicorn installs no
signal handlers and no logging config here, and is stopped by `GatewayServer.stop`.

    server = open_server(create_app(state, backend, settings), port=8080)
    await server.start()      # listening on 127.0.0.1 and the Docker bridge address
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterable, Iterator

import uvicorn
from fastapi import FastAPI

from action_llama.errors import GatewayError
from action_llama.gateway.bind import bind_sockets, bridge_addresses, listen_addresses

#: Seconds open requests get to finish when the gateway stops, before they are cut.
GRACE_SECONDS = 5.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon handles signals, once, for everything it runs


class GatewayServer:
    """The app on uvicorn, listening on already-bound sockets (see `bind.bind_sockets`)."""

    def __init__(self, app: FastAPI, sockets: list[socket.socket]) -> None:
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(GRACE_SECONDS),
        )
        self._server = _Server(config)
        self._sockets = sockets
        self._task: asyncio.Task[None] | None = None
        #: (address, port) of every listening socket.
        self.addresses: list[tuple[str, int]] = [s.getsockname()[:2] for s in sockets]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    async def start(self) -> None:
        """Serve in the background of the running loop; return once it is listening."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._server.serve(self._sockets), name="gateway")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise GatewayError("The gateway stopped while it was starting.")
            await asyncio.sleep(0.01)

    async def stop(self, timeout: float = GRACE_SECONDS + 1) -> None:
        """Stop listening and let open requests finish (cut after `timeout` seconds)."""
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._server.force_exit = True
            await self._task
        finally:
            self._task = None


def open_server(
    app: FastAPI,
    *,
    port: int,
    expose: bool = False,
    bridge: Iterable[str] | None = None,
    also: Iterable[str] = (),
) -> GatewayServer:
    """A server for `app` on `port`, bound to loopback and the Docker bridge (or everywhere
    with `expose`). `bridge` overrides the bridge addresses found on this host; of `also`
    (where runs elsewhere reach the gateway), those that are this host's are bound too.

    Raises GatewayError when the port is taken.
    """
    candidates = bridge_addresses() if bridge is None and not expose else (bridge or ())
    candidates = [*candidates, *also]
    addresses = listen_addresses(expose=expose, bridge=candidates)
    return GatewayServer(app, bind_sockets(addresses, port))
