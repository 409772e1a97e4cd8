"""`al add <source>` and `al update [agent]`: agents from git repositories and folders."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from action_llama.cli.common import ProjectOption
from action_llama.cli.render import status, use_color
from action_llama.errors import ActionLlamaError, InstallError

if TYPE_CHECKING:
    from action_llama.install.agents import UpdatePlan

#: Longest diff shown per file; the rest is counted.
MAX_DIFF_LINES = 200


def add(
    source: str = typer.Argument(
        ..., metavar="SOURCE", help="owner/repo (on GitHub), a git URL, or a local folder."
    ),
    agent: str | None = typer.Option(
        None, "-a", "--agent", help="Which agent, when the source holds several."
    ),
    name: str | None = typer.Option(None, "--name", help="Install it under this name."),
    project_dir: Path = ProjectOption,
) -> None:
    """Install an agent from a git repository or folder into agents/<name>/, then check it.

    Copies SKILL.md, config.toml (recording the source, for al update), and the Dockerfile
    and test-script.sh when there are; then makes al doctor's checks for the agent.
    """
    from action_llama.cli.doctor import render
    from action_llama.doctor.checks import agent_checks
    from action_llama.install.agents import add_agent
    from action_llama.project.loader import check_project_dir

    root = project_dir.resolve()
    check_project_dir(root)
    status(f"Fetching {source} ...")
    installed = add_agent(root, source, agent=agent, name=name)
    about = f" ({installed.description})" if installed.description else ""
    status(f"Installed agent {installed.name}{about} from {installed.source}:")
    for filename in installed.files:
        status(f"  agents/{installed.name}/{filename}")
    checks = agent_checks(root, installed.name)
    typer.echo(render(checks, color=use_color(sys.stdout)))
    if any(c.status == "fail" for c in checks):
        status(f"Fix the above, then: al run {installed.name} -p {project_dir}")
        raise typer.Exit(1)
    status(f"Next: al run {installed.name} -p {project_dir}")


def update(
    agent: str | None = typer.Argument(
        None, metavar="[AGENT]", help="The agent to update (default: every installed one)."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking."),
    project_dir: Path = ProjectOption,
) -> None:
    """Fetch installed agents' sources again, show what changed, and apply it when you agree.

    SKILL.md, Dockerfile and test-script.sh are updated; config.toml is never overwritten.
    """
    from action_llama.install.agents import apply_update, installed_sources, plan_update
    from action_llama.project.loader import check_project_dir

    root = project_dir.resolve()
    check_project_dir(root)
    installed = installed_sources(root, agent)
    if not installed:
        status("No agent here was installed with al add (none has a source in its config.toml).")
        return
    pending = False
    failed = 0
    for name, source in installed:
        try:
            plan = plan_update(root, name, source)
        except ActionLlamaError as exc:
            from action_llama.cli.render import print_error

            print_error(exc)
            failed += 1
            continue
        if not _show(plan):
            continue
        if not yes and not sys.stdin.isatty():
            pending = True
            status(f"{name}: not applied (no terminal to ask in).")
            continue
        if yes or typer.confirm(f"Apply these changes to agents/{name}?", default=False):
            written = apply_update(plan)
            status(f"{name}: updated {', '.join(written)}")
        else:
            status(f"{name}: left as it was.")
    if pending:
        raise InstallError(
            "Changes were not applied: al update asks before it applies, and there is no "
            "terminal to ask in.",
            hint="Apply them with: al update --yes" + (f" {agent}" if agent else ""),
        )
    if failed:
        raise typer.Exit(1)


def _show(plan: UpdatePlan) -> bool:
    """Print what the source changes; True when there is something to apply."""
    if plan.config_differs:
        status(
            f"{plan.agent}: the source's config.toml differs from agents/{plan.agent}/config.toml; "
            "al update never overwrites it (compare by hand if you want its changes)."
        )
    for change in plan.changes:
        if change.new is None:
            status(
                f"{plan.agent}: {change.filename} is no longer in the source; kept "
                f"agents/{plan.agent}/{change.filename} (remove it yourself if it is not needed)."
            )
    if not plan.applicable:
        status(f"{plan.agent}: up to date with {plan.source}.")
        return False
    files = ", ".join(c.filename for c in plan.applicable)
    status(f"{plan.agent}: {files} changed in {plan.source}:")
    color = use_color(sys.stdout)
    for change in plan.applicable:
        lines = change.diff(plan.agent)
        for line in lines[:MAX_DIFF_LINES]:
            typer.echo(_paint(line, color))
        if len(lines) > MAX_DIFF_LINES:
            typer.echo(f"... {len(lines) - MAX_DIFF_LINES} more diff lines")
    return True


def _paint(line: str, color: bool) -> str:
    if not color or line.startswith(("+++", "---")):
        return line
    code = {"+": "32", "-": "31", "@": "36"}.get(line[:1])
    return f"\x1b[{code}m{line}\x1b[0m" if code else line
