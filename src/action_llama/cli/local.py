"""`al run AGENT` in this process (no scheduler runs for the project, or `--local`), without
the option parser: `fast_path` takes it before typer loads (a tenth of a second of start-up
that a short run would feel), and the parsed command ends here too."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from action_llama.cli.follow import usage_text
from action_llama.cli.render import print_error, record_printer, status
from action_llama.errors import ActionLlamaError

if TYPE_CHECKING:
    from action_llama.runs.service import RunOutcome
    from action_llama.runs.store import RunRecord


def run_here(
    project_dir: Path,
    agent_name: str,
    prompt: str | None,
    as_json: bool,
    quiet: bool,
    *,
    settled: Callable[[], None] = lambda: None,
) -> int:
    """Run `agent_name` of the project at `project_dir` here, its log streamed; its exit code.

    `settled` is called once everything is loaded, before the run starts (the console script
    turns the garbage collector back on there)."""
    import asyncio

    from action_llama.cli.render import ConsoleEvents, QuietEvents
    from action_llama.project import load_project
    from action_llama.runs.local import LocalRun

    prepared = LocalRun.prepare(
        load_project(project_dir),
        agent_name,
        prompt=prompt,
        events=QuietEvents() if quiet else ConsoleEvents(),
        warn=lambda text: status(f"warning: {text}"),
    )
    settled()

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
        return 130
    if outcome.error:
        print_error(ActionLlamaError(f"{outcome.error} (run {outcome.run_id})", hint=outcome.hint))
    elif not quiet:
        status(
            f"{outcome.agent}: {outcome.result.status} in {outcome.duration:.1f}s"
            f"{usage_text(record)} (run {outcome.run_id})"
        )
    return outcome.result.exit_code
