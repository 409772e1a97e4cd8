"""`al doctor`: check the project and this machine, one line per check, the fix under each."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from action_llama.cli.common import ProjectOption
from action_llama.cli.render import use_color

if TYPE_CHECKING:
    from action_llama.doctor import Check

MARKS = {"ok": ("✓", "32"), "warn": ("!", "33"), "fail": ("✗", "31")}


def doctor(
    project_dir: Path = ProjectOption,
    fix: bool = typer.Option(
        False,
        "--fix",
        help="Repair what can be: create host users, write their sudo rule. Never builds images.",
    ),
) -> None:
    """Check the project, Docker, credentials, webhooks and host users; exit 1 if any fail."""
    from action_llama.doctor import run_checks

    checks = run_checks(project_dir, fix=fix)
    typer.echo(render(checks, color=use_color(sys.stdout)))
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


def render(checks: list[Check], *, color: bool = False) -> str:
    """The table: mark, name, detail; then `fix:` lines; then a summary."""
    width = max(len(c.name) for c in checks)
    pad = " " * (width + 6)
    lines: list[str] = []
    for check in checks:
        mark, code = MARKS[check.status]
        if color:
            mark = f"\x1b[{code}m{mark}\x1b[0m"
        first, *rest = check.detail.splitlines() or [""]
        lines.append(f"  {mark} {check.name:<{width}}  {first}")
        lines += [f"{pad}{line}" for line in rest]
        if check.fix and check.status != "ok":
            fix_first, *fix_rest = check.fix.splitlines()
            lines.append(f"{pad}fix: {fix_first}")
            lines += [f"{pad}     {line}" for line in fix_rest]
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    summary = f"{failed} check{'s' * (failed > 1)} failed" if failed else "All checks passed"
    if warned:
        summary += f", {warned} warning{'s' * (warned > 1)}"
    lines += ["", summary + "."]
    return "\n".join(lines)
