"""The model broker: a run's model requests, forwarded with a provider key the run never holds.

Standard library only (it runs in the proxy). A run's model client gets the base URL
`http://<proxy>:3128/.al/models/<model name>` and, as its API key, the run's broker token
`<run id>.<secret>` (the secret's digest is in the run's registration). The SDK sends the
token where it sends a key (`Authorization: Bearer`, `x-api-key`); the broker checks it (and,
for a container run, that it comes from the run's own address), puts the real key in its place
(read from `<keys>/<run id>.json`, which the host writes for the run's life, outside the run)
and forwards the request to the model's endpoint, passing the answer back as it arrives
(streams included). It reads the token usage out of every answer (`usage.py`) and records it
with the run (kind `model`); when the run's total reaches its `tokens_per_run`, it records
kind `limit` and refuses the run's further requests, and the host stops the run.

One request per connection (`Connection: close` both ways): the SDKs open another.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

from action_llama.egress import records
from action_llama.egress.handlers import Request, UpstreamError, open_upstream
from action_llama.egress.http1 import copy_body, header_fields, value_of
from action_llama.egress.names import BROKER_PREFIX
from action_llama.egress.records import Record, records_path
from action_llama.egress.registry import Registration, Registry
from action_llama.egress.rules import Rule, fix_for
from action_llama.egress.usage import Meter

PREFIX = BROKER_PREFIX
MAX_BODY = 32 * 1024 * 1024
HEAD_LIMIT = 64 * 1024
ANSWER_TIMEOUT = 600.0
#: Headers a key travels in: the run's token in them is replaced by the key.
AUTH_HEADERS = ("authorization", "x-api-key", "api-key")
#: Request headers not forwarded as they are (hop-by-hop, or set by the broker).
DROPPED = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "host",
    "accept-encoding",
    "content-length",
    "transfer-encoding",
}


class BrokerRefusal(Exception):
    """A request the broker answers itself: (HTTP status, error type, message)."""

    def __init__(self, status: str, kind: str, message: str):
        super().__init__(message)
        self.status = status
        self.kind = kind


def token_in(request: Request) -> str | None:
    """The token the SDK sent where a key goes."""
    for name in AUTH_HEADERS:
        value = request.header(name)
        if value:
            scheme, _, rest = value.partition(" ")
            return rest.strip() if scheme.lower() == "bearer" and rest else value.strip()
    return None


def _error_answer(status: str, kind: str, message: str) -> bytes:
    body = json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nx-should-retry: false\r\nConnection: close\r\n\r\n"
    ).encode() + body


def upstream_trust(state: Path) -> ssl.SSLContext:
    """How the proxy verifies the hosts it opens TLS to itself: the system's roots, plus the
    CAs in `<state>/trust.pem` when the operator put some there (a TLS-inspecting corporate
    gateway's, a test upstream's)."""
    context = ssl.create_default_context()
    extra = state / "trust.pem"
    if extra.is_file():
        context.load_verify_locations(cafile=str(extra))
    return context


class Broker:
    """Forwards model requests for the runs in `registry`, keys read from `keys`."""

    def __init__(self, state: Path, keys: Path, registry: Registry, trust: ssl.SSLContext):
        self.state = state
        self.keys = keys
        self.registry = registry
        #: Tokens each run used so far (read back from its records after a proxy restart).
        self.used: dict[str, int] = {}
        self.limited: set[str] = set()
        self.trust = trust

    def tokens_used(self, run: str) -> int:
        if run not in self.used:
            total = 0
            for record in records.read(records_path(self.state, run)):
                if record.get("kind") == "model" and isinstance(record.get("tokens"), int):
                    total += int(record["tokens"])  # type: ignore[call-overload]
                elif record.get("kind") == "limit":
                    self.limited.add(run)
            self.used[run] = total
        return self.used[run]

    def identify(self, peer: str, request: Request) -> Registration:
        token = token_in(request) or ""
        run, _, secret = token.partition(".")
        found = self.registry.by_credentials(run, secret) if secret else None
        if found is None or (found.address is not None and found.address != peer):
            raise BrokerRefusal(
                "401 Unauthorized",
                "authentication_error",
                "al model broker: this token belongs to no running run",
            )
        return found

    def _key(self, run: str, model: str) -> str | None:
        try:
            data = json.loads((self.keys / f"{run}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        key = data.get("models", {}).get(model)
        return key if isinstance(key, str) and key else None

    async def serve(
        self,
        peer: str,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        forbidden: tuple[ipaddress.IPv4Network, ...],
    ) -> None:
        try:
            registration = self.identify(peer, request)
            name, _, rest = request.target[len(PREFIX) :].partition("/")
            url = registration.models.get(name)
            if url is None:
                raise BrokerRefusal(
                    "404 Not Found", "not_found_error", f"al model broker: no model {name!r}"
                )
            if registration.tokens_per_run and (
                self.tokens_used(registration.run) >= registration.tokens_per_run
                or registration.run in self.limited
            ):
                raise BrokerRefusal(
                    "403 Forbidden",
                    "al_token_limit",
                    f"this run reached its token limit ({registration.tokens_per_run} tokens)",
                )
            body = await self._body(request, reader)
        except BrokerRefusal as refusal:
            writer.write(_error_answer(refusal.status, refusal.kind, str(refusal)))
            return
        await self._forward(registration, name, url, rest, request, body, writer, forbidden)

    async def _body(self, request: Request, reader: asyncio.StreamReader) -> bytes:
        length = request.header("Content-Length") or "0"
        if not length.isdigit() or int(length) > MAX_BODY:
            raise BrokerRefusal(
                "411 Length Required", "al_broker", "send a Content-Length under 32 MB"
            )
        return await reader.readexactly(int(length))

    def _head(
        self, request: Request, url: str, rest: str, body: bytes, token: str, key: str | None
    ) -> bytes:
        parts = urlsplit(url)
        path = parts.path.rstrip("/") + "/" + rest
        lines = [f"{request.method} {path} HTTP/1.1", f"Host: {parts.netloc}"]
        for name, value in request.headers:
            lowered = name.lower()
            if lowered in DROPPED:
                continue
            if lowered in AUTH_HEADERS:
                if key is None:
                    continue  # a server without a key (a local Ollama...)
                value = value.replace(token, key)
            lines.append(f"{name}: {value}")
        lines += ["Accept-Encoding: identity", f"Content-Length: {len(body)}", "Connection: close"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _forward(
        self,
        registration: Registration,
        name: str,
        url: str,
        rest: str,
        request: Request,
        body: bytes,
        writer: asyncio.StreamWriter,
        forbidden: tuple[ipaddress.IPv4Network, ...],
    ) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        record = Record(
            registration.run, registration.agent, "model", host, port, "allowed", model=name
        )
        record.rule = f"model {name}"
        decision = registration.policy().decide(host, port)
        if not decision.allowed:  # mode none: the run's models are out of reach too
            record.decision, record.reason = "denied", decision.reason
            record.fix = fix_for(registration.mode, registration.file, host, port)
            records.append(self.state, record)
            writer.write(_error_answer("403 Forbidden", "al_egress", f"{decision.reason}"))
            return
        started = time.monotonic()
        key = self._key(registration.run, name)
        head = self._head(request, url, rest, body, token_in(request) or "", key)
        meter: Meter | None = None
        try:
            upstream = await open_upstream(host, port, Rule(host, (port,), "model"), forbidden)
            if parts.scheme == "https":
                await upstream[1].start_tls(self.trust, server_hostname=host)
            upstream[1].write(head + body)
            record.sent = len(head) + len(body)
            meter = await self._relay(upstream[0], writer, record)
            upstream[1].close()
        except (UpstreamError, OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            record.decision, record.reason = "failed", str(exc) or type(exc).__name__
            if record.received == 0:
                writer.write(
                    _error_answer("502 Bad Gateway", "api_error", f"al model broker: {exc}")
                )
        except (asyncio.LimitOverrunError, ValueError) as exc:
            record.decision, record.reason = "failed", f"unreadable answer: {exc}"
        finally:
            record.ms = int((time.monotonic() - started) * 1000)
            self._count(registration, record, meter)

    async def _relay(
        self, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Record
    ) -> Meter:
        """Pass the answer on as it arrives; its usage, metered on the way."""
        raw = await asyncio.wait_for(upstream.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT)
        status, headers = header_fields(raw)
        kept = [f"{k}: {v}" for k, v in headers if k.lower() != "connection"]
        out = "\r\n".join([status, *kept, "Connection: close"]) + "\r\n\r\n"
        writer.write(out.encode("latin-1"))
        record.received = len(out)
        meter = Meter(value_of(headers, "Content-Type"))

        async def send(data: bytes) -> None:
            writer.write(data)
            record.received += len(data)
            await writer.drain()

        await copy_body(upstream, headers, send, meter.feed, until_eof=True)
        return meter

    def _count(self, registration: Registration, record: Record, meter: Meter | None) -> None:
        run = registration.run
        if meter is not None:
            usage = meter.finish()
            record.input_tokens, record.output_tokens = usage.input, usage.output
            record.cache_read_tokens, record.cache_write_tokens = (
                usage.cache_read,
                usage.cache_write,
            )
            record.tokens = usage.total
            self.used[run] = self.tokens_used(run) + usage.total
        records.append(self.state, record)
        cap = registration.tokens_per_run
        if cap and run not in self.limited and self.tokens_used(run) >= cap:
            self.limited.add(run)
            limit = Record(run, registration.agent, "limit", record.model, 0, "stopped")
            limit.model = record.model
            limit.tokens = self.used[run]
            limit.reason = f"token limit of {cap} reached ({self.used[run]} tokens used)"
            with contextlib.suppress(OSError):
                records.append(self.state, limit)
