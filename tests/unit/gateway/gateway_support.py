"""Helpers of the gateway tests: registered runs, settings, signed GitHub deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from action_llama.config._base import validate
from action_llama.config.agent import WebhookTrigger
from action_llama.config.project import WebhookSource
from action_llama.credentials.store import CredentialStore
from action_llama.gateway import GatewaySettings

KEY = "operator-key-123"
SECRET = "It's a Secret to Everybody"
#: Run secrets: run-a is a `dev` run, run-b a `reviewer` run, run-c a `fixer` run.
RUNS = {
    "run-a": ("dev", "secret-a"),
    "run-b": ("reviewer", "secret-b"),
    "run-c": ("fixer", "secret-c"),
}
AGENTS = {"dev", "reviewer", "fixer", "idle", "listener"}
PAYLOADS: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "github_payloads.json").read_text()
)


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github(
    event: str = "issues",
    delivery: str = "d-1",
    *,
    payload: dict[str, Any] | None = None,
    secret: str | None = SECRET,
    body: bytes | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A GitHub delivery (body, headers), signed with `secret` (unsigned when None)."""
    raw = body if body is not None else json.dumps(payload or PAYLOADS[event]).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(raw, secret)
    return raw, headers


def make_settings(store: CredentialStore, **changes: Any) -> GatewaySettings:
    fields: dict[str, Any] = {
        "webhooks": {
            "gh": WebhookSource(type="github"),
            "open": validate(
                WebhookSource, {"type": "github", "credential": "none", "allowUnsigned": True}
            ),
            "closed": validate(WebhookSource, {"type": "github", "credential": "none"}),
        },
        "agents": {
            "dev": (WebhookTrigger(source="gh", events=["issues"]),),
            "listener": (WebhookTrigger(source="open"), WebhookTrigger(source="closed")),
            "idle": (WebhookTrigger(source="gh"),),
            "reviewer": (),
            "fixer": (),
        },
        "disabled": frozenset({"idle"}),
        "credentials": store,
        "max_call_depth": 2,
        "lock_ttl": 600.0,
        "api_key": SecretStr(KEY),
    }
    return GatewaySettings(**{**fields, **changes})


def as_run(run_id: str) -> str:
    """The secret of a registered run."""
    return RUNS[run_id][1]
