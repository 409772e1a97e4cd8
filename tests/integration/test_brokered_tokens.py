"""Brokered credentials for container and host-user runs: a run given a `github_token` holds
only a placeholder; the proxy swaps it for the real token in the Authorization of HTTPS
requests to GitHub's hosts (here the test upstream, which answers as github.com and
api.github.com on the project's outside network, with its own test CA that the proxy trusts),
and nowhere else: git clones and pushes over smart HTTP to a server that takes only the real
token. A run given a `git_ssh` key clones and pushes over ssh to a real OpenSSH server
through its ssh-agent, holding no key file. A host-user run's model session reaches its model
through the broker, which holds the key.

Nothing reaches an address outside this machine: the proxy resolves those names to the test
container, the only holder of them on that network.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.egress.service import state_of
from egress_support import World, checks, egress_world

from fakes.model_server import FakeModelServer, reply, tool_call
from fakes.sshd import Sshd
from support import fake_models_config, model_agent, run_al, stored_runs, system_users, write_files

pytestmark = [pytest.mark.docker]

#: Joined when the tests run: no file holds them whole (a host-user run's scan reads /tmp,
#: where another checkout of these tests, or its bytecode, may be).
REAL = "".join(("ghp_brokeredToken", "Sentinel7a61c0"))
OPENAI_KEY = "".join(("sk-openai-hostUser", "Sentinel-5b2e"))
#: An OS user of this module's own (the firewall's rules and the users are per test session).
USER = "al-test-brk10"
HOST_USER = f'[runtime]\ntype = "host-user"\nrun_as = "{USER}"\n'
#: Looks for the token (given in halves: no process ever carries it whole) in every process's
#: environment and command line and in every file of the folders a run has.
SCAN = r"""
import glob, os, sys
token = (sys.argv[1] + sys.argv[2]).encode()
paths = glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/cmdline")
tops = ["/credentials", "/app", "/tmp", "/home", "/etc", "/workspace", "/dev/shm"]
tops += [os.environ["HOME"]] if os.environ.get("HOME", "/") != "/" else []
for top in tops + [os.environ.get("AL_CREDENTIALS_PATH", "/credentials")]:
    paths += [os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs]
found = []
for path in paths:
    try:
        with open(path, "rb") as fh:
            if token in fh.read():
                found.append(path)
    except OSError:
        pass
