"""Operator commands against the scheduler running for a project: `al stat`, `al kill`,
`al pause`, `al resume`, `al stop`.

Each finds the daemon through `.al/daemon.json` (`action_llama.daemon.client`) and fails with
DaemonUnavailable, naming `al start -p DIR`, when none runs.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from action_llama.cli.common import ProjectOption
from action_llama.cli.render import status
from action_llama.errors import DaemonUnavailable
from action_llama.timespan import span

if TYPE_CHECKING:
    from action_llama.daemon.client import Daemon
    from action_llama.payloads import KilledPayload, RunPayload, StatusPayload

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
    # The gateway's payload (`action_llama.payloads.StatusPayload`), printed as it came.
    answer = daemon.get("/status")
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    typer.echo(_render(daemon, cast("StatusPayload", answer)))


def _moment(text: str | None) -> float | None:
    """A payload's ISO 8601 time as seconds since the epoch."""
    return datetime.fromisoformat(text).timestamp() if text else None


def _ago(seconds: float) -> str:
    return span(max(seconds, 0))


def _next_fire(text: str | None) -> str:
    when = _moment(text)
    if when is None:
        return "-"
    local = datetime.fromtimestamp(when).astimezone()
    return f"in {_ago(when - time.time())} ({local:%H:%M:%S})"


def _last(run: RunPayload | None) -> str:
    if run is None:
        return "-"
    status, code = run["status"], run["exitCode"]
    shown = f" {code}" if code is not None and status != "completed" else ""
    ended = _moment(run["finishedAt"] or run["startedAt"]) or time.time()
    return f"{status}{shown} {_ago(time.time() - ended)} ago"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _render(daemon: Daemon, view: StatusPayload) -> str:
    scheduler = view["scheduler"]
    mode = "stopping" if scheduler["stopping"] else "paused" if scheduler["paused"] else ""
    lines = [f"scheduler for {daemon.root} (pid {daemon.pid}, port {daemon.port}) {mode}".rstrip()]
    rows = [["AGENT", "STATE", "SCALE", "RUNNING", "QUEUED", "NEXT FIRE", "LAST RUN"]]
    for name, agent in scheduler["agents"].items():
        running = agent["running"]
        rows.append(
            [
                name,
                agent["state"],
                str(agent["scale"]),
                ", ".join(running) if running else "-",
                str(view["queues"].get(name, 0)),
                _next_fire(agent["nextFire"]),
                _last(view["lastRuns"].get(name)),
            ]
        )
    lines += ["", _table(rows)] if len(rows) > 1 else ["", "no agents"]
    if view["locks"]:
        rows = [["LOCK", "HELD BY", "AGENT", "EXPIRES"]]
        for lock in view["locks"]:
            expires = _moment(lock["expiresAt"])
            rows.append(
                [
                    lock["resourceKey"],
                    lock["holder"],
                    lock["agent"] or "-",
                    f"in {_ago(expires - time.time())}" if expires is not None else "-",
                ]
            )
        lines += ["", _table(rows)]
    if view["drops"]:
        rows = [["DROPPED", "AGENT", "WORK", "WHY"]]
        for drop in view["drops"]:
            when = _moment(drop["droppedAt"]) or time.time()
            rows.append(
                [
                    f"{_ago(time.time() - when)} ago",
                    drop["agent"],
                    drop["summary"] or drop["type"],
                    drop["reason"],
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

    answer = _daemon(project_dir).post(f"/kill/{quote(target, safe='')}")
    killed = cast("KilledPayload", answer)["killed"]
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
        STOP_TIMEOUT,
        "--timeout",
        min=0,
        max=7 * 24 * 3600,
        help="Seconds to wait for it (running runs get time to end).",
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
