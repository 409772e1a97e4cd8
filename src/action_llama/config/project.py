"""The project `config.toml`: `[local]`, `[models.*]`, `[gateway]`, `[webhooks.*]`, scheduler keys.

Defaults follow the seed where it and the original's code disagree: `local.cpus` is 2 and
`local.timeout` is 900 seconds.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from action_llama.config._base import MAX_COUNT, MAX_DAYS, MAX_SECONDS, After, Strict, setting
from action_llama.config._base import validate as validate_table
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

# Patterns stay strings, compiled on first use (see config/agent.py).
# At most 12 digits and 9 decimals: a size is never longer, and the number stays exact.
_MEMORY = r"(?i)^(\d{1,12})(?:\.(\d{1,9}))?([bkmgt]?)b?$"
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
#: Docker refuses limits under 6 MiB.
MIN_MEMORY = 6 * 1024**2
#: 1 PiB: above any host's memory, below what Docker's 64-bit limits hold.
MAX_MEMORY = 1024**5
#: A Docker image reference: [registry[:port]/]name[/name...][:tag][@digest].
_IMAGE = (
    r"^(?:[A-Za-z0-9.-]+(?::\d{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::\w[\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


def parse_memory(value: str) -> int:
    """Bytes of a Docker-style size ("4g", "512m", "1.5g"); ValueError when malformed."""
    match = re.match(_MEMORY, value.strip())
    if not match:
        raise ValueError(f'"{value}" is not a size; write it like "4g" or "512m"')
    whole: str = match[1]
    fraction: str = match[2] or ""
    scale: int = _UNITS[match[3].lower()]
    # Integer arithmetic: a float of many digits would round (or overflow to infinity).
    divisor: int = 10 ** len(fraction)
    return int(whole) * scale + int(fraction or "0") * scale // divisor


def _memory_is_a_size(value: str) -> str:
    size = parse_memory(value)
    if size < MIN_MEMORY:
        raise ValueError(f'"{value}" is below Docker\'s minimum of 6m')
    if size > MAX_MEMORY:
        raise ValueError(f'"{value}" is more than 1024t')
    return value


def _image_is_a_reference(value: str) -> str:
    if len(value) > 255 or not re.match(_IMAGE, value):
        raise ValueError(
            f'"{value}" is not an image name; write it like "al-agent:latest" or '
            '"registry.example.com/team/agent:1.2"'
        )
    return value


@dataclass(frozen=True, kw_only=True)
class LocalConfig(Strict):
    """`[local]`: the container every run gets."""

    image: Annotated[str, After(_image_is_a_reference)] = DEFAULT_IMAGE
    memory: Annotated[str, After(_memory_is_a_size)] = "4g"
    cpus: float = setting(2, ge=0.01, le=1024)
    timeout: int = setting(DEFAULT_TIMEOUT, gt=0, le=MAX_SECONDS)
    enabled: bool = True

    @property
    def memory_bytes(self) -> int:
        return parse_memory(self.memory)


@dataclass(frozen=True, kw_only=True)
class ModelConfig(Strict):
    """`[models.<name>]`: one named model an agent can list."""

    provider: Literal[PROVIDERS]  # type: ignore[valid-type]  # a tuple of literals is valid here
    model: str = setting(min_length=1)
    auth_type: Literal["api_key", "oauth_token", "pi_auth"] = setting("api_key", alias="authType")
    thinking_level: Literal["off", "minimal", "low", "medium", "high", "xhigh"] | None = setting(
        None, alias="thinkingLevel"
    )
    base_url: str | None = None

    def __post_init__(self) -> None:
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


@dataclass(frozen=True, kw_only=True)
class GatewayConfig(Strict):
    """`[gateway]`: the daemon's HTTP server."""

    port: int = setting(8080, ge=1, le=65535)
    url: str | None = None
    max_chat_sessions: int = setting(5, ge=0, le=MAX_COUNT, alias="maxChatSessions")


def _credential_is_an_instance(value: str) -> str:
    check_instance(value)
    return value


@dataclass(frozen=True, kw_only=True)
class WebhookSource(Strict):
    """`[webhooks.<source>]`: one place webhooks come from."""

    type: Literal[WEBHOOK_TYPES]  # type: ignore[valid-type]
    credential: Annotated[str, After(_credential_is_an_instance)] = "default"
    allow_unsigned: bool = setting(False, alias="allowUnsigned")


