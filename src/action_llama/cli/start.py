"""`al start`: the scheduler daemon in the foreground."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from action_llama.cli.common import ProjectOption, project_at


def start(
    project_dir: Path = ProjectOption,
    port: int | None = typer.Option(None, "--port", help="Gateway port (default [gateway].port)."),
    expose: bool = typer.Option(False, "--expose", help="Listen on every interface."),
) -> None:
    """Run the scheduler (cron, webhooks, calls) and its gateway until Ctrl-C or SIGTERM."""
    from action_llama.daemon.main import serve

    project = project_at(project_dir)
    asyncio.run(serve(project, port=port, expose=expose))
