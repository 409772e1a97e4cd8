"""The project `config.toml`: `[local]`, `[models.*]`, `[gateway]`, `[webhooks.*]`, scheduler keys.

Defaults follow the seed where it and the original's code disagree: `local.cpus` is 2 and
`local.timeout` is 900 seconds.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from action_llama.config._base import MAX_COUNT, MAX_DAYS, MAX_SECONDS, Strict
from action_llama.config.agent import RuntimeConfig
from action_llama.config.network import LimitsConfig, NetworkConfig
from action_llama.credentials.refs import check_instance

DEFAULT_IMAGE = "al-agent:latest"
DEFAULT_TIMEOUT = 900

PROVIDERS = (
    "anthropic",
    "openai",
    "openai-compatible",
    "groq",
    "google",
    "xai",
    "mistral",
    "openrouter",
    "custom",
)
WEBHOOK_TYPES = (
    "github",
    "sentry",
    "linear",
    "mintlify",
    "discord",
    "twitter",
    "slack",
    "generic",
    "test",
)

# At most 12 digits and 9 decimals: a size is never longer, and the number stays exact.
_MEMORY = re.compile(r"^(\d{1,12})(?:\.(\d{1,9}))?([bkmgt]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
#: Docker refuses limits under 6 MiB.
MIN_MEMORY = 6 * 1024**2
#: 1 PiB: above any host's memory, below what Docker's 64-bit limits hold.
MAX_MEMORY = 1024**5
#: A Docker image reference: [registry[:port]/]name[/name...][:tag][@digest].
_IMAGE = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::\d{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::\w[\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


def parse_memory(value: str) -> int:
    """Bytes of a Docker-style size ("4g", "512m", "1.5g"); ValueError when malformed."""
    match = _MEMORY.match(value.strip())
    if not match:
        raise ValueError(f'"{value}" is not a size; write it like "4g" or "512m"')
    whole: str = match[1]
    fraction: str = match[2] or ""
    scale: int = _UNITS[match[3].lower()]
    # Integer arithmetic: a float of many digits would round (or overflow to infinity).
    divisor: int = 10 ** len(fraction)
    return int(whole) * scale + int(fraction or "0") * scale // divisor


class LocalConfig(Strict):
    """`[local]`: the container every run gets."""

    image: str = DEFAULT_IMAGE
    memory: str = "4g"
    cpus: float = Field(default=2, ge=0.01, le=1024)
    timeout: int = Field(default=DEFAULT_TIMEOUT, gt=0, le=MAX_SECONDS)
    enabled: bool = True

    @field_validator("memory")
    @classmethod
    def _memory_is_a_size(cls, value: str) -> str:
        size = parse_memory(value)
        if size < MIN_MEMORY:
            raise ValueError(f'"{value}" is below Docker\'s minimum of 6m')
        if size > MAX_MEMORY:
            raise ValueError(f'"{value}" is more than 1024t')
        return value

    @field_validator("image")
    @classmethod
    def _image_is_a_reference(cls, value: str) -> str:
        if len(value) > 255 or not _IMAGE.match(value):
            raise ValueError(
                f'"{value}" is not an image name; write it like "al-agent:latest" or '
                '"registry.example.com/team/agent:1.2"'
            )
        return value

    @property
    def memory_bytes(self) -> int:
        return parse_memory(self.memory)


class ModelConfig(Strict):
    """`[models.<name>]`: one named model an agent can list."""

    provider: Literal[PROVIDERS]  # type: ignore[valid-type]  # a tuple of literals is valid here
    model: str = Field(min_length=1)
    auth_type: Literal["api_key", "oauth_token", "pi_auth"] = Field(
        default="api_key", alias="authType"
    )
    thinking_level: Literal["off", "minimal", "low", "medium", "high", "xhigh"] | None = Field(
        default=None, alias="thinkingLevel"
    )
    base_url: str | None = None

    @model_validator(mode="after")
    def _usable(self) -> ModelConfig:
        if self.auth_type == "pi_auth":
            raise ValueError(
                'authType "pi_auth" (a desktop login) cannot be used by agents in containers '
                'or host-user runs; use "api_key" and add the key with al creds add '
                f"{self.provider.replace('-', '_')}_key"
            )
        if self.provider in ("openai-compatible", "custom") and not self.base_url:
            raise ValueError(
                f'provider "{self.provider}" needs base_url, the server\'s OpenAI-compatible '
                'endpoint (for a local Ollama: base_url = "http://host.docker.internal:11434/v1")'
            )
        return self


class GatewayConfig(Strict):
    """`[gateway]`: the daemon's HTTP server."""

    port: int = Field(default=8080, ge=1, le=65535)
    url: str | None = None
    max_chat_sessions: int = Field(default=5, ge=0, le=MAX_COUNT, alias="maxChatSessions")


