"""An agent's `config.toml` (every key optional)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from action_llama.config._base import MAX_COUNT, MAX_SECONDS, After, Strict, setting
from action_llama.config.network import LimitsConfig, NetworkConfig
from action_llama.credentials.refs import CredentialRef

# Patterns stay strings, compiled on first use (re keeps them): a run that takes its project
# from the snapshot validates nothing and should not pay for compiling them.
NAME_RE = r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$"
#: An OS user or group name (`useradd`'s rule, plus upper case and dots some systems allow).
OS_NAME_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$"


def check_agent_name(name: str) -> str | None:
    """Why `name` cannot be an agent name, or None when it can."""
    if not 1 <= len(name) <= 64:
        return f'Agent name "{name}" is invalid: must be 1-64 characters.'
    if name == "default":
        return 'Agent name "default" is reserved. Choose a different name.'
    if not re.match(NAME_RE, name):
        return (
            f'Agent name "{name}" is invalid: must contain only lowercase letters, numbers, '
            "and hyphens (cannot start or end with a hyphen, no consecutive hyphens)."
        )
    return None


@dataclass(frozen=True, kw_only=True)
class Hooks(Strict):
    """`[hooks]`: shell commands run before and after the session."""

    pre: list[str] = setting(factory=list)
    post: list[str] = setting(factory=list)


#: A Swarm placement constraint: `<attribute> == <value>` or `!=`, as `docker service create
#: --constraint` takes it (node.id, node.hostname, node.role, node.platform.os,
#: node.labels.<name>, engine.labels.<name>, ...).
CONSTRAINT_RE = r"^\s*[A-Za-z][\w.-]*\s*(==|!=)\s*\S(.*\S)?\s*$"


def _constraint(constraint: str) -> str:
    if not re.match(CONSTRAINT_RE, constraint):
        raise ValueError(
            f'"{constraint}" is not a placement constraint; write it like '
            '"node.labels.al == true" or "node.role != manager"'
        )
    return constraint


def _user_name(name: str) -> str:
    return _os_name(name, "user")


def _group_name(name: str) -> str:
    return _os_name(name, "group")


def _os_name(name: str, what: str) -> str:
    if not re.match(OS_NAME_RE, name):
        raise ValueError(
            f'"{name}" is not a {what} name; use 1-32 letters, digits, "_", "." or "-" '
            '(for example "al-agent")'
        )
    return name


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig(Strict):
    """`[runtime]`: where the agent runs (in an agent's config.toml, or the project's as the
    default of every agent; the loader merges an agent's keys over the project's)."""

    type: Literal["container", "host-user", "swarm"] = "container"
    run_as: Annotated[str, After(_user_name)] = "al-agent"
    groups: list[Annotated[str, After(_group_name)]] = setting(factory=list)
    #: Swarm placement constraints; every one must hold on the node a run is placed on.
    constraints: list[Annotated[str, After(_constraint)]] = setting(factory=list)
    #: How /workspace lives on a cluster: "pinned" (kept across runs, on the node `al` runs
    #: on; runs go there) or "per-run" (a fresh 2 GB one each run; runs go to any node).
    workspace: Literal["pinned", "per-run"] = "pinned"

    def merged_over(self, default: RuntimeConfig, given: Iterable[str]) -> RuntimeConfig:
        """This table's keys the agent wrote (`given`) over `default` (the project's)."""
        return dataclasses.replace(default, **{key: getattr(self, key) for key in given})


@dataclass(frozen=True, kw_only=True)
class WebhookTrigger(Strict):
    """One `[[webhooks]]` entry: a source name plus filters (all must match; list items OR)."""

    source: str = setting(min_length=1)
    events: list[str] | None = None
    actions: list[str] | None = None
    repos: list[str] | None = None
    org: str | None = None
    orgs: list[str] | None = None
    labels: list[str] | None = None
    assignee: str | None = None
    author: str | None = None
    branches: list[str] | None = None
    conclusions: list[str] | None = None
    resources: list[str] | None = None
    organizations: list[str] | None = None
    guilds: list[str] | None = None
    channels: list[str] | None = None
    commands: list[str] | None = None
    users: list[str] | None = None
    team_ids: list[str] | None = None


def _refs_are_well_formed(ref: str) -> str:
    from action_llama.credentials.types import BUILTIN

    kind = BUILTIN.get(CredentialRef.parse(ref).type)
    if kind is not None and kind.host_only:
        raise ValueError(
            f'"{ref}" is used by al itself ({kind.description.rstrip(".")}); agents '
            "never receive it, so remove it from credentials"
        )
    return ref


def _schedule_is_cron(expr: str) -> str:
    from action_llama.config.cron import check_cron

    check_cron(expr)
    return expr


@dataclass(frozen=True, kw_only=True)
class AgentFileConfig(Strict):
    """`agents/<name>/config.toml` as written (the resolved view lives in `project`)."""

    source: str | None = None
    models: list[str] = setting(factory=list)
    credentials: list[Annotated[str, After(_refs_are_well_formed)]] = setting(factory=list)
    #: Listed credentials its runs get as they are (files and variables holding the real
    #: values), for a tool that needs them: not brokered, and `al doctor` warns.
    raw_credentials: list[str] = setting(factory=list)
    schedule: Annotated[str, After(_schedule_is_cron)] | None = None
    webhooks: list[WebhookTrigger] = setting(factory=list)
    hooks: Hooks = setting(factory=Hooks)
    params: dict[str, Any] = setting(factory=dict)
    scale: int | None = setting(None, ge=0, le=MAX_COUNT)
    timeout: int | None = setting(None, gt=0, le=MAX_SECONDS)
    max_work_queue_size: int | None = setting(None, ge=0, le=MAX_COUNT, alias="maxWorkQueueSize")
    runtime: RuntimeConfig = setting(factory=RuntimeConfig)
    #: Replaces the project's `[network]` for this agent when present.
    network: NetworkConfig | None = None
    #: Its own `[limits]`; each key set here replaces the project's.
    limits: LimitsConfig | None = None

    def __post_init__(self) -> None:
        listed = {_ref(r) for r in self.credentials}
        for ref in self.raw_credentials:
            if _ref(ref) not in listed:
                raise ValueError(
                    f'raw_credentials names "{ref}", which is not in credentials; list it '
                    "there too (raw_credentials only says how a listed one is given)"
                )


def _ref(text: str) -> tuple[str, str]:
    kind, _, instance = text.strip().partition(":")
    return kind, instance or "default"
