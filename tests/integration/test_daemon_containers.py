"""`al start` with container agents, for real: one daemon process, real containers, real HTTP.

One daemon serves the whole module (its project holds every agent the tests need), so the
image chain is checked and the gateway started once. Each test drives its own agent through
the gateway (signed GitHub deliveries, or the operator's `/control/trigger`) and reads what
happened from the project's run history, the state database and the daemon's output.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.runs.store import RunRecord, read_log
from action_llama.state import State

from support import (
    AL,
    cleanup_project,
    script_agent,
    stored_run,
    stored_runs,
    wait_for,
    write_files,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SECRET = "webhook secret of the container tests"
PAYLOADS: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "unit/github_payloads.json").read_text()
)
PUSH_SOURCE = '[[webhooks]]\nsource = "gh"\nevents = ["push"]\n'

AGENTS = {
    # Fires every 5 s until its test has seen a run, then is paused.
    **script_agent("tick", 'echo tick\necho "$PROMPT"\n', config='schedule = "*/5 * * * * *"\n'),
    # Script mode gets the trigger as a model session would: text in PROMPT, JSON in a file.
    **script_agent(
        "hook",
        'echo hooked\nprintf "%s\\n" "$PROMPT" | sed -n "1p;\\$p"\n'
        "jq -r '[.type, .context.event, .context.action, .context.receiptId] | join(\" \")' "
        '"$AL_TRIGGER_FILE"\n',
        config='[[webhooks]]\nsource = "gh"\nevents = ["issues"]\n',
    ),
    **script_agent("pair", "sleep 3\n", config="scale = 2\n" + PUSH_SOURCE),
    **script_agent("tiny", "sleep 4\n", config="scale = 1\nmaxWorkQueueSize = 1\n"),
    **script_agent(
        "locker",
        "if rlock github://o/r/issues/7 >/dev/null; then echo proceeded; sleep 6; "
        "else echo refused; fi\n",
        config="scale = 2\n",
    ),
    **script_agent(
        "quitter", 'echo "shutdown-at $(date +%s.%N)"\nal-shutdown "the test says stop"\nsleep 60\n'
    ),
    # caller -> middle is depth 1 (allowed); middle -> leaf would be depth 2 (refused).
    **script_agent(
        "caller",
        "id=$(echo ctx | al-subagent middle | python3 -c "
        "'import json, sys; print(json.load(sys.stdin)[\"callId\"])')\n"
        'echo "waited: $(al-subagent-wait "$id" --timeout 60)"\n',
    ),
    **script_agent(
        "middle",
        'out=$(echo deeper | al-subagent leaf)\ncode=$?\necho "leaf call exit=$code $out"\n'
        'al-return "exit=$code $out"\n',
    ),
    **script_agent("leaf", "echo leaf ran\n"),
    # An image layer of its own, which its test removes under the running scheduler.
    **script_agent(
        "layered",
        "echo layered ran\n",
        dockerfile='FROM al-agent:latest\nLABEL al.test="layered"\n',
    ),
}


@dataclass
class Daemon:
    """The running `al start` and what a test needs to talk to it and read what it did."""

    root: Path
    proc: subprocess.Popen[bytes]
    output: Path
    url: str
    api_key: str
    creds: Path

    def control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.request(
            method, f"{self.url}/control{path}", headers=headers, timeout=30, **kwargs
        )

    def trigger(self, agent: str, prompt: str = "") -> dict[str, Any]:
        answer = self.control(
            "POST", f"/trigger/{agent}", json={"prompt": prompt} if prompt else {}
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def deliver(self, event: str, *, secret: str = SECRET) -> httpx.Response:
        """One GitHub delivery of `event` with a fresh delivery id, signed with `secret`."""
        raw = json.dumps(PAYLOADS[event]).encode()
        signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature,
        }
        return httpx.post(f"{self.url}/webhooks/gh", content=raw, headers=headers, timeout=30)

    def runs(self, agent: str) -> list[RunRecord]:
        return stored_runs(self.root, agent, limit=100)

    def run(self, run_id: str) -> RunRecord:
        return stored_run(self.root, run_id)

    def finished(self, run_id: str) -> bool:
        try:
            return self.run(run_id).finished_at is not None
        except Exception:  # not recorded yet
            return False

    def script_lines(self, run_id: str) -> list[str]:
        record = self.run(run_id)
        return [r["msg"] for r in read_log(record.log_path) if r.get("source") == "script"]

    def holds_nothing_for(self, agent: str) -> bool:
        """Whether the scheduler has no run going and no work queued for `agent`: then no
        run of it can start without a new trigger (dispatch answers only after deciding)."""
        view = self.control("GET", "/status").json()
        return not view["scheduler"]["agents"][agent]["running"] and not view["queues"].get(agent)

    def log_text(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, base_image: str
) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("daemon-containers")
    root = (base / "proj").resolve()
    write_files(
        root,
        {
            "config.toml": 'maxCallDepth = 1\n\n[webhooks.gh]\ntype = "github"\n',
            **AGENTS,
        },
    )
    creds = base / "creds"
    store = CredentialStore(creds)
    store.write(CredentialRef("github_webhook_secret"), {"secret": SECRET})
    output = base / "daemon.log"
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [AL, "start", "-p", str(root), "--port", "0"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "AL_CREDENTIALS_DIR": str(creds)},
        )
    marker = root / ".al/daemon.json"
    try:
        wait_for(lambda: marker.exists() or proc.poll() is not None, 300, "daemon start")
        assert proc.poll() is None, output.read_text()
        port = json.loads(marker.read_text())["port"]
        key = store.read(CredentialRef("gateway_api_key"))["key"]
        yield Daemon(root, proc, output, f"http://127.0.0.1:{port}", key, creds)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        cleanup_project(docker_client, root)


def test_a_seconds_cron_schedule_fires_container_runs(daemon: Daemon) -> None:
    """A 6-field schedule (every 5 s) starts container runs by itself, triggered by the
    schedule, which complete."""
    try:
        wait_for(
            lambda: [r for r in daemon.runs("tick") if r.status == "completed"], 60, "a tick run"
        )
    finally:
        assert daemon.control("POST", "/pause/tick").status_code == 200
    runs = daemon.runs("tick")
    assert {r.trigger for r in runs} == {"schedule"}
    assert all(r.runtime == "docker" for r in runs)
    done = next(r for r in runs if r.status == "completed")
    assert daemon.script_lines(done.run_id) == [
        "tick",
        "You are running on a schedule. Check for new work and act on anything you find.",
    ]


def test_a_signed_github_delivery_starts_its_agent_and_a_forged_one_runs_nothing(
    daemon: Daemon,
) -> None:
    """A valid X-Hub-Signature-256 starts the matching agent (its receipt says so), whose
    script gets the <webhook-trigger> text in PROMPT and the event in AL_TRIGGER_FILE; a bad
    signature is refused with 401, recorded as a dead letter, and starts no run."""
    answer = daemon.deliver("issues")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "processed"
    assert [(d["agent"], d["outcome"]) for d in body["dispatched"]] == [("hook", "started")]
    run_id = body["dispatched"][0]["runId"]
    wait_for(lambda: daemon.finished(run_id), 60, "the hook run")
    assert daemon.run(run_id).status == "completed"
    assert daemon.run(run_id).trigger == "webhook"
    assert daemon.script_lines(run_id) == [
        "hooked",
        "<webhook-trigger>",
        "A webhook event just fired. Review the trigger context above and take appropriate action.",
        f"webhook issues opened {body['receiptId']}",
    ]
    receipt = daemon.control("GET", f"/receipts/{body['receiptId']}").json()["receipt"]
    assert receipt["matchedAgents"] == ["hook"]

    forged = daemon.deliver("issues", secret="not the secret")
    assert forged.status_code == 401, forged.text
    assert forged.json()["reason"] == "validation_failed"
    refused = daemon.control("GET", f"/receipts/{forged.json()['receiptId']}").json()["receipt"]
    assert refused["status"] == "dead-letter"
    assert daemon.holds_nothing_for("hook")
    assert [r.run_id for r in daemon.runs("hook")] == [run_id]


def test_a_rotated_webhook_secret_counts_from_the_next_delivery(daemon: Daemon) -> None:
    """The daemon keeps no stale copy of a webhook secret: once it is rewritten in the
    credential store, deliveries signed with the old one are refused and the new one works."""
    store = CredentialStore(daemon.creds)
    ref = CredentialRef("github_webhook_secret")
    assert daemon.deliver("ping").status_code == 200  # the gateway has read the secret
    store.write(ref, {"secret": "the rotated secret"})
    try:
        assert daemon.deliver("ping").status_code == 401
        assert daemon.deliver("ping", secret="the rotated secret").status_code == 200
    finally:
        store.write(ref, {"secret": SECRET})
    assert daemon.deliver("ping").status_code == 200


def test_scale_two_runs_two_deliveries_at_once_and_queues_the_rest(daemon: Daemon) -> None:
    """`scale = 2` and 5 deliveries: 2 start, 3 queue, all 5 complete, never more than 2 at
    once (from the run records' start and end times)."""
    outcomes = []
    for _ in range(5):
        answer = daemon.deliver("push")
        assert answer.status_code == 200, answer.text
        outcomes.append(answer.json()["dispatched"][0]["outcome"])
    assert outcomes == ["started", "started", "queued", "queued", "queued"]
    runs = wait_for(
        lambda: (
            (rs := daemon.runs("pair")) and len(rs) == 5 and all(r.finished_at for r in rs) and rs
        ),
        120,
        "five pair runs",
    )
    assert {r.status for r in runs} == {"completed"}
    events = sorted(
        [(r.started_at, 1) for r in runs] + [(r.finished_at or 0.0, -1) for r in runs],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 2


def test_a_full_queue_drops_its_oldest_item_and_records_it(daemon: Daemon) -> None:
    """With `maxWorkQueueSize = 1` and its one runner busy, a third trigger pushes out the
    queued second: the answer, the state database and the daemon's log all say so, and only
    the first and third run."""
    first = daemon.trigger("tiny", "first")
    assert first["outcome"] == "started"
    assert daemon.trigger("tiny", "second")["outcome"] == "queued"
    third = daemon.trigger("tiny", "third")
    assert third["outcome"] == "queued"
    assert "dropped to make room: manual prompt: second" in third["reason"]
    state = State.open(daemon.root / ".al")
    try:
        drops = state.queue.drops("tiny")
    finally:
        state.close()
    assert [(d.type, d.summary, d.reason) for d in drops] == [
        ("manual", "manual prompt: second", "queue full (cap 1)")
    ]
    assert "queue full for agent tiny, oldest event dropped" in daemon.log_text()
    stat = subprocess.run(
        [AL, "stat", "-p", str(daemon.root)],
        capture_output=True,
        text=True,
        env={**os.environ, "AL_CREDENTIALS_DIR": str(daemon.creds)},
    )
    assert re.search(r"tiny\s+manual prompt: second\s+queue full \(cap 1\)", stat.stdout)
    runs = wait_for(
        lambda: (
            (rs := daemon.runs("tiny")) and len(rs) == 2 and all(r.finished_at for r in rs) and rs
        ),
        90,
        "two tiny runs",
    )
    assert sorted(r.prompt or "" for r in runs) == ["first", "third"]
    wait_for(lambda: daemon.holds_nothing_for("tiny"), 30, "the scheduler to let go of tiny")
    assert len(daemon.runs("tiny")) == 2


def test_two_instances_contend_for_one_lock_and_only_one_proceeds(daemon: Daemon) -> None:
    """Two runs of one agent (scale 2) take the same `rlock`: one holds it and goes on, the
    other is refused while it is held; the lock is released when the holder ends."""
    ids = [daemon.trigger("locker")["runId"] for _ in range(2)]
    held = wait_for(
        lambda: daemon.control("GET", "/locks").json()["locks"], 60, "the lock being taken"
    )
    assert [(lock["resourceKey"], lock["agent"]) for lock in held] == [
        ("github://o/r/issues/7", "locker")
    ]
    assert held[0]["holder"] in ids
    for run_id in ids:
        wait_for(lambda run_id=run_id: daemon.finished(run_id), 90, "the locker runs")
    said = sorted(line for run_id in ids for line in daemon.script_lines(run_id))
    assert said == ["proceeded", "refused"]
    # Released once the holder's container is removed, just after its record is closed.
    wait_for(lambda: daemon.control("GET", "/locks").json()["locks"] == [], 30, "the release")


def test_al_shutdown_stops_its_container_within_two_seconds(
    daemon: Daemon, docker_client: Any
) -> None:
    """`al-shutdown` inside a container (which would otherwise sleep 60 s) has the container
    gone or exited less than 2 s after the request."""
    run_id = daemon.trigger("quitter")["runId"]

    def requested_at() -> float | None:
        try:
            lines = daemon.script_lines(run_id)
        except Exception:
            return None
        stamps = [float(line.split()[1]) for line in lines if line.startswith("shutdown-at ")]
        return stamps[0] if stamps else None

    def stopped() -> float | None:
        found = docker_client.api.containers(all=True, filters={"label": f"al.run={run_id}"})
        return time.time() if all(c["State"] != "running" for c in found) else None

    asked = wait_for(requested_at, 60, "the shutdown request")
    gone = wait_for(stopped, 10, "the container stopping")
    assert gone - asked < 2.0, f"container stopped {gone - asked:.2f} s after al-shutdown"
    wait_for(lambda: daemon.finished(run_id), 30, "the run record closing")
    assert (daemon.run(run_id).duration or 0) < 30


def test_a_call_chain_deeper_than_max_call_depth_is_refused(daemon: Daemon) -> None:
    """With `maxCallDepth = 1`, caller -> middle runs but middle -> leaf is refused: middle's
    al-subagent exits 1 with the reason, the caller sees it in middle's return value, and leaf
    never runs."""
    run_id = daemon.trigger("caller")["runId"]
    wait_for(lambda: daemon.finished(run_id), 120, "the caller run")
    assert daemon.run(run_id).status == "completed"
    (middle,) = daemon.runs("middle")
    assert middle.trigger == "agent-call"
    (said,) = [line for line in daemon.script_lines(middle.run_id) if "leaf call" in line]
    assert said.startswith("leaf call exit=1 ")
    assert "call depth limit (1) reached" in said
    (waited,) = [line for line in daemon.script_lines(run_id) if line.startswith("waited: ")]
    answers = json.loads(waited.removeprefix("waited: "))
    (answer,) = answers.values()
    assert answer["status"] == "completed"
    assert "call depth limit (1) reached" in answer["returnValue"]
    assert daemon.runs("leaf") == []


def test_a_run_whose_image_was_removed_builds_it_again(daemon: Daemon, docker_client: Any) -> None:
    """An agent's image removed while the scheduler runs (an image prune): its next run
    builds it again and runs, rather than failing for want of it."""
    labels = [f"al.project={daemon.root}", "al.agent=layered"]
    (image,) = {i["Id"] for i in docker_client.api.images(filters={"label": labels})}
    docker_client.api.remove_image(image, force=True)
    run_id = daemon.trigger("layered")["runId"]
    wait_for(lambda: daemon.finished(run_id), 300, "the layered run")
    assert daemon.run(run_id).status == "completed", daemon.log_text()
    assert daemon.script_lines(run_id) == ["layered ran"]
    assert "the image of layered is gone; building it again" in daemon.log_text()
    rebuilt = {i["Id"] for i in docker_client.api.images(filters={"label": labels})}
    assert rebuilt
    assert image not in rebuilt
    assert daemon.run(run_id).image in rebuilt  # the record names what it ran
