"""The daemon's durable state: work queues, locks, calls, receipts, retention, migrations."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from action_llama.errors import StateError
from action_llama.runs.store import RunStore
from action_llama.runs.trigger import Trigger
from action_llama.state import (
    Acquired,
    ActiveRuns,
    Call,
    Calls,
    Conflict,
    Database,
    Deadlock,
    Duplicate,
    Inserted,
    InvalidKey,
    Locks,
    Receipts,
    Refused,
    State,
    WorkQueue,
    prune,
)
from action_llama.state.db import BACKUPS_KEPT, DB_NAME, backup, schema_version, statements
from action_llama.state.schema import MIGRATIONS
from action_llama.webhooks import Receipt

T0 = 1_700_000_000.0
DAY = 86400.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / DB_NAME)
    yield database
    database.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def manual(n: int) -> Trigger:
    return Trigger(prompt=f"job {n}")


# --- work queue ------------------------------------------------------------------------------


def test_queue_is_fifo_per_agent(db: Database) -> None:
    """Items come out of each agent's queue in the order they went in; queues are separate."""
    queue = WorkQueue(db)
    for n in range(3):
        queue.push("dev", manual(n))
    queue.push("ops", Trigger(type="schedule"))
    assert queue.len("dev") == 3
    assert queue.lengths() == {"dev": 3, "ops": 1}
    popped = [queue.pop("dev") for _ in range(4)]
    assert [p.trigger.prompt if p else None for p in popped] == [
        "job 0",
        "job 1",
        "job 2",
        None,
    ]
    ops = queue.pop("ops")
    assert ops is not None
    assert ops.trigger.type == "schedule"


