"""The world egress tests run in, for container and host-user runs alike.

`egress_world(...)` makes a project whose agents are script-mode probes, an upstream container
on the project's outside egress network (TLS for allowed.test and denied.test with a test CA,
plain HTTP, an echo on port 22, git repositories (dumb HTTP, and smart HTTP behind Basic
auth), pip and a wheel), two HTTP services on every
host address (one the policy allows through the proxy, one on loopback that host-user runs may
reach directly) and a recording UDP resolver on every host address. The probe script tries
every way out with real clients (curl, git, Python requests and httpx, pip, the ssh helper) and
prints one `CHECK name ok|fail output` line each; `checks()` reads them. Nothing reaches an
address outside this machine.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fakes.handlers import QuietHandler
from fakes.upstream import (
    NAMES,
    RecordingResolver,
    Upstream,
    UpstreamCA,
    dns_query,
    host_addresses,
)
from support import cleanup_project, json_records, run_al, script_agent, write_files

PRELUDE = r"""
T=${TMPDIR:-/tmp}
cat > $T/ca.pem <<'PEM'
@CA@PEM
check() {
  name=$1; shift
  if "$@" >$T/out 2>&1; then r=ok; else r=fail; fi
  echo "CHECK $name $r $(head -c 300 $T/out | tr '\n\r' '  ')"
}
tcp() {  # tcp HOST PORT: connect within 3 s
  python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)' "$1" "$2"
}
C="--cacert $T/ca.pem -sS -f -m 10"
"""

#: Every way out, tried by one run. @...@ are filled in by `egress_world`.
PROBE = r"""
check allowed_https curl $C https://allowed.test/hello
check allowed_http curl -sS -f -m 10 http://allowed.test/hello
check denied_https curl $C https://denied.test/hello
check denied_http curl -sS -f -m 10 http://denied.test/hello
check lookalike curl $C https://allowed.test.evil.test/hello
check prefix_lookalike curl $C https://notallowed.test/hello
check no_proxy_vars env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy curl $C https://allowed.test/hello
check direct_ip curl $C --noproxy '*' --resolve allowed.test:443:@UPSTREAM@ https://allowed.test/hello
check ip_through_proxy curl -k -sS -f -m 10 https://@UPSTREAM@/hello
check raw_tcp tcp @UPSTREAM@ 22
check dns getent hosts allowed.test
check python_dns python3 -c 'import socket; socket.getaddrinfo("denied.test", 443)'
gw=$(python3 -c 'import socket,struct
for l in open("/proc/net/route").read().splitlines()[1:]:
    f = l.split()
    if f[1] == "00000000": print(socket.inet_ntoa(struct.pack("<L", int(f[2], 16))))')
for a in $gw @HOSTS@; do
  check host_listener_$a tcp $a @LISTENER@
  python3 -c 'import socket,sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(bytes.fromhex(sys.argv[3]), (sys.argv[1], int(sys.argv[2])))' $a @RESOLVER@ @QUERY@ 2>/dev/null
done
check host_service_via_proxy curl -sS -f -m 10 http://host.docker.internal:@LISTENER@/
check ssh_allowed sh -c 'printf "ping-22\n" | timeout 10 al-proxy-connect allowed.test 22'
check ssh_denied sh -c 'printf "ping-22\n" | timeout 10 al-proxy-connect denied.test 22'
check ssh_command sh -c 'case "$GIT_SSH_COMMAND" in *ProxyCommand*al-proxy-connect*) echo "$GIT_SSH_COMMAND";; *) exit 1;; esac'
check git_https sh -c "GIT_SSL_CAINFO=$T/ca.pem git clone -q https://allowed.test/repo.git $T/repo && cat $T/repo/README"
check requests python3 -c 'import requests,sys; print(requests.get("https://allowed.test/hello", verify=sys.argv[1], timeout=10).text)' $T/ca.pem
check requests_denied python3 -c 'import requests,sys; requests.get("https://denied.test/hello", verify=sys.argv[1], timeout=10)' $T/ca.pem
check httpx python3 -c 'import ssl, sys, httpx2; print(httpx2.get("https://allowed.test/hello", verify=ssl.create_default_context(cafile=sys.argv[1]), timeout=10).text)' $T/ca.pem
check pip sh -c "curl $C -o $T/pip.zip https://allowed.test/pip.zip && python3 $T/pip.zip/pip install -q --disable-pip-version-check --no-cache-dir --cert $T/ca.pem --no-index --find-links https://allowed.test/wheels/ --target $T/site demo && PYTHONPATH=$T/site python3 -c 'import demo; print(demo.WORD)'"
check loopback_allowed curl -sS -f -m 10 http://127.0.0.1:@LOOPBACK@/
"""

#: What every probe must see fail (each a way out the policy does not allow).
MUST_FAIL = (
    "denied_https",
    "denied_http",
    "lookalike",
    "prefix_lookalike",
    "no_proxy_vars",
    "direct_ip",
    "ip_through_proxy",
    "raw_tcp",
    "dns",
    "python_dns",
    "ssh_denied",
    "requests_denied",
)

ONE_CHECK = r"""
check allowed_https curl $C https://allowed.test/hello
"""


class HostService(QuietHandler):
    """A service on the host, listening on every address."""

    def do_GET(self) -> None:
        body = b"host service\n"
        self.answer(body)


@dataclass
class World:
    root: Path
    upstream: Upstream
    resolver: RecordingResolver
    client: Any
    ca: UpstreamCA
    #: Port of the host service only `host.docker.internal:<port>` through the proxy allows.
    listener: int
    #: Port of the loopback service `127.0.0.1:<port>` allows.
    loopback: int
    #: The upstream's smart HTTP repositories: `<git>/r.git` is https://<any name>/o/r.git.
    git: Path
    #: The project's outside egress network (where the upstream is; a test's own servers too).
    network: str
    env: dict[str, str] = field(default_factory=dict)

    def script(self, body: str) -> str:
        """A probe script: the prelude (CA, `check`, `tcp`) and `body` with its @...@ filled."""
        return (
            (PRELUDE.replace("@CA@", self.ca.ca_pem) + body)
            .replace("@UPSTREAM@", self.upstream.address)
            .replace("@HOSTS@", " ".join(host_addresses()))
            .replace("@LISTENER@", str(self.listener))
            .replace("@LOOPBACK@", str(self.loopback))
            .replace("@RESOLVER@", str(self.resolver.port))
            .replace("@QUERY@", dns_query("leak.allowed.test").hex())
        )

    def add_agent(self, name: str, body: str, config: str = "") -> None:
        write_files(self.root, script_agent(name, self.script(body), config))

    def run(self, agent: str, timeout: float = 240) -> tuple[int, list[dict[str, Any]]]:
        result = run_al("run", agent, "-p", str(self.root), "--json", env=self.env, timeout=timeout)
        return result.returncode, json_records(result.stdout)


def checks(records: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """{check name: ("ok" | "fail", its output)} from a probe's log records."""
    found = {}
    for record in records:
        msg = str(record.get("msg", ""))
        if record.get("source") == "script" and msg.startswith("CHECK "):
            parts = msg.split(" ", 3)
            found[parts[1]] = (parts[2], parts[3].strip() if len(parts) > 3 else "")
    return found


def git_repo(files: Path, smart: Path) -> None:
    """A bare repository with one commit, served over the dumb HTTP protocol (`files`), and a
    copy of it that takes pushes (`smart/r.git`, over the smart protocol)."""
    work = files.parent / "work"
    work.mkdir()

    def git(*args: str, cwd: Path = work) -> None:
        subprocess.run(["git", *args], check=True, capture_output=True, cwd=cwd)

    git("init", "-q", "-b", "main")
    (work / "README").write_text("cloned through the proxy\n")
    git("add", "README")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    git("clone", "-q", "--bare", str(work), str(files / "repo.git"))
    git("update-server-info", cwd=files / "repo.git")
    git("clone", "-q", "--bare", str(work), str(smart / "r.git"))
    git("config", "http.receivepack", "true", cwd=smart / "r.git")


def pip_files(files: Path) -> None:
    """pip itself (a zip of the test venv's, which runs as `python3 pip.zip/pip`: the base image
    has no pip) and a wheel of a package `demo` in a folder pip finds links in."""
    import zipfile

    import pip

    source = Path(pip.__file__).parent
    with zipfile.ZipFile(files / "pip.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in source.rglob("*"):
            if "__pycache__" not in path.parts and path.is_file():
                archive.write(path, Path("pip") / path.relative_to(source))
    (files / "wheels").mkdir()
    info = "demo-1.0.dist-info"
    members = {
        "demo.py": 'WORD = "installed through the proxy"\n',
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    members[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*members, f"{info}/RECORD"])
    with zipfile.ZipFile(files / "wheels" / "demo-1.0-py3-none-any.whl", "w") as wheel:
        for name, text in members.items():
            wheel.writestr(name, text)


def _serve(address: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((address, 0), HostService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextmanager
def egress_world(
    base: Path,
    client: Any,
    image: str,
    env: dict[str, str] | None = None,
    extra_names: tuple[str, ...] = (),
    extra_allow: tuple[str, ...] = (),
    git_password: str = "",
) -> Iterator[World]:
    """The project at `base/proj` (no agents yet: `World.add_agent`), its `[network]` allowing
    allowed.test (and its port 22), the proxied host service, the loopback one and
    `extra_allow`. The upstream's git over smart HTTP takes `git_password` (none without)."""
    from action_llama.egress.deploy import Deployment
    from action_llama.egress.service import state_of

    base.chmod(0o755)
    root = (base / "proj").resolve()
    names = (*NAMES, *extra_names)
    ca = UpstreamCA.make(base / "tls", names)
    files = base / "files"
    files.mkdir()
    smart = base / "git"
    smart.mkdir()
    git_repo(files, smart)
    pip_files(files)
    services = [_serve("0.0.0.0"), _serve("127.0.0.1")]
    listener, loopback = (s.server_address[1] for s in services)
    resolver = RecordingResolver.start()
    root.mkdir()
    allow = [
        "allowed.test",
        "allowed.test:22",
        f"host.docker.internal:{listener}",
        f"127.0.0.1:{loopback}",
        *extra_allow,
    ]
    write_files(root, {"config.toml": f"[network]\nallow = {allow!r}\n".replace("'", '"')})
    try:
        outside = Deployment(client, root, state_of(root)).outside()
        upstream = Upstream.start(
            client, image, outside.name, ca, files, root, names, smart, git_password
        )
        yield World(
            root, upstream, resolver, client, ca, listener, loopback, smart, outside.name, env or {}
        )
    finally:
        for server in services:
            server.shutdown()
            server.server_close()
        resolver.close()
        cleanup_project(client, root)
