"""The gateway's run routes (per-run secret) and operator routes (bearer key), over a real State
and a RecordingBackend; statuses are the ones the helper commands map to exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.gateway import GatewaySettings, create_app, ensure_api_key
from action_llama.gateway.testing import RecordingBackend
from action_llama.project import load_project
from action_llama.state import Call, State

from gateway_support import KEY, as_run, make_settings
from support import skill, write_files

AUTH = {"Authorization": f"Bearer {KEY}"}


def as_(run: str, **body: Any) -> dict[str, Any]:
    return {"secret": as_run(run), **body}


def acquire(client: TestClient, run: str, key: str, **extra: Any) -> Any:
    return client.post("/locks/acquire", json=as_(run, resourceKey=key, **extra))


def test_health_is_open(client: TestClient) -> None:
    """GET /health needs no credentials."""
    assert client.get("/health").json() == {"ok": True, "status": "ok"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/shutdown", {}),
        ("/locks/acquire", {"resourceKey": "github://o/r"}),
        ("/locks/release", {"resourceKey": "github://o/r"}),
        ("/locks/heartbeat", {"resourceKey": "github://o/r"}),
        ("/calls", {"targetAgent": "reviewer", "context": "x"}),
        ("/signals/status", {"text": "hi"}),
    ],
)
@pytest.mark.parametrize("secret", [None, "", "not-a-run", 42])
def test_run_routes_refuse_a_missing_or_unknown_secret_with_403(
    client: TestClient, backend: RecordingBackend, path: str, body: dict[str, Any], secret: Any
) -> None:
    """Every run route answers 403 (helpers: exit 3) without a registered run's secret, and
    asks nothing of the backend."""
    payload = body if secret is None else {"secret": secret, **body}
    response = client.post(path, json=payload)
    assert response.status_code == 403
    assert response.json()["ok"] is False
    assert backend.calls == []


def test_get_run_routes_take_the_secret_from_a_header_or_the_query(client: TestClient) -> None:
    """GET /locks/list and /calls/{id} read the X-AL-Secret header (what the helpers send) or
    ?secret=; without a good one they are 403."""
    assert client.get("/locks/list").status_code == 403
    assert client.get("/locks/list?secret=nope").status_code == 403
    assert client.get("/locks/list", headers={"X-AL-Secret": "nope"}).status_code == 403
    assert client.get(f"/locks/list?secret={as_run('run-a')}").json() == {"ok": True, "locks": []}
    mine = client.get("/locks/list", headers={"X-AL-Secret": as_run("run-a")})
    assert mine.json() == {"ok": True, "locks": []}
    assert client.get("/calls/call-x?secret=nope").status_code == 403
    assert client.get("/calls/call-x", headers={"X-AL-Secret": "nope"}).status_code == 403


def test_a_body_that_is_not_a_json_object_is_400(client: TestClient) -> None:
    """Broken JSON (the original's string-built bodies) is 400, helpers' exit 4."""
    response = client.post("/locks/acquire", content=b'{"secret": "a', headers={})
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error": "invalid JSON body"}
    assert client.post("/locks/acquire", json=["a"]).status_code == 400


def test_shutdown_asks_the_backend_to_stop_that_run(
    client: TestClient, backend: RecordingBackend
) -> None:
    """POST /shutdown stops the calling run (found by its secret) with its reason."""
    response = client.post("/shutdown", json=as_("run-b", reason='say "bye"\nnow'))
    assert response.json() == {"ok": True, "killed": True, "runId": "run-b"}
    client.post("/shutdown", json=as_("run-a"))
    assert backend.named("shutdown_run") == [
        ("run-b", 'say "bye"\nnow'),
        ("run-a", "agent requested shutdown"),
    ]


def test_a_lock_is_held_by_the_run_and_refused_to_others(client: TestClient, state: State) -> None:
    """acquire → 200 with the run as holder and the settings' TTL; another run gets 409
    conflict naming the holder and its agent; the holder may re-acquire (refresh)."""
    key = "github://octo/app/issues/1"
    got = acquire(client, "run-a", key)
    assert got.status_code == 200
    assert got.json()["holder"] == "run-a"
    [lock] = state.locks.list()
    assert lock.expires_at - lock.held_since == pytest.approx(600)
    refused = acquire(client, "run-b", key)
    assert refused.status_code == 409
    answer = refused.json()
    assert (answer["ok"], answer["reason"], answer["holder"]) == (False, "conflict", "run-a")
    assert answer["holderAgent"] == "dev"
    assert "held by run run-a (agent dev)" in answer["error"]
    assert acquire(client, "run-a", key).status_code == 200


def test_lock_ttl_from_the_request_and_its_validation(client: TestClient, state: State) -> None:
    """A request's ttl (seconds) overrides the default; a non-positive or non-number ttl is 400."""
    assert acquire(client, "run-a", "res://one", ttl=5).status_code == 200
    [lock] = state.locks.list()
    assert lock.expires_at - lock.held_since == pytest.approx(5)
    for bad in (0, -1, "soon", True):
        assert acquire(client, "run-a", "res://two", ttl=bad).status_code == 400


@pytest.mark.parametrize("key", ["no-scheme", "github://has space", "UPPER://x", "github:"])
def test_an_invalid_lock_key_is_400(client: TestClient, key: str) -> None:
    """Keys must be URIs with a lowercase scheme; anything else is 400 with the reason."""
    response = acquire(client, "run-a", key)
    assert response.status_code == 400
    assert response.json()["error"]


def test_a_missing_resource_key_is_400(client: TestClient) -> None:
    """Missing or non-string resourceKey is 400."""
    assert client.post("/locks/acquire", json=as_("run-a")).status_code == 400
    assert acquire(client, "run-a", 7).status_code == 400  # type: ignore[arg-type]


def test_a_lock_cycle_is_reported_as_a_deadlock(client: TestClient) -> None:
    """A holds r1 and waits for r2; B holds r2 and asks for r1: B gets 409 deadlock with the
    cycle, not a plain conflict."""
    assert acquire(client, "run-a", "res://r1").status_code == 200
    assert acquire(client, "run-b", "res://r2").status_code == 200
    assert acquire(client, "run-a", "res://r2").json()["reason"] == "conflict"
    response = acquire(client, "run-b", "res://r1")
    assert response.status_code == 409
    answer = response.json()
    assert answer["deadlock"] is True
    assert answer["reason"] == "deadlock"
    assert answer["cycle"] == [
        {"holder": "run-b", "resourceKey": "res://r1"},
        {"holder": "run-a", "resourceKey": "res://r2"},
    ]
    assert "run-b → res://r1 → run-a → res://r2 → run-b" in answer["error"]


def test_release_heartbeat_and_list(client: TestClient) -> None:
    """Only the holder releases or extends a lock (others: 409); an unheld key is 404; each run
    lists only its own locks."""
    key = "res://shared"
    taken = acquire(client, "run-a", key, ttl=10).json()
    acquire(client, "run-b", "res://other")
    extended = client.post("/locks/heartbeat", json=as_("run-a", resourceKey=key, ttl=100))
    assert extended.status_code == 200
    assert extended.json()["expiresAt"] > taken["expiresAt"]
    by_other = client.post("/locks/release", json=as_("run-b", resourceKey=key))
    assert by_other.status_code == 409
    assert by_other.json()["reason"] == "held by run-a"
    assert client.post("/locks/heartbeat", json=as_("run-b", resourceKey=key)).status_code == 409
    listed = client.get(f"/locks/list?secret={as_run('run-a')}").json()["locks"]
    assert [lock["resourceKey"] for lock in listed] == [key]
    assert client.post("/locks/release", json=as_("run-a", resourceKey=key)).status_code == 200
    gone = client.post("/locks/release", json=as_("run-a", resourceKey=key))
    assert gone.status_code == 404
    assert gone.json()["reason"] == "lock not found"
    assert client.post("/locks/heartbeat", json=as_("run-a", resourceKey=key)).status_code == 404


def call(client: TestClient, run: str, target: str, context: str = "ctx") -> Any:
    return client.post("/calls", json=as_(run, targetAgent=target, context=context))


def test_a_call_is_recorded_and_started_through_the_backend(
    client: TestClient, backend: RecordingBackend, state: State
) -> None:
    """POST /calls records a pending call from the caller's run and agent, hands it to the
    backend and answers its id; the caller and the callee may read it, nobody else."""
    context = 'quotes " and \\ and\nnewlines ☃'
    response = call(client, "run-a", "reviewer", context)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["ok"], answer["depth"], answer["outcome"]) == (True, 1, "started")
    [(made,)] = backend.named("start_call")
    assert isinstance(made, Call)
    assert (made.caller_run, made.caller_agent, made.target_agent) == ("run-a", "dev", "reviewer")
    assert made.context == context
    call_id = answer["callId"]
    seen = client.get(f"/calls/{call_id}?secret={as_run('run-a')}").json()
    assert (seen["status"], seen["targetAgent"]) == ("pending", "reviewer")
    assert client.get(f"/calls/{call_id}?secret={as_run('run-c')}").status_code == 404
    state.calls.start(call_id, "run-b")
    state.calls.complete(call_id, "LGTM")
    done = client.get(f"/calls/{call_id}?secret={as_run('run-b')}").json()
    assert (done["status"], done["returnValue"]) == ("completed", "LGTM")
    assert client.get(f"/calls/call-nope?secret={as_run('run-a')}").status_code == 404


