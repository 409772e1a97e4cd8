"""Hot reload: pick up edits to the project while the daemon runs, without a restart.

`Reloader.watch` polls the modification times of `config.toml`, the project `Dockerfile`,
`agents/` and `shared/` once a second (stdlib only: a handful of `stat` calls, and it works the
same on every platform and filesystem, network mounts included). When anything changed it loads
the project again. An invalid project is reported (file and key, as the CLI says it) and the
daemon keeps running the previous one; so does a project whose images fail to build. Otherwise the
new project is swapped in whole: scheduler scales, cron times, the gateway's webhook routing, and
the images of container agents (the chain's content keys make unchanged images free).

Runs already going keep the definition they started with. A removed agent's queued items stay in
the durable queue (nothing accepted is dropped silently): they run if the agent comes back, and
the reload says how many are waiting. Pauses are kept by agent name, so they apply to agents and
schedules a reload brings back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from action_llama.errors import ActionLlamaError

if TYPE_CHECKING:
    from action_llama.credentials.store import CredentialStore
    from action_llama.gateway import GatewaySettings
    from action_llama.project import Project
    from action_llama.runs.service import RunService
    from action_llama.scheduler.core import Scheduler
    from action_llama.scheduler.cron import CronLoop

#: What a reload watches, relative to the project root (`.al/` and the like are not in it).
WATCHED = ("config.toml", "Dockerfile", "agents", "shared")
POLL_INTERVAL = 1.0

Fingerprint = dict[str, tuple[int, int]]


def fingerprint(root: Path) -> Fingerprint:
    """(mtime_ns, size) of every watched file. Hidden names (editor swap files, `.git`) are
    skipped; symlinked folders are followed, each once."""
    files: Fingerprint = {}
    seen: set[tuple[int, int]] = set()
    for name in WATCHED:
        top = root / name
        if top.is_file():
            _add(files, top)
            continue
        for folder, dirs, names in os.walk(top, followlinks=True):
            try:
                info = os.stat(folder)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) in seen:
                dirs[:] = []
                continue
            seen.add((info.st_dev, info.st_ino))
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for file in names:
                if not file.startswith("."):
                    _add(files, Path(folder, file))
    return files


def _add(files: Fingerprint, path: Path) -> None:
    try:
        info = path.stat()
    except OSError:  # removed between listing and stat: the next poll sees it gone
        return
    files[str(path)] = (info.st_mtime_ns, info.st_size)


@dataclass
class Current:
    """The project the daemon runs now and what is derived from it; a reload replaces them."""

    project: Project
    image_ids: dict[str, str]
    settings: GatewaySettings


class Reloader:
    """Applies a changed project to a running daemon (see the module docstring)."""

    def __init__(
        self,
        current: Current,
        *,
        scheduler: Scheduler,
        cron: CronLoop,
        services: dict[str, RunService],
        credentials: CredentialStore,
        build: Callable[[Project], dict[str, str]],
        note: Callable[[str], None],
        seen: Fingerprint | None = None,
    ):
        self.current = current
        self.scheduler = scheduler
        self.cron = cron
        self.services = services
        self.credentials = credentials
        self.build = build
        self.note = note
        #: The files as `current.project` was loaded from them (or as they are now).
        self.seen = seen if seen is not None else fingerprint(current.project.root)

    async def watch(self, interval: float = POLL_INTERVAL) -> None:
        """Reload whenever the watched files change, until cancelled."""
        root = self.current.project.root
        while not self.scheduler.stopping:
            await asyncio.sleep(interval)
            now = await asyncio.to_thread(fingerprint, root)
            if now != self.seen:
                self.seen = now
                await self.reload()

    async def reload(self) -> bool:
        """Load the project again and swap it in; False (and the reason noted) if it is not
        valid or its images do not build."""
        from action_llama.project import load_project

        old = self.current.project
        try:
            new = await asyncio.to_thread(load_project, old.root)
            image_ids = await asyncio.to_thread(self.build, new)
        except ActionLlamaError as exc:
            hint = f"\nhint: {exc.hint}" if exc.hint else ""
            self.note(f"reload: error: {exc}{hint}\nreload: still running the previous project")
            return False
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            self.note(f"reload: error: cannot read the project:{where}: {exc.strerror or exc}")
            return False
        self._swap(new, image_ids)
        self.note("reload: " + describe_changes(old, new, self.current.image_ids, image_ids))
        self._report_orphans(old, new)
        self.current.image_ids = image_ids
        for problem in await asyncio.to_thread(problems_of, new, self.credentials):
            self.note(f"reload: warning: {problem}")
        return True

    def _swap(self, new: Project, image_ids: dict[str, str]) -> None:
        from action_llama.gateway import GatewaySettings

        self.current.project = new
        self.current.settings = GatewaySettings.from_project(new, self.credentials)
        for service in self.services.values():
            service.project = new
        self.scheduler.replace_project(new)
        self.cron.reload()
        if not self.scheduler.stopping:
            self.scheduler.drain()  # a raised scale (or a returning agent) may take queued work

    def _report_orphans(self, old: Project, new: Project) -> None:
        for name in sorted(set(old.agents) - set(new.agents)):
            waiting = self.scheduler.state.queue.len(name)
            if waiting:
                self.note(
                    f"reload: {name} was removed with {waiting} item(s) queued: they stay "
                    "queued and run if the agent comes back"
                )


def problems_of(project: Project, credentials: CredentialStore) -> list[str]:
    """What `al start` would refuse to start with, among the checks cheap enough to make on
    every reload (agents, credentials, webhooks): reported, since the project is valid."""
    from action_llama.daemon.preflight import is_fatal
    from action_llama.doctor.checks import check_agent, check_credentials, check_webhooks

    checks = [
        check
        for agent in project.agents.values()
        for check in (check_agent(agent), check_credentials(agent, credentials))
    ]
    checks += check_webhooks(project, credentials)
    problems = []
    for check in filter(is_fatal, checks):
        fix = f" (fix: {check.fix})" if check.fix else ""
        problems.append(f"{check.name}: {check.detail}{fix}")
    return problems


def describe_changes(
    old: Project, new: Project, old_images: dict[str, str], new_images: dict[str, str]
) -> str:
    """One line: which agents were added, removed, changed or got a new image."""
    added = sorted(set(new.agents) - set(old.agents))
    removed = sorted(set(old.agents) - set(new.agents))
    changed = sorted(
        name
        for name in set(old.agents) & set(new.agents)
        if old.agents[name] != new.agents[name] or old_images.get(name) != new_images.get(name)
    )
    parts = [
        f"{label} {', '.join(names)}"
        for label, names in (("added", added), ("removed", removed), ("changed", changed))
        if names
    ]
    if old.config != new.config:
        parts.append("config.toml changed")
    return "project reloaded" + (f": {'; '.join(parts)}" if parts else " (no agent changed)")
