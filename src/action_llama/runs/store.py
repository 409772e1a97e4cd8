"""The run history: the one reader and writer of the `runs` table, and of the runs' log files.

    .al/action-llama.db              runs: one row per run (schema: `action_llama.state.schema`)
    .al/logs/<agent>/<run id>.jsonl  the run's log records, in order

Writers: the run service (a run's start, usage, return value, hook times and end), the daemon
(runs it can no longer follow), housekeeping (retention). Readers: `al logs`, `al stat`, `al
run` following a run in the scheduler, and the gateway's history routes.

Standard library only, on purpose (`state.db` is too): `al run` through a running scheduler
follows its run here and has to start about as fast as `docker run`, so importing this module
loads neither pydantic nor FastAPI nor docker-py, and `RunRecord` is a NamedTuple (building a
dataclass costs start-up time).
"""

# No `from __future__ import annotations`: typing compiles every string annotation of a
# NamedTuple's fields, which made defining RunRecord five times slower.
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from action_llama import oserrors
from action_llama.errors import RunNotFound
from action_llama.layout import DB_NAME
from action_llama.state.db import Database
from action_llama.state.schema import MIGRATIONS

__all__ = ["MIGRATIONS", "AgentStats", "LogTail", "RunRecord", "RunStore", "read_log"]

DAY = 86400.0


class RunRecord(NamedTuple):
    """One run, as recorded: what started it, how it ended, what it used and returned."""

    run_id: str
    agent: str
    #: What started it: manual, schedule, webhook or agent-call.
    trigger: str
    prompt: str | None
    #: The runtime's registry name (docker, host-user, ...).
    runtime: str
    image: str | None
    #: running, completed, rerun, failed, error, timeout, oom or killed.
    status: str
    exit_code: int | None
    error: str | None
    started_at: float
    finished_at: float | None
    log_path: Path
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cost: float | None = None
    turns: int | None = None
    return_value: str | None = None
    pre_hooks_seconds: float | None = None
    post_hooks_seconds: float | None = None
    #: What its trigger told it, as JSON text (a webhook's event, a caller's request).
    context: str | None = None

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    @property
    def tokens(self) -> int | None:
        """Input plus output tokens, when the run reported any."""
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)


class AgentStats(NamedTuple):
    """One agent's runs over a period (`RunStore.stats`)."""

    runs: int
    by_status: dict[str, int]
    tokens: int
    cost: float
    #: Durations (seconds) of the runs that ended; None when none did.
    mean_duration: float | None
    median_duration: float | None = None
    p90_duration: float | None = None


#: Columns read, by name: a database migrated by a newer al may have more.
_COLUMNS = ", ".join(RunRecord._fields)


def _record(row: sqlite3.Row) -> RunRecord:
    values = list(row)
    values[RunRecord._fields.index("log_path")] = Path(row["log_path"])
    return RunRecord(*values)


class RunStore:
    """The project's run history.

    Opens the project database (creating and migrating it) unless given an open `database`
    to share, which the caller then closes.
    """

    def __init__(self, state_dir: Path, *, database: Database | None = None):
        self.state_dir = state_dir
        self._owned = database is None
        self.database = Database(state_dir / DB_NAME) if database is None else database

    @classmethod
    def existing(cls, state_dir: Path) -> "RunStore":
        """The history of a project whose scheduler runs, opened as that scheduler keeps it
        (never created, never migrated from here).

        Raises:
            StateError: the project has no database.
        """
        store = cls(state_dir, database=Database.existing(state_dir / DB_NAME))
        store._owned = True
        return store

    def close(self) -> None:
        if self._owned:
            self.database.close()

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        # Through the shared Database, so a statement never lands inside another thread's
        # transaction on the same connection.
        with self.database.write() as conn:
            conn.execute(sql, args)

    # -- logs -------------------------------------------------------------------------------

    def log_path(self, agent: str, run_id: str) -> Path:
        return self.state_dir / "logs" / agent / f"{run_id}.jsonl"

    def open_log(self, agent: str, run_id: str) -> TextIO:
        path = self.log_path(agent, run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("a", encoding="utf-8")

    # -- writing ----------------------------------------------------------------------------

    def start(
        self,
        run_id: str,
        agent: str,
        trigger: str,
        prompt: str | None,
        runtime: str,
        image: str | None,
        context: Any = None,
    ) -> None:
        """A run begins: `context` is what its trigger told it (JSON-able), if anything."""
        self._write(
            "INSERT INTO runs (run_id, agent, trigger, prompt, runtime, image, status, "
            "started_at, log_path, context) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
            (
                run_id,
                agent,
                trigger,
                prompt,
                runtime,
                image,
                time.time(),
                str(self.log_path(agent, run_id)),
                None if context is None else json.dumps(context, ensure_ascii=False),
            ),
        )

    def finish(self, run_id: str, status: str, exit_code: int | None, error: str | None) -> None:
        self._write(
            "UPDATE runs SET status = ?, exit_code = ?, error = ?, finished_at = ? "
            "WHERE run_id = ?",
            (status, exit_code, error, time.time(), run_id),
        )

    def set_usage(self, run_id: str, usage: dict[str, Any]) -> None:
        """Token usage from the run's `token-usage` record (keys as the entry writes them)."""

        def number(key: str) -> Any:
            value = usage.get(key)
            return value if isinstance(value, int | float) else None

        self._write(
            "UPDATE runs SET input_tokens = ?, output_tokens = ?, cache_read_tokens = ?, "
            "cache_write_tokens = ?, cost = ?, turns = ? WHERE run_id = ?",
            (
                number("inputTokens"),
                number("outputTokens"),
                number("cacheReadTokens"),
                number("cacheWriteTokens"),
                number("cost"),
                number("turnCount"),
                run_id,
            ),
        )

    def set_image(self, run_id: str, image: str | None) -> None:
        """The image the run started from, when it is not the one it was recorded with (its
        image was built again: see `RunService._start`)."""
        self._write("UPDATE runs SET image = ? WHERE run_id = ?", (image, run_id))

    def set_hooks_time(self, run_id: str, phase: str, seconds: float) -> None:
        """How long the run's `pre` or `post` hooks took."""
        if phase not in ("pre", "post"):
            raise ValueError(f"unknown hook phase {phase!r}")
        self._write(
            f"UPDATE runs SET {phase}_hooks_seconds = ? WHERE run_id = ?", (seconds, run_id)
        )

    def set_return_value(self, run_id: str, value: str) -> None:
        self._write("UPDATE runs SET return_value = ? WHERE run_id = ?", (value, run_id))

    def prune(self, now: float, days: float) -> list[RunRecord]:
        """Forget runs that started more than `days` days before `now`, and delete their logs;
        the runs forgotten. Runs the daemon still tracks as active are kept, whatever their
        age (see `action_llama.state.active`)."""
        if days < 0:
            raise ValueError(f"history retention must be >= 0 days, got {days}")
        with self.database.write() as conn:
            rows = conn.execute(
                f"DELETE FROM runs WHERE started_at < ? "
                f"AND run_id NOT IN (SELECT run_id FROM active_runs) RETURNING {_COLUMNS}",
                (now - days * DAY,),
            ).fetchall()
        pruned = sorted((_record(row) for row in rows), key=lambda run: run.run_id)
        for run in pruned:
            run.log_path.unlink(missing_ok=True)
        return pruned

    # -- reading ----------------------------------------------------------------------------

    def runs(self, agent: str | None = None, limit: int = 20) -> list[RunRecord]:
        """Most recent first."""
        where, args = ("WHERE agent = ?", [agent]) if agent else ("", [])
        with self.database.read() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM runs {where} ORDER BY started_at DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [_record(r) for r in rows]

    def latest(self, agent: str) -> RunRecord | None:
        """The agent's most recent run, or None when it never ran."""
        return self.latest_of([agent]).get(agent)

    def latest_of(self, agents: Iterable[str]) -> dict[str, RunRecord]:
        """The most recent run of each of `agents` that ever ran (one indexed query each)."""
        latest = {}
        with self.database.read() as conn:
            for agent in agents:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM runs WHERE agent = ? ORDER BY started_at DESC LIMIT 1",
                    (agent,),
                ).fetchone()
                if row is not None:
                    latest[agent] = _record(row)
        return latest

    def find(self, run_id: str) -> RunRecord | None:
        """The run with this id, or None (yet) when there is none."""
        with self.database.read() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return None if row is None else _record(row)

    def get(self, run_id: str) -> RunRecord:
        """The run with this id; RunNotFound when there is none."""
        run = self.find(run_id)
        if run is None:
            raise RunNotFound(
                f'No run with id "{run_id}".', hint="List recent runs with: al logs <agent> --runs"
            )
        return run

    def stats(self, since: float, agent: str | None = None) -> dict[str, AgentStats]:
        """Per agent (or for `agent` only), the runs that started at `since` or later (a run
        still going counts, but adds no duration)."""
        where, args = ("AND agent = ?", (since, agent)) if agent else ("", (since,))
        with self.database.read() as conn:
            rows = conn.execute(
                "SELECT agent, status, finished_at - started_at AS took, "
                "coalesce(input_tokens, 0) + coalesce(output_tokens, 0) AS tokens, "
                f"coalesce(cost, 0) AS cost FROM runs WHERE started_at >= ? {where}",
                args,
            ).fetchall()
        grouped: dict[str, list[sqlite3.Row]] = {}
        for row in rows:
            grouped.setdefault(row["agent"], []).append(row)
        stats = {}
        for name, runs in grouped.items():
            by_status: dict[str, int] = {}
            for row in runs:
                by_status[row["status"]] = by_status.get(row["status"], 0) + 1
            took = sorted(row["took"] for row in runs if row["took"] is not None)
            stats[name] = AgentStats(
                runs=len(runs),
                by_status=by_status,
                tokens=sum(row["tokens"] for row in runs),
                cost=sum(row["cost"] for row in runs),
                mean_duration=sum(took) / len(took) if took else None,
                median_duration=_percentile(took, 0.5),
                p90_duration=_percentile(took, 0.9),
            )
        return stats

    def history(
        self,
        agent: str,
        *,
        status: str | None = None,
        trigger: str | None = None,
        offset: int = 0,
        limit: int = 25,
    ) -> tuple[list[RunRecord], int]:
        """One page of an agent's runs, most recent first, of one status and/or trigger only
        when given; with how many runs match in all."""
        where, args = ["agent = ?"], [agent]
        for column, value in (("status", status), ("trigger", trigger)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        condition = " AND ".join(where)
        with self.database.read() as conn:
            total = conn.execute(f"SELECT count(*) FROM runs WHERE {condition}", args).fetchone()
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE {condition} "
                "ORDER BY started_at DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [_record(r) for r in rows], int(total[0])

    def started_per(self, agent: str, since: float, width: float) -> dict[int, dict[str, int]]:
        """How many of the agent's runs started in each `width` seconds from `since` on, by
        status: {bucket number: {status: runs}} (empty buckets left out)."""
        with self.database.read() as conn:
            rows = conn.execute(
                "SELECT CAST((started_at - ?) / ? AS INTEGER) AS bucket, status, count(*) AS n "
                "FROM runs WHERE agent = ? AND started_at >= ? GROUP BY bucket, status",
                (since, width, agent, since),
            ).fetchall()
        buckets: dict[int, dict[str, int]] = {}
        for row in rows:
            buckets.setdefault(row["bucket"], {})[row["status"]] = row["n"]
        return buckets


def _percentile(ordered: list[float], fraction: float) -> float | None:
    """The value below which `fraction` of the (sorted) values lie (nearest rank)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def read_log(path: Path) -> Iterator[dict[str, Any]]:
    """The stored records of a run (a partial last line, from a crash, is skipped; bytes that
    are not UTF-8, from a line cut inside a character, are replaced)."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict):
                yield record


class LogTail:
    """Reads a run's log file (JSON lines) incrementally: each `read` returns the records
    completed since the last one, holding back a line still being written.

    Bytes, split at newlines, then decoded line by line: a line cut inside a UTF-8 character
    (the writer was killed, or is mid-write) never fails the reader. Lines that are not JSON
    objects (a crash's partial line) are skipped."""

    def __init__(self, path: Path):
        self.path = path
        self._fh: Any = None
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        if self._fh is None:
            try:
                self._fh = self.path.open("rb")
            except FileNotFoundError:
                return []  # the run has not written its first line yet
            except OSError as exc:
                raise RunNotFound(
                    f"The log of this run ({self.path}) cannot be read: {oserrors.reason(exc)}.",
                    hint=oserrors.fix(exc, self.path),
                ) from exc
        chunk = self._fh.read()
        if not chunk:
            return []
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        records = []
        for line in lines:
            try:
                record = json.loads(line.decode("utf-8", errors="replace"))
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
