"""Placeholders swapped for real values, in HTTPS requests to the hosts they are for.

Standard library only (it runs in the proxy). A run whose registration lists `intercept` host
patterns holds placeholders instead of its tokens (`placeholders.py`). A CONNECT to one of
those hosts on port 443 is not tunnelled: the proxy answers the TLS handshake itself with the
run's certificate for them (`<keys>/<run id>.pem`, signed by the run's own CA, which the run
trusts), reads each request, puts the real value in place of each of the run's placeholders
for that host in its `Authorization` header (`Bearer`/`token` values, and the password of
`Basic` credentials, as git sends them), and sends it on over a TLS connection of its own to the
real host, verified against the system's roots. A placeholder that is not the run's, or not for
this host (another run's, an ended run's), is refused with 403 and never forwarded. Every other
destination is tunnelled untouched, so a placeholder sent anywhere else stays a placeholder.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import ssl
from pathlib import Path

from action_llama.egress.handlers import Connection, UpstreamError, open_upstream
from action_llama.egress.http1 import copy_body, header_fields, no_body, value_of
from action_llama.egress.names import PLACEHOLDER_PREFIX, TLS_PORT
from action_llama.egress.registry import Registration

IDLE_SECONDS = 120.0
HOP = ("connection", "keep-alive", "proxy-connection", "proxy-authorization", "expect")


def covers(pattern: str, host: str) -> bool:
    """Whether a certificate name `pattern` covers `host` (a wildcard: exactly one label)."""
    if pattern.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]
    return host == pattern


class Refused(Exception):
    """A request carrying a placeholder that is not valid for it."""


def swap(value: str, table: list[dict[str, object]], host: str) -> tuple[str, int]:
    """`value` (an Authorization header) with the run's placeholders for `host` replaced;
    how many were. Refused when a placeholder is left that is not valid here."""
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(rest.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return value, 0
        swapped, count = swap(decoded, table, host)
        return f"{scheme} {base64.b64encode(swapped.encode()).decode()}", count
    count = 0
    for row in table:
        placeholder, hosts = str(row.get("placeholder")), row.get("hosts")
        patterns = hosts if isinstance(hosts, list) else []
        if placeholder in value and any(covers(str(p), host) for p in patterns):
            value = value.replace(placeholder, str(row["value"]))
            count += 1
    if PLACEHOLDER_PREFIX in value:
        raise Refused("a placeholder that is not this run's for this host")
    return value, count


class Intercept:
    """The handler for connections to a run's placeholder hosts."""

    def __init__(self, keys: Path, trust: ssl.SSLContext):
        self.keys = keys
        self.trust = trust
        #: The port whose TLS it terminates (HTTPS; a test serves elsewhere).
        self.port = TLS_PORT
        self._contexts: dict[str, tuple[float, ssl.SSLContext]] = {}

    def wants(self, registration: Registration, host: str, port: int) -> bool:
        return port == self.port and any(covers(p, host) for p in registration.intercept)

    def _server_context(self, run: str) -> ssl.SSLContext:
        path = self.keys / f"{run}.pem"
        try:
            stamp = path.stat().st_mtime
        except OSError:
            raise UpstreamError("the run's brokered credentials are gone (it ended)") from None
        cached = self._contexts.get(run)
        if cached is None or cached[0] != stamp:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(path))
            self._contexts[run] = cached = (stamp, context)
        return cached[1]

    def _table(self, run: str) -> list[dict[str, object]]:
        try:
            data = json.loads((self.keys / f"{run}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        rows = data.get("tokens") or []
        return [r for r in rows if isinstance(r, dict)]

    async def serve(self, connection: Connection) -> None:
        run = connection.registration.run
        context = self._server_context(run)
        writer = connection.writer
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await writer.start_tls(context)
        except (ssl.SSLError, OSError, ConnectionError) as exc:
            connection.record.reason = f"the run's TLS handshake failed: {exc}"
            return
        swapped = requests = 0
        while True:
            try:
                head = await asyncio.wait_for(
                    connection.reader.readuntil(b"\r\n\r\n"), IDLE_SECONDS
                )
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                break
            except (ssl.SSLError, OSError, ConnectionError):
                break
            requests += 1
            try:
                keep, count = await self._exchange(connection, head, self._table(run))
            except Refused as exc:
                connection.record.decision, connection.record.reason = "denied", str(exc)
                _refuse(writer, str(exc))
                break
            swapped += count
            if not keep:
                break
        connection.record.reason = (
            f"TLS terminated: {requests} request(s), {swapped} placeholder(s) swapped"
        )

    async def _exchange(
        self, connection: Connection, head: bytes, table: list[dict[str, object]]
    ) -> tuple[bool, int]:
        """One request and its answer; (whether the client connection goes on, swaps)."""
        line, headers = header_fields(head)
        method = line.split(" ", 1)[0].upper()
        count = 0
        out = [line, f"Host: {connection.host}"]
        for name, value in headers:
            lowered = name.lower()
            if lowered in HOP or lowered == "host":
                continue
            if lowered == "authorization":
                value, count = swap(value, table, connection.host)
            out.append(f"{name}: {value}")
        out.append("Connection: close")
        client = connection.writer
        if "100-continue" in value_of(headers, "Expect").lower():
            client.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        reader, writer = await open_upstream(
            connection.host, connection.port, connection.rule, connection.forbidden
        )
        try:
            await writer.start_tls(self.trust, server_hostname=connection.host)
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))

            async def up(data: bytes) -> None:
                writer.write(data)
                connection.record.sent += len(data)
                await writer.drain()

            async def down(data: bytes) -> None:
                client.write(data)
                connection.record.received += len(data)
                await client.drain()

            await copy_body(connection.reader, headers, up, until_eof=False)
            answer = await reader.readuntil(b"\r\n\r\n")
            while answer.split(b" ", 2)[1:2] and answer.split(b" ", 2)[1].startswith(b"1"):
                answer = await reader.readuntil(b"\r\n\r\n")  # interim answers: ours was sent
            status, answer_headers = header_fields(answer)
            empty = no_body(status, method)
            by_close = not empty and not (
                value_of(answer_headers, "Content-Length")
                or "chunked" in value_of(answer_headers, "Transfer-Encoding").lower()
            )
            keep = not by_close and "close" not in value_of(headers, "Connection").lower()
            kept = [f"{k}: {v}" for k, v in answer_headers if k.lower() not in HOP]
            kept.append(f"Connection: {'keep-alive' if keep else 'close'}")
            await down(("\r\n".join([status, *kept]) + "\r\n\r\n").encode("latin-1"))
            if not empty:
                await copy_body(reader, answer_headers, down, until_eof=True)
        except (ssl.SSLError, OSError, asyncio.IncompleteReadError) as exc:
            raise UpstreamError(f"{connection.host}: {exc}") from None
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        return keep, count


def _refuse(writer: asyncio.StreamWriter, why: str) -> None:
    body = f"al egress: refused: {why}\n".encode()
    writer.write(
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
