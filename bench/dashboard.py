"""The dashboard's cost to the daemon: the agents page, idle browsers, and a long log.
Goals: the agents page with 200 agents and 10,000 stored runs in <= 100 ms (median); 20 open
browsers idle cost the daemon <= 2% of a core; a 50,000-line log streams without being read
into memory whole (the daemon's peak memory grows by less than the log's size).

One `al start` over a temporary project of `--agents` (200) host-user agents (`run_as =
"nobody"`, no schedule: nothing runs, no engine needed) whose database already holds `--runs`
(10,000) runs spread over them, one of which has a `--lines` (50,000) line log.

- Agents page: `GET /` with a session, `--requests` (30) times, one after another; baselines
  in the same run: `GET /control/status` (the operator API's JSON of the same state) and
  `GET /health` (the floor of one request to this gateway).
- Idle browsers: the daemon's CPU (utime + stime) over `--idle` (20) seconds with no client,
  then with `--browsers` (20) sessions each holding the agents page's live stream open, as
  open tabs do; what the streams add is the difference.
- A long log: the run's whole log fetched as its page streams it (`/live/runs/<id>?after=0`,
  server-sent events) and as text (`/runs/<id>/log.txt`), the daemon's peak resident memory
  (VmHWM, reset before each) against the log's size; and, while the log streams, the latency
  of `GET /health` next to its latency at rest, which would grow if the streaming blocked the
  event loop the scheduler shares.

    .venv/bin/python bench/dashboard.py [--agents 200] [--runs 10000] [--lines 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import Daemon, cpu_seconds, percentile, script_agent, verdict, write_files

GOAL_PAGE = 0.100
GOAL_IDLE = 0.02
LOG_AGENT = "agent-0000"
LOG_RUN = "longlog0"


def make_project(base: Path, agents: int, runs: int, lines: int) -> tuple[Path, int]:
    """The project, its history and the long log; the log's size in bytes."""
    from action_llama.state import State

    root = base / "proj"
    files: dict[str, str] = {"config.toml": ""}
    for i in range(agents):
        name = f"agent-{i:04d}"
        files.update(script_agent(name))
        files[f"agents/{name}/config.toml"] = '[runtime]\ntype = "host-user"\nrun_as = "nobody"\n'
    write_files(root, files)
    state_dir = root / ".al"
    log = state_dir / "logs" / LOG_AGENT / f"{LOG_RUN}.jsonl"
    log.parent.mkdir(parents=True)
    with log.open("w") as out:
        for n in range(lines):
            record = {
                "ts": 1_700_000_000_000 + n,
                "level": "info",
                "msg": f"line {n}: the agent reports what it is doing, at some length",
                "step": n % 97,
            }
            out.write(json.dumps(record) + "\n")
    now = time.time()
    statuses = ("completed",) * 8 + ("failed", "timeout")
    rows = []
    for n in range(runs):
        agent = LOG_AGENT if n == 0 else f"agent-{n % agents:04d}"
        run_id = LOG_RUN if n == 0 else f"r{n:07d}"
        started = now - 7 * 86400 * n / runs
        rows.append(
            (
                run_id,
                agent,
                "manual",
                None,
                "host-user",
                None,
                statuses[n % 10],
                0 if n % 10 < 8 else 1,
                None,
                started,
                started + 3 + n % 30,
                str(state_dir / "logs" / agent / f"{run_id}.jsonl"),
                1000,
                200,
                0.01,
            )
        )
    state = State.open(state_dir)
    with state.db.write() as conn:
        conn.executemany(
            "INSERT INTO runs (run_id, agent, trigger, prompt, runtime, image, status, exit_code,"
            " error, started_at, finished_at, log_path, input_tokens, output_tokens, cost) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    state.close()
    return root, log.stat().st_size


def login(daemon: Daemon):  # type: ignore[no-untyped-def]
    """A client with a dashboard session (the login form, as a browser sends it)."""
    import httpx2 as httpx

    client = httpx.Client(base_url=daemon.url, timeout=60, follow_redirects=True)
    form = client.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token is not None
    answer = client.post(
        "/login",
        data={"key": daemon.api_key, "csrf": token.group(1)},
        headers={"Origin": daemon.url},
    )
    if answer.status_code != 200 or 'id="agent-' not in answer.text:
        raise SystemExit(f"could not log in: {answer.status_code}")
    return client


def timings(daemon: Daemon, path: str, headers: dict[str, str], count: int) -> list[float]:
    """Wall seconds of `count` GETs of `path`, each on a new connection with TCP_NODELAY
    (httpx's pooled connections add ~40 ms of delayed-ACK wait to each request here)."""
    import http.client
    import socket

    port = int(daemon.url.rsplit(":", 1)[1])
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        answer.read()
        conn.close()
        seconds.append(time.perf_counter() - started)
        assert answer.status == 200, answer.status
    return seconds


def figures(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:6.1f} ms   "
        f"p90 {percentile(values, 90) * 1000:6.1f} ms"
    )


