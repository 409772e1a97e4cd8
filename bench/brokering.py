"""What brokering costs a request. Goals: a model request through the model broker at most
+5 ms over the same request straight to the server (median); a brokered HTTPS request (TLS
terminated, placeholder swapped, TLS re-originated) against a tunnelled one: the ratio, shown.

The egress proxy runs as its own process on loopback (`action_llama.egress.proxy.Proxy`, the
code the proxy container runs), with one run registered for 127.0.0.1 as a container run is
for its address: its model `gpt` is the fake model server (`tests/fakes/model_server.py`), its
placeholder stands for a token on `localhost`, a TLS server with its own test CA that the
proxy trusts. No Docker needed: the figures are the proxy's own cost, not the engine's.

- model: `--requests` chat completions (a 1 kB prompt, usage in the answer), alternating
  straight to the server and through the broker (which checks the run's token, adds the key,
  forwards, meters the usage and records it); each on a new connection, as the broker
  answers `Connection: close`.
- https: `--requests` GETs with `Authorization: Bearer <placeholder>`, each on a new
  connection through the proxy (CONNECT), alternating between a run whose placeholder host it
  is (TLS terminated and re-originated, the value swapped) and one that only tunnels it.

    .venv/bin/python bench/brokering.py [--requests 300] [--check]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _common import summary, verdict

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from fakes.model_server import FakeModelServer, reply  # noqa: E402
from fakes.upstream import UpstreamCA  # noqa: E402

GOAL_MODEL_MS = 5.0
SECRET = "bench-secret"
PLACEHOLDER = "alph_" + "b" * 40
#: The proxy process: listens on the port given, intercepting TLS on the upstream's port.
PROXY = """
import asyncio, sys
from pathlib import Path
from action_llama.egress.proxy import Proxy

async def main():
    proxy = Proxy(Path(sys.argv[1]), keys=Path(sys.argv[2]), port=int(sys.argv[3]))
    proxy.intercept.port = int(sys.argv[4])
    await proxy.listen(int(sys.argv[3]))
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per answer, sent at once: after TLS 1.3's session tickets, a small answer
    # would otherwise wait for the client's delayed ACK (Nagle's algorithm), 40 ms each time.
    wbufsize = 64 * 1024

    def setup(self) -> None:
        import socket

        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tls_upstream(folder: Path) -> tuple[ThreadingHTTPServer, UpstreamCA]:
    ca = UpstreamCA.make(folder / "tls", ("localhost",))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(ca.folder / "server.pem"), str(ca.folder / "server.key"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, ca


def register_runs(state: Path, keys: Path, models: FakeModelServer, tls_port: int) -> str:
    """Two runs on 127.0.0.2 and 127.0.0.1: the first has the placeholder (TLS terminated),
    the second does not (tunnelled); the run CA's PEM."""
    from action_llama.egress.placeholders import _certificates
    from action_llama.egress.registry import Registration, register, token_digest

    ca_pem, server_pem = _certificates(("localhost",))
    (keys / "brk.pem").write_text(server_pem)
    table = [{"placeholder": PLACEHOLDER, "value": "real-token", "hosts": ["localhost"]}]
    (keys / "brk.json").write_text(json.dumps({"models": {"gpt": "sk-bench"}, "tokens": table}))
    rules = (("127.0.0.1", (models.port,), "model"), ("localhost", (tls_port,), "bench"))
    common: dict[str, Any] = {"agent": "bench", "mode": "allowlist", "rules": rules}
    register(
        state,
        Registration(
            run="brk",
            address="127.0.0.2",
            token_sha256=token_digest(SECRET),
            models={"gpt": models.openai_url("127.0.0.1")},
            intercept=("localhost",),
            **common,
        ),
    )
    register(state, Registration(run="tun", address="127.0.0.1", **common))
    return ca_pem


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def alternate(count: int, ways: dict[str, Callable[[], None]]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in ways}
    for index in range(count):
        order = list(ways.items()) if index % 2 == 0 else list(ways.items())[::-1]
        for name, fn in order:
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return times


def model_requests(proxy_port: int, models: FakeModelServer, count: int) -> dict[str, list[float]]:
    body = json.dumps(
        {"model": "gpt-fake", "messages": [{"role": "user", "content": "x" * 1000}]}
    ).encode()

    def post(host: str, port: int, path: str, key: str, source: str) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(source, 0))
        conn.request(
            "POST",
            path,
            body,
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        answer = conn.getresponse()
        answer.read()
        conn.close()
        if answer.status != 200:
            raise SystemExit(f"model request answered {answer.status}")

    return alternate(
        count,
        {
            "direct": lambda: post(
                "127.0.0.1", models.port, "/v1/chat/completions", "sk-bench", "127.0.0.2"
            ),
            "broker": lambda: post(
                "127.0.0.1",
                proxy_port,
                "/.al/models/gpt/chat/completions",
                f"brk.{SECRET}",
                "127.0.0.2",
            ),
        },
    )


def https_requests(proxy_port: int, tls_port: int, ca: str, count: int) -> dict[str, list[float]]:
    """Fresh connections through the proxy: terminated (run brk) and tunnelled (run tun)."""
    run_ca = ssl.create_default_context(cadata=ca)

    def get(source: str, context: ssl.SSLContext) -> None:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", proxy_port, context=context, timeout=10, source_address=(source, 0)
        )
        conn.set_tunnel("localhost", tls_port)
        conn.request("GET", "/", headers={"Authorization": f"Bearer {PLACEHOLDER}"})
        answer = conn.getresponse()
        answer.read()
        conn.close()
        if answer.status != 200:
            raise SystemExit(f"https request answered {answer.status}")

    def straight() -> None:
        conn = http.client.HTTPSConnection(
            "localhost", tls_port, context=upstream_context, timeout=10
        )
        conn.request("GET", "/", headers={"Authorization": "Bearer real-token"})
        conn.getresponse().read()
        conn.close()

    return alternate(
        count,
        {
            "terminated": lambda: get("127.0.0.2", run_ca),
            "tunnelled": lambda: get("127.0.0.1", upstream_context),
            "direct": straight,
        },
    )


