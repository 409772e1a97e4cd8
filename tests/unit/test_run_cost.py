"""A run's cost is priced on the host from the model broker's records of its requests."""

from __future__ import annotations

from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from action_llama.egress import records
from action_llama.egress.records import Record
from action_llama.runs.cost import broker_cost

MODELS = {
    "sonnet": ("anthropic", "claude-sonnet-4-5"),
    "gpt": ("openai", "gpt-4o"),
    "local": ("openai", "my-own-finetune"),
}


def record(model: str, **tokens: int) -> Record:
    found = Record("r1", "a", "model", "api.example.com", 443, "allowed", model=model)
    for name, value in tokens.items():
        setattr(found, f"{name}_tokens", value)
    return found


def price(provider: str, model: str, **tokens: int) -> float:
    usage = Usage(**{f"{k}_tokens": v for k, v in tokens.items()})
    return float(calc_price(usage, model, provider_id=provider).total_price)


def test_each_request_is_priced_by_its_model(tmp_path: Path) -> None:
    """Anthropic counts cached input beside the input, OpenAI inside it: both priced right."""
    records.append(tmp_path, record("sonnet", input=1000, output=200, cache_read=5000))
    records.append(tmp_path, record("gpt", input=3000, output=100, cache_read=1000))
    records.append(tmp_path, Record("r1", "a", "connect", "github.com", 443, "allowed"))
    expected = price(
        "anthropic", "claude-sonnet-4-5", input=6000, output=200, cache_read=5000
    ) + price("openai", "gpt-4o", input=3000, output=100, cache_read=1000)
    assert broker_cost(tmp_path, "r1", MODELS) == pytest.approx(expected)
    assert expected > price("openai", "gpt-4o", input=3000, output=100) > 0


def test_a_model_without_a_known_price_makes_the_cost_unknown(tmp_path: Path) -> None:
    records.append(tmp_path, record("gpt", input=3000, output=100))
    records.append(tmp_path, record("local", input=10, output=10))
    assert broker_cost(tmp_path, "r1", MODELS) is None


def test_a_run_the_broker_forwarded_nothing_for_costs_nothing(tmp_path: Path) -> None:
    assert broker_cost(tmp_path, "r1", MODELS) == 0.0
