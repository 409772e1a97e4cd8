"""Egress of container runs: each run reaches only what its `[network]` allows.

The world (`egress_support`): an upstream container on the project's outside egress network
(TLS for allowed.test and denied.test with a test CA, plain HTTP, an echo on port 22), host
services and a recording resolver on every host address. A script-mode agent tries every way
out with real clients (curl, git, Python requests and httpx, the ssh helper); the tests read
its checks, its log and its egress records. Nothing reaches an address outside this machine.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from action_llama.egress.deploy import LABEL_EGRESS
from action_llama.egress.records import read, records_path
from action_llama.egress.service import state_of
from egress_support import MUST_FAIL, ONE_CHECK, PROBE, World, checks, egress_world

from fakes.upstream import NAMES
from support import json_records, run_al, script_agent, stored_runs

pytestmark = [pytest.mark.docker]


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, base_image: str
) -> Iterator[World]:
    with egress_world(tmp_path_factory.mktemp("egress"), docker_client, base_image) as world:
        world.add_agent("probe", PROBE)
        world.add_agent("sealed", ONE_CHECK, '[network]\nmode = "none"\n')
        yield world


@pytest.fixture(scope="module")
def probe(world: World) -> tuple[int, list[dict[str, Any]], dict[str, tuple[str, str]]]:
    """The probe agent run once; (exit code, log records, checks)."""
    code, records = world.run("probe")
    return code, records, checks(records)


def test_allowed_destinations_work_with_ordinary_clients(probe: Any, world: World) -> None:
    """An allowed host answers curl (HTTPS and HTTP), git over HTTPS, Python requests and
    httpx and pip through the proxy variables, and the ssh helper reaches an allowed host:22."""
    code, _, found = probe
    assert code == 0
    run_id = stored_runs(world.root, "probe")[0].run_id
    seen = list(read(records_path(state_of(world.root), run_id)))
    for name in ("allowed_https", "allowed_http", "requests", "httpx"):
        assert found[name] == ("ok", "hello from allowed.test"), (name, seen[:5])
    assert found["git_https"][0] == "ok"
    assert "cloned through the proxy" in found["git_https"][1]
    assert found["ssh_allowed"] == ("ok", "ping-22")
    assert found["ssh_command"][0] == "ok"
    assert found["pip"] == ("ok", "installed through the proxy"), found["pip"]


def test_everything_else_fails(probe: Any) -> None:
    """Denied hosts, lookalike names, clients ignoring the proxy variables, IP literals (direct
    or through the proxy), raw TCP, DNS and ssh to a denied host all fail."""
    _, _, found = probe
    for name in MUST_FAIL:
        assert found[name][0] == "fail", (name, found[name])
    # 127.0.0.1 in a container is its own loopback, not the host's.
    assert found["loopback_allowed"][0] == "fail"
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
    run_id = stored_runs(world.root, "probe")[0].run_id
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


WATCHER = r"""
check first curl $C https://allowed.test/hello
i=0
while [ $i -lt 150 ]; do
  if ! curl $C -m 2 https://allowed.test/hello >/dev/null 2>&1; then echo LOST; break; fi
  sleep 0.2; i=$((i+1))
done
check after_loss curl $C https://allowed.test/hello
check direct_after_loss curl $C --noproxy '*' --resolve allowed.test:443:@UPSTREAM@ https://allowed.test/hello
sleep 7
"""


def test_proxy_killed_mid_run_leaves_no_egress_and_comes_back(
    world: World, docker_client: Any
) -> None:
    """The proxy killed during a run: the run has no way out (and its log says so), nothing
    goes direct instead; the next run starts the proxy again and gets out."""
    import subprocess
    import time

    from action_llama.egress.deploy import Deployment

    from support import AL

    world.add_agent("watcher", WATCHER)
    log = world.root / "watcher.out"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [AL, "run", "watcher", "-p", str(world.root), "--json"], stdout=out, text=True
        )
        deadline = time.monotonic() + 180
        while "CHECK first ok" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        proxy = Deployment(docker_client, world.root, state_of(world.root)).proxy_name
        docker_client.api.kill(proxy)
        assert proc.wait(timeout=120) == 0
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    found = checks(records)
    assert found["after_loss"][0] == "fail"
    assert found["direct_after_loss"][0] == "fail"
    assert any(r.get("msg") == "LOST" for r in records)
    warnings = [r["msg"] for r in records if r.get("source") == "egress"]
    assert any("the proxy stopped answering" in w for w in warnings), warnings

    code, _ = world.run("sealed")  # any checked run starts the proxy again
    assert code == 0
    assert docker_client.api.inspect_container(proxy)["State"]["Running"]


def test_egress_that_cannot_be_set_up_means_no_network(
    make_project: Any, base_image: str, docker_client: Any
) -> None:
    """When the egress cannot be set up (here a network of its name that al did not make is
    in the way), the run starts with no network at all, and its log says why."""
    from action_llama.egress.deploy import Deployment

    root = make_project(
        script_agent(
            "cut", "ls /sys/class/net | tr '\\n' ' '; echo\ncurl -sS -m 3 http://x.test/\n"
        )
    )
    deployment = Deployment(docker_client, root, state_of(root))
    docker_client.api.create_network(
        deployment.outside_name, labels={"al.project": str(root), LABEL_EGRESS: "outside"}
    )
    result = run_al("run", "cut", "-p", str(root), "--json", timeout=240)
    records = json_records(result.stdout)
    lines = [r["msg"] for r in records if r.get("source") == "script"]
    assert lines[0].split() == ["lo"], lines
    notes = [r["msg"] for r in records if r.get("source") == "egress"]
    assert any("is not one al made" in n and "no network at all" in n for n in notes), notes


def test_doctor_fix_removes_what_is_stray(world: World, docker_client: Any) -> None:
    """`al doctor` names egress leftovers (the network of an agent that is gone, a network of
    a project that no longer exists); `--fix` removes them and, nothing of the project
    running, its idle proxy and networks too."""
    from action_llama.egress.deploy import Deployment

    ghost_project = world.root.parent / "deleted-project"
    stray = Deployment(docker_client, world.root, state_of(world.root)).network_name("gone")
    docker_client.api.create_network(
        stray,
        internal=True,
        labels={"al.project": str(world.root), LABEL_EGRESS: "agent", "al.agent": "gone"},
    )
    orphan = docker_client.api.create_network(
        "al-egress-test-orphan",
        labels={"al.project": str(ghost_project), LABEL_EGRESS: "outside"},
    )
    try:
        report = run_al("doctor", "-p", str(world.root))
        assert f"network {stray}" in report.stdout
        assert "network al-egress-test-orphan" in report.stdout
        fixed = run_al("doctor", "-p", str(world.root), "--fix")
        assert f"network {stray}" in fixed.stdout
        label = f"al.project={world.root}"
        assert not docker_client.api.networks(filters={"label": [label, LABEL_EGRESS]})
        assert not docker_client.api.containers(all=True, filters={"label": [label, LABEL_EGRESS]})
        assert not docker_client.api.networks(filters={"name": "al-egress-test-orphan"})
    finally:
        for name in (stray, orphan["Id"]):
            with contextlib.suppress(Exception):
                docker_client.api.remove_network(name)
