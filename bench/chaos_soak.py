"""Chaos soak: `al start` under steady webhooks, cron and manual runs while it is `kill -9`ed
and restarted at random, dockerd is restarted, and the state folder's disk fills up and frees.
Goal: nothing lost, nothing left behind.

A temporary project (its `.al/` on a small loop-mounted ext4, so it can be filled to ENOSPC)
gets three container agents in script mode, each staging a credential:

    hook    a signed generic webhook source; prints the delivery's id, holds an rlock for a
            second (scale 2, so killed runs leave locks for the next daemon to release)
    tick    a 6-field schedule every few seconds
    manual  triggered through the operator API with a numbered prompt

A sender posts deliveries at a steady rate, each with its own `X-AL-Delivery`, retrying the
same id until it is answered (connection refused while the scheduler is down, 503 while the
disk is full), as a webhook sender that retries does. Meanwhile the chaos timeline kills
`al start` with SIGKILL `--kills` times at random and starts it again on the same port,
restarts dockerd `--dockerd-restarts` times (only with no other test session using the
engine: it waits for that), and fills the state file system to ENOSPC once for `--full`
seconds. At the end the soak waits for the queues to drain and the runs to end, stops the
scheduler gracefully, and counts:

    deliveries  sent / receipted (a stored receipt) / expected to run / run (the hook printed
                its id) / lost (expected to run, never ran)
    runs        started (recorded, or announced by the scheduler) / recorded with an end /
                lost (announced but never recorded, or still "running" after the stop)
    left        locks held, active runs, queued items, containers, volumes (besides the
                agents' workspaces), networks, staged credential folders, processes

    .venv/bin/python bench/chaos_soak.py [--seconds 600] [--kills 20] [--dockerd-restarts 2]

Needs root (loop mounts, dockerd restarts) and the Docker engine. tests/soak runs a short
version (no dockerd restart: other sessions may be using the engine) and asserts the zeros.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AL = str(Path(sys.executable).parent / "al")
SECRET = "chaos soak webhook secret"
HOOK = """\
id=$(python3 -c 'import json; print(json.load(open("/app/static/trigger.json"))["context"]'\\
'["title"])')
echo "delivery $id"
rlock "github://soak/r/issues/$id" >/dev/null || true
sleep 1
runlock "github://soak/r/issues/$id" >/dev/null || true
"""


@dataclass
class Plan:
    """What the soak does, and for how long."""

    seconds: float = 600
    kills: int = 20
    dockerd_restarts: int = 2
    #: Seconds a dockerd restart waits for other sessions to leave the engine before it is
    #: skipped (and the skip reported).
    dockerd_wait: float = 300
    #: Seconds the state file system stays full (0: never filled).
    full: float = 15
    webhook_every: float = 2.0
    manual_every: float = 10.0
    cron: str = "*/5 * * * * *"
    seed: int = 15
    #: Seconds to wait at the end for queues to drain and runs to end.
    drain: float = 300


@dataclass
class Figures:
    sent: int = 0
    receipted: int = 0
    expected: int = 0
    ran: int = 0
    #: Runs of `hook` that never began (their work was queued again and ran later).
    never_began: int = 0
    #: Runs of `hook` a fault stopped after they began but before the script printed (the
    #: engine restarting under them): recorded as failed, their delivery not run.
    interrupted: int = 0
    dockerd_restarted: int = 0
    dockerd_skipped: int = 0
    kills: int = 0
    lost_deliveries: list[str] = field(default_factory=list)
    #: Deliveries whose id more than one run printed (work taken back that had begun).
    ran_twice: list[str] = field(default_factory=list)
    runs_started: int = 0
    runs_recorded: int = 0
    lost_runs: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    left: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)

    def zero(self) -> bool:
        """Nothing lost and nothing left behind."""
        return (
            not self.lost_deliveries
            and not self.ran_twice
            and not self.lost_runs
            and not any(self.left.values())
        )

    def render(self) -> str:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        lines = [
            f"deliveries  sent {self.sent}, receipted {self.receipted}, expected to run "
            f"{self.expected}, run {self.ran}, interrupted by a fault and recorded as failed "
            f"{self.interrupted}, lost {len(self.lost_deliveries)}, run twice "
            f"{len(self.ran_twice)}  ({self.never_began} runs never began: their work was "
            "queued again)",
            f"runs        started {self.runs_started}, recorded {self.runs_recorded}, "
            f"lost {len(self.lost_runs)}  ({statuses})",
            "left        " + ", ".join(f"{k} {v}" for k, v in self.left.items()),
            f"chaos       al start killed {self.kills} times, dockerd restarted "
            f"{self.dockerd_restarted} times"
            + (
                f" ({self.dockerd_skipped} skipped: other sessions kept using the engine)"
                if self.dockerd_skipped
                else ""
            ),
        ]
        if self.lost_deliveries:
            lines.append(f"lost deliveries: {', '.join(self.lost_deliveries[:20])}")
        if self.ran_twice:
            lines.append(f"run twice: {', '.join(self.ran_twice[:20])}")
        if self.lost_runs:
            lines.append(f"lost runs: {', '.join(self.lost_runs[:20])}")
        return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _http(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, Any]:
    """(status, JSON answer); status 0 when nothing answered."""
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}
    except (OSError, ValueError, http.client.HTTPException):  # refused, reset, cut short
        return 0, {}


class Soak:
    def __init__(self, plan: Plan, base: Path, say: Any = print) -> None:
        self.plan = plan
        self.base = base
        self.say = say
        self.root = base / "proj"
        self.creds = base / "creds"
        self.port = _free_port()
        self.env = {**os.environ, "AL_CREDENTIALS_DIR": str(self.creds)}
        self.env.pop("AL_DEBUG", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = base / "daemon.log"
        self.random = random.Random(plan.seed)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.sent: list[str] = []
        self.answered: dict[str, int] = {}
        self.announced: set[str] = set()
        self.mounted = False
        self.figures = Figures()

    # -- set-up and tear-down ----------------------------------------------------------------

    def setup(self) -> None:
        from action_llama.credentials.refs import CredentialRef
        from action_llama.credentials.store import CredentialStore

        agent = 'credentials = ["github_token"]\n'
        files = {
            "config.toml": ('workQueueSize = 100000\n[webhooks.hooks]\ntype = "generic"\n'),
            "agents/hook/SKILL.md": "---\ndescription: soak\n---\nHook.\n",
            "agents/hook/test-script.sh": HOOK,
            "agents/hook/config.toml": agent
            + 'scale = 2\n[[webhooks]]\nsource = "hooks"\nevents = ["soak"]\n',
            "agents/tick/SKILL.md": "---\ndescription: soak\n---\nTick.\n",
            "agents/tick/test-script.sh": "echo tick\nsleep 1\n",
            "agents/tick/config.toml": agent + f'schedule = "{self.plan.cron}"\n',
            "agents/manual/SKILL.md": "---\ndescription: soak\n---\nManual.\n",
            "agents/manual/test-script.sh": 'echo "manual $PROMPT"\nsleep 2\n',
            "agents/manual/config.toml": agent,
        }
        for rel, text in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        store = CredentialStore(self.creds)
        store.write(CredentialRef("github_token"), {"token": "ghp_soak_token_value"})
        store.write(CredentialRef("generic_webhook_secret"), {"secret": SECRET})
        if self.plan.full:
            self._mount_state()
        built = subprocess.run(
            [AL, "image", "build", "-p", str(self.root), "-q"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if built.returncode != 0:
            raise RuntimeError(f"al image build failed: {built.stderr}")

    def _mount_state(self) -> None:
        """`.al/` on a 256 MiB ext4 of its own, which `_fill` can fill up."""
        image = self.base / "state.img"
        with image.open("wb") as fh:
            fh.truncate(256 * 1024**2)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True, capture_output=True
        )
        (self.root / ".al").mkdir()
        subprocess.run(
            ["mount", "-o", "loop", str(image), str(self.root / ".al")],
            check=True,
            capture_output=True,
        )
        self.mounted = True

    def cleanup(self) -> None:
        """Remove what the soak made (after `collect` counted what was left behind)."""
        from action_llama.engine import connect
        from action_llama.runtimes.docker_workspace import release_workspaces

        self._stop()
        try:
            client = connect()
            label = f"al.project={self.root}"
            for container in client.api.containers(all=True, filters={"label": label}):
                client.api.remove_container(container["Id"], force=True)
            release_workspaces(client, self.root)
            for image in client.api.images(filters={"label": label}):
                client.api.remove_image(image["Id"], force=True)
        finally:
            if self.mounted:
                subprocess.run(
                    ["umount", "-l", str(self.root / ".al")], check=False, capture_output=True
                )

    # -- the scheduler -------------------------------------------------------------------------

    def _start(self) -> None:
        began = time.monotonic()
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [AL, "start", "-p", str(self.root), "--port", str(self.port), "--headless"],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        deadline = time.monotonic() + 300
        while _http("GET", f"http://127.0.0.1:{self.port}/health", None, {})[0] != 200:
            if self.proc.poll() is not None:
                # A start refused (the disk full, say) is tried again: the soak goes on.
                self.event(f"al start exited {self.proc.returncode}; starting it again")
                time.sleep(1)
                self._start()
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"al start did not come up:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        self.event(f"al start serving after {time.monotonic() - began:.1f} s")

    def _kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def _control(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        from action_llama.credentials.refs import CredentialRef
        from action_llama.credentials.store import CredentialStore

        key = CredentialStore(self.creds).read(CredentialRef("gateway_api_key"))["key"]
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        return _http(method, f"http://127.0.0.1:{self.port}/control{path}", data, headers)

    def event(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        self.figures.events.append(line)
        self.say(line)

    # -- load --------------------------------------------------------------------------------

    def _deliver(self, number: int) -> None:
        """Post delivery `d<number>` until it is answered (not refused, not 5xx)."""
        delivery = f"d{number}"
        body = json.dumps({"event": "soak", "title": delivery, "repo": "soak/r"}).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-AL-Signature-256": signature,
            "X-AL-Delivery": delivery,
        }
        with self.lock:
            self.sent.append(delivery)
        deadline = time.monotonic() + self.plan.drain
        while time.monotonic() < deadline:
            status, answer = _http(
                "POST", f"http://127.0.0.1:{self.port}/webhooks/hooks", body, headers
            )
            if status and status < 500:
                with self.lock:
                    self.answered[delivery] = status
                    for dispatch in answer.get("dispatched", []) if status == 200 else []:
                        if dispatch.get("runId"):
                            self.announced.add(dispatch["runId"])
                return
            time.sleep(0.5)

    def _sender(self) -> None:
        number = 0
        pending: list[threading.Thread] = []
        while not self.stopping.wait(self.plan.webhook_every):
            number += 1
            # Each delivery retries on its own, as a sender's queue of deliveries does.
            thread = threading.Thread(target=self._deliver, args=(number,), daemon=True)
            thread.start()
            pending.append(thread)
        for thread in pending:
            thread.join(timeout=self.plan.drain)

    def _manual(self) -> None:
        number = 0
        while not self.stopping.wait(self.plan.manual_every):
            number += 1
            status, answer = self._control("POST", "/trigger/manual", {"prompt": f"m{number}"})
            if status == 200 and answer.get("runId"):
                with self.lock:
                    self.announced.add(answer["runId"])

    # -- chaos -------------------------------------------------------------------------------

    def _timeline(self) -> list[tuple[float, str]]:
        plan = self.plan
        span = plan.seconds
        events = [(self.random.uniform(0.05, 0.95) * span, "kill") for _ in range(plan.kills)]
        events += [
            ((i + 1) * span / (plan.dockerd_restarts + 1), "dockerd")
            for i in range(plan.dockerd_restarts)
        ]
        if plan.full:
            events.append((span * 0.5 + 1, "full"))
        return sorted(events)

    def _restart_dockerd(self) -> bool:
        """Stop dockerd and start it again, the way it was started (only while no other test
        session uses the engine: a restart kills every container on it). False when others
        kept using it for `dockerd_wait` seconds: the restart is skipped, not forced."""
        deadline = time.monotonic() + self.plan.dockerd_wait
        while others := _other_test_sessions(self.root):
            if time.monotonic() > deadline:
                self.event(f"dockerd restart skipped: the engine is in use ({others[0][:60]})")
                self.figures.dockerd_skipped += 1
                return False
            self.event(f"dockerd restart waits for other sessions ({others[0][:60]}...)")
            time.sleep(15)
        pid = int(
            subprocess.run(
                ["pidof", "dockerd"], capture_output=True, text=True, check=True
            ).stdout.split()[0]
        )
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        with open("/var/log/dockerd.log", "ab") as sink:
            subprocess.Popen(
                [a.decode() for a in argv],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("dockerd did not come back")
            time.sleep(0.5)
        self.figures.dockerd_restarted += 1
        return True

    def _fill(self) -> None:
        """Fill the state file system to ENOSPC for `full` seconds, then free it."""
        filler = self.root / ".al" / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for size in (1 << 20, 1 << 12, 1):  # big blocks, then the last few bytes
                try:
                    while os.write(fd, b"\0" * size):
                        pass
                except OSError:
                    continue
        finally:
            os.close(fd)
        self.event(f"state file system full ({shutil.disk_usage(filler.parent).free} bytes free)")
        time.sleep(self.plan.full)
        filler.unlink()
        self.event("state file system freed")

    def run(self) -> Figures:
        self._start()
        threads = [
            threading.Thread(target=self._sender, daemon=True),
            threading.Thread(target=self._manual, daemon=True),
        ]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        for at, what in self._timeline():
            time.sleep(max(0.0, started + at - time.monotonic()))
            if what == "kill":
                self._kill()
                self.figures.kills += 1
                self.event("kill -9 al start")
                time.sleep(self.random.uniform(0, 2))
                self._start()
            elif what == "dockerd":
                self.event("restarting dockerd")
                if self._restart_dockerd():
                    self.event("dockerd is back")
            else:
                self._fill()
        time.sleep(max(0.0, started + self.plan.seconds - time.monotonic()))
        self.stopping.set()
        self.event("load stopped; draining")
        for thread in threads:
            thread.join(timeout=self.plan.drain)
        self._drain()
        self._stop()
        return self.collect()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.plan.drain
        while time.monotonic() < deadline:
            status, answer = self._control("GET", "/status")
            if (
                status == 200
                and not answer.get("runs")
                and not any((answer.get("queues") or {}).values())
            ):
                return
            time.sleep(1)
        self.event("the drain timed out")

    # -- what came of it ---------------------------------------------------------------------

    def collect(self) -> Figures:
        from action_llama.credentials.staging import staging_root
        from action_llama.engine import connect
        from action_llama.runtimes.docker_workspace import volume_name

        fig = self.figures
        db = sqlite3.connect(self.root / ".al" / "action-llama.db")
        runs = {
            row[0]: (row[1], row[2], row[3])
            for row in db.execute("SELECT run_id, agent, status, log_path FROM runs")
        }
        receipts = {
            row[0]: (row[1], row[2])
            for row in db.execute(
                "SELECT delivery_id, status, matched_agents FROM webhook_receipts "
                "WHERE delivery_id IS NOT NULL AND source = 'hooks'"
            )
        }
        fig.left["locks held"] = db.execute("SELECT count(*) FROM locks").fetchone()[0]
        fig.left["active runs"] = db.execute("SELECT count(*) FROM active_runs").fetchone()[0]
        fig.left["queued items"] = db.execute("SELECT count(*) FROM work_queue").fetchone()[0]
        fig.left["queue drops"] = db.execute("SELECT count(*) FROM queue_drops").fetchone()[0]
        db.close()
        ran: set[str] = set()
        twice: set[str] = set()
        for agent, status, log_path in runs.values():
            path = Path(log_path)
            text = path.read_text(errors="replace") if path.exists() else ""
            printed = {
                line.split('"delivery ', 1)[1].split('"', 1)[0]
                for line in text.splitlines()
                if '"delivery d' in line
            }
            twice |= ran & printed
            ran |= printed
            if agent == "hook" and not printed and status != "completed":
                if text.strip():
                    fig.interrupted += 1
                else:
                    fig.never_began += 1
        fig.sent = len(self.sent)
        fig.receipted = sum(1 for d in self.sent if d in receipts)
        expected = [d for d in self.sent if receipts.get(d, ("", ""))[0] == "processed"]
        fig.expected = len(expected)
        fig.ran = sum(1 for d in expected if d in ran)
        fig.ran_twice = sorted(twice)
        # A run a fault stopped before its script printed cannot be told apart: it counts
        # for one of the deliveries that did not print (its run is recorded, as failed).
        unprinted = [d for d in expected if d not in ran]
        fig.lost_deliveries = unprinted[fig.interrupted :]
        fig.lost_deliveries += [d for d in self.sent if d not in self.answered]
        fig.runs_started = len(set(runs) | self.announced)
        fig.runs_recorded = sum(1 for _a, status, _p in runs.values() if status != "running")
        fig.lost_runs = sorted(
            (self.announced - set(runs)) | {r for r, (_a, s, _p) in runs.items() if s == "running"}
        )
        for _agent, status, _p in runs.values():
            fig.statuses[status] = fig.statuses.get(status, 0) + 1
        client = connect()
        label = {"label": f"al.project={self.root}"}
        containers = client.api.containers(all=True, filters=label)
        fig.left["containers"] = len(containers)
        for container in containers:
            self.event(f"left: container {container['Names'][0]} ({container['Status']})")
        workspaces = {volume_name(self.root, agent) for agent in ("hook", "tick", "manual")}
        volumes = client.api.volumes(filters=label).get("Volumes") or []
        fig.left["volumes"] = len([v for v in volumes if v["Name"] not in workspaces])
        fig.left["networks"] = len(client.api.networks(filters=label))
        fig.left["staged folders"] = len(
            [p for p in staging_root().iterdir() if p.name.partition("-")[0] in runs]
        )
        fig.left["al processes"] = len(_processes_of(self.root))
        return fig


def _other_test_sessions(root: Path) -> list[str]:
    """Processes of other sessions that may be using the engine (test runs, benchmarks,
    schedulers of other projects): not this one, its parents, or the soak's own scheduler."""
    mine = _ancestors()
    found = subprocess.run(
        ["pgrep", "-af", r"pytest|bench/|al start|docker (run|build)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    return [
        line
        for line in found
        if int(line.split()[0]) not in mine and str(root) not in line and "pgrep" not in line
    ]


def _ancestors() -> set[int]:
    """This process and those it was started from (a shell, `timeout`, pytest)."""
    found: set[int] = set()
    pid = os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        pid = int(status.split("PPid:", 1)[1].split()[0])
    return found


def _processes_of(root: Path) -> list[int]:
    """Live processes whose command line names the project (an `al start` left running)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if str(root).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--dockerd-restarts", type=int, default=2)
    parser.add_argument(
        "--dockerd-wait",
        type=float,
        default=300,
        help="seconds a restart waits for other sessions before it is skipped",
    )
    parser.add_argument("--full", type=float, default=15, help="seconds the disk stays full")
    parser.add_argument("--webhook-every", type=float, default=2.0)
    parser.add_argument("--manual-every", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (and log)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the chaos soak needs root (loop mounts, dockerd restarts)")
    plan = Plan(
        seconds=args.seconds,
        kills=args.kills,
        dockerd_restarts=args.dockerd_restarts,
        dockerd_wait=args.dockerd_wait,
        full=args.full,
        webhook_every=args.webhook_every,
        manual_every=args.manual_every,
        seed=args.seed,
    )
    base = Path(tempfile.mkdtemp(prefix="al-soak-"))
    soak = Soak(plan, base)
    try:
        soak.setup()
        figures = soak.run()
    finally:
        soak.cleanup()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base} (daemon log: {soak.log})")
    print()
    print(figures.render())
    raise SystemExit(0 if figures.zero() else 1)


if __name__ == "__main__":
    main()
