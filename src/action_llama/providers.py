"""Where each model provider's API is, as its SDK reaches it without a `base_url`.

Plain data: the in-run entry builds its clients from it, and the host tells the model broker
where to forward each model's requests (`egress.brokering`).
"""

from __future__ import annotations

#: Variables a brokered run's model client reads: the model broker's base URL (a model's
#: requests go to `<it>/<model name>/...`) and the run's own token, sent where a key goes.
BROKER_URL_VAR = "AL_MODEL_BROKER"
BROKER_TOKEN_VAR = "AL_MODEL_BROKER_TOKEN"
#: The run's egress CA (PEM), when the proxy swaps placeholders for it: the entry makes the
#: bundle its tools trust from it.
CA_VAR = "AL_EGRESS_CA"

#: The base URL each provider's client uses by default (Groq, xAI, Mistral and Google at their
#: OpenAI-compatible endpoints: the image carries no SDK of their own).
PROVIDER_ENDPOINTS = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "groq": "https://api.groq.com/openai/v1",
    "xai": "https://api.x.ai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "google": "https://generativelanguage.googleapis.com/v1beta/openai/",
}


def endpoint(provider: str, base_url: str | None) -> str | None:
    """The URL a model's requests go to: its `base_url`, else its provider's."""
    return base_url or PROVIDER_ENDPOINTS.get(provider)
