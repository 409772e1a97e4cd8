"""`al logs AGENT --egress`: what the egress proxy did for each connection attempt of a run."""

from __future__ import annotations

import json
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

import typer


def _size(count: int) -> str:
    for unit in ("B", "kB", "MB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000  # type: ignore[assignment]  # a float from here on, shown rounded
    return f"{count:.1f} GB"


def describe(record: dict[str, Any]) -> str:
    """One line per attempt: time, decision, kind, destination, then why or how much."""
    ts = record.get("ts")
    clock = datetime.fromtimestamp(ts / 1000).strftime("%H:%M:%S") if isinstance(ts, int) else ""
    # A `limit` record names the model whose answer reached the cap, no port.
    where = f"{record.get('host')}" + (f":{record['port']}" if record.get("port") else "")
    head = f"{clock} {record.get('decision', '?'):<8} {record.get('kind', '?'):<8} {where}"
    if record.get("decision") == "allowed":
        sent, received = int(record.get("sent") or 0), int(record.get("received") or 0)
        detail = f"sent {_size(sent)}, received {_size(received)}, {record.get('ms', 0)} ms"
        if record.get("rule"):
            detail += f" · {record['rule']}"
        if record.get("tokens") is not None:  # a model request the broker forwarded
            detail += f" · {record['tokens']} tokens"
        if record.get("reason"):  # TLS terminated for the run's placeholders
            detail += f" · {record['reason']}"
        return f"{head}  {detail}"
    fix = f"; fix: {record['fix']}" if record.get("fix") else ""
    return f"{head}  {record.get('reason', '')}{fix}"


def show_egress(project: Path, run_id: str, lines: int, as_json: bool) -> None:
    from action_llama.egress.records import read, records_path
    from action_llama.egress.service import state_of

    found = deque(read(records_path(state_of(project), run_id)), maxlen=max(lines, 0) or None)
    if not found and not as_json:
        typer.echo(
            'No connection attempts recorded (a run with [network] mode = "open" '
            "has none; so has a run that made no connection)."
        )
    for record in found:
        typer.echo(json.dumps(record, ensure_ascii=False) if as_json else describe(record))
