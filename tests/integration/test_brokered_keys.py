"""Model keys stay on the host: a container run's model session reaches the fake model server
through the model broker, which adds the key; the run itself never holds it (environment,
every process's environment and command line, the files it can read, the prompt), the broker
counts the tokens, and `[limits] tokens_per_run` stops a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage, calc_price

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.egress.brokering import EXIT_TOKEN_LIMIT

from fakes.model_server import FakeModelServer, reply, tool_call
from support import (
    ProjectFactory,
    fake_models_config,
    json_records,
    model_agent,
    run_al,
    stored_runs,
)

pytestmark = [pytest.mark.docker]

OPENAI_KEY = "sk-openai-brokered-4f0e2a9c71"
ANTHROPIC_KEY = "sk-ant-brokered-8d3b5e1f06"

#: Looks for each key everywhere the run can: its variables, every process's environment and
#: command line, and the files of every writable or run-specific folder. The pattern is put
#: together from halves, so no process ever carries it whole.
SCAN = r"""
found=0
for half in "sk-openai-bro:kered-4f0e2a9c71" "sk-ant-brok:ered-8d3b5e1f06"; do
  p="${half%%:*}${half#*:}"
  env | grep -qF "$p" && { echo "in env"; found=1; }
  for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do
    grep -qaF "$p" "$f" 2>/dev/null && { echo "in $f"; found=1; }
  done
  hits=$(grep -rlaF "$p" /credentials /app /tmp /home /workspace /etc /run 2>/dev/null)
  [ -n "$hits" ] && { echo "in files $hits"; found=1; }
done
echo "broker=${AL_MODEL_BROKER:+set} found=$found files=$(find /credentials -type f | wc -l)"
"""


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    store = CredentialStore(tmp_path / "creds")
    store.write(CredentialRef("openai_key"), {"token": OPENAI_KEY})
    store.write(CredentialRef("anthropic_key"), {"token": ANTHROPIC_KEY})
    return store


def al_run(root: Path, agent: str, store: CredentialStore) -> tuple[Any, list[dict[str, Any]]]:
    result = run_al(
        "run", agent, "-p", str(root), "--json", env={"AL_CREDENTIALS_DIR": str(store.root)}
    )
    return result, json_records(result.stdout)


def test_the_run_never_holds_the_keys_the_server_gets(
    make_project: ProjectFactory,
    base_image: str,
    model_server: FakeModelServer,
    store: CredentialStore,
) -> None:
    """Both providers' models answer through the broker with the real keys in their headers,
    a streamed Anthropic answer included, while a scan from inside the run finds neither key
    anywhere and the prompts the server received hold neither; the run's token usage is the
    broker's count."""
    model_server.script(tool_call("bash", command=SCAN), reply("scanned"), model="gpt-fake")
    model_server.script(reply("streamed too"), model="claude-sonnet-4-5")
    config = fake_models_config(model_server) + (
        "\n[models.streamer]\n"
        'provider = "anthropic"\n'
        'model = "claude-sonnet-4-5"\n'  # a real model name: the SDK streams it
        f'base_url = "{model_server.anthropic_url("host.docker.internal")}"\n'
    )
    root = make_project(model_agent("scanner"), config=config)
    result, _ = al_run(root, "scanner", store)
    assert result.returncode == 0, result.stdout + result.stderr
    (root / "agents/scanner/config.toml").write_text('models = ["streamer"]\n')
    streamed, _ = al_run(root, "scanner", store)
    assert streamed.returncode == 0, streamed.stdout + streamed.stderr

    first, second, third = model_server.requests
    assert first.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert third.body.get("stream") is True
    assert ANTHROPIC_KEY in str(third.headers)
    scan = second.tool_results()[0]
    assert "broker=set found=0 files=0" in scan, scan
    for request in model_server.requests:
        for key in (OPENAI_KEY, ANTHROPIC_KEY):
            assert key not in request.raw
    runs = {r.run_id: r for r in stored_runs(root, "scanner")}
    usage = [(r.input_tokens, r.output_tokens, r.turns) for r in runs.values()]
    assert sorted(usage) == [(100, 20, 1), (200, 40, 2)]
    # Priced on the host from those counts; "gpt-fake" has no price, so its run has no cost.
    usage_priced = Usage(input_tokens=100, output_tokens=20)
    price = calc_price(usage_priced, "claude-sonnet-4-5", provider_id="anthropic")
    costs = sorted((r.turns, r.cost) for r in runs.values())
    assert costs == [(1, pytest.approx(float(price.total_price))), (2, None)]


def test_an_open_run_reaches_its_model_through_the_broker_too(
    make_project: ProjectFactory,
    base_image: str,
    model_server: FakeModelServer,
    store: CredentialStore,
) -> None:
    """Under `[network] mode = "open"` the key stays on the host as well."""
    model_server.script(tool_call("bash", command=SCAN), reply("scanned"), model="gpt-fake")
    agent = model_agent("opener", config='models = ["primary"]\n[network]\nmode = "open"\n')
    root = make_project(agent, config=fake_models_config(model_server))
    result, _ = al_run(root, "opener", store)
    assert result.returncode == 0, result.stdout + result.stderr
    first, second = model_server.requests
    assert first.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    scan = second.tool_results()[0]
    assert "broker=set found=0 files=0" in scan, scan


