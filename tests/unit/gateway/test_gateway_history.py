"""The operator's history routes: an agent's latest (or named) run log, and per-agent stats."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient
from test_gateway import AUTH

from action_llama.gateway.testing import RecordingBackend
from action_llama.runs.store import RunStore
from action_llama.state import State


def record_run(
    state: State, run_id: str, agent: str, status: str, lines: list[str], **usage: int
) -> None:
    store = RunStore(state.db.path.parent, database=state.db)
    store.start(run_id, agent, "manual", None, "docker", None)
    with store.open_log(agent, run_id) as log:
        for line in lines:
            log.write(json.dumps({"msg": line}) + "\n")
    if usage:
        store.set_usage(run_id, usage)
    store.finish(run_id, status, 0 if status == "completed" else 1, None)


def test_logs_give_the_latest_run_or_a_named_one_and_only_its_last_lines(
    client: TestClient, state: State
) -> None:
    """The latest run's last N records by default; --run picks an older one; a run of another
    agent, or an agent with no runs, is 404; the route needs the key."""
    record_run(state, "r-old", "alpha", "failed", ["old 1", "old 2"])
    time.sleep(0.01)
    record_run(state, "r-new", "alpha", "completed", [f"new {i}" for i in range(10)])
    latest = client.get("/control/logs/alpha?lines=3", headers=AUTH).json()
    assert latest["run"]["runId"] == "r-new"
    assert [r["msg"] for r in latest["records"]] == ["new 7", "new 8", "new 9"]
    older = client.get("/control/logs/alpha?run=r-old", headers=AUTH).json()
    assert older["run"]["status"] == "failed"
    assert [r["msg"] for r in older["records"]] == ["old 1", "old 2"]
    assert client.get("/control/logs/beta?run=r-old", headers=AUTH).status_code == 404
    assert client.get("/control/logs/nobody", headers=AUTH).status_code == 404
    assert client.get("/control/logs/alpha?lines=0", headers=AUTH).status_code == 400
    assert client.get("/control/logs/alpha").status_code == 401


def test_stats_count_runs_by_status_with_durations_and_tokens(
    client: TestClient, state: State
) -> None:
    """Per agent: runs, runs by status, tokens summed; a run still going is counted but adds
    no duration; the route needs the key."""
    record_run(state, "s1", "alpha", "completed", [], inputTokens=100, outputTokens=20)
    record_run(state, "s2", "alpha", "failed", [], inputTokens=5, outputTokens=5)
    record_run(state, "s3", "beta", "completed", [])
    RunStore(state.db.path.parent, database=state.db).start(
        "s4", "beta", "schedule", None, "docker", None
    )
    stats = client.get("/control/stats?hours=1", headers=AUTH).json()["agents"]
    assert stats["alpha"]["runs"] == 2
    assert stats["alpha"]["byStatus"] == {"completed": 1, "failed": 1}
    assert stats["alpha"]["tokens"] == 130
    assert stats["beta"]["runs"] == 2
    assert stats["beta"]["byStatus"] == {"completed": 1, "running": 1}
    assert stats["beta"]["meanDuration"] >= 0  # of the one that ended
    assert client.get("/control/stats?hours=0", headers=AUTH).status_code == 400
    assert client.get("/control/stats").status_code == 401


def test_status_carries_each_agents_last_run(
    client: TestClient, state: State, backend: RecordingBackend
) -> None:
    """`lastRuns` in GET /control/status: each agent's latest run, as /control/logs shows
    runs; an agent that never ran is left out."""
    idle = {"state": "idle", "scale": 1, "running": [], "nextFire": None}
    backend.agent_states = {"alpha": idle, "beta": idle}
    record_run(state, "r-old", "alpha", "failed", [])
    time.sleep(0.01)
    record_run(state, "r-new", "alpha", "completed", ["done"])
    last = client.get("/control/status", headers=AUTH).json()["lastRuns"]
    assert list(last) == ["alpha"]
    logs = client.get("/control/logs/alpha", headers=AUTH).json()
    assert last["alpha"] == logs["run"]
    assert (last["alpha"]["runId"], last["alpha"]["status"]) == ("r-new", "completed")
