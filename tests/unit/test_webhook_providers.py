"""Webhook providers other than GitHub: their signatures, what they read, what filters see."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from action_llama.config._base import validate
from action_llama.config.agent import WebhookTrigger
from action_llama.config.project import WebhookSource
from action_llama.webhooks import Ignored, WebhookEvent, get_provider, intake
from action_llama.webhooks.twitter import crc_response

SECRET = "whsec_5e6f"


def hex_hmac(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def source(kind: str, **extra: Any) -> WebhookSource:
    return validate(WebhookSource, {"type": kind, **extra})


def test_sentry_signature_and_resource() -> None:
    """Sentry: hex HMAC in sentry-hook-signature; the event is the resource header."""
    body = json.dumps(
        {
            "action": "created",
            "actor": {"type": "application", "name": "Sentry"},
            "data": {
                "issue": {
                    "title": "ZeroDivisionError",
                    "web_url": "https://sentry.io/i/1",
                    "project": {"slug": "backend"},
                }
            },
        }
    ).encode()
    headers = {
        "Sentry-Hook-Resource": "issue",
        "Sentry-Hook-Signature": hex_hmac(body),
        "Request-ID": "r-1",
    }
    agents = {
        "triage": [WebhookTrigger(source="sentry", resources=["issue"])],
        "alerts": [WebhookTrigger(source="sentry", resources=["metric_alert"])],
    }
    receipt = intake("sentry", source("sentry"), body, headers, agents, [SECRET])
    assert receipt.matched_agents == ("triage",)
    assert receipt.unmatched == {"alerts": "resources: issue not in [metric_alert]"}
    assert receipt.delivery_id == "r-1"
    assert receipt.context is not None
    assert (receipt.context.repo, receipt.context.title, receipt.context.sender) == (
        "backend",
        "ZeroDivisionError",
        "Sentry",
    )


@pytest.mark.parametrize(
    ("kind", "event"), [("Issue", "issues"), ("Comment", "issue_comment"), ("Project", "project")]
)
def test_linear_types_map_to_events(kind: str, event: str) -> None:
    """Linear Issue -> issues, Comment -> issue_comment, others lower-cased; repo = organization."""
    data: dict[str, Any] = {
        "number": 7,
        "title": "Bug",
        "creator": {"email": "a@x.org"},
        "issue": {"number": 7, "title": "Bug"},
        "body": "hi",
    }
    body = json.dumps(
        {
            "action": "create",
            "type": kind,
            "organizationId": "org-1",
            "data": data,
            "createdBy": {"email": "a@x.org"},
        }
    ).encode()
    headers = {
        "Linear-Signature": hex_hmac(body),
        "Linear-Delivery": "ld-1",
    }
    agents = {
        "pm": [
            WebhookTrigger(
                source="lin", events=[event], organizations=["org-1"], actions=["create"]
            )
        ]
    }
    receipt = intake("lin", source("linear"), body, headers, agents, [SECRET])
    assert receipt.matched_agents == ("pm",)
    assert receipt.event_summary == f"{event} create"


@pytest.mark.parametrize("name", ["X-Mintlify-Signature", "Mintlify-Signature"])
def test_mintlify_accepts_either_signature_header(name: str) -> None:
    """Mintlify: hex HMAC in either header; project is matched by repos, branch defaults to main."""
    body = json.dumps({"status": "failed", "project": "docs", "error": "broken link"}).encode()
    headers = {name: hex_hmac(body)}
    agents = {
        "docs": [
            WebhookTrigger(source="mint", repos=["docs"], branches=["main"], actions=["failed"])
        ]
    }
    receipt = intake("mint", source("mintlify"), body, headers, agents, [SECRET])
    assert receipt.matched_agents == ("docs",)
    assert receipt.context is not None
    assert (receipt.context.event, receipt.context.conclusion, receipt.context.body) == (
        "build",
        "failure",
        "Build failed: broken link",
    )


def test_twitter_base64_signature_and_crc() -> None:
    """X: "sha256=" + base64 HMAC; the CRC answer is the same HMAC of the token."""
    body = json.dumps(
        {
            "for_user_id": "2244994945",
            "tweet_create_events": [
                {"id_str": "1", "text": "hello", "user": {"screen_name": "jack"}}
            ],
        }
    ).encode()
    good = (
        "sha256="
        + base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    )
    agents = {
        "social": [WebhookTrigger(source="x", repos=["2244994945"], events=["tweet_create_events"])]
    }
    receipt = intake(
        "x", source("twitter"), body, {"X-Twitter-Webhooks-Signature": good}, agents, [SECRET]
    )
    assert receipt.matched_agents == ("social",)
    assert receipt.event_summary == "tweet_create_events create"
    assert receipt.context is not None
    assert receipt.context.url == "https://twitter.com/jack/status/1"
    expected = base64.b64encode(hmac.new(SECRET.encode(), b"tok", hashlib.sha256).digest()).decode()
    assert crc_response("tok", SECRET) == {"response_token": f"sha256={expected}"}


def test_generic_source_signed_json() -> None:
    """Generic: X-AL-Signature-256 over the body; the body's fields become the context."""
    body = json.dumps(
        {
            "event": "deploy",
            "action": "finished",
            "repo": "octo/app",
            "branch": "main",
            "labels": ["prod"],
        }
    ).encode()
    headers = {"X-AL-Signature-256": "sha256=" + hex_hmac(body), "X-AL-Delivery": "d-9"}
    agents = {
        "ops": [
            WebhookTrigger(
                source="ci", events=["deploy"], orgs=["octo"], labels=["prod"], branches=["main"]
            )
        ]
    }
    receipt = intake("ci", source("generic"), body, headers, agents, [SECRET])
    assert (receipt.matched_agents, receipt.delivery_id) == (("ops",), "d-9")
    assert receipt.context is not None
    assert receipt.context.source == "generic"


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"action": "x"}, "event: Field required"),
        ({"event": "e", "evnt": 1}, "evnt: Extra inputs"),
        ({"event": ""}, "event: String should have at least 1"),
    ],
)
def test_generic_body_errors_name_the_key(payload: dict[str, Any], why: str) -> None:
    """A generic body without event, with an unknown key or an empty event is a parse_error."""
    body = json.dumps(payload).encode()
    receipt = intake(
        "ci",
        source("generic"),
        body,
        {"X-AL-Signature-256": "sha256=" + hex_hmac(body)},
        {},
        [SECRET],
    )
    assert receipt.reason == "parse_error"
    assert why in receipt.detail


