"""Webhook filters (§8.3): AND across fields, OR within a list, exact, and the reason on failure."""

from __future__ import annotations

from typing import Any

import pytest

from action_llama.config.agent import WebhookTrigger
from action_llama.webhooks import WebhookEvent, match, match_all, unsupported_filters

ISSUE: dict[str, Any] = {
    "source": "github",
    "event": "issues",
    "action": "opened",
    "repo": "octo/app",
    "labels": ("bug",),
    "assignee": "bob",
    "author": "alice",
}
PUSH: dict[str, Any] = {"source": "github", "event": "push", "repo": "octo/app", "branch": "dev"}
RUN: dict[str, Any] = {
    "source": "github",
    "event": "workflow_run",
    "action": "completed",
    "repo": "octo/app",
    "branch": "main",
    "conclusion": "failure",
}
BARE: dict[str, Any] = {
    "source": "github",
    "event": "issues",
    "action": "opened",
    "repo": "octo/app",
}

GITHUB_CASES = [
    (ISSUE, {"events": ["push", "issues"]}, None),
    (ISSUE, {"events": ["push"]}, "events: issues not in [push]"),
    (ISSUE, {"actions": ["opened"]}, None),
    (ISSUE, {"actions": ["closed"]}, "actions: opened not in [closed]"),
    (PUSH, {"actions": ["opened"]}, "actions: event has no action, wanted one of [opened]"),
    (ISSUE, {"repos": ["octo/app"]}, None),
    (ISSUE, {"repos": ["octo/other"]}, "repos: octo/app not in [octo/other]"),
    (ISSUE, {"repos": ["Octo/App"]}, "repos: octo/app not in [Octo/App]"),
    (ISSUE, {"org": "octo"}, None),
    (ISSUE, {"org": "acme"}, "org: octo not in [acme]"),
    (ISSUE, {"orgs": ["acme", "octo"]}, None),
    (ISSUE, {"orgs": ["acme"]}, "orgs: octo not in [acme]"),
    (ISSUE, {"org": "acme", "orgs": ["octo"]}, None),
    (ISSUE, {"labels": ["docs", "bug"]}, None),
    (ISSUE, {"labels": ["docs"]}, "labels: [bug] has none of [docs]"),
    (BARE, {"labels": ["bug"]}, "labels: event has no labels, wanted one of [bug]"),
    (ISSUE, {"assignee": "bob"}, None),
    (ISSUE, {"assignee": "carol"}, "assignee: bob is not carol"),
    (BARE, {"assignee": "carol"}, "assignee: event has no assignee, wanted carol"),
    (ISSUE, {"author": "alice"}, None),
    (ISSUE, {"author": "dave"}, "author: alice is not dave"),
    (ISSUE, {"branches": ["main"]}, None),
    (PUSH, {"branches": ["main", "dev"]}, None),
    (PUSH, {"branches": ["main"]}, "branches: dev not in [main]"),
    (ISSUE, {"conclusions": ["success"]}, None),
    (RUN, {"conclusions": ["failure"]}, None),
    (RUN, {"conclusions": ["success"]}, "conclusions: failure not in [success]"),
    (ISSUE, {"events": []}, None),
    (ISSUE, {"repos": ["octo/app"], "events": ["push"]}, "events: issues not in [push]"),
    (
        ISSUE,
        {"events": ["issues"], "actions": ["opened"], "labels": ["bug"], "author": "alice"},
        None,
    ),
]


def case_id(case: tuple[dict[str, Any], dict[str, Any], str | None]) -> str:
    event, filters, reason = case
    return f"{event['event']}-{'-'.join(filters) or 'none'}-{'fail' if reason else 'pass'}"


@pytest.mark.parametrize(
    ("event", "filters", "reason"), GITHUB_CASES, ids=map(case_id, GITHUB_CASES)
)
def test_github_filters(event: dict[str, Any], filters: dict[str, Any], reason: str | None) -> None:
    """Each GitHub filter passes when it should, and otherwise names itself and both sides."""
    result = match(WebhookEvent(**event), "gh", WebhookTrigger(source="gh", **filters), "github")
    assert result.matched is (reason is None)
    assert result.reason == (reason or "matched")


def test_generic_sources_take_the_github_filters() -> None:
    """A generic source's events are filtered like GitHub's (org is the part before "/")."""
    event = WebhookEvent(**{**ISSUE, "source": "generic"})
    assert match(
        event, "ci", WebhookTrigger(source="ci", orgs=["octo"], labels=["bug"]), "generic"
    ).matched


