"""Execute one run of an agent: stage its files, start it, store its logs, record the result."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from action_llama.credentials.staging import (
    StagedCredentials,
    check_present,
    hand_over,
    make_run_dir,
    refs_for,
    remove_tree,
    stage,
)
from action_llama.credentials.store import CredentialStore
from action_llama.errors import ActionLlamaError, AgentNotRunnable
from action_llama.project import Agent, Project
from action_llama.runs.records import parse_line
from action_llama.runs.redact import Redactor
from action_llama.runs.store import RunStore
from action_llama.runtimes.base import Limits, RunHandle, RunResult, RunSpec, Runtime

#: How long to keep reading output after the run ended (the engine flushes it promptly).
LOG_DRAIN_SECONDS = 5
CONTAINER_UID = 1000

LineCallback = Callable[[dict[str, Any]], None]


def new_run_id() -> str:
    return secrets.token_hex(4)


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
    """Refuse, before anything is built or started, agents that cannot run yet."""
    if agent.script is None:
        hint = (
            f"Add agents/{agent.name}/test-script.sh to run it in script mode."
            if agent.models
            else f'List a model in agents/{agent.name}/config.toml (models = ["..."]) once model '
            f"sessions are available, or add agents/{agent.name}/test-script.sh to run it "
            "in script mode."
        )
        raise AgentNotRunnable(
            f'Agent "{agent.name}" needs a model session, which is not yet configured in this '
            "version of action-llama.",
            hint=hint,
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
    if result.status == "killed":
        return f"Run of agent {agent.name} was stopped before it finished.", None
    if result.status == "failed":
        return (
            f"Agent {agent.name} exited with code {result.exit_code}.",
            f"See its log with: al logs {agent.name}",
        )
    return None, None


def _write_static(agent: Agent, static: Path, prompt: str | None) -> None:
    static.mkdir(mode=0o700)
    shutil.copyfile(agent.path / "SKILL.md", static / "SKILL.md")
    if agent.script is not None:
        shutil.copyfile(agent.script, static / "test-script.sh")
    config = {
        "name": agent.name,
        "description": agent.skill.frontmatter.description,
        "timeout": agent.timeout,
        "hooks": agent.config.hooks.model_dump(),
        "params": agent.config.params,
        "credentials": agent.config.credentials,
        "models": [{"name": n, **m.model_dump(by_alias=True)} for n, m in agent.models],
    }
    (static / "agent-config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    if prompt:
        (static / "prompt.txt").write_text(prompt, encoding="utf-8")
    for path in static.iterdir():
        path.chmod(0o400)


def host_user_warnings(project: Project, agent: Agent) -> list[str]:
    """Container settings that do not apply to a host-user agent, said once."""
    ignored = []
    if agent.dockerfile is not None:
        ignored.append(f"agents/{agent.name}/Dockerfile")
    if project.config.local.model_fields_set:
        ignored.append("[local] in config.toml")
    if not ignored:
        return []
    return [
        f"{' and '.join(ignored)} do{'es' if len(ignored) == 1 else ''} not apply to agent "
        f"{agent.name}: it runs as a host user, not in a container."
    ]


def _owner(agent: Agent) -> tuple[int, int]:
    """uid and gid that must be able to read the run's staged files."""
    if agent.is_container:
        return CONTAINER_UID, CONTAINER_UID
    import pwd

    try:
        user = pwd.getpwnam(agent.config.runtime.run_as)
    except KeyError:
        raise AgentNotRunnable(
            f'Agent "{agent.name}" runs as user "{agent.config.runtime.run_as}", which does '
            "not exist on this machine.",
            hint="Create it with: al doctor --fix",
        ) from None
    return user.pw_uid, user.pw_gid


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

    def preflight(self, agent: Agent, trigger: str = "manual", prompt: str | None = None) -> None:
        """Everything checkable before building or starting: runnable, credentials present.

        A failure is recorded as a run (so `al logs` says why) and raised.
        """
        try:
            check_runnable(agent)
            _owner(agent)
            required, _ = self._refs(agent)
            check_present(self.credentials, agent.name, required)
        except ActionLlamaError as exc:
            self.record_failure(agent, exc, trigger, prompt)
            raise

    def record_failure(
        self, agent: Agent, exc: ActionLlamaError, trigger: str, prompt: str | None
    ) -> str:
        """Store a run that never started, with the reason as its log."""
        run_id = new_run_id()
        self.store.start(run_id, agent.name, trigger, prompt, self.runtime.name, None)
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
        *,
        image: str | None,
        trigger: str = "manual",
        prompt: str | None = None,
        on_line: LineCallback | None = None,
        run_id: str | None = None,
    ) -> RunOutcome:
        self.preflight(agent, trigger, prompt)
        run_id = run_id or new_run_id()
        started = time.monotonic()
        stage_dir = make_run_dir(run_id)
        handle: RunHandle | None = None
        result: RunResult | None = None
        staged: StagedCredentials | None = None
        interrupted = False
        self.store.start(run_id, agent.name, trigger, prompt, self.runtime.name, image)
        try:
            owner = _owner(agent)
            _write_static(agent, stage_dir / "static", prompt)
            hand_over(stage_dir / "static", owner)
            # Read-only for its owner too: a host-user agent must not change its own files.
            (stage_dir / "static").chmod(0o500)
            required, optional = self._refs(agent)
            staged = stage(self.credentials, stage_dir / "credentials", required, optional, owner)
            spec = self._spec(agent, run_id, image, stage_dir, staged.path, trigger)
            handle = await self.runtime.start(spec)
            redactor = Redactor(staged.secrets)
            with self.store.open_log(agent.name, run_id) as log_file:
                pump = asyncio.ensure_future(self._pump_logs(handle, log_file, on_line, redactor))
                try:
                    result = await self.runtime.wait(handle, agent.timeout)
                except asyncio.CancelledError:
                    # Ctrl-C, SIGTERM or a scheduler shutdown: stop the run, keep its last lines.
                    interrupted = True
                    await self.runtime.stop(handle, grace=5)
                    result = RunResult(exit_code=130, status="killed")
                finally:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(pump), LOG_DRAIN_SECONDS)
                    pump.cancel()
        finally:
            error = (
                _explain(agent, self.project, result)[0]
                if result
                else "The run could not be started."
            )
            self.store.finish(
                run_id,
                result.status if result else "failed",
                result.exit_code if result else None,
                error,
            )
            if handle is not None:
                await self.runtime.remove(handle)
            if staged is not None:
                staged.remove()
            remove_tree(stage_dir)
        if interrupted:
            raise asyncio.CancelledError
        error, hint = _explain(agent, self.project, result)
        return RunOutcome(
            run_id=run_id,
            agent=agent.name,
            result=result,
            duration=time.monotonic() - started,
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
            timeout=agent.timeout,
            user=None if agent.is_container else agent.config.runtime.run_as,
            groups=tuple(agent.config.runtime.groups),
            labels={"al.trigger": trigger},
        )

    async def _pump_logs(
        self,
        handle: RunHandle,
        log_file: Any,
        on_line: LineCallback | None,
        redactor: Redactor,
    ) -> None:
        async for line in self.runtime.logs(handle):
            record = parse_line(line)
            if redactor:
                record = redactor.record(record)
            log_file.write(json.dumps(record, ensure_ascii=False) + "\n")
            log_file.flush()
            if on_line is not None:
                on_line(record)
