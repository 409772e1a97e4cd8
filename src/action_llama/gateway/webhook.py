"""`POST /webhooks/{source}`: every delivery is stored as a receipt, and only verified ones run.

Steps: unknown source → 404; a body over 10 MiB → 413 (refused from its Content-Length before
reading, or as soon as the stream passes the cap); `webhooks.intake` checks the signature with
the source's secrets, parses and matches; the receipt is stored, deduplicated by delivery id
(a repeat is answered 200 `duplicate` and dispatched to nobody); a refused delivery answers 401
(signature), 400 (body) or 413 (size) with nothing dispatched; a matched one goes to
`backend.dispatch_webhook`, whose outcome is written back to the receipt. Every answer names
its receipt in `receiptId` (and the `X-AL-Receipt-Id` header, for senders expecting a fixed
body such as Discord's PING reply).

Only verified deliveries claim their delivery id: a forged or oversized one must not block
the real one, and a delivery that could not be dispatched releases its id so the sender's
retry is taken. Bodies of refused deliveries (unauthenticated) are not kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from action_llama import payloads
from action_llama.errors import ActionLlamaError
from action_llama.gateway.http import Problem, log, read_body, status_for
from action_llama.state import Duplicate
from action_llama.webhooks import MAX_BODY, Receipt, intake, load_secrets, replay
from action_llama.webhooks.intake import stored_headers

if TYPE_CHECKING:
    from action_llama.gateway.app import GatewayDeps
    from action_llama.gateway.backend import Dispatch
    from action_llama.gateway.settings import GatewaySettings

RECEIPT_HEADER = "X-AL-Receipt-Id"
_REFUSED_STATUS = {"validation_failed": 401, "parse_error": 400, "too_large": 413}
_REFUSED_LABEL = {
    "validation_failed": "signature validation failed",
    "parse_error": "invalid payload",
    "too_large": "payload too large",
}


class Settled(NamedTuple):
    """What became of a delivery: its receipt, and what the sender is answered."""

    receipt_id: str
    #: A DeliveryPayload, a DuplicatePayload, or (`reply`) a provider's own answer.
    answer: Mapping[str, Any]
    reply: bool = False


class WebhookDesk:
    """Takes deliveries (and operator replays) in, stores their receipts, dispatches them."""

    def __init__(self, deps: GatewayDeps) -> None:
        self.deps = deps
        self.receipts = deps.state.receipts

    async def deliver(self, source: str, request: Request) -> JSONResponse:
        """One delivery posted to `/webhooks/{source}`."""
        settings = self.deps.settings()
        config = settings.webhooks.get(source)
        if config is None:
            raise Problem(404, f"unknown webhook source: {source}")
        now = datetime.now(UTC)
        headers = {k.lower(): v for k, v in request.headers.items()}
        unread = Receipt(
            id=str(uuid.uuid4()),
            source=source,
            provider=config.type,
            received_at=now.timestamp(),
            event_summary=config.type,
            headers=stored_headers(headers),
        )
        try:
            body = await read_body(request, MAX_BODY)
        except Problem as exc:
            if exc.status != 413:
                raise
            refused = replace(unread, reason="too_large", detail="body over 10 MiB")
            raise self._unread(refused, 413, "payload too large") from exc
        try:
            secrets = load_secrets(config, settings.credentials)
        except ActionLlamaError as exc:  # an unreadable store: ours to fix, the sender retries
            detail = f"cannot read the source's secret: {exc.message}"
            refused = replace(unread, reason="validation_failed", detail=detail)
            raise self._unread(refused, 500, detail) from exc
        agents = settings.webhook_agents()
        try:
            receipt = _name_disabled(
                intake(source, config, body, headers, agents, secrets, now=now), settings
            )
        except Exception as exc:
            # A bug of ours in reading this delivery: it still gets its receipt (the sender
            # is told 500, and the operator sees the delivery and why it did not run).
            log.exception("reading a webhook delivery to %s failed", source)
            detail = "internal error while reading the delivery"
            refused = replace(unread, reason="parse_error", detail=detail)
            raise self._unread(refused, 500, "internal error") from exc
        return await self._settle(receipt)

    async def replay(self, receipt_id: str) -> JSONResponse:
        """Route a stored delivery again, unverified (operator only): a new receipt."""
        return self._answer(await self.replayed(receipt_id))

    async def replayed(self, receipt_id: str) -> Settled:
        """`replay`, for the dashboard: the new receipt's id and the answer's payload."""
        original = self.receipts.get(receipt_id)
        if original is None:
            raise Problem(404, f"receipt not found: {receipt_id}")
        settings = self.deps.settings()
        config = settings.webhooks.get(original.source)
        if config is None:
            raise Problem(409, f"webhook source {original.source} is no longer configured")
        # WebhookRejected (400) when its body was not kept whole.
        replayed = replay(original, config, settings.webhook_agents())
        return await self._settled(_name_disabled(replayed, settings))

    def _unread(self, receipt: Receipt, status: int, error: str) -> Problem:
        """Store the receipt of a delivery refused before `intake` read it, and the answer."""
        self.receipts.insert(receipt)
        log.warning(
            "webhook to %s refused: %s: %s (receipt %s)",
            receipt.source,
            receipt.reason,
            receipt.detail,
            receipt.id,
        )
        return Problem(status, error, reason=receipt.reason, receiptId=receipt.id)

    async def _dispatch(self, receipt: Receipt) -> list[Dispatch]:
        """Hand the matched agents to the backend; on failure, release the delivery id."""

        def undo(why: str) -> None:
            self.receipts.forget_delivery(receipt.id)
            self.receipts.set_outcome(receipt.id, "dead-letter", (), "not_dispatched", why)

        try:
            return await self.deps.backend.dispatch_webhook(receipt, receipt.matched_agents)
        except ActionLlamaError as exc:
            undo(exc.message)
            raise Problem(status_for(exc), exc.message, receiptId=receipt.id) from exc
        except Exception as exc:
            log.exception("dispatching webhook receipt %s failed", receipt.id)
            undo("internal error")
            raise Problem(500, "internal error", receiptId=receipt.id) from exc

    async def _settle(self, receipt: Receipt) -> JSONResponse:
        return self._answer(await self._settled(receipt))

    @staticmethod
    def _answer(settled: Settled) -> JSONResponse:
        """The HTTP answer: a provider's own reply as it is, else ours with `"ok": true`."""
        header = {RECEIPT_HEADER: settled.receipt_id}
        if settled.reply:
            return JSONResponse(dict(settled.answer), headers=header)
        return JSONResponse({"ok": True, **settled.answer}, headers=header)

    async def _settled(self, receipt: Receipt) -> Settled:
        # The receipt and the work it starts (a queued trigger, or a run's claim) commit in one
        # transaction: a scheduler killed between them must leave neither, or the sender's
        # retry would be a duplicate of work that never starts. The backend's dispatch only
        # writes to this database, without waiting on anything.
        status, dispatched = receipt.status, []
        failed: Problem | None = None
        with self.receipts.db.write():
            stored = self.receipts.insert(receipt)
            dispatching = not isinstance(stored, Duplicate) and not receipt.rejected
            if dispatching and receipt.reply is None and receipt.matched_agents:
                try:
                    dispatched = await self._dispatch(receipt)
                except Problem as exc:
                    failed = exc  # the receipt says why (and gave up its delivery id)
                else:
                    accepted = [d.agent for d in dispatched if d.accepted]
                    refused = "; ".join(
                        f"{d.agent}: {d.reason}" for d in dispatched if not d.accepted
                    )
                    status = "processed" if accepted else "dead-letter"
                    # Usually every matched agent took it, which is what the stored row says
                    # already: one write fewer per delivery.
                    if refused:
                        self.receipts.set_outcome(
                            receipt.id, status, accepted, "not_dispatched", refused
                        )
        if failed is not None:
            raise failed
        if isinstance(stored, Duplicate):
            return Settled(stored.id, payloads.duplicate(stored.id, stored.existing_id))
        if receipt.rejected:
            assert receipt.reason is not None
            log.warning("webhook to %s refused: %s", receipt.source, receipt.detail)
            raise Problem(
                _REFUSED_STATUS[receipt.reason],
                f"{_REFUSED_LABEL[receipt.reason]}: {receipt.detail}",
                reason=receipt.reason,
                receiptId=receipt.id,
            )
        if receipt.reply is not None:
            return Settled(receipt.id, receipt.reply, reply=True)
        return Settled(receipt.id, payloads.delivery(receipt, status, dispatched))

    async def challenge(self, source: str, request: Request) -> JSONResponse:
        """X (Twitter)'s CRC check: `?crc_token=` answered with the source's secret."""
        settings = self.deps.settings()
        config = settings.webhooks.get(source)
        if config is None:
            raise Problem(404, f"unknown webhook source: {source}")
        if config.type != "twitter":
            raise Problem(404, "CRC not supported for this source")
        token = request.query_params.get("crc_token")
        secrets = load_secrets(config, settings.credentials)
        if not token or not secrets:
            raise Problem(400, "CRC challenge failed: no crc_token, or no secret for the source")
        from action_llama.webhooks.twitter import crc_response

        return JSONResponse(crc_response(token, secrets[0]))


