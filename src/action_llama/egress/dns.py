"""The resolver runs are given: it answers every question "no such name" and asks no one.

Standard library only. Runs' containers name the proxy as their DNS server, so the engine's
embedded resolver (which, in Docker 20.10, forwards names it does not know even for internal
networks: CVE-2024-29018) forwards to this one, and nothing a run asks ever leaves the host.
A run needs no names: its proxy resolves the hosts it is allowed. Each name a run asks for is
recorded once (kind `dns`), so a client that ignores the proxy variables shows in its log.
"""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING, cast

from action_llama.egress import records
from action_llama.egress.records import Record

if TYPE_CHECKING:
    from action_llama.egress.proxy import Proxy

NXDOMAIN = 3
#: Names remembered per run, so a lookup loop cannot fill the records.
MAX_NAMES = 256


def question_name(query: bytes) -> str | None:
    """The first question's name of a DNS query, or None when it is not one."""
    if len(query) < 12 or query[2] & 0x80:  # too short, or a response
        return None
    labels: list[str] = []
    offset = 12
    while offset < len(query):
        length = query[offset]
        if length == 0:
            return ".".join(labels)
        if length & 0xC0:
            return None  # no compression in questions
        label = query[offset + 1 : offset + 1 + length]
        labels.append(label.decode("ascii", errors="replace").lower())
        offset += 1 + length
    return None


def refusal(query: bytes) -> bytes:
    """The answer to `query`: same id and question, no answers, NXDOMAIN."""
    ident, flags = struct.unpack("!HH", query[:4])
    flags = 0x8000 | (flags & 0x7900) | NXDOMAIN  # QR, opcode and RD kept, no RA
    question = query[12:]
    name_end = question.find(b"\x00")
    question = question[: name_end + 5] if name_end >= 0 else b""
    return struct.pack("!HHHHHH", ident, flags, 1 if question else 0, 0, 0, 0) + question


class Resolver:
    """Answers and records questions, for UDP and TCP."""

    def __init__(self, proxy: Proxy):
        self.proxy = proxy
        self.seen: dict[str, set[str]] = {}

    def answer(self, query: bytes, peer: str) -> bytes | None:
        name = question_name(query)
        if name is None:
            return None
        registration = self.proxy.registry.by_address(peer)
        if registration is not None:
            names = self.seen.setdefault(registration.run, set())
            if name not in names and len(names) < MAX_NAMES:
                names.add(name)
                records.append(
                    self.proxy.state,
                    Record(
                        registration.run,
                        registration.agent,
                        "dns",
                        name[:255],
                        53,
                        "denied",
                        "runs resolve no names",
                        fix="connect through the proxy (HTTPS_PROXY and HTTP_PROXY are set)",
                    ),
                )
        return refusal(query)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver):
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        reply = self.resolver.answer(data, str(addr[0]))
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def serve_dns(proxy: Proxy, port: int = 53) -> None:
    resolver = Resolver(proxy)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: _Udp(resolver), local_addr=("0.0.0.0", port))

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername")[0])
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = resolver.answer(await reader.readexactly(length), peer)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(tcp, "0.0.0.0", port)
    async with server:
        await server.serve_forever()
