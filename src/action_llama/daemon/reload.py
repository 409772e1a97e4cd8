"""Hot reload: pick up edits to the project while the daemon runs, without a restart.

`Reloader.watch` listens for file system events under the project (watchfiles: inotify and
its equivalents underneath, so an idle daemon costs nothing however many agents it has) on
`config.toml`, the project `Dockerfile`, `agents/` and `shared/`. When an event comes, the
watched files' modification times and sizes tell whether anything really changed (an editor
touching a file without changing it reloads nothing); if so the project is loaded again. An
invalid project is reported (file and key, as the CLI says it) and the daemon keeps running
the previous one; so does a project whose images fail to build. Otherwise the new project is
swapped in whole (`Daemon.replace`): scheduler scales, cron times, the gateway's webhook
routing, and the images of agents that need one (the chain's content keys make unchanged
images free).

Runs already going keep the definition they started with. A removed agent's queued items stay in
the durable queue (nothing accepted is dropped silently): they run if the agent comes back, and
the reload says how many are waiting. Pauses are kept by agent name, so they apply to agents and
schedules a reload brings back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from action_llama.errors import ActionLlamaError

if TYPE_CHECKING:
    from action_llama.credentials.store import CredentialStore
    from action_llama.daemon.main import Daemon
    from action_llama.project import Project

#: What a reload watches, relative to the project root (`.al/` and the like are not in it).
WATCHED = ("config.toml", "Dockerfile", "agents", "shared")
#: Milliseconds the watcher waits for more events after one, so a save of many files (a
#: `git checkout`) is one reload, not one each.
SETTLE_MS = 200

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
    except OSError:  # removed between listing and stat: the next event sees it gone
        return
    files[str(path)] = (info.st_mtime_ns, info.st_size)


def is_watched(root: Path, path: str) -> bool:
    """Whether an event at `path` concerns the project's definition (not `.al/`, not a
    hidden file or folder)."""
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        return False
    return bool(parts) and parts[0] in WATCHED and not any(p.startswith(".") for p in parts)


async def changes(root: Path, stop: asyncio.Event) -> AsyncIterator[None]:
    """Once per burst of events that concern the project's definition, until `stop`."""
    from watchfiles import awatch

    async for _ in awatch(
        root,
        watch_filter=lambda _change, path: is_watched(root, path),
        step=SETTLE_MS,
        stop_event=stop,
        yield_on_timeout=False,
    ):
        yield


class Reloader:
    """Applies a changed project to a running daemon (see the module docstring)."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon
        self.root = daemon.project.root
        #: The files as the daemon's project was loaded from them (taken when made, so edits
        #: made while the daemon checks and builds its project are reloaded once it runs).
        self.seen = fingerprint(self.root)

    async def watch(self) -> None:
        """Reload whenever the watched files change, until cancelled."""
        stop = asyncio.Event()
        try:
            await self._check()
            async for _ in changes(self.root, stop):
                await self._check()
        finally:
            stop.set()

    async def _check(self) -> None:
        now = await asyncio.to_thread(fingerprint, self.root)
        if now != self.seen:
            self.seen = now
            await self.reload()

    async def reload(self) -> bool:
        """Load the project again and swap it in; False (and the reason noted) if it is not
        valid or its images do not build."""
        from action_llama.images.build import build_images
        from action_llama.project import load_project

        daemon = self.daemon
        old, old_images = daemon.project, daemon.image_ids
        note = daemon.board.note
        try:
            new = await asyncio.to_thread(load_project, old.root)
            image_ids = await asyncio.to_thread(build_images, new)
        except ActionLlamaError as exc:
            hint = f"\nhint: {exc.hint}" if exc.hint else ""
            note(f"reload: error: {exc}{hint}\nreload: still running the previous project")
            return False
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            note(f"reload: error: cannot read the project:{where}: {exc.strerror or exc}")
            return False
        daemon.replace(new, image_ids)
        note("reload: " + describe_changes(old, new, old_images, image_ids))
        self._report_orphans(old, new)
        for problem in await asyncio.to_thread(problems_of, new, daemon.credentials):
            note(f"reload: warning: {problem}")
        return True

    def _report_orphans(self, old: Project, new: Project) -> None:
        queue = self.daemon.state.queue
        for name in sorted(set(old.agents) - set(new.agents)):
            waiting = queue.len(name)
            if waiting:
                self.daemon.board.note(
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
