"""`al logs <agent>`: stored logs of past runs (they outlive the containers)."""

from __future__ import annotations

import sys
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from action_llama.cli.common import ProjectOption, project_at
from action_llama.cli.follow import follow
from action_llama.cli.render import record_printer
from action_llama.errors import RunNotFound

if TYPE_CHECKING:
    # Imported when used (sqlite3 and all): every command's start-up imports this module.
    from action_llama.runs.store import RunRecord, RunStore

FOLLOW_POLL = 0.1
#: -n beyond this shows as much as this (no log or history is that long).
MAX_LINES = 10_000_000


def _header(run: RunRecord) -> str:
    started = datetime.fromtimestamp(run.started_at).strftime("%Y-%m-%d %H:%M:%S")
    took = f", {run.duration:.1f}s" if run.duration is not None else ""
    code = f" exit {run.exit_code}" if run.exit_code is not None else ""
    usage = ""
    if run.tokens is not None:
        usage = f" · {run.tokens:,} tokens"
        if run.cost:
            usage += f" (${run.cost:.4f})"
    hooks = " · ".join(
        f"{phase} hooks {seconds:.1f}s"
        for phase, seconds in (("pre", run.pre_hooks_seconds), ("post", run.post_hooks_seconds))
        if seconds is not None
    )
    usage += f" · {hooks}" if hooks else ""
    return f"── run {run.run_id} · {run.trigger} · {run.status}{code} · {started}{took}{usage}"


def logs(
    agent_name: str = typer.Argument(..., metavar="AGENT", help="Agent whose logs to show."),
    project_dir: Path = ProjectOption,
    lines: int = typer.Option(50, "-n", "--lines", min=0, help="Show the last N lines."),
    follow_run: bool | None = typer.Option(
        None,
        "--follow/--no-follow",
        "-f",
        help="Follow the agent's running run (the newest, when several run) until it ends. "
        "Default: follow when the latest run is still running and the output is a terminal.",
        show_default=False,
    ),
    run_id: str | None = typer.Option(None, "--run", help="A run id (default: the latest run)."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored records as JSON lines."),
    list_runs: bool = typer.Option(False, "--runs", help="List the agent's recent runs."),
    egress: bool = typer.Option(
        False, "--egress", help="The run's connection attempts: allowed, denied, bytes."
    ),
) -> None:
    """Show the log of an agent's latest run (or of --run ID), live while it runs."""
    from action_llama.project import get_agent
    from action_llama.runs.store import RunStore

    project = project_at(project_dir)
    agent = get_agent(project, agent_name)
    # More than the log holds is all of it (and SQLite's LIMIT takes 64-bit numbers only).
    lines = min(lines, MAX_LINES)
    store = RunStore(project.state_dir)
    try:
        if list_runs:
            for record in store.runs(agent.name, limit=lines):
                typer.echo(_header(record).removeprefix("── "))
            return
        if run_id is not None:
            run = store.get(run_id)
            if run.agent != agent.name:
                raise RunNotFound(
                    f'Run "{run_id}" belongs to agent {run.agent}, not {agent.name}.',
                    hint=f"al logs {run.agent} --run {run_id}",
                )
        else:
            latest = store.latest(agent.name)
            if latest is None:
                typer.echo(f'No runs of "{agent.name}" yet. Start one with: al run {agent.name}')
                return
            run = latest
            if follow_run and run.status != "running":
                # -f is for a live view: an older run still going (scale > 1) beats a done one.
                running = [r for r in store.runs(agent.name, limit=50) if r.status == "running"]
                run = running[0] if running else run
        if egress:
            from action_llama.cli.egress import show_egress

            if not as_json:
                typer.echo(_header(run))
            show_egress(project.root, run.run_id, lines, as_json)
            return
        if follow_run is None:
            follow_run = sys.stdout.isatty()
        _show(store, run, lines, follow_run, as_json)
    finally:
        store.close()


def _show(store: RunStore, run: RunRecord, lines: int, live: bool, as_json: bool) -> None:
    from action_llama.runs.store import LogTail

    emit = record_printer(as_json)

    if not as_json:
        typer.echo(_header(run))
    tail = LogTail(run.log_path)
    try:
        for record in deque(tail.read(), maxlen=lines or None):
            emit(record)
        sys.stdout.flush()
        if live and run.status == "running":
            follow(tail, lambda: store.get(run.run_id).status == "running", emit, FOLLOW_POLL)
            if not as_json:
                typer.echo(_header(store.get(run.run_id)))
    finally:
        tail.close()
