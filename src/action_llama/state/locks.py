"""Resource locks held by runs: URI keys, a TTL kept alive by heartbeats, deadlock detection.

A holder (a run id) may hold several locks. When an acquire finds the key held by someone
else, the requester is recorded as waiting for that key (the wait-for graph, one wanted key per
holder) and the graph is walked: requester → wanted key → its holder → that holder's wanted key
→ ... If the walk comes back to the requester the answer is `Deadlock` with the cycle, otherwise
`Conflict`. A holder's wait edge is cleared when it acquires or releases a lock or its run ends.
"""

from __future__ import annotations

import builtins
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from action_llama.state.db import Database

#: `resourceLockTimeout`'s default: seconds a lock lives without a heartbeat.
DEFAULT_TTL = 1800.0
MAX_KEY_LENGTH = 2048
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:")


@dataclass(frozen=True)
class Lock:
    """A held lock: `holder` (a run id) has `key` from `held_since` until `expires_at`."""

    key: str
    holder: str
    held_since: float
    expires_at: float


@dataclass(frozen=True)
class Acquired:
    """The requester holds the lock (newly, or refreshed) until `expires_at`."""

    lock: Lock


@dataclass(frozen=True)
class Conflict:
    """Someone else holds the key; the requester is now recorded as waiting for it."""

    holder: str
    expires_at: float


@dataclass(frozen=True)
class Deadlock:
    """Waiting would never end: each (holder, key) waits for a key held by the next holder,
    and the last key is held by the requester (who is `cycle[0][0]`)."""

    cycle: list[tuple[str, str]]


@dataclass(frozen=True)
class InvalidKey:
    """The key is not a URI with a scheme; `reason` says what is wrong with it."""

    reason: str


AcquireResult = Acquired | Conflict | Deadlock | InvalidKey


@dataclass(frozen=True)
class Evicted:
    """A lock `sweep` removed, and why."""

    lock: Lock
    reason: Literal["expired", "holder gone"]


def check_key(key: str) -> str | None:
    """Why `key` is not a usable lock key, or None when it is (a URI with a lowercase scheme)."""
    if not key:
        return "lock key is empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"lock key is longer than {MAX_KEY_LENGTH} characters"
    if not _SCHEME.match(key):
        return (
            f"lock key {key[:80]!r} is not a URI with a scheme, like github://owner/repo/issues/1"
        )
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        return "lock key contains whitespace or control characters"
    if not _SCHEME.sub("", key, count=1):
        return f"lock key {key!r} has nothing after its scheme"
    return None


