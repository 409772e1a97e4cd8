"""The project database's schema, as one ordered list of migrations.

`PRAGMA user_version` records how many have been applied. Never edit or reorder a shipped
migration: append a new one. The first two are the run history as `runs/store.py` first shipped
it, so databases written by earlier versions upgrade in place.

All times are seconds since the epoch (REAL); JSON columns hold UTF-8 JSON text.
"""

from __future__ import annotations

#: Migration 1: the run history.
RUNS = """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        trigger TEXT NOT NULL,
        prompt TEXT,
        runtime TEXT NOT NULL,
        image TEXT,
        status TEXT NOT NULL,
        exit_code INTEGER,
        error TEXT,
        started_at REAL NOT NULL,
        finished_at REAL,
        log_path TEXT NOT NULL
    );
    CREATE INDEX runs_by_agent ON runs(agent, started_at);
    """

#: Migration 2: token usage and the returned value of each run.
RUN_USAGE = """
    ALTER TABLE runs ADD COLUMN input_tokens INTEGER;
    ALTER TABLE runs ADD COLUMN output_tokens INTEGER;
    ALTER TABLE runs ADD COLUMN cache_read_tokens INTEGER;
    ALTER TABLE runs ADD COLUMN cache_write_tokens INTEGER;
    ALTER TABLE runs ADD COLUMN cost REAL;
    ALTER TABLE runs ADD COLUMN turns INTEGER;
    ALTER TABLE runs ADD COLUMN return_value TEXT;
    """

#: Migration 3: the scheduler daemon's durable state.
DAEMON_STATE = """
    CREATE INDEX runs_by_start ON runs(started_at);

    -- Per-agent FIFO of work waiting for a free runner. AUTOINCREMENT: ids are never reused,
    -- so a drop record or a log line naming an item id stays unambiguous.
    CREATE TABLE work_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent TEXT NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        summary TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE INDEX work_queue_by_agent ON work_queue(agent, id);

    -- Items dropped from a full queue, for `al stat` and the logs.
    CREATE TABLE queue_drops (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent TEXT NOT NULL,
        item_id INTEGER NOT NULL,
        type TEXT NOT NULL,
        summary TEXT NOT NULL,
        received_at REAL NOT NULL,
        dropped_at REAL NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX queue_drops_by_time ON queue_drops(dropped_at);

    -- Resource locks: one holder (a run id) per URI key, until expires_at.
    CREATE TABLE locks (
        key TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        held_since REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX locks_by_holder ON locks(holder);

    -- The wait-for graph: the key each holder last failed to acquire.
    CREATE TABLE lock_waits (
        holder TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        since REAL NOT NULL
    );
    CREATE INDEX lock_waits_by_key ON lock_waits(key);

    -- Live agent-to-agent calls; terminal ones are removed a few minutes after they end.
    CREATE TABLE calls (
        call_id TEXT PRIMARY KEY,
        caller_run TEXT NOT NULL,
        caller_agent TEXT NOT NULL,
        target_agent TEXT NOT NULL,
        target_run TEXT,
        context TEXT NOT NULL,
        depth INTEGER NOT NULL,
        chain TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'error')),
        return_value TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL
    );
    CREATE INDEX calls_by_status ON calls(status, created_at);

    -- Every call asked for (refused ones too), kept for stats until history retention.
    -- chain: JSON list of the agents from the chain's root to the target.
    CREATE TABLE call_edges (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id TEXT UNIQUE,
        caller_run TEXT NOT NULL,
        caller_agent TEXT NOT NULL,
        target_agent TEXT NOT NULL,
        target_run TEXT,
        depth INTEGER NOT NULL,
        chain TEXT NOT NULL,
        outcome TEXT NOT NULL,
        error TEXT,
        started_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX call_edges_by_target_run ON call_edges(target_run);
    CREATE INDEX call_edges_by_time ON call_edges(started_at);

    -- One receipt per webhook delivery. SQLite's UNIQUE lets many NULL delivery ids through.
    CREATE TABLE webhook_receipts (
        id TEXT PRIMARY KEY,
        delivery_id TEXT UNIQUE,
        source TEXT NOT NULL,
        event_summary TEXT NOT NULL,
        received_at REAL NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        body_truncated INTEGER NOT NULL DEFAULT 0,
        matched_agents TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('processed', 'dead-letter', 'duplicate')),
        reason TEXT
    );
    CREATE INDEX webhook_receipts_by_time ON webhook_receipts(received_at);

    -- Runs the daemon started and has not yet seen end, so a restarted daemon can re-adopt
    -- them. Only a SHA-256 of each run's gateway secret is kept.
    CREATE TABLE active_runs (
        run_id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        runtime TEXT NOT NULL,
        runtime_ref TEXT,
        secret_sha256 TEXT NOT NULL UNIQUE,
        started_at REAL NOT NULL,
        trigger TEXT NOT NULL,
        depth INTEGER NOT NULL DEFAULT 0,
        call_id TEXT
    );
    """