print("found", found)
sys.exit(1 if found else 0)
"""
#: The prelude's `check` records each command's output; the digests say what a host received.
PROBE = r"""
SCAN='@SCAN@'
check placeholder sh -c 'case "$GITHUB_TOKEN" in alph_*) echo "$GITHUB_TOKEN";; *) exit 1;; esac'
check staged_file sh -c 'cat "${AL_CREDENTIALS_PATH:-/credentials}/github_token/default/token"'
check sentinel python3 -c "$SCAN" ghp_brokeredToken Sentinel7a61c0
check bundle sh -c 'test "$SSL_CERT_FILE" = "$GIT_SSL_CAINFO" && test -s "$NODE_EXTRA_CA_CERTS" && echo ok'
check curl_github curl -sS -f -m 10 -H "Authorization: Bearer $GITHUB_TOKEN" https://api.github.com/echo
check httpx_github python3 -c 'import os, httpx2; print(httpx2.get("https://api.github.com/echo", headers={"Authorization": "Bearer " + os.environ["GITHUB_TOKEN"]}, timeout=10).text)'
check elsewhere curl $C -H "Authorization: Bearer $GITHUB_TOKEN" https://allowed.test/echo
check unlisted curl $C https://denied.test/hello
check placeholder_digest sh -c 'printf "Bearer %s" "$GITHUB_TOKEN" | sha256sum | cut -c1-64'
check git_https sh -c "git clone -q https://github.com/repo.git $T/repo && cat $T/repo/README"
check stale curl -sS -m 10 -H "Authorization: Bearer @STALE@" -w ' %{http_code}' https://api.github.com/echo
check mirror curl -sS -f -m 10 -H "Authorization: Bearer $GITHUB_TOKEN" -H "X-Token: $GITHUB_TOKEN" --data "token=$GITHUB_TOKEN" "https://api.github.com/mirror?token=$GITHUB_TOKEN"
check git_unauthorised env -u GIT_CONFIG_COUNT git ls-remote https://github.com/o/r.git
check git_push_https sh -c 'cd "$1" && git clone -q https://github.com/o/r.git smart && cd smart && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m "@NAME@ over https" && git push -q origin HEAD:refs/heads/@NAME@ && git rev-parse HEAD' _ "$T"
check git_push_ssh sh -c 'cd "$1" && { git clone -q git@ssh.test:r.git viassh && cd viassh && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m "@NAME@ over ssh" && git push -q origin HEAD:refs/heads/@NAME@; } 2>"$1/ssh.err" || { cat "$1/ssh.err"; exit 1; }; git rev-parse HEAD' _ "$T"
check ssh_files sh -c 'echo $(ls -A "${AL_CREDENTIALS_PATH:-/credentials}/git_ssh/default") keys=$(ls "$HOME/.ssh" 2>/dev/null | grep -c ^id_)'
check ssh_key python3 -c "$SCAN" "@KEY1@" "@KEY2@"
"""


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def models() -> Iterator[FakeModelServer]:
    server = FakeModelServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The git_ssh key of this module's runs (`<it>.pub`: its public half)."""
    key = tmp_path_factory.mktemp("ssh-key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: Any,
    base_image: str,
    models: FakeModelServer,
    ssh_key: Path,
) -> Iterator[World]:
    base = tmp_path_factory.mktemp("tokens")
    runs = Path(tempfile.mkdtemp(prefix="al-test-brk-", dir="/tmp"))
    runs.chmod(0o755)
    store = CredentialStore(runs / "creds")
    store.write(CredentialRef("github_token"), {"token": REAL})
    store.write(CredentialRef("openai_key"), {"token": OPENAI_KEY})
    ssh = {"id_rsa": ssh_key.read_text(), "username": "Ada", "email": "ada@example.test"}
    store.write(CredentialRef("git_ssh"), ssh)
    env = {"AL_CREDENTIALS_DIR": str(store.root), "AL_RUNS_DIR": str(runs / "runs")}
    names = ("github.com", "api.github.com")
    try:
        with (
            system_users(USER),
            egress_world(
                base,
                docker_client,
                base_image,
                env,
                extra_names=names,
                extra_allow=("ssh.test:22",),
                git_password=REAL,
            ) as world,
        ):
            state = state_of(world.root)
            state.mkdir(parents=True, exist_ok=True)
            (state / "trust.pem").write_text(world.ca.ca_pem)  # the upstream's test CA
            with (world.root / "config.toml").open("a") as config:
                config.write("\n" + fake_models_config(models))
            yield world
    finally:
        shutil.rmtree(runs, ignore_errors=True)


@pytest.fixture(scope="module")
def ssh_repos(world: World, docker_client: Any, sshd_image: str, ssh_key: Path) -> Path:
    """The repositories of an OpenSSH server answering as ssh.test on the world's network,
    which lets in the git_ssh key only (`r.git` is git@ssh.test:r.git); removed with it."""
    repos = world.root.parent / "ssh-git"
    shutil.copytree(world.git, repos)
    public = ssh_key.with_suffix(".pub").read_text()
    Sshd.start(docker_client, sshd_image, world.network, "ssh.test", public, repos, world.root)
    return repos


