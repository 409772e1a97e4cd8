"""Webhook receipts: one row per delivery (`webhooks.Receipt`), saying what it matched or why
it matched nothing.

A delivery id (GitHub's `X-GitHub-Delivery`, say) is unique per source: a second delivery with
the same id to the same source is recorded as a `duplicate` receipt pointing at the first, and
must not be dispatched again. The same id sent to another source is another delivery.
Headers and body are stored as the receipt holds them (intake strips credentials and cuts the
body). What only routing knows (contexts, replies, unmatched agents) is not stored.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import cast

from action_llama.state.db import Database
from action_llama.webhooks.base import ReceiptReason
from action_llama.webhooks.receipt import Receipt, ReceiptStatus


@dataclass(frozen=True)
class Inserted:
    """The receipt was stored under `id`."""

    id: str


@dataclass(frozen=True)
class Duplicate:
    """The delivery id was seen before, in receipt `existing_id`; this delivery was recorded as
    receipt `id` with status `duplicate`."""

    existing_id: str
    id: str


class Receipts:
    """The project's webhook receipts."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def insert(self, receipt: Receipt) -> Inserted | Duplicate:
        """Store `receipt`, or record it as a duplicate of the receipt with its delivery id."""
        with self.db.write() as conn:
            existing = None
            if receipt.delivery_id is not None:
                existing = conn.execute(
                    "SELECT id FROM webhook_receipts WHERE source = ? AND delivery_id = ?",
                    (receipt.source, receipt.delivery_id),
                ).fetchone()
            if existing is not None:
                receipt = receipt.as_duplicate(existing["id"])
            conn.execute(
                "INSERT INTO webhook_receipts (id, delivery_id, source, provider, "
                "event_summary, received_at, headers, body, body_truncated, matched_agents, "
                "status, reason, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    receipt.id,
                    receipt.delivery_id,
                    receipt.source,
                    receipt.provider,
                    receipt.event_summary,
                    receipt.received_at,
                    json.dumps(dict(receipt.headers)),
                    receipt.body,
                    int(receipt.body_truncated),
                    json.dumps(list(receipt.matched_agents)),
                    receipt.status,
                    receipt.reason,
                    receipt.detail,
                ),
            )
        if existing is not None:
            return Duplicate(existing_id=existing["id"], id=receipt.id)
        return Inserted(receipt.id)

    def set_outcome(
        self,
        receipt_id: str,
        status: ReceiptStatus,
        matched_agents: tuple[str, ...] | list[str] = (),
        reason: ReceiptReason | None = None,
        detail: str = "",
    ) -> bool:
        """Record what dispatching did with a stored delivery (the agents that took it, or why
        none did); False if there is no such receipt."""
        with self.db.write() as conn:
            cursor = conn.execute(
                "UPDATE webhook_receipts SET status = ?, matched_agents = ?, reason = ?, "
                "detail = ? WHERE id = ?",
                (status, json.dumps(list(matched_agents)), reason, detail, receipt_id),
            )
            return cursor.rowcount > 0

    def forget_delivery(self, receipt_id: str) -> bool:
        """Let a later delivery with this receipt's delivery id through (not a duplicate).

        For a delivery that was stored but could not be dispatched: the sender is told to
        retry, and its retry carries the same delivery id. False if there is no such receipt.
        """
        with self.db.write() as conn:
            cursor = conn.execute(
                "UPDATE webhook_receipts SET delivery_id = NULL WHERE id = ?", (receipt_id,)
            )
            return cursor.rowcount > 0

    def get(self, receipt_id: str) -> Receipt | None:
        """The receipt with this id, or None."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT * FROM webhook_receipts WHERE id = ?", (receipt_id,)
            ).fetchone()
        return None if row is None else _receipt(row)

    def recent(
        self,
        limit: int = 50,
        source: str | None = None,
        *,
        status: ReceiptStatus | None = None,
        agent: str | None = None,
    ) -> list[Receipt]:
        """The latest receipts, newest first: all, or those of one source, with one status,
        or that matched one agent."""
        where, args = [], []
        if source:
            where.append("source = ?")
            args.append(source)
        if status:
            where.append("status = ?")
            args.append(status)
        if agent:
            where.append("EXISTS (SELECT 1 FROM json_each(matched_agents) WHERE value = ?)")
            args.append(agent)
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT * FROM webhook_receipts {condition} "
                "ORDER BY received_at DESC, rowid DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [_receipt(r) for r in rows]


def _receipt(row: sqlite3.Row) -> Receipt:
    return Receipt(
        id=row["id"],
        source=row["source"],
        provider=row["provider"],
        received_at=row["received_at"],
        event_summary=row["event_summary"],
        status=row["status"],
        reason=cast("ReceiptReason | None", row["reason"]),
        detail=row["detail"],
        delivery_id=row["delivery_id"],
        matched_agents=tuple(json.loads(row["matched_agents"])),
        headers=json.loads(row["headers"]),
        body=bytes(row["body"]),
        body_truncated=bool(row["body_truncated"]),
    )
