"""The run's ssh-agent, against OpenSSH's own clients: `ssh-add -L` lists the one key, and
`ssh-keygen -Y sign` signs with it through the agent (verified by `ssh-keygen -Y verify`),
for ed25519, RSA and ECDSA keys; the agent refuses to add, remove or lock keys."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from action_llama.runs.ssh_agent import FAILURE, KeyUnusable, SshAgent

pytestmark = pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="needs OpenSSH")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def keygen(folder: Path, kind: str) -> Path:
    key = folder / f"id_{kind}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "test", "-f", str(key)], check=True
    )
    return key


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_openssh_lists_and_signs_with_the_runs_key(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, kind: str
) -> None:
    """ssh-add -L shows the key's public half; a signature made through the agent verifies."""
    key = keygen(tmp_path, kind)
    agent = SshAgent(key.read_text())
    sock = tmp_path / "agent.sock"
    asyncio.run_coroutine_threadsafe(agent.start(sock, (os.getuid(), os.getgid())), loop).result()
    env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
    listed = subprocess.run(["ssh-add", "-L"], env=env, capture_output=True, text=True)
    public = key.with_suffix(".pub").read_text().split()
    assert listed.stdout.split()[:2] == public[:2], listed
    data = tmp_path / "data"
    data.write_text("signed through the agent\n")
    pub_only = tmp_path / "only.pub"
    pub_only.write_text(" ".join(public) + "\n")
    signed = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-f", str(pub_only), "-n", "git", str(data)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert signed.returncode == 0, signed.stderr
    signers = tmp_path / "signers"
    signers.write_text(f"t@test {public[0]} {public[1]}\n")
    with data.open("rb") as fh:
        verified = subprocess.run(
            [
                "ssh-keygen",
                "-Y",
                "verify",
                "-f",
                str(signers),
                "-I",
                "t@test",
                "-n",
                "git",
                "-s",
                f"{data}.sig",
            ],
            stdin=fh,
            capture_output=True,
            text=True,
        )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    asyncio.run_coroutine_threadsafe(agent.close(), loop).result()


def test_the_agent_refuses_everything_but_listing_and_signing(tmp_path: Path) -> None:
    """Adding, removing and locking keys and extensions fail; an encrypted key is refused
    with a sentence."""
    agent = SshAgent(keygen(tmp_path, "ed25519").read_text())
    for request in (17, 18, 19, 22, 27):
        assert agent.answer(bytes([request])) == bytes([FAILURE])
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", str(locked)], check=True)
    with pytest.raises(KeyUnusable, match="cannot be used"):
        SshAgent(locked.read_text())


def test_an_adopted_runs_agent_is_served_again_over_the_dead_ones_socket(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """The keys of the sockets a run's stage holds are read from the credential store (a ref
    no longer stored is left out) and served again on the same paths, replacing the sockets a
    dead process left (nothing listens on them)."""
    import socket
    import tempfile

    from action_llama.credentials.refs import CredentialRef
    from action_llama.credentials.store import CredentialStore
    from action_llama.runs.brokered import served_ssh_keys
    from action_llama.runs.ssh_agent import start_ssh_agents

    key = keygen(tmp_path, "ed25519")
    store = CredentialStore(tmp_path / "store")
    store.write(CredentialRef("git_ssh"), {"id_rsa": key.read_text()})
    short = Path(tempfile.mkdtemp(prefix="al-sock-"))  # a socket's path is at most 107 bytes
    try:
        credentials = short / "credentials"
        for ref in ("git_ssh/default", "git_ssh/gone", "github_token/default"):
            (credentials / ref).mkdir(parents=True)
            left = socket.socket(socket.AF_UNIX)
            left.bind(str(credentials / ref / "agent.sock"))
            left.close()  # as a process killed outright leaves it
        keys = served_ssh_keys(store, credentials)
        assert keys == {CredentialRef("git_ssh"): key.read_text().strip()}
        started = asyncio.run_coroutine_threadsafe(
            start_ssh_agents(keys, credentials, (os.getuid(), os.getgid())), loop
        ).result()
        env = {**os.environ, "SSH_AUTH_SOCK": str(credentials / "git_ssh/default/agent.sock")}
        listed = subprocess.run(["ssh-add", "-L"], env=env, capture_output=True, text=True)
        assert listed.stdout.split()[:2] == key.with_suffix(".pub").read_text().split()[:2], listed
        for agent in started:
            asyncio.run_coroutine_threadsafe(agent.close(), loop).result()
    finally:
        shutil.rmtree(short)
