"""What a run's model requests cost, priced on the host from the model broker's counts.

The broker records the tokens of every answer it forwards (`egress.records`, kind `model`), so
the run cannot misreport them, nor their price: each request is priced here with genai-prices'
table (the one the in-run session uses too) by its model's provider and id. A request whose
model has no known price makes the run's cost unknown (None) rather than too low.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from action_llama.egress.records import read, records_path

#: Our provider names where genai-prices spells them otherwise.
PRICE_PROVIDERS = {"xai": "x-ai"}
#: Providers whose input count leaves cached tokens out (genai-prices counts them in).
CACHE_BESIDE_INPUT = ("anthropic",)


def broker_cost(state: Path, run_id: str, models: Mapping[str, tuple[str, str]]) -> float | None:
    """The cost in USD of the run's brokered model requests; `models`: each model's name (as
    the agent's config names it) → (provider, model id). None when a price is unknown."""
    from genai_prices import Usage, calc_price

    total = 0.0
    for record in read(records_path(state, run_id)):
        if record.get("kind") != "model" or record.get("input_tokens") is None:
            continue
        found = models.get(str(record.get("model")))
        if found is None:
            return None
        provider, model = found
        counts = {
            name: value if isinstance(value := record.get(f"{name}_tokens"), int) else 0
            for name in ("input", "output", "cache_read", "cache_write")
        }
        if provider in CACHE_BESIDE_INPUT:
            counts["input"] += counts["cache_read"] + counts["cache_write"]
        usage = Usage(
            input_tokens=counts["input"],
            output_tokens=counts["output"],
            cache_read_tokens=counts["cache_read"],
            cache_write_tokens=counts["cache_write"],
        )
        try:
            price = calc_price(
                usage, model_ref=model, provider_id=PRICE_PROVIDERS.get(provider, provider)
            )
        except (LookupError, ValueError):  # no price known; counts it cannot price
            return None
        total += float(price.total_price)
    return total
