"""Model sessions for real: `al run` of agents whose model is the fake provider server, over
real HTTP from real containers, with scripted conversations."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore

from fakes.model_server import Fail, FakeModelServer, Recorded, reply, tool_call
from support import ProjectFactory, fake_models_config, json_records, model_agent, run_al

pytestmark = [pytest.mark.docker]

OPENAI_KEY = "sk-openai-sentinel-5d1c9e0b7a2f"
ANTHROPIC_KEY = "sk-ant-sentinel-3e8b6a4c0d9f"
GITHUB_TOKEN = "ghp_sessionSentinel0123456789"


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    """A credential store holding both provider keys and a GitHub token."""
    store = CredentialStore(tmp_path / "creds")
    store.write(CredentialRef("openai_key"), {"token": OPENAI_KEY})
    store.write(CredentialRef("anthropic_key"), {"token": ANTHROPIC_KEY})
    store.write(CredentialRef("github_token"), {"token": GITHUB_TOKEN})
    return store


def al_run(
    root: Path, agent: str, store: CredentialStore, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    result = run_al(
        "run",
        agent,
        "-p",
        str(root),
        "--json",
        "-q",
        *args,
        env={"AL_CREDENTIALS_DIR": str(store.root), **(env or {})},
    )
    return result, json_records(result.stdout)


def messages(records: list[dict[str, Any]]) -> list[str]:
    return [str(r.get("msg")) for r in records]


def one(records: list[dict[str, Any]], msg: str) -> dict[str, Any]:
    found = [r for r in records if r.get("msg") == msg]
    assert len(found) == 1, (msg, messages(records))
    return found[0]


def test_session_edits_a_file_with_its_tools_and_returns_a_value(
    make_project: ProjectFactory,
    base_image: str,
    model_server: FakeModelServer,
    store: CredentialStore,
) -> None:
    """bash and edit create and change a file in /tmp; al-return's value is the run's result;
    each tool call is a `tool` line; token usage is reported once."""
    model_server.script(
        tool_call("bash", command="printf 'hello world\\n' > /tmp/note.txt && cat /tmp/note.txt"),
        tool_call("edit", path="/tmp/note.txt", old_text="world", new_text="llama"),
        tool_call("bash", command='v=$(cat /tmp/note.txt); al-return "$v"'),
        reply("Done: the note says hello llama."),
        model="gpt-fake",
    )
    root = make_project(model_agent("editor"), config=fake_models_config(model_server))
    result, records = al_run(root, "editor", store)
    assert result.returncode == 0, result.stdout + result.stderr
    results = model_server.requests[-1].tool_results()
    assert results[0] == "hello world"
    assert results[1] == "Edited /tmp/note.txt: replaced 1 occurrence(s)"
    assert '{"ok":true}' in results[2]
    assert one(records, "signal-result")["value"] == "hello llama"
    tools = [(r["tool"], r["exitCode"]) for r in records if r.get("msg") == "tool"]
    assert tools == [("bash", 0), ("edit", 0), ("bash", 0)]
    assert one(records, "assistant")["text"] == "Done: the note says hello llama."
    usage = one(records, "token-usage")
    assert (usage["inputTokens"], usage["outputTokens"], usage["turnCount"]) == (400, 80, 4)
    assert usage["totalTokens"] == 480
    assert usage["model"] == "gpt-fake"


def test_every_prompt_block_and_the_injected_context_reach_the_model(
    make_project: ProjectFactory,
    base_image: str,
    model_server: FakeModelServer,
    store: CredentialStore,
) -> None:
    """System instructions are the SKILL.md body with !`cmd` output (run after the pre hooks);
    the user prompt carries agent-config, credential-context, environment, skill-lock and the
    --prompt task; the four tools are offered."""
    model_server.script(reply("ok"), model="gpt-fake")
    body = (
        "# Reviewer\n\nHook said: !`cat /tmp/from-hook`\nSum: !`echo $((6 * 7))`\n"
        "Broken: !`echo oops >&2; exit 2`\n"
    )
    config = (
        'models = ["primary"]\ncredentials = ["github_token"]\n'
        '[params]\nrepo = "acme/app"\n[hooks]\npre = ["echo pre-hook-ran > /tmp/from-hook"]\n'
    )
    root = make_project(
        model_agent("reviewer", body, config),
        config=fake_models_config(model_server, extra="resourceLockTimeout = 600\n\n"),
    )
    result, _ = al_run(root, "reviewer", store, "--prompt", "Review PR 7")
    assert result.returncode == 0, result.stdout + result.stderr
    request = model_server.requests[0]
    system = request.system_text()
    assert "# Reviewer" in system
    assert "Hook said: pre-hook-ran\nSum: 42\nBroken: [Error: oops]" in system
    assert "description: session test" not in system
    user = request.user_text()
    assert '<agent-config>\n{"repo":"acme/app"}\n</agent-config>' in user
    assert "<credential-context>" in user
    assert "`GITHUB_TOKEN` / `GH_TOKEN`" in user
    assert "`/credentials/`" in user
    assert "<environment>" in user
    assert "`/workspace`" in user
    assert "`/home/node`" in user
    assert "<skill-lock>" in user
    assert "expires 10 minutes after" in user
    assert user.endswith(
        "<user-prompt>\nReview PR 7\n</user-prompt>\n\n"
        "You have been given a specific task. Complete the task described above."
    )
    assert sorted(request.tool_names()) == ["bash", "edit", "read", "write"]


def test_key_goes_in_the_auth_header_and_nowhere_in_logs_or_files(
    make_project: ProjectFactory,
    base_image: str,
    model_server: FakeModelServer,
    store: CredentialStore,
) -> None:
    """Each provider's key is sent as its SDK sends it (both send `Authorization: Bearer`);
    neither key appears in `al run` output, `al logs --json`, or any file the run stored."""
    model_server.script(Fail(429), model="gpt-fake")
    model_server.script(reply("ok"), model="claude-fake")
    root = make_project(model_agent("keyed"), config=fake_models_config(model_server))
    result, _ = al_run(root, "keyed", store)
    assert result.returncode == 0, result.stdout + result.stderr
    openai, anthropic = model_server.requests
    assert openai.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert anthropic.headers["authorization"] == f"Bearer {ANTHROPIC_KEY}"
    logs = run_al("logs", "keyed", "-p", str(root), "--json", "-n", "1000")
    assert "token-usage" in logs.stdout
    stored = [p.read_bytes() for p in root.rglob("*") if p.is_file()]
    for key in (OPENAI_KEY, ANTHROPIC_KEY):
        assert key not in result.stdout + result.stderr
        assert key not in logs.stdout
        assert not any(key.encode() in data for data in stored)


def test_rate_limited_primary_falls_back_to_the_second_model(
    make_project: ProjectFactory,
    base_image: str,
    model_server: FakeModelServer,
    store: CredentialStore,
) -> None:
    """HTTP 429 from the primary moves to the backup, which finishes the session (and keeps
    being asked while the primary cools down)."""
    model_server.always(Fail(429), model="gpt-fake")
    model_server.script(
        tool_call("bash", command="echo from-backup"), reply("finished"), model="claude-fake"
    )
    root = make_project(model_agent("falls"), config=fake_models_config(model_server))
    result, records = al_run(root, "falls", store)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(model_server.for_model("gpt-fake")) == 1
    assert len(model_server.for_model("claude-fake")) == 2
    limited = one(records, "rate limited, trying next model")
    assert (limited["model"], limited["status"]) == ("primary", 429)
    assert model_server.requests[-1].tool_results() == ["from-backup"]
    assert one(records, "token-usage")["model"] == "claude-fake"


def test_every_model_rate_limited_exits_12(
    make_project: ProjectFactory,
    base_image: str,
    model_server: FakeModelServer,
    store: CredentialStore,
) -> None:
    """429 and 529 from every model through 4 passes, with backoff between them: exit 12 and
    `all models exhausted`."""
    model_server.always(Fail(429), model="gpt-fake")
    model_server.always(Fail(529), model="claude-fake")
    root = make_project(model_agent("starved"), config=fake_models_config(model_server))
    started = time.monotonic()
    result, records = al_run(root, "starved", store, env={"AL_MODEL_BACKOFF_SECONDS": "0.05"})
    assert result.returncode == 12, result.stdout + result.stderr
    assert time.monotonic() - started < 120
    assert len(model_server.for_model("gpt-fake")) == 4
    assert len(model_server.for_model("claude-fake")) == 4
    backoffs = [
        r["delayMs"] for r in records if r.get("msg") == "all models exhausted, backing off"
    ]
    assert backoffs == [50.0, 100.0, 200.0]
    assert one(records, "all models exhausted")["level"] == "error"


def test_repeated_permission_failures_abort_the_run(
    make_project: ProjectFactory,
    base_image: str,
    model_server: FakeModelServer,
    store: CredentialStore,
) -> None:
    """Three tool calls failing with "Permission denied": the run stops at once with exit 1
    and the original's message; the model is not asked again."""
    denied = tool_call("bash", command="cat /etc/shadow")
    model_server.script(denied, denied, denied, reply("never asked"), model="gpt-fake")
    root = make_project(model_agent("denied"), config=fake_models_config(model_server))
    result, records = al_run(root, "denied", store)
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(model_server.requests) == 3
    assert "Permission denied" in model_server.requests[-1].tool_results()[-1]
    abort = one(records, "Aborting: repeated auth/permission failures — check credentials")
    assert abort["level"] == "error"


def test_refused_key_is_a_clear_error(
    make_project: ProjectFactory,
    base_image: str,
    model_server: FakeModelServer,
    store: CredentialStore,
) -> None:
    """HTTP 401: exit 1, no fallback, and a message naming the key and how to replace it."""
    model_server.script(
        Fail(401, f"Incorrect API key provided: {OPENAI_KEY[:8]}***"), model="gpt-fake"
    )
    root = make_project(model_agent("refused"), config=fake_models_config(model_server))
    result, records = al_run(root, "refused", store)
    assert result.returncode == 1
    assert model_server.for_model("claude-fake") == []
    errors = [r for r in records if r.get("level") == "error"]
    assert errors[0]["msg"].startswith("The openai key was refused (HTTP 401)")
    assert "al creds add openai_key" in errors[0]["msg"]
    assert OPENAI_KEY[:8] not in result.stdout


def test_kill_switch_stops_the_session_within_seconds(
    make_project: ProjectFactory,
    base_image: str,
    model_server: FakeModelServer,
    store: CredentialStore,
) -> None:
    """`al-shutdown` (SIGTERM to $AL_ENTRY_PID) ends the session and its running command at
    once."""
    model_server.script(
        tool_call("bash", command="(sleep 1; al-shutdown 'test says stop') & sleep 120"),
        reply("never asked"),
        model="gpt-fake",
    )
    root = make_project(model_agent("stopper"), config=fake_models_config(model_server))
    started = time.monotonic()
    result, records = al_run(root, "stopper", store)
    assert time.monotonic() - started < 60
    assert result.returncode == 143, result.stdout + result.stderr
    assert "session stopped" in messages(records)
    assert len(model_server.requests) == 1


