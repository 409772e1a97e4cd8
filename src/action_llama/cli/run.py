"""`al run <agent>`: build what the chain needs, run the agent once, stream its log."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from action_llama.cli.common import ProjectOption, project_at
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No build progress."),
) -> None:
    """Run an agent once (in a container, or as its host user) and exit with its exit code."""
    from action_llama.project import get_agent
    from action_llama.runs.service import RunService, host_user_warnings
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
    if agent.is_container:
        from action_llama.engine import connect
        from action_llama.images.build import ChainBuilder

        events = QuietEvents() if quiet else ConsoleEvents()
        chain = ChainBuilder(connect(), project, events).ensure([agent.name])
        image = chain.image_for(agent.name)
    else:
        for warning in host_user_warnings(project, agent):
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
        usage = _usage(store.get(outcome.run_id))
    except (KeyboardInterrupt, asyncio.CancelledError):
        status(f"{agent.name}: stopped; the run is recorded as killed (al logs {agent.name})")
        raise typer.Exit(130) from None
    finally:
        store.close()
    _report(outcome, usage, quiet)
    raise typer.Exit(outcome.result.exit_code)


def _usage(run: RunRecord) -> str:
    """`, 1,234 tokens ($0.0021), returned '...'`, or what of it is known."""
    text = ""
    if run.input_tokens is not None or run.output_tokens is not None:
        text += f", {(run.input_tokens or 0) + (run.output_tokens or 0):,} tokens"
        if run.cost:
            text += f" (${run.cost:.4f})"
    if run.return_value:
        text += f", returned {run.return_value[:80]!r}"
    return text


def _report(outcome: RunOutcome, usage: str, quiet: bool) -> None:
    if outcome.error:
        print_error(ActionLlamaError(f"{outcome.error} (run {outcome.run_id})", hint=outcome.hint))
    elif not quiet:
        status(
            f"{outcome.agent}: {outcome.result.status} in {outcome.duration:.1f}s{usage} "
            f"(run {outcome.run_id})"
        )
