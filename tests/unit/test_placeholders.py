"""Placeholders in-process, on loopback: the proxy terminates TLS for a run's declared host with
the run's own certificate, swaps the run's placeholders for the real values in Authorization
(Bearer and git's Basic password) on a kept-alive connection, and refuses a placeholder that
is not the run's; the plan stages placeholders and confines the run's CA to its hosts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography import x509

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.egress.placeholders import _certificates, plan_tokens
from action_llama.egress.proxy import Proxy
from action_llama.egress.records import read, records_path
from action_llama.egress.registry import Registration, register

from fakes.handlers import QuietHandler
from fakes.upstream import UpstreamCA

REAL = "ghp_realTokenSentinel0123456789"
MINE = "alph_" + "1" * 40
OTHER = "alph_" + "2" * 40


class Echo(QuietHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        Echo.seen.append(auth)
        body = hashlib.sha256(auth.encode()).hexdigest().encode()
        self.answer(body)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A TLS server for `localhost` with its own test CA: (port, CA PEM)."""
    ca = UpstreamCA.make(tmp_path / "tls", ("localhost",))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(ca.folder / "server.pem"), str(ca.folder / "server.key"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Echo.seen = []
    yield server.server_address[1], ca.ca_pem
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(tmp_path: Path, upstream: tuple[int, str]) -> Iterator[tuple[int, str]]:
    """The proxy (in a thread) with one run whose placeholder MINE stands for REAL on
    localhost: (its port, the run's CA PEM)."""
    port, upstream_ca = upstream
    state, keys = tmp_path / "state", tmp_path / "keys"
    state.mkdir()
    keys.mkdir()
    (state / "trust.pem").write_text(upstream_ca)
    ca_pem, server_pem = _certificates(("localhost",))
    (keys / "run1.pem").write_text(server_pem)
    table = [{"placeholder": MINE, "value": REAL, "hosts": ["localhost"]}]
    (keys / "run1.json").write_text(json.dumps({"models": {}, "tokens": table}))
    register(
        state,
        Registration(
            run="run1",
            agent="gh",
            mode="allowlist",
            rules=(("localhost", (port,), "test"),),
            address="127.0.0.1",
            intercept=("localhost",),
        ),
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = Proxy(state, keys=keys, host_address="127.0.0.1")
    server.intercept.port = port
    asyncio.run_coroutine_threadsafe(server.listen(0), loop).result(10)
    listening = next(iter(server.servers.values())).sockets[0].getsockname()[1]
    yield listening, ca_pem

    async def shutdown() -> None:
        for listener in server.servers.values():
            listener.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def connect(proxy_port: int, upstream_port: int, ca_pem: str) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cadata=ca_pem)
    conn = http.client.HTTPSConnection("127.0.0.1", proxy_port, context=context, timeout=10)
    conn.set_tunnel("localhost", upstream_port)
    return conn


def get(conn: http.client.HTTPSConnection, auth: str) -> tuple[int, str]:
    conn.request("GET", "/echo", headers={"Authorization": auth})
    answer = conn.getresponse()
    return answer.status, answer.read().decode()


def test_the_declared_host_gets_the_real_value_the_run_never_sees_it(
    proxy: tuple[int, str], upstream: tuple[int, str], tmp_path: Path
) -> None:
    """Through one tunnel, kept alive: a Bearer placeholder and git's Basic password arrive as
    the real token (the client verified the proxy's certificate with the run's CA only)."""
    conn = connect(proxy[0], upstream[0], proxy[1])
    assert get(conn, f"Bearer {MINE}") == (200, digest(f"Bearer {REAL}"))
    basic = base64.b64encode(f"x-access-token:{MINE}".encode()).decode()
    real_basic = base64.b64encode(f"x-access-token:{REAL}".encode()).decode()
    assert get(conn, f"Basic {basic}") == (200, digest(f"Basic {real_basic}"))
    conn.close()
    assert Echo.seen == [f"Bearer {REAL}", f"Basic {real_basic}"]


def test_a_placeholder_that_is_not_the_runs_is_refused(
    proxy: tuple[int, str], upstream: tuple[int, str], tmp_path: Path
) -> None:
    """Another run's placeholder (or an ended run's) gets 403 and never reaches the host; the
    refusal is recorded."""
    conn = connect(proxy[0], upstream[0], proxy[1])
    status, body = get(conn, f"token {OTHER}")
    conn.close()
    assert status == 403
    assert "not this run's" in body
    assert Echo.seen == []
    for _ in range(200):
        found = list(read(records_path(tmp_path / "state", "run1")))
        if found:
            break
        threading.Event().wait(0.01)
    assert found[0]["decision"] == "denied"


def test_plan_stages_placeholders_and_confines_the_runs_ca(tmp_path: Path) -> None:
    """A github_token becomes a placeholder for GitHub's HTTPS hosts; the server certificate
    names exactly them and the CA may vouch for nothing else; a git_ssh key is left alone."""
    store = CredentialStore(tmp_path / "creds")
    store.write(CredentialRef("github_token"), {"token": REAL})
    store.write(CredentialRef("git_ssh"), {"id_rsa": "KEY", "username": "a", "email": "b"})
    plan = plan_tokens(store, [CredentialRef("github_token"), CredentialRef("git_ssh")])
    (fields,) = plan.substitutes.values()
    assert fields["token"].startswith("alph_")
    assert plan.values == (REAL,)
    assert "github.com" in plan.hosts
    assert "*.githubusercontent.com" in plan.hosts
    ca = x509.load_pem_x509_certificate(plan.ca_pem.encode())
    permitted = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    assert {n.value for n in permitted.permitted_subtrees or []} == {
        "github.com",
        "api.github.com",
        "codeload.github.com",
        "uploads.github.com",
        "githubusercontent.com",
    }
    assert REAL not in plan.server_pem + plan.ca_pem