class WebhookSource(Strict):
    """`[webhooks.<source>]`: one place webhooks come from."""

    type: Literal[WEBHOOK_TYPES]  # type: ignore[valid-type]
    credential: str = "default"
    allow_unsigned: bool = Field(default=False, alias="allowUnsigned")

    @field_validator("credential")
    @classmethod
    def _credential_is_an_instance(cls, value: str) -> str:
        check_instance(value)
        return value


_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?(/[a-z0-9._/-]+)?$")


class SwarmConfig(Strict):
    """`[swarm]`: how runs of `[runtime] type = "swarm"` agents reach the cluster and back."""

    #: host[:port] of the registry every node pulls the chain from (al pushes it there).
    registry: str | None = None
    #: The gateway's URL as runs on the nodes reach it (default: the manager's address).
    advertise: str | None = None

    @field_validator("registry")
    @classmethod
    def _registry_is_an_address(cls, value: str | None) -> str | None:
        if value is not None and not _REGISTRY.match(value):
            raise ValueError(
                f'"{value}" is not a registry address; write host[:port], like '
                '"registry.internal:5000" (no scheme)'
            )
        return value

    @field_validator("advertise")
    @classmethod
    def _advertise_is_a_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+/?$", value):
            raise ValueError(
                f'"{value}" is not the gateway\'s address; write it like "http://10.0.0.5:8080"'
            )
        return value.rstrip("/") if value else value


class TelemetryConfig(Strict):
    """`[telemetry]`."""

    enabled: bool = False
    provider: Literal["otel", "none"] = "none"
    endpoint: str | None = None
    service_name: str | None = Field(default=None, alias="serviceName")
    headers: dict[str, str] = Field(default_factory=dict)
    sampling_rate: float = Field(default=1.0, ge=0, le=1, alias="samplingRate")


class ProjectConfig(Strict):
    """The whole project `config.toml` (every table optional)."""

    models: dict[str, ModelConfig] = Field(default_factory=dict)
    local: LocalConfig = Field(default_factory=LocalConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    webhooks: dict[str, WebhookSource] = Field(default_factory=dict)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    swarm: SwarmConfig = Field(default_factory=SwarmConfig)
    #: The default `[runtime]` of every agent (an agent's own keys override it).
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    project_name: str | None = Field(default=None, alias="projectName")
    max_reruns: int = Field(default=10, ge=0, le=MAX_COUNT, alias="maxReruns")
    max_call_depth: int = Field(default=3, ge=0, le=MAX_COUNT, alias="maxCallDepth")
    work_queue_size: int = Field(default=20, ge=0, le=MAX_COUNT, alias="workQueueSize")
    resource_lock_timeout: int = Field(
        default=1800, gt=0, le=MAX_SECONDS, alias="resourceLockTimeout"
    )
    scale: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    default_agent_scale: int = Field(default=1, ge=0, le=MAX_COUNT, alias="defaultAgentScale")
    history_retention_days: int = Field(default=14, ge=0, le=MAX_DAYS, alias="historyRetentionDays")
    # Deprecated spellings, still read (validated under their own name, so errors name them).
    max_trigger_depth: int | None = Field(default=None, ge=0, le=MAX_COUNT, alias="maxTriggerDepth")
    webhook_queue_size: int | None = Field(
        default=None, ge=0, le=MAX_COUNT, alias="webhookQueueSize"
    )

    @model_validator(mode="after")
    def _apply_deprecated_keys(self) -> ProjectConfig:
        # The model is frozen; this runs once, during validation.
        if self.max_trigger_depth is not None and "max_call_depth" not in self.model_fields_set:
            object.__setattr__(self, "max_call_depth", self.max_trigger_depth)
        if self.webhook_queue_size is not None and "work_queue_size" not in self.model_fields_set:
            object.__setattr__(self, "work_queue_size", self.webhook_queue_size)
        return self