def test_anthropic_streamed_session_with_a_named_key_instance(
    make_project: ProjectFactory,
    base_image: str,
    model_server: FakeModelServer,
    store: CredentialStore,
) -> None:
    """A Claude model whose SDK streams its answer (a real model name: large max_tokens) works
    with tool calls, uses the key instance the agent lists (anthropic_key:work), gets its
    thinkingLevel as Anthropic's thinking setting, and is priced."""
    store.write(CredentialRef("anthropic_key", "work"), {"token": "sk-ant-work-instance-77"})
    model_server.script(
        tool_call("write", path="out.txt", content="streamed"),
        tool_call("read", path="/tmp/out.txt"),
        reply("read it back"),
        model="claude-sonnet-4-5",
    )
    config = (
        "[models.sonnet]\n"
        'provider = "anthropic"\n'
        'model = "claude-sonnet-4-5"\n'
        'thinkingLevel = "low"\n'
        f'base_url = "{model_server.anthropic_url("host.docker.internal")}"\n'
    )
    agent = model_agent(
        "streamer", config='models = ["sonnet"]\ncredentials = ["anthropic_key:work"]\n'
    )
    root = make_project(agent, config=config)
    result, records = al_run(root, "streamer", store)
    assert result.returncode == 0, result.stdout + result.stderr
    first: Recorded = model_server.requests[0]
    assert first.body.get("stream") is True
    assert first.body["thinking"]["type"] == "enabled"
    assert first.headers["authorization"] == "Bearer sk-ant-work-instance-77"
    assert model_server.requests[-1].tool_results() == ["Wrote 8 bytes to out.txt", "streamed"]
    usage = one(records, "token-usage")
    assert usage["cost"] is not None
