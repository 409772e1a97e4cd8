"""The Slack Events API source: v0 signatures within 5 minutes, the url_verification challenge,
retries deduplicated by event id, filters, and the context agents get. Payloads follow the
examples in Slack's Events API documentation."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from action_llama.config.agent import WebhookTrigger
from action_llama.config.project import WebhookSource
from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.gateway import create_app
from action_llama.gateway.testing import RecordingBackend
from action_llama.state import State
from action_llama.webhooks import intake
from action_llama.webhooks.context import iso_now
from action_llama.webhooks.match import unsupported_filters

from gateway_support import make_settings

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK = WebhookSource(type="slack")

URL_VERIFICATION = {
    "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
    "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
    "type": "url_verification",
}


def callback(event: dict[str, Any], event_id: str = "Ev0PV52K21") -> dict[str, Any]:
    """An event_callback envelope around `event`, as Slack sends it."""
    return {
        "token": "XXYYZZ",
        "team_id": "T123ABC456",
        "api_app_id": "A123ABC456",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1515449522,
        "authed_users": ["U0LAN0Z89"],
    }


APP_MENTION = {
    "type": "app_mention",
    "user": "U123ABC456",
    "text": "What is the hour of the pearl, <@U0LAN0Z89>?\nAnd the tide?",
    "ts": "1515449522.000016",
    "channel": "C123ABC456",
    "event_ts": "1515449522000016",
}
THREAD_REPLY = {
    "type": "message",
    "channel": "C123ABC456",
    "user": "U222222222",
    "text": "Hello world",
    "ts": "1355517523.000005",
    "thread_ts": "1355517500.000001",
    "channel_type": "channel",
}
EDITED = {
    "type": "message",
    "subtype": "message_changed",
    "channel": "C123ABC456",
    "hidden": True,
    "message": {"type": "message", "user": "U123ABC456", "text": "Hello, world!", "ts": "1.2"},
    "ts": "1358878755.000001",
}
REACTION = {
    "type": "reaction_added",
    "user": "U123ABC456",
    "reaction": "thumbsup",
    "item_user": "U222222222",
    "item": {"type": "message", "channel": "C123ABC456", "ts": "1360782400.498405"},
    "event_ts": "1360782804.083113",
}
OWN_MESSAGE = {
    "type": "message",
    "channel": "C123ABC456",
    "bot_id": "B0AGENT",
    "app_id": "A123ABC456",
    "text": "Done: opened PR #7",
    "ts": "1355517524.000006",
}


def signed(
    payload: dict[str, Any], *, secret: str = SIGNING_SECRET, at: float | None = None
) -> tuple[bytes, dict[str, str]]:
    """A delivery (body, headers) signed as Slack signs: v0=HMAC(secret, v0:<ts>:<body>)."""
    body = json.dumps(payload).encode()
    stamp = str(int(time.time() if at is None else at))
    mac = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    return body, {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + mac.hexdigest(),
    }


def test_a_signed_app_mention_gives_the_context_agents_need_to_reply() -> None:
    """An app mention matches its agent; the context has the team, user, channel, the text
    (first line as title) and the ts to reply to in a thread, and the event id dedupes it."""
    body, headers = signed(callback(APP_MENTION))
    agents = {"helper": [WebhookTrigger(source="slack", events=["app_mention"])]}
    now = datetime.now(UTC)
    receipt = intake("slack", SLACK, body, headers, agents, [SIGNING_SECRET], now=now)
    assert receipt.matched_agents == ("helper",), receipt.detail
    assert receipt.delivery_id == "Ev0PV52K21"
    assert receipt.event_summary == "app_mention"
    assert receipt.context is not None
    assert receipt.context.to_dict() == {
        "source": "slack",
        "event": "app_mention",
        "repo": "T123ABC456",
        "sender": "U123ABC456",
        "timestamp": iso_now(now),
        "title": "What is the hour of the pearl, <@U0LAN0Z89>?",
        "body": APP_MENTION["text"],
        "channel": "C123ABC456",
        "thread": "1515449522.000016",
        "receiptId": receipt.id,
    }
    assert "x-slack-signature" not in receipt.headers


def test_messages_in_threads_edits_and_reactions_read_as_documented() -> None:
    """A thread reply keeps its thread's ts; an edit reads the new message and its subtype is
    the action; a reaction names the emoji and the reacted-to message's channel and ts."""
    contexts = {}
    for name, event in (("reply", THREAD_REPLY), ("edit", EDITED), ("reaction", REACTION)):
        body, headers = signed(callback(event))
        receipt = intake("slack", SLACK, body, headers, {}, [SIGNING_SECRET])
        assert receipt.context is not None, receipt.detail
        contexts[name] = receipt.context
    assert (contexts["reply"].sender, contexts["reply"].thread) == (
        "U222222222",
        "1355517500.000001",
    )
    assert contexts["reply"].action is None
    edit = contexts["edit"]
    assert (edit.action, edit.body, edit.sender) == (
        "message_changed",
        "Hello, world!",
        "U123ABC456",
    )
    reaction = contexts["reaction"]
    assert (reaction.event, reaction.title, reaction.channel, reaction.thread) == (
        "reaction_added",
        "thumbsup",
        "C123ABC456",
        "1360782400.498405",
    )


