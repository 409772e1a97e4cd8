"""Operator commands against the scheduler running for a project: `al stat`, `al kill`,
`al pause`, `al resume`, `al stop`.

Each finds the daemon through `.al/daemon.json` (`action_llama.daemon.client`) and fails with
DaemonUnavailable, naming `al start -p DIR`, when none runs.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from action_llama.cli.common import ProjectOption
from action_llama.cli.render import status
from action_llama.errors import DaemonUnavailable

if TYPE_CHECKING:
    from action_llama.daemon.client import Daemon
    from action_llama.runs.store import RunRecord

STOP_TIMEOUT = 120.0

AgentArgument = typer.Argument(
    None, metavar="[AGENT]", help="One agent (default: the whole scheduler).", show_default=False
)


def _daemon(project_dir: Path) -> Daemon:
    from action_llama.daemon.client import require_daemon

    return require_daemon(project_dir)


def stat(
    project_dir: Path = ProjectOption,
    as_json: bool = typer.Option(False, "--json", help="Print the scheduler's view as JSON."),
) -> None:
    """Show the running scheduler: agents, runs, queues, next cron fire, last result, locks."""
    daemon = _daemon(project_dir)
    view = daemon.get("/status")
    last = _last_runs(daemon, list(view.get("scheduler", {}).get("agents", {})))
    if as_json:
        view["lastRuns"] = {name: _run_json(run) for name, run in last.items()}
        typer.echo(json.dumps(view, indent=2))
        return
    typer.echo(_render(daemon, view, last))


def _last_runs(daemon: Daemon, agents: list[str]) -> dict[str, RunRecord]:
    from action_llama.runs.store import RunStore

    store = RunStore.existing(daemon.state_dir)
    try:
        return {name: run for name in agents if (run := store.latest(name)) is not None}
    finally:
        store.close()


def _iso(timestamp: float | None) -> str | None:
    """As the gateway writes times: ISO 8601 in UTC with milliseconds."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "runId": run.run_id,
        "trigger": run.trigger,
        "status": run.status,
        "exitCode": run.exit_code,
        "startedAt": _iso(run.started_at),
        "finishedAt": _iso(run.finished_at),
    }


def _ago(seconds: float) -> str:
    seconds = max(seconds, 0)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 129600:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def _next_fire(text: str | None) -> str:
    if not text:
        return "-"
    when = datetime.fromisoformat(text)
    return f"in {_ago(when.timestamp() - time.time())} ({when.astimezone():%H:%M:%S})"


def _last(run: RunRecord | None) -> str:
    if run is None:
        return "-"
    code = f" {run.exit_code}" if run.exit_code is not None and run.status != "completed" else ""
    return f"{run.status}{code} {_ago(time.time() - (run.finished_at or run.started_at))} ago"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _render(daemon: Daemon, view: dict[str, Any], last: dict[str, RunRecord]) -> str:
    scheduler = view.get("scheduler", {})
    mode = "stopping" if scheduler.get("stopping") else "paused" if scheduler.get("paused") else ""
    lines = [f"scheduler for {daemon.root} (pid {daemon.pid}, port {daemon.port}) {mode}".rstrip()]
    queues = view.get("queues", {})
    rows = [["AGENT", "STATE", "SCALE", "RUNNING", "QUEUED", "NEXT FIRE", "LAST RUN"]]
    for name, agent in scheduler.get("agents", {}).items():
        running = agent.get("running", [])
        rows.append(
            [
                name,
                str(agent.get("state", "?")),
                str(agent.get("scale", "?")),
                ", ".join(running) if running else "-",
                str(queues.get(name, 0)),
                _next_fire(agent.get("nextFire")),
                _last(last.get(name)),
            ]
        )
    lines += ["", _table(rows)] if len(rows) > 1 else ["", "no agents"]
    locks = view.get("locks", [])
    if locks:
        rows = [["LOCK", "HELD BY", "AGENT", "EXPIRES"]]
        for lock in locks:
            expires = lock.get("expiresAt")
            left = datetime.fromisoformat(expires).timestamp() - time.time() if expires else None
            rows.append(
                [
                    str(lock.get("resourceKey")),
                    str(lock.get("holder")),
                    str(lock.get("agent") or "-"),
                    f"in {_ago(left)}" if left is not None else "-",
                ]
            )
        lines += ["", _table(rows)]
    drops = view.get("drops", [])
    if drops:
        rows = [["DROPPED", "AGENT", "WORK", "WHY"]]
        for drop in drops:
            when = datetime.fromisoformat(drop["droppedAt"]).timestamp()
            rows.append(
                [
                    f"{_ago(time.time() - when)} ago",
                    str(drop.get("agent")),
                    str(drop.get("summary") or drop.get("type")),
                    str(drop.get("reason")),
                ]
            )
        lines += ["", _table(rows)]
    return "\n".join(lines)


def kill(
    target: str = typer.Argument(..., metavar="AGENT|RUN", help="An agent, or one run id."),
    project_dir: Path = ProjectOption,
) -> None:
    """Stop one run, or every running run of an agent."""
    from urllib.parse import quote

    killed = _daemon(project_dir).post(f"/kill/{quote(target, safe='')}").get("killed", [])
    if killed:
        typer.echo(f"stopping {', '.join(killed)} (recorded as killed)")
    else:
        typer.echo(f"nothing of {target} is running")


def _agent_path(agent: str | None) -> str:
    from urllib.parse import quote

    return f"/{quote(agent, safe='')}" if agent else ""


def pause(agent: str | None = AgentArgument, project_dir: Path = ProjectOption) -> None:
    """Pause the scheduler (or one agent): no new runs from any trigger; running ones go on."""
    _daemon(project_dir).post(f"/pause{_agent_path(agent)}")
    typer.echo(f"paused {agent or 'the scheduler'}")


def resume(agent: str | None = AgentArgument, project_dir: Path = ProjectOption) -> None:
    """Resume the scheduler (or one agent) after al pause; queued work starts."""
    _daemon(project_dir).post(f"/resume{_agent_path(agent)}")
    typer.echo(f"resumed {agent or 'the scheduler'}")


def stop(
    project_dir: Path = ProjectOption,
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="Wait until the scheduler has exited."
    ),
    timeout: float = typer.Option(
        STOP_TIMEOUT, "--timeout", help="Seconds to wait for it (running runs get time to end)."
    ),
) -> None:
    """Stop the scheduler gracefully: no new runs; running ones are given time to end."""
    daemon = _daemon(project_dir)
    daemon.post("/stop")
    if not wait:
        typer.echo(f"stopping the scheduler (pid {daemon.pid})")
        return
    status(f"stopping the scheduler (pid {daemon.pid}); waiting for running runs to end")
    deadline = time.monotonic() + timeout
    while daemon.alive():
        if time.monotonic() > deadline:
            raise DaemonUnavailable(
                f"The scheduler (pid {daemon.pid}) is still stopping after {timeout:.0f}s.",
                hint="Its runs may still be ending. Wait longer with --timeout, or stop them "
                "now with: al kill <agent>",
            )
        time.sleep(0.1)
    typer.echo("stopped")
