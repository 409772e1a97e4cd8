"""Webhook intake: GitHub signatures and parsing, receipts, the context JSON, replay, registry.

Every signed payload is signed here with the sender's real algorithm; GitHub payloads follow
the shapes of GitHub's documented deliveries (trimmed of fields al does not read).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from action_llama.config._base import validate
from action_llama.config.agent import WebhookTrigger
from action_llama.config.project import WEBHOOK_TYPES, WebhookSource
from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.webhooks import (
    MAX_BODY,
    MAX_STORED_BODY,
    Receipt,
    WebhookEvent,
    WebhookRejected,
    get_provider,
    intake,
    load_secrets,
    replay,
)
from action_llama.webhooks.intake import STRIPPED_HEADERS

SECRET = "It's a Secret to Everybody"
NOW = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)

#: Deliveries in the shapes GitHub documents, one per event (trimmed of fields al ignores).
PAYLOADS: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "github_payloads.json").read_text()
)
ISSUE_URL = PAYLOADS["issues"]["issue"]["html_url"]
PULL_URL = PAYLOADS["pull_request"]["pull_request"]["html_url"]


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery(
    event: str, payload: dict[str, Any] | None = None, secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    """A GitHub delivery: body bytes and headers as GitHub sends them."""
    body = json.dumps(payload if payload is not None else PAYLOADS[event]).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
    }
    return body, headers


def source(kind: str = "github", **extra: Any) -> WebhookSource:
    return validate(WebhookSource, {"type": kind, **extra})


def gh_intake(
    event: str,
    *,
    agents: dict[str, list[WebhookTrigger]] | None = None,
    secrets: list[str] | None = None,
) -> Receipt:
    body, headers = delivery(event)
    agents = agents if agents is not None else {"dev": [WebhookTrigger(source="gh")]}
    return intake(
        "gh", source(), body, headers, agents, [SECRET] if secrets is None else secrets, now=NOW
    )


# --- signatures --------------------------------------------------------------------------


def test_github_signature_verifies_with_the_right_secret() -> None:
    """A delivery signed with the secret verifies; the HMAC covers the exact body bytes."""
    body, headers = delivery("issues")
    github = get_provider("github")
    assert github.verify(body, headers, [SECRET])
    assert not github.verify(body + b" ", headers, [SECRET])


def test_any_of_several_secrets_verifies_and_wrong_ones_do_not() -> None:
    """Every secret is tried: the right one among several verifies; only wrong ones do not."""
    body, headers = delivery("issues")
    github = get_provider("github")
    assert github.verify(body, headers, ["old", "other", SECRET])
    assert not github.verify(body, headers, ["old", "other"])


@pytest.mark.parametrize(
    "signature",
    ["", "sha256=", "sha256=00", "sha1=" + "0" * 40, "deadbeef" * 8, "sha256=" + "0" * 64],
)
def test_malformed_or_wrong_signatures_are_refused(signature: str) -> None:
    """Short, long, wrongly prefixed or simply wrong signatures never verify."""
    body, headers = delivery("issues")
    headers["X-Hub-Signature-256"] = signature
    assert not get_provider("github").verify(body, headers, [SECRET])


def test_an_empty_secret_never_verifies() -> None:
    """A blank credential file is not "signed with the empty key"."""
    body, headers = delivery("issues", secret="")
    assert not get_provider("github").verify(body, headers, [""])


def test_bad_signature_gives_a_validation_failed_receipt_and_runs_nothing() -> None:
    """A wrong signature: dead-letter receipt, reason validation_failed, no context, no agent."""
    receipt = gh_intake("issues", secrets=["not the secret"])
    assert (receipt.status, receipt.reason, receipt.rejected) == (
        "dead-letter",
        "validation_failed",
        True,
    )
    assert receipt.matched_agents == ()
    assert receipt.context is None
    assert "x-hub-signature-256 does not match" in receipt.detail


def test_missing_signature_header_is_named() -> None:
    """No signature header at all says which header was expected."""
    body, headers = delivery("issues")
    del headers["X-Hub-Signature-256"]
    receipt = intake(
        "gh", source(), body, headers, {"dev": [WebhookTrigger(source="gh")]}, [SECRET]
    )
    assert receipt.reason == "validation_failed"
    assert "no signature header (x-hub-signature-256" in receipt.detail


def test_no_secret_and_no_allow_unsigned_is_refused() -> None:
    """A source without a secret refuses deliveries unless it sets allowUnsigned."""
    receipt = gh_intake("issues", secrets=[])
    assert receipt.reason == "validation_failed"
    assert "github_webhook_secret" in receipt.detail
    assert "allowUnsigned" in receipt.detail


def test_allow_unsigned_works_for_any_source_name_and_still_matches_bindings() -> None:
    """allowUnsigned on a source named "gh" (not "github") accepts and routes unsigned deliveries."""
    body, headers = delivery("issues")
    del headers["X-Hub-Signature-256"]
    agents = {
        "dev": [WebhookTrigger(source="gh", repos=["octo/app"])],
        "ops": [WebhookTrigger(source="gh", repos=["x/y"])],
    }
    receipt = intake("gh", source(allowUnsigned=True), body, headers, agents, [])
    assert (receipt.status, receipt.reason, receipt.unsigned) == ("processed", None, True)
    assert receipt.matched_agents == ("dev",)


def test_allow_unsigned_does_not_waive_a_configured_secret() -> None:
    """With a secret stored, allowUnsigned does not let an unsigned delivery through."""
    body, headers = delivery("issues")
    del headers["X-Hub-Signature-256"]
    receipt = intake(
        "gh",
        source(allowUnsigned=True),
        body,
        headers,
        {"dev": [WebhookTrigger(source="gh")]},
        [SECRET],
    )
    assert receipt.reason == "validation_failed"


# --- GitHub parsing ------------------------------------------------------------------------

EXPECTED = {
    "issues": {
        "number": 1347,
        "title": "Found a bug",
        "body": "I'm having a problem with this.",
        "url": ISSUE_URL,
        "author": "alice",
        "assignee": "bob",
        "labels": ["bug"],
    },
    "pull_request": {
        "number": 2,
        "title": "Update the README",
        "body": "This is a pretty simple change.",
        "url": PULL_URL,
        "author": "alice",
        "labels": [],
        "branch": "feature-x",
    },
    "issue_comment": {
        "number": 1347,
        "title": "Found a bug",
        "url": "https://github.com/octo/app/issues/1347#c9",
        "author": "alice",
        "labels": ["bug"],
        "comment": "Me too",
    },
    "pull_request_review": {
        "number": 2,
        "title": "Update the README",
        "url": "https://github.com/octo/app/pull/2#r5",
        "author": "alice",
        "branch": "feature-x",
        "comment": "Looks good",
    },
    "push": {
        "title": "Fix the bug",
        "url": PAYLOADS["push"]["compare"],
        "author": "dave",
        "branch": "main",
    },
    "workflow_run": {
        "number": 2,
        "title": "Build",
        "url": "https://github.com/octo/app/actions/runs/30433642",
        "author": "erin",
        "branch": "feature-x",
        "conclusion": "failure",
    },
    "release": {"title": "published"},
}


@pytest.mark.parametrize("event", list(EXPECTED))
def test_github_events_give_the_documented_context(event: str) -> None:
    """Each GitHub event is read into the §8.3 fields; unknown events get title = action."""
    receipt = gh_intake(event)
    assert receipt.context is not None
    action = PAYLOADS[event].get("action")
    head = {
        "source": "github",
        "event": event,
        **({"action": action} if action else {}),
        "repo": "octo/app",
        "sender": "octocat",
        "timestamp": "2025-03-01T12:00:00.123Z",
    }
    assert receipt.context.to_dict() == {**head, **EXPECTED[event], "receiptId": receipt.id}
    assert receipt.event_summary == (f"{event} {action}" if action else event)


def test_push_author_falls_back_to_the_pusher() -> None:
    """A push whose head commit has no username is authored by the pusher's name."""
    payload = {**PAYLOADS["push"], "head_commit": {"message": "x", "author": {"name": "Dave"}}}
    event = get_provider("github").parse(*delivery("push", payload))
    assert isinstance(event, WebhookEvent)
    assert event.author == "dave-pusher"


