"""The pages as an operator sees them (HTML through the app, in process), and what their
forms do: each is a plain POST that works without JavaScript."""

from __future__ import annotations

import re
import time

from action_llama.runs.store import RunStore
from action_llama.runs.trigger import Trigger
from action_llama.state import State

from dashboard_support import Browser, SchedulerLike, receipt, record_run, text_of


def row_html(html: str, agent: str) -> str:
    found = re.search(rf'<tr id="agent-{agent}".*?</tr>', html, re.S)
    assert found, f"no row for {agent}"
    return found.group(0)


def row_of(html: str, agent: str) -> str:
    return text_of(row_html(html, agent))


def cell(row: str, label: str) -> str:
    found = re.search(rf'<td data-label="{label}"[^>]*>(.*?)</td>', row, re.S)
    assert found, f"no {label} cell"
    return text_of(found.group(1))


def test_the_agents_page_shows_each_agent_at_a_glance(
    operator: Browser, store: RunStore, state: State, backend: SchedulerLike
) -> None:
    """State, running/scale, queue, next fire, last result (status, exit code, how long
    ago, a link to it) and triggers."""
    now = time.time()
    record_run(store, "r-old", "dev", started=now - 7200)
    record_run(store, "r-new", "dev", status="failed", exit_code=3, started=now - 600)
    backend.runs["r-live"] = "reviewer"
    state.queue.push("listener", Trigger(type="manual"))
    html = operator.get("/").text
    dev = row_of(html, "dev")
    assert "fixes bugs" in dev
    assert "idle" in dev
    assert "0/2" in dev
    assert "failed exit 3" in dev
    assert "ago" in dev
    assert "cron */5 * * * *" in dev
    assert "webhook hooks" in dev
    assert 'href="/runs/r-new"' in html
    assert cell(row_html(html, "dev"), "Next fire").startswith("in ")
    reviewer = row_of(html, "reviewer")
    assert "running" in reviewer
    assert "1/1 r-live" in reviewer
    assert "never ran" in reviewer
    assert "by hand" in reviewer
    assert "Kill" in reviewer
    assert cell(row_html(html, "listener"), "Queue") == "1"
    assert cell(row_html(html, "dev"), "Queue") == "0"


def test_the_agents_page_lists_200_agents_with_their_last_runs(
    operator: Browser, store: RunStore, backend: SchedulerLike
) -> None:
    """Every agent of a big project has its row (the page is not cut)."""
    backend.agents = {f"agent-{n:03d}" for n in range(200)}
    for n in range(0, 200, 20):
        record_run(store, f"run-{n}", f"agent-{n:03d}", started=time.time() - n)
    html = operator.get("/").text
    assert html.count('<tr id="agent-') == 200
    assert "completed" in row_of(html, "agent-180")


def test_paused_agents_offer_resume_and_the_scheduler_its_own(
    operator: Browser, backend: SchedulerLike
) -> None:
    operator.post("/agents/dev/pause")
    html = operator.get("/").text
    assert "/agents/dev/resume" in html
    assert "/agents/reviewer/pause" in html
    operator.post("/scheduler/pause")
    html = operator.get("/").text
    assert "/scheduler/resume" in html
    assert "Resume all" in html
    assert backend.named("pause") == [("dev",), (None,)]


def test_run_now_with_a_prompt_opens_the_new_run(operator: Browser, backend: SchedulerLike) -> None:
    answer = operator.post("/agents/dev/run", {"prompt": "  fix issue 7  "})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/runs/run-1"
    assert backend.named("trigger") == [("dev", "fix issue 7")]
    operator.post("/agents/reviewer/run", {"prompt": ""})
    assert backend.named("trigger")[-1] == ("reviewer", None)


def test_htmx_requests_are_told_where_to_go(operator: Browser) -> None:
    answer = operator.post("/agents/dev/run", headers={"HX-Request": "true"})
    assert answer.status_code == 200
    assert answer.headers["hx-location"] == "/runs/run-1"