def test_an_entry_for_another_source_does_not_match() -> None:
    """A [[webhooks]] entry only listens to the source it names."""
    result = match(WebhookEvent(**ISSUE), "gh", WebhookTrigger(source="other"), "github")
    assert result.reason == "source: listens to other, not gh"


def test_a_filter_the_source_type_lacks_never_matches() -> None:
    """`resources` on a GitHub source is refused, not ignored (it would widen the match)."""
    trigger = WebhookTrigger(source="gh", resources=["issue"])
    result = match(WebhookEvent(**ISSUE), "gh", trigger, "github")
    assert not result.matched
    assert result.reason.startswith("resources: not a filter for github sources (they take events,")
    assert unsupported_filters(trigger, "github") == [result.reason]
    assert unsupported_filters(WebhookTrigger(source="s", resources=["issue"]), "sentry") == []


def test_any_entry_of_an_agent_can_fire_it() -> None:
    """An agent with several entries for a source runs when any one of them matches."""
    triggers = [
        WebhookTrigger(source="gh", events=["push"]),
        WebhookTrigger(source="gh", labels=["bug"]),
    ]
    assert match_all(WebhookEvent(**ISSUE), "gh", triggers, "github").matched


OTHER_CASES: list[tuple[str, dict[str, Any], dict[str, Any], str | None]] = [
    ("sentry", {"event": "issue"}, {"resources": ["issue", "error"]}, None),
    (
        "sentry",
        {"event": "issue"},
        {"resources": ["metric_alert"]},
        "resources: issue not in [metric_alert]",
    ),
    (
        "linear",
        {"event": "issues", "action": "create", "repo": "org-1"},
        {"organizations": ["org-1"], "events": ["issues"]},
        None,
    ),
    (
        "linear",
        {"event": "issues", "repo": "org-1"},
        {"organizations": ["org-2"]},
        "organizations: org-1 not in [org-2]",
    ),
    (
        "linear",
        {"event": "issues", "author": "a@x.org"},
        {"author": "b@x.org"},
        "author: a@x.org is not b@x.org",
    ),
    (
        "mintlify",
        {"event": "build", "action": "failed", "repo": "docs", "branch": "main"},
        {"repos": ["docs"], "branches": ["main"], "actions": ["failed"]},
        None,
    ),
    (
        "mintlify",
        {"event": "build", "repo": "docs", "branch": "next"},
        {"branches": ["main"]},
        "branches: next not in [main]",
    ),
    (
        "discord",
        {"event": "application_command", "repo": "g1", "branch": "c1", "title": "deploy"},
        {"guilds": ["g1"], "channels": ["c1"], "commands": ["deploy"]},
        None,
    ),
    (
        "discord",
        {"event": "application_command", "repo": "g1"},
        {"guilds": ["g2"]},
        "guilds: g1 not in [g2]",
    ),
    (
        "discord",
        {"event": "application_command", "repo": "g1", "branch": "c1"},
        {"channels": ["c2"]},
        "channels: c1 not in [c2]",
    ),
    (
        "discord",
        {"event": "application_command", "title": "deploy"},
        {"commands": ["ship"]},
        "commands: deploy not in [ship]",
    ),
    ("discord", {"event": "message_component", "title": "button-1"}, {"commands": ["ship"]}, None),
    (
        "twitter",
        {"event": "tweet_create_events", "repo": "42"},
        {"repos": ["42"], "events": ["tweet_create_events"]},
        None,
    ),
    (
        "twitter",
        {"event": "favorite_events", "repo": "42"},
        {"repos": ["7"]},
        "repos: 42 not in [7]",
    ),
    (
        "test",
        {"event": "issues", "action": "opened", "repo": "a/b"},
        {"events": ["issues"], "actions": ["opened"], "repos": ["a/b"]},
        None,
    ),
    (
        "test",
        {"event": "issues", "repo": "a/b"},
        {"actions": ["opened"]},
        "actions: event has no action, wanted one of [opened]",
    ),
]


@pytest.mark.parametrize(
    ("kind", "event", "filters", "reason"),
    OTHER_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(OTHER_CASES)],
)
def test_other_providers_filters(
    kind: str, event: dict[str, Any], filters: dict[str, Any], reason: str | None
) -> None:
    """Sentry resources, Linear organizations, Mintlify projects, Discord guilds/channels/commands, X users."""
    result = match(
        WebhookEvent(source=kind, **event), "src", WebhookTrigger(source="src", **filters), kind
    )
    assert (result.matched, result.reason) == (reason is None, reason or "matched")
