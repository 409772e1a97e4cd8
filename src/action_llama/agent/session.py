"""One model session: the agent loop with the run's tools, its log lines and its exit code.

Imported only when a model session runs. Log lines it writes (besides the tools' `tool` lines
and the models' `rate limited, trying next model` / `all models exhausted, backing off`):

    creating agent session  {models, thinking}
    assistant               {text}                 each text the model writes (≤ 4000 chars)
    prompt returned         {outputLength}          the session ended normally
    token-usage             {inputTokens, outputTokens, cacheReadTokens, cacheWriteTokens,
                             totalTokens, cost, turnCount, model}   always, once a model ran
    all models exhausted                            exit 12
    <a sentence naming the model and the fix>       any other model failure, exit 1

Exit codes: 0 done, 1 model failure or the auth/permission abort, 12 every model rate limited,
13 unusable model configuration, 143 stopped (SIGTERM: the kill switch or the host).
"""

from __future__ import annotations

import asyncio
import signal
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic_ai import Agent, CostCalculationFailedWarning, CostNotFoundWarning, ToolFailed
from pydantic_ai.exceptions import (
    AgentRunError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelHTTPError,
    ModelNotFoundError,
    UnexpectedModelBehavior,
)
from pydantic_ai.messages import ModelResponse, TextPart
from pydantic_ai.run import AgentRun
from pydantic_ai.usage import UsageLimits

from action_llama.agent.logproto import Logger
from action_llama.agent.models import (
    ModelEntry,
    ModelFailed,
    ModelsExhausted,
    SessionConfigError,
    backoff_base,
    chain,
)
from action_llama.agent.tools import AuthAbort, Toolbox

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_EXHAUSTED = 12
EXIT_CONFIG = 13
EXIT_STOPPED = 128 + signal.SIGTERM
MAX_ASSISTANT_TEXT = 4000
MAX_PROVIDER_MESSAGE = 300
#: Budget of malformed tool calls (bad arguments) the model may correct, per tool.
TOOL_RETRIES = 5


