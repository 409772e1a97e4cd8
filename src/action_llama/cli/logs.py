"""`al logs <agent>`: stored logs of past runs (they outlive the containers)."""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from action_llama.cli.common import ProjectOption, project_at
from action_llama.cli.render import record_printer
from action_llama.errors import RunNotFound
from action_llama.runs.store import RunRecord, RunStore, read_log

FOLLOW_POLL = 0.25


def _header(run: RunRecord) -> str:
    started = datetime.fromtimestamp(run.started_at).strftime("%Y-%m-%d %H:%M:%S")
    took = f", {run.duration:.1f}s" if run.duration is not None else ""
    code = f" exit {run.exit_code}" if run.exit_code is not None else ""
    usage = ""
    if run.input_tokens is not None or run.output_tokens is not None:
        tokens = (run.input_tokens or 0) + (run.output_tokens or 0)
        usage = f" · {tokens:,} tokens"
        if run.cost:
            usage += f" (${run.cost:.4f})"
    return f"── run {run.run_id} · {run.trigger} · {run.status}{code} · {started}{took}{usage}"


def logs(
    agent_name: str = typer.Argument(..., metavar="AGENT", help="Agent whose logs to show."),
    project_dir: Path = ProjectOption,
    lines: int = typer.Option(50, "-n", "--lines", help="Show the last N lines."),
    follow: bool = typer.Option(
        False, "-f", "--follow", help="Keep printing while the run goes on."
    ),
    run_id: str | None = typer.Option(None, "--run", help="A run id (default: the latest run)."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored records as JSON lines."),
    list_runs: bool = typer.Option(False, "--runs", help="List the agent's recent runs."),
) -> None:
    """Show the log of an agent's latest run (or of --run ID)."""
    from action_llama.project import get_agent

    project = project_at(project_dir)
    agent = get_agent(project, agent_name)
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
            recent = store.runs(agent.name, limit=1)
            if not recent:
                typer.echo(f'No runs of "{agent.name}" yet. Start one with: al run {agent.name}')
                return
            run = recent[0]
        _show(store, run, lines, follow, as_json)
    finally:
        store.close()


def _show(store: RunStore, run: RunRecord, lines: int, follow: bool, as_json: bool) -> None:
    emit = record_printer(as_json)

    if not as_json:
        typer.echo(_header(run))
    tail: deque[dict[str, Any]] = deque(read_log(run.log_path), maxlen=max(lines, 0) or None)
    for record in tail:
        emit(record)
    sys.stdout.flush()
    if not follow or run.status != "running":
        return
    with run.log_path.open(encoding="utf-8") as fh:
        fh.seek(0, 2)
        while True:
            line = fh.readline()
            if line:
                if line.endswith("\n"):
                    emit(json.loads(line))
                    sys.stdout.flush()
                else:
                    fh.seek(fh.tell() - len(line))
                    time.sleep(FOLLOW_POLL)
                continue
            if store.get(run.run_id).status != "running":
                break
            time.sleep(FOLLOW_POLL)