def pushed(repo: Path, branch: str) -> str:
    """The commit `branch` of the bare repository `repo` is at (owned by a server's user)."""
    return subprocess.run(
        ["git", "-c", "safe.directory=*", "--git-dir", str(repo), "rev-parse", branch],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def run_probe(
    world: World, name: str, ssh_key: Path, stale: str = "alph_" + "0" * 40, config: str = ""
) -> dict[str, Any]:
    line = ssh_key.read_text().splitlines()[2]  # of the key's base64, in halves (see SCAN)
    script = (
        PROBE.replace("@STALE@", stale)
        .replace("@SCAN@", SCAN)
        .replace("@NAME@", name)
        .replace("@KEY1@", line[:20])
        .replace("@KEY2@", line[20:])
    )
    world.add_agent(name, script, 'credentials = ["github_token", "git_ssh"]\n' + config)
    code, records = world.run(name)
    assert code == 0, records[-10:]
    return {"found": checks(records), "records": records}


def assert_git_and_placeholders(
    found: dict[str, tuple[str, str]], world: World, ssh_repos: Path, name: str, ssh: bool = True
) -> None:
    """Placeholders elsewhere than in Authorization reach api.github.com as they are (in the
    same request, Authorization gets the token); git over HTTPS with the run's credential
    helper clones and pushes to a server that takes only the real token (and refuses git
    without credentials); git over ssh clones and pushes through the run's ssh-agent; the run
    has no key file and the key's text is in none of its files or environments."""
    placeholder = found["placeholder"][1]
    mirrored = f"x-token={placeholder} query=token={placeholder} body=token={placeholder}"
    assert found["mirror"] == ("ok", f"{mirrored} auth-sha256={digest('Bearer ' + REAL)}")
    assert found["git_unauthorised"][0] == "fail", found["git_unauthorised"]
    assert found["git_push_https"][0] == "ok", found["git_push_https"]
    assert pushed(world.git / "r.git", name) == found["git_push_https"][1]
    if ssh:
        assert found["git_push_ssh"][0] == "ok", found["git_push_ssh"]
        assert pushed(ssh_repos / "r.git", name) == found["git_push_ssh"][1]
    assert found["ssh_files"] == ("ok", "agent.sock email username keys=0"), found["ssh_files"]
    assert found["ssh_key"][0] == "ok", found["ssh_key"]


def test_the_run_holds_a_placeholder_the_declared_host_gets_the_token(
    world: World, ssh_key: Path, ssh_repos: Path
) -> None:
    """curl and httpx with `Authorization: Bearer $GITHUB_TOKEN` reach api.github.com with the
    real token; git clones from github.com through the terminated TLS; the run's variable and
    file hold a placeholder, the token is in none of its variables, processes or files, and
    the same header sent to another host arrives as the placeholder. A placeholder of a run
    that ended is refused. Git over HTTPS and over ssh clone and push
    (`assert_git_and_placeholders`)."""
    first = run_probe(world, "gh", ssh_key)
    found = first["found"]
    placeholder = found["placeholder"][1]
    assert placeholder.startswith("alph_")
    assert found["staged_file"] == ("ok", placeholder)
    assert found["sentinel"][0] == "ok", found["sentinel"]
    assert found["bundle"] == ("ok", "ok")
    assert found["curl_github"] == ("ok", f"auth-sha256={digest('Bearer ' + REAL)}")
    assert found["httpx_github"] == ("ok", f"auth-sha256={digest('Bearer ' + REAL)}")
    assert found["elsewhere"] == ("ok", f"auth-sha256={found['placeholder_digest'][1]}")
    assert found["git_https"][0] == "ok", found["git_https"]
    assert found["unlisted"][0] == "fail", found["unlisted"]
    assert REAL not in str(first["records"])
    assert_git_and_placeholders(found, world, ssh_repos, "gh")
    second = run_probe(world, "gh2", ssh_key, stale=placeholder)["found"]
    assert second["stale"][1].endswith("403"), second["stale"]
    assert "not this run's" in second["stale"][1]


OPEN = '[network]\nmode = "open"\n'


@pytest.mark.parametrize("runtime", ["container", "host-user"])
def test_an_open_run_holds_placeholders_too(
    world: World, ssh_key: Path, ssh_repos: Path, runtime: str
) -> None:
    """Under `mode = "open"` the run reaches any host (one the project's allow list leaves
    out too), and its token is brokered all the same: a placeholder in its variable and file,
    nowhere the token, the real one at api.github.com through the proxy, the placeholder
    elsewhere, git over HTTPS (and ssh, from a container) working
    (`assert_git_and_placeholders`)."""
    config = OPEN if runtime == "container" else HOST_USER + OPEN
    found = run_probe(world, f"open-{runtime}", ssh_key, config=config)["found"]
    placeholder = found["placeholder"][1]
    assert placeholder.startswith("alph_")
    assert found["staged_file"] == ("ok", placeholder)
    assert found["sentinel"][0] == "ok", found["sentinel"]
    assert found["unlisted"][0] == "ok", found["unlisted"]
    assert found["curl_github"] == ("ok", f"auth-sha256={digest('Bearer ' + REAL)}")
    assert found["httpx_github"] == ("ok", f"auth-sha256={digest('Bearer ' + REAL)}")
    assert found["elsewhere"] == ("ok", f"auth-sha256={found['placeholder_digest'][1]}")
    assert found["git_https"][0] == "ok", found["git_https"]
    # An open host-user run's ssh connects from the host, where ssh.test has no address.
    ssh = runtime == "container"
    assert_git_and_placeholders(found, world, ssh_repos, f"open-{runtime}", ssh)


def test_brokered_hosts_are_recorded_as_terminated(world: World) -> None:
    """`al logs --egress` shows the GitHub connections with the placeholders swapped."""
    result = run_al("logs", "gh", "-p", str(world.root), "--egress", "--json")
    assert "placeholder(s) swapped" in result.stdout, result.stdout[-2000:]
    assert REAL not in result.stdout
    assert Path(world.root).is_dir()


def test_a_host_user_run_holds_placeholders_too(
    world: World, ssh_key: Path, ssh_repos: Path
) -> None:
    """The same for a run as an OS user: its variable and file hold a placeholder, curl and
    httpx reach api.github.com with the real token, another host gets the placeholder, and
    nothing the user can read (its environment, /dev/shm, /tmp...) holds the token; git over
    HTTPS and ssh clone and push, with no key file."""
    found = run_probe(world, "hu", ssh_key, config=HOST_USER)["found"]
    placeholder = found["placeholder"][1]
    assert placeholder.startswith("alph_")
    assert found["staged_file"] == ("ok", placeholder)
    assert found["sentinel"][0] == "ok", found["sentinel"]
    assert found["curl_github"] == ("ok", f"auth-sha256={digest('Bearer ' + REAL)}")
    assert found["httpx_github"] == ("ok", f"auth-sha256={digest('Bearer ' + REAL)}")
    assert found["elsewhere"] == ("ok", f"auth-sha256={found['placeholder_digest'][1]}")
    assert_git_and_placeholders(found, world, ssh_repos, "hu")


def test_a_host_user_model_session_goes_through_the_broker(
    world: World, models: FakeModelServer
) -> None:
    """A host-user run's model session gets its answers through the broker: the server sees
    the real key, a scan by the run's user finds it nowhere, and the run's usage is counted."""
    scan = SCAN.replace("'", "'\\''")
    command = f"python3 -c '{scan}' sk-openai-hostUser Sentinel-5b2e"
    models.script(tool_call("bash", command=command), reply("done"), model="gpt-fake")
    write_files(world.root, model_agent("hu-model", config='models = ["primary"]\n' + HOST_USER))
    code, records = world.run("hu-model")
    assert code == 0, records[-10:]
    first, second = models.requests[-2:]
    assert first.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert "found []" in second.tool_results()[0], second.tool_results()
    (run,) = stored_runs(world.root, "hu-model")
    assert (run.input_tokens, run.output_tokens) == (200, 40)
