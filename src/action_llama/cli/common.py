"""Options and helpers several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from action_llama.project import Project

ProjectOption = typer.Option(
    Path("."),
    "-p",
    "--project",
    help="Project folder (default: the current one).",
    show_default=False,
)


def project_at(path: Path) -> Project:
    """Load the project at `path` (imported here: pydantic is not needed by every command)."""
    from action_llama.project import load_project

    return load_project(path)
