"""HTML out of Jinja2 templates (in the package, autoescaped), with the filters they use.

Times arrive as the payloads write them (ISO 8601 in UTC) and leave as `<time>` elements whose
text is relative ("3m ago"); the browser keeps that text current (static/app.js), so an idle
page needs nothing from the daemon.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import time
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from action_llama.runs.records import format_record
from action_llama.timespan import span

#: Stands for the session's CSRF token in renders shared by several sessions (see `Renders`);
#: each session's copy gets its own token in its place.
CSRF_SLOT = "__al_csrf_slot__"


def _when(value: object) -> datetime | None:
    """A time from a payload (ISO 8601) or from the epoch; None for anything else (a field
    the payload does not have)."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return None


def moment(value: object, empty: str = "-") -> Markup:
    """A `<time>` saying how long ago (or how soon) `value` is; its title is the local time."""
    when = _when(value)
    if when is None:
        return Markup(escape(empty))
    delta = when.timestamp() - time.time()
    text = f"in {span(delta)}" if delta > 0 else f"{span(delta)} ago"
    local = when.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Made of digits and our own words only: nothing to escape (and Markup.format is slow).
    return Markup(f'<time datetime="{stamp}" title="{local}">{text}</time>')


def clock(value: object) -> str:
    when = _when(value)
    return "-" if when is None else when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: object) -> str:
    """`0.4s`, `12s`, `3m 05s`, `2h 04m`."""
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def count(value: object) -> str:
    """`950`, `12.3k`, `4.1M`."""
    if not isinstance(value, int | float):
        return "-"
    if value < 1000:
        return str(value)
    if value < 1_000_000:
        return f"{value / 1000:.1f}k"
    return f"{value / 1_000_000:.1f}M"


def money(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"${value:.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def bars(started: list[dict[str, int]]) -> dict[str, Any]:
    """A chart of runs started per bucket: (ok, not ok) per bucket, and the tallest total."""
    pairs = []
    for counts in started:
        ok = counts.get("completed", 0) + counts.get("rerun", 0)
        pairs.append((ok, sum(counts.values()) - ok))
    return {"bars": pairs, "tallest": max((ok + bad for ok, bad in pairs), default=0)}


def log_line(record: dict[str, Any]) -> str:
    """One record as `al logs` prints it."""
    return format_record(record)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _asset_version() -> str:
    """A digest of the static files: their URLs change when they do (long browser caching)."""
    digest = hashlib.sha256()
    root = resources.files("action_llama.dashboard") / "static"
    stack = [root]
    while stack:
        folder = stack.pop()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                stack.append(entry)
            else:
                digest.update(entry.name.encode())
                digest.update(entry.read_bytes())
    return digest.hexdigest()[:12]


@functools.cache
def environment() -> Environment:
    """The templates' environment, made once per process (templates compile on first use)."""
    env = Environment(
        loader=PackageLoader("action_llama.dashboard", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        moment=moment,
        clock=clock,
        duration=duration,
        count=count,
        money=money,
        log_line=log_line,
        bars=bars,
        pretty=pretty,
    )
    env.globals["asset_version"] = _asset_version()
    return env


class Templates:
    """The dashboard's templates, loaded once."""

    def __init__(self) -> None:
        self.env = environment()

    def render(self, template: str, /, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    async def page(self, template: str, /, **context: Any) -> str:
        """`render` in a worker thread: a template's first use reads its file, and a big page
        takes tens of milliseconds the event loop must not lose."""
        return await asyncio.to_thread(self.render, template, **context)
