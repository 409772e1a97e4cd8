"""POST /webhooks/{source}: signatures, a receipt for every delivery, dedupe, the 10 MiB cap,
dispatch through the backend, and operator replay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from action_llama.config import WebhookTrigger
from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.errors import CredentialMissing, DaemonUnavailable
from action_llama.gateway import Dispatch, create_app
from action_llama.gateway.testing import RecordingBackend
from action_llama.runs.trigger import Trigger
from action_llama.state import State
from action_llama.webhooks import MAX_BODY, Receipt

from gateway_support import KEY, PAYLOADS, github, make_settings

AUTH = {"Authorization": f"Bearer {KEY}"}


def post(client: TestClient, source: str, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(f"/webhooks/{source}", content=body, headers=headers)


def test_a_signed_matching_delivery_is_dispatched_and_its_receipt_returned(
    client: TestClient, backend: RecordingBackend, state: State
) -> None:
    """A correctly signed GitHub delivery that matches `dev` is handed to the backend with its
    context; the answer names the receipt, which records the agent that will run."""
    response = post(client, "gh", *github())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ok"] is True
    assert answer["matched"] == 1
    assert answer["dispatched"] == [{"agent": "dev", "outcome": "started", "runId": "run-1"}]
    assert response.headers["X-AL-Receipt-Id"] == answer["receiptId"]
    [(receipt, agents)] = backend.named("dispatch_webhook")
    assert isinstance(receipt, Receipt)
    assert agents == ("dev",)
    assert receipt.context is not None
    assert receipt.context.receipt_id == answer["receiptId"]
    assert receipt.context.repo == "octo/app"
    stored = state.receipts.get(answer["receiptId"])
    assert stored is not None
    assert (stored.status, stored.matched_agents, stored.delivery_id) == (
        "processed",
        ("dev",),
        "d-1",
    )
    assert stored.event_summary == "issues opened"
    assert "x-hub-signature-256" not in stored.headers


@pytest.mark.parametrize(
    ("secret", "detail"),
    [("wrong secret", "does not match"), (None, "no signature header")],
)
def test_a_bad_or_missing_signature_is_401_with_a_receipt_and_nothing_dispatched(
    client: TestClient, backend: RecordingBackend, state: State, secret: str | None, detail: str
) -> None:
    """A delivery not signed with the source's secret is refused (401); it still gets a
    dead-letter receipt saying why, its body is not kept, and no run is started."""
    response = post(client, "gh", *github(secret=secret))
    assert response.status_code == 401
    answer = response.json()
    assert answer["ok"] is False
    assert answer["reason"] == "validation_failed"
    assert detail in answer["error"]
    assert backend.named("dispatch_webhook") == []
    stored = state.receipts.get(answer["receiptId"])
    assert stored is not None
    assert stored.status == "dead-letter"
    assert stored.reason is not None
    assert stored.reason.startswith("validation_failed")
    assert stored.body == b""


def test_a_forged_delivery_does_not_claim_its_delivery_id(
    client: TestClient, backend: RecordingBackend
) -> None:
    """After a badly signed delivery, the real one with the same delivery id is still taken."""
    assert post(client, "gh", *github(delivery="same", secret="forged")).status_code == 401
    response = post(client, "gh", *github(delivery="same"))
    assert response.status_code == 200
    assert "duplicate" not in response.json()
    assert len(backend.named("dispatch_webhook")) == 1


def test_unsigned_deliveries_are_accepted_only_where_the_source_allows_them(
    client: TestClient, backend: RecordingBackend
) -> None:
    """A source without a secret takes unsigned deliveries only with allowUnsigned = true (and
    they match like any other); without it they are refused with the reason."""
    accepted = post(client, "open", *github(secret=None))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["unsigned"] is True
    assert accepted.json()["dispatched"][0]["agent"] == "listener"
    refused = post(client, "closed", *github(secret=None, delivery="d-2"))
    assert refused.status_code == 401
    assert "allowUnsigned" in refused.json()["error"]
    assert len(backend.named("dispatch_webhook")) == 1


def test_an_unknown_source_is_404(client: TestClient, state: State) -> None:
    """Only configured `[webhooks.<source>]` names have a route (the source name, not a type)."""
    response = post(client, "github", *github())
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error": "unknown webhook source: github"}


def test_a_repeated_delivery_id_is_a_duplicate_with_its_own_receipt(
    client: TestClient, backend: RecordingBackend, state: State
) -> None:
    """The same delivery twice runs once: the second gets a `duplicate` receipt naming the
    first, and is answered 200 so the sender stops retrying."""
    first = post(client, "gh", *github()).json()
    second = post(client, "gh", *github()).json()
    assert second["duplicate"] is True
    assert second["duplicateOf"] == first["receiptId"]
    assert second["receiptId"] != first["receiptId"]
    assert len(backend.named("dispatch_webhook")) == 1
    stored = state.receipts.get(second["receiptId"])
    assert stored is not None
    assert stored.status == "duplicate"


def test_a_delivery_matching_no_agent_gets_a_receipt_saying_why(
    client: TestClient, backend: RecordingBackend, state: State
) -> None:
    """A push matches nobody (dev wants issues; idle is disabled and never matched): 200, and the
    receipt is a dead letter whose reason names dev's failing filter."""
    answer = post(client, "gh", *github("push", payload=PAYLOADS["push"])).json()
    assert answer["matched"] == 0
    assert answer["reason"] == "no_match"
    assert "dev: events" in answer["detail"]
    assert "idle" not in answer["detail"]
    assert backend.named("dispatch_webhook") == []
    stored = state.receipts.get(answer["receiptId"])
    assert stored is not None
    assert stored.status == "dead-letter"
    assert stored.reason is not None
    assert stored.reason.startswith("no_match")


