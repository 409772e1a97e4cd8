"""`al dashboard`: a one-time login link to the running scheduler's web dashboard."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from action_llama.cli.common import ProjectOption
from action_llama.cli.render import status


def dashboard(
    project_dir: Path = ProjectOption,
    open_browser: bool = typer.Option(
        True, "--open/--no-open", help="Open the link in a browser when there is one."
    ),
) -> None:
    """Print a login link to the dashboard of the scheduler running for the project (usable
    once, within 15 minutes), and open it in a browser when there is one."""
    from action_llama.daemon.client import require_daemon

    daemon = require_daemon(project_dir)
    answer = daemon.post("/dashboard/login-link")
    minutes = round(float(answer.get("expiresIn", 900)) / 60)
    link = f"http://127.0.0.1:{daemon.port}{answer['path']}"
    typer.echo(link)
    status(f"log in to the dashboard with this link (once, within {minutes} minutes)")
    if open_browser and _has_display():
        import webbrowser

        if webbrowser.open(link):
            status("opened it in your browser")


def _has_display() -> bool:
    """Whether a graphical browser can be shown: never on a server's console (a text browser
    would take over the terminal)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
