"""Who gets in: the login form, one-time links, the session cookie, logout, and the refusals
of requests without a session or from another site."""

from __future__ import annotations

import pytest

from action_llama.dashboard.auth import IDLE, LINK_TTL
from action_llama.dashboard.site import Dashboard

from dashboard_support import KEY, ORIGIN, Browser, csrf_of, text_of


@pytest.mark.parametrize(
    "path", ["/", "/agents/dev", "/runs/abc", "/activity", "/scheduler/stop", "/runs/abc/log.txt"]
)
def test_pages_without_a_session_go_to_the_login_page(browser: Browser, path: str) -> None:
    """Every page answers with a redirect to /login (which comes back to it after)."""
    answer = browser.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/login?next={path}"
    assert "agents" not in answer.text


def test_live_streams_and_htmx_requests_without_a_session_are_401(browser: Browser) -> None:
    """A stream cannot follow a redirect: it is refused; htmx is told where to go."""
    assert browser.get("/live/agents").status_code == 401
    answer = browser.get("/", headers={"HX-Request": "true"}, follow_redirects=False)
    assert answer.status_code == 401
    assert answer.headers["hx-redirect"] == "/login?next=/"


def test_actions_without_a_session_do_nothing(browser: Browser, backend) -> None:  # type: ignore[no-untyped-def]
    """A POST without a session goes to the login page and reaches no backend."""
    answer = browser.post("/agents/dev/run")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    assert backend.named("trigger") == []


def test_the_login_page_and_its_static_files_need_no_session(browser: Browser) -> None:
    page = browser.get("/login")
    assert page.status_code == 200
    assert 'name="key"' in page.text
    for asset in ("/static/app.css", "/static/app.js", "/static/vendor/htmx.min.js"):
        assert browser.get(asset).status_code == 200, asset


def test_logging_in_with_the_key_sets_a_strict_http_only_session_cookie(browser: Browser) -> None:
    answer = browser.login()
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("al_session="))
    parts = {p.strip().lower() for p in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/"} <= parts
    assert any(p.startswith("max-age=") for p in parts)
    assert browser.get("/", follow_redirects=False).status_code == 200


def test_a_wrong_key_is_refused_and_says_so(browser: Browser) -> None:
    answer = browser.login("not-the-key")
    assert answer.status_code == 401
    assert "That is not the gateway API key" in answer.text
    assert "al_session" not in answer.headers.get("set-cookie", "")
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_login_goes_back_to_the_page_asked_for_but_never_off_site(browser: Browser) -> None:
    for target, expected in (("/agents/dev", "/agents/dev"), ("//evil.example/x", "/")):
        page = browser.get(f"/login?next={target}")
        answer = browser.client.post(
            "/login",
            data={"key": KEY, "csrf": csrf_of(page.text), "next": target},
            headers={"Origin": ORIGIN},
            follow_redirects=False,
        )
        assert answer.headers["location"] == expected
        browser.client.cookies.clear()


def test_a_login_form_from_another_site_or_without_its_token_is_refused(browser: Browser) -> None:
    page = browser.get("/login")
    token = csrf_of(page.text)
    cases = [
        ({"Origin": "http://evil.example"}, token),
        ({}, token),  # neither Origin nor Referer
        ({"Origin": ORIGIN}, "forged"),
    ]
    for headers, given in cases:
        answer = browser.client.post(
            "/login", data={"key": KEY, "csrf": given}, headers=headers, follow_redirects=False
        )
        assert answer.status_code == 403, (headers, given)
        assert "al_session" not in answer.headers.get("set-cookie", "")


def test_a_login_link_opens_one_session_once(browser: Browser, dashboard: Dashboard) -> None:
    link = dashboard.login_link("http://127.0.0.1:8080")
    path = link.removeprefix("http://127.0.0.1:8080")
    first = browser.get(path)
    assert first.status_code == 200
    assert first.headers["referrer-policy"] == "no-referrer"
    assert 'http-equiv="refresh"' in first.text
    assert browser.get("/", follow_redirects=False).status_code == 200
    browser.client.cookies.clear()
    again = browser.get(path)
    assert again.status_code == 401
    assert "expired or was used already" in text_of(again.text)
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_a_login_link_expires(browser: Browser, dashboard: Dashboard, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = dashboard.login_link("").removeprefix("")
    later = dashboard.links._now() + LINK_TTL + 1
    monkeypatch.setattr(dashboard.links, "_now", lambda: later)
    assert browser.get(path).status_code == 401


def test_al_dashboard_gets_links_with_the_bearer_key_only(browser: Browser) -> None:
    refused = browser.client.post("/control/dashboard/login-link")
    assert refused.status_code == 401
    answer = browser.client.post(
        "/control/dashboard/login-link", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert answer.status_code == 200
    path = answer.json()["path"]
    assert path.startswith("/login/")
    assert browser.get(path).status_code == 200
    assert browser.get("/", follow_redirects=False).status_code == 200


def test_logging_out_ends_the_session(operator: Browser) -> None:
    old_cookie = operator.client.cookies.get("al_session")
    answer = operator.post("/logout")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    assert operator.get("/", follow_redirects=False).status_code == 303
    # The cookie itself no longer opens anything, even if a browser kept it.
    operator.client.cookies.set("al_session", old_cookie or "")
    assert operator.get("/", follow_redirects=False).status_code == 303


def test_logging_out_needs_the_csrf_token(operator: Browser) -> None:
    """A cross-site form cannot log the operator out."""
    operator.csrf = "forged"
    assert operator.post("/logout").status_code == 403
    assert operator.get("/", follow_redirects=False).status_code == 200


def test_an_idle_session_expires(operator: Browser, dashboard: Dashboard, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    later = dashboard.sessions._now() + IDLE + 1
    monkeypatch.setattr(dashboard.sessions, "_now", lambda: later)
    assert operator.get("/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    ("origin", "token", "referer"),
    [
        ("http://evil.example", None, None),  # another site, even with the right token
        (None, None, None),  # neither Origin nor Referer
        (None, None, "http://evil.example/page"),
        ("null", None, None),
        (ORIGIN, "forged", None),  # this site, a wrong token
        (ORIGIN, "", None),
    ],
)
def test_actions_from_another_site_or_without_the_token_are_refused(
    operator: Browser,
    backend,
    origin,
    token,
    referer,  # type: ignore[no-untyped-def]
) -> None:
    if token is not None:
        operator.csrf = token
    headers = {"Referer": referer} if referer else {}
    answer = operator.post("/agents/dev/pause", origin=origin, headers=headers)
    assert answer.status_code == 403
    assert "text/html" in answer.headers["content-type"]
    assert backend.named("pause") == []


def test_an_action_with_the_token_from_this_site_is_done(operator: Browser, backend) -> None:  # type: ignore[no-untyped-def]
    """The Referer counts when a browser sends no Origin; the token may come as a header."""
    answer = operator.post("/agents/dev/pause", origin=None, headers={"Referer": ORIGIN + "/"})
    assert answer.status_code == 303
    token, operator.csrf = operator.csrf, ""
    answer = operator.post("/agents/dev/resume", headers={"X-CSRF-Token": token})
    assert answer.status_code == 303
    assert backend.named("pause") == [("dev",)]
    assert backend.named("resume") == [("dev",)]


def test_every_answer_carries_the_content_security_policy(operator: Browser) -> None:
    for path in ("/", "/login", "/static/app.css", "/activity", "/health"):
        headers = operator.get(path).headers
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "default-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "'unsafe-inline'" not in policy
        assert headers["x-content-type-options"] == "nosniff"
    assert operator.get("/").headers["cache-control"] == "no-store"
