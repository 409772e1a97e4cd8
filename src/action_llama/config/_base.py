"""Shared pydantic settings for every config model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A config table: unknown keys are errors (a typo must not become a silent default)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)