def test_a_delivery_only_disabled_agents_listen_to_names_them(
    state: State, backend: RecordingBackend, store: CredentialStore
) -> None:
    """With dev gone, only idle (scale = 0) listens to gh: the dead letter says so and how to
    enable it, rather than that nobody listens."""
    settings = make_settings(store, agents={"idle": (WebhookTrigger(source="gh"),)})
    client = TestClient(create_app(state, backend, settings))
    answer = post(client, "gh", *github("push", payload=PAYLOADS["push"])).json()
    assert (answer["matched"], answer["reason"]) == (0, "no_match")
    assert "take no work (scale = 0): idle" in answer["detail"]
    assert "set scale above 0" in answer["detail"]
    assert backend.named("dispatch_webhook") == []


def test_a_ping_is_acknowledged_as_ignored(client: TestClient, backend: RecordingBackend) -> None:
    """GitHub's ping is valid but carries no work: 200, reason "ignored", nothing dispatched."""
    answer = post(client, "gh", *github("ping", payload=PAYLOADS["ping"])).json()
    assert (answer["ok"], answer["reason"], answer["status"]) == (True, "ignored", "processed")
    assert backend.named("dispatch_webhook") == []


def test_a_signed_body_that_is_not_json_is_400_with_a_receipt(client: TestClient) -> None:
    """A delivery whose (correctly signed) body cannot be read is 400, with its receipt."""
    response = post(client, "gh", *github(body=b"{not json"))
    assert response.status_code == 400
    assert response.json()["reason"] == "parse_error"
    assert response.json()["receiptId"]


def test_a_body_over_10_mib_is_413_by_its_content_length(
    client: TestClient, backend: RecordingBackend, state: State
) -> None:
    """A declared body over 10 MiB is refused (413) with a receipt, before being read."""
    body, headers = github(body=b"x" * (MAX_BODY + 1))
    response = post(client, "gh", body, headers)
    assert response.status_code == 413
    answer = response.json()
    assert answer["reason"] == "too_large"
    stored = state.receipts.get(answer["receiptId"])
    assert stored is not None
    assert stored.status == "dead-letter"
    assert stored.body == b""
    assert backend.named("dispatch_webhook") == []


def test_a_streamed_body_is_cut_off_at_10_mib(
    client: TestClient, backend: RecordingBackend
) -> None:
    """A body sent without Content-Length (chunked) is refused once it passes 10 MiB."""
    _, headers = github()

    def chunks() -> Iterator[bytes]:
        for _ in range(11):
            yield b"x" * (1024 * 1024)

    response = client.post("/webhooks/gh", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert backend.named("dispatch_webhook") == []


def test_a_body_of_exactly_10_mib_is_read(client: TestClient) -> None:
    """The cap is inclusive: 10 MiB is read (and here refused only for not being JSON)."""
    response = post(client, "gh", *github(body=b" " * MAX_BODY))
    assert response.status_code == 400


def test_refused_dispatch_is_recorded_on_the_receipt(
    client: TestClient, backend: RecordingBackend, state: State
) -> None:
    """When the scheduler refuses the work (paused), the delivery is still answered 200 and its
    receipt becomes a dead letter saying why, so the operator can replay it."""
    backend.paused.add(None)
    answer = post(client, "gh", *github()).json()
    assert answer["status"] == "dead-letter"
    assert answer["dispatched"] == [
        {"agent": "dev", "outcome": "refused", "reason": "scheduler is paused"}
    ]
    stored = state.receipts.get(answer["receiptId"])
    assert stored is not None
    assert (stored.status, stored.reason, stored.detail) == (
        "dead-letter",
        "not_dispatched",
        "dev: scheduler is paused",
    )


def test_a_daemon_that_cannot_take_work_is_503_and_the_retry_is_taken(
    state: State, store: CredentialStore, backend: RecordingBackend
) -> None:
    """If the backend cannot dispatch at all, the sender gets 503 (with the receipt) and its
    retry, carrying the same delivery id, is not treated as a duplicate."""

    class Stopping(RecordingBackend):
        async def dispatch_webhook(self, receipt: Receipt, agents: object) -> list[Dispatch]:
            raise DaemonUnavailable("The daemon is shutting down.")

    client = TestClient(create_app(state, Stopping(), make_settings(store)))
    response = post(client, "gh", *github())
    assert response.status_code == 503
    first = state.receipts.get(response.json()["receiptId"])
    assert first is not None
    assert first.status == "dead-letter"
    assert first.delivery_id is None
    retry = TestClient(create_app(state, backend, make_settings(store)))
    assert post(retry, "gh", *github()).json()["dispatched"][0]["outcome"] == "started"


def test_settings_given_as_a_function_are_read_per_request(
    state: State, store: CredentialStore, backend: RecordingBackend
) -> None:
    """A hot reload that adds a source takes effect on the next delivery."""
    current = {"settings": make_settings(store, webhooks={})}
    client = TestClient(create_app(state, backend, lambda: current["settings"]))
    assert post(client, "gh", *github()).status_code == 404
    current["settings"] = make_settings(store)
    assert post(client, "gh", *github()).status_code == 200


def test_the_operator_can_list_read_and_replay_receipts(
    client: TestClient, backend: RecordingBackend
) -> None:
    """Receipts are listed newest first and read whole; a replay routes the stored delivery
    again as a new receipt pointing at the original."""
    first = post(client, "gh", *github()).json()["receiptId"]
    post(client, "gh", *github(secret="bad", delivery="d-2"))
    listed = client.get("/control/receipts", headers=AUTH).json()["receipts"]
    assert [r["status"] for r in listed] == ["dead-letter", "processed"]
    assert listed[1]["matchedAgents"] == ["dev"]
    whole = client.get(f"/control/receipts/{first}", headers=AUTH).json()["receipt"]
    assert json.loads(whole["body"]) == PAYLOADS["issues"]
    assert whole["headers"]["x-github-event"] == "issues"
    replayed = client.post(f"/control/receipts/{first}/replay", headers=AUTH).json()
    assert replayed["replayOf"] == first
    assert replayed["event"] == "replay:issues opened"
    assert replayed["dispatched"][0]["agent"] == "dev"
    assert len(backend.named("dispatch_webhook")) == 2
    assert client.get("/control/receipts/nope", headers=AUTH).status_code == 404
    bad = listed[0]["id"]
    assert client.post(f"/control/receipts/{bad}/replay", headers=AUTH).status_code == 400
    assert client.get("/control/receipts?limit=0", headers=AUTH).status_code == 400


def test_an_unreadable_credential_store_is_500_with_a_receipt(
    state: State, tmp_path: Path, backend: RecordingBackend
) -> None:
    """When the source's secret cannot be read the delivery is not judged: 500 (the sender
    retries), a dead-letter receipt says why, and nothing is dispatched."""

    class Unreadable(CredentialStore):
        def has(self, ref: CredentialRef) -> bool:
            raise CredentialMissing("Cannot read the credential store: permission denied.")

    client = TestClient(create_app(state, backend, make_settings(Unreadable(tmp_path))))
    response = post(client, "gh", *github())
    assert response.status_code == 500
    assert "permission denied" in response.json()["error"]
    stored = state.receipts.get(response.json()["receiptId"])
    assert stored is not None
    assert stored.reason == "validation_failed"
    assert stored.detail.startswith("cannot read the source's secret")
    assert backend.named("dispatch_webhook") == []


def test_a_signed_delivery_nested_too_deep_is_400_with_a_receipt(
    client: TestClient, backend: RecordingBackend, state: State
) -> None:
    """Correctly signed JSON nested 10,000 deep is a parse error (400) with a stored receipt,
    never a 500 without one."""
    response = post(client, "gh", *github(body=b"[" * 10_000 + b"]" * 10_000))
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["reason"] == "parse_error"
    assert "nested too deeply" in answer["error"]
    stored = state.receipts.get(answer["receiptId"])
    assert stored is not None
    assert (stored.status, stored.event_summary) == ("dead-letter", "issues")
    assert backend.named("dispatch_webhook") == []


def test_delivery_ids_are_deduplicated_per_source(
    client: TestClient, backend: RecordingBackend
) -> None:
    """An unsigned delivery to an allowUnsigned source, carrying the id D, does not make the
    genuine signed delivery D to another source a duplicate; D again to the same source is."""
    assert post(client, "open", *github(secret=None, delivery="D")).status_code == 200
    genuine = post(client, "gh", *github(delivery="D")).json()
    assert "duplicate" not in genuine
    assert genuine["dispatched"][0]["agent"] == "dev"
    assert post(client, "gh", *github(delivery="D")).json()["duplicate"] is True
    assert len(backend.named("dispatch_webhook")) == 2


@pytest.mark.parametrize(
    ("event", "body", "summary"),
    [
        ("ping", b'{"zen": "Design for failure."}', "ping"),
        ("pull_request", b'{"action": "opened"}', "pull_request opened"),
        ("push", b"{not json", "push"),
    ],
)
def test_github_deliveries_that_do_not_parse_are_summarised_by_their_event(
    client: TestClient, state: State, event: str, body: bytes, summary: str
) -> None:
    """A ping, a payload without `repository` and bad JSON are summarised by X-GitHub-Event
    (and the action when there is one), not as "github"."""
    answer = post(client, "gh", *github(event, body=body)).json()
    assert answer["receiptId"]
    stored = state.receipts.get(answer["receiptId"])
    assert stored is not None
    assert stored.event_summary == summary


def test_agents_that_refuse_a_matching_delivery_count_as_skipped(
    client: TestClient, backend: RecordingBackend
) -> None:
    """A delivery matched by an agent that then refuses it (disabled, stopping) answers
    matched 1, skipped 1: skipped counts every agent that will not run it."""
    backend.paused.add(None)
    answer = post(client, "gh", *github()).json()
    assert (answer["matched"], answer["skipped"]) == (1, 1)


def test_a_receipt_and_the_work_it_queued_commit_together(
    state: State, store: CredentialStore, backend: RecordingBackend
) -> None:
    """A scheduler that dies between storing a delivery's receipt and taking its work leaves
    neither (one transaction), so the sender's retry of that delivery id runs instead of
    being answered as a duplicate of work that never started."""

    class Killed(BaseException):
        """The process dying mid-transaction: nothing after it is written."""

    class DiesWhileDispatching(RecordingBackend):
        async def dispatch_webhook(self, receipt: Receipt, agents: object) -> list[Dispatch]:
            state.queue.push("dev", Trigger(type="webhook", summary=receipt.event_summary))
            raise Killed

    async def deliver_and_die() -> None:
        # Straight to the ASGI app (a TestClient's thread would not survive a BaseException).
        app = create_app(state, DiesWhileDispatching(), make_settings(store))
        body, headers = github()
        fields = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/webhooks/gh",
            "raw_path": b"/webhooks/gh",
            "query_string": b"",
            "root_path": "",
            "headers": [*fields, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("gateway", 80),
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            pass

        await app(scope, receive, send)

    with pytest.raises((Killed, BaseExceptionGroup)):
        asyncio.run(deliver_and_die())
    assert state.receipts.recent() == []
    assert state.queue.lengths() == {}
    retry = TestClient(create_app(state, backend, make_settings(store)))
    answer = post(retry, "gh", *github()).json()
    assert answer["dispatched"][0]["outcome"] == "started"
    stored = state.receipts.get(answer["receiptId"])
    assert stored is not None
    assert (stored.status, stored.delivery_id) == ("processed", "d-1")
