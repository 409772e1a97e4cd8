"""`al start`: the scheduler daemon in the foreground."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from action_llama.cli.common import ProjectOption, project_at


def start(
    project_dir: Path = ProjectOption,
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="Gateway port (default [gateway].port)."
    ),
    expose: bool = typer.Option(False, "--expose", help="Listen on every interface."),
    headless: bool = typer.Option(
        False,
        "--headless",
        "-H",
        help="Log plain timestamped lines (for servers and systemd) instead of the live view. "
        "Implied when stdout is not a terminal.",
    ),
) -> None:
    """Check the project, build its images, then run the scheduler (cron, webhooks, calls) and
    its gateway until Ctrl-C or SIGTERM, picking up edits to the project as they are made."""
    import asyncio

    from action_llama.daemon.main import Daemon

    project = project_at(project_dir)
    live = not headless and sys.stdout.isatty()
    asyncio.run(Daemon(project, port=port, expose=expose, live=live).serve())
