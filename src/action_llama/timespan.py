"""How long something was or will be, the way people read it at a glance."""

from __future__ import annotations


def span(seconds: float) -> str:
    """`42s`, `5m`, `3h`, `2d` (rounded; the sign dropped: say "ago" or "in" around it)."""
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 129600:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"
