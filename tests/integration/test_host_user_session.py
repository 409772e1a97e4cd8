"""A model session in a host-user run: the agent's process talks to a model server on
127.0.0.1 and its tools work in the run's own work dir (no Docker involved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore

from fakes.model_server import FakeModelServer, reply, tool_call
from support import ProjectFactory, fake_models_config, json_records, model_agent, run_al

OPENAI_KEY = "sk-openai-hostuser-sentinel-42"


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    store = CredentialStore(tmp_path / "creds")
    store.write(CredentialRef("openai_key"), {"token": OPENAI_KEY})
    return store


def test_host_user_session_reaches_the_model_on_localhost(
    make_project: ProjectFactory,
    model_server: FakeModelServer,
    store: CredentialStore,
    host_users: tuple[str, ...],
    runs_root: Path,
) -> None:
    """A host-user agent's session talks to a server on 127.0.0.1; its tools work in its own
    work dir, which the prompt names."""
    model_server.script(
        tool_call("bash", command='echo "$PWD" && touch made-here && ls'),
        reply("done"),
        model="gpt-fake",
    )
    config = f'models = ["primary"]\n[runtime]\ntype = "host-user"\nrun_as = "{host_users[0]}"\n'
    root = make_project(
        model_agent("local", config=config), config=fake_models_config(model_server, "127.0.0.1")
    )
    env = {"AL_RUNS_DIR": str(runs_root), "AL_CREDENTIALS_DIR": str(store.root)}
    result = run_al("run", "local", "-p", str(root), "--json", "-q", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    records = json_records(result.stdout)
    work, listing = model_server.requests[-1].tool_results()[0].split("\n", 1)
    assert Path(work).parent == runs_root
    assert "made-here" in listing
    assert f"`{work}`" in model_server.requests[0].user_text()
    assert model_server.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert "Your working directory" in model_server.requests[0].user_text()
    usage = [r for r in records if r.get("msg") == "token-usage"]
    assert [u["turnCount"] for u in usage] == [2]
    assert OPENAI_KEY not in result.stdout
