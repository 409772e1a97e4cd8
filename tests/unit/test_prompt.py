"""What the model is told: instructions from SKILL.md, and each block of the user prompt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from action_llama.agent.prompt import (
    MANUAL,
    SCHEDULE,
    CommandOutput,
    Layout,
    agent_config_block,
    credential_block,
    environment_block,
    inject_context,
    lock_block,
    skill_body,
    trigger_suffix,
    user_prompt,
)


def test_skill_body_drops_the_frontmatter() -> None:
    """The instructions are the body after the frontmatter block."""
    text = "---\nname: x\ndescription: d\n---\n# Reviewer\n\nReview PRs.\n"
    assert skill_body(text, "rev") == "# Reviewer\n\nReview PRs.\n"


@pytest.mark.parametrize(
    "text", ["---\ndescription: d\n---\n", "---\ndescription: d\n---\n \n\n", ""]
)
def test_empty_body_gets_the_placeholder(text: str) -> None:
    """An empty body becomes `# <name> Agent\\n\\nCustom agent.\\n`."""
    assert skill_body(text, "rev") == "# rev Agent\n\nCustom agent.\n"


def test_context_injection_replaces_each_command_in_order() -> None:
    """Each !`cmd` is run in order and replaced by its stdout without trailing whitespace,
    code blocks included."""
    ran: list[str] = []

    def run(cmd: str) -> CommandOutput:
        ran.append(cmd)
        return CommandOutput(0, f"out of {cmd}\n\n", "")

    body = "Date: !`date +%F`\n```\n!`ls -1`\n```\nagain !`date +%F`"
    result = inject_context(body, run)
    assert ran == ["date +%F", "ls -1", "date +%F"]
    assert result == "Date: out of date +%F\n```\nout of ls -1\n```\nagain out of date +%F"


def test_failed_command_becomes_an_error_with_its_stderr_cut_at_500() -> None:
    """A failing command is replaced by [Error: <stderr ≤ 500 chars>]; with no stderr, its
    exit code."""
    outputs = iter([CommandOutput(2, "partial", "x" * 600 + "\n"), CommandOutput(3, "", "")])
    result = inject_context("a !`one` b !`two`", lambda _cmd: next(outputs))
    assert result == f"a [Error: {'x' * 500}] b [Error: exit code 3]"


def test_text_without_commands_is_unchanged() -> None:
    """Backticks without the leading ! are left alone, and nothing runs."""
    body = "Use `git status` and ``!`` here."
    assert inject_context(body, lambda _cmd: pytest.fail("nothing should run")) == body


def test_agent_config_is_compact_json_of_the_params() -> None:
    """<agent-config> holds the params as compact JSON (unicode kept); none gives {}."""
    block = agent_config_block({"repo": "acme/app", "labels": ["bug"], "note": "café"})
    assert (
        block
        == '<agent-config>\n{"repo":"acme/app","labels":["bug"],"note":"café"}\n</agent-config>'
    )
    assert agent_config_block(None) == "<agent-config>\n{}\n</agent-config>"


def test_credential_context_lists_each_listed_credential_in_order() -> None:
    """The agent-context line of each builtin ref, in list order; provider keys and unknown
    types have none; the files' true path is named."""
    block = credential_block(
        ["sentry_token", "anthropic_key:work", "github_token:bot", "no_such_type"], "/run/creds"
    )
    lines = [line for line in block.splitlines() if line.startswith("- `")]
    assert lines[0].startswith("- `SENTRY_AUTH_TOKEN`")
    assert lines[1].startswith("- `GITHUB_TOKEN` / `GH_TOKEN`")
    assert len(lines) == 2
    assert "`/run/creds/`" in block
    assert block.startswith("<credential-context>\n")
    assert block.endswith("\n</credential-context>")
    assert "al-shutdown" in block


def test_git_advice_follows_the_credentials_listed() -> None:
    """SSH clone advice only with git_ssh, the HTTPS helper only with github_token."""
    assert "SSH" not in credential_block(["github_token"], "/credentials")
    assert "git@github.com" in credential_block(["git_ssh"], "/credentials")
    assert "credential helper" not in credential_block(["git_ssh"], "/credentials")
    assert "(none" in credential_block([], "/credentials")


def test_container_environment_names_our_writable_places() -> None:
    """The container's block: read-only root, /tmp work dir, /workspace, /home/node, setenv."""
    block = environment_block(Layout())
    for text in ("read-only", "`/tmp`", "`/workspace`", "2 GB", "`/home/node`", "64 MB", "setenv"):
        assert text in block
    assert "`/app/static`" in block
    assert "(2 GB)" not in environment_block(Layout(workspace_capped=False))


def test_host_user_environment_names_the_work_dir_as_home() -> None:
    """A host-user run is told its work dir is writable and its home, with no /workspace."""
    block = environment_block(Layout(host_user=True, work_dir="/tmp/al-runs/abc"))
    assert "`/tmp/al-runs/abc`" in block
    assert "`$HOME`" in block
    assert "/workspace" not in block
    assert "read-only." not in block.split("\n")[1]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1800, "30 minutes"),
        (3600, "1 hour"),
        (7200, "2 hours"),
        (60, "1 minute"),
        (90, "90 seconds"),
    ],
)
def test_lock_block_states_the_real_ttl(seconds: int, text: str) -> None:
    """The lock block's expiry comes from the project's lock timeout."""
    block = lock_block(seconds)
    assert f"expires {text} after" in block
    assert block.startswith("<skill-lock>")
    assert block.endswith("</skill-lock>")
    for command in ("rlock <key>", "runlock <key>", "rlock-heartbeat <key>"):
        assert command in block
    assert '{"ok":false,"reason":"no gateway"}' in block


def test_schedule_and_manual_suffixes_are_the_originals() -> None:
    """Schedule, manual, and manual with an empty prompt, word for word (§6.3)."""
    assert trigger_suffix({"type": "schedule"}) == SCHEDULE
    assert SCHEDULE == (
        "You are running on a schedule. Check for new work and act on anything you find."
    )
    assert trigger_suffix({"type": "manual"}) == MANUAL
    assert trigger_suffix(None) == MANUAL
    assert trigger_suffix({"type": "manual", "prompt": "  \n"}) == MANUAL


def test_manual_prompt_becomes_the_user_prompt_block() -> None:
    """A manual run's prompt (trimmed) from trigger.json, else prompt.txt, is the task."""
    expected = (
        "<user-prompt>\nfix the build\n</user-prompt>\n\n"
        "You have been given a specific task. Complete the task described above."
    )
    assert trigger_suffix({"type": "manual", "prompt": " fix the build\n"}) == expected
    assert trigger_suffix(None, "fix the build") == expected


def test_webhook_suffix_carries_the_event_as_json() -> None:
    """A webhook run gets the context JSON inside <webhook-trigger>."""
    context = {"source": "github", "event": "issues", "title": 'say "hi"\nnow'}
    suffix = trigger_suffix({"type": "webhook", "context": context})
    head, _, rest = suffix.partition("\n</webhook-trigger>\n\n")
    assert json.loads(head.removeprefix("<webhook-trigger>\n")) == context
    assert rest == (
        "A webhook event just fired. Review the trigger context above and take appropriate action."
    )


def test_agent_call_suffix_names_the_caller_and_al_return() -> None:
    """An agent call's caller and context are valid JSON, whatever the context holds."""
    suffix = trigger_suffix({"type": "agent-call", "caller": "planner", "context": 'a "b"\nc'})
    head, _, rest = suffix.partition("\n</agent-call>\n\n")
    assert json.loads(head.removeprefix("<agent-call>\n")) == {
        "caller": "planner",
        "context": 'a "b"\nc',
    }
    assert rest == (
        'You were called by the "planner" agent. Review the call context above, do the '
        "requested work, and use `al-return` to send back your result."
    )


def test_user_prompt_puts_the_blocks_in_order() -> None:
    """agent-config, credential-context, environment, skill-lock, then the trigger suffix,
    separated by blank lines; lockTimeout sets the lock TTL."""
    config = {"params": {"a": 1}, "credentials": ["github_token"], "lockTimeout": 600}
    text = user_prompt(config, Layout(), {"type": "schedule"})
    order = [
        text.index(tag)
        for tag in ("<agent-config>", "<credential-context>", "<environment>", "<skill-lock>")
    ]
    assert order == sorted(order)
    assert text.endswith("\n\n" + SCHEDULE)
    assert "</agent-config>\n\n<credential-context>" in text
    assert "expires 10 minutes after" in text
    assert "expires 30 minutes after" in user_prompt({}, Layout(), None)


def test_a_script_gets_the_trigger_text_in_prompt_and_the_json_in_a_file(tmp_path: Path) -> None:
    """Script mode (the entry as a process, no container): a webhook run's test-script.sh sees
    in PROMPT the <webhook-trigger> text a model session gets last, and AL_TRIGGER_FILE names
    the trigger JSON."""
    static, work = tmp_path / "static", tmp_path / "work"
    static.mkdir()
    work.mkdir()
    trigger = {"type": "webhook", "context": {"source": "slack", "event": "app_mention"}}
    (static / "trigger.json").write_text(json.dumps(trigger))
    (static / "agent-config.json").write_text(json.dumps({"name": "t", "timeout": 60}))
    (static / "test-script.sh").write_text(
        'printf "%s\\n" "$PROMPT" > "$AL_WORK_DIR/prompt"\ncp "$AL_TRIGGER_FILE" "$AL_WORK_DIR/t"\n'
    )
    env = {
        "PATH": os.environ["PATH"],
        "AL_STATIC_DIR": str(static),
        "AL_WORK_DIR": str(work),
        "AL_CREDENTIALS_PATH": str(tmp_path / "none"),
        "HOME": str(work),
    }
    done = subprocess.run(
        [sys.executable, "-m", "action_llama.agent"],
        env=env,
        capture_output=True,
        timeout=60,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert (work / "prompt").read_text() == trigger_suffix(trigger) + "\n"
    assert json.loads((work / "t").read_text()) == trigger
