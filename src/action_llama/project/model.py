"""A loaded, validated project: what every other subsystem receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from action_llama.config import AgentFileConfig, ModelConfig, ProjectConfig, SkillFile
from action_llama.layout import STATE_DIR


@dataclass(frozen=True)
class Agent:
    """One agent folder, resolved against the project config."""

    name: str
    path: Path
    skill: SkillFile
    config: AgentFileConfig
    models: tuple[tuple[str, ModelConfig], ...]
    timeout: int

    @property
    def dockerfile(self) -> Path | None:
        path = self.path / "Dockerfile"
        return path if path.is_file() else None

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

    @property
    def dockerfile(self) -> Path | None:
        path = self.root / "Dockerfile"
        return path if path.is_file() else None

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR
