"""Run history: versioned schema, usage and return values kept with each run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from action_llama.errors import StateError
from action_llama.runs.store import MIGRATIONS, RunStore


def test_a_store_of_the_first_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    """A database written by the first schema keeps its runs and gains the new columns."""
    db = sqlite3.connect(tmp_path / "action-llama.db")
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.execute(
        "INSERT INTO runs (run_id, agent, trigger, runtime, status, started_at, log_path) "
        "VALUES ('old1', 'hello', 'manual', 'docker', 'completed', 1.0, '/x')"
    )
    db.commit()
    db.close()
    store = RunStore(tmp_path)
    try:
        (run,) = store.runs("hello")
        assert run.run_id == "old1"
        assert run.input_tokens is None
        version = store.database.conn.execute("PRAGMA user_version").fetchone()[0]
        assert version == len(MIGRATIONS)
    finally:
        store.close()


def test_usage_and_return_value_are_stored_with_the_run(tmp_path: Path) -> None:
    """The token-usage record's numbers and an al-return value are kept on the run row."""
    store = RunStore(tmp_path)
    try:
        store.start("r1", "hello", "manual", None, "docker", None)
        store.set_usage(
            "r1",
            {
                "inputTokens": 120,
                "outputTokens": 30,
                "cacheReadTokens": 5,
                "cost": 0.0012,
                "turnCount": 3,
                "cacheWriteTokens": "n/a",
            },
        )
        store.set_return_value("r1", "done: 3 files")
        store.finish("r1", "completed", 0, None)
        run = store.get("r1")
        assert (run.input_tokens, run.output_tokens, run.cache_read_tokens) == (120, 30, 5)
        assert run.cache_write_tokens is None
        assert run.cost == 0.0012
        assert run.turns == 3
        assert run.return_value == "done: 3 files"
    finally:
        store.close()


def test_hook_times_are_stored_with_the_run(tmp_path: Path) -> None:
    """The seconds each hook phase took land on the run row; an unknown phase is refused."""
    store = RunStore(tmp_path)
    try:
        store.start("r1", "hello", "manual", None, "docker", None)
        store.set_hooks_time("r1", "pre", 1.25)
        assert (store.get("r1").pre_hooks_seconds, store.get("r1").post_hooks_seconds) == (
            1.25,
            None,
        )
        store.set_hooks_time("r1", "post", 0.5)
        assert store.get("r1").post_hooks_seconds == 0.5
        with pytest.raises(ValueError, match="unknown hook phase"):
            store.set_hooks_time("r1", "middle", 1.0)
    finally:
        store.close()


def test_the_history_of_a_running_scheduler_is_read_as_it_is(tmp_path: Path) -> None:
    """`RunStore.existing` reads a database another process keeps; it never creates one."""
    with pytest.raises(StateError, match="Cannot open the project database"):
        RunStore.existing(tmp_path)
    assert list(tmp_path.iterdir()) == []
    writer = RunStore(tmp_path)
    reader = RunStore.existing(tmp_path)
    try:
        assert reader.find("r1") is None
        writer.start("r1", "hello", "manual", "hi", "docker", None)
        assert reader.find("r1") == writer.get("r1")
        writer.finish("r1", "failed", 3, "boom")
        found = reader.find("r1")
        assert found is not None
        assert (found.status, found.exit_code, found.error, found.prompt) == (
            "failed",
            3,
            "boom",
            "hi",
        )
        assert found.log_path == writer.log_path("hello", "r1")
    finally:
        reader.close()
        writer.close()


def test_stats_group_an_agents_runs_by_status(tmp_path: Path) -> None:
    """Per agent: runs counted by status, tokens and cost summed, the mean duration of the runs
    that ended; runs that started before `since` are left out."""
    store = RunStore(tmp_path)
    try:
        for run_id, status in (("a", "completed"), ("b", "failed"), ("c", "running")):
            store.start(run_id, "hello", "manual", None, "docker", None)
            store.set_usage(run_id, {"inputTokens": 10, "outputTokens": 5, "cost": 0.5})
            if status != "running":
                store.finish(run_id, status, 0, None)
        store.start("old", "other", "schedule", None, "docker", None)
        store.database.conn.execute("UPDATE runs SET started_at = 1 WHERE run_id = 'old'")
        (stats,) = store.stats(since=100).values()
        assert (stats.runs, stats.by_status) == (3, {"completed": 1, "failed": 1, "running": 1})
        assert (stats.tokens, stats.cost) == (45, 1.5)
        assert stats.mean_duration is not None
        assert stats.mean_duration >= 0
        assert set(store.stats(since=0)) == {"hello", "other"}
    finally:
        store.close()
