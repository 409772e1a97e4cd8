"""Egress of host-user runs: the same policy, enforced for each run's processes.

Everything a run sends is rejected by iptables (matching the run's own cgroup) except the
project's egress proxy (which knows the run by the secret in its proxy URL), the gateway and
the loopback services its allow list names. Same world and probe as the container tests
(`egress_support`), as root (skipped otherwise), as the session's host user (other processes
of that user are not restricted, which the last test checks).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from action_llama.egress import firewall
from action_llama.egress.records import read, records_path
from action_llama.egress.service import state_of
from egress_support import MUST_FAIL, ONE_CHECK, PROBE, World, checks, egress_world

from support import run_al, stored_runs

pytestmark = [pytest.mark.docker]


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: Any,
    base_image: str,
    host_users: tuple[str, ...],
) -> Iterator[World]:
    runs = Path(tempfile.mkdtemp(prefix="al-test-egress-", dir="/tmp"))
    runs.chmod(0o755)
    env = {"AL_RUNS_DIR": str(runs / "runs"), "AL_CREDENTIALS_DIR": str(runs / "creds")}
    host_user = f'[runtime]\ntype = "host-user"\nrun_as = "{host_users[0]}"\n'
    try:
        with egress_world(
            tmp_path_factory.mktemp("egress-hu"), docker_client, base_image, env
        ) as world:
            world.add_agent("probe", PROBE, host_user)
            world.add_agent("sealed", ONE_CHECK, host_user + '[network]\nmode = "none"\n')
            yield world
    finally:
        shutil.rmtree(runs, ignore_errors=True)


@pytest.fixture(scope="module")
def probe(world: World) -> tuple[int, list[dict[str, Any]], dict[str, tuple[str, str]]]:
    code, records = world.run("probe")
    return code, records, checks(records)


def test_allowed_destinations_work_for_the_runs_user(probe: Any) -> None:
    """curl, git over HTTPS, Python requests and httpx, pip and the ssh helper reach an allowed
    host through the proxy; a loopback service the allow list names is reached directly."""
    code, records, found = probe
    assert code == 0, records[-5:]
    for name in ("allowed_https", "allowed_http", "requests", "httpx"):
        assert found[name] == ("ok", "hello from allowed.test"), (name, found[name])
    assert found["git_https"][0] == "ok", found["git_https"]
    assert found["ssh_allowed"] == ("ok", "ping-22")
    assert found["pip"] == ("ok", "installed through the proxy"), found["pip"]
    assert found["host_service_via_proxy"] == ("ok", "host service")
    assert found["loopback_allowed"] == ("ok", "host service")


def test_everything_else_fails_for_the_runs_user(probe: Any, world: World) -> None:
    """Denied and lookalike hosts, clients ignoring the proxy variables, IP literals, raw TCP,
    DNS, host services on any address (loopback included) and datagrams to the host all
    fail."""
    _, _, found = probe
    for name in MUST_FAIL:
        assert found[name][0] == "fail", (name, found[name])
    direct = {k: v for k, v in found.items() if k.startswith("host_listener_")}
    assert "host_listener_127.0.0.1" in direct
    assert all(result == "fail" for result, _ in direct.values()), direct
    assert world.resolver.received == []


def test_attempts_are_recorded_with_the_run(probe: Any, world: World) -> None:
    """The proxy knows which run each connection is (by its proxy secret): records carry the
    run, denied ones are warnings in its log naming the fix."""
    _, records, _ = probe
    run = stored_runs(world.root, "probe")[0]
    seen = list(read(records_path(state_of(world.root), run.run_id)))
    assert any(r["host"] == "allowed.test" and r["decision"] == "allowed" for r in seen)
    assert all(r["run"] == run.run_id for r in seen)
    warnings = [r["msg"] for r in records if r.get("source") == "egress"]
    assert (
        'egress to denied.test:443 blocked by [network] of agent probe; add "denied.test" to '
        "allow in config.toml" in warnings
    )


def test_mode_none_for_a_host_user(world: World) -> None:
    """`mode = "none"`: the proxy refuses even hosts the project allows."""
    code, records = world.run("sealed")
    assert code == 0
    assert checks(records)["allowed_https"][0] == "fail"


def test_only_the_runs_processes_are_restricted_and_nothing_is_left(
    world: World, docker_client: Any, host_users: tuple[str, ...]
) -> None:
    """The rules match the run's cgroup, not its OS user: another process of that user reaches
    the host service; once runs end their rules and cgroups are gone, and tearing the
    project's egress down leaves no rule of it."""
    import subprocess

    from action_llama.egress import cgroups
    from action_llama.egress.deploy import project_id
    from action_llama.egress.maintenance import teardown

    other = subprocess.run(
        [
            "setpriv",
            f"--reuid={host_users[0]}",
            f"--regid={host_users[0]}",
            "--clear-groups",
            "curl",
            "-sS",
            "-m",
            "5",
            f"http://127.0.0.1:{world.listener}/",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert other.stdout == "host service\n", other.stderr
    pid = project_id(world.root)
    assert not [r for r in firewall._listed(firewall.RUNS_CHAIN) if firewall._ours(r, pid)]
    base = cgroups.root()
    assert base is not None
    assert not list((base / cgroups.PARENT).glob(f"{pid}-*"))
    removed = teardown(docker_client, world.root)
    assert any("container" in item for item in removed)
    for chain in ("INPUT", "DOCKER-USER", "OUTPUT", firewall.RUNS_CHAIN):
        assert not [r for r in firewall._listed(chain) if firewall._ours(r, pid)]
    result = run_al("doctor", "-p", str(world.root), env=world.env)
    assert "egress host users" in result.stdout
