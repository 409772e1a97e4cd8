"""Two senders whose body is already a context: `generic` (signed) and `test` (unsigned).

The generic source is for anything that can compute an HMAC: CI jobs, scripts, other
services. One delivery is::

    POST /webhooks/<source name>
    Content-Type: application/json
    X-AL-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>
    X-AL-Delivery: <unique id, optional: repeated ids are dropped as duplicates>

    {"event": "deploy", "action": "finished", "repo": "octo/app", "branch": "main", ...}

The secret is the `generic_webhook_secret` credential (field `secret`) of the source's
instance. The body is a JSON object with a non-empty string `event`; it may also carry
`action`, `repo`, `sender`, `title`, `body`, `url`, `author`, `assignee`, `branch`,
`conclusion`, `comment` (strings), `number` (integer) and `labels` (list of strings).
Any other key is an error, so a typo is reported rather than dropped. Every filter a GitHub
source has applies (`org`/`orgs` match the part of `repo` before the "/"). For example::

    printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* /sha256=/'

The test provider signs nothing and reads the body as a context (every key optional,
unknown keys ignored); it exists for al's own tests and local experiments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from action_llama.errors import WebhookRejected
from action_llama.webhooks.base import (
    Ignored,
    header,
    hmac_sha256_matches,
    load_object,
)
from action_llama.webhooks.context import WebhookEvent


class GenericPayload(BaseModel):
    """The body of a generic-source delivery."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: str = Field(min_length=1)
    action: str | None = None
    repo: str = ""
    sender: str = "unknown"
    number: int | None = None
    title: str | None = None
    body: str | None = None
    url: str | None = None
    author: str | None = None
    assignee: str | None = None
    labels: tuple[str, ...] | None = None
    branch: str | None = None
    conclusion: str | None = None
    comment: str | None = None


class TestPayload(GenericPayload):
    """The body of a test-source delivery: a context, every key optional."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    source: str = "test"
    event: str = "test"
    sender: str = "test"


def _validate(model: type[GenericPayload], body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
    data = load_object(body, headers)
    try:
        payload = model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        raise WebhookRejected(f"invalid body: {problems}", reason="parse_error") from exc
    fields = payload.model_dump()
    fields.setdefault("source", "generic")
    return WebhookEvent(**fields)


class GenericProvider:
    """al's own signed JSON format (see the module docstring)."""

    type = "generic"
    credential_type = "generic_webhook_secret"
    credential_field = "secret"
    signature_headers = ("x-al-signature-256",)

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> bool:
        signature = header(headers, "x-al-signature-256")
        return hmac_sha256_matches(body, signature, secrets, prefix="sha256=")

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        return header(headers, "x-al-delivery") or None

    def parse(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent | Ignored:
        return _validate(GenericPayload, body, headers)


class TestProvider:
    """No signature; the body is read as a context."""

    __test__ = False  # not a pytest test class, whatever its name

    type = "test"
    credential_type = None
    credential_field = None
    signature_headers = ()

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> bool:
        return True

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        return header(headers, "x-al-delivery") or None

    def parse(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent | Ignored:
        return _validate(TestPayload, body, headers)
