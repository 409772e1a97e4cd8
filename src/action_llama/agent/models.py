"""The run's models: one pydantic-ai model per configured model, fallbacks and backoff.

Imported only when a model session runs (it imports pydantic-ai and the provider SDKs).

    Passes( Fallback( Tracked(model 1), Tracked(model 2), … ) )

- `Tracked` is one configured model. A rate limit or overload (HTTP 429/529, "rate_limit",
  "overloaded") trips its breaker for 60 s and is passed on, so that the fallback chain moves
  to the next model; while tripped, the model is skipped (unless every model is). Any other
  error becomes `ModelFailed`, which ends the session (exit 1).
- `Fallback` is pydantic-ai's FallbackModel, falling back on rate limits only.
- `Passes`: when every model was rate limited, wait min(base·2^pass, 10·base) seconds (base
  30 s, or $AL_MODEL_BACKOFF_SECONDS) and try them all again, up to 4 passes; then
  `ModelsExhausted` (exit 12). This works per request, so a session keeps its conversation
  when it falls back or waits, unlike the original, which started the session over.

A brokered model (`"brokered": true`, the default when the run's egress is checked) is sent
to the model broker with the run's own token as its key: the broker adds the real key, which
the run never holds. Otherwise keys are read from the staged credential (`<provider>_key`, or
the instance named in the model's "credential"), handed to the SDK client and never logged
(session.describe words the failures, never quoting a response to a refused key: it can echo
part of the key).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic_ai.exceptions import (
    FallbackExceptionGroup,
    ModelAPIError,
    ModelHTTPError,
    ModelOverloadedError,
    ModelRateLimitError,
)
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings, ThinkingLevel

from action_llama.agent.logproto import Logger
from action_llama.credentials.types import provider_key_type
from action_llama.errors import RunAborted
from action_llama.providers import BROKER_TOKEN_VAR, BROKER_URL_VAR, PROVIDER_ENDPOINTS

PASSES = 4
BASE_DELAY = 30.0
MAX_DELAY_FACTOR = 10
BREAKER_COOLDOWN = 60.0
RATE_LIMIT_STATUSES = (429, 529)
RATE_LIMIT_WORDS = ("rate_limit", "rate limit", "overloaded")
#: Providers reached through their OpenAI-compatible endpoints (pydantic-ai's own clients for
#: them need SDKs the image does not carry); `base_url` overrides the endpoint.
OPENAI_COMPATIBLE_ENDPOINTS = {
    p: PROVIDER_ENDPOINTS[p] for p in ("groq", "xai", "mistral", "google")
}
#: Servers that may need no key at all (a local Ollama, vLLM…); both need a base_url.
KEYLESS = ("openai-compatible", "custom")
SUPPORTED_PROVIDERS = ("anthropic", "openai", "openrouter", *KEYLESS, *OPENAI_COMPATIBLE_ENDPOINTS)
MAX_PROVIDER_MESSAGE = 300


class SessionConfigError(RunAborted):
    """The agent's model configuration cannot work (exit 13)."""

    exit_code = 13


class ModelsExhausted(RunAborted):
    """Every model stayed rate limited through every pass (exit 12)."""

    exit_code = 12


@dataclass(frozen=True)
class ModelEntry:
    """One configured model, as agent-config.json lists it."""

    name: str
    provider: str
    model: str
    auth_type: str = "api_key"
    thinking: str | None = None
    base_url: str | None = None
    credential: str = ""
    #: Its requests go through the model broker, which holds its key (the run does not).
    brokered: bool = False

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> ModelEntry:
        return cls(
            name=str(raw.get("name") or raw.get("model") or "?"),
            provider=str(raw.get("provider", "")),
            model=str(raw.get("model", "")),
            auth_type=str(raw.get("authType") or "api_key"),
            thinking=raw.get("thinkingLevel"),
            base_url=raw.get("base_url") or None,
            credential=str(raw.get("credential") or provider_key_type(str(raw.get("provider")))),
            brokered=bool(raw.get("brokered")),
        )

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def endpoint(self) -> str | None:
        return self.base_url or OPENAI_COMPATIBLE_ENDPOINTS.get(self.provider)


class ModelFailed(RunAborted):
    """A model failed with something other than a rate limit (exit 1)."""

    def __init__(self, entry: ModelEntry, cause: Exception, has_key: bool = True):
        super().__init__(f"{entry.label}: {type(cause).__name__}")
        self.entry = entry
        self.cause = cause
        self.has_key = has_key


