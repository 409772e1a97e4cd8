"""Following runs as they happen, without the option parser: a run's log read as it grows
(`action_llama.runs.store.LogTail`), and `al run` before the parser loads (`fast_path`):
through the scheduler running for the project, or here (`cli/local.py`).

Nothing here imports typer, pydantic or docker-py: `al run` with a scheduler running costs
about what the interpreter's start-up does.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from action_llama.cli.render import print_error, record_printer, status
from action_llama.errors import ActionLlamaError, DaemonUnavailable, RunError

if TYPE_CHECKING:
    from action_llama.daemon.client import Daemon
    from action_llama.payloads import DispatchPayload, StatusPayload
    from action_llama.runs.store import LogTail, RunRecord, RunStore

Emit = Callable[[dict[str, Any]], None]


def follow(tail: LogTail, running: Callable[[], bool], emit: Emit, poll: float) -> None:
    """Emit records as they are written until `running()` turns false and the log is read to
    its end (the run's record is closed only after its last line is written)."""
    while True:
        done = not running()
        records = tail.read()
        for record in records:
            emit(record)
        if done:
            return
        if not records:
            time.sleep(poll)


def usage_text(run: RunRecord) -> str:
    """`, 1,234 tokens ($0.0021), returned '...'`, or what of it is known."""
    text = ""
    if run.tokens is not None:
        text += f", {run.tokens:,} tokens"
        if run.cost:
            text += f" (${run.cost:.4f})"
    if run.return_value:
        text += f", returned {run.return_value[:80]!r}"
    return text


def fast_path(argv: Sequence[str], settled: Callable[[], None] = lambda: None) -> int | None:
    """`al run` before the option parser loads (typer and what it pulls in: a tenth of a
    second): through the scheduler running for the project, else here (`cli/local.py`,
    `settled` called once it has loaded). The run's exit code, or None for anything but
    `run AGENT [-p DIR] [--prompt TEXT] [--json] [-q] [--local]`: the parser handles what this
    leaves the same way, only slower."""
    if not argv or argv[0] != "run":
        return None
    options = {"-p": "project", "--project": "project", "--prompt": "prompt"}
    values: dict[str, str] = {"project": "."}
    flags: set[str] = set()
    agent = None
    tokens = iter(argv[1:])
    for token in tokens:
        name, equals, value = token.partition("=")
        if token in options:
            values[options[token]] = next(tokens, "")
        elif equals and name.startswith("--") and name in options:
            values[options[name]] = value
        elif token in ("--json", "-q", "--quiet", "--local"):
            flags.add("--quiet" if token == "-q" else token)
        elif token.startswith("-") or agent is not None:
            return None  # --help, anything else: the parser's job
        else:
            agent = token
    if agent is None or not values["project"]:
        return None
    project, prompt = Path(values["project"]), values.get("prompt") or None
    as_json, quiet = "--json" in flags, "--quiet" in flags
    if "--local" not in flags:
        from action_llama.daemon.client import find_daemon

        daemon = find_daemon(project)
        if daemon is not None:
            return in_daemon(daemon, agent, prompt, as_json, quiet)
    from action_llama.cli.local import run_here

    return run_here(project, agent, prompt, as_json, quiet, settled=settled)


#: How often a run followed through the scheduler is checked: its log file and its record.
DAEMON_POLL = 0.02
#: How long a killed run gets to be recorded as such before `al run` exits anyway.
KILL_WAIT = 15.0


def in_daemon(daemon: Daemon, agent: str, prompt: str | None, as_json: bool, quiet: bool) -> int:
    """Trigger `agent` in the scheduler and follow the run to its end; its exit code."""
    from urllib.parse import quote

    body = {"prompt": prompt} if prompt else {}
    answer = cast("DispatchPayload", daemon.post(f"/trigger/{quote(agent, safe='')}", body))
    run_id, reason = answer.get("runId"), answer.get("reason")
    if answer["outcome"] != "started" or run_id is None:
        queued = _status(daemon)["queues"].get(agent)
        where = f" (position {queued} in its queue)" if queued else ""
        status(f"{agent}: all its runners are busy; the run is queued{where}.")
        if reason:
            status(reason)
        status(f"Follow it with: al logs {agent} -f -p {daemon.root}")
        return 0
    if not quiet:
        status(f"{agent}: running in the scheduler for {daemon.root} (run {run_id})")
    from action_llama.runs.store import RunStore

    store = RunStore.existing(daemon.state_dir)
    # SIGTERM (systemd, kill) stops the run like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        row = _follow(daemon, store, agent, run_id, record_printer(as_json))
    except KeyboardInterrupt:
        _kill(daemon, store, run_id)
        status(f"{agent}: stopped; the run is recorded as killed (al logs {agent})")
        return 130
    finally:
        store.close()
    if row.error:
        hint = f"See its log with: al logs {agent} --run {run_id}"
        print_error(ActionLlamaError(f"{row.error} (run {run_id})", hint=hint))
    elif not quiet:
        took = row.duration or 0.0
        status(f"{agent}: {row.status} in {took:.1f}s{usage_text(row)} (run {run_id})")
        if row.status == "rerun":
            status(
                "It asked for a rerun: the scheduler starts a new run unless maxReruns is "
                f"reached (al logs {agent} -f)"
            )
    return row.exit_code if row.exit_code is not None else 1


def _follow(
    daemon: Daemon, store: RunStore, agent: str, run_id: str, show: Callable[..., None]
) -> RunRecord:
    """Stream the run's log records until its record is closed; the closed record."""
    from action_llama.runs.store import LogTail

    row = store.find(run_id)
    checked = time.monotonic()
    while row is None:
        # The record appears once the run is staged; a run that fails before that only
        # leaves the scheduler's list of running runs.
        time.sleep(DAEMON_POLL)
        row = store.find(run_id)
        if row is None and time.monotonic() - checked > 0.5:
            checked = time.monotonic()
            agents = _status(daemon)["scheduler"]["agents"]
            if agent not in agents or run_id not in agents[agent]["running"]:
                raise RunError(
                    f"The scheduler could not start run {run_id} of {agent}.",
                    hint="Its reason is in the output of al start.",
                )
    latest: list[RunRecord] = [row]

    def running() -> bool:
        current = store.find(run_id)
        if current is not None:
            latest[0] = current
        if latest[0].status == "running" and not daemon.alive():
            raise DaemonUnavailable(
                f"The scheduler exited while run {run_id} of {agent} was running.",
                hint=f"Start it again (al start -p {daemon.root}): it takes the run back and its "
                f"log goes on (follow it with al logs {agent} -f --run {run_id}); a run that "
                "ended meanwhile is recorded as such.",
            )
        return latest[0].status == "running"

    tail = LogTail(latest[0].log_path)
    try:
        follow(tail, running, show, DAEMON_POLL)
    finally:
        tail.close()
    return latest[0]


def _status(daemon: Daemon) -> StatusPayload:
    return cast("StatusPayload", daemon.get("/status"))


def _kill(daemon: Daemon, store: RunStore, run_id: str) -> None:
    """Stop the run through the scheduler and wait (boundedly) until it is recorded."""
    try:
        daemon.post(f"/kill/{run_id}")
    except ActionLlamaError:
        return  # it ended meanwhile, or the scheduler is gone: nothing left to stop
    deadline = time.monotonic() + KILL_WAIT
    while time.monotonic() < deadline:
        row = store.find(run_id)
        if row is None or row.status != "running":
            return
        time.sleep(DAEMON_POLL * 5)