#: Migration 4: how long each run's pre and post hooks took (failed ones included).
HOOK_TIMES = """
    ALTER TABLE runs ADD COLUMN pre_hooks_seconds REAL;
    ALTER TABLE runs ADD COLUMN post_hooks_seconds REAL;
    """

#: Migration 5: one trigger vocabulary. Work an agent's call queued was 'agent-trigger' with
#: its caller in 'sourceAgent'; it is 'agent-call' with 'caller', as its run's record and
#: trigger.json always said.
AGENT_CALL_TRIGGER = """
    UPDATE work_queue SET type = 'agent-call', payload = json_remove(
        json_set(payload, '$.caller', json_extract(payload, '$.sourceAgent')), '$.sourceAgent')
        WHERE type = 'agent-trigger';
    UPDATE queue_drops SET type = 'agent-call' WHERE type = 'agent-trigger';
    UPDATE active_runs SET trigger = json_set(trigger, '$.type', 'agent-call')
        WHERE json_extract(trigger, '$.type') = 'agent-trigger';
    """

#: Migration 6: one receipt. A receipt keeps its provider, and its reason is one word (the
#: vocabulary of `webhooks.ReceiptReason`) with the sentence for people in `detail`; the
#: reasons stored before as "<word>: <sentence>" are split.
RECEIPT_DETAIL = """
    ALTER TABLE webhook_receipts ADD COLUMN provider TEXT NOT NULL DEFAULT '';
    ALTER TABLE webhook_receipts ADD COLUMN detail TEXT NOT NULL DEFAULT '';
    UPDATE webhook_receipts SET reason = 'duplicate', detail = reason WHERE status = 'duplicate';
    UPDATE webhook_receipts SET reason = substr(reason, 1, instr(reason, ': ') - 1),
        detail = substr(reason, instr(reason, ': ') + 2)
        WHERE status != 'duplicate' AND instr(reason, ': ') > 0;
    UPDATE webhook_receipts SET reason = 'not_dispatched' WHERE reason = 'not dispatched';
    """

#: Migration 7: a delivery id is unique per webhook source, not across sources (an unsigned
#: delivery to one source must not make the signed delivery of the same id to another a
#: duplicate). SQLite cannot drop a column's UNIQUE: the table is copied without it.
RECEIPTS_PER_SOURCE = """
    CREATE TABLE webhook_receipts_per_source (
        id TEXT PRIMARY KEY,
        delivery_id TEXT,
        source TEXT NOT NULL,
        event_summary TEXT NOT NULL,
        received_at REAL NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        body_truncated INTEGER NOT NULL DEFAULT 0,
        matched_agents TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('processed', 'dead-letter', 'duplicate')),
        reason TEXT,
        provider TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO webhook_receipts_per_source
        SELECT id, delivery_id, source, event_summary, received_at, headers, body,
               body_truncated, matched_agents, status, reason, provider, detail
        FROM webhook_receipts;
    DROP TABLE webhook_receipts;
    ALTER TABLE webhook_receipts_per_source RENAME TO webhook_receipts;
    CREATE INDEX webhook_receipts_by_time ON webhook_receipts(received_at);
    -- Many NULL delivery ids pass a UNIQUE index.
    CREATE UNIQUE INDEX webhook_receipts_by_delivery ON webhook_receipts(source, delivery_id);
    """

#: Migration 8: a run keeps what its trigger told it (a webhook's event, a caller's request),
#: as JSON, for the dashboard's run page.
RUN_CONTEXT = """
    ALTER TABLE runs ADD COLUMN context TEXT;
    """

#: Applied in order; `PRAGMA user_version` = how many have run.
MIGRATIONS: tuple[str, ...] = (
    RUNS,
    RUN_USAGE,
    DAEMON_STATE,
    HOOK_TIMES,
    AGENT_CALL_TRIGGER,
    RECEIPT_DETAIL,
    RECEIPTS_PER_SOURCE,
    RUN_CONTEXT,
)
