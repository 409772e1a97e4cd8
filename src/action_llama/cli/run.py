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

    from action_llama.project import get_agent
    from action_llama.runs.service import RunService
    from action_llama.runs.store import RunStore
    from action_llama.runtimes.registry import get_runtime, runtime_name

    project = project_at(project_dir)
    agent = get_agent(project, agent_name)
    store = RunStore(project.state_dir)
    service = RunService(project, get_runtime(runtime_name(agent)), store)
    try:
        service.preflight(agent, prompt=prompt)
    except ActionLlamaError:
        store.close()
        raise
    image = None
    if service.runtime.needs_image:
        from action_llama.engine import connect
        from action_llama.images.build import ChainBuilder

        events = QuietEvents() if quiet else ConsoleEvents()
        chain = ChainBuilder(connect(), project, events).ensure([agent.name])
        image = chain.image_for(agent.name)
    for warning in service.runtime.warnings(project, agent):
        status(f"warning: {warning}")
    show = record_printer(as_json)

    async def supervised() -> RunOutcome:
        # SIGTERM (systemd, kill) stops the run like Ctrl-C does: the container is stopped,
        # the run recorded as killed, its staging removed.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await service.run(agent, image=image, prompt=prompt, on_line=show)

    try:
        outcome = asyncio.run(supervised())
        usage = usage_text(store.get(outcome.run_id))
    except (KeyboardInterrupt, asyncio.CancelledError):
        status(f"{agent.name}: stopped; the run is recorded as killed (al logs {agent.name})")
        raise typer.Exit(130) from None
    finally:
        store.close()
    _report(outcome, usage, quiet)
    raise typer.Exit(outcome.result.exit_code)


def _report(outcome: RunOutcome, usage: str, quiet: bool) -> None:
    if outcome.error:
        print_error(ActionLlamaError(f"{outcome.error} (run {outcome.run_id})", hint=outcome.hint))
    elif not quiet:
        status(
            f"{outcome.agent}: {outcome.result.status} in {outcome.duration:.1f}s{usage} "
            f"(run {outcome.run_id})"
        )
