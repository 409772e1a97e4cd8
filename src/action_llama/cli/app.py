"""`al`, the console entry point: user-fixable errors become `error:`/`hint:` and an exit code."""

from __future__ import annotations

import os
import sys

import typer

from action_llama import __version__
from action_llama.cli import (
    creds,
    dashboard,
    doctor,
    image,
    install,
    logs,
    new,
    operator,
    run,
    start,
)
from action_llama.cli.render import reported

app = typer.Typer(
    name="al",
    help="Run agents written as SKILL.md folders in isolated containers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("new")(new.new)
app.command("run")(run.run)
app.command("logs")(logs.logs)
app.command("doctor")(doctor.doctor)
app.command("add")(install.add)
app.command("update")(install.update)
app.command("start")(start.start)
app.command("stat")(operator.stat)
app.command("pause")(operator.pause)
app.command("resume")(operator.resume)
app.command("kill")(operator.kill)
app.command("stop")(operator.stop)
app.command("dashboard")(dashboard.dashboard)
app.add_typer(image.app, name="image")
app.add_typer(creds.app, name="creds")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"al {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    if debug:
        os.environ["AL_DEBUG"] = "1"


def main() -> None:
    # Standalone: typer itself reports usage errors and exits.
    code = reported(app)
    if code is not None:
        sys.exit(code)
