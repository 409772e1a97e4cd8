"""Egress of container runs: each run reaches only what its `[network]` allows.

One project, one upstream container on the project's outside egress network (TLS for
allowed.test and denied.test with a test CA, plain HTTP, an echo on port 22), a host HTTP
service and a recording UDP resolver on every host address. A script-mode agent tries every
way out with real clients (curl, git, Python requests and httpx, the ssh helper) and prints
one `CHECK name ok|fail ...` line each; the tests read them, the run's log and its records.
Nothing here reaches an address outside this machine.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from action_llama.egress.deploy import Deployment
from action_llama.egress.records import read, records_path
from action_llama.egress.service import state_of

from fakes.upstream import NAMES, RecordingResolver, Upstream, UpstreamCA, host_addresses
from support import cleanup_project, json_records, run_al, script_agent, stored_runs, write_files

pytestmark = [pytest.mark.docker]

PRELUDE = r"""
cat > /tmp/ca.pem <<'PEM'
@CA@PEM
check() {
  name=$1; shift
  if "$@" >/tmp/out 2>&1; then r=ok; else r=fail; fi
  echo "CHECK $name $r $(head -c 300 /tmp/out | tr '\n\r' '  ')"
}
tcp() {  # tcp HOST PORT: connect within 3 s
  python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)' "$1" "$2"
}
"""

PROBE = r"""
C="--cacert /tmp/ca.pem -sS -f -m 10"
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
check git_https sh -c 'GIT_SSL_CAINFO=/tmp/ca.pem git clone -q https://allowed.test/repo.git /tmp/repo && cat /tmp/repo/README'
check requests python3 -c 'import requests; print(requests.get("https://allowed.test/hello", verify="/tmp/ca.pem", timeout=10).text)'
check requests_denied python3 -c 'import requests; requests.get("https://denied.test/hello", verify="/tmp/ca.pem", timeout=10)'
check httpx python3 -c 'import ssl, httpx2; print(httpx2.get("https://allowed.test/hello", verify=ssl.create_default_context(cafile="/tmp/ca.pem"), timeout=10).text)'
"""

SEALED = r"""
check allowed_https curl --cacert /tmp/ca.pem -sS -f -m 10 https://allowed.test/hello
"""


class HostService(BaseHTTPRequestHandler):
    """A service on the host, listening on every address."""

    def do_GET(self) -> None:
        body = b"host service\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class World:
    root: Path
    upstream: Upstream
    resolver: RecordingResolver
    client: Any

    def run(self, agent: str, timeout: float = 240) -> tuple[int, list[dict[str, Any]]]:
        result = run_al("run", agent, "-p", str(self.root), "--json", timeout=timeout)
        return result.returncode, json_records(result.stdout)


def checks(records: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    found = {}
    for record in records:
        msg = str(record.get("msg", ""))
        if record.get("source") == "script" and msg.startswith("CHECK "):
            parts = msg.split(" ", 3)
            found[parts[1]] = (parts[2], parts[3].strip() if len(parts) > 3 else "")
    return found


def git_repo(files: Path) -> None:
    """A bare repository with one commit, served over the dumb HTTP protocol."""
    work = files.parent / "work"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=work)  # noqa: E731
    work.mkdir()
    run("git", "init", "-q", "-b", "main")
    (work / "README").write_text("cloned through the proxy\n")
    run("git", "add", "README")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    run("git", "clone", "-q", "--bare", str(work), str(files / "repo.git"))
    subprocess.run(["git", "update-server-info"], check=True, cwd=files / "repo.git")


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, base_image: str
) -> Iterator[World]:
    base = tmp_path_factory.mktemp("egress")
    base.chmod(0o755)
    root = (base / "proj").resolve()
    ca = UpstreamCA.make(base / "tls")
    files = base / "files"
    files.mkdir()
    git_repo(files)
    service = ThreadingHTTPServer(("0.0.0.0", 0), HostService)
    threading.Thread(target=service.serve_forever, daemon=True).start()
    listener = service.server_address[1]
    resolver = RecordingResolver.start()
    hosts = " ".join(host_addresses())
    from fakes.upstream import dns_query

    prelude = PRELUDE.replace("@CA@", ca.ca_pem)
    root.mkdir()
    write_files(
        root,
        {
            "config.toml": "[network]\n"
            f'allow = ["allowed.test", "allowed.test:22", "host.docker.internal:{listener}"]\n',
            **script_agent("sealed", prelude + SEALED, '[network]\nmode = "none"\n'),
        },
    )
    try:
        outside = Deployment(docker_client, root, state_of(root)).outside()
        upstream = Upstream.start(docker_client, base_image, outside.name, ca, files, root)
        probe = (
            PROBE.replace("@UPSTREAM@", upstream.address)
            .replace("@HOSTS@", hosts)
            .replace("@LISTENER@", str(listener))
            .replace("@RESOLVER@", str(resolver.port))
            .replace("@QUERY@", dns_query("leak.allowed.test").hex())
        )
        write_files(root, script_agent("probe", prelude + probe))
        yield World(root, upstream, resolver, docker_client)
    finally:
        service.shutdown()
        service.server_close()
        resolver.close()
        cleanup_project(docker_client, root)


@pytest.fixture(scope="module")
def probe(world: World) -> tuple[int, list[dict[str, Any]], dict[str, tuple[str, str]]]:
    """The probe agent run once; (exit code, log records, checks)."""
    code, records = world.run("probe")
    return code, records, checks(records)


def test_allowed_destinations_work_with_ordinary_clients(probe: Any) -> None:
    """An allowed host answers curl (HTTPS and HTTP), git over HTTPS, Python requests and
    httpx through the proxy variables, and the ssh helper reaches an allowed host:22."""
    code, _, found = probe
    assert code == 0
    for name in ("allowed_https", "allowed_http", "requests", "httpx"):
        assert found[name] == ("ok", "hello from allowed.test"), name
    assert found["git_https"][0] == "ok"
    assert "cloned through the proxy" in found["git_https"][1]
    assert found["ssh_allowed"] == ("ok", "ping-22")
    assert found["ssh_command"][0] == "ok"


def test_everything_else_fails(probe: Any) -> None:
    """Denied hosts, lookalike names, clients ignoring the proxy variables, IP literals (direct
    or through the proxy), raw TCP, DNS and ssh to a denied host all fail."""
    _, _, found = probe
    for name in (
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
    ):
        assert found[name][0] == "fail", (name, found[name])
    assert "403" in found["denied_https"][1]
    assert "refused" in found["ssh_denied"][1]


def test_host_services_are_unreachable_unless_allowed(probe: Any, world: World) -> None:
    """A service listening on every host address is unreachable at each of them (the bridge's
    gateway included) and no datagram reaches the host's recording resolver; listed in
    `allow`, the same service answers through the proxy."""
    _, _, found = probe
    direct = {k: v for k, v in found.items() if k.startswith("host_listener_")}
    assert len(direct) >= 3
    assert all(result == "fail" for result, _ in direct.values()), direct
    assert world.resolver.received == []
    assert found["host_service_via_proxy"] == ("ok", "host service")


def test_dns_never_leaves_the_host(probe: Any, world: World) -> None:
    """Name lookups get no answer, reach the runs' own resolver (recorded with the run) and
    nothing else."""
    _, records, _ = probe
    run_id = (
        records[0]["runId"] if "runId" in records[0] else stored_runs(world.root, "probe")[0].run_id
    )
    seen = list(read(records_path(state_of(world.root), run_id)))
    looked_up = {r["host"] for r in seen if r["kind"] == "dns"}
    assert {"allowed.test", "denied.test"} <= looked_up
    assert world.resolver.received == []


def test_every_attempt_is_recorded_and_denials_warn_in_the_log(probe: Any, world: World) -> None:
    """Each connection attempt is recorded with the run, destination, port, decision and
    bytes; a denied one is a warning in the run's log naming the fix, once."""
    _, records, _ = probe
    run = stored_runs(world.root, "probe")[0]
    seen = list(read(records_path(state_of(world.root), run.run_id)))
    allowed = [r for r in seen if r["host"] == "allowed.test" and r["decision"] == "allowed"]
    assert allowed
    assert all(r["run"] == run.run_id and r["agent"] == "probe" for r in seen)
    assert any(r["port"] == 443 and r["received"] > 0 and r["sent"] > 0 for r in allowed)
    assert any(r["port"] == 22 and r["received"] > 0 for r in allowed)
    denied = [r for r in seen if r["decision"] == "denied" and r["kind"] == "connect"]
    assert {r["host"] for r in denied} >= {"denied.test", "allowed.test.evil.test"}
    warnings = [r["msg"] for r in records if r.get("source") == "egress"]
    expected = (
        'egress to denied.test:443 blocked by [network] of agent probe; add "denied.test" to '
        "allow in config.toml"
    )
    assert warnings.count(expected) == 1
    stored = [json.loads(line) for line in run.log_path.read_text().splitlines()]
    assert [r["level"] for r in stored if r["msg"] == expected] == ["warn"]