class StopControl(Protocol):
    """How the entry lets a session be stopped from its signal handler."""

    @property
    def stopping(self) -> bool:
        """A stop was already requested."""

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Call `hook` (from a signal handler) when a stop is requested."""


@dataclass(frozen=True)
class SessionSpec:
    """What a session needs: instructions, prompt, models (agent-config.json entries)."""

    system: str
    prompt: str
    models: Sequence[Mapping[str, Any]]
    credentials: Path
    agent: str = "agent"


def run_session(log: Logger, spec: SessionSpec, toolbox: Toolbox, control: StopControl) -> int:
    """Run the session to its end (or until `control` says stop); its exit code."""
    with warnings.catch_warnings():
        # Unknown prices are normal (local models); other warnings go to the run's log.
        warnings.simplefilter("ignore", CostNotFoundWarning)
        warnings.simplefilter("ignore", CostCalculationFailedWarning)
        warnings.showwarning = lambda message, category, *_args, **_kw: log.warn(
            f"{category.__name__}: {message}"
        )
        return asyncio.run(_Session(log, spec, toolbox).main(control))


class _Session:
    def __init__(self, log: Logger, spec: SessionSpec, toolbox: Toolbox):
        self.log = log
        self.spec = spec
        self.toolbox = toolbox
        self.run: AgentRun[None, str] | None = None

    async def main(self, control: StopControl) -> int:
        entries = [ModelEntry.parse(m) for m in self.spec.models]
        try:
            model = chain(entries, self.spec.credentials, self.log, backoff_base())
        except SessionConfigError as exc:
            self.log.error(exc.message, hint=exc.hint)
            return EXIT_CONFIG
        self.log.info(
            "creating agent session",
            models=[f"{e.name} ({e.label})" for e in entries],
            thinking=entries[0].thinking,
        )
        agent = Agent(
            model,
            instructions=self.spec.system,
            tools=self.toolbox.functions(),
            retries={"tools": TOOL_RETRIES},
            name=self.spec.agent,
        )
        task = asyncio.ensure_future(self._drive(agent))
        loop = asyncio.get_running_loop()

        def stop() -> None:
            loop.call_soon_threadsafe(task.cancel)
            self.toolbox.kill_running()

        control.on_stop(stop)
        if control.stopping:  # asked before the hook was in place
            stop()
        try:
            return await self._outcome(task)
        finally:
            self._log_usage()

    async def _drive(self, agent: Agent[None, str]) -> str:
        async with agent.iter(
            self.spec.prompt, usage_limits=UsageLimits(request_limit=None)
        ) as run:
            self.run = run
            async for node in run:
                if Agent.is_call_tools_node(node):
                    self._log_response(node.model_response)
        return run.result.output if run.result is not None else ""

    async def _outcome(self, task: asyncio.Future[str]) -> int:
        try:
            output = await task
        except asyncio.CancelledError:
            self.log.warn("session stopped")
            return EXIT_STOPPED
        except AuthAbort:
            return EXIT_ERROR  # the toolbox logged why
        except ModelsExhausted as exc:
            self.log.error(
                "all models exhausted",
                reason=str(exc),
                hint="Every model stayed rate limited. Try again later, or list another model "
                "as a fallback in the agent's config.toml.",
            )
            return EXIT_EXHAUSTED
        except ModelFailed as exc:
            message, hint = describe(exc)
            self.log.error(message, hint=hint)
            return EXIT_ERROR
        except (UnexpectedModelBehavior, AgentRunError) as exc:
            self.log.error(f"The model session failed: {exc}"[:2000])
            return EXIT_ERROR
        self.log.info("prompt returned", outputLength=len(output))
        return EXIT_OK

    def _log_response(self, response: ModelResponse) -> None:
        for part in response.parts:
            if isinstance(part, TextPart) and part.content.strip():
                self.log.info("assistant", text=part.content[:MAX_ASSISTANT_TEXT])

    def _log_usage(self) -> None:
        if self.run is None:
            return
        usage = self.run.usage
        responses = [m for m in self.run.all_messages() if isinstance(m, ModelResponse)]
        self.log.info(
            "token-usage",
            inputTokens=usage.input_tokens,
            outputTokens=usage.output_tokens,
            cacheReadTokens=usage.cache_read_tokens,
            cacheWriteTokens=usage.cache_write_tokens,
            totalTokens=usage.total_tokens,
            cost=float(usage.cost) if usage.cost is not None else None,
            turnCount=usage.requests,
            model=responses[-1].model_name if responses else None,
        )


def _provider_message(body: object) -> str:
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])[:MAX_PROVIDER_MESSAGE]
        if body.get("message"):
            return str(body["message"])[:MAX_PROVIDER_MESSAGE]
    return str(body)[:MAX_PROVIDER_MESSAGE] if body else ""


def describe(failure: ModelFailed) -> tuple[str, str | None]:
    """(message, hint) for a model failure, naming the fix; never a key or a refused key's echo."""
    entry, exc = failure.entry, failure.cause
    status = exc.status_code if isinstance(exc, ModelHTTPError) else None
    where = f'model "{entry.name}" ({entry.label})'
    if isinstance(exc, ModelHTTPError) and "al_token_limit" in str(exc.body):
        return (
            f"This run reached its token limit; the model broker refused {where} more.",
            "Raise tokens_per_run in [limits] of the agent's config.toml if it needs more.",
        )
    if isinstance(exc, ModelAuthenticationError) or status in (401, 403):
        if not failure.has_key:
            return (
                f"The server at {entry.base_url} refused the request (HTTP {status}) for "
                f"{where}, which was sent without a key.",
                f"If it needs a key, add it with: al creds add {entry.credential}",
            )
        return (
            f"The {entry.provider} key was refused (HTTP {status}) for {where}: check it with "
            f"al creds add {entry.credential}",
            f"al creds add {entry.credential}",
        )
    if isinstance(exc, ModelNotFoundError) or status == 404:
        return (
            f"The {entry.provider} server does not know {where} (HTTP {status or 404}).",
            f"Check model (and base_url) in [models.{entry.name}] of config.toml.",
        )
    if isinstance(exc, ModelConnectionError):
        url = entry.endpoint or f"the {entry.provider} API"
        hint = None
        if entry.base_url and ("localhost" in entry.base_url or "127.0.0.1" in entry.base_url):
            hint = (
                "If the agent runs in a container, localhost is the container itself: reach a "
                "server on the host as http://host.docker.internal:<port>."
            )
        return f"Could not reach {url} for {where}: {exc.message}", hint
    if isinstance(exc, ModelHTTPError):
        detail = _provider_message(exc.body)
        return f"{where} failed with HTTP {status}" + (f": {detail}" if detail else ""), None
    text = str(exc)[:MAX_PROVIDER_MESSAGE]
    return f"{where} failed: {type(exc).__name__}: {text}", None


def tool_failure(message: str) -> Exception:
    """How a failed tool call reaches the model: as a failed tool result, not a retry."""
    return ToolFailed(message)
