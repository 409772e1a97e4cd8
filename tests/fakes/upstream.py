"""Destinations for egress tests: a container serving TLS for `allowed.test` and `denied.test`
(signed by a test CA made here), plain HTTP, and a TCP echo on port 22; a recording resolver.
It also serves git repositories over the smart HTTP protocol (`git http-backend`, clone and
push) behind HTTP Basic auth, and `/mirror`, which answers with what a request carried in its
`X-Token` header, query and body.

    ca = UpstreamCA.make(tmp_dir)                                 # ca.pem, server.pem, server.key
    upstream = Upstream.start(client, image, network, ca, files_dir, project_root)
    upstream.address                                          # its IP on `network`
    ...runs reach https://allowed.test/hello through their proxy, trusting ca.pem...
    upstream.remove()

The container runs the base image's Python (standard library only) and joins the project's
outside egress network under every name in `NAMES`, so the proxy resolves them to it. Nothing
here talks to any address outside this machine.
"""

from __future__ import annotations

import datetime
import socket
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Names the upstream answers to (lookalikes included, so that only the policy stops them).
NAMES = ("allowed.test", "denied.test", "allowed.test.evil.test", "notallowed.test")

SERVER = textwrap.dedent(
    """
    import base64, hashlib, http.server, os, shutil, socketserver, ssl, subprocess, sys
    import threading, urllib.parse

    ROOT = "/srv/files"
    #: Smart HTTP git (clone and push) under /o/, for Basic credentials whose password has
    #: this digest only: the upstream never holds the password itself.
    GIT_PASSWORD_SHA256 = os.environ.get("GIT_PASSWORD_SHA256", "")

    def sha256(text):
        return hashlib.sha256(text.encode()).hexdigest()

    class Files(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=ROOT, **kwargs)

        def log_message(self, *args):
            pass

        def reply(self, status, body, headers=()):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                data = b""
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                return data
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def git(self):  # git http-backend as a CGI, behind Basic auth
            scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
            try:
                password = base64.b64decode(encoded).decode().partition(":")[2]
            except ValueError:
                password = ""
            if scheme.lower() != "basic" or not GIT_PASSWORD_SHA256 or (
                sha256(password) != GIT_PASSWORD_SHA256
            ):
                challenge = [("WWW-Authenticate", 'Basic realm="git"')]
                return self.reply(401, b"credentials refused\\n", challenge)
            path, _, query = self.path.partition("?")
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": "/srv/git",
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "safe.directory",
                "GIT_CONFIG_VALUE_0": "*",
                "REMOTE_USER": "git",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": urllib.parse.unquote(path.removeprefix("/o")),
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            }
            data = self.body() if self.command == "POST" else b""
            env["CONTENT_LENGTH"] = str(len(data))
            out = subprocess.run(
                ["git", "http-backend"], input=data, env=env, capture_output=True
            ).stdout
            head, _, content = out.partition(b"\\r\\n\\r\\n")
            if not content and b"\\n\\n" in head:
                head, _, content = out.partition(b"\\n\\n")
            status, headers = 200, []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.reply(status, content, headers)

        def mirror(self):  # what a request carried besides Authorization, as it arrived
            _, _, query = self.path.partition("?")
            body = self.body().decode(errors="replace")
            auth = sha256(self.headers.get("Authorization", ""))
            text = "x-token=%s query=%s body=%s auth-sha256=%s\\n" % (
                self.headers.get("X-Token", ""), query, body, auth
            )
            self.reply(200, text.encode())

        def do_POST(self):
            if self.path.startswith("/o/"):
                return self.git()
            if self.path.startswith("/mirror"):
                return self.mirror()
            self.reply(404, b"")

        def do_GET(self):
            if self.path.startswith("/o/"):
                return self.git()
            if self.path == "/echo":  # what authorised the request, as a digest
                auth = self.headers.get("Authorization", "")
                digest = hashlib.sha256(auth.encode()).hexdigest()
                body = ("auth-sha256=" + digest + "\\n").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if self.path == "/hello":
                body = ("hello from " + self.headers.get("Host", "?") + "\\n").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def copyfile(self, source, outputfile):
            shutil.copyfileobj(source, outputfile, 1024 * 1024)

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 64

    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            while data := self.request.recv(65536):
                self.request.sendall(data)

    class EchoServer(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    tls = Server(("0.0.0.0", 443), Files)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain("/srv/tls/server.pem", "/srv/tls/server.key")
    tls.socket = context.wrap_socket(tls.socket, server_side=True)
    for server in (tls, Server(("0.0.0.0", 80), Files), EchoServer(("0.0.0.0", 22), Echo)):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("upstream ready", flush=True)
    threading.Event().wait()
    """
)


