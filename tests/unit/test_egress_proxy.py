"""The egress proxy in-process, on loopback: request forms, who a connection belongs to, what
it records, and its resolver that answers nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from action_llama.egress import dns
from action_llama.egress.proxy import Proxy, absolute_target, parse_head, split_host_port
from action_llama.egress.records import read, records_path
from action_llama.egress.registry import Registration, register

from fakes.handlers import QuietHandler


class Hello(QuietHandler):
    def do_GET(self) -> None:
        body = f"hello {self.path} {self.headers.get('Host')}".encode()
        self.answer(body)


@pytest.fixture
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def registration(port: int, **extra: Any) -> Registration:
    fields: dict[str, Any] = {
        "run": "run1",
        "agent": "triage",
        "mode": "allowlist",
        "rules": (("localhost", (port,), "test"),),
        "file": "agents/triage/config.toml",
        "address": "127.0.0.1",
    }
    fields.update(extra)
    return Registration(**fields)


async def records_of(state: Path, count: int) -> list[dict[str, Any]]:
    """The run's records once there are `count` (a connection is recorded when it closes)."""
    for _ in range(200):
        found = list(read(records_path(state, "run1")))
        if len(found) >= count:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} records expected, found {found}")


async def exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def with_proxy(state: Path, test: Any) -> Any:
    async def main() -> Any:
        proxy = Proxy(state, host_address="127.0.0.1")
        await proxy.listen(0)
        port = next(iter(proxy.servers.values())).sockets[0].getsockname()[1]
        try:
            return await test(proxy, port)
        finally:
            for server in proxy.servers.values():
                server.close()

    return asyncio.run(main())