@pytest.mark.parametrize(
    ("target", "status", "error"),
    [
        ("nobody", 404, 'target agent "nobody" not found'),
        ("idle", 409, 'target agent "idle" is disabled (scale = 0)'),
        ("dev", 409, "agent cannot call itself"),
    ],
)
def test_calls_the_gateway_refuses(
    client: TestClient, backend: RecordingBackend, target: str, status: int, error: str
) -> None:
    """Unknown targets are 404; disabled targets and self-calls are 409; none reach the backend."""
    response = call(client, "run-a", target)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert backend.named("start_call") == []


def test_max_call_depth_is_enforced_across_a_chain(client: TestClient, state: State) -> None:
    """With maxCallDepth = 2: dev → reviewer → fixer is allowed, a third hop is refused, and
    calling back an agent already in the chain is refused as a cycle."""
    first = call(client, "run-a", "reviewer").json()["callId"]
    state.calls.start(first, "run-b")
    second = call(client, "run-b", "fixer").json()
    assert second["depth"] == 2
    state.calls.start(second["callId"], "run-c")
    too_deep = call(client, "run-c", "listener")
    assert too_deep.status_code == 409
    assert too_deep.json()["reason"] == "call depth limit (2) reached"
    cycle = call(client, "run-b", "dev")
    assert cycle.status_code == 409
    assert cycle.json()["reason"].startswith("call cycle: dev → reviewer → dev")


