"""The egress proxy: the only way out of a run's network, applying the run's allow list.

Standard library only; it runs in a long-lived container of the project (`deploy.py`) built
from the base image, attached to every agent's internal network and to one outside network.

One HTTP listener serves three kinds of request, told apart by their first line:

- `CONNECT host:port` opens a tunnel (HTTPS, git over ssh through the ProxyCommand helper);
- `GET http://host/path` (absolute form) forwards one plain-HTTP request;
- `POST /.al/models/<model>/...` (origin form, on the proxy's port) is a model request of a
  run for the model broker (`broker.py`), which adds the provider key the run never holds;
- `GET /path` (other origin form) is a request for the scheduler's gateway: runs reach it as
  `al-gateway:<port>`, which names the proxy, so the proxy listens on the gateway's port too
  and relays the connection to the host's gateway at that port.

A connection belongs to the run registered with its source address (container runs), or to
the run whose credentials it sends in `Proxy-Authorization` (host-user runs, all seen from the
host's address). Unknown sources get nothing. Every attempt is recorded (`records.py`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import json
import os
import sys
import time
from pathlib import Path

from action_llama.egress import records
from action_llama.egress.broker import PREFIX as BROKER_PREFIX
from action_llama.egress.broker import Broker, upstream_trust
from action_llama.egress.handlers import (
    CHUNK,
    Connection,
    Handler,
    Request,
    Tunnel,
    UpstreamError,
    splice,
)
from action_llama.egress.intercept import Intercept
from action_llama.egress.names import (
    GATEWAY_NAME,
    HEARTBEAT_FILE,
    KEYS_DIR,
    PROXY_PORT,
    STATUS_FILE,
)
from action_llama.egress.records import Record
from action_llama.egress.registry import Registration, Registry
from action_llama.egress.rules import fix_for, normalise_host

HEAD_TIMEOUT = 30.0
HEARTBEAT_SECONDS = 1.0
WATCH_SECONDS = 0.1
NETWORKS_SECONDS = 1.0


def parse_head(raw: bytes) -> Request | None:
    """The request line and headers of `raw` (ending with an empty line), None if malformed."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers.append((name, value.strip()))
    return Request(parts[0].upper(), parts[1], parts[2], headers)


def split_host_port(authority: str, default: int) -> tuple[str, int] | None:
    """`host[:port]` → (host, port); None for anything else (userinfo, IPv6, junk)."""
    host, sep, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if sep and not (port.isdigit() and 0 < int(port) < 65536):
        return None
    if not host or any(c in host for c in "@[]/\\%?# "):
        return None
    return host, int(port) if sep else default


def absolute_target(request: Request) -> tuple[str, int, bytes] | None:
    """For an absolute-form plain-HTTP request: (host, port, the head in origin form)."""
    if not request.target.lower().startswith("http://"):
        return None
    rest = request.target[7:]
    authority, slash, path = rest.partition("/")
    found = split_host_port(authority, 80)
    if found is None:
        return None
    host, port = found
    hop = {"proxy-authorization", "proxy-connection", "connection", "keep-alive", "host"}
    lines = [f"{request.method} /{path if slash else ''} {request.version}", f"Host: {authority}"]
    lines += [f"{k}: {v}" for k, v in request.headers if k.lower() not in hop]
    # One request per connection: a later one on the same client connection could name
    # another host, and must be checked again.
    lines.append("Connection: close")
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _credentials(request: Request) -> tuple[str, str] | None:
    value = request.header("Proxy-Authorization") or ""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, secret) if sep else None


def _answer(writer: asyncio.StreamWriter, status: str, text: str, extra: str = "") -> None:
    body = (text + "\n").encode()
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n".encode()
        + body
    )


def _hex_ip(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(text, 16).to_bytes(4, "little"))


