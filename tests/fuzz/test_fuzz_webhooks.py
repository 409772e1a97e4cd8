"""Fuzzing webhook intake for every source type: any body, any headers, any filters. Intake
always returns a receipt (never raises), and what a matched run is told is JSON; over HTTP,
every delivery to a configured source is answered 200/400/401/413 with a stored receipt."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from action_llama.config._base import validate
from action_llama.config.agent import WebhookTrigger
from action_llama.config.project import WebhookSource
from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.errors import WebhookRejected
from action_llama.gateway import GatewaySettings, create_app
from action_llama.gateway.testing import RecordingBackend
from action_llama.state import State
from action_llama.webhooks import PROVIDERS, Receipt, intake, replay

from fuzzing import TEXT, budget

pytestmark = [pytest.mark.fuzz]

#: Keys the providers read, so generated payloads reach their parsers' branches.
_KEY_NAMES = (
    "action actor assignedTo assignee author body branch build build_url channel_id comment "
    "component conclusion createdBy creator custom_id data description email error event "
    "for_user_id full_name guild_id head head_branch head_commit html_url id id_str issue "
    "labels login member message message_create metric_alert name number options "
    "organization organizationId payload project pull_request pull_requests pusher ref repo "
    "repository review screen_name sender sender_id slug source status target team text title "
    "triggered_rule type updatedBy url user user_id username web_url workflow_run"
)
KEYS = tuple(_KEY_NAMES.split())
PAYLOADS: list[dict[str, Any]] = list(
    json.loads(
        (Path(__file__).parent.parent / "unit/github_payloads.json").read_text(encoding="utf-8")
    ).values()
)

payload_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(TEXT, st.integers(), st.booleans(), st.none(), st.floats()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), TEXT), inner, max_size=4),
    ),
    max_leaves=16,
)


def _mutate(payload: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**payload, key: value}


def _encode(data: Any) -> bytes:
    try:
        return json.dumps(data).encode()
    except (ValueError, RecursionError):
        return b"{}"


BODIES = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), payload_values, max_size=6).map(_encode),
    st.builds(_mutate, st.sampled_from(PAYLOADS), st.sampled_from(KEYS), payload_values).map(
        _encode
    ),
    st.sampled_from(PAYLOADS).map(_encode),
    st.sampled_from(
        [
            b"[" * 10_000 + b"]" * 10_000,
            b'{"a": ' * 5000 + b"1" + b"}" * 5000,
            b"1" * 5000,
            b'{"n": ' + b"9" * 5000 + b"}",
            b'{"type": 1}',
            b"payload=%7B%7D",
            b"payload=%ff",
            b"\xff\xfe",
            b"",
            b"null",
        ]
    ),
    st.binary(max_size=200),
)
HEADER_NAMES = st.sampled_from(
    [
        "content-type",
        "x-github-event",
        "x-github-delivery",
        "x-hub-signature-256",
        "sentry-hook-resource",
        "sentry-hook-signature",
        "request-id",
        "linear-signature",
        "linear-delivery",
        "x-signature-ed25519",
        "x-signature-timestamp",
        "x-interaction-id",
        "x-twitter-webhooks-signature",
        "x-mintlify-signature",
        "x-al-signature-256",
        "x-al-delivery",
        "authorization",
    ]
)
HEADER_VALUES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "issues",
            "pull_request",
            "push",
            "ping",
            "workflow_run",
            "issue_comment",
            "pull_request_review",
            "issue",
            "event_alert",
            "installation",
            "sha256=",
            "sha256=" + "0" * 64,
            "0" * 128,
            "1700000000",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)
HEADERS = st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=6)


def triggers(source: str) -> st.SearchStrategy[tuple[WebhookTrigger, ...]]:
    def made(data: dict[str, Any]) -> WebhookTrigger:
        try:
            return validate(WebhookTrigger, {**data, "source": source})
        except ValidationError:
            return WebhookTrigger(source=source)

    filters = st.sampled_from(
        [
            "events",
            "actions",
            "repos",
            "org",
            "orgs",
            "labels",
            "assignee",
            "author",
            "branches",
            "conclusions",
            "resources",
            "organizations",
            "guilds",
            "channels",
            "commands",
        ]
    )
    value = st.one_of(TEXT, st.lists(TEXT, max_size=3))
    return st.lists(st.dictionaries(filters, value, max_size=3).map(made), max_size=2).map(tuple)


def check(receipt: Receipt) -> None:
    """What the gateway stores and the run is told can be stored and told."""
    assert isinstance(receipt, Receipt)
    assert receipt.reason in (
        None,
        "validation_failed",
        "parse_error",
        "no_match",
        "too_large",
        "duplicate",
        "ignored",
    )
    assert isinstance(receipt.event_summary, str)
    assert receipt.event_summary
    if receipt.context is not None:
        json.dumps(receipt.context.to_dict())
        receipt.context.to_json()
    json.dumps(dict(receipt.headers))


@budget(1000)
@given(
    kind=st.sampled_from(sorted(PROVIDERS)),
    body=BODIES,
    headers=HEADERS,
    secrets=st.one_of(st.just([]), st.lists(TEXT, min_size=1, max_size=2)),
    filters=triggers("src"),
)
def test_intake_of_any_delivery_is_a_receipt(
    kind: str,
    body: bytes,
    headers: dict[str, str],
    secrets: list[str],
    filters: tuple[WebhookTrigger, ...],
) -> None:
    """Any body and headers to a source of any type (signed or allowUnsigned): a receipt
    saying what happened; a stored body replays to a receipt or a WebhookRejected."""
    source = validate(WebhookSource, {"type": kind, "allowUnsigned": not secrets})
    receipt = intake("src", source, body, headers, {"a": filters}, secrets)
    check(receipt)
    if receipt.body is not None and not receipt.rejected:
        try:
            again = replay(receipt, source, {"a": filters})
        except WebhookRejected as exc:
            reason = exc.reason
        else:
            check(again)
            return
        assert reason == "parse_error"


SOURCES = {
    kind: validate(WebhookSource, {"type": kind, "allowUnsigned": True}) for kind in PROVIDERS
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[TestClient, State]]:
    """A gateway with one allowUnsigned source of each type, and `signed` (GitHub, with its
    secret), whose agent `a` listens to every source."""
    with tempfile.TemporaryDirectory() as tmp:
        state = State.open(Path(tmp) / ".al")
        store = CredentialStore(Path(tmp) / "credentials")
        store.write(CredentialRef("github_webhook_secret"), {"secret": "s3cret"})
        sources = {**SOURCES, "signed": WebhookSource(type="github")}
        settings = GatewaySettings(
            webhooks=sources,
            agents={"a": tuple(WebhookTrigger(source=name) for name in sources)},
            disabled=frozenset(),
            credentials=store,
            max_call_depth=2,
            lock_ttl=60.0,
            api_key=SecretStr("key"),
        )
        with TestClient(create_app(state, RecordingBackend(agents={"a"}), settings)) as client:
            yield client, state
        state.close()


@budget(250)
@given(
    source=st.one_of(st.sampled_from([*sorted(SOURCES), "signed"]), TEXT),
    body=BODIES,
    headers=HEADERS,
)
def test_every_delivery_over_http_is_answered_with_a_stored_receipt(
    gateway: tuple[TestClient, State], source: str, body: bytes, headers: dict[str, str]
) -> None:
    """POST /webhooks/<source>: 404 for an unknown source, else 200, 400, 401 or 413, and
    always a receipt the operator can look up (its id in the answer and X-AL-Receipt-Id)."""
    client, state = gateway
    known = source in SOURCES or source == "signed"
    response = client.post(f"/webhooks/{quote(source, safe='')}", content=body, headers=headers)
    if not known:
        assert response.status_code in (404, 405), response.text
        return
    assert response.status_code in (200, 400, 401, 413), response.text
    # In the header too: a Discord PING is answered with the body Discord expects.
    receipt_id = response.json().get("receiptId") or response.headers["x-al-receipt-id"]
    assert state.receipts.get(receipt_id) is not None