def test_queued_and_refused_runs_are_said_on_the_page(
    operator: Browser, backend: SchedulerLike
) -> None:
    backend.outcome = "queued"
    answer = operator.post(
        "/agents/dev/run", headers={"Referer": "http://127.0.0.1:8080/agents/dev"}
    )
    assert answer.headers["location"] == "/agents/dev"
    assert "dev: queued, every runner is busy" in text_of(operator.get("/agents/dev").text)
    backend.refuse["dev"] = "agent dev is disabled (scale = 0)"
    operator.post("/agents/dev/run")
    page = operator.get("/").text
    assert 'class="error"' in page
    assert "dev: refused: agent dev is disabled (scale = 0)" in text_of(page)
    # Said once.
    assert "refused" not in text_of(operator.get("/").text)


def test_unknown_agents_and_runs_are_said_plainly(operator: Browser) -> None:
    answer = operator.post("/agents/nope/pause")
    assert answer.status_code == 303
    assert 'Agent "nope" not found.' in text_of(operator.get("/").text)
    missing = operator.get("/agents/nope")
    assert missing.status_code == 404
    assert 'The project has no agent "nope".' in text_of(missing.text)
    assert operator.get("/runs/nope").status_code == 404


def test_kill_stops_an_agents_runs_or_one_run(operator: Browser, backend: SchedulerLike) -> None:
    backend.runs.update({"r1": "dev", "r2": "dev"})
    operator.post("/agents/dev/kill")
    assert "stopping r1, r2 (recorded as killed)" in text_of(operator.get("/").text)
    backend.runs["r3"] = "reviewer"
    answer = operator.post("/runs/r3/kill", headers={"Referer": "http://127.0.0.1:8080/runs/r3"})
    assert answer.headers["location"] == "/runs/r3"
    assert backend.named("kill") == [("dev",), ("r3",)]


def test_stopping_the_scheduler_asks_first(operator: Browser, backend: SchedulerLike) -> None:
    """Without confirm=yes nothing stops: the confirmation page is shown instead."""
    answer = operator.post("/scheduler/stop")
    assert answer.headers["location"] == "/scheduler/stop"
    assert backend.named("stop") == []
    page = operator.get("/scheduler/stop").text
    assert 'name="confirm" value="yes"' in page
    answer = operator.post("/scheduler/stop", {"confirm": "yes"})
    assert answer.status_code == 200
    assert "The scheduler is stopping" in answer.text
    assert backend.named("stop") == [()]


def test_the_agent_page_pages_and_filters_its_history(operator: Browser, store: RunStore) -> None:
    now = time.time()
    for n in range(30):
        status = "failed" if n % 3 == 0 else "completed"
        trigger = "schedule" if n % 2 else "manual"
        record_run(store, f"r{n:02d}", "dev", status=status, trigger=trigger, started=now - 60 * n)
    first = operator.get("/agents/dev").text
    assert "Runs 30" in text_of(first)
    assert first.count('class="run-id" href="/runs/r') == 25
    assert "r00" in first
    assert "r24" in first
    assert "r25" not in first
    assert "page 1 of 2" in text_of(first)
    second = operator.get("/agents/dev?page=2").text
    assert "r25" in second
    assert "r29" in second
    assert "r24" not in second
    failed = operator.get("/agents/dev?status=failed&trigger=manual").text
    shown = set(re.findall(r'href="/runs/(r\d+)"', failed))
    assert shown == {f"r{n:02d}" for n in range(30) if n % 3 == 0 and n % 2 == 0}