def agents_page(daemon: Daemon, requests: int, agents: int) -> bool:
    client = login(daemon)
    page = client.get("/")
    assert page.text.count('<tr id="agent-') == agents
    bearer = {"Authorization": f"Bearer {daemon.api_key}"}
    for _ in range(3):  # warm-up: templates compiled, caches filled
        client.get("/")
        client.get("/control/status", headers=bearer)
    session = {"Cookie": f"al_session={client.cookies['al_session']}"}
    before = cpu_seconds(daemon.pid)
    seen = timings(daemon, "/", session, requests)
    cpu = (cpu_seconds(daemon.pid) - before) / requests
    status = timings(daemon, "/control/status", bearer, requests)
    health = timings(daemon, "/health", {}, requests)
    print(
        f"  GET / (the agents page, {len(page.content) // 1024} KiB)  {figures(seen)}   "
        f"daemon CPU {cpu * 1000:.0f} ms a page"
    )
    print(
        f"  GET /control/status (JSON)            {figures(status)}   "
        f"page/status {statistics.median(seen) / statistics.median(status):.1f}x"
    )
    print(f"  GET /health                           {figures(health)}")
    ok = statistics.median(seen) <= GOAL_PAGE
    print(f"goal: the agents page in <= {GOAL_PAGE * 1000:.0f} ms: {verdict(ok)}")
    client.close()
    return ok