def test_a_run_reaching_its_token_limit_is_stopped(
    make_project: ProjectFactory,
    base_image: str,
    model_server: FakeModelServer,
    store: CredentialStore,
) -> None:
    """With `[limits] tokens_per_run = 150` a session whose second answer brings it to 240
    tokens gets no third: the run ends with status token_limit and exit 14, its log says why
    and how to raise it, and the server saw two requests."""
    model_server.always(tool_call("bash", command="echo again"), model="gpt-fake")
    root = make_project(
        model_agent("spender", config='models = ["primary"]\n[limits]\ntokens_per_run = 150\n'),
        config=fake_models_config(model_server),
    )
    result, records = al_run(root, "spender", store)
    assert result.returncode == EXIT_TOKEN_LIMIT, result.stdout + result.stderr
    assert len(model_server.requests) == 2
    limit = [r for r in records if r.get("source") == "egress" and "token limit" in r["msg"]]
    assert limit, records
    assert "token limit of 150 reached (240 tokens used)" in limit[0]["msg"]
    assert "tokens_per_run" in result.stderr
    (run,) = stored_runs(root, "spender")
    assert (run.status, run.exit_code, run.input_tokens) == ("token_limit", 14, 200)


SSH_PROBE = r"""
set -e
ls -A /credentials/git_ssh/default
test -S "$SSH_AUTH_SOCK"
echo "sock=$SSH_AUTH_SOCK"
echo "cmd=$GIT_SSH_COMMAND"
ssh-add -L > /tmp/key.pub
echo "listed=$(cut -d' ' -f1-2 /tmp/key.pub)"
printf 'signed in the run\n' > /tmp/data
ssh-keygen -Y sign -f /tmp/key.pub -n git /tmp/data >/dev/null 2>&1
echo "sig=$(tr -d '\n' < /tmp/data.sig)"
python3 -c '
import glob, os, sys
needle = (sys.argv[1] + sys.argv[2]).encode()
paths = glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/cmdline")
for top in ("/credentials", "/tmp", "/home", "/app", "/workspace"):
    paths += [os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs]
found = [p for p in paths if os.path.isfile(p) and needle in open(p, "rb").read()]
print("found=%d" % len(found), *found)
' "@PART1@" "@PART2@"
"""


def test_git_ssh_key_stays_in_the_runs_ssh_agent(
    make_project: ProjectFactory, base_image: str, store: CredentialStore, tmp_path: Path
) -> None:
    """A run listing git_ssh gets SSH_AUTH_SOCK (an agent holding its key, on a socket in its
    read-only /credentials) and no key file: ssh-add lists the key, ssh-keygen signs with it
    (the signature verifies on the host), git's ssh command uses the agent, and the private
    key's text is in none of its files or environments."""
    import subprocess

    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    private = key.read_text()
    store.write(CredentialRef("git_ssh"), {"id_rsa": private, "username": "Ada", "email": "a@b.c"})
    body = private.splitlines()[2]  # a line of the key's base64, split so no command holds it
    script = SSH_PROBE.replace("@PART1@", body[:20]).replace("@PART2@", body[20:])
    root = make_project(
        {
            "agents/ssh/SKILL.md": "---\ndescription: t\n---\nx\n",
            "agents/ssh/test-script.sh": script,
            "agents/ssh/config.toml": 'credentials = ["git_ssh"]\n',
        }
    )
    result, records = al_run(root, "ssh", store)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [str(r.get("msg")) for r in records if r.get("source") == "script"]
    public = key.with_suffix(".pub").read_text().split()
    assert {"username", "email", "agent.sock"} <= set(lines), lines
    assert "id_rsa" not in lines
    assert "sock=/credentials/git_ssh/default/agent.sock" in lines
    assert any(line.startswith("cmd=") and "StrictHostKeyChecking" in line for line in lines)
    assert f"listed={public[0]} {public[1]}" in lines
    assert "found=0" in lines
    (sig,) = [line[4:] for line in lines if line.startswith("sig=")]
    armored = sig.replace("-----BEGIN SSH SIGNATURE-----", "-----BEGIN SSH SIGNATURE-----\n")
    armored = armored.replace("-----END SSH SIGNATURE-----", "\n-----END SSH SIGNATURE-----\n")
    (tmp_path / "data.sig").write_text(armored)
    (tmp_path / "signers").write_text(f"ada {public[0]} {public[1]}\n")
    verified = subprocess.run(
        [
            "ssh-keygen",
            "-Y",
            "verify",
            "-f",
            str(tmp_path / "signers"),
            "-I",
            "ada",
            "-n",
            "git",
            "-s",
            str(tmp_path / "data.sig"),
        ],
        input="signed in the run\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr + armored