def test_full_queue_drops_the_oldest_and_records_it(
    db: Database, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Past the cap the oldest items go, each drop recorded with its summary and logged."""
    queue = WorkQueue(db, clock=clock)
    ids = [queue.push("dev", manual(n), cap=3).item_id for n in range(3)]
    clock.now += 5
    with caplog.at_level(logging.WARNING, logger="action_llama.state.queue"):
        result = queue.push("dev", manual(3), cap=3)
    assert result.queued
    assert [d.item_id for d in result.dropped] == [ids[0]]
    assert result.dropped[0].summary == "manual prompt: job 0"
    assert [q.trigger.prompt for q in queue.list("dev")] == ["job 1", "job 2", "job 3"]
    (drop,) = queue.drops("dev")
    assert (drop.item_id, drop.reason, drop.dropped_at) == (ids[0], "queue full (cap 3)", T0 + 5)
    assert "oldest event dropped" in caplog.text
    assert "job 0" in caplog.text


def test_lowered_cap_drops_several_and_cap_zero_drops_the_new_item(db: Database) -> None:
    """A smaller cap trims the queue down to it; with a cap of 0 nothing is queued."""
    queue = WorkQueue(db)
    for n in range(5):
        queue.push("dev", manual(n), cap=10)
    result = queue.push("dev", manual(5), cap=2)
    assert len(result.dropped) == 4
    assert [q.trigger.prompt for q in queue.list("dev")] == ["job 4", "job 5"]
    none = queue.push("ops", manual(0), cap=0)
    assert not none.queued
    assert queue.len("ops") == 0


def test_queue_persists_across_reopen(tmp_path: Path) -> None:
    """Queued triggers, every field of them, are still there after the database is reopened."""
    trigger = Trigger(
        type="agent-call", caller="planner", context={"task": "x"}, depth=1, call_id="c1"
    )
    with Database(tmp_path / DB_NAME) as first:
        pushed = WorkQueue(first).push("dev", trigger).item_id
    with Database(tmp_path / DB_NAME) as second:
        queue = WorkQueue(second)
        head = queue.peek("dev")
        assert head is not None
        summary = "agent-call from planner"
        assert (head.id, head.trigger) == (pushed, replace(trigger, summary=summary))
        assert queue.remove(pushed)
        assert not queue.remove(pushed)
        assert queue.pop("dev") is None


def test_two_connections_pushing_at_once_lose_nothing(tmp_path: Path) -> None:
    """Two threads pushing 200 each, each on its own connection: all 400 are queued, in each thread's order."""
    path = tmp_path / DB_NAME
    Database(path).close()
    errors: list[BaseException] = []

    def push_many(name: str) -> None:
        try:
            with Database(path) as own:
                queue = WorkQueue(own)
                for n in range(200):
                    queue.push("dev", Trigger(prompt=f"{name} {n}"), 1000)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=push_many, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Database(path) as check:
        items = WorkQueue(check).list("dev")
    assert len(items) == 400
    for name in "ab":
        mine = [q.trigger.prompt for q in items if (q.trigger.prompt or "").startswith(name)]
        assert mine == [f"{name} {n}" for n in range(200)]


def test_threads_sharing_one_database_pop_each_item_once(db: Database) -> None:
    """Concurrent pops through one shared Database hand out every item exactly once."""
    queue = WorkQueue(db)
    for n in range(300):
        queue.push("dev", manual(n), cap=1000)
    popped: list[int] = []

    def drain() -> None:
        while (entry := queue.pop("dev")) is not None:
            popped.append(entry.id)

    threads = [threading.Thread(target=drain) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(popped) == 300
    assert len(set(popped)) == 300


# --- locks -----------------------------------------------------------------------------------

KEY = "github://acme/app/issues/1"


def test_second_holder_gets_a_conflict_naming_the_holder(db: Database, clock: Clock) -> None:
    """A held key is refused to another holder, with who holds it and until when."""
    locks = Locks(db, default_ttl=1800, clock=clock)
    first = locks.acquire(KEY, "run-a")
    assert isinstance(first, Acquired)
    assert first.lock.expires_at == T0 + 1800
    assert locks.acquire(KEY, "run-b") == Conflict(holder="run-a", expires_at=T0 + 1800)
    assert locks.waiting() == {"run-b": KEY}
    assert isinstance(locks.acquire("file:///tmp/other", "run-a"), Acquired)
    assert [lock.key for lock in locks.list("run-a")] == ["file:///tmp/other", KEY]


def test_reacquire_refreshes_and_heartbeat_extends(db: Database, clock: Clock) -> None:
    """Re-acquiring one's own lock renews it; a heartbeat pushes the expiry; others cannot."""
    locks = Locks(db, default_ttl=100, clock=clock)
    locks.acquire(KEY, "run-a")
    clock.now += 60
    again = locks.acquire(KEY, "run-a", ttl=50)
    assert isinstance(again, Acquired)
    assert (again.lock.held_since, again.lock.expires_at) == (T0 + 60, T0 + 110)
    clock.now += 40
    assert locks.heartbeat(KEY, "run-a")
    assert locks.list()[0].expires_at == T0 + 200
    assert not locks.heartbeat(KEY, "run-b")
    clock.now += 101
    assert not locks.heartbeat(KEY, "run-a")  # expired: too late to keep it


def test_expired_lock_goes_to_the_next_requester(db: Database, clock: Clock) -> None:
    """Once its TTL has passed, a lock is evicted and another holder gets it."""
    locks = Locks(db, clock=clock)
    locks.acquire(KEY, "run-a", ttl=10)
    clock.now += 9
    assert isinstance(locks.acquire(KEY, "run-b"), Conflict)
    clock.now += 1
    assert locks.list() == []
    got = locks.acquire(KEY, "run-b")
    assert isinstance(got, Acquired)
    assert got.lock.holder == "run-b"
    assert locks.waiting() == {}


def test_only_the_holder_releases(db: Database) -> None:
    """release by anyone but the holder is refused and leaves the lock; the holder's works."""
    locks = Locks(db)
    locks.acquire(KEY, "run-a")
    assert not locks.release(KEY, "run-b")
    assert locks.list()[0].holder == "run-a"
    assert locks.release(KEY, "run-a")
    assert not locks.release(KEY, "run-a")


def test_release_all_frees_every_lock_of_an_ended_run(db: Database) -> None:
    """When a run ends its locks all go, and what it waited for is forgotten."""
    locks = Locks(db)
    locks.acquire("a://1", "run-a")
    locks.acquire("a://2", "run-a")
    locks.acquire("b://1", "run-b")
    locks.acquire("b://1", "run-a")
    assert locks.release_all("run-a") == ["a://1", "a://2"]
    assert [lock.key for lock in locks.list()] == ["b://1"]
    assert locks.waiting() == {}
    assert locks.release_all("run-a") == []


def test_deadlock_is_detected_with_its_cycle(db: Database) -> None:
    """A holds x and wants y, B holds y and wants x: B is told of the deadlock and the cycle."""
    locks = Locks(db)
    locks.acquire("res://x", "A")
    locks.acquire("res://y", "B")
    assert isinstance(locks.acquire("res://y", "A"), Conflict)
    result = locks.acquire("res://x", "B")
    assert result == Deadlock(cycle=[("B", "res://x"), ("A", "res://y")])
    locks.release_all("A")
    assert isinstance(locks.acquire("res://x", "B"), Acquired)


def test_three_way_deadlock_and_plain_waits(db: Database) -> None:
    """A wait chain that does not return to the requester is a conflict; one that does is not."""
    locks = Locks(db)
    for holder, key in (("A", "r://1"), ("B", "r://2"), ("C", "r://3")):
        locks.acquire(key, holder)
    assert isinstance(locks.acquire("r://2", "A"), Conflict)  # A → B
    assert isinstance(locks.acquire("r://3", "B"), Conflict)  # B → C (C waits for nothing)
    result = locks.acquire("r://1", "C")  # C → A → B → C
    assert isinstance(result, Deadlock)
    assert result.cycle == [("C", "r://1"), ("A", "r://2"), ("B", "r://3")]


@pytest.mark.parametrize(
    "key",
    ["", "no-scheme", "Github://acme/app", "1abc:x", "github:", "gh://a b", "x" * 3000],
)
def test_invalid_keys_are_refused(db: Database, key: str) -> None:
    """Keys must be URIs with a lowercase scheme and something after it."""
    result = Locks(db).acquire(key, "run-a")
    assert isinstance(result, InvalidKey)
    assert result.reason


@pytest.mark.parametrize(
    "key", ["github://acme/app/pull/2", "file:/srv/x", "urn:isbn:1", "a+b.c-d:z"]
)
def test_uri_keys_are_accepted(db: Database, key: str) -> None:
    """Any URI scheme will do."""
    assert isinstance(Locks(db).acquire(key, "run-a"), Acquired)


def test_sweep_evicts_expired_and_dead_holder_locks(db: Database, clock: Clock) -> None:
    """The sweep removes expired locks and those of runs that are gone, and their waits."""
    locks = Locks(db, clock=clock)
    locks.acquire("k://expired", "alive-1", ttl=10)
    locks.acquire("k://dead", "dead-1")
    locks.acquire("k://kept", "alive-2")
    locks.acquire("k://kept", "dead-2")  # dead-2 only waits
    evicted = locks.sweep(T0 + 20, alive=lambda holder: holder.startswith("alive"))
    assert {(e.lock.key, e.reason) for e in evicted} == {
        ("k://expired", "expired"),
        ("k://dead", "holder gone"),
    }
    assert [(lock.key, lock.holder) for lock in locks.list()] == [("k://kept", "alive-2")]
    assert locks.waiting() == {}


# --- calls -----------------------------------------------------------------------------------


def started(calls: Calls, result: Call | Refused, run_id: str) -> Call:
    assert isinstance(result, Call), result
    assert calls.start(result.call_id, run_id)
    return result


def test_call_depth_is_enforced_across_a_chain(db: Database) -> None:
    """a→b→c fits in a depth of 2; c calling on is refused, naming the limit."""
    calls = Calls(db)
    ab = started(calls, calls.create("run-a", "a", "b", "{}", max_depth=2), "run-b")
    bc = started(calls, calls.create("run-b", "b", "c", "{}", max_depth=2), "run-c")
    assert (ab.depth, bc.depth) == (1, 2)
    assert bc.chain == ("a", "b", "c")
    assert calls.create("run-c", "c", "d", "{}", max_depth=2) == Refused(
        "call depth limit (2) reached"
    )
    assert calls.create("run-x", "x", "y", "{}", max_depth=0) == Refused(
        "call depth limit (0) reached"
    )


def test_call_cycles_and_self_calls_are_refused(db: Database) -> None:
    """Calling an agent already up the chain, or oneself, is refused with the reason."""
    calls = Calls(db)
    started(calls, calls.create("run-a", "a", "b", "{}", max_depth=5), "run-b")
    assert calls.create("run-b", "b", "a", "{}", max_depth=5) == Refused("call cycle: a → b → a")
    assert calls.create("run-b", "b", "b", "{}", max_depth=5) == Refused("agent cannot call itself")
    edges = calls.edges()
    assert [(e.caller_agent, e.target_agent, e.outcome) for e in edges] == [
        ("b", "b", "refused"),
        ("b", "a", "refused"),
        ("a", "b", "running"),
    ]
    assert edges[1].error == "call cycle: a → b → a"


def test_call_states_move_forward_only(db: Database, clock: Clock) -> None:
    """pending → running → completed keeps the return value; later transitions are refused."""
    calls = Calls(db, clock=clock)
    call = calls.create("run-a", "a", "b", '{"q": 1}', max_depth=3)
    assert isinstance(call, Call)
    assert call.status == "pending"
    assert not calls.complete(call.call_id, "too early")
    clock.now += 1
    assert calls.start(call.call_id, "run-b")
    assert not calls.start(call.call_id, "run-b2")
    clock.now += 2
    assert calls.complete(call.call_id, "42")
    assert not calls.fail(call.call_id, "late")
    done = calls.get(call.call_id)
    assert done is not None
    assert (done.status, done.return_value, done.target_run) == ("completed", "42", "run-b")
    assert (done.started_at, done.finished_at) == (T0 + 1, T0 + 3)
    failed = calls.create("run-a", "a", "c", "{}", max_depth=3)
    assert isinstance(failed, Call)
    assert calls.fail(failed.call_id, 'target agent "c" is disabled')
    got = calls.get(failed.call_id)
    assert got is not None
    assert (got.status, got.error) == ("error", 'target agent "c" is disabled')
    assert [e.outcome for e in calls.edges()] == ["error", "completed"]


def test_sweep_times_out_old_calls_and_forgets_finished_ones(db: Database, clock: Clock) -> None:
    """After 2 h an unfinished call is an error; 10 min after ending it is removed."""
    calls = Calls(db, clock=clock)
    old = calls.create("run-a", "a", "b", "{}", max_depth=3)
    clock.now += 3600
    young = calls.create("run-a", "a", "c", "{}", max_depth=3)
    assert isinstance(old, Call)
    assert isinstance(young, Call)
    swept = calls.sweep(T0 + 7200)
    assert [c.call_id for c in swept.timed_out] == [old.call_id]
    assert swept.timed_out[0].error == "call timed out"
    assert swept.removed == []
    assert [c.call_id for c in calls.active()] == [young.call_id]
    later = calls.sweep(T0 + 7200 + 600)
    assert later.removed == [old.call_id]
    assert calls.get(old.call_id) is None
    assert calls.edges()[-1].error == "call timed out"


def test_depth_outlives_the_call_row(db: Database, clock: Clock) -> None:
    """A run keeps its depth after the call that started it was swept away."""
    calls = Calls(db, clock=clock)
    started(calls, calls.create("run-a", "a", "b", "{}", max_depth=1), "run-b")
    calls.sweep(T0 + 3 * 3600)
    calls.sweep(T0 + 4 * 3600)
    assert calls.started_by("run-b") is None
    assert calls.create("run-b", "b", "c", "{}", max_depth=1) == Refused(
        "call depth limit (1) reached"
    )


# --- receipts, active runs, retention --------------------------------------------------------


def receipt(rid: str, delivery: str | None, at: float = T0, body: bytes = b"{}") -> Receipt:
    return Receipt(
        id=rid,
        source="github",
        provider="github",
        event_summary="issues opened",
        received_at=at,
        headers={"x-github-event": "issues"},
        body=body,
        status="processed",
        detail="matched dev",
        matched_agents=("dev",),
        delivery_id=delivery,
    )


def test_duplicate_delivery_id_is_recorded_as_a_duplicate(db: Database) -> None:
    """A repeated delivery id gets its own `duplicate` receipt pointing at the first."""
    receipts = Receipts(db)
    assert receipts.insert(receipt("r1", "d-1")) == Inserted("r1")
    assert receipts.insert(receipt("r2", "d-1")) == Duplicate(existing_id="r1", id="r2")
    assert receipts.insert(receipt("r3", None)) == Inserted("r3")
    assert receipts.insert(receipt("r4", None)) == Inserted("r4")
    dup = receipts.get("r2")
    assert dup is not None
    assert (dup.status, dup.reason, dup.matched_agents, dup.delivery_id) == (
        "duplicate",
        "duplicate",
        (),
        None,
    )
    assert "r1" in dup.detail
    assert receipts.set_outcome("r3", "dead-letter", [], "no_match", "no agent matched")
    r3 = receipts.get("r3")
    assert r3 is not None
    assert (r3.status, r3.reason, r3.detail, r3.headers) == (
        "dead-letter",
        "no_match",
        "no agent matched",
        {"x-github-event": "issues"},
    )


def test_a_delivery_id_is_unique_per_source_also_in_a_database_of_schema_6(
    tmp_path: Path,
) -> None:
    """Receipts stored before delivery ids were per source survive the upgrade, and the same
    delivery id at another source is another delivery (at the same source, a duplicate)."""
    old = sqlite3.connect(tmp_path / DB_NAME)
    for number, script in enumerate(MIGRATIONS[:6], start=1):
        old.executescript(script + f"; PRAGMA user_version = {number};")
    old.close()
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        conn.execute(
            "INSERT INTO webhook_receipts (id, delivery_id, source, provider, event_summary, "
            "received_at, headers, body, matched_agents, status, detail) VALUES ('r1', 'D', "
            "'open', 'generic', 'push', 1.0, '{}', x'', '[]', 'processed', 'dev matched')"
        )
    conn.close()
    db = Database(tmp_path / DB_NAME)
    try:
        receipts = Receipts(db)
        kept = receipts.get("r1")
        assert kept is not None
        assert (kept.provider, kept.delivery_id, kept.detail) == ("generic", "D", "dev matched")
        signed = replace(receipt("r2", "D"), source="gh")
        assert receipts.insert(signed) == Inserted("r2")
        again = replace(receipt("r3", "D"), source="gh")
        assert receipts.insert(again) == Duplicate(existing_id="r2", id="r3")
    finally:
        db.close()


def test_a_receipt_reads_back_as_it_was_stored(db: Database) -> None:
    """Every stored field of a receipt comes back; what only routing knows does not."""
    receipts = Receipts(db)
    kept = replace(receipt("r1", "d-1", body=b"x" * 10), body_truncated=True, unsigned=True)
    receipts.insert(kept)
    assert receipts.get("r1") == replace(kept, unsigned=False)
    assert [r.id for r in receipts.recent()] == ["r1"]


def test_active_runs_keep_only_a_hash_of_the_secret(tmp_path: Path, db: Database) -> None:
    """Active runs are listed and found by secret, but the secret itself is not in the file."""
    active = ActiveRuns(db)
    secret = "s3cr3t-" + "f" * 40
    active.add("run-1", "dev", runtime="docker", secret=secret, trigger={"type": "manual"})
    assert active.set_runtime_ref("run-1", "container-abc")
    (run,) = active.list()
    assert (run.runtime_ref, run.trigger, run.depth) == ("container-abc", {"type": "manual"}, 0)
    assert run.has_secret(secret)
    assert not run.has_secret("wrong")
    assert active.by_secret(secret) == run
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert secret.encode() not in (tmp_path / DB_NAME).read_bytes()
    assert active.remove("run-1")
    assert active.get("run-1") is None


def test_prune_forgets_old_history_but_not_active_runs(tmp_path: Path) -> None:
    """Runs (with their logs), call edges, receipts and drops older than N days go; active
    runs stay."""
    state = State.open(tmp_path)
    runs = RunStore(tmp_path, database=state.db)
    try:
        for run_id in ("old", "old-active", "new"):
            runs.start(run_id, "dev", "manual", None, "docker", None)
        age = {"old": T0 - 20 * DAY, "old-active": T0 - 20 * DAY, "new": T0 - DAY}
        for run_id, started_at in age.items():
            state.db.conn.execute(
                "UPDATE runs SET started_at = ? WHERE run_id = ?", (started_at, run_id)
            )
        state.active_runs.add("old-active", "dev", runtime="docker", secret="x", trigger=None)
        state.calls.clock = Clock(T0 - 20 * DAY)
        old_call = state.calls.create("old", "dev", "ops", "{}", max_depth=3)
        assert isinstance(old_call, Call)
        state.calls.fail(old_call.call_id, "agent run failed")
        state.calls.create("old", "dev", "dev", "{}", max_depth=3)  # refused, still an edge
        state.calls.create("old", "dev", "qa", "{}", max_depth=3)  # still pending: kept
        state.receipts.insert(receipt("r-old", "d1", at=T0 - 15 * DAY))
        state.receipts.insert(receipt("r-new", "d2", at=T0 - 13 * DAY))
        state.queue.clock = Clock(T0 - 30 * DAY)
        state.queue.push("dev", manual(1), cap=0)

        for run_id in age:
            runs.log_path("dev", run_id).parent.mkdir(parents=True, exist_ok=True)
            runs.log_path("dev", run_id).write_text("{}\n")

        pruned_runs = runs.prune(T0, 14)
        pruned = state.prune(T0, 14)

        assert [r.run_id for r in pruned_runs] == ["old"]
        assert not runs.log_path("dev", "old").exists()
        assert runs.log_path("dev", "old-active").exists()
        assert (pruned.call_edges, pruned.receipts, pruned.queue_drops) == (2, 1, 1)
        assert [e.target_agent for e in state.calls.edges()] == ["qa"]
        assert sorted(r.run_id for r in runs.runs()) == ["new", "old-active"]
        assert [r.id for r in state.receipts.recent()] == ["r-new"]
        assert runs.prune(T0, 14) == []
        assert prune(state.db, T0, 14) == type(pruned)(0, 0, 0)
    finally:
        runs.close()
        state.close()


# --- the database and its migrations ---------------------------------------------------------

#: The schema exactly as runs/store.py created it at version 2, frozen here.
SCHEMA_V2 = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, agent TEXT NOT NULL, trigger TEXT NOT NULL, prompt TEXT,
    runtime TEXT NOT NULL, image TEXT, status TEXT NOT NULL, exit_code INTEGER, error TEXT,
    started_at REAL NOT NULL, finished_at REAL, log_path TEXT NOT NULL
);
CREATE INDEX runs_by_agent ON runs(agent, started_at);
ALTER TABLE runs ADD COLUMN input_tokens INTEGER;
ALTER TABLE runs ADD COLUMN output_tokens INTEGER;
ALTER TABLE runs ADD COLUMN cache_read_tokens INTEGER;
ALTER TABLE runs ADD COLUMN cache_write_tokens INTEGER;
ALTER TABLE runs ADD COLUMN cost REAL;
ALTER TABLE runs ADD COLUMN turns INTEGER;
ALTER TABLE runs ADD COLUMN return_value TEXT;
PRAGMA user_version = 2;
"""


def test_a_version_2_run_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """The run history written before the daemon existed gains the state tables, keeps its rows,
    and is backed up once first."""
    old = sqlite3.connect(tmp_path / DB_NAME)
    old.executescript(SCHEMA_V2)
    old.execute(
        "INSERT INTO runs (run_id, agent, trigger, runtime, status, started_at, log_path, cost) "
        "VALUES ('r1', 'dev', 'manual', 'docker', 'completed', 1.0, '/x', 0.5)"
    )
    old.commit()
    old.close()
    state = State.open(tmp_path)
    try:
        assert schema_version(state.db.conn) == len(MIGRATIONS) == 8
        state.queue.push("dev", manual(0))
        runs = RunStore(tmp_path, database=state.db)
        (run,) = runs.runs("dev")
        assert (run.run_id, run.cost) == ("r1", 0.5)
    finally:
        state.close()
    (copy,) = (tmp_path / "backups").iterdir()
    saved = sqlite3.connect(copy)
    assert saved.execute("PRAGMA user_version").fetchone()[0] == 2
    assert saved.execute("SELECT run_id FROM runs").fetchall() == [("r1",)]
    saved.close()
    State.open(tmp_path).close()  # already current: no second backup
    assert len(list((tmp_path / "backups").iterdir())) == 1


def test_work_an_agent_call_queued_before_one_vocabulary_still_runs(tmp_path: Path) -> None:
    """A version 4 database's 'agent-trigger' queue items, drops and active runs become
    'agent-call' triggers naming their caller; other rows are left as they were."""
    old = sqlite3.connect(tmp_path / DB_NAME)
    for migration in MIGRATIONS[:4]:
        old.executescript(migration)
    old.execute("PRAGMA user_version = 4")
    call = '{"sourceAgent": "planner", "context": "fix it", "depth": 1, "callId": "c1"}'
    old.executemany(
        "INSERT INTO work_queue (agent, type, payload, summary, received_at) VALUES (?, ?, ?, ?, 1)",
        [("dev", "agent-trigger", call, "call from planner"), ("dev", "manual", "{}", "manual")],
    )
    old.execute(
        "INSERT INTO queue_drops (agent, item_id, type, summary, received_at, dropped_at, reason) "
        "VALUES ('dev', 9, 'agent-trigger', 'call from planner', 1, 2, 'queue full (cap 1)')"
    )
    old.executemany(
        "INSERT INTO active_runs (run_id, agent, runtime, secret_sha256, started_at, trigger) "
        "VALUES (?, 'dev', 'docker', ?, 1, ?)",
        [("r1", "h1", '{"type": "agent-trigger"}'), ("r2", "h2", '{"type": "manual"}')],
    )
    old.commit()
    old.close()
    state = State.open(tmp_path)
    try:
        called, manual_run = (queued.trigger for queued in state.queue.list("dev"))
        assert called == Trigger(
            type="agent-call",
            caller="planner",
            context="fix it",
            depth=1,
            call_id="c1",
            summary="call from planner",
        )
        assert manual_run == Trigger(type="manual", summary="manual")
        assert [d.type for d in state.queue.drops()] == ["agent-call"]
        assert [run.trigger for run in state.active_runs.list()] == [
            {"type": "agent-call"},
            {"type": "manual"},
        ]
    finally:
        state.close()


def test_receipts_stored_before_one_receipt_read_back_split(tmp_path: Path) -> None:
    """A version 5 database's "<reason>: <detail>" receipts read back as the reason word and
    the detail; duplicates and undispatched deliveries get their reason words too."""
    old = sqlite3.connect(tmp_path / DB_NAME)
    for migration in MIGRATIONS[:5]:
        old.executescript(migration)
    old.execute("PRAGMA user_version = 5")
    rows = [
        ("r1", "dead-letter", "validation_failed: x-hub-signature-256 does not match"),
        ("r2", "duplicate", "duplicate of delivery d-1 (receipt r0)"),
        ("r3", "dead-letter", "not dispatched: dev: scheduler is paused"),
        ("r4", "processed", None),
    ]
    old.executemany(
        "INSERT INTO webhook_receipts (id, source, event_summary, received_at, headers, body, "
        "matched_agents, status, reason) VALUES (?, 'gh', 'issues', 1, '{}', x'', '[]', ?, ?)",
        rows,
    )
    old.commit()
    old.close()
    with Database(tmp_path / DB_NAME) as db:
        receipts = Receipts(db)
        read = {rid: receipts.get(rid) for rid, _, _ in rows}
    assert {rid: (r.reason, r.detail, r.provider) for rid, r in read.items() if r} == {
        "r1": ("validation_failed", "x-hub-signature-256 does not match", ""),
        "r2": ("duplicate", "duplicate of delivery d-1 (receipt r0)", ""),
        "r3": ("not_dispatched", "dev: scheduler is paused", ""),
        "r4": (None, "", ""),
    }


def test_backups_are_bounded(db: Database, tmp_path: Path) -> None:
    """Only the newest few pre-upgrade copies are kept."""
    for _ in range(BACKUPS_KEPT + 3):
        backup(db.conn, tmp_path / "backups", 2)
    assert len(list((tmp_path / "backups").iterdir())) == BACKUPS_KEPT


def test_a_database_from_a_newer_al_is_refused(tmp_path: Path) -> None:
    """A schema newer than ours is an error naming both versions, and the file is untouched."""
    newer = sqlite3.connect(tmp_path / DB_NAME)
    newer.execute("PRAGMA user_version = 99")
    newer.close()
    with pytest.raises(StateError, match=rf"schema version 99.*\({len(MIGRATIONS)}\)"):
        Database(tmp_path / DB_NAME)


def test_statements_split_only_where_sqlite_says_complete() -> None:
    """A semicolon inside a string or a trigger body does not cut a statement."""
    script = """
        CREATE TABLE t (v TEXT DEFAULT 'a;b'); -- note; here
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET v = 'x;'; END;
    """
    parts = list(statements(script))
    assert len(parts) == 2
    assert parts[1].startswith("-- note; here")
    conn = sqlite3.connect(":memory:")
    for part in parts:
        conn.execute(part)