def idle_browsers(daemon: Daemon, browsers: int, idle: float) -> bool:
    import httpx2 as httpx

    clients = [login(daemon) for _ in range(browsers)]
    time.sleep(2)
    before, clock = cpu_seconds(daemon.pid), time.perf_counter()
    time.sleep(idle)
    alone = (cpu_seconds(daemon.pid) - before) / (time.perf_counter() - clock)

    opened = threading.Barrier(browsers + 1)
    stop = threading.Event()

    def hold(client: httpx.Client) -> None:
        with client.stream("GET", "/live/agents?v=0", timeout=None) as answer:
            assert answer.status_code == 200
            lines = answer.iter_lines()
            while next(lines) != "":  # the retry field
                pass
            opened.wait()
            for _ in lines:  # the first page, then keepalives
                if stop.is_set():
                    return

    threads = [threading.Thread(target=hold, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    opened.wait(timeout=60)
    time.sleep(2)  # each stream's first page went out
    before, clock = cpu_seconds(daemon.pid), time.perf_counter()
    time.sleep(idle)
    held = (cpu_seconds(daemon.pid) - before) / (time.perf_counter() - clock)
    stop.set()
    for client in clients:
        client.close()
    extra = max(0.0, held - alone)
    print(
        f"  daemon CPU idle: {alone * 100:.2f}% of a core alone, {held * 100:.2f}% with "
        f"{browsers} open live pages: {extra * 100:.2f}% for them"
    )
    ok = extra <= GOAL_IDLE
    print(f"goal: {browsers} idle browsers <= {GOAL_IDLE * 100:.0f}% of a core: {verdict(ok)}")
    return ok


def peak_memory(pid: int) -> int:
    """Peak resident bytes since the last reset (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def resident(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def health_latencies(url: str, stop: asyncio.Event) -> list[float]:
    """`GET /health` every 20 ms until `stop`, each on a new connection: its latencies."""
    host, port = url.removeprefix("http://").split(":")
    seconds = []
    while not stop.is_set():
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /health HTTP/1.0\r\nHost: bench\r\n\r\n")
        await reader.read()
        writer.close()
        seconds.append(time.perf_counter() - started)
        await asyncio.sleep(0.02)
    return seconds


async def fetch_log(daemon: Daemon, path: str, lines: int) -> tuple[float, int, list[float]]:
    """(seconds, lines received, /health latencies meanwhile) for one whole-log download."""
    client = login(daemon)
    stop = asyncio.Event()
    probe = asyncio.create_task(health_latencies(daemon.url, stop))
    await asyncio.sleep(0.5)

    def download() -> int:
        got = 0
        with client.stream("GET", path, timeout=300) as answer:
            assert answer.status_code == 200
            for line in answer.iter_lines():
                if path.endswith(".txt") or line.startswith("data: <li"):
                    got += 1
                elif line == "event: end":
                    break
        return got

    started = time.perf_counter()
    got = await asyncio.to_thread(download)
    took = time.perf_counter() - started
    stop.set()
    latencies = await probe
    client.close()
    assert got == lines, (path, got, lines)
    return took, got, latencies


def long_log(daemon: Daemon, lines: int, size: int) -> bool:
    stop = asyncio.Event()

    async def at_rest() -> list[float]:
        task = asyncio.create_task(health_latencies(daemon.url, stop))
        await asyncio.sleep(3)
        stop.set()
        return await task

    rest = asyncio.run(at_rest())
    print(
        f"  the log: {lines} lines, {size / 1e6:.1f} MB; GET /health at rest "
        f"p50 {statistics.median(rest) * 1000:.1f} ms, p99 {percentile(rest, 99) * 1000:.1f} ms"
    )
    ok = True
    for label, path in (
        ("live stream (SSE)", f"/live/runs/{LOG_RUN}?after=0"),
        ("as text", f"/runs/{LOG_RUN}/log.txt"),
    ):
        time.sleep(1)
        base = resident(daemon.pid)
        reset_peak(daemon.pid)
        took, got, latencies = asyncio.run(fetch_log(daemon, path, lines))
        grew = peak_memory(daemon.pid) - base
        print(
            f"  {label:<18} {got} lines in {took:.1f} s ({got / took:,.0f}/s); daemon peak "
            f"memory +{grew / 1e6:.1f} MB ({grew / size:.0%} of the log); GET /health "
            f"meanwhile p50 {statistics.median(latencies) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 99) * 1000:.1f} ms"
        )
        ok = ok and grew < size
    print(
        f"goal: a {lines}-line log streamed without reading it whole "
        f"(peak memory growth < the log's size): {verdict(ok)}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=30, help="page loads timed (30)")
    parser.add_argument("--browsers", type=int, default=20, help="open live pages (20)")
    parser.add_argument("--idle", type=float, default=20, help="idle seconds measured (20)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the host-user agents run as nobody")
    base = Path(tempfile.mkdtemp(prefix="al-bench-dashboard-")).resolve()
    try:
        root, size = make_project(base, args.agents, args.runs, args.lines)
        daemon = Daemon(root, base / "creds", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
        try:
            load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
            print(
                f"{args.agents} agents, {args.runs} stored runs (machine load average {load} "
                f"on {os.cpu_count()} cores)"
            )
            results = [
                agents_page(daemon, args.requests, args.agents),
                idle_browsers(daemon, args.browsers, args.idle),
                long_log(daemon, args.lines, size),
            ]
        finally:
            daemon.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if args.check and not all(results) else 0


if __name__ == "__main__":
    sys.exit(main())
