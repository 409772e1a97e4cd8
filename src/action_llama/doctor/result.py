"""One result of `al doctor`: what was checked, how it went, and what to do about it.

Its own module so that runtimes can contribute checks without importing the doctor's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One result: `fix` says what to do about a warning or a failure."""

    name: str
    status: Status
    detail: str
    fix: str | None = None
