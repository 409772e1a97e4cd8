"""GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`, event in `X-GitHub-Event`.

Events read in detail: issues, pull_request, issue_comment, pull_request_review, push and
workflow_run. Any other event gets a generic context whose title is its action (or the
event name). A ping (sent when the hook is created), a delivery without `X-GitHub-Event` and
a payload without `repository.full_name` carry nothing to act on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from action_llama.errors import WebhookRejected
from action_llama.webhooks.base import (
    Ignored,
    dig,
    first_text,
    header,
    hmac_sha256_matches,
    integer,
    load_object,
    names,
    text,
)
from action_llama.webhooks.context import WebhookEvent

Fields = dict[str, Any]


def _issues(body: Fields) -> Fields | None:
    issue = body.get("issue")
    if not isinstance(issue, dict):
        return None
    return {
        "number": integer(issue.get("number")),
        "title": text(issue.get("title")),
        "body": text(issue.get("body")),
        "url": text(issue.get("html_url")),
        "author": text(dig(issue, "user", "login")),
        "assignee": text(dig(issue, "assignee", "login")),
        "labels": names(issue.get("labels")),
    }


def _pull_request(body: Fields) -> Fields | None:
    pr = body.get("pull_request")
    if not isinstance(pr, dict):
        return None
    return {
        "number": integer(pr.get("number")),
        "title": text(pr.get("title")),
        "body": text(pr.get("body")),
        "url": text(pr.get("html_url")),
        "author": text(dig(pr, "user", "login")),
        "assignee": text(dig(pr, "assignee", "login")),
        "labels": names(pr.get("labels")),
        "branch": text(dig(pr, "head", "ref")),
    }


def _issue_comment(body: Fields) -> Fields | None:
    issue, comment = body.get("issue"), body.get("comment")
    if not isinstance(issue, dict) or not isinstance(comment, dict):
        return None
    return {
        "number": integer(issue.get("number")),
        "title": text(issue.get("title")),
        "url": text(comment.get("html_url")),
        "author": text(dig(issue, "user", "login")),
        "labels": names(issue.get("labels")),
        "comment": text(comment.get("body")),
    }


def _pull_request_review(body: Fields) -> Fields | None:
    pr, review = body.get("pull_request"), body.get("review")
    if not isinstance(pr, dict) or not isinstance(review, dict):
        return None
    return {
        "number": integer(pr.get("number")),
        "title": text(pr.get("title")),
        "url": text(review.get("html_url")),
        "author": text(dig(pr, "user", "login")),
        "branch": text(dig(pr, "head", "ref")),
        "comment": text(review.get("body")),
    }


def _push(body: Fields) -> Fields | None:
    ref = text(body.get("ref")) or ""
    return {
        "title": text(dig(body, "head_commit", "message")),
        "url": text(body.get("compare")),
        "author": first_text(
            dig(body, "head_commit", "author", "username"), dig(body, "pusher", "name")
        ),
        "branch": ref.removeprefix("refs/heads/") or None,
    }


def _workflow_run(body: Fields) -> Fields | None:
    run = body.get("workflow_run")
    if not isinstance(run, dict):
        return None
    prs = run.get("pull_requests")
    first_pr = prs[0] if isinstance(prs, list) and prs else None
    return {
        "number": integer(dig(first_pr, "number")),
        "title": text(run.get("name")),
        "url": text(run.get("html_url")),
        "author": text(dig(run, "actor", "login")),
        "branch": text(run.get("head_branch")),
        "conclusion": text(run.get("conclusion")),
    }


_EXTRACT: dict[str, Callable[[Fields], Fields | None]] = {
    "issues": _issues,
    "pull_request": _pull_request,
    "issue_comment": _issue_comment,
    "pull_request_review": _pull_request_review,
    "push": _push,
    "workflow_run": _workflow_run,
}


class GitHubProvider:
    """GitHub repository and organization webhooks (JSON or form-encoded)."""

    type = "github"
    credential_type = "github_webhook_secret"
    credential_field = "secret"
    signature_headers = ("x-hub-signature-256", "x-hub-signature")

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> bool:
        signature = header(headers, "x-hub-signature-256")
        return hmac_sha256_matches(body, signature, secrets, prefix="sha256=")

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        return header(headers, "x-github-delivery") or None

    def parse(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent | Ignored:
        event = header(headers, "x-github-event")
        if not event:
            return Ignored("no X-GitHub-Event header")
        if event == "ping":
            return Ignored("ping (GitHub checking the webhook)", summary="ping")
        try:
            data = load_object(body, headers)
        except WebhookRejected as exc:
            raise WebhookRejected(exc.message, reason=exc.reason, summary=event) from exc
        action = text(data.get("action"))
        summary = f"{event} {action}" if action else event
        repo = text(dig(data, "repository", "full_name"))
        if repo is None:
            return Ignored(f"{event} without repository.full_name", summary=summary)
        extract = _EXTRACT.get(event)
        if extract is None:
            fields: Fields | None = {"title": action or event}
        else:
            fields = extract(data)
        if fields is None:
            return Ignored(f"{event} without the objects it should carry", summary=summary)
        return WebhookEvent(
            source=self.type,
            event=event,
            action=action,
            repo=repo,
            sender=text(dig(data, "sender", "login")) or "unknown",
            **fields,
        )
