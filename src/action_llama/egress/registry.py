"""Which run a connection to the proxy belongs to: one registration file per running run.

Standard library only (the proxy reads these in its container). The state folder of a project's
egress (`.al/egress/`, `/egress` in the proxy) holds

    runs/ip-<address>.json    a container run, known by its address on its agent's network
    runs/run-<run id>.json    a host-user run, known by the credentials in its proxy URL
    records/<run id>.jsonl    what the proxy did for each connection of the run (records.py)

A registration is written (create-exclusive: that is how a container run's address is
claimed) before the run starts and removed when it ends, so the proxy never sees a connection
from a run it does not know. The proxy re-reads the folder whenever it changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from action_llama.egress.rules import Policy, Rule

RUNS = "runs"
RECORDS = "records"


@dataclass(frozen=True)
class Registration:
    """One running run, as the proxy needs to know it."""

    run: str
    agent: str
    mode: str
    #: (pattern, ports, source) of each allow rule.
    rules: tuple[tuple[str, tuple[int, ...], str], ...] = ()
    #: The file whose `[network]` applies, named in the fix of a denied connection.
    file: str = "config.toml"
    #: Its address on the agent's network (container runs).
    address: str | None = None
    #: sha256 of the run's secret: in its proxy URL (host-user runs) and in the token its
    #: model client sends the broker (every run).
    token_sha256: str | None = None
    #: The scheduler gateway's port on the host, when the run has one.
    gateway: int | None = None
    extra: dict[str, str] = field(default_factory=dict)
    #: The models the broker forwards for the run: name → the endpoint its requests go to.
    models: dict[str, str] = field(default_factory=dict)
    #: Model tokens the run may use before the broker refuses more (None: no cap).
    tokens_per_run: int | None = None
    #: Host patterns whose TLS the proxy terminates to swap the run's placeholders (port 443).
    intercept: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"ip-{self.address}" if self.address else f"run-{self.run}"

    def policy(self) -> Policy:
        return Policy(self.mode, tuple(Rule(p, tuple(ports), s) for p, ports, s in self.rules))

    def accepts(self, token: str) -> bool:
        digest = hashlib.sha256(token.encode()).hexdigest()
        return self.token_sha256 is not None and hmac.compare_digest(digest, self.token_sha256)

    @classmethod
    def from_json(cls, text: str) -> Registration:
        data = json.loads(text)
        data["rules"] = tuple((p, tuple(ports), s) for p, ports, s in data.get("rules", ()))
        data["intercept"] = tuple(data.get("intercept", ()))
        return cls(**data)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def register(state: Path, registration: Registration) -> bool:
    """Write `registration`; False when its key is taken (the address is in use)."""
    folder = state / RUNS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{registration.key}.json"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(registration)))
    return True


def unregister(state: Path, key: str) -> None:
    (state / RUNS / f"{key}.json").unlink(missing_ok=True)


def registrations(state: Path) -> list[Registration]:
    """Every registration in `state` (unreadable ones skipped)."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(state / RUNS):
            if not entry.name.endswith(".json"):
                continue
            try:
                with open(entry.path, encoding="utf-8") as fh:
                    found.append(Registration.from_json(fh.read()))
            except (OSError, ValueError, TypeError):
                continue
    return found


class Registry:
    """The proxy's view of the registrations, re-read when the folder changes."""

    def __init__(self, state: Path):
        self.state = state
        self._seen: int | None = None
        self._by_address: dict[str, Registration] = {}
        self._by_run: dict[str, Registration] = {}

    @property
    def stamp(self) -> int | None:
        """The folder's timestamp when it was last read (changes with every registration)."""
        return self._seen

    def refresh(self, force: bool = False) -> None:
        try:
            stamp = os.stat(self.state / RUNS).st_mtime_ns
        except FileNotFoundError:
            stamp = 0
        if stamp == self._seen and not force:
            return
        self._seen = stamp
        found = registrations(self.state)
        self._by_address = {r.address: r for r in found if r.address}
        self._by_run = {r.run: r for r in found if r.token_sha256}

    def by_address(self, address: str) -> Registration | None:
        self.refresh()
        found = self._by_address.get(address)
        if found is None:
            # A registration written within the folder's timestamp granularity: look again.
            self.refresh(force=True)
            found = self._by_address.get(address)
        return found

    def by_credentials(self, run: str, token: str) -> Registration | None:
        self.refresh()
        found = self._by_run.get(run)
        if found is None:
            self.refresh(force=True)
            found = self._by_run.get(run)
        return found if found is not None and found.accepts(token) else None

    def gateways(self) -> set[int]:
        self.refresh()
        return {r.gateway for r in self._by_address.values() if r.gateway}
