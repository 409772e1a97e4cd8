"""Opening the project database: WAL, a busy timeout, and versioned migrations.

Concurrency model: SQLite serialises writers across threads and processes. Every
read-then-write goes through `Database.write()`, a `BEGIN IMMEDIATE` transaction, so it takes
the write lock before reading and no other writer can slip in between. One `Database` may be
shared by threads (its calls are serialised by a lock); separate processes each open their own.
Readers never block in WAL mode. Keep transactions short: the daemon calls these from its
event loop.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from types import TracebackType

from action_llama.errors import StateError
from action_llama.layout import DB_NAME
from action_llama.state.schema import MIGRATIONS

#: Seconds a statement waits for another connection's write lock before giving up.
BUSY_TIMEOUT = 30.0
#: Backups taken before a schema upgrade that are kept (the oldest are removed beyond this).
BACKUPS_KEPT = 3
_BUSY = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})


def connect(path: Path, *, timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    """Open (creating if needed) the database at `path`, in WAL mode, migrated to the latest schema.

    The connection is in autocommit mode (`isolation_level=None`): each statement commits by
    itself unless inside an explicit transaction. Rows come back as `sqlite3.Row`.

    Raises:
        StateError: the file cannot be opened or created, or its schema is newer than ours.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except (OSError, sqlite3.Error) as exc:
        raise StateError(
            f"Cannot open the project database {path}: {exc}.",
            hint="Check that the project's .al/ directory is writable by you.",
        ) from exc
    try:
        migrate(conn, backup_dir=path.parent / "backups")
    except BaseException:
        conn.close()
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """How many migrations the database has had applied."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, *, backup_dir: Path | None = None) -> int:
    """Apply the migrations the database lacks, all in one transaction; return the new version.

    A database that already holds data is copied into `backup_dir` first (only when there is
    something to upgrade, and only the newest `BACKUPS_KEPT` copies are kept). Safe to call
    from several processes at once: the version is re-read under the write lock.
    """
    latest = len(MIGRATIONS)
    version = schema_version(conn)
    _refuse_newer(conn, version)
    if version == latest:
        return version
    if backup_dir is not None and version > 0:
        backup(conn, backup_dir, version)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(conn)
            _refuse_newer(conn, version)
            for number in range(version + 1, latest + 1):
                for statement in statements(MIGRATIONS[number - 1]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StateError(
            f"Upgrading the project database from schema {version} to {latest} failed: {exc}.",
            hint="The database was left as it was; a copy is kept in .al/backups/.",
        ) from exc
    return latest


def _refuse_newer(conn: sqlite3.Connection, version: int) -> None:
    if version > len(MIGRATIONS):
        raise StateError(
            f"The project database has schema version {version}, newer than this version of "
            f"al understands ({len(MIGRATIONS)}).",
            hint="Upgrade action-llama (pip install -U action-llama), or use the al that wrote it.",
        )


def statements(script: str) -> Iterator[str]:
    """Split a migration script into single statements (`sqlite3` executes one at a time).

    Splits on `;` but only where SQLite agrees a statement is complete, so a `;` inside a
    string literal or a trigger body does not cut the statement.
    """
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if _has_sql(pending):
                yield pending.strip()
            pending = ""
    if _has_sql(pending):
        raise ValueError(f"incomplete SQL statement in migration: {pending.strip()[:80]!r}")


def _has_sql(text: str) -> bool:
    lines = (line.split("--", 1)[0] for line in text.splitlines())
    return any(line.strip(" \t;") for line in lines)


def backup(conn: sqlite3.Connection, backup_dir: Path, version: int) -> Path:
    """Copy the database into `backup_dir` (consistently, while others use it); prune old copies."""
    backup_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = backup_dir / f"action-llama.v{version}.{stamp}.{time.time_ns() % 10**9:09d}.db"
    copy = sqlite3.connect(target)
    try:
        conn.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        copy.close()
    kept = sorted(backup_dir.glob("action-llama.v*.db"), key=lambda p: p.stat().st_mtime_ns)
    for old in kept[:-BACKUPS_KEPT]:
        old.unlink(missing_ok=True)
    return target


class Database:
    """One connection to the project database, shareable by the threads of one process.

    Use `write()` for anything that reads then writes, `read()` for a consistent snapshot of
    several queries.
    """

    def __init__(self, path: Path, *, timeout: float = BUSY_TIMEOUT) -> None:
        # Imported here: light clients open `existing` databases, and start faster without it.
        import threading

        self.path = path
        self.conn = connect(path, timeout=timeout)
        self._lock: AbstractContextManager[object] = threading.RLock()
        #: Called after each write transaction that changed rows commits (from the writing
        #: thread): how the daemon's live views learn that the state changed.
        self.on_write: Callable[[], None] | None = None

    @classmethod
    def for_project(cls, state_dir: Path) -> Database:
        """The database of the project whose state directory (`.al/`) is `state_dir`."""
        return cls(state_dir / DB_NAME)

    @classmethod
    def existing(cls, path: Path, *, timeout: float = BUSY_TIMEOUT) -> Database:
        """The database another process made and keeps (a running scheduler), as it is: not
        created when missing, not migrated (that process's schema is the one to read). For
        one thread only: it takes no lock.

        Raises:
            StateError: there is no database at `path`, or it cannot be opened.
        """
        try:
            conn = sqlite3.connect(
                f"{path.absolute().as_uri()}?mode=rw",
                uri=True,
                timeout=timeout,
                isolation_level=None,
            )
        except sqlite3.Error as exc:
            raise StateError(
                f"Cannot open the project database {path}: {exc}.",
                hint="It is made by al start (or the first al run): check the project path.",
            ) from exc
        conn.row_factory = sqlite3.Row
        database = cls.__new__(cls)
        database.path, database.conn, database._lock = path, conn, nullcontext()
        return database

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A `BEGIN IMMEDIATE` transaction, committed on exit and rolled back on an exception.

        Nested use in the same thread joins the enclosing transaction.

        Raises:
            StateError: another connection held the write lock for longer than the busy timeout.
        """
        with self._lock, self._translated():
            if self.conn.in_transaction:
                yield self.conn
                return
            self.conn.execute("BEGIN IMMEDIATE")
            before = self.conn.total_changes
            try:
                yield self.conn
                changed = self.conn.total_changes != before
                self.conn.execute("COMMIT")
            except BaseException:
                # Also when COMMIT itself failed (a full disk): a transaction left open would
                # swallow every later write of this connection into it, never committed.
                self._rollback()
                raise
        if changed and self.on_write is not None:
            self.on_write()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same snapshot."""
        with self._lock, self._translated():
            if self.conn.in_transaction:
                yield self.conn
                return
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                if self.conn.in_transaction:
                    self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            name = exc.sqlite_errorname or ""
            if name in _BUSY:
                raise StateError(
                    f"The project database {self.path} stayed locked by another process.",
                    hint="Another al command is writing to it; try again in a moment.",
                ) from exc
            if name == "SQLITE_FULL":
                raise StateError(
                    f"The disk holding the project database {self.path} is full: nothing was "
                    "written.",
                    hint="Free some space on that file system; al goes on once there is room.",
                ) from exc
            if name.startswith(("SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN")):
                raise StateError(
                    f"The project database {self.path} cannot be written: {exc}.",
                    hint="Check the disk and that the project's .al/ folder is writable.",
                ) from exc
            raise

    def close(self) -> None:
        """Close the connection (WAL contents stay on disk; SQLite checkpoints them later)."""
        self.conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