def test_request_heads_and_targets_are_parsed_strictly() -> None:
    """Only well-formed heads and plain `host[:port]` authorities are accepted."""
    request = parse_head(b"GET http://a.test:8080/x?y HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert request is not None
    host, port, head = absolute_target(request) or ("", 0, b"")
    assert (host, port) == ("a.test", 8080)
    assert head.startswith(b"GET /x?y HTTP/1.1\r\nHost: a.test:8080\r\n")
    assert b"Connection: close" in head
    assert parse_head(b"GET / HTTP/2\r\n\r\n") is None
    assert parse_head(b"GET /\r\n\r\n") is None
    assert split_host_port("github.com:22", 443) == ("github.com", 22)
    assert split_host_port("github.com", 443) == ("github.com", 443)
    for bad in ("evil.test@github.com:443", "[::1]:443", "a.test:0", "a.test:x", ":443"):
        assert split_host_port(bad, 443) is None, bad


def test_allowed_and_denied_requests_are_answered_and_recorded(
    tmp_path: Path, upstream: int
) -> None:
    """A registered source gets allowed destinations (plain HTTP and CONNECT) and a 403 naming
    the fix for others; every attempt lands in the run's records."""
    register(tmp_path, registration(upstream))

    async def test(proxy: Proxy, port: int) -> list[Any]:
        return [
            await exchange(port, f"GET http://localhost:{upstream}/a HTTP/1.1\r\n\r\n".encode()),
            await exchange(port, b"GET http://evil.test/ HTTP/1.1\r\n\r\n"),
            await exchange(
                port,
                f"CONNECT localhost:{upstream} HTTP/1.1\r\n\r\nGET /b HTTP/1.0\r\n\r\n".encode(),
            ),
            await records_of(tmp_path, 3),
        ]

    plain, denied, tunnel, seen = with_proxy(tmp_path, test)
    assert plain.startswith(b"HTTP/1.0 200")
    assert plain.endswith(f"hello /a localhost:{upstream}".encode())
    assert denied.startswith(b"HTTP/1.1 403")
    assert b'add "evil.test" to allow in agents/triage/config.toml' in denied
    assert tunnel.startswith(b"HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.0 200")
    by_kind = {(r["kind"], r["host"], r["decision"]): r for r in seen}
    assert set(by_kind) == {
        ("http", "localhost", "allowed"),
        ("http", "evil.test", "denied"),
        ("connect", "localhost", "allowed"),
    }
    assert all(r["run"] == "run1" and r["agent"] == "triage" for r in seen)
    assert by_kind["http", "localhost", "allowed"]["received"] > 0
    assert by_kind["connect", "localhost", "allowed"]["sent"] > 0


def test_unknown_sources_get_nothing_and_credentials_identify_host_user_runs(
    tmp_path: Path, upstream: int
) -> None:
    """A connection from no registered address must authenticate as a run (host-user runs do,
    through their proxy URL); a wrong secret gets 407 like no secret."""
    digest = hashlib.sha256(b"s3cret").hexdigest()
    register(tmp_path, registration(upstream, address=None, token_sha256=digest))
    request = f"GET http://localhost:{upstream}/c HTTP/1.1\r\n"

    def auth(secret: str) -> str:
        return "Proxy-Authorization: Basic " + base64.b64encode(f"run1:{secret}".encode()).decode()

    async def test(proxy: Proxy, port: int) -> list[bytes]:
        return [
            await exchange(port, (request + "\r\n").encode()),
            await exchange(port, (request + auth("wrong") + "\r\n\r\n").encode()),
            await exchange(port, (request + auth("s3cret") + "\r\n\r\n").encode()),
        ]

    anonymous, wrong, right = with_proxy(tmp_path, test)
    assert anonymous.startswith(b"HTTP/1.1 407")
    assert wrong.startswith(b"HTTP/1.1 407")
    assert right.startswith(b"HTTP/1.0 200")


def test_origin_form_requests_are_relayed_to_the_runs_gateway(tmp_path: Path) -> None:
    """`GET /path` on the gateway's port goes, untouched, to the host's gateway on that port
    (the one the run registered); on another port, or for a run without one, it is refused."""
    gateway = ThreadingHTTPServer(("127.0.0.2", 0), Hello)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    port = gateway.server_address[1]
    register(tmp_path, registration(port, gateway=port))

    async def main() -> list[bytes]:
        proxy = Proxy(tmp_path, host_address="127.0.0.2", bind="127.0.0.1")
        await proxy.listen(port)
        await proxy.listen(0)
        other = proxy.servers[0].sockets[0].getsockname()[1]
        try:
            head = b"GET /locks HTTP/1.1\r\nHost: al-gateway\r\n\r\n"
            answers = [await exchange(port, head), await exchange(other, head)]
            await records_of(tmp_path, 1)
            return answers
        finally:
            for server in proxy.servers.values():
                server.close()

    try:
        relayed, refused = asyncio.run(main())
    finally:
        gateway.shutdown()
        gateway.server_close()
    assert relayed.startswith(b"HTTP/1.0 200")
    assert relayed.endswith(b"hello /locks al-gateway")
    assert refused.startswith(b"HTTP/1.1 403")
    kinds = [(r["kind"], r["port"], r["decision"]) for r in read(records_path(tmp_path, "run1"))]
    assert kinds == [("gateway", port, "allowed")]


def test_resolver_answers_every_name_with_nxdomain() -> None:
    """The runs' resolver parses the question and answers "no such name", keeping the id."""
    query = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04leak\x04test\x00\x00\x01\x00\x01"
    assert dns.question_name(query) == "leak.test"
    answer = dns.refusal(query)
    assert answer[:2] == b"\xab\xcd"
    assert answer[3] & 0x0F == dns.NXDOMAIN
    assert answer[2] & 0x80  # a response
    assert answer[12:] == query[12:]
    assert dns.question_name(answer) is None  # responses are not questions
    assert dns.question_name(b"\x00" * 5) is None


def test_a_name_never_leads_to_the_host_the_runs_or_metadata() -> None:
    """An allowed name that resolves to loopback, link-local (cloud metadata), another run's
    network or the host's bridge address is not connected to; rules naming the host or an
    address as such are."""
    import ipaddress

    from action_llama.egress.handlers import _usable
    from action_llama.egress.rules import Rule

    forbidden = (ipaddress.IPv4Network("10.213.5.0/24"), ipaddress.IPv4Network("172.17.0.1/32"))
    by_name = Rule("*.example.com")
    for address in ("127.0.0.1", "169.254.169.254", "10.213.5.11", "172.17.0.1", "0.0.0.0"):
        assert not _usable(address, by_name, forbidden), address
    assert _usable("93.184.216.34", by_name, forbidden)
    assert _usable("172.17.0.1", Rule("host.docker.internal", (11434,)), forbidden)
    assert _usable("10.213.5.11", Rule("10.213.5.11", (22,)), forbidden)