def read_key(root: Path, ref: str) -> str | None:
    """The `token` of credential `ref` ("type" or "type:instance") staged under `root`."""
    kind, _, instance = ref.partition(":")
    path = root / kind / (instance or "default") / "token"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


#: thinkingLevel → pydantic-ai's unified `thinking` setting (each model maps it to its API).
THINKING: dict[str, ThinkingLevel] = {
    "off": False,
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
}


def _settings(entry: ModelEntry) -> ModelSettings | None:
    if entry.thinking is None:
        return None
    if entry.thinking not in THINKING:
        raise SessionConfigError(
            f'Model "{entry.name}" has thinkingLevel "{entry.thinking}".',
            hint=f"Use one of: {', '.join(THINKING)}.",
        )
    return ModelSettings(thinking=THINKING[entry.thinking])


def build(entry: ModelEntry, credentials: Path) -> Model:
    """The pydantic-ai model for `entry`; SessionConfigError when it cannot be made."""
    if entry.provider not in SUPPORTED_PROVIDERS:
        raise SessionConfigError(
            f'Model "{entry.name}" uses provider "{entry.provider}", which this version of '
            "action-llama cannot run.",
            hint=f"Supported providers: {', '.join(SUPPORTED_PROVIDERS)}.",
        )
    if entry.auth_type == "pi_auth":
        raise SessionConfigError(
            f'Model "{entry.name}" uses authType "pi_auth", which action-llama does not support.',
            hint='Use authType = "api_key" and add the key with: al creds add ' + entry.credential,
        )
    if entry.brokered:
        return _build(*brokered(entry))
    key = read_key(credentials, entry.credential)
    if key is None and entry.provider not in KEYLESS:
        raise SessionConfigError(
            f'Model "{entry.name}" needs credential "{entry.credential}", which was not '
            "provided to this run.",
            hint=f"Add it with: al creds add {entry.credential}",
        )
    if entry.provider in KEYLESS and not entry.base_url:
        raise SessionConfigError(
            f'Model "{entry.name}" (provider "{entry.provider}") has no base_url.',
            hint=f'Set base_url in [models.{entry.name}], e.g. "http://host.docker.internal:11434/v1".',
        )
    return _build(entry, key)


def brokered(entry: ModelEntry, env: Mapping[str, str] = os.environ) -> tuple[ModelEntry, str]:
    """`entry` pointed at the model broker, and the run's token to send as its key."""
    url, token = env.get(BROKER_URL_VAR), env.get(BROKER_TOKEN_VAR)
    if not url or not token:
        raise SessionConfigError(
            f'Model "{entry.name}" is reached through the model broker, which this run has '
            "no way to: its egress could not be set up (see the egress lines above).",
            hint="Check the egress with: al doctor",
        )
    return replace(entry, base_url=f"{url}/{entry.name}"), token


def _build(entry: ModelEntry, key: str | None) -> Model:
    settings = _settings(entry)
    if entry.provider == "anthropic":
        from anthropic import AsyncAnthropic
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        if entry.auth_type == "oauth_token":
            client = AsyncAnthropic(auth_token=key, base_url=entry.base_url)
            return AnthropicModel(
                entry.model, provider=AnthropicProvider(anthropic_client=client), settings=settings
            )
        provider = AnthropicProvider(api_key=key, base_url=entry.base_url)
        return AnthropicModel(entry.model, provider=provider, settings=settings)

    from pydantic_ai.models.openai import OpenAIChatModel

    if entry.provider == "openai":
        from pydantic_ai.providers.openai import OpenAIProvider

        openai = OpenAIProvider(api_key=key, base_url=entry.base_url)
        return OpenAIChatModel(entry.model, provider=openai, settings=settings)
    if entry.provider == "openrouter":
        from openai import AsyncOpenAI
        from pydantic_ai.models.openrouter import OpenRouterModel
        from pydantic_ai.providers.openrouter import OpenRouterProvider

        router = (
            OpenRouterProvider(openai_client=AsyncOpenAI(base_url=entry.base_url, api_key=key))
            if entry.base_url
            else OpenRouterProvider(api_key=key, app_title="action-llama")
        )
        return OpenRouterModel(entry.model, provider=router, settings=settings)
    from pydantic_ai.providers.openai_compatible import OpenAICompatibleProvider

    compatible = OpenAICompatibleProvider(entry.provider, base_url=str(entry.endpoint), api_key=key)
    return OpenAIChatModel(entry.model, provider=compatible, settings=settings)