_REGISTRY = r"^[A-Za-z0-9.-]+(:\d{1,5})?(/[a-z0-9._/-]+)?$"


def _registry_is_an_address(value: str) -> str:
    if not re.match(_REGISTRY, value):
        raise ValueError(
            f'"{value}" is not a registry address; write host[:port], like '
            '"registry.internal:5000" (no scheme)'
        )
    return value


def _advertise_is_a_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+/?$", value):
        raise ValueError(
            f'"{value}" is not the gateway\'s address; write it like "http://10.0.0.5:8080"'
        )
    return value.rstrip("/")


@dataclass(frozen=True, kw_only=True)
class SwarmConfig(Strict):
    """`[swarm]`: how runs of `[runtime] type = "swarm"` agents reach the cluster and back."""

    #: host[:port] of the registry every node pulls the chain from (al pushes it there).
    registry: Annotated[str, After(_registry_is_an_address)] | None = None
    #: The gateway's URL as runs on the nodes reach it (default: the manager's address).
    advertise: Annotated[str, After(_advertise_is_a_url)] | None = None


@dataclass(frozen=True, kw_only=True)
class TelemetryConfig(Strict):
    """`[telemetry]`."""

    enabled: bool = False
    provider: Literal["otel", "none"] = "none"
    endpoint: str | None = None
    service_name: str | None = setting(None, alias="serviceName")
    headers: dict[str, str] = setting(factory=dict)
    sampling_rate: float = setting(1.0, ge=0, le=1, alias="samplingRate")


@dataclass(frozen=True, kw_only=True)
class ProjectConfig(Strict):
    """The whole project `config.toml` (every table optional)."""

    models: dict[str, ModelConfig] = setting(factory=dict)
    local: LocalConfig = setting(factory=LocalConfig)
    gateway: GatewayConfig = setting(factory=GatewayConfig)
    webhooks: dict[str, WebhookSource] = setting(factory=dict)
    telemetry: TelemetryConfig = setting(factory=TelemetryConfig)
    swarm: SwarmConfig = setting(factory=SwarmConfig)
    #: The default `[runtime]` of every agent (an agent's own keys override it).
    runtime: RuntimeConfig = setting(factory=RuntimeConfig)
    network: NetworkConfig = setting(factory=NetworkConfig)
    limits: LimitsConfig = setting(factory=LimitsConfig)
    project_name: str | None = setting(None, alias="projectName")
    max_reruns: int = setting(10, ge=0, le=MAX_COUNT, alias="maxReruns")
    max_call_depth: int = setting(3, ge=0, le=MAX_COUNT, alias="maxCallDepth")
    work_queue_size: int = setting(20, ge=0, le=MAX_COUNT, alias="workQueueSize")
    resource_lock_timeout: int = setting(1800, gt=0, le=MAX_SECONDS, alias="resourceLockTimeout")
    scale: int | None = setting(None, ge=0, le=MAX_COUNT)
    default_agent_scale: int = setting(1, ge=0, le=MAX_COUNT, alias="defaultAgentScale")
    history_retention_days: int = setting(14, ge=0, le=MAX_DAYS, alias="historyRetentionDays")
    # Deprecated spellings, still read (validated under their own name, so errors name them).
    max_trigger_depth: int | None = setting(None, ge=0, le=MAX_COUNT, alias="maxTriggerDepth")
    webhook_queue_size: int | None = setting(None, ge=0, le=MAX_COUNT, alias="webhookQueueSize")

    @classmethod
    def from_toml(cls, data: dict[str, Any]) -> ProjectConfig:
        """The project's config.toml (parsed) validated, its deprecated spellings applied where
        the current key is not written; pydantic.ValidationError when it is not valid."""
        config = validate_table(cls, data)
        renamed: dict[str, Any] = {}
        if config.max_trigger_depth is not None and "maxCallDepth" not in data:
            renamed["max_call_depth"] = config.max_trigger_depth
        if config.webhook_queue_size is not None and "workQueueSize" not in data:
            renamed["work_queue_size"] = config.webhook_queue_size
        return dataclasses.replace(config, **renamed) if renamed else config