def test_the_agent_page_has_its_figures_over_24_hours_and_7_days(
    operator: Browser, store: RunStore
) -> None:
    now = time.time()
    for n, took in enumerate((1, 2, 3, 4, 10)):
        record_run(store, f"d{n}", "dev", started=now - 3600 * n - 60, took=took)
    record_run(store, "old", "dev", status="failed", started=now - 3 * 86400, took=100)
    with store.database.write() as conn:
        conn.execute("UPDATE runs SET input_tokens = 1000, output_tokens = 500, cost = 0.25")
    text = text_of(operator.get("/agents/dev").text)
    day, week = text.split("Last 24 h", 1)[1].split("Last 7 d")
    assert "5 runs" in day
    assert "completed 5" in day
    assert "median 3.0s" in day
    assert "p90 10s" in day
    assert "7.5k tokens" in day
    assert "$1.25" in day
    assert "6 runs" in week
    assert "failed 1" in week
    assert "p90 1m 40s" in week


def test_the_agent_page_shows_its_configuration_without_secrets(
    operator: Browser, settings
) -> None:  # type: ignore[no-untyped-def]
    text = text_of(operator.get("/agents/dev").text)
    config = text.split("Configuration", 1)[1]
    assert "sonnet (anthropic claude-sonnet-4-5)" in config
    assert "github_token" in config
    assert "anthropic_key" in config
    assert "*/5 * * * *" in config
    assert "hooks · events: deploy" in config
    assert "scale 2" in config
    assert "timeout 900s" in config
    network = config.split("Network", 1)[1].split("Limits", 1)[0]
    assert "allowlist" in network
    # Listed entries first, then what its model and credential need, each with its source.
    assert network.index("pypi.org:80,443") < network.index("api.anthropic.com:443")
    assert "api.github.com:80,443" in network
    assert "agents/dev/config.toml" in network
    assert "repo" in config
    assert "octo/app" not in config


def test_the_agent_page_shows_an_open_network_as_uncontrolled(operator: Browser) -> None:
    text = text_of(operator.get("/agents/listener").text)
    assert "open: runs may connect anywhere" in text.split("Network", 1)[1]


def test_the_agent_page_lists_the_webhooks_that_matched_it(operator: Browser, state: State) -> None:
    for n, agents in enumerate((("dev",), ("listener",), ("dev", "listener"))):
        state.receipts.insert(receipt(f"rc-{n}", f"deploy {n}", time.time() + n, agents))
    text = text_of(operator.get("/agents/dev").text)
    receipts = text.split("Recent webhook receipts", 1)[1]
    assert "deploy 0" in receipts
    assert "deploy 2" in receipts
    assert "deploy 1" not in receipts


def test_the_run_page_shows_the_run_and_its_log(operator: Browser, store: RunStore) -> None:
    record_run(
        store,
        "r1",
        "dev",
        status="failed",
        exit_code=2,
        prompt="fix the flaky test",
        started=time.time() - 30,
        took=12.5,
        lines=["cloning", "running tests", "2 failures"],
    )
    page = operator.get("/runs/r1").text
    text = text_of(page)
    assert "Run r1 of dev" in text
    assert "failed exit 2" in text
    assert "fix the flaky test" in text
    assert "Took 12s" in text or "Took 13s" in text
    assert "cloning" in text
    assert "2 failures" in text
    assert 'sse-connect="/live/runs/r1?after=' in page
    assert "/runs/r1/rerun" in page
    assert "/runs/r1/kill" not in page


def test_a_webhook_runs_page_shows_what_the_delivery_was_about(
    operator: Browser, store: RunStore
) -> None:
    event = {"event": "deploy", "repo": "octo/app", "sender": "ana <ops>"}
    record_run(store, "r1", "dev", trigger="webhook", context=event, started=time.time())
    page = operator.get("/runs/r1").text
    assert "Context" in text_of(page)
    assert '"repo": "octo/app"' in text_of(page)
    assert "ana &lt;ops&gt;" in page


def test_a_long_log_starts_with_its_tail_and_is_whole_as_text(
    operator: Browser, store: RunStore
) -> None:
    record_run(store, "r1", "dev", started=time.time(), lines=[f"line {n}" for n in range(1200)])
    page = operator.get("/runs/r1").text
    assert "line 1199" in page
    assert "line 700 " in page + " "
    assert "line 699<" not in page
    assert "Showing the last 500 lines" in text_of(page)
    whole = operator.get("/runs/r1/log.txt")
    assert whole.headers["content-type"].startswith("text/plain")
    lines = whole.text.splitlines()
    assert len(lines) == 1200
    assert lines[0].endswith("line 0 n=0")
    assert lines[-1].endswith("line 1199 n=1199")


