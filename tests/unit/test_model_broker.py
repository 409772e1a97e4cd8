"""The model broker in-process, on loopback: real OpenAI and Anthropic SDK clients holding only
the run's token reach the fake model server through it, which gets the real key; usage is
counted from answers (streamed or not); the token limit refuses more; strangers get nothing."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI, PermissionDeniedError

from action_llama.egress.brokering import (
    drop_keys_dir,
    keys_dir,
    plan_for,
    remove_keys,
    write_keys,
)
from action_llama.egress.proxy import Proxy
from action_llama.egress.records import model_usage, read, records_path
from action_llama.egress.registry import Registration, register, token_digest
from action_llama.egress.usage import Meter

from fakes.model_server import FakeModelServer, Usage, reply

OPENAI_KEY = "sk-openai-brokered-sentinel-71c2"
ANTHROPIC_KEY = "sk-ant-brokered-sentinel-94d0"
SECRET = "run-secret-abc"
TOKEN = f"run1.{SECRET}"


@pytest.fixture
def server() -> Any:
    fake = FakeModelServer("127.0.0.1")
    yield fake
    fake.close()


def setup(tmp_path: Path, server: FakeModelServer, cap: int | None = None) -> tuple[Path, Path]:
    state, keys = tmp_path / "state", tmp_path / "keys"
    keys.mkdir()
    (keys / "run1.json").write_text(
        json.dumps({"models": {"gpt": OPENAI_KEY, "claude": ANTHROPIC_KEY}})
    )
    register(
        state,
        Registration(
            run="run1",
            agent="writer",
            mode="allowlist",
            rules=(("127.0.0.1", (server.port,), "model gpt (base_url)"),),
            address="127.0.0.1",
            token_sha256=token_digest(SECRET),
            models={"gpt": server.openai_url(), "claude": server.anthropic_url()},
            tokens_per_run=cap,
        ),
    )
    return state, keys


def with_broker(state: Path, keys: Path, test: Callable[[str], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        proxy = Proxy(state, keys=keys, host_address="127.0.0.1")
        await proxy.listen(0)
        proxy.port = next(iter(proxy.servers.values())).sockets[0].getsockname()[1]
        try:
            return await test(f"http://127.0.0.1:{proxy.port}/.al/models")
        finally:
            for listener in proxy.servers.values():
                listener.close()

    return asyncio.run(main())


def openai(base: str, token: str = TOKEN) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{base}/gpt", api_key=token, max_retries=0)


def test_both_sdks_stream_and_not_through_the_broker_with_the_key_added(
    tmp_path: Path, server: FakeModelServer
) -> None:
    """OpenAI and Anthropic clients, streaming and not, get their answers through the broker;
    the server sees the real key where the SDK put the token; each request is recorded with
    the tokens of its answer."""
    state, keys = setup(tmp_path, server)
    server.always(reply("hi", Usage(input=100, output=20)))
    messages: Any = [{"role": "user", "content": "hello"}]

    async def test(base: str) -> list[str]:
        client = openai(base)
        plain = await client.chat.completions.create(model="m", messages=messages)
        stream = await client.chat.completions.create(
            model="m", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        claude = AsyncAnthropic(base_url=f"{base}/claude", api_key=TOKEN, max_retries=0)
        answer = await claude.messages.create(model="c", max_tokens=50, messages=messages)
        text = ""
        async with claude.messages.stream(model="c", max_tokens=50, messages=messages) as s:
            async for delta in s.text_stream:
                text += delta
        return [plain.choices[0].message.content or "", streamed, answer.content[0].text, text]  # type: ignore[union-attr]

    assert with_broker(state, keys, test) == ["hi", "hi", "hi", "hi"]
    auth = [r.headers.get("authorization") or r.headers.get("x-api-key") for r in server.requests]
    assert auth[:2] == [f"Bearer {OPENAI_KEY}"] * 2
    assert all(ANTHROPIC_KEY in str(a) for a in auth[2:])
    assert not any(TOKEN in str(r.headers) for r in server.requests)
    seen = [r for r in read(records_path(state, "run1")) if r["kind"] == "model"]
    assert [(r["model"], r["tokens"]) for r in seen] == [("gpt", 120)] * 2 + [("claude", 120)] * 2
    assert model_usage(state, "run1") == {
        "inputTokens": 400,
        "outputTokens": 80,
        "cacheReadTokens": 0,
        "cacheWriteTokens": 0,
        "turnCount": 4,
    }


def test_the_token_limit_refuses_further_requests_and_is_recorded(
    tmp_path: Path, server: FakeModelServer
) -> None:
    """Once a run's counted tokens reach its cap, the broker records `limit` and answers its
    next request 403 `al_token_limit` without forwarding it."""
    state, keys = setup(tmp_path, server, cap=200)
    server.always(reply("hi", Usage(input=100, output=20)))
    messages: Any = [{"role": "user", "content": "hello"}]

    async def test(base: str) -> str:
        client = openai(base)
        for _ in range(2):
            await client.chat.completions.create(model="m", messages=messages)
        with pytest.raises(PermissionDeniedError) as refused:
            await client.chat.completions.create(model="m", messages=messages)
        return str(refused.value.body)

    assert "al_token_limit" in with_broker(state, keys, test)
    assert len(server.requests) == 2
    limit = [r for r in read(records_path(state, "run1")) if r["kind"] == "limit"]
    assert len(limit) == 1
    assert limit[0]["tokens"] == 240
    assert "token limit of 200 reached" in limit[0]["reason"]


def test_a_wrong_or_missing_token_gets_nothing(tmp_path: Path, server: FakeModelServer) -> None:
    """A token that is not the run's (or the right run id with another secret, or none) is
    refused 401 and nothing reaches the server."""
    state, keys = setup(tmp_path, server)
    server.always(reply("hi"))

    async def test(base: str) -> list[int]:
        statuses = []
        for token in ("run1.wrong", "run2." + SECRET, "sk-anything"):
            try:
                await openai(base, token).chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "x"}]
                )
            except Exception as exc:
                statuses.append(getattr(exc, "status_code", 0))
        return statuses

    assert with_broker(state, keys, test) == [401, 401, 401]
    assert server.requests == []


def test_usage_is_read_from_each_providers_streams() -> None:
    """OpenAI's final usage chunk and Anthropic's message_start / message_delta pieces both
    give the answer's counts."""
    openai_meter = Meter("text/event-stream")
    for piece in (
        b'data: {"choices":[{"delta":{"content":"a"}}],"usage":null}\n\n',
        b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,',
        b'"prompt_tokens_details":{"cached_tokens":2}}}\n\ndata: [DONE]\n\n',
    ):
        openai_meter.feed(piece)
    usage = openai_meter.finish()
    assert (usage.input, usage.output, usage.cache_read, usage.total) == (7, 3, 2, 10)
    claude_meter = Meter("text/event-stream; charset=utf-8")
    claude_meter.feed(
        b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
        b'{"input_tokens":11,"output_tokens":1,"cache_read_input_tokens":4}}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":9}}\n\n'
    )
    usage = claude_meter.finish()
    assert (usage.input, usage.output, usage.cache_read, usage.total) == (11, 9, 4, 24)