class Locks:
    """The project's resource locks."""

    def __init__(
        self,
        db: Database,
        *,
        default_ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.default_ttl = default_ttl
        self.clock = clock

    def _ttl(self, ttl: float | None) -> float:
        if ttl is None:
            return self.default_ttl
        if ttl <= 0:
            raise ValueError(f"lock ttl must be positive, got {ttl}")
        return ttl

    def acquire(self, key: str, holder: str, ttl: float | None = None) -> AcquireResult:
        """Take `key` for `holder` for `ttl` seconds (default `resourceLockTimeout`).

        Re-acquiring a lock one already holds refreshes it. An expired lock is evicted first.
        """
        problem = check_key(key)
        if problem:
            return InvalidKey(problem)
        seconds = self._ttl(ttl)
        now = self.clock()
        with self.db.write() as conn:
            current = _live_lock(conn, key, now, evict=True)
            if current is None or current.holder == holder:
                lock = Lock(key, holder, now, now + seconds)
                conn.execute(
                    "INSERT OR REPLACE INTO locks (key, holder, held_since, expires_at) "
                    "VALUES (?, ?, ?, ?)",
                    (lock.key, lock.holder, lock.held_since, lock.expires_at),
                )
                conn.execute("DELETE FROM lock_waits WHERE holder = ?", (holder,))
                return Acquired(lock)
            conn.execute(
                "INSERT OR REPLACE INTO lock_waits (holder, key, since) VALUES (?, ?, ?)",
                (holder, key, now),
            )
            cycle = _cycle(conn, holder, key, current.holder, now)
        if cycle is not None:
            return Deadlock(cycle)
        return Conflict(holder=current.holder, expires_at=current.expires_at)

    def release(self, key: str, holder: str) -> bool:
        """Release `key` if `holder` holds it; False (and nothing changed) otherwise."""
        with self.db.write() as conn:
            deleted = conn.execute(
                "DELETE FROM locks WHERE key = ? AND holder = ?", (key, holder)
            ).rowcount
            if deleted:
                # The holder is backing off; those waiting for this key are no longer blocked.
                conn.execute("DELETE FROM lock_waits WHERE holder = ? OR key = ?", (holder, key))
            return deleted > 0

    def heartbeat(self, key: str, holder: str, ttl: float | None = None) -> bool:
        """Extend `holder`'s unexpired lock on `key` to `ttl` s from now; False if not held."""
        seconds = self._ttl(ttl)
        now = self.clock()
        with self.db.write() as conn:
            cursor = conn.execute(
                "UPDATE locks SET expires_at = ? WHERE key = ? AND holder = ? AND expires_at > ?",
                (now + seconds, key, holder, now),
            )
            return cursor.rowcount > 0

    def release_all(self, holder: str) -> builtins.list[str]:
        """Release every lock of `holder` and forget what it waited for (its run has ended)."""
        with self.db.write() as conn:
            rows = conn.execute(
                "DELETE FROM locks WHERE holder = ? RETURNING key", (holder,)
            ).fetchall()
            keys = sorted(r["key"] for r in rows)
            conn.execute("DELETE FROM lock_waits WHERE holder = ?", (holder,))
            conn.executemany("DELETE FROM lock_waits WHERE key = ?", [(k,) for k in keys])
        return keys

    def list(self, holder: str | None = None) -> builtins.list[Lock]:
        """Unexpired locks (of one holder, or all), by key."""
        where, args = ("AND holder = ?", (holder,)) if holder else ("", ())
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT * FROM locks WHERE expires_at > ? {where} ORDER BY key",
                (self.clock(), *args),
            ).fetchall()
        return [_lock(r) for r in rows]

    def waiting(self) -> dict[str, str]:
        """The wait-for edges: holder → the key it last failed to acquire."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT holder, key FROM lock_waits ORDER BY holder").fetchall()
        return {r["holder"]: r["key"] for r in rows}

    def sweep(self, now: float, alive: Callable[[str], bool]) -> builtins.list[Evicted]:
        """Evict expired locks and those of holders `alive` says are gone; drop their wait edges.

        `alive` is asked once per distinct holder; keep it cheap (a set lookup of running runs).
        """
        with self.db.write() as conn:
            locks = [_lock(r) for r in conn.execute("SELECT * FROM locks ORDER BY key")]
            waiters = [r["holder"] for r in conn.execute("SELECT holder FROM lock_waits")]
            holders = {lock.holder for lock in locks} | set(waiters)
            gone = {h for h in holders if not alive(h)}
            evicted: builtins.list[Evicted] = []
            for lock in locks:
                if lock.holder in gone:
                    evicted.append(Evicted(lock, "holder gone"))
                elif lock.expires_at <= now:
                    evicted.append(Evicted(lock, "expired"))
            conn.executemany("DELETE FROM locks WHERE key = ?", [(e.lock.key,) for e in evicted])
            conn.executemany("DELETE FROM lock_waits WHERE holder = ?", [(h,) for h in gone])
        return evicted


def _lock(row: sqlite3.Row) -> Lock:
    return Lock(row["key"], row["holder"], row["held_since"], row["expires_at"])


def _live_lock(conn: sqlite3.Connection, key: str, now: float, *, evict: bool) -> Lock | None:
    """The unexpired lock on `key`; an expired one is deleted when `evict`."""
    row = conn.execute("SELECT * FROM locks WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    if row["expires_at"] > now:
        return _lock(row)
    if evict:
        conn.execute("DELETE FROM locks WHERE key = ?", (key,))
    return None


def _cycle(
    conn: sqlite3.Connection, requester: str, key: str, holder: str, now: float
) -> list[tuple[str, str]] | None:
    """Walk the wait-for graph from `holder`; the cycle if it leads back to `requester`."""
    cycle = [(requester, key)]
    seen = {requester}
    while holder != requester:
        if holder in seen:
            return None  # a cycle the requester is not part of: not its deadlock
        seen.add(holder)
        row = conn.execute("SELECT key FROM lock_waits WHERE holder = ?", (holder,)).fetchone()
        if row is None:
            return None
        cycle.append((holder, row["key"]))
        lock = _live_lock(conn, row["key"], now, evict=False)
        if lock is None:
            return None
        holder = lock.holder
    return cycle