def webhook_routes(desk: WebhookDesk) -> APIRouter:
    """The open webhook routes.

    Plain Starlette routes: their only parameter is the path's source name, and skipping
    FastAPI's dependency solving and response handling is a real share of a delivery's time
    on a busy gateway. Errors (`Problem`) still go through the app's handlers.
    """
    router = APIRouter()

    async def deliver(request: Request) -> JSONResponse:
        return await desk.deliver(request.path_params["source"], request)

    async def challenge(request: Request) -> JSONResponse:
        return await desk.challenge(request.path_params["source"], request)

    router.add_route("/webhooks/{source}", deliver, methods=["POST"])
    router.add_route("/webhooks/{source}", challenge, methods=["GET"])
    return router


def _name_disabled(receipt: Receipt, settings: GatewaySettings) -> Receipt:
    """A delivery no agent took because its only listeners are disabled says so (rather
    than that nobody listens), with how to enable them."""
    if receipt.reason != "no_match" or receipt.unmatched:
        return receipt
    disabled = settings.disabled_listeners(receipt.source)
    if not disabled:
        return receipt
    names = ", ".join(disabled)
    detail = (
        f"the agents listening to source {receipt.source} take no work (scale = 0): {names}; "
        "set scale above 0 in their config.toml to run them"
    )
    return replace(receipt, detail=detail)
