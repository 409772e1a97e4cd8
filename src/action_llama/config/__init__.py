"""Typed models of the files a user writes: project and agent `config.toml`, SKILL.md.

Pure data and validation; reading files and naming them in errors is `action_llama.project`.
"""

from action_llama.config.agent import AgentFileConfig, Hooks, RuntimeConfig, WebhookTrigger
from action_llama.config.network import LimitsConfig, NetworkConfig
from action_llama.config.project import (
    GatewayConfig,
    LocalConfig,
    ModelConfig,
    ProjectConfig,
    SwarmConfig,
    TelemetryConfig,
    WebhookSource,
)
from action_llama.config.skill import SkillFile, SkillFrontmatter

__all__ = [
    "AgentFileConfig",
    "GatewayConfig",
    "Hooks",
    "LimitsConfig",
    "LocalConfig",
    "ModelConfig",
    "NetworkConfig",
    "ProjectConfig",
    "RuntimeConfig",
    "SkillFile",
    "SkillFrontmatter",
    "SwarmConfig",
    "TelemetryConfig",
    "WebhookSource",
    "WebhookTrigger",
]
