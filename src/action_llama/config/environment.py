"""What of `al`'s own environment reaches runs (tuning knobs, never secrets)."""

from __future__ import annotations

import os

#: Variables handed from `al`'s environment to every run.
PASSED_THROUGH = ("AL_MODEL_BACKOFF_SECONDS",)


def passed_to_runs() -> dict[str, str]:
    """The variables of `PASSED_THROUGH` that are set here."""
    return {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
