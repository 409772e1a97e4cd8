"""`al new <dir>`."""

from __future__ import annotations

from pathlib import Path

import typer

from action_llama.cli.render import status


def new(directory: Path = typer.Argument(..., help="Folder to create the project in.")) -> None:
    """Create a project: config.toml with every default, a Dockerfile, and a hello agent."""
    from action_llama.project.scaffold import create_project

    created = create_project(directory)
    for path in created:
        status(f"  created {path}")
    status(f"\nNext: al run hello -p {directory}")
