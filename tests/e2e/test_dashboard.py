"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright) against
a real `al start` whose runs are real containers: log in, see the agents, run one with a
prompt and watch its log arrive, pause and resume, kill a slow run, replay a dead-letter
webhook, log out; on a laptop and a phone, light and dark, with and without JavaScript.

One daemon serves the whole module (its image chain is built once). Each test saves a
screenshot of what it checked under artifacts/dashboard/ (gitignored; CI keeps it); with
AL_README_SCREENSHOTS=1 the agents and run pages are also written where the README shows them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from support import AL, cleanup_project, run_al, script_agent, stored_runs, wait_for, write_files

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "dashboard"
README_IMAGES = REPO / "docs" / "images"
#: Milliseconds the browser waits for what a test expects to see.
SEEN = 60_000
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
#: How Chrome fails a request it dropped because an interface came or went (see `submit`).
NETWORK_CHANGED = "ERR_NETWORK_CHANGED"
#: What htmx logs of such a request, as console errors.
DROP_ECHOES = ("htmx:sendError", "htmx:afterRequest", "htmx:sseError")

HELLO = """\
echo "hello from the dashboard"
for i in 1 2 3 4 5 6; do echo "step $i of 6"; sleep 0.5; done
echo "the prompt it got:"; echo "$PROMPT"
"""
SLOW = """\
i=0
while true; do i=$((i+1)); echo "still working ($i)"; sleep 1; done
"""


