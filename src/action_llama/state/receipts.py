"""Webhook receipts: one row per delivery, saying what it matched or why it matched nothing.

A delivery id (GitHub's `X-GitHub-Delivery`, say) is unique: a second delivery with the same id
is recorded as a `duplicate` receipt pointing at the first, and must not be dispatched again.
Bodies are kept up to `MAX_BODY_BYTES` (the rest is cut and the receipt marked truncated).
Headers are stored as given: strip credentials (an `Authorization` header) before inserting.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace
from typing import Literal

from action_llama.state.db import Database

MAX_BODY_BYTES = 256 * 1024

ReceiptStatus = Literal["processed", "dead-letter", "duplicate"]


@dataclass(frozen=True)
class Receipt:
    """One webhook delivery: where from, what it was, and what came of it."""

    id: str
    source: str
    #: One line, for example `issues opened` (GitHub event and action) or the source's name.
    event_summary: str
    received_at: float
    headers: dict[str, str]
    body: bytes
    matched_agents: tuple[str, ...] = ()
    status: ReceiptStatus = "processed"
    #: Why a dead letter: validation_failed, parse_error, no_match, ... (free text).
    reason: str | None = None
    delivery_id: str | None = None
    body_truncated: bool = False


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
        """Store `receipt` (its body cut to `MAX_BODY_BYTES`), or record it as a duplicate."""
        if len(receipt.body) > MAX_BODY_BYTES:
            receipt = replace(receipt, body=receipt.body[:MAX_BODY_BYTES], body_truncated=True)
        with self.db.write() as conn:
            existing = None
            if receipt.delivery_id is not None:
                existing = conn.execute(
                    "SELECT id FROM webhook_receipts WHERE delivery_id = ?", (receipt.delivery_id,)
                ).fetchone()
            if existing is not None:
                receipt = replace(
                    receipt,
                    delivery_id=None,
                    status="duplicate",
                    matched_agents=(),
                    reason=f"duplicate of delivery {receipt.delivery_id} "
                    f"(receipt {existing['id']})",
                )
            conn.execute(
                "INSERT INTO webhook_receipts (id, delivery_id, source, event_summary, "
                "received_at, headers, body, body_truncated, matched_agents, status, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    receipt.id,
                    receipt.delivery_id,
                    receipt.source,
                    receipt.event_summary,
                    receipt.received_at,
                    json.dumps(receipt.headers),
                    receipt.body,
                    int(receipt.body_truncated),
                    json.dumps(list(receipt.matched_agents)),
                    receipt.status,
                    receipt.reason,
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
        reason: str | None = None,
    ) -> bool:
        """Record what routing did with a stored delivery; False if there is no such receipt."""
        with self.db.write() as conn:
            cursor = conn.execute(
                "UPDATE webhook_receipts SET status = ?, matched_agents = ?, reason = ? "
                "WHERE id = ?",
                (status, json.dumps(list(matched_agents)), reason, receipt_id),
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

    def recent(self, limit: int = 50, source: str | None = None) -> list[Receipt]:
        """The latest receipts (of one source, or all), newest first."""
        where, args = ("WHERE source = ?", (source,)) if source else ("", ())
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT * FROM webhook_receipts {where} ORDER BY received_at DESC, rowid DESC "
                "LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [_receipt(r) for r in rows]


def _receipt(row: sqlite3.Row) -> Receipt:
    return Receipt(
        id=row["id"],
        source=row["source"],
        event_summary=row["event_summary"],
        received_at=row["received_at"],
        headers=json.loads(row["headers"]),
        body=bytes(row["body"]),
        matched_agents=tuple(json.loads(row["matched_agents"])),
        status=row["status"],
        reason=row["reason"],
        delivery_id=row["delivery_id"],
        body_truncated=bool(row["body_truncated"]),
    )
