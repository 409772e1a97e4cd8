"""Execute one run of an agent: stage its files, start it, store its logs, record the result."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from action_llama.config._base import dump
from action_llama.credentials.staging import (
    StagedCredentials,
    check_present,
    hand_over,
    make_run_dir,
    model_key_ref,
    refs_for,
    remove_tree,
    stage,
    staged_secrets,
    stages_of,
)
from action_llama.credentials.store import CredentialStore
from action_llama.egress.brokering import (
    EXIT_TOKEN_LIMIT,
    held_token_values,
    remove_keys,
)
from action_llama.egress.deploy import project_id
from action_llama.egress.policy import effective_policy
from action_llama.egress.records import model_usage
from action_llama.egress.service import state_of
from action_llama.egress.watch import EgressWatch, is_inserted, note
from action_llama.errors import ActionLlamaError, AgentNotRunnable, ImageMissing, RunError
from action_llama.project import Agent, Project
from action_llama.runs.brokered import Brokered, broker_run, served_ssh_keys
from action_llama.runs.cost import broker_cost
from action_llama.runs.records import parse_line
from action_llama.runs.redact import Redactor
from action_llama.runs.ssh_agent import SshAgent, start_ssh_agents
from action_llama.runs.store import RunStore
from action_llama.runs.trigger import Trigger
from action_llama.runtimes.base import (
    Limits,
    RunHandle,
    RunIdentity,
    RunResult,
    RunSpec,
    Runtime,
)

#: How long to keep reading output after the run ended (the engine flushes it promptly).
LOG_DRAIN_SECONDS = 5

LineCallback = Callable[[dict[str, Any]], None]
#: Builds an agent's image again; what its runs start from now.
Rebuild = Callable[[Agent], Awaitable[str | None]]
#: A manual run with no prompt: `al run AGENT`.
MANUAL = Trigger()


def new_run_id() -> str:
    return secrets.token_hex(4)


def complete_lines(log: Path) -> int:
    """How many whole lines of the run's own output a stored log holds (records al inserted,
    like egress warnings, are not counted); a partial last line (the writer was killed
    mid-write) is cut off, so the log can continue after it."""
    try:
        with log.open("r+b") as fh:
            data = fh.read()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                fh.truncate(end)
    except FileNotFoundError:
        return 0
    return sum(1 for line in data[:end].splitlines() if not is_inserted(line))


@dataclass(frozen=True)
class RunOutcome:
    """What `al run` reports: the result plus a sentence and a fix for anything but success."""

    run_id: str
    agent: str
    result: RunResult
    duration: float
    log_path: Path
    error: str | None = None
    hint: str | None = None


def check_runnable(agent: Agent) -> None:
    """Refuse, before anything is built or started, agents that cannot run."""
    if agent.script is None and not agent.models:
        raise AgentNotRunnable(
            f'Agent "{agent.name}" has no model to run a session with (and no test-script.sh).',
            hint=f'List one in agents/{agent.name}/config.toml, e.g. models = ["sonnet"], '
            "with [models.sonnet] defined in config.toml; or add "
            f"agents/{agent.name}/test-script.sh to run it in script mode.",
        )


def _explain(agent: Agent, project: Project, result: RunResult) -> tuple[str | None, str | None]:
    if result.status == "oom":
        limit = project.config.local.memory
        return (
            f"Agent {agent.name} ran out of memory (limit {limit}) and was killed.",
            f'Raise the limit in config.toml:\n[local]\nmemory = "8g"    # now: "{limit}"',
        )
    if result.status == "timeout":
        return (
            f"Agent {agent.name} timed out after {agent.timeout}s and was stopped.",
            f"Raise timeout in agents/{agent.name}/config.toml (timeout = {agent.timeout * 2}) "
            "or [local].timeout in config.toml.",
        )
    if result.status == "token_limit":
        where = (
            f"agents/{agent.name}/config.toml"
            if agent.config.limits and agent.config.limits.tokens_per_run
            else "config.toml"
        )
        return (
            f"Agent {agent.name} reached its token limit ({agent.tokens_per_run} tokens per "
            "run) and was stopped.",
            f"Raise tokens_per_run in [limits] of {where} if it needs more.",
        )
    if result.status == "killed":
        return f"Run of agent {agent.name} was stopped before it finished.", None
    if result.status == "failed":
        return (
            f"Agent {agent.name} exited with code {result.exit_code}.",
            f"See its log with: al logs {agent.name}",
        )
    return None, None


def _write_static(
    agent: Agent, project: Project, static: Path, trigger: Trigger, brokered: Brokered
) -> None:
    """The run's agent files (its brokered models marked; the model keys the broker holds
    not listed among its credentials: it gets no files of them)."""
    static.mkdir(mode=0o700)
    shutil.copyfile(agent.path / "SKILL.md", static / "SKILL.md")
    if agent.script is not None:
        shutil.copyfile(agent.script, static / "test-script.sh")
    config = {
        "name": agent.name,
        "description": agent.skill.frontmatter.description,
        "timeout": agent.timeout,
        "hooks": dump(agent.config.hooks),
        "params": agent.config.params,
        "credentials": brokered.listed(agent.config.credentials),
        "models": [
            {
                "name": name,
                **dump(model, by_alias=True),
                "credential": str(model_key_ref(model.provider, agent.config.credentials)),
                "brokered": name in brokered.models,
            }
            for name, model in agent.models
        ],
        "lockTimeout": project.config.resource_lock_timeout,
        "runtime": agent.config.runtime.type,
    }
    (static / "agent-config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (static / "trigger.json").write_text(trigger.for_run())
    if trigger.prompt:
        (static / "prompt.txt").write_text(trigger.prompt, encoding="utf-8")
    for path in static.iterdir():
        path.chmod(0o400)


class RunService:
    """Runs agents of one project on one runtime, recording each run in the store."""

    def __init__(
        self,
        project: Project,
        runtime: Runtime,
        store: RunStore,
        credentials: CredentialStore | None = None,
    ):
        self.project = project
        self.runtime = runtime
        self.store = store
        self.credentials = credentials or CredentialStore()

    def preflight(self, agent: Agent, trigger: Trigger = MANUAL) -> None:
        """Everything checkable before building or starting: runnable, credentials present.

        A failure is recorded as a run (so `al logs` says why) and raised.
        """
        try:
            check_runnable(agent)
            self.runtime.identity(agent)
            required, _ = self._refs(agent)
            check_present(self.credentials, agent.name, required)
        except ActionLlamaError as exc:
            self.record_failure(agent, exc, trigger)
            raise

    def record_failure(self, agent: Agent, exc: ActionLlamaError, trigger: Trigger) -> str:
        """Store a run that never started, with the reason as its log."""
        run_id = new_run_id()
        self.store.start(
            run_id,
            agent.name,
            trigger.type,
            trigger.prompt,
            self.runtime.name,
            None,
            trigger.context,
        )
        with self.store.open_log(agent.name, run_id) as log_file:
            record = {"ts": int(time.time() * 1000), "level": "error", "msg": exc.message}
            if exc.hint:
                record["hint"] = exc.hint
            log_file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.store.finish(run_id, "error", None, exc.message)
        return run_id

    @staticmethod
    def _refs(agent: Agent) -> tuple[list[Any], list[Any]]:
        return refs_for(
            agent.config.credentials, [(m.provider, m.auth_type) for _, m in agent.models]
        )

    async def run(
        self,
        agent: Agent,
        trigger: Trigger = MANUAL,
        *,
        image: str | None,
        run_id: str | None = None,
        env: dict[str, str] | None = None,
        on_line: LineCallback | None = None,
        rebuild: Rebuild | None = None,
    ) -> RunOutcome:
        """Run `agent` for `trigger` to its end, recorded as run `run_id` (a new id when None).

        `image`: what the chain built for it (None for runtimes without images); `env`: more
        variables for the run (the gateway's address and the run's secret, in the daemon);
        `on_line`: each log record as it is stored; `rebuild`: builds the agent's image again
        when the runtime finds it gone (the run then starts from the new one).
        """
        self.preflight(agent, trigger)
        run_id = run_id or new_run_id()
        started = time.monotonic()
        pid = project_id(self.project.root)
        stage_dir = make_run_dir(run_id)
        handle: RunHandle | None = None
        result: RunResult | None = None
        staged: StagedCredentials | None = None
        agents: list[SshAgent] = []
        interrupted = False
        try:
            self.store.start(
                run_id,
                agent.name,
                trigger.type,
                trigger.prompt,
                self.runtime.name,
                image,
                trigger.context,
            )
        except BaseException:
            remove_tree(stage_dir)  # not recorded: the scheduler may start it again
            raise
        try:
            identity = self.runtime.identity(agent)
            owner = (identity.uid, identity.gid)
            required, optional = self._refs(agent)
            brokered = (
                broker_run(agent, self.credentials, pid, run_id, [*required, *optional])
                if self.runtime.brokers
                else Brokered()
            )
            _write_static(
                agent,
                self.project,
                stage_dir / "static",
                trigger,
                brokered,
            )
            hand_over(stage_dir / "static", owner)
            # Read-only for its owner too: a host-user agent must not change its own files.
            (stage_dir / "static").chmod(0o500)
            tokens = brokered.tokens
            staged = stage(
                self.credentials,
                stage_dir / "credentials",
                brokered.unstaged(required),
                brokered.unstaged(optional),
                owner,
                brokered.substitutes,
            )
            agents = await start_ssh_agents(brokered.ssh_keys, staged.path, owner)
            spec = self._spec(agent, run_id, image, stage_dir, staged.path, trigger.type, identity)
            spec = replace(spec, broker=brokered.plan)
            if env:
                spec = replace(spec, env={**spec.env, **env})
            handle = await self._start(agent, spec, rebuild)
            # An upstream could echo a swapped value back to the run: redacted like the rest.
            redactor = Redactor((*staged.secrets, *tokens.values))
            result, interrupted = await self._follow(
                agent, handle, agent.timeout, on_line, redactor
            )
        finally:
            await self._close(agent, run_id, result, handle)
            remove_keys(pid, run_id)
            for ssh_agent in agents:
                await ssh_agent.close()
            if staged is not None:
                staged.remove()
            remove_tree(stage_dir)
        if interrupted:
            raise asyncio.CancelledError
        return self._outcome(agent, run_id, result, time.monotonic() - started)

    async def _start(self, agent: Agent, spec: RunSpec, rebuild: Rebuild | None) -> RunHandle:
        try:
            return await self.runtime.start(spec)
        except ImageMissing:
            if rebuild is None:
                raise
            # Removed under a running scheduler (a prune): the work is not lost for that.
            image = await rebuild(agent)
            self.store.set_image(spec.run_id, image)
            return await self.runtime.start(replace(spec, image=image))

    async def resume(
        self, agent: Agent, handle: RunHandle, *, on_line: LineCallback | None = None
    ) -> RunOutcome:
        """Follow to its end a run another (dead) process started, as `run` would have.

        Same run id and log: its output continues after the last line already stored (the
        runtime replays it from the start; the lines stored are skipped, so none is doubled or
        lost). Its timeout counts from its real start; its ssh-agents are served again; its
        result is recorded, the run removed and its stage (credentials included) deleted, as
        for any run.
        """
        run_id = handle.run_id
        started_at = self.store.get(run_id).started_at
        stored = complete_lines(self.store.log_path(agent.name, run_id))
        stages = stages_of(run_id)
        pid = project_id(self.project.root)
        staged = tuple(s for stage in stages for s in staged_secrets(stage))
        redactor = Redactor((*staged, *held_token_values(pid, run_id)))
        remaining = max(0.0, agent.timeout - (time.time() - started_at))
        result: RunResult | None = None
        interrupted = False
        agents: list[SshAgent] = []
        try:
            agents, notes = await self._serve_ssh_agents_again(stages)
            handle = replace(handle, notes=(*handle.notes, *notes))
            result, interrupted = await self._follow(
                agent, handle, remaining, on_line, redactor, skip=stored
            )
        finally:
            await self._close(agent, run_id, result, handle)
            remove_keys(pid, run_id)
            for ssh_agent in agents:
                await ssh_agent.close()
            for stage in stages:
                remove_tree(stage)
        if interrupted:
            raise asyncio.CancelledError
        return self._outcome(agent, run_id, result, time.time() - started_at)

    async def _serve_ssh_agents_again(self, stages: list[Path]) -> tuple[list[SshAgent], list[str]]:
        """The ssh-agents of a run adopted from an `al` process that died (and they with it),
        on the same sockets in its stage, with the keys the credential store holds; a note for
        the run's log for each key that cannot be served."""
        agents: list[SshAgent] = []
        notes: list[str] = []
        for folder in stages:
            credentials = folder / "credentials"
            keys = served_ssh_keys(self.credentials, credentials)
            if not keys:
                continue
            owned = credentials.stat()  # handed to the run's user when it was staged
            try:
                agents += await start_ssh_agents(keys, credentials, (owned.st_uid, owned.st_gid))
            except RunError as exc:
                notes.append(f"its ssh-agent was not served again: {exc.message}")
        return agents, notes

    async def _follow(
        self,
        agent: Agent,
        handle: RunHandle,
        timeout: float,
        on_line: LineCallback | None,
        redactor: Redactor,
        skip: int = 0,
    ) -> tuple[RunResult, bool]:
        """Store the run's output while waiting for its end: (result, whether interrupted).

        Beside the output, the log gets the runtime's notes on how it started the run and
        what the run's egress refused (`egress.watch`)."""
        with self.store.open_log(agent.name, handle.run_id) as log_file:

            def insert(record: dict[str, Any]) -> None:
                self._write(log_file, record, on_line)

            for text in handle.notes:
                insert(note(text))
            stopping: list[asyncio.Future[None]] = []

            def stop_at_limit() -> None:
                stopping.append(asyncio.ensure_future(self.runtime.stop(handle, grace=5)))

            watch = EgressWatch(state_of(self.project.root), handle.run_id, insert, stop_at_limit)
            watching = asyncio.ensure_future(watch.follow())
            pump = asyncio.ensure_future(self._pump_logs(handle, log_file, on_line, redactor, skip))
            try:
                result = await self.runtime.wait(handle, timeout)
                watch.check()  # a limit recorded as the run ended
                if watch.limited and result.status not in ("timeout", "oom"):
                    result = RunResult(exit_code=EXIT_TOKEN_LIMIT, status="token_limit")
                return result, False
            except asyncio.CancelledError:
                # Ctrl-C, SIGTERM or a scheduler shutdown: stop the run, keep its last lines.
                await self.runtime.stop(handle, grace=5)
                return RunResult(exit_code=130, status="killed"), True
            finally:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pump), LOG_DRAIN_SECONDS)
                pump.cancel()
                watching.cancel()
                watch.check()
                for task in stopping:
                    with contextlib.suppress(Exception):
                        await task

    async def _close(
        self, agent: Agent, run_id: str, result: RunResult | None, handle: RunHandle | None
    ) -> None:
        """Remove the run from its runtime, then record how it ended: whoever follows the
        record (al run through the scheduler) sees it end when the run holds nothing, so work
        sent right after finds its runner free."""
        error = (
            _explain(agent, self.project, result)[0] if result else "The run could not be started."
        )
        try:
            if handle is not None:
                await self.runtime.remove(handle)
        finally:
            counted = model_usage(state_of(self.project.root), run_id)
            if counted is not None:  # the broker saw every request: its counts, not the run's
                cost = broker_cost(
                    state_of(self.project.root),
                    run_id,
                    {name: (m.provider, m.model) for name, m in agent.models},
                )
                self.store.set_usage(run_id, {"cost": cost, **counted})
            self.store.finish(
                run_id,
                result.status if result else "failed",
                result.exit_code if result else None,
                error,
            )

    def _outcome(self, agent: Agent, run_id: str, result: RunResult, duration: float) -> RunOutcome:
        error, hint = _explain(agent, self.project, result)
        return RunOutcome(
            run_id=run_id,
            agent=agent.name,
            result=result,
            duration=duration,
            log_path=self.store.log_path(agent.name, run_id),
            error=error,
            hint=hint,
        )

    def _spec(
        self,
        agent: Agent,
        run_id: str,
        image: str | None,
        stage_dir: Path,
        credentials: Path,
        trigger: str,
        identity: RunIdentity,
    ) -> RunSpec:
        local = self.project.config.local
        return RunSpec(
            run_id=run_id,
            agent=agent.name,
            project=self.project.root,
            image=image,
            static_dir=stage_dir / "static",
            credentials_dir=credentials,
            workspace=str(self.project.state_dir / "workspaces" / agent.name),
            limits=Limits(memory_bytes=local.memory_bytes, cpus=local.cpus),
            runtime_config=agent.config.runtime,
            timeout=agent.timeout,
            user=identity.user,
            groups=identity.groups,
            labels={"al.trigger": trigger},
            env=dict(self.project.run_env),
            network=effective_policy(agent),
        )

    def _capture(self, run_id: str, record: dict[str, Any]) -> None:
        """Keep what the run reports about itself: token usage, its return value."""
        msg = record.get("msg")
        if msg == "token-usage":
            self.store.set_usage(run_id, record)
        elif msg == "signal-result" and record.get("type") == "return":
            self.store.set_return_value(run_id, str(record.get("value", "")))
        elif record.get("hooks") in ("pre", "post") and isinstance(
            record.get("seconds"), int | float
        ):
            self.store.set_hooks_time(run_id, record["hooks"], float(record["seconds"]))

    async def _pump_logs(
        self,
        handle: RunHandle,
        log_file: Any,
        on_line: LineCallback | None,
        redactor: Redactor,
        skip: int = 0,
    ) -> None:
        """Store each output line as a record; the first `skip` lines are stored already."""
        async for line in self.runtime.logs(handle):
            if skip > 0:
                skip -= 1
                continue
            record = parse_line(line)
            if redactor:
                record = redactor.record(record)
            self._capture(handle.run_id, record)
            self._write(log_file, record, on_line)

    @staticmethod
    def _write(log_file: Any, record: dict[str, Any], on_line: LineCallback | None) -> None:
        log_file.write(json.dumps(record, ensure_ascii=False) + "\n")
        log_file.flush()
        if on_line is not None:
            on_line(record)