@dataclass
class Daemon:
    root: Path
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    output: Path
    url: str

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def al(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_al(*args, "-p", str(self.root), env=self.env, timeout=120)

    def login_link(self) -> str:
        """A fresh one-time link, as `al dashboard` prints it."""
        answer = self.al("dashboard", "--no-open")
        assert answer.returncode == 0, answer.stderr
        assert "once, within 15 minutes" in answer.stderr
        return answer.stdout.strip()


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, base_image: str
) -> Iterator[Daemon]:
    """`al start` over three script agents: hello (prints six steps in three seconds and the
    prompt), slow (runs until stopped), listener (runs on a `deploy` webhook)."""
    root = tmp_path_factory.mktemp("dashboard") / "proj"
    write_files(
        root,
        {
            "config.toml": """
                [webhooks.hooks]
                type = "test"
                credential = "none"
                allowUnsigned = true
                """,
            # A project layer: its image keeps the base's layers even if another test
            # session on a shared engine replaces al-agent:latest meanwhile.
            "Dockerfile": 'FROM al-agent:latest\nLABEL al.test="dashboard"\n',
            **script_agent("hello", HELLO),
            **script_agent("slow", SLOW, 'schedule = "0 3 * * *"\n'),
            **script_agent(
                "listener",
                'echo "deploy received"\n',
                '[[webhooks]]\nsource = "hooks"\nevents = ["deploy"]\n',
            ),
        },
    )
    env = {**os.environ, "AL_CREDENTIALS_DIR": str(root.parent / "creds")}
    output = root.parent / "al-start.out"
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [AL, "start", "-p", str(root), "--port", "0", "--headless"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        link = wait_for(
            lambda: (
                proc.poll() is None
                and re.search(r"log in once, within 15 minutes: (http://\S+)", output.read_text())
            ),
            timeout=600,
            what="al start printing its login link",
        ).group(1)
        yield Daemon(root, proc, env, output, link.split("/login/")[0])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        cleanup_project(docker_client, root.resolve())


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless (never a browser Playwright downloads)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is needed by the browser tests: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any, daemon: Daemon, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A logged-in laptop browser (light), with a one-time link from `al dashboard`; the
    page's script errors fail the test."""
    context = chromium.new_context(viewport=LAPTOP, color_scheme="light")
    tab = context.new_page()
    errors: list[str] = []
    dropped: list[Any] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.on(
        "requestfailed",
        lambda r: dropped.append(r) if NETWORK_CHANGED in (r.failure or "") else None,
    )
    tab.goto(daemon.login_link())
    tab.wait_for_url(daemon.url + "/")
    yield tab
    context.close()
    if dropped:  # what htmx and the console say of a connection Chrome dropped
        errors = [e for e in errors if not (NETWORK_CHANGED in e or e.startswith(DROP_ECHOES))]
    assert errors == [], errors


def screenshot(tab: Any, name: str, *, readme: str | None = None) -> None:
    """Keep what the test checked, for people (a CI artifact)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / f"{name}.png"
    tab.screenshot(path=str(target), full_page=True)
    if readme and os.environ.get("AL_README_SCREENSHOTS") == "1":
        README_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, README_IMAGES / readme)


def row(tab: Any, agent: str) -> Any:
    return tab.locator(f"#agent-{agent}")


def submit(button: Any) -> None:
    """Click a form's button and wait until its POST is answered.

    Chrome drops the requests it has in flight, loopback ones too, when a network interface
    comes or goes (ERR_NETWORK_CHANGED), as the containers of these tests and of other
    sessions on the engine make them do: such a POST is sent again (the tests allow a
    repeated action), from the page it was sent from."""
    tab = button.page
    for _ in range(3):
        ended: list[Any] = []

        def done(request: Any, ended: list[Any] = ended) -> None:
            if request.method == "POST":
                ended.append(request)

        before = tab.url
        tab.on("requestfinished", done)
        tab.on("requestfailed", done)
        try:
            button.click()
            deadline = time.monotonic() + SEEN / 1000
            while not ended:
                assert time.monotonic() < deadline, "the form's POST got no answer"
                tab.wait_for_timeout(50)
        finally:
            tab.remove_listener("requestfinished", done)
            tab.remove_listener("requestfailed", done)
        failure = ended[0].failure
        if failure is None:
            return
        assert NETWORK_CHANGED in failure, f"the form's POST failed: {failure}"
        if tab.url != before:  # without JavaScript, Chrome shows its error page
            tab.goto(before)
    raise AssertionError("Chrome dropped the form's POST three times")


def test_the_login_link_al_start_printed_shows_the_agents(chromium: Any, daemon: Daemon) -> None:
    """The link opens a session once; the agents page lists every agent with its state and
    triggers; it fits a phone, in dark mode too."""
    context = chromium.new_context(viewport=LAPTOP, color_scheme="light")
    tab = context.new_page()
    login = f"{daemon.url}/login/" + daemon.log().split("/login/")[1].split()[0]
    tab.goto(login)
    tab.wait_for_url(daemon.url + "/")
    for agent in ("hello", "slow", "listener"):
        expect(row(tab, agent)).to_contain_text("idle")
    expect(row(tab, "slow")).to_contain_text("cron 0 3 * * *")
    expect(row(tab, "listener")).to_contain_text("webhook hooks")
    screenshot(tab, "agents", readme="dashboard-agents.png")
    tab.set_viewport_size(PHONE)
    tab.emulate_media(color_scheme="dark")
    tab.reload()
    expect(row(tab, "hello")).to_be_visible()
    overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the page is wider than a phone's screen"
    background = tab.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(20, 20, 22)"  # the dark palette
    screenshot(tab, "agents-phone-dark")
    context.close()
    # Used once: the same link opens nothing now.
    other = chromium.new_context()
    again = other.new_page()
    again.goto(login)
    expect(again.locator("p.error")).to_contain_text("expired or was used already")
    other.close()


def test_a_run_with_a_prompt_shows_its_log_live(chromium: Any, page: Any, daemon: Daemon) -> None:
    """Lines appear while the run goes on (and another open agents page updates by
    itself); the prompt reached the run."""
    watcher = page.context.new_page()
    watcher.goto(daemon.url + "/")
    row(page, "hello").locator("summary").click()
    row(page, "hello").locator("textarea").fill("say hi to Ada")
    submit(row(page, "hello").get_by_role("button", name="Run hello"))
    page.wait_for_url(re.compile(r".*/runs/[0-9a-f]+$"))
    log = page.locator("#log")
    expect(log).to_contain_text("step 1 of 6", timeout=SEEN)
    # Live: the first lines are shown while the run is still going.
    expect(page.locator("#run-status")).to_contain_text("running")
    expect(log).to_contain_text("say hi to Ada", timeout=SEEN)
    expect(page.locator("#run-status")).to_contain_text("completed", timeout=SEEN)
    assert log.inner_text().count("step 3 of 6") == 1  # no line doubled
    expect(page.locator("#run-status")).to_contain_text("say hi to Ada")
    screenshot(page, "run", readme="dashboard-run.png")
    # The agents page left open updated itself (server-sent events, no reload).
    expect(row(watcher, "hello")).to_contain_text("completed", timeout=SEEN)
    screenshot(watcher, "agents-updated")


def test_pause_and_resume_work_as_plain_forms_without_javascript(
    chromium: Any, daemon: Daemon
) -> None:
    """With JavaScript off: log in with the key, pause an agent (the scheduler refuses its
    runs), resume it."""
    context = chromium.new_context(viewport=LAPTOP, java_script_enabled=False)
    tab = context.new_page()
    tab.goto(daemon.url + "/")
    tab.wait_for_url(re.compile(r".*/login\?next=/$"))
    key = (Path(daemon.env["AL_CREDENTIALS_DIR"]) / "gateway_api_key/default/key").read_text()
    tab.fill("#key", key.strip())
    submit(tab.get_by_role("button", name="Log in"))
    tab.wait_for_url(daemon.url + "/")
    submit(row(tab, "hello").get_by_role("button", name="Pause"))
    expect(tab.locator(".notes")).to_contain_text("paused hello")
    expect(row(tab, "hello")).to_contain_text("paused")
    stat = json.loads(daemon.al("stat", "--json").stdout)
    assert stat["scheduler"]["agents"]["hello"]["state"] == "paused"
    screenshot(tab, "paused-without-javascript")
    submit(row(tab, "hello").get_by_role("button", name="Resume"))
    expect(row(tab, "hello")).to_contain_text("idle")
    stat = json.loads(daemon.al("stat", "--json").stdout)
    assert stat["scheduler"]["agents"]["hello"]["state"] == "idle"
    context.close()


def test_kill_a_slow_run(page: Any, daemon: Daemon) -> None:
    submit(row(page, "slow").get_by_role("button", name="Run", exact=True))
    page.wait_for_url(re.compile(r".*/runs/[0-9a-f]+$"))
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#log")).to_contain_text("still working (2)", timeout=SEEN)
    submit(page.locator("#run-status").get_by_role("button", name="Kill"))
    expect(page.locator("#run-status")).to_contain_text("killed", timeout=SEEN)
    screenshot(page, "killed")
    run = next(r for r in stored_runs(daemon.root, "slow") if r.run_id == run_id)
    assert run.status == "killed"


def agent_badge(page: Any, daemon: Daemon, agent: str) -> str:
    """The state an agent's page shows for it, freshly loaded."""
    page.goto(f"{daemon.url}/agents/{agent}")
    return str(page.locator(".bar .badge").first.inner_text())


def test_replay_a_dead_letter_webhook(page: Any, daemon: Daemon) -> None:
    """A delivery taken while its only listener was disabled is a dead letter; replayed once
    the agent is back, it runs the agent it matches."""
    config = daemon.root / "agents/listener/config.toml"
    enabled = config.read_text()
    config.write_text("scale = 0\n" + enabled)  # al start reloads the changed agent
    try:
        wait_for(lambda: agent_badge(page, daemon, "listener") == "disabled", what="disabled")
        body = json.dumps({"event": "deploy", "repo": "octo/app"}).encode()
        request = urllib.request.Request(
            daemon.url + "/webhooks/hooks", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            delivery = json.load(answer)
        assert delivery["status"] == "dead-letter", delivery
    finally:
        config.write_text(enabled)
    wait_for(lambda: agent_badge(page, daemon, "listener") != "disabled", what="enabled again")
    page.get_by_role("link", name="Activity").click()
    receipt = page.locator(f"#receipt-{delivery['receiptId']}")
    expect(receipt).to_contain_text("dead-letter")
    expect(receipt).to_contain_text("take no work (scale = 0): listener")
    before = len(stored_runs(daemon.root, "listener"))
    submit(receipt.get_by_role("button", name="Replay"))
    expect(page.locator(".notes")).to_contain_text("dispatched to listener")
    wait_for(lambda: len(stored_runs(daemon.root, "listener")) > before, what="the replayed run")
    screenshot(page, "replayed")


def test_an_action_that_gets_no_answer_says_so(chromium: Any, daemon: Daemon) -> None:
    """A POST the browser could not get answered leaves a note, not a page that looks done."""
    context = chromium.new_context(viewport=LAPTOP)
    tab = context.new_page()
    tab.goto(daemon.login_link())
    tab.wait_for_url(daemon.url + "/")
    tab.route("**/scheduler/pause", lambda route: route.abort("connectionreset"))
    tab.get_by_role("button", name="Pause all").click()
    expect(tab.locator(".notes .error")).to_contain_text("al start did not answer")
    expect(tab.locator(".scheduler")).to_contain_text("running")
    screenshot(tab, "no-answer")
    context.close()


def test_logging_out_ends_the_session(page: Any, daemon: Daemon) -> None:
    submit(page.get_by_role("button", name="Log out"))
    page.wait_for_url(daemon.url + "/login")
    page.goto(daemon.url + "/activity")
    page.wait_for_url(re.compile(r".*/login\?next=/activity$"))
    screenshot(page, "logged-out")
    cookies = page.context.cookies()
    assert not any(c["name"] == "al_session" for c in cookies)
    started = time.monotonic()
    assert page.request.get(daemon.url + "/live/agents").status == 401
    assert time.monotonic() - started < 10
