"""What the model is told: system instructions from SKILL.md, and the user prompt.

Pure functions (no I/O but the context-injection commands, which the caller runs): the
system instructions are the SKILL.md body after `!`cmd`` context injection; the user prompt is

    <agent-config>…</agent-config>              the agent's params as JSON
    <credential-context>…</credential-context>  what the listed credentials give the agent
    <environment>…</environment>                the run's file system, tools and helpers
    <skill-lock>…</skill-lock>                  rlock / runlock / rlock-heartbeat
    <the trigger's suffix>                      why this run happens (schedule, manual, …)

each separated by a blank line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from action_llama.agent.trigger import MANUAL, SCHEDULE, trigger_suffix
from action_llama.credentials.types import BUILTIN
from action_llama.frontmatter import split_frontmatter

__all__ = ["MANUAL", "SCHEDULE", "trigger_suffix"]

#: `!`command``: replaced by the command's output before the model sees the body.
CONTEXT_COMMAND = re.compile(r"!`([^`]+)`")
MAX_INJECTED_ERROR = 500
DEFAULT_LOCK_TIMEOUT = 1800


class CommandOutput(NamedTuple):
    """What a context-injection command did (exit code -1: it could not run or timed out)."""

    code: int
    stdout: str
    stderr: str


def skill_body(skill_text: str, agent: str) -> str:
    """The SKILL.md body without its frontmatter; a placeholder when it is empty."""
    _, body = split_frontmatter(skill_text)
    return body if body.strip() else f"# {agent} Agent\n\nCustom agent.\n"


def inject_context(body: str, run: Callable[[str], CommandOutput]) -> str:
    """Replace each `!`cmd`` (in order, code blocks included) by what `run(cmd)` printed.

    Success: stdout without trailing whitespace. Failure: `[Error: <stderr, ≤500 chars>]`.
    """

    def replace(match: re.Match[str]) -> str:
        result = run(match.group(1))
        if result.code == 0:
            return result.stdout.rstrip()
        reason = result.stderr.strip() or f"exit code {result.code}"
        return f"[Error: {reason[:MAX_INJECTED_ERROR]}]"

    return CONTEXT_COMMAND.sub(replace, body)


@dataclass(frozen=True)
class Layout:
    """Where things are for this run, as the <environment> block tells the model."""

    host_user: bool = False
    work_dir: str = "/tmp"
    static_dir: str = "/app/static"
    credentials_dir: str = "/credentials"
    #: /workspace has a size cap (false when the host cannot make one).
    workspace_capped: bool = True


def agent_config_block(params: Mapping[str, Any] | None) -> str:
    text = json.dumps(dict(params or {}), ensure_ascii=False, separators=(",", ":"))
    return f"<agent-config>\n{text}\n</agent-config>"


def credential_block(refs: Sequence[str], credentials_dir: str) -> str:
    """What the listed credentials give the agent (each builtin type's line, in list order)."""
    kinds = [ref.partition(":")[0] for ref in refs]
    lines = [
        f"- {BUILTIN[kind].agent_context}"
        for kind in kinds
        if kind in BUILTIN and BUILTIN[kind].agent_context
    ]
    listed = "\n".join(lines) if lines else "- (none: this agent lists no such credential)"
    parts = [
        f"Credential files are available at `{credentials_dir}/` (read-only), one file per "
        "field: `<type>/<instance>/<field>`.",
        f"Environment variables already set from credentials:\n{listed}",
        "Use standard tools directly: `gh` CLI, `git`, `curl`.",
    ]
    git = []
    if "git_ssh" in kinds:
        git.append(
            "Clone repositories over SSH (`git clone git@github.com:owner/repo.git`); your key "
            "is configured through `GIT_SSH_COMMAND`."
        )
    if "github_token" in kinds:
        git.append(
            "git over HTTPS to GitHub authenticates with `GITHUB_TOKEN` through a credential "
            "helper that is already configured."
        )
    if git:
        parts.append("**Git:** " + " ".join(git))
    parts.append(
        "**Anti-exfiltration policy:**\n"
        "- NEVER output credentials in logs, comments, PRs, or any visible output\n"
        "- NEVER transmit credentials to unauthorized endpoints\n"
        '- If you detect credential exfiltration, immediately run: `al-shutdown "exfiltration '
        'detected"`'
    )
    return "<credential-context>\n" + "\n\n".join(parts) + "\n</credential-context>"


_HELPERS = (
    '**Helper commands** (on PATH): `al-status "<text>"` reports progress; '
    "`al-return <value>` (or the value on stdin) sends a result back to whoever started this "
    "run; `al-rerun` asks for another run after this one ends; `al-exit <code>` makes this run "
    "end with that exit code once you finish (it does not stop you); `al-shutdown "
    '"<reason>"` stops this run at once.'
)
_SETENV = (
    "**Environment variables:** each `bash` call runs in a fresh shell. Use `setenv NAME value` "
    "to set a variable that later `bash` calls keep."
)


def environment_block(layout: Layout) -> str:
    if layout.host_user:
        files = (
            f"**Filesystem:** You run as an operating-system user on the host. Your working "
            f"directory `{layout.work_dir}` is writable and is also your home (`$HOME`); it is "
            "deleted when this run ends, so anything worth keeping must be pushed or sent "
            "elsewhere. Elsewhere you can write only where that user's permissions allow. "
            f"Your agent files (SKILL.md, agent-config.json) are in `{layout.static_dir}` "
            "(read-only)."
        )
    else:
        size = " (2 GB)" if layout.workspace_capped else ""
        files = (
            "**Filesystem:** The root filesystem is read-only. You can write to:\n"
            f"- `{layout.work_dir}`: your working directory (2 GB, in memory, emptied when this "
            "run ends). Clone repositories and keep scratch files here.\n"
            f"- `/workspace`: persistent storage{size}, kept between runs of this agent.\n"
            "- `/home/node`: your home directory (`$HOME`, 64 MB).\n"
            f"Your agent files (SKILL.md, agent-config.json) are in `{layout.static_dir}` "
            "(read-only)."
        )
    tools = (
        "**Tools:** `bash` runs a command with `/bin/bash` in the working directory; `read`, "
        "`write` and `edit` work on files (relative paths start at the working directory). "
        "Long outputs are cut in the middle."
    )
    return "<environment>\n" + "\n\n".join((files, tools, _SETENV, _HELPERS)) + "\n</environment>"


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} seconds"


def lock_block(ttl_seconds: int = DEFAULT_LOCK_TIMEOUT) -> str:
    return (
        "<skill-lock>\n"
        "## Resource locks\n\n"
        "Other runs (of this agent or others) may work at the same time as you. Before you act "
        "on a shared resource (an issue, a pull request, a branch, a deployment), lock it so "
        "no other run works on it at once:\n\n"
        '- `rlock <key>` acquires the lock; it prints JSON, and `{"ok":true}` means you hold '
        "it.\n"
        "- `runlock <key>` releases it when you are done.\n"
        "- `rlock-heartbeat <key>` extends it while you are still working.\n\n"
        "Keys are URIs naming the resource, e.g. `github://owner/repo/issues/42`.\n\n"
        "Rules:\n"
        '- If `rlock` answers `{"ok":false,"reason":"no gateway"}`, this run has no lock '
        "service (it was started by hand with `al run`): go on without locks.\n"
        '- If `rlock` fails otherwise (a non-zero exit code, or anything but `"ok":true`), '
        "someone else holds the resource or the lock service cannot be reached: skip that "
        "resource and move on.\n"
        "- Hold one lock at a time, and release it before you take the next.\n"
        f"- A lock expires {_duration(ttl_seconds)} after it was taken or last extended.\n"
        "</skill-lock>"
    )


def user_prompt(
    config: Mapping[str, Any],
    layout: Layout,
    trigger: Mapping[str, Any] | None,
    prompt: str | None = None,
    *,
    suffix: str | None = None,
) -> str:
    """The whole user prompt for agent-config.json `config` (params, credentials, lockTimeout).

    The last block is `suffix` when given (the run's `$PROMPT`), else made from `trigger`.
    """
    ttl = config.get("lockTimeout")
    blocks = (
        agent_config_block(config.get("params")),
        credential_block(list(config.get("credentials") or []), layout.credentials_dir),
        environment_block(layout),
        lock_block(int(ttl) if ttl else DEFAULT_LOCK_TIMEOUT),
        suffix if suffix is not None else trigger_suffix(trigger, prompt),
    )
    return "\n\n".join(blocks)
