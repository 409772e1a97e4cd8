"""`al run <agent>`: run the agent once and stream its log: in the project's scheduler when
one runs (`al start`), else here (building what the image chain needs first)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from action_llama.cli.common import ProjectOption, project_at
from action_llama.cli.follow import usage_text
from action_llama.cli.render import (
    ConsoleEvents,
    QuietEvents,
    print_error,
    record_printer,
    status,
)
from action_llama.errors import ActionLlamaError

if TYPE_CHECKING:
    from action_llama.runs.service import RunOutcome
    from action_llama.runs.store import RunRecord


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
    import asyncio

    from action_llama.runs.local import LocalRun

    prepared = LocalRun.prepare(
        project_at(project_dir),
        agent_name,
        prompt=prompt,
        events=QuietEvents() if quiet else ConsoleEvents(),
        warn=lambda text: status(f"warning: {text}"),
    )

    async def supervised() -> tuple[RunOutcome, RunRecord]:
        # SIGTERM (systemd, kill) stops the run like Ctrl-C does: the container is stopped,
        # the run recorded as killed, its staging removed.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await prepared.run(on_line=record_printer(as_json))

    try:
        outcome, record = asyncio.run(supervised())
    except (KeyboardInterrupt, asyncio.CancelledError):
        status(f"{agent_name}: stopped; the run is recorded as killed (al logs {agent_name})")
        raise typer.Exit(130) from None
    _report(outcome, usage_text(record), quiet)
    raise typer.Exit(outcome.result.exit_code)


def _report(outcome: RunOutcome, usage: str, quiet: bool) -> None:
    if outcome.error:
        print_error(ActionLlamaError(f"{outcome.error} (run {outcome.run_id})", hint=outcome.hint))
    elif not quiet:
        status(
            f"{outcome.agent}: {outcome.result.status} in {outcome.duration:.1f}s{usage} "
            f"(run {outcome.run_id})"
        )