def test_run_again_starts_the_same_agent_with_the_same_prompt(
    operator: Browser, store: RunStore, backend: SchedulerLike
) -> None:
    record_run(store, "r1", "dev", prompt="again please", started=time.time())
    answer = operator.post("/runs/r1/rerun")
    assert answer.headers["location"] == "/runs/run-1"
    assert backend.named("trigger") == [("dev", "again please")]


def test_the_activity_page_shows_receipts_drops_and_locks(operator: Browser, state: State) -> None:
    now = time.time()
    state.receipts.insert(receipt("rc-ok", "deploy ok", now, ("dev",)))
    state.receipts.insert(
        receipt(
            "rc-dead",
            "deploy lost",
            now + 1,
            body=b'{"event":"deploy"}',
            status="dead-letter",
            reason="no_match",
            detail="no agent matched",
        )
    )
    state.receipts.insert(
        receipt(
            "rc-bad",
            "forged",
            now + 2,
            body=b"",
            status="dead-letter",
            reason="validation_failed",
            detail="bad signature",
        )
    )
    for n in range(3):
        state.queue.push("listener", Trigger(type="webhook", summary=f"work {n}"), cap=2)
    state.active_runs.add("run-x", "dev", runtime="docker", secret="s", trigger={})
    state.locks.acquire("github://octo/app/issues/7", "run-x", 60)
    page = operator.get("/activity").text
    text = text_of(page)
    assert "deploy lost" in text
    assert "no agent matched" in text
    assert "/receipts/rc-dead/replay" in page
    assert "/receipts/rc-bad/replay" not in page  # no body was kept: nothing to replay
    assert "work 0" in text
    assert "listener" in text
    assert "github://octo/app/issues/7" in text
    assert "run-x (dev)" in text
    dead = text_of(operator.get("/activity?status=dead-letter").text)
    assert "deploy lost" in dead
    assert "deploy ok" not in dead


def test_replaying_a_dead_letter_routes_it_again(
    operator: Browser, state: State, backend: SchedulerLike
) -> None:
    body = b'{"event": "deploy", "repo": "octo/app"}'
    state.receipts.insert(
        receipt(
            "rc-dead",
            "deploy",
            time.time(),
            body=body,
            status="dead-letter",
            reason="not_dispatched",
            detail="the scheduler is paused",
        )
    )
    answer = operator.post("/receipts/rc-dead/replay")
    assert answer.status_code == 303
    assert [agents for _, agents in backend.named("dispatch_webhook")] == [("dev", "listener")]
    text = text_of(operator.get("/activity").text)
    assert "replayed rc-dead as" in text
    assert "dispatched to dev, listener" in text
    assert len(state.receipts.recent(10)) == 2


def test_every_action_is_a_plain_form_with_the_sessions_token(
    operator: Browser, store: RunStore, backend: SchedulerLike, state: State
) -> None:
    """No action needs JavaScript: each button is in a method=post form carrying the
    session's CSRF token."""
    record_run(store, "r1", "dev", started=time.time())
    backend.runs["r2"] = "reviewer"
    state.receipts.insert(receipt("rc", "deploy", time.time()))
    for path in (
        "/",
        "/agents/dev",
        "/agents/reviewer",
        "/activity",
        "/runs/r1",
        "/runs/r2",
        "/scheduler/stop",
    ):
        html = operator.get(path).text
        forms = [
            f for f in re.findall(r"<form[^>]*>.*?</form>", html, re.S) if 'method="post"' in f
        ]
        assert forms, path
        for form in forms:
            assert f'name="csrf" value="{operator.csrf}"' in form, (path, form)
        assert "hx-post" not in html
        assert "onclick" not in html