def own_run_networks() -> tuple[ipaddress.IPv4Network, ...]:
    """Where the proxy never connects for a name: the networks this container is attached to
    except the outside one (destinations there would be other runs), and the host's addresses
    (the outside network's gateway, and `host.docker.internal`), which only rules naming the
    host reach."""
    nets: list[ipaddress.IPv4Network] = []
    default_ifaces: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/net/route", encoding="ascii") as fh:
        rows = [line.split() for line in fh.read().splitlines()[1:]]
        for row in rows:
            if row[1] == "00000000":
                default_ifaces.add(row[0])
                nets.append(ipaddress.IPv4Network(_hex_ip(row[2])))
        for row in rows:
            if row[1] == "00000000" or row[0] in default_ifaces or row[0] == "lo":
                continue
            nets.append(ipaddress.IPv4Network(f"{_hex_ip(row[1])}/{_hex_ip(row[7])}", strict=False))
    with contextlib.suppress(OSError), open("/etc/hosts", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split("#", 1)[0].split()
            if len(fields) > 1 and "host.docker.internal" in fields[1:]:
                with contextlib.suppress(ValueError):
                    nets.append(ipaddress.IPv4Network(fields[0]))
    return tuple(nets)


class Proxy:
    """The proxy's listeners and state, over the egress state folder `state`."""

    def __init__(
        self,
        state: Path,
        *,
        host_address: str = "host.docker.internal",
        bind: str = "0.0.0.0",
        keys: Path = KEYS_DIR,
        port: int = PROXY_PORT,
    ):
        self.state = state
        self.bind = bind
        self.port = port
        self.registry = Registry(state)
        trust = upstream_trust(state)
        self.broker = Broker(state, keys, self.registry, trust)
        self.intercept = Intercept(keys, trust)
        #: How the proxy reaches the host (where the scheduler's gateway listens).
        self.host_address = host_address
        self.tunnel: Handler = Tunnel()
        self.servers: dict[int, asyncio.Server] = {}
        self.forbidden = own_run_networks()

    def handler_for(self, registration: Registration, host: str, port: int) -> Handler:
        """How to serve an allowed connection: TLS terminated to swap the run's placeholders
        (its brokered tokens' hosts), else tunnelled untouched."""
        if self.intercept.wants(registration, host, port):
            return self.intercept
        return self.tunnel

    # -- listening ---------------------------------------------------------------------------

    async def listen(self, port: int) -> None:
        if port not in self.servers:
            self.servers[port] = await asyncio.start_server(
                self.serve_client, self.bind, port, limit=CHUNK, reuse_address=True
            )
            self._write_status()

    async def watch_gateways(self) -> None:
        """Listen on the gateway port of every registered run, as soon as it is registered,
        and keep the run networks (`forbidden`) current. A tick costs one stat when nothing
        changed: the route table is read again when the registrations changed (a run on a new
        network registers) or once every NETWORKS_SECONDS, so an idle proxy costs ~nothing."""
        seen: int | None = None
        networks_due = 0.0
        while True:
            self.registry.refresh()
            if self.registry.stamp != seen or time.monotonic() >= networks_due:
                seen = self.registry.stamp
                self.forbidden = own_run_networks()
                networks_due = time.monotonic() + NETWORKS_SECONDS
            for port in self.registry.gateways() - set(self.servers):
                try:
                    await self.listen(port)
                except OSError as exc:
                    print(f"al-egress: cannot listen on {port} for the gateway: {exc}", flush=True)
            await asyncio.sleep(WATCH_SECONDS)

    def _write_status(self) -> None:
        status = {"pid": os.getpid(), "started": time.time(), "listening": sorted(self.servers)}
        partial = self.state / f".{STATUS_FILE}.partial"
        partial.write_text(json.dumps(status))
        partial.replace(self.state / STATUS_FILE)

    async def heartbeat(self) -> None:
        beat = self.state / HEARTBEAT_FILE
        while True:
            beat.touch()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    # -- one client connection ---------------------------------------------------------------

    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            await self._serve(reader, writer)
        except Exception as exc:  # one bad connection must never stop the proxy
            print(f"al-egress: connection failed: {exc!r}", flush=True)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername")[0])
        local_port = int(writer.get_extra_info("sockname")[1])
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            return
        request = parse_head(raw)
        if request is None:
            _answer(writer, "400 Bad Request", "al egress: not an HTTP proxy request")
            return
        if request.target.startswith(BROKER_PREFIX) and local_port == self.port:
            await self.broker.serve(peer, request, reader, writer, self.forbidden)
            return
        if request.target.startswith("/"):
            await self._relay_gateway(peer, local_port, raw, reader, writer)
            return
        registration = self._identify(peer, request)
        if registration is None:
            print(f"al-egress: refused {request.target!r} from unknown source {peer}", flush=True)
            _answer(
                writer,
                "407 Proxy Authentication Required",
                "al egress: this connection belongs to no run",
                'Proxy-Authenticate: Basic realm="al-egress"\r\n',
            )
            return
        await self._proxy(registration, request, reader, writer)

    def _identify(self, peer: str, request: Request) -> Registration | None:
        found = self.registry.by_address(peer)
        if found is not None:
            return found
        credentials = _credentials(request)
        return self.registry.by_credentials(*credentials) if credentials else None

    async def _proxy(
        self,
        registration: Registration,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        head: bytes | None = None
        if request.method == "CONNECT":
            kind, found = "connect", split_host_port(request.target, 443)
        else:
            kind, target = "http", absolute_target(request)
            found = (target[0], target[1]) if target else None
            head = target[2] if target else None
        record = Record(registration.run, registration.agent, kind, request.target[:255], 0, "")
        if found is None:
            self._deny(writer, registration, record, "not a host name")
            return
        host, port = found
        record.host, record.port = normalise_host(host) or host[:255], port
        decision = registration.policy().decide(host, port)
        if not decision.allowed or decision.rule is None:
            self._deny(writer, registration, record, decision.reason)
            return
        record.decision = "allowed"
        record.rule = f"{decision.rule.describe()} ({decision.rule.source})"
        connection = Connection(
            registration, record.host, port, decision.rule, reader, writer, record, head
        )
        connection.forbidden = self.forbidden
        started = time.monotonic()
        try:
            await self.handler_for(registration, record.host, port).serve(connection)
        except UpstreamError as exc:
            record.decision, record.reason = "failed", str(exc)
            _answer(writer, "502 Bad Gateway", f"al egress: {exc}")
        finally:
            record.ms = int((time.monotonic() - started) * 1000)
            records.append(self.state, record)

    def _deny(
        self, writer: asyncio.StreamWriter, registration: Registration, record: Record, why: str
    ) -> None:
        fix = fix_for(registration.mode, registration.file, record.host, record.port)
        record.decision, record.reason, record.fix = "denied", why, fix
        records.append(self.state, record)
        _answer(
            writer,
            "403 Forbidden",
            f"al egress: {record.host}:{record.port} is blocked by [network] of agent "
            f"{registration.agent} ({why}); {fix}",
        )

    async def _relay_gateway(
        self,
        peer: str,
        port: int,
        raw: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        registration = self.registry.by_address(peer)
        if registration is None or registration.gateway != port:
            _answer(writer, "403 Forbidden", "al egress: no gateway for this connection")
            return
        record = Record(registration.run, registration.agent, "gateway", GATEWAY_NAME, port, "")
        started = time.monotonic()
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(self.host_address, port, limit=CHUNK), 10
            )
        except (OSError, TimeoutError) as exc:
            record.decision, record.reason = "failed", f"gateway unreachable: {exc}"
            _answer(writer, "502 Bad Gateway", "al egress: the gateway is not answering")
        else:
            record.decision = "allowed"
            upstream[1].write(raw)
            sent, received = await splice((reader, writer), upstream)
            record.sent, record.received = sent + len(raw), received
        record.ms = int((time.monotonic() - started) * 1000)
        records.append(self.state, record)


async def serve(
    state: Path, port: int = PROXY_PORT, dns_port: int | None = 53, keys: Path = KEYS_DIR
) -> None:
    """Run the proxy (and the resolver for runs) until cancelled."""
    from action_llama.egress.dns import serve_dns

    proxy = Proxy(state, keys=keys, port=port)
    await proxy.listen(port)
    tasks = [asyncio.create_task(proxy.heartbeat()), asyncio.create_task(proxy.watch_gateways())]
    if dns_port is not None:
        tasks.append(asyncio.create_task(serve_dns(proxy, dns_port)))
    print(f"al-egress: proxy on {port}, state {state}", file=sys.stderr, flush=True)
    await asyncio.gather(*tasks)
