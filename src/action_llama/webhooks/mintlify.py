"""Mintlify: `X-Mintlify-Signature` (or `Mintlify-Signature`): hex HMAC-SHA256.

The event defaults to `build`; the action is `action` or `status` and is required. `repo`
holds the project (`project`, else `organization`), matched by the `repos` filter; the
branch defaults to `main`. Failed and succeeded builds get a `conclusion`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from action_llama.webhooks.base import (
    Ignored,
    dig,
    first_text,
    header,
    hmac_sha256_matches,
    load_object,
    text,
)
from action_llama.webhooks.context import WebhookEvent

_CONCLUSIONS = {
    "failed": "failure",
    "failure": "failure",
    "succeeded": "success",
    "success": "success",
}


class MintlifyProvider:
    """Mintlify documentation build webhooks."""

    type = "mintlify"
    credential_type = "mintlify_webhook_secret"
    credential_field = "secret"
    signature_headers = ("x-mintlify-signature", "mintlify-signature")

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> bool:
        signature = header(headers, "x-mintlify-signature") or header(headers, "mintlify-signature")
        return hmac_sha256_matches(body, signature, secrets)

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        return None

    def parse(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent | Ignored:
        data = load_object(body, headers)
        action = first_text(data.get("action"), data.get("status"))
        if action is None:
            return Ignored("Mintlify payload without action or status")
        message = first_text(data.get("message"), data.get("error"), data.get("description"))
        conclusion = _CONCLUSIONS.get(action)
        error = text(data.get("error"))
        if conclusion == "failure" and error is not None:
            message = f"Build failed: {error}"
        return WebhookEvent(
            source=self.type,
            event=text(data.get("event")) or "build",
            action=action,
            repo=first_text(data.get("project"), data.get("organization")) or "unknown",
            sender=first_text(dig(data, "user", "email"), dig(data, "user", "name")) or "mintlify",
            title=text(data.get("title")) or f"Build {action}",
            body=message,
            url=first_text(data.get("url"), data.get("build_url"), data.get("logs_url")),
            branch=first_text(data.get("branch"), dig(data, "git", "branch")) or "main",
            conclusion=conclusion,
        )
