"""`Receipt`: one webhook delivery and what came of it, from intake to the operator's list.

`webhooks.intake` makes one for every delivery (`replay` for every operator replay), the
gateway stores it (`state.Receipts`, which turns a repeated delivery id into a `duplicate`)
and answers with it, and the operator lists and replays the stored ones. What only routing
knows (the context each run is told, the reply a sender expects, why each listening agent did
not match) is not stored: a receipt read back has those fields empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from action_llama.webhooks.base import ReceiptReason

if TYPE_CHECKING:
    from action_llama.webhooks.context import WebhookContext

ReceiptStatus = Literal["processed", "dead-letter", "duplicate"]
#: Bodies up to this size are kept whole with the receipt, for replay; longer ones are cut.
MAX_STORED_BODY = 256 * 1024
#: Reasons that mean the delivery was refused (the sender did something wrong).
REJECTED: tuple[ReceiptReason, ...] = ("validation_failed", "parse_error", "too_large")


@dataclass(frozen=True)
class Receipt:
    """One webhook delivery: where from, what it was, and what came of it.

    `status` is "processed" when some agent took it or the delivery was valid but carried
    nothing to act on (`reason` "ignored"); "duplicate" for a delivery id received before;
    else "dead-letter", with `reason` saying why and `detail` saying it for people.
    """

    id: str
    #: The `[webhooks.<name>]` source name, and its provider type ("" if stored before al
    #: kept it).
    source: str
    provider: str
    #: Seconds since the epoch.
    received_at: float
    #: "issues opened", "push", "replay:issues opened"; the provider type if unparsed.
    event_summary: str
    status: ReceiptStatus = "dead-letter"
    reason: ReceiptReason | None = None
    #: One line for people: what matched, or why nothing did.
    detail: str = ""
    #: The sender's id of the delivery (GitHub's X-GitHub-Delivery), if any: a second
    #: delivery with the same id is a duplicate. None for refused deliveries, which must not
    #: block the real one.
    delivery_id: str | None = None
    matched_agents: tuple[str, ...] = ()
    #: Lower-cased headers without signatures or credentials.
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The body, cut to MAX_STORED_BODY (`body_truncated` then), for replay; empty when the
    #: delivery was refused unread or unauthenticated.
    body: bytes = b""
    body_truncated: bool = False

    # -- what routing knows, never stored ---------------------------------------------------

    #: Agent name -> why none of its entries for this source fired.
    unmatched: Mapping[str, str] = field(default_factory=dict)
    #: What each matched agent's run is told (None unless the delivery parsed).
    context: WebhookContext | None = None
    #: Accepted without a signature because the source sets allowUnsigned.
    unsigned: bool = False
    #: A JSON body the sender must get back instead of the usual answer (Discord PING).
    reply: Mapping[str, Any] | None = None
    #: The receipt this one replays.
    replay_of: str | None = None

    @property
    def rejected(self) -> bool:
        """True when the delivery was refused rather than read (bad signature, body, size)."""
        return self.reason in REJECTED

    @property
    def replayable(self) -> bool:
        """Whether its whole body was kept, so the operator can route it again."""
        return bool(self.body) and not self.body_truncated

    def as_duplicate(self, original: str) -> Receipt:
        """This receipt for a delivery id already received in receipt `original`: it runs
        nothing and gives up the id (which stays the original's)."""
        return replace(
            self,
            status="duplicate",
            reason="duplicate",
            detail=f"duplicate of delivery {self.delivery_id} (receipt {original})",
            delivery_id=None,
            matched_agents=(),
            unmatched={},
            context=None,
        )
