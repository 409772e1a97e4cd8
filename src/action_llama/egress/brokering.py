"""The host's side of the model broker (`broker.py`): which runs are brokered, their keys.

Every run is brokered, whatever its `[network]` mode (a run under `open` reaches its brokered
hosts and models through the proxy too, everything else as it likes): the keys of its models
(but those on its own loopback) are not staged into it. The host writes
them, for the run's life, to `<keys dir>/<run id>.json` (0600, in /dev/shm when it can, so keys
never touch a disk), a folder the project's proxy container mounts read-only at /keys and no
run can read; the run's registration names its models' endpoints and its token cap; the run
gets the broker's URL and a token of its own (`broker_env`), which its model client sends as
its key.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from action_llama.egress.names import BROKER_PREFIX as PREFIX
from action_llama.providers import BROKER_TOKEN_VAR, BROKER_URL_VAR, CA_VAR, endpoint

if TYPE_CHECKING:
    from action_llama.project import Agent

#: Exit code and status of a run stopped at its token limit.
EXIT_TOKEN_LIMIT = 14


@dataclass(frozen=True)
class BrokerPlan:
    """What the proxy brokers for one run: (model name, endpoint) pairs and its token cap for
    the model broker; the hosts whose TLS it terminates to swap the run's placeholders, and
    the run's CA certificate for them (`placeholders.py`)."""

    models: tuple[tuple[str, str], ...]
    tokens_per_run: int | None = None
    intercept: tuple[str, ...] = ()
    ca_pem: str = ""

    @property
    def needs_proxy(self) -> bool:
        """Whether the run reaches something only through the proxy: its models' broker, or
        the hosts where its placeholders are swapped."""
        return bool(self.models or self.intercept)


def plan_for(agent: Agent) -> BrokerPlan:
    """The broker plan of runs of `agent` (which models the broker forwards, its token cap)."""
    models = tuple(
        (name, url)
        for name, model in agent.models
        if (url := endpoint(model.provider, model.base_url)) is not None and not _loopback(url)
    )
    return BrokerPlan(models, agent.tokens_per_run)


def uses_proxy(agent: Agent) -> bool:
    """Whether runs of `agent` go through the proxy: always under a checked `[network]`;
    under `open`, when it has models the broker forwards or tokens brokered as placeholders."""
    from action_llama.credentials.refs import CredentialRef
    from action_llama.credentials.types import PLACEHOLDERS, brokering

    if agent.network.mode != "open":
        return True
    raw = set(agent.config.raw_credentials)
    listed = [r for r in agent.config.credentials if r not in raw]
    return bool(plan_for(agent).models) or any(
        brokering(CredentialRef.parse(r).type) == PLACEHOLDERS for r in listed
    )


def _loopback(url: str) -> bool:
    """A server on the run's own loopback (a host-user run's local Ollama): the run reaches it
    itself (its `[network]` lists it), the proxy could not."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _keys_top() -> Path:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"al-keys-{os.geteuid()}"


def keys_dir(project_id: str) -> Path:
    """The folder of a project's run keys on the host (made 0700 when missing)."""
    top = _keys_top()
    top.mkdir(mode=0o700, exist_ok=True)
    folder = top / project_id
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def drop_keys_dir(project_id: str) -> None:
    """Remove a project's keys folder with its proxy (what is left in it is of ended runs):
    /dev/shm is memory, and every project would leave one behind."""
    shutil.rmtree(_keys_top() / project_id, ignore_errors=True)


def write_keys(
    project_id: str,
    run_id: str,
    models: dict[str, str],
    tokens: list[dict[str, object]] | None = None,
    server_pem: str = "",
) -> None:
    """Hand the proxy the run's secrets for the run's life: its model keys (model name →
    key), its placeholders with their values and hosts, and the TLS key and certificate it
    presents to the run for those hosts. Nothing is written for a run that has none (its
    project may have no proxy to remove the folder: an open agent's)."""
    if not models and not tokens and not server_pem:
        return
    folder = keys_dir(project_id)
    files = {f"{run_id}.json": json.dumps({"models": models, "tokens": tokens or []})}
    if server_pem:
        files[f"{run_id}.pem"] = server_pem
    for name, text in files.items():
        partial = folder / f".{name}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        partial.replace(folder / name)


def held_token_values(project_id: str, run_id: str) -> tuple[str, ...]:
    """The real values the proxy puts in place of the run's placeholders (redacted from the
    output of a run adopted from an `al` process that died, as its launcher redacted them)."""
    try:
        data = json.loads((_keys_top() / project_id / f"{run_id}.json").read_text("utf-8"))
    except (OSError, ValueError):
        return ()
    rows = data.get("tokens") if isinstance(data, dict) else None
    return tuple(str(r["value"]) for r in rows or [] if isinstance(r, dict) and r.get("value"))


def remove_keys(project_id: str, run_id: str) -> None:
    """Forget the run's secrets: its placeholders are worthless from here on."""
    for suffix in (".json", ".pem"):
        with contextlib.suppress(OSError):
            (_keys_top() / project_id / f"{run_id}{suffix}").unlink(missing_ok=True)


def broker_env(
    proxy_address: str, port: int, run_id: str, secret: str, plan: BrokerPlan | None
) -> dict[str, str]:
    env = {
        BROKER_URL_VAR: f"http://{proxy_address}:{port}{PREFIX.rstrip('/')}",
        BROKER_TOKEN_VAR: f"{run_id}.{secret}",
    }
    if plan is not None and plan.ca_pem:
        env[CA_VAR] = plan.ca_pem
    return env
