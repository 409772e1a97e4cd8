"""A loaded, validated project: what every other subsystem receives.

Settings that combine the project's `config.toml` with an agent's (its timeout, scale, queue
size) are resolved here once, when the project is loaded, so the scheduler, the gateway and
the runs all see the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from action_llama.config import (
    AgentFileConfig,
    ModelConfig,
    NetworkConfig,
    ProjectConfig,
    SkillFile,
)
from action_llama.layout import STATE_DIR


@dataclass(frozen=True)
class Agent:
    """One agent folder, resolved against the project config."""

    name: str
    path: Path
    skill: SkillFile
    config: AgentFileConfig
    models: tuple[tuple[str, ModelConfig], ...]
    #: Seconds before a run is stopped: the agent's `timeout`, else `[local].timeout`.
    timeout: int
    #: Runs at once: the agent's `scale`, else `defaultAgentScale`; 0 (disabled) also when
    #: the project's `scale` is 0.
    scale: int
    #: Items its work queue holds: `maxWorkQueueSize`, else the project's `workQueueSize`.
    queue_size: int
    #: The agent's Dockerfile as loaded (None: it has none).
    dockerfile_text: str | None = None
    #: The agent's own `[network]`, else the project's.
    network: NetworkConfig = field(default_factory=NetworkConfig)
    #: Model tokens one run may use (`[limits] tokens_per_run`, the agent's else the
    #: project's); None: no cap.
    tokens_per_run: int | None = None

    @property
    def network_file(self) -> str:
        """The file whose `[network]` applies to this agent (relative to the project)."""
        if self.config.network is not None:
            return f"agents/{self.name}/config.toml"
        return "config.toml"

    @property
    def dockerfile(self) -> Path | None:
        return None if self.dockerfile_text is None else self.path / "Dockerfile"

    @property
    def script(self) -> Path | None:
        path = self.path / "test-script.sh"
        return path if path.is_file() else None


@dataclass(frozen=True)
class Project:
    """A project directory: config plus agents, sorted by name."""

    root: Path
    config: ProjectConfig
    agents: dict[str, Agent] = field(default_factory=dict)
    #: Variables of `al`'s own environment every run is given (`config.environment`).
    run_env: Mapping[str, str] = field(default_factory=dict)
    #: The project Dockerfile as loaded (None: it has none).
    dockerfile_text: str | None = None

    @property
    def cap(self) -> int | None:
        """The project's `scale`: at most that many runs at once across its agents."""
        return self.config.scale

    @property
    def disabled(self) -> frozenset[str]:
        """Agents that take no work (scale 0): refused, and never matched by webhooks."""
        return frozenset(name for name, agent in self.agents.items() if agent.scale == 0)

    @property
    def dockerfile(self) -> Path | None:
        return None if self.dockerfile_text is None else self.root / "Dockerfile"

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR
