"""Cron expressions: standard 5 fields, or 6 with seconds first (as the original's croner)."""

from __future__ import annotations

from datetime import datetime


def check_cron(expr: str) -> None:
    """Raise ValueError with a readable reason when `expr` is not a valid schedule, or one
    that can never fire ("0 0 31 2 *": there is no 31 February)."""
    from croniter import croniter

    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f'"{expr}" has {len(fields)} fields; a schedule has 5 (minute hour day month weekday) '
            'or 6 with seconds first, for example "*/15 * * * *"'
        )
    try:
        schedule = croniter(expr, second_at_beginning=len(fields) == 6)
    except (ValueError, KeyError, IndexError, OverflowError) as exc:
        raise ValueError(f'"{expr}" is not a valid cron expression ({exc})') from exc
    try:
        schedule.get_next(datetime)
    except (ValueError, OverflowError) as exc:
        raise ValueError(
            f'"{expr}" never fires (no date matches its day and month fields, such as 31 February)'
        ) from exc