def test_agents_are_brokered_under_every_network_mode(make_project: Any) -> None:
    """An agent gets a broker plan with each model's endpoint and its cap (the agent's
    [limits] over the project's), under open as under allowlist."""
    from action_llama.project import load_project

    from support import model_agent

    root = make_project(
        {
            **model_agent("checked", config='models = ["gpt"]\n[limits]\ntokens_per_run = 50\n'),
            **model_agent("loose", config='models = ["gpt"]\n[network]\nmode = "open"\n'),
        },
        config='[limits]\ntokens_per_run = 900\n[models.gpt]\nprovider = "openai"\nmodel = "m"\n',
    )
    project = load_project(root)
    plan = plan_for(project.agents["checked"])
    assert plan.models == (("gpt", "https://api.openai.com/v1"),)
    assert plan.tokens_per_run == 50
    assert plan_for(project.agents["loose"]) == plan.__class__(plan.models, 900)


def test_raw_credentials_must_be_listed_and_doctor_warns(make_project: Any) -> None:
    """`raw_credentials` names listed credentials only (else a config error naming the file);
    al doctor warns about each agent that takes some raw."""
    from action_llama.doctor.checks import run_checks
    from action_llama.errors import ConfigError
    from action_llama.project import load_project

    from support import script_agent

    bad = make_project(
        script_agent("a", "true", 'credentials = ["github_token"]\nraw_credentials = ["x_y"]\n'),
        name="bad",
    )
    with pytest.raises(ConfigError) as error:
        load_project(bad)
    assert "agents/a/config.toml" in error.value.message
    assert 'raw_credentials names "x_y", which is not in credentials' in error.value.message
    good = make_project(
        script_agent(
            "a", "true", 'credentials = ["github_token:w"]\nraw_credentials = ["github_token:w"]\n'
        ),
        name="good",
    )
    (warning,) = [c for c in run_checks(good) if c.name == "raw credentials a"]
    assert warning.status == "warn"
    assert "github_token:w" in warning.detail
    assert "agents/a/config.toml" in (warning.fix or "")


def test_a_projects_keys_folder_holds_a_runs_keys_for_its_life_and_goes_with_its_proxy() -> None:
    """A run's key files go when it ends, without making a folder for unbrokered runs; the
    project's folder (in /dev/shm, memory) goes when its proxy is torn down."""
    project = "test-" + os.urandom(5).hex()
    folder = keys_dir(project).parent / project
    folder.rmdir()
    write_keys(project, "r1", {}, [])  # a run with nothing brokered (an open one's)
    remove_keys(project, "r1")
    assert not folder.exists()
    write_keys(project, "r2", {"sonnet": "sk-sentinel"})
    assert (folder / "r2.json").stat().st_mode & 0o077 == 0
    remove_keys(project, "r2")
    assert list(folder.iterdir()) == []
    write_keys(project, "r3", {"sonnet": "sk-sentinel"})  # a run that outlived al
    drop_keys_dir(project)
    assert not folder.exists()


def test_open_agents_use_the_proxy_only_for_what_it_brokers(make_project: Any) -> None:
    """A scheduler readies the proxy for agents whose runs go through it: every checked agent;
    an open one only with models the broker forwards or tokens brokered as placeholders."""
    from action_llama.egress.brokering import uses_proxy
    from action_llama.project import load_project

    from support import model_agent, script_agent

    open_ = '[network]\nmode = "open"\n'
    root = make_project(
        {
            **script_agent("checked", "true"),
            **script_agent("bare", "true", open_),
            **script_agent("token", "true", 'credentials = ["github_token"]\n' + open_),
            **script_agent(
                "raw",
                "true",
                'credentials = ["github_token"]\nraw_credentials = ["github_token"]\n' + open_,
            ),
            **script_agent("ssh", "true", 'credentials = ["git_ssh"]\n' + open_),
            **model_agent("model", config='models = ["gpt"]\n' + open_),
        },
        config='[models.gpt]\nprovider = "openai"\nmodel = "m"\n',
    )
    agents = load_project(root).agents
    using = {name for name, agent in agents.items() if uses_proxy(agent)}
    assert using == {"checked", "token", "model"}
