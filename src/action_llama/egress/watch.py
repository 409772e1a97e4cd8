"""What a run's log says about its egress: each denied destination once, as a warning naming
the fix, and the proxy going away mid-run.

The run service inserts these records into the run's log beside the run's own output; they
carry `"source": "egress"` (`INSERTED_SOURCES`), so a restarted scheduler that replays the
run's output knows they are not part of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from action_llama.egress.names import HEARTBEAT_FILE
from action_llama.egress.records import Tail, records_path
from action_llama.egress.registry import registrations

POLL_SECONDS = 0.25
#: A heartbeat older than this means the proxy is gone.
STALE_SECONDS = 5.0
SOURCE = "egress"
#: `source` of the records al inserts into a run's log (not lines the run printed).
INSERTED_SOURCES = (SOURCE, "al")

Emit = Callable[[dict[str, Any]], None]


def note(msg: str, level: str = "warn", source: str = SOURCE, **fields: Any) -> dict[str, Any]:
    return {"ts": int(time.time() * 1000), "level": level, "msg": msg, "source": source, **fields}


def is_inserted(line: bytes) -> bool:
    """Whether a stored log line is one al inserted (its JSON is written by `json.dumps`)."""
    return any(f'"source": "{s}"'.encode() in line for s in INSERTED_SOURCES)


def warning_for(record: dict[str, Any]) -> dict[str, Any] | None:
    """The log record for one egress record (None when it needs none)."""
    if record.get("kind") == "limit":
        return note(
            f"model broker: {record.get('reason')}; the run is stopped",
            level="error",
            tokens=record.get("tokens"),
        )
    if record.get("decision") != "denied":
        return None
    host, port, fix = record.get("host"), record.get("port"), record.get("fix", "")
    if record.get("kind") == "dns":
        return note(f"egress: DNS lookup of {host} refused (runs resolve no names); {fix}")
    return note(
        f"egress to {host}:{port} blocked by [network] of agent {record.get('agent')}; {fix}",
        host=host,
        port=port,
    )


class EgressWatch:
    """Follows one run's egress records and the proxy's heartbeat."""

    def __init__(
        self,
        state: Path,
        run_id: str,
        emit: Emit,
        on_limit: Callable[[], None] = lambda: None,
    ):
        self.state = state
        self.run_id = run_id
        self.emit = emit
        #: Called once when the broker records that the run reached its token limit.
        self.on_limit = on_limit
        self.limited = False
        self.tail = Tail(records_path(state, run_id))
        self.warned: set[tuple[object, ...]] = set()
        self.proxy_lost = False

    def check(self) -> None:
        for record in self.tail.new():
            key = (record.get("kind"), record.get("host"), record.get("port"))
            warning = warning_for(record)
            if warning is not None and key not in self.warned:
                self.warned.add(key)
                self.emit(warning)
            if record.get("kind") == "limit" and not self.limited:
                self.limited = True
                self.on_limit()
        self._check_proxy()

    def _check_proxy(self) -> None:
        if self.proxy_lost:
            return
        try:
            age = time.time() - (self.state / HEARTBEAT_FILE).stat().st_mtime
        except FileNotFoundError:
            return
        if age > STALE_SECONDS and any(r.run == self.run_id for r in registrations(self.state)):
            self.proxy_lost = True
            self.emit(
                note(
                    f"egress: the proxy stopped answering {int(age)} s ago: this run has no "
                    "network until it is back (al doctor; the next run starts it again)"
                )
            )

    async def follow(self) -> None:
        """Check every POLL_SECONDS until cancelled."""
        while True:
            self.check()
            await asyncio.sleep(POLL_SECONDS)
