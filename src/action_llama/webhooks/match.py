"""Whether an event fires one `[[webhooks]]` entry of an agent, and if not, why.

Every filter given must match (AND); the values of a list are alternatives (OR); matching
is exact and case-sensitive. An empty list counts as not given, as in the original.
`branches`, `conclusions` and Discord's `channels` are only checked when the event has a
branch, conclusion or channel (a `branches = ["main"]` agent still gets issue events), and
`commands` only for command interactions. A filter the source's type does not know (say
`resources` on a GitHub source) never matches: ignoring it would fire the agent on more
events than its author asked for. `unsupported_filters` reports those up front.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from action_llama.config.agent import WebhookTrigger
from action_llama.webhooks.context import WebhookEvent

#: A check of one filter: the reason it fails, or None when it passes.
Rule = Callable[[WebhookEvent, str, Any, WebhookTrigger], str | None]

#: Discord interactions whose title is a command name.
COMMAND_EVENTS = ("application_command", "autocomplete")


@dataclass(frozen=True)
class MatchResult:
    """`reason` names the failing filter and both sides, e.g. "repos: a/b not in [a/c]"."""

    matched: bool
    reason: str


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if value is None:
        return "(none)"
    return '""' if value == "" else str(value)


def _one_of(attr: str, *, optional: bool = False) -> Rule:
    """The event's `attr` must be in the list; with `optional`, only checked when it has one."""

    def rule(event: WebhookEvent, name: str, wanted: Any, trigger: WebhookTrigger) -> str | None:
        value = getattr(event, attr)
        if value is None:
            return (
                None if optional else f"{name}: event has no {attr}, wanted one of {_show(wanted)}"
            )
        return None if value in wanted else f"{name}: {_show(value)} not in {_show(wanted)}"

    return rule


def _equals(attr: str) -> Rule:
    def rule(event: WebhookEvent, name: str, wanted: Any, trigger: WebhookTrigger) -> str | None:
        value = getattr(event, attr)
        if value is None:
            return f"{name}: event has no {attr}, wanted {wanted}"
        return None if value == wanted else f"{name}: {value} is not {wanted}"

    return rule


def _labels(event: WebhookEvent, name: str, wanted: Any, trigger: WebhookTrigger) -> str | None:
    if not event.labels:
        return f"{name}: event has no labels, wanted one of {_show(wanted)}"
    if any(label in event.labels for label in wanted):
        return None
    return f"{name}: {_show(event.labels)} has none of {_show(wanted)}"


def _orgs(event: WebhookEvent, name: str, wanted: Any, trigger: WebhookTrigger) -> str | None:
    # `org` and `orgs` are one filter: the repository's owner is in their union.
    union = [*([trigger.org] if trigger.org else []), *(trigger.orgs or [])]
    owner = event.repo.partition("/")[0]
    return None if owner in union else f"{name}: {_show(owner)} not in {_show(union)}"


def _commands(event: WebhookEvent, name: str, wanted: Any, trigger: WebhookTrigger) -> str | None:
    if event.event not in COMMAND_EVENTS:
        return None
    if event.title in wanted:
        return None
    return f"{name}: {_show(event.title)} not in {_show(wanted)}"


_EVENTS, _ACTIONS, _REPOS = _one_of("event"), _one_of("action"), _one_of("repo")
_GITHUB: dict[str, Rule] = {
    "events": _EVENTS,
    "actions": _ACTIONS,
    "repos": _REPOS,
    "org": _orgs,
    "orgs": _orgs,
    "labels": _labels,
    "assignee": _equals("assignee"),
    "author": _equals("author"),
    "branches": _one_of("branch", optional=True),
    "conclusions": _one_of("conclusion", optional=True),
}
#: The filters each source type takes, and what each one looks at (reference §8.3).
FILTERS: dict[str, dict[str, Rule]] = {
    "github": _GITHUB,
    "generic": _GITHUB,
    "sentry": {"resources": _EVENTS},
    "linear": {
        "events": _EVENTS,
        "actions": _ACTIONS,
        "organizations": _REPOS,
        "labels": _labels,
        "assignee": _equals("assignee"),
        "author": _equals("author"),
    },
    # Mintlify projects are matched by `repos` (the documented `projects` key never worked).
    "mintlify": {
        "events": _EVENTS,
        "actions": _ACTIONS,
        "repos": _REPOS,
        "branches": _one_of("branch", optional=True),
    },
    # Discord events carry the guild in `repo` and the channel in `branch`.
    "discord": {
        "events": _EVENTS,
        "guilds": _REPOS,
        "channels": _one_of("branch", optional=True),
        "commands": _commands,
    },
    # X events carry the subscribed user id in `repo`.
    "twitter": {"events": _EVENTS, "repos": _REPOS},
    # Slack events carry the team (workspace) in `repo` and the user (or bot) in `sender`.
    "slack": {
        "events": _EVENTS,
        "channels": _one_of("channel"),
        "users": _one_of("sender"),
        "team_ids": _REPOS,
    },
    "test": {"events": _EVENTS, "actions": _ACTIONS, "repos": _REPOS},
}
_FIELDS = tuple(f.name for f in dataclasses.fields(WebhookTrigger) if f.name != "source")


def _given(trigger: WebhookTrigger) -> list[tuple[str, Any]]:
    """The filters `trigger` sets, in declaration order (empty lists count as unset)."""
    given = []
    for name in _FIELDS:
        value = getattr(trigger, name)
        if value is None or (isinstance(value, list) and not value):
            continue
        given.append((name, value))
    return given


def _unsupported(name: str, provider_type: str) -> str:
    rules = ", ".join(FILTERS[provider_type])
    return f"{name}: not a filter for {provider_type} sources (they take {rules})"


def unsupported_filters(trigger: WebhookTrigger, provider_type: str) -> list[str]:
    """One sentence per filter of `trigger` that a `provider_type` source cannot apply."""
    rules = FILTERS[provider_type]
    return [_unsupported(name, provider_type) for name, _ in _given(trigger) if name not in rules]


def match(
    event: WebhookEvent, source_name: str, trigger: WebhookTrigger, provider_type: str
) -> MatchResult:
    """Whether `event`, received by source `source_name`, fires `trigger`.

    Args:
        event: the parsed delivery.
        source_name: the `[webhooks.<name>]` the delivery came in on.
        trigger: one `[[webhooks]]` entry of an agent.
        provider_type: that source's `type`, which decides what each filter looks at.
    """
    if trigger.source != source_name:
        return MatchResult(False, f"source: listens to {trigger.source}, not {source_name}")
    rules = FILTERS[provider_type]
    for name, wanted in _given(trigger):
        rule = rules.get(name)
        if rule is None:
            return MatchResult(False, _unsupported(name, provider_type))
        why = rule(event, name, wanted, trigger)
        if why is not None:
            return MatchResult(False, why)
    return MatchResult(True, "matched")


def match_all(
    event: WebhookEvent,
    source_name: str,
    triggers: Sequence[WebhookTrigger],
    provider_type: str,
) -> MatchResult:
    """Whether any of an agent's entries for `source_name` fires; else every entry's reason."""
    reasons = []
    for trigger in triggers:
        if trigger.source != source_name:
            continue
        result = match(event, source_name, trigger, provider_type)
        if result.matched:
            return result
        reasons.append(result.reason)
    if not reasons:
        return MatchResult(False, f"no [[webhooks]] entry for source {source_name}")
    return MatchResult(False, "; ".join(reasons))
