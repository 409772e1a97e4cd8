"""Options and helpers several commands share."""

from __future__ import annotations

from pathlib import Path

import typer

from action_llama.project import Project, load_project

ProjectOption = typer.Option(
    Path("."),
    "-p",
    "--project",
    help="Project folder (default: the current one).",
    show_default=False,
)


def project_at(path: Path) -> Project:
    return load_project(path)