def test_a_call_the_scheduler_refuses_is_409_and_ends_as_an_error(
    client: TestClient, backend: RecordingBackend, state: State
) -> None:
    """A refused dispatch (scheduler paused) fails the recorded call and answers 409."""
    backend.paused.add(None)
    response = call(client, "run-a", "reviewer")
    assert response.status_code == 409
    assert response.json()["reason"] == "scheduler is paused"
    failed = state.calls.get(response.json()["callId"])
    assert failed is not None
    assert (failed.status, failed.error) == ("error", "scheduler is paused")


def test_signals_reach_the_backend(client: TestClient, backend: RecordingBackend) -> None:
    """/signals/status (text), /return (value) and /rerun go to the backend for the run; status
    needs its text; other names are 404."""
    assert client.post("/signals/status", json=as_("run-a", text="working")).status_code == 200
    assert client.post("/signals/return", json=as_("run-a", value='{"a": 1}')).status_code == 200
    assert client.post("/signals/rerun", json=as_("run-b")).status_code == 200
    assert client.post("/signals/status", json=as_("run-a")).status_code == 400
    assert client.post("/signals/exit", json=as_("run-a")).status_code == 404
    assert backend.named("signal") == [
        ("run-a", "status", "working"),
        ("run-a", "return", '{"a": 1}'),
        ("run-b", "rerun", None),
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": KEY},
        {"Authorization": f"Basic {KEY}"},
    ],
)
def test_control_routes_need_the_bearer_key(
    client: TestClient, backend: RecordingBackend, headers: dict[str, str]
) -> None:
    """Without `Authorization: Bearer <key>` every /control route is 401 and does nothing."""
    for method, path in [("GET", "/control/status"), ("POST", "/control/stop")]:
        response = client.request(method, path, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "Unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert backend.calls == []


def test_the_api_key_is_read_from_the_store_on_every_request(
    state: State, store: CredentialStore, backend: RecordingBackend
) -> None:
    """With no key in the settings the store's gateway_api_key is used, so rotating it takes
    effect at once; with none at all, 401 says how to make one."""
    client = TestClient(create_app(state, backend, make_settings(store, api_key=None)))
    missing = client.get("/control/runs", headers=AUTH)
    assert missing.status_code == 401
    assert "al doctor" in missing.json()["hint"]
    key = ensure_api_key(store)
    assert ensure_api_key(store) == key
    assert client.get("/control/runs", headers={"Authorization": f"Bearer {key}"}).is_success
    store.write(CredentialRef("gateway_api_key"), {"key": "rotated"})
    assert (
        client.get("/control/runs", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    )
    assert client.get("/control/runs", headers={"Authorization": "Bearer rotated"}).is_success
    empty = make_settings(store, api_key=SecretStr(""))
    assert TestClient(create_app(state, backend, empty)).get("/control/runs").status_code == 401


def test_status_merges_the_scheduler_view_with_runs_queues_and_locks(
    client: TestClient, backend: RecordingBackend
) -> None:
    """GET /control/status: the backend's view plus active runs, queue lengths and locks."""
    dev = {"state": "idle", "scale": 1, "running": [], "nextFire": None}
    backend.agent_states = {"dev": dev}
    acquire(client, "run-a", "res://x")
    answer = client.get("/control/status", headers=AUTH).json()
    assert answer["scheduler"] == {"paused": False, "stopping": False, "agents": {"dev": dev}}
    assert answer["lastRuns"] == {}
    assert [r["runId"] for r in answer["runs"]] == ["run-a", "run-b", "run-c"]
    assert answer["queues"] == {}
    assert [(lock["resourceKey"], lock["agent"]) for lock in answer["locks"]] == [
        ("res://x", "dev")
    ]
    assert client.get("/control/locks", headers=AUTH).json()["locks"] == answer["locks"]
    assert len(client.get("/control/runs", headers=AUTH).json()["runs"]) == 3
    call(client, "run-a", "reviewer")
    [active] = client.get("/control/calls", headers=AUTH).json()["calls"]
    assert (active["callerRun"], active["status"]) == ("run-a", "pending")


def test_pause_resume_kill_trigger_and_stop(client: TestClient, backend: RecordingBackend) -> None:
    """The operator verbs reach the backend; unknown agents and runs are 404, a refused
    trigger is 409, a queued one says so without a made-up run id."""
    assert client.post("/control/pause", headers=AUTH).json() == {"ok": True, "paused": "scheduler"}
    refused = client.post("/control/trigger/dev", headers=AUTH)
    assert (refused.status_code, refused.json()["error"]) == (409, "scheduler is paused")
    assert client.post("/control/resume", headers=AUTH).is_success
    assert client.post("/control/pause/dev", headers=AUTH).json()["paused"] == "dev"
    assert client.post("/control/resume/dev", headers=AUTH).json()["resumed"] == "dev"
    assert client.post("/control/pause/ghost", headers=AUTH).status_code == 404
    started = client.post("/control/trigger/dev", json={"prompt": "fix #1"}, headers=AUTH).json()
    assert (started["outcome"], started["runId"]) == ("started", "run-1")
    backend.outcome = "queued"
    queued = client.post("/control/trigger/dev", headers=AUTH).json()
    assert queued == {"ok": True, "agent": "dev", "outcome": "queued"}
    assert client.post("/control/trigger/ghost", headers=AUTH).status_code == 404
    assert client.post("/control/kill/run-1", headers=AUTH).json() == {
        "ok": True,
        "killed": ["run-1"],
    }
    assert client.post("/control/kill/dev", headers=AUTH).json()["killed"] == []
    assert client.post("/control/kill/run-1", headers=AUTH).status_code == 404
    assert client.post("/control/stop", headers=AUTH).json()["ok"] is True
    assert backend.stopped
    assert backend.named("trigger") == [
        ("dev", None),
        ("dev", "fix #1"),
        ("dev", None),
        ("ghost", None),
    ]
    assert backend.named("pause") == [(None,), ("dev",), ("ghost",)]


def test_errors_are_json_everywhere(
    state: State, store: CredentialStore, backend: RecordingBackend
) -> None:
    """Unknown routes and wrong methods are JSON errors; a backend crash is a 500 that says
    "internal error" without its details."""

    class Broken(RecordingBackend):
        async def status(self) -> dict[str, Any]:
            raise ValueError("secret detail")

    client = TestClient(
        create_app(state, Broken(), make_settings(store)), raise_server_exceptions=False
    )
    assert client.get("/nope").json() == {"ok": False, "error": "Not Found"}
    assert client.get("/shutdown").status_code == 405
    crashed = client.get("/control/status", headers=AUTH)
    assert crashed.status_code == 500
    assert crashed.json() == {"ok": False, "error": "internal error"}


def test_settings_from_a_project(tmp_path: Path, store: CredentialStore) -> None:
    """from_project takes the sources, every agent's webhook entries, maxCallDepth and
    resourceLockTimeout; scale = 0 agents are disabled and never matched."""
    write_files(
        tmp_path,
        {
            "config.toml": 'maxCallDepth = 5\nresourceLockTimeout = 60\n[webhooks.gh]\ntype = "github"\n',
            "agents/dev/SKILL.md": skill(),
            "agents/dev/config.toml": '[[webhooks]]\nsource = "gh"\nevents = ["issues"]\n',
            "agents/off/SKILL.md": skill(),
            "agents/off/config.toml": 'scale = 0\n[[webhooks]]\nsource = "gh"\n',
            "agents/plain/SKILL.md": skill(),
        },
    )
    settings = GatewaySettings.from_project(load_project(tmp_path), store)
    assert list(settings.webhooks) == ["gh"]
    assert sorted(settings.agents) == ["dev", "off", "plain"]
    assert settings.disabled == frozenset({"off"})
    assert list(settings.webhook_agents()) == ["dev"]
    assert (settings.max_call_depth, settings.lock_ttl) == (5, 60.0)
    assert settings.credentials is store
