"""The live parts of the pages as server-sent events, through the app in process: a run's
log (live, resumable without losing or doubling a line), page updates when the state changes
(and none while it does not), and streams ending with their session."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from action_llama.dashboard import streams
from action_llama.dashboard.live import run_topic
from action_llama.dashboard.site import Dashboard
from action_llama.runs.store import RunStore

from dashboard_support import (
    Browser,
    Event,
    SchedulerLike,
    bounded,
    csrf_of,
    parse_events,
    record_run,
    text_of,
)


def lines_of(events: list[Event]) -> list[str]:
    """The log lines the `line` events carried (their text, in order)."""
    found: list[str] = []
    for event in events:
        if event.name == "line":
            found += [text_of(item) for item in event.data.split("</li>") if item.strip()]
    return found


def messages(events: list[Event]) -> list[str]:
    """The messages of those lines (without their time, level and fields)."""
    return [line.split("info ", 1)[1].split(" n=")[0].strip() for line in lines_of(events)]


def offsets_after(store: RunStore, agent: str, run_id: str) -> list[int]:
    """The byte offset after each line of a run's log."""
    data = store.log_path(agent, run_id).read_bytes()
    return [index + 1 for index, byte in enumerate(data) if byte == ord("\n")]


def later(action: Callable[[], None], when: threading.Event | None = None) -> threading.Thread:
    """Run `action` in a thread (after `when` is set), as another process of the daemon would."""

    def run() -> None:
        if when is not None:
            assert when.wait(10)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_an_ended_runs_log_streams_whole_then_ends(operator: Browser, store: RunStore) -> None:
    record_run(store, "r1", "dev", started=time.time(), lines=[f"line {n}" for n in range(50)])
    events = operator.events("/live/runs/r1?after=0", count=100)
    assert lines_of(events)[0].endswith("line 0 n=0")
    assert messages(events) == [f"line {n}" for n in range(50)]
    assert events[-1].name == "end"
    assert any(e.name == "run" and "completed" in e.data for e in events)
    # Each batch of lines is labelled with the offset it ends at: the end of the log here.
    assert [e.id for e in events if e.name == "line"][-1] == str(
        offsets_after(store, "dev", "r1")[-1]
    )


@pytest.mark.parametrize("how", ["last-event-id", "after"])
def test_a_reconnecting_stream_resumes_after_the_last_line_it_got(
    operator: Browser, store: RunStore, how: str
) -> None:
    """No line lost, none doubled: the stream starts at the byte offset it was given."""
    record_run(store, "r1", "dev", started=time.time(), lines=[f"line {n}" for n in range(20)])
    offset = offsets_after(store, "dev", "r1")[11]  # after line 11
    if how == "after":
        events = operator.events(f"/live/runs/r1?after={offset}", count=100)
    else:
        events = operator.events(
            "/live/runs/r1?after=0", count=100, headers={"Last-Event-ID": str(offset)}
        )
    assert messages(events) == [f"line {n}" for n in range(12, 20)]


def test_a_running_runs_lines_arrive_as_they_are_written(
    operator: Browser, store: RunStore, backend: SchedulerLike, dashboard: Dashboard
) -> None:
    record_run(store, "r1", "dev", status="running", started=time.time(), lines=["first"])
    backend.runs["r1"] = "dev"
    seen_first = threading.Event()

    def write_more() -> None:
        with store.open_log("dev", "r1") as log:
            log.write('{"ts": 1, "level": "info", "msg": "second"}\n')
        dashboard.changes.touch(run_topic("r1"))  # what the daemon does for each line
        store.finish("r1", "completed", 0, None)  # a database write: the state changed
        del backend.runs["r1"]
        dashboard.changes.touch()

    later(write_more, when=seen_first)
    events: list[Event] = []
    with operator.client.stream("GET", "/live/runs/r1?after=0") as answer:
        for event in parse_events(bounded(answer)):
            events.append(event)
            if event.name == "run" and "running" in event.data:
                seen_first.set()
            if event.name == "end":
                break
    assert messages(events) == ["first", "second"]
    statuses = [e.data for e in events if e.name == "run"]
    assert "running" in statuses[0]
    assert "completed" in statuses[-1]
    assert "/runs/r1/kill" in statuses[0]
    assert csrf_of(statuses[0]) == operator.csrf
    assert "/runs/r1/kill" not in statuses[-1]


def test_a_run_that_has_not_written_its_record_yet_is_starting(
    operator: Browser, backend: SchedulerLike
) -> None:
    backend.runs["r9"] = "dev"
    page = operator.get("/runs/r9")
    assert page.status_code == 200
    assert "starting" in text_of(page.text)


def test_a_page_stream_sends_the_page_when_the_state_changes(
    operator: Browser, backend: SchedulerLike, dashboard: Dashboard
) -> None:
    version = dashboard.changes.version()

    def pause() -> None:
        backend.paused.add("dev")
        dashboard.changes.touch()

    later(pause)
    events = operator.events(f"/live/agents?v={version}", count=1)
    assert events[0].name == "page"
    assert int(events[0].id or 0) > version
    assert "/agents/dev/resume" in events[0].data
    assert csrf_of(events[0].data) == operator.csrf


def test_a_page_stream_sends_nothing_while_nothing_changes(
    operator: Browser, dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only keepalive comments, until something changes."""
    monkeypatch.setattr(streams, "KEEPALIVE_SECONDS", 0.05)
    version = dashboard.changes.version()
    lines = []
    with operator.client.stream("GET", f"/live/agents?v={version}") as answer:
        for line in bounded(answer):
            lines.append(line)
            if line.count(": keepalive") and len([x for x in lines if "keepalive" in x]) == 3:
                break
    assert not any(line.startswith("event:") for line in lines)


def test_sessions_share_a_render_but_each_gets_its_own_token(
    operator: Browser, browser: Browser, dashboard: Dashboard
) -> None:
    from fastapi.testclient import TestClient

    other = Browser(TestClient(operator.client.app, base_url="http://127.0.0.1:8080"))
    other.login()
    assert other.csrf != operator.csrf
    dashboard.changes.touch()
    first = operator.events("/live/agents?v=0", count=1)[0]
    second = other.events("/live/agents?v=0", count=1)[0]
    assert csrf_of(first.data) == operator.csrf
    assert csrf_of(second.data) == other.csrf
    assert first.data.replace(operator.csrf, "") == second.data.replace(other.csrf, "")


def test_logging_out_ends_the_sessions_open_streams(
    operator: Browser, dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    # A second client with the same cookie: the same browser, another tab.
    tab = Browser(TestClient(operator.client.app, base_url="http://127.0.0.1:8080"))
    tab.client.cookies.update(operator.client.cookies)
    tab.csrf = operator.csrf
    opened = threading.Event()
    later(lambda: tab.post("/logout"), when=opened)
    version = dashboard.changes.version()
    with operator.client.stream("GET", f"/live/agents?v={version}") as answer:
        opened.set()
        remaining = list(bounded(answer))  # returns once the stream has ended
    assert not any(line.startswith("event: page") for line in remaining)
    assert operator.get("/live/agents").status_code == 401
