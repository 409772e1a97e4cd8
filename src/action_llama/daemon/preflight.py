"""What `al start` checks before it starts anything: `al doctor`'s checks, minus `--fix`.

A problem that would make runs (or their triggers) fail stops the start with every such problem
and its fix listed; anything else is a warning the daemon prints and goes on with. Images are not
built here: the daemon builds the chain next, and a Dockerfile that does not build stops it then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from action_llama.errors import NotReadyToStart

if TYPE_CHECKING:
    from action_llama.credentials.store import CredentialStore
    from action_llama.doctor import Check
    from action_llama.project import Project

#: Doctor only warns about these, but a daemon cannot do its job with them: a webhook source
#: without its signing secret rejects every delivery, so its agents would never be triggered.
FATAL_WARNINGS = ("webhook secret ",)


def is_fatal(check: Check) -> bool:
    return check.status == "fail" or (
        check.status == "warn" and check.name.startswith(FATAL_WARNINGS)
    )


def preflight(project: Project, store: CredentialStore) -> list[Check]:
    """The warnings to show; raises `NotReadyToStart` listing every fatal problem and its fix."""
    from action_llama.doctor.checks import project_checks
    from action_llama.doctor.result import Check

    checks = project_checks(project, store)
    if not project.agents:
        checks.append(
            Check(
                "project",
                "warn",
                "no agents yet",
                "add a folder agents/<name>/ with a SKILL.md: it is picked up while al start runs",
            )
        )
    fatal = [c for c in checks if is_fatal(c)]
    if fatal:
        count = f"{len(fatal)} problem{'s' * (len(fatal) > 1)}"
        lines = [f"The project cannot start: {count} would make its runs fail."]
        for check in fatal:
            first, *rest = _lines(check.detail) or [""]
            lines += [f"  {check.name}: {first}", *(f"    {line}" for line in rest)]
        fixes = [line for c in fatal if c.fix for line in _lines(c.fix)]
        hint = "\n".join([*fixes, "(al doctor shows every check)"])
        raise NotReadyToStart("\n".join(lines), hint=hint)
    return [c for c in checks if c.status == "warn"]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]
