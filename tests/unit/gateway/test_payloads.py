"""The gateway answers with exactly the payloads `action_llama.payloads` declares: every key,
of the declared type, and nothing else."""

from __future__ import annotations

import json
from typing import Any, get_args, get_origin

from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from test_gateway import AUTH, acquire, as_
from test_gateway_history import record_run
from typing_extensions import get_type_hints, is_typeddict

from action_llama import payloads
from action_llama.gateway.testing import RecordingBackend
from action_llama.state import State

from gateway_support import github


def undeclared(value: Any, hint: Any, where: str = "") -> list[str]:
    """Keys of `value`, at any depth, that its payload type `hint` does not declare (pydantic
    ignores them when it validates a TypedDict)."""
    if is_typeddict(hint) and isinstance(value, dict):
        hints = get_type_hints(hint)
        return [f"{where}.{key}" for key in value if key not in hints] + [
            extra for key in value if key in hints
            for extra in undeclared(value[key], hints[key], f"{where}.{key}")
        ]  # fmt: skip
    args = get_args(hint)
    if get_origin(hint) is list and isinstance(value, list):
        return [extra for item in value for extra in undeclared(item, args[0], f"{where}[]")]
    if get_origin(hint) is dict and isinstance(value, dict):
        return [e for k, v in value.items() for e in undeclared(v, args[1], f"{where}.{k}")]
    return []


def conforms(answer: dict[str, Any], payload: Any) -> None:
    """`answer` (less its "ok") is a valid `payload`, with no key the payload does not have."""
    assert answer.pop("ok") is True
    TypeAdapter(payload).validate_python(answer, strict=True)
    assert undeclared(answer, payload) == []


def test_operator_answers_are_the_declared_payloads(
    client: TestClient, backend: RecordingBackend, state: State
) -> None:
    """Status (with a run, a lock, a call and a last run), logs, stats, receipts, a trigger,
    a kill and a webhook delivery: each answer has the shape its payload type says."""
    backend.agent_states = {
        "dev": payloads.agent_state("running", 2, ["run-a"], 1_700_000_000.0),
        "idle": payloads.agent_state("idle", 1, [], None),
    }
    record_run(state, "r1", "dev", "completed", ["hello"], inputTokens=3, outputTokens=4)
    assert acquire(client, "run-a", "res://x").status_code == 200
    assert client.post("/calls", json=as_("run-a", targetAgent="reviewer")).status_code == 200
    delivered = client.post("/webhooks/gh", content=github()[0], headers=github()[1]).json()
    repeat = client.post("/webhooks/gh", content=github()[0], headers=github()[1]).json()

    status = client.get("/control/status", headers=AUTH).json()
    assert status["scheduler"]["agents"]["dev"]["nextFire"] == "2023-11-14T22:13:20.000Z"
    assert set(status["lastRuns"]) == {"dev"}
    assert status["locks"][0]["agent"] == "dev"
    conforms(status, payloads.StatusPayload)
    conforms(client.get("/control/logs/dev", headers=AUTH).json(), payloads.LogsPayload)
    conforms(client.get("/control/stats", headers=AUTH).json(), payloads.StatsPayload)
    [call] = client.get("/control/calls", headers=AUTH).json()["calls"]
    conforms({"ok": True, **call}, payloads.ActiveCallPayload)
    [*listed] = client.get("/control/receipts", headers=AUTH).json()["receipts"]
    for receipt in listed:
        conforms({"ok": True, **receipt}, payloads.ReceiptPayload)
    one = client.get(f"/control/receipts/{delivered['receiptId']}", headers=AUTH).json()
    assert json.loads(one["receipt"]["body"]) == json.loads(github()[0])
    conforms({"ok": True, **one["receipt"]}, payloads.ReceiptPayload)
    conforms(client.post("/control/trigger/dev", headers=AUTH).json(), payloads.DispatchPayload)
    killed = client.post("/control/kill/dev", headers=AUTH).json()
    assert len(killed["killed"]) == 2  # the delivery's run and the trigger's
    conforms(killed, payloads.KilledPayload)
    conforms(delivered, payloads.DeliveryPayload)
    conforms(repeat, payloads.DuplicatePayload)
