"""What the proxy does with a connection it allowed: the seam for per-destination handling.

Standard library only. Today every allowed destination is tunnelled untouched (`Tunnel`): the
bytes of a CONNECT tunnel, or of a plain-HTTP request rewritten to origin form, go to the
destination as they are. `Connection` carries everything a handler needs (the run it belongs
to, the destination, the client's streams, the request head when there is one, the record it
fills in), so a handler that terminates TLS and rewrites requests for some hosts can be chosen
per run and destination in `Proxy.handler_for` without touching the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from action_llama.egress.records import Record
from action_llama.egress.registry import Registration
from action_llama.egress.rules import Rule, ipv4

#: Bytes read at once when copying; also the streams' buffer limit.
CHUNK = 256 * 1024
CONNECT_TIMEOUT = 10.0
#: fcntl's F_SETPIPE_SZ (Linux): a bigger pipe moves more per splice.
F_SETPIPE_SZ = 1031


class UpstreamError(Exception):
    """The destination could not be reached (the message says why, for the client and log)."""


@dataclass
class Request:
    """A parsed request head: `target` is `host:port` for CONNECT, else the URL as sent."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


@dataclass
class Connection:
    """One allowed connection of a run, handed to its handler."""

    registration: Registration
    host: str
    port: int
    #: The rule that allowed it.
    rule: Rule
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    record: Record
    #: The request head for plain HTTP (already rewritten to origin form); None for CONNECT.
    head: bytes | None = None
    #: Networks the destination must not be in (the proxy's own run networks).
    forbidden: tuple[ipaddress.IPv4Network, ...] = field(default_factory=tuple)


class Handler(Protocol):
    """Serves one allowed connection to its end, filling in `connection.record`'s bytes."""

    async def serve(self, connection: Connection) -> None: ...


#: Names that stand for the host itself: a rule must name one of them (or an address) to reach
#: the host's own services.
HOST_NAMES = ("host.docker.internal", "localhost")


def _usable(address: str, rule: Rule, forbidden: Iterable[ipaddress.IPv4Network]) -> bool:
    """Whether a name's address may be connected to: never the proxy's own loopback, link-local
    addresses (cloud metadata services), the run networks or the host (its bridge addresses),
    unless the rule names it as such. (An allowed name whose DNS someone else controls could
    otherwise be pointed at them.)"""
    ip = ipaddress.IPv4Address(address)
    if ipv4(rule.pattern) is not None or rule.pattern in HOST_NAMES:
        return True
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        return False
    return not any(ip in net for net in forbidden)


async def open_upstream(
    host: str, port: int, rule: Rule, forbidden: Iterable[ipaddress.IPv4Network]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to `host:port`, trying each of its IPv4 addresses that may be used."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM),
            CONNECT_TIMEOUT,
        )
    except (OSError, TimeoutError) as exc:
        raise UpstreamError(f"cannot resolve {host}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    usable = [a for a in addresses if _usable(a, rule, forbidden)]
    if not usable:
        raise UpstreamError(f"{host} resolves to an address runs may not reach ({addresses[0]})")
    last: Exception | None = None
    for address in usable:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(address, port, limit=CHUNK), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            last = exc
    raise UpstreamError(f"cannot connect to {host}:{port}: {last}")


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """Copy `reader` to `writer` until end of stream; the bytes copied. Half-closes after."""
    total = 0
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            total += len(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError, RuntimeError):
        # The other side went away (RuntimeError: writing after the transport closed).
        pass
    return total


def _kernel_copy(src: socket.socket, dst: socket.socket) -> int:
    """Move bytes from `src` to `dst` inside the kernel (splice through a pipe), blocking, until
    `src` ends; then half-close `dst`. On an error both sockets are shut, which also ends the
    other direction. The bytes moved."""
    import fcntl

    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_end, F_SETPIPE_SZ, 1 << 20)
    total = 0
    try:
        while count := os.splice(src.fileno(), write_end, CHUNK):
            total += count
            while count:
                count -= os.splice(read_end, dst.fileno(), count)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
    except OSError:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
    finally:
        os.close(read_end)
        os.close(write_end)
    return total


def _in_thread(fn: Callable[[], int]) -> asyncio.Future[int]:
    """`fn()` in a daemon thread of its own (a tunnel may last as long as its run)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting task
            loop.call_soon_threadsafe(future.set_exception, exc)
        else:
            loop.call_soon_threadsafe(future.set_result, result)

    threading.Thread(target=run, daemon=True, name="al-egress-splice").start()
    return future


def _detach(writer: asyncio.StreamWriter) -> socket.socket | None:
    """A blocking socket of our own on the transport's connection (the transport paused and
    left alone from here on), or None when it has none."""
    raw = writer.get_extra_info("socket")
    if raw is None:
        return None
    writer.transport.pause_reading()  # type: ignore[attr-defined]  # a socket transport
    sock = socket.socket(fileno=os.dup(raw.fileno()))
    sock.setblocking(True)
    return sock


async def splice(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> tuple[int, int]:
    """Copy both ways until both ends finished: (bytes client→upstream, upstream→client).

    In the kernel when it can (Linux splice, one thread per direction): the proxy then costs a
    bulk transfer almost nothing. Bytes the streams already read are sent first."""
    try:
        if hasattr(os, "splice"):
            sent, received = await _kernel_splice(client, upstream)
        else:
            sent, received = await asyncio.gather(
                pump(client[0], upstream[1]), pump(upstream[0], client[1])
            )
    finally:
        for writer in (upstream[1], client[1]):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    return sent, received


def _buffered(reader: asyncio.StreamReader) -> bytes:
    """What `reader` has read from its socket and not yet handed out. (StreamReader keeps it
    in `_buffer`; there is no public way to take it without waiting for more.)"""
    buffer: bytearray = getattr(reader, "_buffer", bytearray())
    data = bytes(buffer)
    buffer.clear()
    return data


async def _kernel_splice(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> tuple[int, int]:
    early_up, early_down = _buffered(client[0]), _buffered(upstream[0])
    for data, writer in ((early_up, upstream[1]), (early_down, client[1])):
        if data:
            writer.write(data)
            await writer.drain()
    client_sock, upstream_sock = _detach(client[1]), _detach(upstream[1])
    if client_sock is None or upstream_sock is None:
        raise UpstreamError("no socket to splice")
    with client_sock, upstream_sock:
        sent, received = await asyncio.gather(
            _in_thread(lambda: _kernel_copy(client_sock, upstream_sock)),
            _in_thread(lambda: _kernel_copy(upstream_sock, client_sock)),
        )
    return sent + len(early_up), received + len(early_down)


class Tunnel:
    """Connect to the destination and copy bytes both ways, untouched."""

    async def serve(self, connection: Connection) -> None:
        upstream = await open_upstream(
            connection.host, connection.port, connection.rule, connection.forbidden
        )
        if connection.head is None:
            connection.writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            upstream[1].write(connection.head)
            connection.record.sent += len(connection.head)
        sent, received = await splice((connection.reader, connection.writer), upstream)
        connection.record.sent += sent
        connection.record.received += received
