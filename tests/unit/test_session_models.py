"""The run's models without HTTP: configuration errors, rate-limit fallback and backoff, and
how failures are told (pydantic-ai's FunctionModel stands in for the providers)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import (
    ModelAuthenticationError,
    ModelHTTPError,
    ModelOverloadedError,
    ModelRateLimitError,
    ModelServerError,
)
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from action_llama.agent.logproto import Logger
from action_llama.agent.models import (
    ModelEntry,
    ModelFailed,
    ModelsExhausted,
    SessionConfigError,
    assemble,
    backoff_base,
    build,
    is_rate_limit,
)
from action_llama.agent.session import describe

KEY = "sk-unit-sentinel-0123456789"


def entry(name: str = "main", provider: str = "openai", **extra: Any) -> ModelEntry:
    return ModelEntry.parse({"name": name, "provider": provider, "model": f"{name}-model", **extra})


def http_error(status: int, category: Any = None) -> ModelHTTPError:
    body = {"message": f"Incorrect API key provided: {KEY[:6]}***"}
    return ModelHTTPError.for_category(category, status_code=status, model_name="m", body=body)


def scripted(*answers: str | Exception) -> tuple[FunctionModel, list[int]]:
    """A model answering each request with the next item (an exception is raised)."""
    calls: list[int] = []
    queue = list(answers)

    def answer(_messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
        calls.append(1)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return ModelResponse(parts=[TextPart(item)])

    return FunctionModel(answer), calls


def run_chain(
    models: list[tuple[ModelEntry, Model, bool]], base: float = 0.0
) -> tuple[Any, list[dict[str, Any]]]:
    stream = io.StringIO()
    agent = Agent(assemble(models, Logger(stream), base))
    try:
        result: Any = asyncio.run(agent.run("go")).output
    except (ModelFailed, ModelsExhausted) as exc:
        result = exc
    return result, [json.loads(line) for line in stream.getvalue().splitlines()]


def test_entry_defaults_to_the_providers_default_key() -> None:
    """Without a "credential", a model uses `<provider>_key` (hyphens as underscores)."""
    assert entry(provider="openai-compatible").credential == "openai_compatible_key"
    assert entry(credential="anthropic_key:work").credential == "anthropic_key:work"
    assert entry(thinkingLevel="high").thinking == "high"


def test_missing_key_is_a_config_error_naming_the_ref(tmp_path: Path) -> None:
    """A provider that needs a key and has none: the ref and the command that adds it."""
    with pytest.raises(SessionConfigError) as info:
        build(entry(credential="openai_key:team"), tmp_path)
    assert "openai_key:team" in info.value.message
    assert info.value.hint == "Add it with: al creds add openai_key:team"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"provider": "bedrock"}, "cannot run"),
        ({"provider": "openai", "authType": "pi_auth"}, "pi_auth"),
        ({"provider": "openai-compatible"}, "no base_url"),
        ({"provider": "openai", "thinkingLevel": "max"}, "thinkingLevel"),
    ],
)
def test_unusable_models_are_config_errors(
    raw: dict[str, str], needle: str, tmp_path: Path
) -> None:
    """Unknown providers, pi_auth, a keyless server without base_url, a bad thinkingLevel."""
    (tmp_path / "openai_key" / "default").mkdir(parents=True)
    (tmp_path / "openai_key" / "default" / "token").write_text(KEY)
    with pytest.raises(SessionConfigError, match=needle):
        build(ModelEntry.parse({"name": "x", "model": "m", **raw}), tmp_path)


def test_keyless_server_needs_no_key(tmp_path: Path) -> None:
    """An OpenAI-compatible server with a base_url and no staged key still builds."""
    model = build(entry(provider="openai-compatible", base_url="http://127.0.0.1:1/v1"), tmp_path)
    assert model.model_name == "main-model"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (http_error(429, ModelRateLimitError), True),
        (http_error(529, ModelOverloadedError), True),
        (ModelHTTPError(429, "m"), True),
        (
            ModelServerError("m", "Overloaded, try later", provider_error_type="overloaded_error"),
            True,
        ),
        (http_error(401, ModelAuthenticationError), False),
        (ModelHTTPError(500, "m"), False),
        (ValueError("429"), False),
    ],
)
def test_rate_limits_and_overloads_are_recognised(error: Exception, expected: bool) -> None:
    """429, 529, and errors saying rate_limit/overloaded move to the next model."""
    assert is_rate_limit(error) is expected


def test_backoff_base_comes_from_the_environment() -> None:
    """AL_MODEL_BACKOFF_SECONDS sets the first backoff; nonsense falls back to 30 s."""
    assert backoff_base({}) == 30.0
    assert backoff_base({"AL_MODEL_BACKOFF_SECONDS": "0.01"}) == 0.01
    assert backoff_base({"AL_MODEL_BACKOFF_SECONDS": "soon"}) == 30.0


def test_rate_limited_primary_falls_back_and_is_skipped_for_a_while() -> None:
    """A 429 moves to the next model, and the tripped model is not asked again at once."""
    first, first_calls = scripted(http_error(429, ModelRateLimitError))
    second, second_calls = scripted("from the second model")
    output, lines = run_chain([(entry("a"), first, True), (entry("b"), second, True)])
    assert output == "from the second model"
    assert [line["msg"] for line in lines if line["level"] == "warn"] == [
        "rate limited, trying next model"
    ]
    assert (len(first_calls), len(second_calls)) == (1, 1)


def test_every_model_rate_limited_backs_off_then_gives_up() -> None:
    """Four passes over every model with growing waits in between, then ModelsExhausted."""
    first, first_calls = scripted(http_error(429, ModelRateLimitError))
    second, second_calls = scripted(http_error(529, ModelOverloadedError))
    result, lines = run_chain([(entry("a"), first, True), (entry("b"), second, True)], 0.01)
    assert isinstance(result, ModelsExhausted)
    assert (len(first_calls), len(second_calls)) == (4, 4)
    waits = [
        line["delayMs"] for line in lines if line["msg"] == "all models exhausted, backing off"
    ]
    assert waits == [10.0, 20.0, 40.0]


def test_other_errors_end_the_session_without_fallback() -> None:
    """A refused key stops at the first model: no fallback, a ModelFailed naming it."""
    first, _ = scripted(http_error(401, ModelAuthenticationError))
    second, second_calls = scripted("unused")
    result, _ = run_chain([(entry("a"), first, True), (entry("b"), second, True)])
    assert isinstance(result, ModelFailed)
    assert result.entry.name == "a"
    assert second_calls == []


def test_refused_key_message_names_the_fix_and_not_the_key() -> None:
    """401: which provider's key, the ref to fix it with, and nothing from the response body."""
    failure = ModelFailed(
        entry(credential="openai_key:work"), http_error(401, ModelAuthenticationError)
    )
    message, hint = describe(failure)
    assert message.startswith("The openai key was refused (HTTP 401)")
    assert "al creds add openai_key:work" in message
    assert KEY[:6] not in message + str(hint)


def test_keyless_server_refusal_says_no_key_was_sent() -> None:
    """A server reached without a key that answers 401 is told as such."""
    model = entry(provider="openai-compatible", base_url="http://box:8000/v1")
    message, hint = describe(ModelFailed(model, http_error(401), has_key=False))
    assert "http://box:8000/v1" in message
    assert "without a key" in message
    assert hint == "If it needs a key, add it with: al creds add openai_compatible_key"


def test_other_http_errors_quote_the_providers_message() -> None:
    """Other HTTP errors name the model, the status and the provider's own message."""
    error = ModelHTTPError(500, "m", body={"error": {"message": "upstream broke"}})
    message, _ = describe(ModelFailed(entry(), error))
    assert message == 'model "main" (openai:main-model) failed with HTTP 500: upstream broke'