def test_test_provider_needs_no_signature() -> None:
    """The test provider accepts unsigned bodies, read as a context."""
    body = json.dumps({"event": "issues", "action": "opened", "repo": "a/b", "extra": 1}).encode()
    agents = {
        "dev": [WebhookTrigger(source="t", events=["issues"], actions=["opened"], repos=["a/b"])]
    }
    receipt = intake("t", source("test"), body, {}, agents, [])
    assert receipt.matched_agents == ("dev",)
    assert receipt.unsigned is False


def test_discord_interactions_are_parsed() -> None:
    """A slash command: event application_command, guild in repo, channel in branch."""
    body = json.dumps(
        {
            "type": 2,
            "guild_id": "g1",
            "channel_id": "c1",
            "member": {"user": {"username": "zed"}},
            "data": {"name": "deploy", "options": [{"name": "env", "value": "prod"}]},
        }
    ).encode()
    event = get_provider("discord").parse(body, {})
    assert isinstance(event, WebhookEvent)
    assert (event.event, event.action, event.repo, event.branch, event.sender, event.body) == (
        "application_command",
        "deploy",
        "g1",
        "c1",
        "zed",
        "env: prod",
    )
    ping = get_provider("discord").parse(b'{"type": 1}', {})
    assert ping == Ignored("ping (Discord checking the endpoint)", reply={"type": 1})


def test_discord_ed25519_signatures() -> None:
    """A delivery signed with the app's key verifies; another key's signature does not."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )
    body = b'{"type": 1}'
    headers = {"X-Signature-Ed25519": key.sign(b"123" + body).hex(), "X-Signature-Timestamp": "123"}
    receipt = intake("dc", source("discord"), body, headers, {}, [public])
    assert receipt.reply == {"type": 1}
    other = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )
    assert intake("dc", source("discord"), body, headers, {}, [other]).reason == "validation_failed"
