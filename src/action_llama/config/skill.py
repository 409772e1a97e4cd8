"""SKILL.md: YAML frontmatter between `---` lines, then the markdown instructions."""

from __future__ import annotations

from dataclasses import dataclass

from action_llama.config._base import Strict
from action_llama.frontmatter import split_frontmatter


@dataclass(frozen=True, kw_only=True)
class SkillFrontmatter(Strict):
    """Keys SKILL.md frontmatter may hold. `name` is informational: the folder names the agent."""

    name: str | None = None
    description: str | None = None
    license: str | None = None
    compatibility: str | None = None


@dataclass(frozen=True)
class SkillFile:
    """A parsed SKILL.md."""

    frontmatter: SkillFrontmatter
    body: str


__all__ = ["SkillFile", "SkillFrontmatter", "split_frontmatter"]
