"""Run history in SQLite (WAL) and each run's log lines in a JSON-lines file, under `.al/`.

.al/action-llama.db              runs: one row per run (schema: `action_llama.state.schema`)
.al/logs/<agent>/<run id>.jsonl  the run's log records, in order
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from action_llama.errors import RunNotFound
from action_llama.layout import DB_NAME
from action_llama.state.db import Database
from action_llama.state.schema import MIGRATIONS

__all__ = ["MIGRATIONS", "RunRecord", "RunStore", "read_log"]


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    agent: str
    trigger: str
    prompt: str | None
    runtime: str
    image: str | None
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

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


class RunStore:
    """The project's run history.

    Opens the project database (creating and migrating it) unless given an open `database`
    to share, which the caller then closes.
    """

    def __init__(self, state_dir: Path, *, database: Database | None = None):
        self.state_dir = state_dir
        self._owned = database is None
        self.database = Database(state_dir / DB_NAME) if database is None else database
        #: The raw connection (autocommit), for callers that query the history directly.
        self.db: sqlite3.Connection = self.database.conn

    def close(self) -> None:
        if self._owned:
            self.database.close()

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        # Through the shared Database, so a statement never lands inside another thread's
        # transaction on the same connection.
        with self.database.write() as conn:
            conn.execute(sql, args)

    def log_path(self, agent: str, run_id: str) -> Path:
        return self.state_dir / "logs" / agent / f"{run_id}.jsonl"

    def open_log(self, agent: str, run_id: str) -> TextIO:
        path = self.log_path(agent, run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("a", encoding="utf-8")

    def start(
        self,
        run_id: str,
        agent: str,
        trigger: str,
        prompt: str | None,
        runtime: str,
        image: str | None,
    ) -> None:
        self._write(
            "INSERT INTO runs (run_id, agent, trigger, prompt, runtime, image, status, "
            "started_at, log_path) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
            (
                run_id,
                agent,
                trigger,
                prompt,
                runtime,
                image,
                time.time(),
                str(self.log_path(agent, run_id)),
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

    def set_hooks_time(self, run_id: str, phase: str, seconds: float) -> None:
        """How long the run's `pre` or `post` hooks took."""
        if phase not in ("pre", "post"):
            raise ValueError(f"unknown hook phase {phase!r}")
        self._write(
            f"UPDATE runs SET {phase}_hooks_seconds = ? WHERE run_id = ?", (seconds, run_id)
        )

    def set_return_value(self, run_id: str, value: str) -> None:
        self._write("UPDATE runs SET return_value = ? WHERE run_id = ?", (value, run_id))

    @staticmethod
    def _record(row: sqlite3.Row) -> RunRecord:
        data = dict(row)
        data["log_path"] = Path(data["log_path"])
        return RunRecord(**data)

    def runs(self, agent: str | None = None, limit: int = 20) -> list[RunRecord]:
        """Most recent first."""
        where, args = ("WHERE agent = ?", [agent]) if agent else ("", [])
        with self.database.read() as conn:
            rows = conn.execute(
                f"SELECT * FROM runs {where} ORDER BY started_at DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [self._record(r) for r in rows]

    def get(self, run_id: str) -> RunRecord:
        with self.database.read() as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(
                f'No run with id "{run_id}".', hint="List recent runs with: al logs <agent> --runs"
            )
        return self._record(row)


def read_log(path: Path) -> Iterator[dict[str, Any]]:
    """The stored records of a run (a partial last line, from a crash, is skipped)."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except ValueError:
                continue
