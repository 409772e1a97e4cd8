"""Credentials reach the run as files and variables, and nowhere else."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.staging import STALE_AFTER, staging_root
from action_llama.credentials.store import CredentialStore

from support import AL, ProjectFactory, run_al, script_agent, script_output, stored_runs

pytestmark = [pytest.mark.docker]

SENTINEL = "sk-sentinel-7f3a9c1e5b2d4068"
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAsentinelkeymaterial0123456789\n-----END OPENSSH PRIVATE KEY-----"


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    return CredentialStore(tmp_path / "creds")


def env_for(store: CredentialStore) -> dict[str, str]:
    return {"AL_CREDENTIALS_DIR": str(store.root)}


def test_listed_credentials_become_files_and_variables(
    make_project: ProjectFactory, base_image: str, store: CredentialStore
) -> None:
    """Taken raw (`raw_credentials`: not brokered), github_token sets GITHUB_TOKEN, GH_TOKEN
    and a git credential helper for GitHub alone; git_ssh writes the key under HOME with GIT_SSH_COMMAND and
    sets the commit identity; files are read-only at /credentials/<type>/<instance>/<field>;
    named instances are honoured."""
    store.write(CredentialRef("github_token", "work"), {"token": SENTINEL})
    store.write(
        CredentialRef("git_ssh"), {"id_rsa": SSH_KEY, "username": "Ada", "email": "ada@example.com"}
    )
    script = r"""
    [ "$GITHUB_TOKEN" = "$(cat /credentials/github_token/work/token)" ] && echo token=match
    [ "$GH_TOKEN" = "$GITHUB_TOKEN" ] && echo gh=match
    git config --get-urlmatch credential.helper https://github.com/o/r.git | grep -q GITHUB_TOKEN && echo helper=set
    git config --get-urlmatch credential.helper https://evil.example/r.git || echo elsewhere=none
    echo "ssh=$GIT_SSH_COMMAND"
    stat -c 'keymode=%a' "$HOME/.ssh/id_rsa"
    grep -q sentinelkeymaterial "$HOME/.ssh/id_rsa" && echo key=written
    echo "author=$GIT_AUTHOR_NAME <$GIT_AUTHOR_EMAIL>"
    echo "committer=$GIT_COMMITTER_NAME"
    touch /credentials/github_token/work/token 2>/dev/null || echo creds=readonly
    ls /credentials | tr '\n' ' ' | sed 's/^/types=/'; echo
    """
    config = (
        'credentials = ["github_token:work", "git_ssh"]\n'
        'raw_credentials = ["github_token:work", "git_ssh"]\n'
    )
    root = make_project(script_agent("creds", script, config))
    result = run_al("run", "creds", "-p", str(root), "--json", "-q", env=env_for(store))
    assert result.returncode == 0, result.stderr
    out = script_output(result.stdout)
    expected = {"token=match", "gh=match", "helper=set", "elsewhere=none", "key=written"}
    assert expected | {"creds=readonly"} <= set(out)
    assert "keymode=600" in out
    # The key joins the egress proxy's ProxyCommand the run was given.
    assert 'ssh=ssh -o ProxyCommand="al-proxy-connect %h %p" -i "/home/node/.ssh/id_rsa"' in (
        " ".join(out)
    )
    assert "author=Ada <ada@example.com>" in out
    assert "committer=Ada" in out
    assert "types=git_ssh github_token " in out


def test_missing_credential_stops_the_run_before_anything_starts(
    make_project: ProjectFactory, base_image: str, store: CredentialStore, docker_client: Any
) -> None:
    """A listed credential that is not stored: error naming the ref and the command that adds
    it, no container, and `al logs` says the same afterwards."""
    root = make_project(script_agent("needy", "echo ran", 'credentials = ["sentry_token:prod"]\n'))
    result = run_al("run", "needy", "-p", str(root), env=env_for(store))
    assert result.returncode == 1
    assert '"sentry_token:prod"' in result.stderr
    assert "al creds add sentry_token:prod" in result.stderr
    assert "Traceback" not in result.stderr
    assert "ran" not in result.stdout
    assert docker_client.api.containers(all=True, filters={"label": f"al.project={root}"}) == []
    logs = run_al("logs", "needy", "-p", str(root))
    assert "al creds add sentry_token:prod" in logs.stdout


def test_secret_never_appears_in_images_logs_inspect_or_processes(
    make_project: ProjectFactory, base_image: str, store: CredentialStore, docker_client: Any
) -> None:
    """A sentinel secret the run holds (taken raw: a brokered run holds a placeholder), even
    printed by the agent itself, is absent from the image and its history, from docker
    inspect of the running container, from host process lists, from stored logs, terminal
    output and error messages."""
    store.write(CredentialRef("github_token"), {"token": SENTINEL})
    script = 'echo "leaking $GITHUB_TOKEN"; echo started; sleep 3; echo "bye $GH_TOKEN" >&2; exit 4'
    dockerfile = "FROM al-agent:latest\nUSER root\nRUN echo built > /etc/built\nUSER node\n"
    config = 'credentials = ["github_token"]\nraw_credentials = ["github_token"]\n'
    root = make_project(script_agent("leaky", script, config, dockerfile=dockerfile))
    proc = subprocess.Popen(
        [AL, "run", "leaky", "-p", str(root), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env_for(store)},
    )
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line)
        if json.loads(line)["msg"] == "started":
            break
    # Every container of the project: the run's, and its egress proxy and address holder.
    containers = docker_client.api.containers(filters={"label": f"al.project={root}"})
    inspected = [json.dumps(docker_client.api.inspect_container(c["Id"])) for c in containers]
    runs = [c for c in containers if "al.run" in c["Labels"]]
    processes = subprocess.run(["ps", "auxww"], capture_output=True, text=True).stdout
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 4
    assert len(runs) == 1
    image = docker_client.api.inspect_image("al-leaky:latest")
    history = docker_client.api.history("al-leaky:latest")
    stored = "".join(p.read_text() for p in (root / ".al/logs").rglob("*.jsonl"))
    logs_cmd = run_al("logs", "leaky", "-p", str(root), env=env_for(store)).stdout
    everything = {
        "terminal": "".join(seen) + rest + err,
        "inspect": "".join(inspected),
        "processes": processes,
        "image": json.dumps(image) + json.dumps(history),
        "stored logs": stored,
        "al logs": logs_cmd,
    }
    for where, text in everything.items():
        assert SENTINEL not in text, f"secret leaked into {where}"
    assert "leaking [redacted]" in everything["terminal"]
    assert "bye [redacted]" in stored


def test_staged_credentials_are_removed_after_the_run_even_when_killed(
    make_project: ProjectFactory, base_image: str, store: CredentialStore, docker_client: Any
) -> None:
    """The per-run staging directory is gone after a normal run, after Ctrl-C, and (swept by
    a later run, once old enough) after `al` itself was killed with SIGKILL."""
    store.write(CredentialRef("github_token"), {"token": SENTINEL})
    config = 'credentials = ["github_token"]\ntimeout = 120\n'
    root = make_project(script_agent("slow", "echo started; sleep 60", config))
    root_dir = staging_root()

    def staged() -> set[str]:
        # This project's runs only: other sessions on the machine stage theirs here too.
        ours = {run.run_id for run in stored_runs(root)}
        return {p.name for p in root_dir.iterdir() if p.name.partition("-")[0] in ours}

    before = staged()
    for sig in ("SIGINT", "SIGKILL"):
        with subprocess.Popen(
            [AL, "run", "slow", "-p", str(root), "--json", "-q"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **env_for(store)},
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if json.loads(line)["msg"] == "started":
                    break
            assert len(staged() - before) == 1
            proc.send_signal(getattr(signal, sig))
            proc.wait(timeout=30)
        if sig == "SIGINT":
            assert staged() == before
    # The SIGKILLed run left its directory; the next run sweeps it (once it is older than a
    # container takes to start: made two minutes ago, as far as the sweep can tell).
    [left] = staged() - before
    aged = time.time() - STALE_AFTER
    os.utime(root_dir / left, (aged, aged))
    for container in (
        __import__("docker").from_env().api.containers(filters={"label": f"al.project={root}"})
    ):
        __import__("docker").from_env().api.remove_container(container["Id"], force=True)
    (root / "agents/slow/test-script.sh").write_text("echo quick\n")
    quick = run_al("run", "slow", "-p", str(root), "-q", env=env_for(store))
    assert quick.returncode == 0, quick.stderr
    assert staged() == before
