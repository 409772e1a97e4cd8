"""`al run <agent>`: run the agent once and stream its log: in the project's scheduler when
one runs (`al start`), else here (building what the image chain needs first)."""

from __future__ import annotations

from pathlib import Path

import typer

from action_llama.cli.common import ProjectOption


def run(
    agent_name: str = typer.Argument(..., metavar="AGENT", help="Agent to run."),
    project_dir: Path = ProjectOption,
    prompt: str | None = typer.Option(None, "--prompt", help="A specific task for this run."),
    as_json: bool = typer.Option(False, "--json", help="Print log records as JSON lines."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary lines."),
    local: bool = typer.Option(
        False, "--local", help="Run in this process even when a scheduler runs for the project."
    ),
) -> None:
    """Run an agent once (in a container, or as its host user) and exit with its exit code.

    When a scheduler (al start) runs for the project, the run happens there: its log streams
    here and Ctrl-C stops it. If all the agent's runners are busy, the run is queued and al run
    exits 0 at once (follow it with al logs AGENT -f). --local runs it here instead.
    """
    if not local:
        # Before anything loads the project: the scheduler has it loaded and its images built.
        from action_llama.daemon.client import find_daemon

        daemon = find_daemon(project_dir)
        if daemon is not None:
            from action_llama.cli.follow import in_daemon

            raise typer.Exit(in_daemon(daemon, agent_name, prompt, as_json, quiet))
    from action_llama.cli.local import run_here

    raise typer.Exit(run_here(project_dir, agent_name, prompt, as_json, quiet))
