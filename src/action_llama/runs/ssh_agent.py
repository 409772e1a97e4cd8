"""An ssh-agent for one run: the run's `git_ssh` key stays in the `al` process that runs it.

The agent listens on a unix socket in the run's staged credentials
(`<credentials>/git_ssh/<instance>/agent.sock`, owned by the run's user: `/credentials/...` in
a container, whose read-only mount still lets it connect), holds that one key, and answers
the two requests ssh makes of an agent (list the keys, sign with one); it refuses everything
else (adding, removing, locking keys, extensions). It lives as long as the run: the run can
use the key while it runs and never read it. Should that `al` process die while the run goes
on, the scheduler that adopts the run serves it again on the same socket. The protocol is
OpenSSH's (draft-miller-ssh-agent).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from pathlib import Path
from typing import Any

REQUEST_IDENTITIES = 11
IDENTITIES_ANSWER = 12
SIGN_REQUEST = 13
SIGN_RESPONSE = 14
FAILURE = 5
RSA_SHA2_256 = 2
RSA_SHA2_512 = 4
MAX_MESSAGE = 256 * 1024
SOCKET = "agent.sock"


class KeyUnusable(Exception):
    """The key cannot be loaded (a passphrase, an unknown format); the message says why."""


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b""
    return _string(raw)


def _read_string(data: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", data, offset)
    start = offset + 4
    if start + length > len(data):
        raise ValueError("truncated")
    return data[start : start + length], start + length


def load_key(text: str) -> Any:
    """The private key in `text` (OpenSSH or PEM, unencrypted)."""
    from cryptography.hazmat.primitives import serialization

    data = text.strip().encode() + b"\n"
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            return serialization.load_ssh_private_key(data, password=None)
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyUnusable(f"the git_ssh key cannot be used by the run's ssh-agent: {exc}") from None


class SshAgent:
    """Holds one key and serves the agent protocol on a unix socket."""

    def __init__(self, key_text: str, comment: str = "al run key"):
        from cryptography.hazmat.primitives import serialization

        self.key = load_key(key_text)
        line = self.key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        self.kind = line.split()[0].decode()
        self.blob = base64.b64decode(line.split()[1])
        self.comment = comment.encode()
        self.server: asyncio.AbstractServer | None = None

    async def start(self, path: Path, owner: tuple[int, int]) -> None:
        """Listen on `path`, which only `owner` (the run's uid, gid) may use. A socket left
        there by a process that died is replaced (asyncio removes it first)."""
        self.server = await asyncio.start_unix_server(self._serve, str(path))
        os.chmod(path, 0o600)
        if os.geteuid() == 0:
            os.chown(path, *owner)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack(">I", await reader.readexactly(4))
                if not 0 < length <= MAX_MESSAGE:
                    break
                answer = self.answer(await reader.readexactly(length))
                writer.write(_string(answer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def answer(self, message: bytes) -> bytes:
        """The reply to one request (type byte and body)."""
        kind, body = message[0], message[1:]
        if kind == REQUEST_IDENTITIES:
            return (
                bytes([IDENTITIES_ANSWER])
                + struct.pack(">I", 1)
                + _string(self.blob)
                + _string(self.comment)
            )
        if kind == SIGN_REQUEST:
            try:
                blob, offset = _read_string(body, 0)
                data, offset = _read_string(body, offset)
                (flags,) = struct.unpack_from(">I", body, offset)
            except (ValueError, struct.error):
                return bytes([FAILURE])
            if blob != self.blob:
                return bytes([FAILURE])
            return bytes([SIGN_RESPONSE]) + _string(self.sign(data, flags))
        return bytes([FAILURE])

    def sign(self, data: bytes, flags: int) -> bytes:
        """The SSH signature blob of `data`: its algorithm's name and the signature."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

        key = self.key
        digest: hashes.HashAlgorithm
        if isinstance(key, rsa.RSAPrivateKey):
            name, digest = "ssh-rsa", hashes.SHA1()  # what a server that asks for no SHA-2 gets
            if flags & RSA_SHA2_512:
                name, digest = "rsa-sha2-512", hashes.SHA512()
            elif flags & RSA_SHA2_256:
                name, digest = "rsa-sha2-256", hashes.SHA256()
            return _string(name.encode()) + _string(key.sign(data, padding.PKCS1v15(), digest))
        if isinstance(key, ec.EllipticCurvePrivateKey):
            size = key.curve.key_size
            digest = hashes.SHA256() if size <= 256 else hashes.SHA384()
            if size > 384:
                digest = hashes.SHA512()
            r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
            return _string(self.kind.encode()) + _string(_mpint(r) + _mpint(s))
        return _string(self.kind.encode()) + _string(key.sign(data))


async def start_ssh_agents(
    keys: dict[Any, str], credentials: Path, owner: tuple[int, int]
) -> list[SshAgent]:
    """An agent for each `git_ssh` ref's key, on its socket in the staged `credentials`
    (ref type/instance/agent.sock); RunError when a key cannot be used."""
    from action_llama.errors import RunError

    started: list[SshAgent] = []
    for ref, text in keys.items():
        try:
            agent = SshAgent(text, comment=str(ref))
        except KeyUnusable as exc:
            for running in started:
                await running.close()
            raise RunError(
                f"{exc} ({ref}).",
                hint=f"Store an unencrypted key with: al creds add {ref} --field id_rsa=@FILE",
            ) from None
        await agent.start(credentials / ref.type / ref.instance / SOCKET, owner)
        started.append(agent)
    return started