upstream_context = ssl.create_default_context()


def main() -> int:
    global upstream_context
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="al-bench-broker-"))
    models = FakeModelServer("127.0.0.1")
    models.always(reply("ok"))
    upstream, upstream_ca = tls_upstream(folder)
    upstream_context = ssl.create_default_context(cadata=upstream_ca.ca_pem)
    tls_port = upstream.server_address[1]
    state, keys = folder / "state", folder / "keys"
    state.mkdir()
    keys.mkdir()
    (state / "trust.pem").write_text(upstream_ca.ca_pem)
    run_ca = register_runs(state, keys, models, tls_port)
    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, "-c", PROXY, str(state), str(keys), str(port), str(tls_port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parent / "src")},
    )
    try:
        assert proxy.stdout is not None
        if proxy.stdout.readline().strip() != "ready":
            raise SystemExit("the proxy did not start")
        model = model_requests(port, models, args.requests)
        for name, values in model.items():
            print(f"  model request, {name:<10} {summary(values)}")
        added = median_ms(model["broker"]) - median_ms(model["direct"])
        ok = added <= GOAL_MODEL_MS
        print(
            f"  broker - direct: {added:+.2f} ms median (goal <= +{GOAL_MODEL_MS:.0f} ms): "
            f"{verdict(ok)}"
        )
        https = https_requests(port, tls_port, run_ca, args.requests)
        for name, values in https.items():
            print(f"  https request, {name:<10} {summary(values)}")
        ratio = median_ms(https["terminated"]) / median_ms(https["tunnelled"])
        print(
            f"  terminated / tunnelled: {ratio:.2f}x the time per request (median; "
            "each a new connection: two TLS handshakes instead of one)"
        )
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(10)
        models.close()
        upstream.shutdown()
        upstream.server_close()
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"({time.monotonic() - started:.0f} s)")
    raise SystemExit(code)