@pytest.mark.parametrize(
    ("trigger", "fires", "why"),
    [
        ({"events": ["message"]}, True, ""),
        ({"events": ["app_mention"]}, False, "events: message not in [app_mention]"),
        ({"channels": ["C123ABC456"]}, True, ""),
        ({"channels": ["C999"]}, False, "channels: C123ABC456 not in [C999]"),
        ({"users": ["U222222222"]}, True, ""),
        ({"users": ["U123ABC456"]}, False, "users: U222222222 not in [U123ABC456]"),
        ({"team_ids": ["T123ABC456"], "events": ["message"]}, True, ""),
        ({"team_ids": ["T0OTHER"]}, False, "team_ids: T123ABC456 not in [T0OTHER]"),
    ],
)
def test_filters_for_event_types_channels_users_and_teams(
    trigger: dict[str, Any], fires: bool, why: str
) -> None:
    """Each filter given must match; values in a list are alternatives."""
    body, headers = signed(callback(THREAD_REPLY))
    agents = {"bot": [WebhookTrigger(source="slack", **trigger)]}
    receipt = intake("slack", SLACK, body, headers, agents, [SIGNING_SECRET])
    assert receipt.matched_agents == (("bot",) if fires else ())
    if not fires:
        assert receipt.unmatched == {"bot": why}


def test_filters_of_other_sources_are_reported_for_slack() -> None:
    """A GitHub filter on a Slack source would never match: doctor is told up front."""
    problems = unsupported_filters(WebhookTrigger(source="slack", repos=["a/b"]), "slack")
    assert problems == [
        "repos: not a filter for slack sources (they take events, channels, users, team_ids)"
    ]


def test_the_apps_own_messages_start_nothing() -> None:
    """A message the receiving app posted (its app_id) is ignored: an agent that answers in a
    channel it listens to does not trigger itself."""
    body, headers = signed(callback(OWN_MESSAGE))
    agents = {"bot": [WebhookTrigger(source="slack", events=["message"])]}
    receipt = intake("slack", SLACK, body, headers, agents, [SIGNING_SECRET])
    assert (receipt.status, receipt.reason, receipt.matched_agents) == ("processed", "ignored", ())


@pytest.mark.parametrize(
    ("age", "detail"),
    [
        (301, "s old, over the 5 minutes allowed"),
        (-400, "s in the future, over the 5 minutes allowed"),
    ],
)
def test_a_timestamp_more_than_5_minutes_off_is_refused_even_if_signed(
    age: int, detail: str
) -> None:
    """A correctly signed delivery whose timestamp is over 5 minutes old (a replay) is
    refused, naming why."""
    body, headers = signed(callback(APP_MENTION), at=time.time() - age)
    receipt = intake("slack", SLACK, body, headers, {}, [SIGNING_SECRET])
    assert receipt.reason == "validation_failed"
    assert detail in receipt.detail


def test_a_signature_from_another_secret_or_body_is_refused() -> None:
    """The wrong secret, or a body changed after signing, fails verification."""
    body, headers = signed(callback(APP_MENTION), secret="another app's secret")
    assert intake("slack", SLACK, body, headers, {}, [SIGNING_SECRET]).reason == (
        "validation_failed"
    )
    body, headers = signed(callback(APP_MENTION))
    tampered = body.replace(b"pearl", b"pearls")
    receipt = intake("slack", SLACK, tampered, headers, {}, [SIGNING_SECRET])
    assert receipt.reason == "validation_failed"
    assert "x-slack-signature does not match" in receipt.detail


@pytest.fixture
def slack_client(tmp_path: Path) -> Iterator[tuple[TestClient, RecordingBackend]]:
    """The gateway app with a `slack` source (its signing secret stored) and one agent."""
    store = CredentialStore(tmp_path / "credentials")
    store.write(CredentialRef("slack_signing_secret"), {"secret": SIGNING_SECRET})
    state = State.open(tmp_path / ".al")
    backend = RecordingBackend(agents={"helper"})
    settings = make_settings(
        store,
        webhooks={"slack": SLACK},
        agents={"helper": (WebhookTrigger(source="slack", events=["app_mention"]),)},
        disabled=frozenset(),
    )
    yield TestClient(create_app(state, backend, settings)), backend
    state.close()


def test_the_gateway_answers_slacks_url_verification_with_the_challenge(
    slack_client: tuple[TestClient, RecordingBackend],
) -> None:
    """POST of a signed url_verification body is answered 200 with {"challenge": ...} (what
    Slack expects back), and starts nothing; an unsigned one is refused."""
    client, backend = slack_client
    body, headers = signed(URL_VERIFICATION)
    response = client.post("/webhooks/slack", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"challenge": URL_VERIFICATION["challenge"]}
    forged_headers = {**headers, "X-Slack-Signature": "v0=" + "0" * 64}
    forged = client.post("/webhooks/slack", content=body, headers=forged_headers)
    assert forged.status_code == 401
    assert backend.named("dispatch_webhook") == []


def test_slacks_retries_of_an_event_run_it_once(
    slack_client: tuple[TestClient, RecordingBackend],
) -> None:
    """Slack retries a delivery with X-Slack-Retry-Num and the same event_id: the first is
    dispatched, the retries are answered 200 as duplicates and dispatched to nobody."""
    client, backend = slack_client
    body, headers = signed(callback(APP_MENTION, event_id="Ev0RETRY1"))
    first = client.post("/webhooks/slack", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["dispatched"][0]["agent"] == "helper"
    for attempt in ("1", "2"):
        retry_body, retry_headers = signed(callback(APP_MENTION, event_id="Ev0RETRY1"))
        retry_headers |= {"X-Slack-Retry-Num": attempt, "X-Slack-Retry-Reason": "http_timeout"}
        again = client.post("/webhooks/slack", content=retry_body, headers=retry_headers)
        assert again.status_code == 200
        assert again.json()["duplicate"] is True
        assert again.json()["duplicateOf"] == first.json()["receiptId"]
    assert len(backend.named("dispatch_webhook")) == 1