def test_al_logs_egress_lists_the_attempts(probe: Any, world: World) -> None:
    """`al logs AGENT --egress` lists the latest run's attempts, denied ones with the fix."""
    result = run_al("logs", "probe", "-p", str(world.root), "--egress", "-n", "200")
    assert result.returncode == 0, result.stderr
    assert "denied.test:443" in result.stdout
    assert "denied" in result.stdout
    assert 'add "denied.test" to allow in config.toml' in result.stdout
    assert "allowed.test:443" in result.stdout


def test_mode_none_allows_nothing(world: World) -> None:
    """Under `mode = "none"` even a host other agents may reach is refused, with the fix."""
    code, records = world.run("sealed")
    assert code == 0
    assert checks(records)["allowed_https"][0] == "fail"
    warnings = [r["msg"] for r in records if r.get("source") == "egress"]
    assert any(
        'set [network] mode = "allowlist" and allow "allowed.test" in agents/sealed/config.toml'
        in w
        for w in warnings
    ), warnings


def test_names_the_upstream_answers_to_are_resolvable_by_the_proxy_only(world: World) -> None:
    """Sanity of the set-up: the lookalikes are served by the upstream (so only the policy
    stops them)."""
    attrs = world.client.api.inspect_container(world.upstream.container)
    aliases = next(iter(attrs["NetworkSettings"]["Networks"].values()))["Aliases"]
    assert set(NAMES) <= set(aliases)