@dataclass(frozen=True)
class UpstreamCA:
    """A CA and a server certificate for every name in NAMES, as PEM files in `folder`."""

    folder: Path

    @property
    def ca_pem(self) -> str:
        return (self.folder / "ca.pem").read_text()

    @classmethod
    def make(cls, folder: Path, names: tuple[str, ...] = NAMES) -> UpstreamCA:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.UTC)
        later = now + datetime.timedelta(days=2)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "al egress test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(later)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        server = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(later)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        pem = serialization.Encoding.PEM
        (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
        (folder / "server.pem").write_bytes(server.public_bytes(pem))
        (folder / "server.key").write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        for path in folder.iterdir():
            path.chmod(0o644)
        folder.chmod(0o755)
        return cls(folder)


@dataclass
class ServerContainer:
    """A test server's container; `address` is its IP on the network it joined."""

    client: Any
    container: str
    address: str

    def remove(self) -> None:
        self.client.api.remove_container(self.container, force=True)


class Upstream(ServerContainer):
    """The upstream container (`SERVER`)."""

    @classmethod
    def start(
        cls,
        client: Any,
        image: str,
        network: str,
        ca: UpstreamCA,
        files: Path,
        project: Path,
        names: tuple[str, ...] = NAMES,
        git: Path | None = None,
        git_password: str = "",
    ) -> Upstream:
        """`git`: repositories served over smart HTTP (clone and push) at /o/<path>, to
        Basic credentials whose password is `git_password` (none without one)."""
        import hashlib

        from docker.types import Mount

        (ca.folder / "server.py").write_text(SERVER)
        mounts = [
            Mount("/srv/tls", str(ca.folder), type="bind", read_only=True),
            Mount("/srv/files", str(files), type="bind", read_only=True),
        ]
        if git is not None:
            mounts.append(Mount("/srv/git", str(git), type="bind"))
        digest = hashlib.sha256(git_password.encode()).hexdigest() if git_password else ""
        container, address = start_server(
            client,
            image,
            network,
            list(names),
            ["python3", "/srv/tls/server.py"],
            mounts,
            {"al.project": str(project), "al.test": "egress-upstream"},
            b"upstream ready",
            {"GIT_PASSWORD_SHA256": digest},
        )
        return cls(client, container, address)


def start_server(
    client: Any,
    image: str,
    network: str,
    aliases: list[str],
    entrypoint: list[str],
    mounts: list[Any],
    labels: dict[str, str],
    ready: bytes,
    environment: dict[str, str] | None = None,
) -> tuple[str, str]:
    """A test server's container (as root) on `network` under `aliases`, started and seen
    to print `ready`: (its id, its address on `network`)."""
    import time

    api = client.api
    created = api.create_container(
        image,
        entrypoint=entrypoint,
        command=[],
        environment=environment or {},
        user="0:0",
        labels=labels,
        host_config=api.create_host_config(network_mode=network, mounts=mounts),
        networking_config=api.create_networking_config(
            {network: api.create_endpoint_config(aliases=aliases)}
        ),
    )
    api.start(created["Id"])
    deadline = time.monotonic() + 30
    while ready not in (output := api.logs(created["Id"])):
        assert time.monotonic() < deadline, output[-2000:]
        time.sleep(0.05)
    attrs = api.inspect_container(created["Id"])
    return created["Id"], attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


@dataclass
class RecordingResolver:
    """A UDP listener on every address of this host that records what reaches it."""

    sock: socket.socket
    received: list[tuple[str, bytes]] = field(default_factory=list)

    @classmethod
    def start(cls) -> RecordingResolver:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", 0))
        resolver = cls(sock)
        threading.Thread(target=resolver._serve, daemon=True).start()
        return resolver

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            self.received.append((peer[0], data))

    def close(self) -> None:
        self.sock.close()


def dns_query(name: str) -> bytes:
    """A minimal DNS query for `name` (type A), as a run would send it."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x00\x01\x00\x01"


def host_addresses() -> list[str]:
    """This host's IPv4 addresses (every interface's), for runs to try and fail to reach."""
    import fcntl
    import struct

    found = []
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue
        found.append(socket.inet_ntoa(packed[20:24]))
    return found
