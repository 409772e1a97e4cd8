"""Helpers of the dashboard tests: the test project, a backend that keeps a scheduler's
state, a browser-like client, and reading HTML and server-sent events."""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from typing import Any

import httpx2 as httpx
from fastapi.testclient import TestClient
from pydantic import JsonValue

from action_llama.gateway.testing import RecordingBackend
from action_llama.runs.store import RunStore
from action_llama.webhooks.receipt import Receipt

KEY = "operator-key-123"
ORIGIN = "http://127.0.0.1:8080"
PROJECT_FILES = {
    "config.toml": """
        [webhooks.hooks]
        type = "test"
        credential = "none"
        allowUnsigned = true

        [models.sonnet]
        provider = "anthropic"
        model = "claude-sonnet-4-5"
        """,
    "agents/dev/SKILL.md": "---\ndescription: fixes bugs\n---\nFix.\n",
    "agents/dev/config.toml": """
        models = ["sonnet"]
        credentials = ["github_token"]
        schedule = "*/5 * * * *"
        scale = 2
        [params]
        repo = "octo/app"
        [network]
        allow = ["pypi.org"]
        [[webhooks]]
        source = "hooks"
        events = ["deploy"]
        """,
    "agents/reviewer/SKILL.md": "---\ndescription: reviews\n---\nReview.\n",
    "agents/reviewer/test-script.sh": "#!/bin/sh\necho hi\n",
    "agents/listener/SKILL.md": "---\ndescription: listens\n---\nListen.\n",
    "agents/listener/test-script.sh": "#!/bin/sh\necho hi\n",
    "agents/listener/config.toml": (
        '[network]\nmode = "open"\n[[webhooks]]\nsource = "hooks"\nevents = ["deploy"]\n'
    ),
}


@dataclass
class SchedulerLike(RecordingBackend):
    """A RecordingBackend whose status is what a scheduler would say of its agents: idle,
    running (its runs) or paused."""

    async def status(self) -> Any:
        self.calls.append(("status", ()))
        agents: dict[str, JsonValue] = {}
        for name in sorted(self.agents or ()):
            running = sorted(run for run, agent in self.runs.items() if agent == name)
            paused = name in self.paused
            state = "paused" if paused or None in self.paused else "running" if running else "idle"
            agents[name] = {
                "state": state,
                "paused": paused,
                "scale": 2 if name == "dev" else 1,
                "running": list(running),
                "nextFire": "2099-01-01T00:00:00.000Z" if name == "dev" else None,
            }
        return {"paused": None in self.paused, "stopping": self.stopped, "agents": agents}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def text_of(html: str) -> str:
    """The page's text: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


class Browser:
    """A TestClient that behaves as a browser on the dashboard: keeps cookies, sends its
    Origin on POSTs, posts forms with the page's CSRF token."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def post(
        self,
        path: str,
        data: dict[str, str] | None = None,
        *,
        origin: str | None = ORIGIN,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {"Origin": origin} if origin else {}
        headers.update(kwargs.pop("headers", {}))
        form = {"csrf": self.csrf, **(data or {})}
        return self.client.post(path, data=form, headers=headers, follow_redirects=False, **kwargs)

    def login(self, key: str = KEY) -> httpx.Response:
        page = self.get("/login")
        answer = self.client.post(
            "/login",
            data={"key": key, "csrf": csrf_of(page.text), "next": "/"},
            headers={"Origin": ORIGIN},
            follow_redirects=False,
        )
        if answer.status_code == 303:
            self.csrf = csrf_of(self.get("/").text)
        return answer

    def events(self, path: str, count: int, headers: dict[str, str] | None = None) -> list[Event]:
        """The first `count` server-sent events of the stream at `path` (keepalives skipped),
        or fewer when the stream ends first."""
        found: list[Event] = []
        with self.client.stream("GET", path, headers=headers or {}) as answer:
            assert answer.status_code == 200, answer.read()
            for event in parse_events(bounded(answer)):
                found.append(event)
                if len(found) == count:
                    break
        return found


#: Seconds a test waits for a stream's next line before it fails.
STREAM_WAIT = 15.0


def bounded(answer: httpx.Response, wait: float = STREAM_WAIT) -> Iterator[str]:
    """The lines of a streamed answer; a test fails instead of hanging when none comes for
    `wait` seconds."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        try:
            for line in answer.iter_lines():
                lines.put(line)
        except Exception:  # the stream was closed under it (the test ended)
            pass
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=wait)
        except queue.Empty:
            raise AssertionError(f"the stream sent nothing for {wait}s") from None
        if line is None:
            return
        yield line


@dataclass
class Event:
    name: str
    data: str
    id: str | None


def parse_events(lines: Iterator[str]) -> Iterator[Event]:
    name, data, event_id = "message", [], None
    for line in lines:
        if line == "":
            if data:
                yield Event(name, "\n".join(data), event_id)
            name, data, event_id = "message", [], None
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "data:":
            data.append("")
        elif line.startswith("id: "):
            event_id = line[4:]


def record_run(
    store: RunStore,
    run_id: str,
    agent: str,
    *,
    status: str = "completed",
    started: float,
    took: float | None = 2.0,
    lines: list[str] = (),  # type: ignore[assignment]
    trigger: str = "manual",
    prompt: str | None = None,
    exit_code: int | None = None,
    context: JsonValue = None,
) -> None:
    """A run in the history, as the run service records one (with its log)."""
    import json
    import time

    store.start(run_id, agent, trigger, prompt, "docker", None, context)
    with store.database.write() as conn:
        conn.execute("UPDATE runs SET started_at = ? WHERE run_id = ?", (started, run_id))
    with store.open_log(agent, run_id) as log:
        for index, line in enumerate(lines):
            log.write(
                json.dumps(
                    {"ts": int(time.time() * 1000), "level": "info", "msg": line, "n": index}
                )
                + "\n"
            )
    if status != "running":
        store.finish(
            run_id,
            status,
            exit_code if exit_code is not None else (0 if status == "completed" else 1),
            None,
        )
        with store.database.write() as conn:
            conn.execute(
                "UPDATE runs SET finished_at = ? WHERE run_id = ?", (started + (took or 0), run_id)
            )


def receipt(
    receipt_id: str,
    event: str,
    at: float,
    matched: tuple[str, ...] = (),
    *,
    body: bytes = b"{}",
    status: str = "processed",
    reason: str | None = None,
    detail: str = "",
) -> Receipt:
    """A delivery to the `hooks` source, as the gateway stores one."""
    return Receipt(
        id=receipt_id,
        source="hooks",
        provider="test",
        event_summary=event,
        received_at=at,
        headers={"content-type": "application/json"},
        body=body,
        status=status,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        detail=detail,
        matched_agents=matched,
    )