def is_rate_limit(exc: BaseException) -> bool:
    """A rate limit or overload: the next model may answer (reference §4.4)."""
    if isinstance(exc, ModelRateLimitError | ModelOverloadedError):
        return True
    if isinstance(exc, ModelHTTPError) and exc.status_code in RATE_LIMIT_STATUSES:
        return True
    if isinstance(exc, ModelAPIError):
        text = f"{exc.provider_error_code} {exc.provider_error_type} {exc.message}".lower()
        return any(word in text for word in RATE_LIMIT_WORDS)
    return False


class Breaker:
    """Which models were rate limited in the last minute."""

    def __init__(self, keys: list[str], cooldown: float = BREAKER_COOLDOWN):
        self.keys = keys
        self.cooldown = cooldown
        self._until: dict[str, float] = {}

    def trip(self, key: str) -> None:
        self._until[key] = time.monotonic() + self.cooldown

    def clear(self, key: str) -> None:
        self._until.pop(key, None)

    def _tripped(self, key: str) -> bool:
        return self._until.get(key, 0.0) > time.monotonic()

    def skip(self, key: str) -> bool:
        """Skip `key` now: it is tripped, and some other model is not."""
        return self._tripped(key) and not all(self._tripped(k) for k in self.keys)


class Tracked(WrapperModel):
    """One configured model in the chain (see the module docstring)."""

    def __init__(
        self, wrapped: Model, entry: ModelEntry, breaker: Breaker, log: Logger, has_key: bool
    ):
        super().__init__(wrapped)
        self.entry = entry
        self.has_key = has_key
        self.breaker = breaker
        self.log = log

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        key = self.entry.name
        if self.breaker.skip(key):
            self.log.debug("skipping a rate-limited model", model=self.entry.name)
            raise ModelHTTPError.for_category(
                ModelRateLimitError,
                status_code=429,
                model_name=self.entry.model,
                body="skipped: rate limited in the last minute",
            )
        try:
            response = await self.wrapped.request(
                messages, model_settings, model_request_parameters
            )
        except Exception as exc:
            if not is_rate_limit(exc):
                raise ModelFailed(self.entry, exc, self.has_key) from exc
            self.breaker.trip(key)
            status = exc.status_code if isinstance(exc, ModelHTTPError) else None
            self.log.warn(
                "rate limited, trying next model",
                model=self.entry.name,
                provider=self.entry.provider,
                status=status,
            )
            raise
        self.breaker.clear(key)
        return response


def _falls_back(exc: Exception) -> bool:
    return is_rate_limit(exc)


class Passes(WrapperModel):
    """Retries the whole chain after a backoff while every model is rate limited."""

    def __init__(self, wrapped: Model, log: Logger, base_delay: float, passes: int = PASSES):
        super().__init__(wrapped)
        self.log = log
        self.base_delay = base_delay
        self.passes = passes

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        for attempt in range(self.passes):
            try:
                return await self.wrapped.request(
                    messages, model_settings, model_request_parameters
                )
            except FallbackExceptionGroup:
                if attempt == self.passes - 1:
                    break
                delay = min(self.base_delay * 2**attempt, self.base_delay * MAX_DELAY_FACTOR)
                self.log.warn(
                    "all models exhausted, backing off", **{"pass": attempt}, delayMs=delay * 1000
                )
                await asyncio.sleep(delay)
        raise ModelsExhausted(f"every model stayed rate limited through {self.passes} passes")


def backoff_base(env: Mapping[str, str] = os.environ) -> float:
    """Seconds of the first backoff: $AL_MODEL_BACKOFF_SECONDS (for tests), else 30."""
    try:
        return max(0.0, float(env.get("AL_MODEL_BACKOFF_SECONDS", BASE_DELAY)))
    except ValueError:
        return BASE_DELAY


def chain(entries: list[ModelEntry], credentials: Path, log: Logger, base_delay: float) -> Model:
    """The run's model: every entry, in order, with fallback and backoff."""
    if not entries:
        raise SessionConfigError("The agent lists no model.")
    built = [
        (e, build(e, credentials), e.brokered or read_key(credentials, e.credential) is not None)
        for e in entries
    ]
    return assemble(built, log, base_delay)


def assemble(models: list[tuple[ModelEntry, Model, bool]], log: Logger, base_delay: float) -> Model:
    """Chain built models, each given as (entry, model, whether it has a key)."""
    breaker = Breaker([entry.name for entry, _, _ in models])
    tracked = [Tracked(model, e, breaker, log, has_key) for e, model, has_key in models]
    fallback_on: Callable[[Exception], bool] = _falls_back
    return Passes(FallbackModel(*tracked, fallback_on=fallback_on), log, base_delay)
