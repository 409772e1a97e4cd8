"""Cron expressions: standard 5 fields, or 6 with seconds first (as the original's croner)."""

from __future__ import annotations


def check_cron(expr: str) -> None:
    """Raise ValueError with a readable reason when `expr` is not a valid schedule."""
    from croniter import croniter

    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f'"{expr}" has {len(fields)} fields; a schedule has 5 (minute hour day month weekday) '
            'or 6 with seconds first, for example "*/15 * * * *"'
        )
    try:
        croniter(expr, second_at_beginning=len(fields) == 6)
    except (ValueError, KeyError) as exc:
        raise ValueError(f'"{expr}" is not a valid cron expression ({exc})') from exc
