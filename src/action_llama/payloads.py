"""The gateway's JSON, in one place: the shape of each payload and the function that makes it.

A payload is a `TypedDict` whose keys are the wire format (camelCase; times as ISO 8601 in UTC
with milliseconds, see `iso`), next to the one function that builds it from our records. The
gateway answers with them, `al stat` renders them (and prints them with `--json`), and a
dashboard renders the same ones; `pydantic.TypeAdapter(StatusPayload).json_schema()` describes
any of them to a client in another language. It is long (over 600 lines) on purpose: the
wire format is one contract, read and reviewed as one, and each part is a flat list of
shapes with their builders, with no logic to split along.

    GET  /control/status                StatusPayload
    GET  /control/runs                  {"runs": [ActiveRunPayload]}
    GET  /control/locks                 {"locks": [HeldLockPayload]}
    GET  /control/calls                 {"calls": [ActiveCallPayload]}
    GET  /control/receipts              {"receipts": [ReceiptPayload]}
    GET  /control/receipts/{id}         {"receipt": ReceiptPayload, with headers and body}
    GET  /control/logs/{agent}          LogsPayload
    GET  /control/stats                 StatsPayload
    GET  /control/runs/{id}             RunDetailPayload (a run of the history, going or ended)
    GET  /control/history/{agent}       HistoryPayload (one page, by status and trigger)
    GET  /control/agents/{agent}        AgentPayload (state, configuration, figures, receipts)
    POST /control/trigger/{agent}       DispatchPayload
    POST /control/kill/{target}         KilledPayload
    POST /control/pause[/{agent}]       {"paused": <agent or "scheduler">}
    POST /control/resume[/{agent}]      {"resumed": <agent or "scheduler">}
    POST /control/stop                  {"message": "stopping"}
    POST /webhooks/{source}             DeliveryPayload (DuplicatePayload for a repeat)
    POST /control/receipts/{id}/replay  DeliveryPayload
    POST /locks/*, GET /locks/list      LockPayload (the helper commands of a run)
    GET  /calls/{id}                    CallPayload

Every 200 answer adds `"ok": true` to these (`gateway.http.ok`); every other one is
`{"ok": false, "error": ..., "hint"?: ...}`. Light to import (no pydantic, FastAPI or
docker-py): the CLI reads its payloads through these types.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NotRequired

# Not typing's: pydantic describes (and validates) only these TypedDicts before Python 3.12.
from typing_extensions import TypedDict

from action_llama.config._base import dump

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from action_llama.gateway.backend import Dispatch
    from action_llama.project import Agent, Project
    from action_llama.runs.store import AgentStats, RunRecord
    from action_llama.state import ActiveRun, Call, Lock, QueueDrop
    from action_llama.webhooks import Receipt


def iso(timestamp: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 in UTC with milliseconds (`...T12:00:00.000Z`)."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- runs ------------------------------------------------------------------------------------


class RunPayload(TypedDict):
    """A run as the history keeps it (`runs.store.RunRecord`)."""

    runId: str
    agent: str
    #: manual, schedule, webhook or agent-call.
    trigger: str
    #: running, completed, rerun, failed, error, timeout, oom or killed.
    status: str
    exitCode: int | None
    error: str | None
    startedAt: str | None
    finishedAt: str | None
    #: Seconds; None while it runs.
    duration: float | None
    inputTokens: int | None
    outputTokens: int | None
    cost: float | None
    preHooksSeconds: float | None
    postHooksSeconds: float | None


def run(record: RunRecord) -> RunPayload:
    return {
        "runId": record.run_id,
        "agent": record.agent,
        "trigger": record.trigger,
        "status": record.status,
        "exitCode": record.exit_code,
        "error": record.error,
        "startedAt": iso(record.started_at),
        "finishedAt": iso(record.finished_at),
        "duration": record.duration,
        "inputTokens": record.input_tokens,
        "outputTokens": record.output_tokens,
        "cost": record.cost,
        "preHooksSeconds": record.pre_hooks_seconds,
        "postHooksSeconds": record.post_hooks_seconds,
    }


class RunDetailPayload(RunPayload):
    """A run with what it was asked and what it answered (the run page's)."""

    #: The prompt of a manual run.
    prompt: str | None
    #: What its trigger told it: a webhook's event, a caller's request.
    context: Any
    returnValue: str | None
    cacheReadTokens: int | None
    cacheWriteTokens: int | None
    turns: int | None


def run_detail(record: RunRecord) -> RunDetailPayload:
    return {
        **run(record),
        "prompt": record.prompt,
        "context": None if record.context is None else json.loads(record.context),
        "returnValue": record.return_value,
        "cacheReadTokens": record.cache_read_tokens,
        "cacheWriteTokens": record.cache_write_tokens,
        "turns": record.turns,
    }


class HistoryPayload(TypedDict):
    """`GET /control/history/{agent}?status=&trigger=&offset=&limit=`: one page of an agent's
    runs, most recent first, and how many match in all."""

    runs: list[RunPayload]
    total: int


class ActiveRunPayload(TypedDict):
    """A run the scheduler started and has not seen end (`state.ActiveRun`)."""

    runId: str
    agent: str
    runtime: str
    startedAt: str | None
    #: {"type": <what started it>}.
    trigger: Any
    #: How deep in a chain of agent calls (0: not called by an agent).
    depth: int
    callId: str | None


def active_run(run: ActiveRun) -> ActiveRunPayload:
    return {
        "runId": run.run_id,
        "agent": run.agent,
        "runtime": run.runtime,
        "startedAt": iso(run.started_at),
        # Its type only: the row also keeps the whole trigger (webhook context and all).
        "trigger": {"type": run.trigger.get("type")} if isinstance(run.trigger, dict) else None,
        "depth": run.depth,
        "callId": run.call_id,
    }


class LogsPayload(TypedDict):
    """`GET /control/logs/{agent}`: the run and its last log records."""

    run: RunPayload
    records: list[dict[str, Any]]


class AgentStatsPayload(TypedDict):
    runs: int
    byStatus: dict[str, int]
    tokens: int
    cost: float
    #: Seconds, over the runs that ended; None when none did.
    meanDuration: float | None
    medianDuration: float | None
    p90Duration: float | None


def agent_stats(stats: AgentStats) -> AgentStatsPayload:
    return {
        "runs": stats.runs,
        "byStatus": stats.by_status,
        "tokens": stats.tokens,
        "cost": stats.cost,
        "meanDuration": stats.mean_duration,
        "medianDuration": stats.median_duration,
        "p90Duration": stats.p90_duration,
    }


class StatsPayload(TypedDict):
    """`GET /control/stats?hours=`: per agent, the runs that started since `since`."""

    since: str | None
    hours: float
    agents: dict[str, AgentStatsPayload]


# -- the scheduler ---------------------------------------------------------------------------


class AgentStatePayload(TypedDict):
    #: idle, running or paused.
    state: str
    #: Paused by itself (`al pause AGENT`), not only with the whole scheduler.
    paused: bool
    #: How many runs of it may run at once (0: disabled).
    scale: int
    #: Ids of its running runs.
    running: list[str]
    #: When its schedule fires next; None without a schedule.
    nextFire: str | None


def agent_state(
    state: str,
    scale: int,
    running: Iterable[str],
    next_fire: float | None,
    *,
    paused: bool = False,
) -> AgentStatePayload:
    return {
        "state": state,
        "paused": paused,
        "scale": scale,
        "running": list(running),
        "nextFire": iso(next_fire),
    }


class SchedulerPayload(TypedDict):
    paused: bool
    stopping: bool
    agents: dict[str, AgentStatePayload]


class DropPayload(TypedDict):
    """Work a full queue dropped (`state.QueueDrop`)."""

    agent: str
    type: str
    summary: str
    receivedAt: str | None
    droppedAt: str | None
    reason: str


def drop(drop: QueueDrop) -> DropPayload:
    return {
        "agent": drop.agent,
        "type": drop.type,
        "summary": drop.summary,
        "receivedAt": iso(drop.received_at),
        "droppedAt": iso(drop.dropped_at),
        "reason": drop.reason,
    }


class LockPayload(TypedDict):
    """A resource lock (`state.Lock`)."""

    resourceKey: str
    #: The run id holding it.
    holder: str
    heldSince: str | None
    expiresAt: str | None


def lock(lock: Lock) -> LockPayload:
    return {
        "resourceKey": lock.key,
        "holder": lock.holder,
        "heldSince": iso(lock.held_since),
        "expiresAt": iso(lock.expires_at),
    }


class HeldLockPayload(LockPayload):
    #: The holder's agent; None when the holder is no longer running.
    agent: str | None


def held_lock(held: Lock, agents: Mapping[str, str]) -> HeldLockPayload:
    """`held` with the agent of its holder, from `agents` (run id -> agent)."""
    return {**lock(held), "agent": agents.get(held.holder)}


class StatusPayload(TypedDict):
    """`GET /control/status`: what `al stat` shows."""

    scheduler: SchedulerPayload
    runs: list[ActiveRunPayload]
    #: Agent -> how many items wait in its queue (agents with none are left out).
    queues: dict[str, int]
    locks: list[HeldLockPayload]
    #: The latest drops, newest first.
    drops: list[DropPayload]
    #: Agent -> its latest run (agents that never ran are left out).
    lastRuns: dict[str, RunPayload]


class DispatchPayload(TypedDict):
    """What the scheduler did with one piece of work for one agent (`gateway.Dispatch`)."""

    agent: str
    #: started, queued or refused.
    outcome: str
    runId: NotRequired[str]
    reason: NotRequired[str]


def dispatch(done: Dispatch) -> DispatchPayload:
    payload: DispatchPayload = {"agent": done.agent, "outcome": done.outcome}
    if done.run_id is not None:
        payload["runId"] = done.run_id
    if done.reason is not None:
        payload["reason"] = done.reason
    return payload


class KilledPayload(TypedDict):
    """`POST /control/kill/{target}`: the ids of the runs being stopped (none for an idle
    agent)."""

    killed: list[str]


# -- agent calls -----------------------------------------------------------------------------


class CallPayload(TypedDict):
    """An agent call (`state.Call`), as `al-subagent-wait` reads it."""

    callId: str
    #: pending, running, completed or error.
    status: str
    targetAgent: str
    depth: int
    targetRun: NotRequired[str]
    returnValue: NotRequired[str]
    errorMessage: NotRequired[str]


def call(made: Call) -> CallPayload:
    payload: CallPayload = {
        "callId": made.call_id,
        "status": made.status,
        "targetAgent": made.target_agent,
        "depth": made.depth,
    }
    if made.target_run is not None:
        payload["targetRun"] = made.target_run
    if made.return_value is not None:
        payload["returnValue"] = made.return_value
    if made.error is not None:
        payload["errorMessage"] = made.error
    return payload


class ActiveCallPayload(CallPayload):
    callerRun: str


def active_call(made: Call) -> ActiveCallPayload:
    return {**call(made), "callerRun": made.caller_run}


# -- webhooks --------------------------------------------------------------------------------


class ReceiptPayload(TypedDict):
    """A webhook delivery and what came of it (`webhooks.Receipt`)."""

    id: str
    source: str
    event: str
    receivedAt: str | None
    #: processed, dead-letter or duplicate.
    status: str
    #: Why nothing (more) ran, in one word (`webhooks.ReceiptReason`); None when all went well.
    reason: str | None
    #: The same for people: what matched, or why nothing did.
    detail: str
    matchedAgents: list[str]
    deliveryId: str | None
    #: Its whole body was kept, so an operator can replay it.
    replayable: bool
    #: With `full` only:
    headers: NotRequired[dict[str, str]]
    body: NotRequired[str]
    bodyTruncated: NotRequired[bool]


def receipt(stored: Receipt, *, full: bool = False) -> ReceiptPayload:
    payload: ReceiptPayload = {
        "id": stored.id,
        "source": stored.source,
        "event": stored.event_summary,
        "receivedAt": iso(stored.received_at),
        "status": stored.status,
        "reason": stored.reason,
        "detail": stored.detail,
        "matchedAgents": list(stored.matched_agents),
        "deliveryId": stored.delivery_id,
        "replayable": bool(stored.body) and not stored.body_truncated,
    }
    if full:
        payload["headers"] = dict(stored.headers)
        payload["body"] = stored.body.decode("utf-8", errors="replace")
        payload["bodyTruncated"] = stored.body_truncated
    return payload


class DeliveryPayload(TypedDict):
    """The answer to a webhook delivery (or an operator's replay of one)."""

    receiptId: str
    #: processed or dead-letter.
    status: str
    event: str
    #: How many agents matched; how many will not run it (they listen to the source but did
    #: not match, or matched and refused it: paused, disabled, scale 0).
    matched: int
    skipped: int
    dispatched: list[DispatchPayload]
    #: One line for people: what matched, or why nothing did.
    detail: str
    #: Why nothing runs: no_match, ignored, ... (left out when something matched).
    reason: NotRequired[str]
    #: Accepted without a signature (the source sets allowUnsigned).
    unsigned: NotRequired[bool]
    #: The receipt this one replays.
    replayOf: NotRequired[str]


def delivery(done: Receipt, status: str, dispatched: Iterable[Dispatch]) -> DeliveryPayload:
    dispatched = list(dispatched)
    payload: DeliveryPayload = {
        "receiptId": done.id,
        "status": status,
        "event": done.event_summary,
        "matched": len(done.matched_agents),
        "skipped": len(done.unmatched) + sum(not d.accepted for d in dispatched),
        "dispatched": [dispatch(d) for d in dispatched],
        "detail": done.detail,
    }
    if done.reason is not None:
        payload["reason"] = done.reason
    if done.unsigned:
        payload["unsigned"] = True
    if done.replay_of is not None:
        payload["replayOf"] = done.replay_of
    return payload


class DuplicatePayload(TypedDict):
    """The answer to a delivery whose id was received before: nothing runs."""

    duplicate: bool
    duplicateOf: str
    receiptId: str
    matched: int


def duplicate(receipt_id: str, original_id: str) -> DuplicatePayload:
    return {"duplicate": True, "duplicateOf": original_id, "receiptId": receipt_id, "matched": 0}


# -- one agent -------------------------------------------------------------------------------


class WebhookBindingPayload(TypedDict):
    source: str
    #: The entry's filters (events, actions, repos, ...) that are set.
    filters: dict[str, Any]


class AgentConfigPayload(TypedDict):
    """An agent's effective configuration, as loaded (credentials by name only)."""

    description: str | None
    #: The models, first primary: {name, provider, model}.
    models: list[dict[str, str]]
    #: Credential refs its runs get (`type` or `type:instance`); optional ones apart.
    credentials: list[str]
    optionalCredentials: list[str]
    schedule: str | None
    webhooks: list[WebhookBindingPayload]
    scale: int
    #: Seconds.
    timeout: int
    queueSize: int
    maxReruns: int
    runtime: str
    #: host-user runs: the OS user they run as.
    runAs: str | None
    #: container runs: their limits.
    memory: str | None
    cpus: float | None
    hooks: dict[str, list[str]]
    #: The names of its params (their values stay in its config.toml).
    params: list[str]
    #: Runs test-script.sh instead of a model session.
    script: bool
    network: NetworkPayload


class NetworkPayload(TypedDict):
    """What an agent's runs may reach: `mode`, and under allowlist each destination
    (`host:ports`) with where it comes from."""

    mode: str
    allowed: list[dict[str, str]]
    #: The file whose `[network]` sets it.
    file: str


def agent_config(agent: Agent, project: Project) -> AgentConfigPayload:
    from action_llama.credentials.staging import refs_for
    from action_llama.egress.policy import effective_policy

    config = agent.config
    policy = effective_policy(agent)
    required, optional = refs_for(
        config.credentials, [(m.provider, m.auth_type) for _, m in agent.models]
    )
    container = config.runtime.type == "container"
    local = project.config.local
    return {
        "description": agent.skill.frontmatter.description,
        "models": [
            {"name": name, "provider": model.provider, "model": model.model}
            for name, model in agent.models
        ],
        "credentials": [str(ref) for ref in required],
        "optionalCredentials": [str(ref) for ref in optional],
        "schedule": config.schedule,
        "webhooks": [
            {
                "source": hook.source,
                "filters": {
                    key: value
                    for key, value in dump(hook).items()
                    if key != "source" and value is not None
                },
            }
            for hook in config.webhooks
        ],
        "scale": agent.scale,
        "timeout": agent.timeout,
        "queueSize": agent.queue_size,
        "maxReruns": project.config.max_reruns,
        "runtime": config.runtime.type,
        "runAs": None if container else config.runtime.run_as,
        "memory": local.memory if container else None,
        "cpus": local.cpus if container else None,
        "hooks": {"pre": list(config.hooks.pre), "post": list(config.hooks.post)},
        "params": sorted(config.params),
        "script": agent.script is not None,
        "network": {
            "mode": policy.mode,
            "allowed": [{"to": r.describe(), "from": r.source} for r in policy.rules],
            "file": policy.file,
        },
    }


class FiguresPayload(TypedDict):
    """An agent's runs over the last `hours`: the figures, and how many started per bucket."""

    hours: float
    since: str | None
    stats: AgentStatsPayload
    #: Seconds each entry of `started` covers, oldest first.
    bucketSeconds: float
    #: Per bucket: runs started, by status.
    started: list[dict[str, int]]


def figures(
    hours: float,
    since: float,
    stats: AgentStats | None,
    started: Mapping[int, dict[str, int]],
    bucket_seconds: float,
) -> FiguresPayload:
    buckets = round(hours * 3600 / bucket_seconds)
    none: AgentStatsPayload = {
        "runs": 0,
        "byStatus": {},
        "tokens": 0,
        "cost": 0.0,
        "meanDuration": None,
        "medianDuration": None,
        "p90Duration": None,
    }
    return {
        "hours": hours,
        "since": iso(since),
        "stats": agent_stats(stats) if stats is not None else none,
        "bucketSeconds": bucket_seconds,
        "started": [dict(started.get(n, {})) for n in range(buckets)],
    }


class AgentPayload(TypedDict):
    """`GET /control/agents/{agent}`: one agent, for its page."""

    name: str
    #: What the scheduler says of it; None for an agent gone from the project (its history
    #: is kept).
    state: AgentStatePayload | None
    queued: int
    config: AgentConfigPayload | None
    #: Over 24 hours and over 7 days.
    figures: list[FiguresPayload]
    #: The latest webhook receipts that matched it.
    receipts: list[ReceiptPayload]
