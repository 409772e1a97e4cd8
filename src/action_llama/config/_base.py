"""Shared pydantic settings for every config model, and the bounds of their numbers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

#: Ceilings of the numbers config files hold: far above any real setting, and below what the
#: OS, SQLite, asyncio and Docker can take (a timeout of 2**70 seconds overflows them).
MAX_SECONDS = 366 * 24 * 3600
MAX_COUNT = 1_000_000
MAX_DAYS = 36_500


class Strict(BaseModel):
    """A config table: unknown keys are errors (a typo must not become a silent default), and
    `inf` / `nan` are not numbers a setting can take."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=False, allow_inf_nan=False
    )