@pytest.mark.parametrize(
    ("event", "payload", "why"),
    [
        ("ping", PAYLOADS["ping"], "ping"),
        ("", PAYLOADS["issues"], "no X-GitHub-Event header"),
        (
            "issues",
            {"action": "opened", "issue": PAYLOADS["issues"]["issue"]},
            "without repository.full_name",
        ),
    ],
)
def test_github_deliveries_with_nothing_to_act_on_are_ignored(
    event: str, payload: dict[str, Any], why: str
) -> None:
    """Ping, no event header, no repository: processed, reason ignored, nothing run."""
    body, headers = delivery(event, payload)
    if not event:
        del headers["X-GitHub-Event"]
    receipt = intake(
        "gh", source(), body, headers, {"dev": [WebhookTrigger(source="gh")]}, [SECRET]
    )
    assert (receipt.status, receipt.reason, receipt.matched_agents) == ("processed", "ignored", ())
    assert why in receipt.detail


def test_invalid_json_is_a_parse_error() -> None:
    """A correctly signed body that is not JSON gives reason parse_error."""
    body = b"{not json"
    headers = {"X-GitHub-Event": "issues", "X-Hub-Signature-256": sign(body)}
    receipt = intake("gh", source(), body, headers, {}, [SECRET])
    assert (receipt.status, receipt.reason) == ("dead-letter", "parse_error")
    assert "invalid JSON body" in receipt.detail


def test_form_encoded_github_delivery_is_read_from_its_payload_field() -> None:
    """GitHub's application/x-www-form-urlencoded format: the JSON is the `payload` field."""
    from urllib.parse import urlencode

    body = urlencode({"payload": json.dumps(PAYLOADS["issues"])}).encode()
    headers = {
        "X-GitHub-Event": "issues",
        "X-Hub-Signature-256": sign(body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    receipt = intake(
        "gh", source(), body, headers, {"dev": [WebhookTrigger(source="gh")]}, [SECRET]
    )
    assert receipt.matched_agents == ("dev",)


# --- receipts --------------------------------------------------------------------------


def test_receipt_keeps_delivery_id_and_headers_without_signatures() -> None:
    """Headers are stored lower-cased with signature and credential headers removed."""
    body, headers = delivery("issues")
    headers["Authorization"] = "Bearer x"
    receipt = intake("gh", source(), body, headers, {}, [SECRET], now=NOW)
    assert receipt.delivery_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert receipt.headers == {
        "x-github-event": "issues",
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "content-type": "application/json",
        "user-agent": "GitHub-Hookshot/044aadd",
    }
    assert receipt.body == body
    assert receipt.received_at == NOW.timestamp()


def test_bodies_over_10_mib_are_refused_without_verifying() -> None:
    """A body over 10 MiB gives reason too_large and is not stored."""
    body = b" " * (MAX_BODY + 1)
    receipt = intake("gh", source(), body, {"X-GitHub-Event": "issues"}, {}, [SECRET])
    assert (receipt.status, receipt.reason, receipt.body) == ("dead-letter", "too_large", b"")


def test_bodies_over_256_kib_are_processed_but_not_kept() -> None:
    """A large (under 10 MiB) delivery is routed; only bodies ≤ 256 KiB are kept whole, so
    only those can be replayed."""
    payload = {**PAYLOADS["issues"], "padding": "x" * MAX_STORED_BODY}
    body, headers = delivery("issues", payload)
    receipt = intake(
        "gh", source(), body, headers, {"dev": [WebhookTrigger(source="gh")]}, [SECRET]
    )
    assert receipt.matched_agents == ("dev",)
    assert (receipt.body, receipt.body_truncated) == (body[:MAX_STORED_BODY], True)
    assert not receipt.replayable
    with pytest.raises(WebhookRejected, match="no stored payload"):
        replay(receipt, source(), {})


def test_no_match_lists_each_agent_and_why() -> None:
    """Nothing matched: dead-letter no_match, with each listening agent's failing filter."""
    agents = {
        "dev": [WebhookTrigger(source="gh", repos=["octo/other"])],
        "ops": [
            WebhookTrigger(source="gh", events=["push"]),
            WebhookTrigger(source="gh", labels=["docs"]),
        ],
        "elsewhere": [WebhookTrigger(source="sentry")],
    }
    receipt = gh_intake("issues", agents=agents)
    assert (receipt.status, receipt.reason) == ("dead-letter", "no_match")
    assert receipt.unmatched == {
        "dev": "repos: octo/app not in [octo/other]",
        "ops": "events: issues not in [push]; labels: [bug] has none of [docs]",
    }
    assert receipt.detail.startswith("no agent matched: dev: repos:")


def test_no_agent_listening_is_no_match() -> None:
    """A source no agent lists gives no_match saying so."""
    receipt = gh_intake("issues", agents={"dev": [WebhookTrigger(source="other")]})
    assert receipt.reason == "no_match"
    assert receipt.detail == "no agent listens to source gh"


def test_duplicate_path_clears_the_matches() -> None:
    """as_duplicate() turns a receipt into a duplicate that runs nothing and gives up its
    delivery id."""
    dup = gh_intake("issues").as_duplicate("r0")
    assert (dup.status, dup.reason, dup.matched_agents, dup.context, dup.delivery_id) == (
        "duplicate",
        "duplicate",
        (),
        None,
        None,
    )
    assert "72d3162e" in dup.detail
    assert "receipt r0" in dup.detail


def test_replay_routes_the_stored_body_without_a_signature() -> None:
    """Replay re-reads the stored (signature-stripped) delivery and routes it again."""
    first = gh_intake("issues")
    again = replay(first, source(), {"dev": [WebhookTrigger(source="gh")]}, now=NOW)
    assert (again.matched_agents, again.replay_of, again.delivery_id) == (("dev",), first.id, None)
    assert again.event_summary == "replay:issues opened"
    assert again.id != first.id
    assert again.context is not None
    assert again.context.receipt_id == again.id


def test_replay_without_a_stored_body_is_refused() -> None:
    """A receipt whose body was too large to keep cannot be replayed."""
    receipt = gh_intake("issues")
    with pytest.raises(WebhookRejected, match="no stored payload"):
        replay(dataclasses.replace(receipt, body=b""), source(), {})


# --- the context JSON ---------------------------------------------------------------------


def test_context_keys_follow_the_reference_order_and_text_is_truncated() -> None:
    """Keys in §6.3 order, receiptId last; body and comment cut to 4000 characters + "..."."""
    event = WebhookEvent(
        comment="c" * 4001,
        conclusion="success",
        branch="b",
        labels=("x",),
        assignee="a",
        author="u",
        url="https://x",
        body="b" * 5000,
        title="t",
        number=1,
        timestamp="T",
        sender="s",
        repo="r",
        action="act",
        event="e",
        source="generic",
    )
    data = event.with_receipt("rid").to_dict()
    assert list(data) == [
        "source",
        "event",
        "action",
        "repo",
        "sender",
        "timestamp",
        "number",
        "title",
        "body",
        "url",
        "author",
        "assignee",
        "labels",
        "branch",
        "conclusion",
        "comment",
        "receiptId",
    ]
    assert data["body"] == "b" * 4000 + "..."
    assert data["comment"] == "c" * 4000 + "..."
    assert event.with_receipt("rid").to_json() == json.dumps(data, indent=2, ensure_ascii=False)


# --- registry and secrets ---------------------------------------------------------------------


def test_every_source_type_has_a_provider() -> None:
    """Each `type` a [webhooks.*] table accepts has a provider of that name."""
    assert [get_provider(kind).type for kind in WEBHOOK_TYPES] == list(WEBHOOK_TYPES)


def test_providers_are_imported_lazily() -> None:
    """Importing the package loads no provider module until one is asked for."""
    code = "import sys, action_llama.webhooks; print(sorted(m for m in sys.modules if m.startswith('action_llama.webhooks.') and m.rsplit('.', 1)[1] in ('github', 'discord', 'twitter')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_signature_header_is_stripped_from_receipts() -> None:
    """No provider's signature header can end up stored with a receipt."""
    for kind in WEBHOOK_TYPES:
        assert set(get_provider(kind).signature_headers) <= STRIPPED_HEADERS


def test_load_secrets_reads_the_sources_instance(tmp_path: Path) -> None:
    """Secrets come from the source's credential instance; a missing one gives []."""
    store = CredentialStore(tmp_path)
    store.write(CredentialRef("github_webhook_secret", "work"), {"secret": SECRET})
    assert load_secrets(source(credential="work"), store) == [SECRET]
    assert load_secrets(source(), store) == []
    assert load_secrets(source("test"), store) == []
