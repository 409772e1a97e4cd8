"""The checks `al doctor` makes, in order: project files, Docker and the base image (only when
a container agent needs them), each agent, credentials, webhook sources, host users.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from action_llama.credentials.store import CredentialStore
from action_llama.doctor.result import Check
from action_llama.errors import ActionLlamaError, ConfigError

if TYPE_CHECKING:
    from action_llama.config import WebhookSource
    from action_llama.project import Agent, Project


def run_checks(
    root: Path, *, fix: bool = False, store: CredentialStore | None = None
) -> list[Check]:
    """Every check for the project at `root`; with `fix`, repair what can be (host users)."""
    first, project = check_project(root)
    if project is None:
        return [first]
    return [first, *project_checks(project, store or CredentialStore(), fix=fix)]


def project_checks(project: Project, store: CredentialStore, *, fix: bool = False) -> list[Check]:
    """The checks of a loaded project (`al start` makes them too, before it starts anything)."""
    from action_llama.doctor.network import check_brokering, check_egress_state, check_network
    from action_llama.runtimes.registry import by_runtime, get_runtime

    checks = [
        check
        for name, agents in by_runtime(project.agents.values()).items()
        for check in get_runtime(name).checks(project, agents, fix=fix)
    ]
    for agent in project.agents.values():
        checks.append(check_agent(agent))
        checks.append(check_credentials(agent, store))
        checks.append(check_network(agent))
        if (raw := check_brokering(agent)) is not None:
            checks.append(raw)
    checks += check_webhooks(project, store)
    egress = check_egress_state(project, fix=fix)
    if egress is not None:
        checks.append(egress)
    checks.append(check_gateway_key(store, fix=fix))
    return checks


def agent_checks(root: Path, name: str, store: CredentialStore | None = None) -> list[Check]:
    """The checks that concern agent `name` (al add makes them for the agent it installed):
    the project loads with it, its runtime's checks (for a container agent: Docker, the base
    image, its Dockerfiles), model or script, credentials and webhooks."""
    from action_llama.runtimes.registry import runtime_for

    first, project = check_project(root)
    if project is None or name not in project.agents:
        return [first]
    store = store or CredentialStore()
    agent = project.agents[name]
    checks = [first, *runtime_for(agent).checks(project, [agent], fix=False)]
    checks += [check_agent(agent), check_credentials(agent, store)]
    sources = {f"webhook secret {t.source}" for t in agent.config.webhooks}
    checks += [
        c for c in check_webhooks(project, store) if c.name in sources | {f"webhooks {name}"}
    ]
    return checks


def check_gateway_key(store: CredentialStore, *, fix: bool = False) -> Check:
    """The operator API key (`al stat`, `al stop`... and /control/* need it); --fix makes it."""
    from action_llama.gateway.settings import API_KEY_REF, ensure_api_key

    name = "gateway API key"
    if store.has(API_KEY_REF):
        return Check(name, "ok", f"present ({API_KEY_REF})")
    if fix:
        ensure_api_key(store)
        return Check(name, "ok", f"made one ({API_KEY_REF})")
    return Check(
        name,
        "warn",
        "none yet: operator commands (al stat, al stop, /control/*) cannot reach al start",
        "al doctor --fix (al start also makes one)",
    )


def check_project(root: Path) -> tuple[Check, Project | None]:
    """The project and agent files load (every problem listed), and there is an agent."""
    from action_llama.project import load_project

    try:
        project = load_project(root)
    except ConfigError as exc:
        return Check("project", "fail", str(exc), exc.hint or "Fix the files named above."), None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        detail = f"Cannot read the project:{where}: {exc.strerror or exc}"
        return Check("project", "fail", detail, "Check the files' permissions."), None
    agents = list(project.agents.values())
    if not agents:
        return Check(
            "project",
            "warn",
            f"{project.root}: no agents yet.",
            "An agent is a folder agents/<name>/ with a SKILL.md; al new <dir> writes a "
            "project with an example agent.",
        ), project
    names = ", ".join(a.name for a in agents)
    return Check(
        "project", "ok", f"{project.root}: {len(agents)} agent{'s' * (len(agents) > 1)} ({names})"
    ), project


def check_agent(agent: Agent) -> Check:
    """The agent can run at all (a script, or a model session)."""
    from action_llama.runs.service import check_runnable
    from action_llama.runtimes.registry import runtime_for

    where = runtime_for(agent).describe(agent)
    try:
        check_runnable(agent)
    except ActionLlamaError as exc:
        return Check(f"agent {agent.name}", "fail", exc.message, exc.hint)
    mode = "script mode" if agent.script else "models " + ", ".join(n for n, _ in agent.models)
    return Check(f"agent {agent.name}", "ok", f"{where}, {mode}")


def check_credentials(agent: Agent, store: CredentialStore) -> Check:
    """Every credential the agent lists, and its models' keys, are in the store."""
    from action_llama.credentials.staging import refs_for
    from action_llama.credentials.types import BUILTIN
    from action_llama.credentials.values import similar_types

    name = f"credentials {agent.name}"
    required, _ = refs_for(
        agent.config.credentials, [(m.provider, m.auth_type) for _, m in agent.models]
    )
    if not required:
        return Check(name, "ok", "none needed")
    missing = [ref for ref in required if not store.has(ref)]
    if not missing:
        return Check(name, "ok", ", ".join(str(ref) for ref in required))
    fixes = []
    for ref in missing:
        if ref.type in BUILTIN:
            fixes.append(f"al creds add {ref}")
            continue
        similar = similar_types(ref.type)
        guess = f' (did you mean "{similar[0]}"?)' if similar else ""
        fixes.append(
            f'"{ref.type}" is not a credential type{guess}: '
            f"fix agents/{agent.name}/config.toml (al creds types lists them)"
        )
    detail = f"missing from {store.root}: {', '.join(str(ref) for ref in missing)}"
    return Check(name, "fail", detail, "\n".join(fixes))


def check_webhooks(project: Project, store: CredentialStore) -> list[Check]:
    """Each agent's `[[webhooks]]` sources are defined; the sources used can verify signatures."""
    sources = project.config.webhooks
    available = ", ".join(sources) or "(none)"
    checks: list[Check] = []
    used: dict[str, list[str]] = {}
    for agent in project.agents.values():
        if not agent.config.webhooks:
            continue
        unknown: list[str] = []
        for trigger in agent.config.webhooks:
            if trigger.source in sources:
                used.setdefault(trigger.source, []).append(agent.name)
            elif trigger.source not in unknown:
                unknown.append(trigger.source)
        name = f"webhooks {agent.name}"
        if not unknown:
            checks.append(_check_filters(agent, sources))
            continue
        details = [
            f'Agent "{agent.name}" references webhook source "{s}" which is not defined in '
            f"config.toml [webhooks]. Available: {available}"
            for s in unknown
        ]
        fix = _define_source(agent.name, unknown, sources)
        checks.append(Check(name, "fail", "\n".join(details), fix))
    for source, agents in used.items():
        check = _check_secret(source, project, store, agents)
        if check is not None:
            checks.append(check)
    return checks


def _check_filters(agent: Agent, sources: Mapping[str, WebhookSource]) -> Check:
    """Filters a source's type cannot apply would never match: say so up front."""
    from action_llama.webhooks.match import unsupported_filters

    name = f"webhooks {agent.name}"
    problems = [
        f"[[webhooks]] source {trigger.source}: {problem}"
        for trigger in agent.config.webhooks
        for problem in unsupported_filters(trigger, sources[trigger.source].type)
    ]
    if problems:
        return Check(
            name,
            "fail",
            "\n".join(problems),
            f"Remove or change those filters in agents/{agent.name}/config.toml.",
        )
    listed = sorted({t.source for t in agent.config.webhooks})
    return Check(name, "ok", f"sources {', '.join(listed)}")


def _define_source(agent: str, unknown: list[str], sources: Iterable[str]) -> str:
    close = difflib.get_close_matches(unknown[0], list(sources), n=1)
    if close:
        return f'Did you mean "{close[0]}"? (the source key in agents/{agent}/config.toml)'
    return f'Define it in config.toml:\n[webhooks.{unknown[0]}]\ntype = "github"'


def _check_secret(
    source: str, project: Project, store: CredentialStore, agents: list[str]
) -> Check | None:
    from action_llama.webhooks.registry import secret_ref

    config = project.config.webhooks[source]
    ref = secret_ref(config)
    if ref is None:
        return None  # the test provider signs nothing
    name = f"webhook secret {source}"
    if config.allow_unsigned:
        return Check(name, "ok", f"{source} accepts unsigned webhooks (allowUnsigned)")
    if store.has(ref):
        return Check(name, "ok", f"{ref} present")
    return Check(
        name,
        "warn",
        f'Source "{source}" ({config.type}, used by {", ".join(agents)}) has no signing secret '
        f'"{ref}": its webhooks will be rejected.',
        f"al creds add {ref}   (or allowUnsigned = true in [webhooks.{source}])",
    )
