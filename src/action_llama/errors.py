"""The exceptions `al` raises for things a user can fix.

Every error carries a one-line ``message`` (what is wrong, naming the file, key or
thing), an optional ``hint`` (what to do about it) and the ``exit_code`` the CLI
uses. Only ``action_llama.cli`` turns them into text; everything else raises.

    ActionLlamaError            .message, .hint, .exit_code
    ├── ConfigError             project/agent files, unknown keys, bad cron, bad names
    ├── AgentNotFound           `al run nope`
    ├── AgentNotRunnable        an agent that cannot run yet (no script, no model session)
    ├── CredentialMissing
    ├── CredentialInvalid       `al creds add` given an unknown type or field, or an empty value
    ├── ImageBuildError         names the layer and carries the build log tail
    ├── RuntimeUnavailable      "Docker is not running", with the platform's fix as the hint
    ├── RunNotFound             `al logs --run` of a run that does not exist
    ├── RunError                a run that could not be started or supervised
    ├── StateError              the project database cannot be opened, is locked, or is too new
    ├── GatewayError            the gateway cannot listen (port in use, address unavailable)
    ├── WebhookRejected         a delivery that cannot be processed (its receipt says why)
    ├── DaemonUnavailable       no daemon runs for the project, or it cannot take a request now
    ├── DaemonRunning           `al start` for a project whose scheduler already runs
    ├── NotReadyToStart         `al start` found problems that would make runs fail
    ├── InstallError            `al add` / `al update`: a source that cannot be fetched or used
    ├── TriggerRefused          the daemon refused a manual run (paused, disabled, stopping)
    └── RunAborted              inside a run: the in-run entry ends it with `exit_code`,
        │                       saying why in the run's log
        ├── SessionConfigError  the agent's models cannot work (13)   agent/models.py
        ├── ModelsExhausted     every model stayed rate limited (12)  agent/models.py
        ├── ModelFailed         a model failed otherwise (1)          agent/models.py
        ├── AuthAbort           too many auth failures in tools (1)   agent/tools.py
        └── MissingCredential   a listed credential was not staged    agent/credentials.py

Two exceptions stay outside the tree on purpose: `gateway.http.Problem` is how a route answers
early with an HTTP status it already knows (errors of the tree raised below the gateway are
turned into those answers), and `agent.tools.ToolError` is a failed tool call the model is told
about and recovers from, not a failure of `al` or of the run.
"""

from __future__ import annotations

import sys

# typing.TYPE_CHECKING without importing typing: this module loads in every run's start-up.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from action_llama.webhooks.base import ReceiptReason


class ActionLlamaError(Exception):
    """Base class: a problem the user can act on, shown without a traceback."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(ActionLlamaError):
    """A project or agent file is malformed or inconsistent."""

    def __init__(self, message: str, *, hint: str | None = None, problems: list[str] | None = None):
        super().__init__(message, hint=hint)
        #: Each problem found, one line each, already naming its file and key.
        self.problems = problems or []

    def __str__(self) -> str:
        if len(self.problems) <= 1:
            return self.message
        return "\n".join([self.message, *(f"  - {p}" for p in self.problems)])


class AgentNotFound(ActionLlamaError):
    """The named agent is not a folder with a SKILL.md under ``agents/``."""


class AgentNotRunnable(ActionLlamaError):
    """The agent is valid but lacks what a run needs (for example a model session)."""


class CredentialMissing(ActionLlamaError):
    """A credential an agent lists is not in the store."""


class CredentialInvalid(ActionLlamaError):
    """A credential given to `al creds` cannot be stored as given (its value is never shown)."""


class ImageBuildError(ActionLlamaError):
    """Building one layer of the image chain failed."""

    def __init__(self, message: str, *, layer: str, log_tail: str = "", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.layer = layer
        self.log_tail = log_tail

    def __str__(self) -> str:
        if not self.log_tail:
            return self.message
        return f"{self.message}\n--- last lines of the build log ---\n{self.log_tail}"


class RuntimeUnavailable(ActionLlamaError):
    """The container engine cannot be reached."""


class RunNotFound(ActionLlamaError):
    """No stored run matches the id asked for."""


class RunError(ActionLlamaError):
    """A run could not be started or supervised (not: the agent exited non-zero)."""


class ImageMissing(RunError):
    """The image a run was to start from is gone from where its runtime starts runs (pruned
    while the scheduler ran, say): building the agent's chain again brings it back."""


class StateError(ActionLlamaError):
    """The project database (`.al/action-llama.db`) cannot be used."""


class GatewayError(ActionLlamaError):
    """The gateway's HTTP server cannot be started (its port is taken, say)."""


class WebhookRejected(ActionLlamaError):
    """A delivery that cannot be processed; `reason` says which receipt reason it becomes, and
    `summary` what it was, when the sender said so outside the body (GitHub's event header)."""

    def __init__(
        self,
        message: str,
        *,
        reason: ReceiptReason,
        hint: str | None = None,
        summary: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.reason: ReceiptReason = reason
        self.summary = summary


class DaemonUnavailable(ActionLlamaError):
    """No daemon runs for the project, or it cannot take this request now (starting up,
    shutting down, or it does not accept this user's API key)."""


class DaemonRunning(ActionLlamaError):
    """`al start` for a project that already has a running scheduler (one per project)."""


class NotReadyToStart(ActionLlamaError):
    """`al start` found problems that would make runs fail (every one listed, with its fix)."""


class InstallError(ActionLlamaError):
    """`al add` or `al update` cannot fetch its source, find the agent in it, or install it."""


class TriggerRefused(ActionLlamaError):
    """The daemon refused to run an agent now; the message carries its reason."""


class RunAborted(ActionLlamaError):
    """Raised inside a run: the in-run entry ends the run with `exit_code` after saying why
    in its log (the subclasses live with the in-run code that raises them)."""


def docker_not_running(detail: str | None = None) -> RuntimeUnavailable:
    """The one "Docker is not running" error, with the fix for this platform."""
    if sys.platform == "darwin":
        fix = "Start Docker Desktop: open -a Docker"
    else:
        fix = "Start the Docker daemon: sudo systemctl start docker"
    message = "Docker is not running (or cannot be reached)."
    if detail:
        message += f" {detail}"
    return RuntimeUnavailable(message, hint=f"{fix}, then try again.")
