"""Swarm runs as a user sees them, on a real one-node swarm and registry: the container
layout and limits, credentials as per-run secrets, timeout, OOM, Ctrl-C, /workspace, and
nothing of a run left in the swarm afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore

from dind import Worker, worker_node
from support import (
    AL,
    PROBE,
    ProjectFactory,
    cleanup_project,
    facts,
    json_records,
    left_in_swarm,
    run_al,
    script_agent,
    script_output,
    stored_runs,
    swarm_objects,
    write_files,
)

pytestmark = [pytest.mark.docker]

SENTINEL = "sk-swarm-sentinel-5d1e8a2c7b"
#: What the probe adds for swarm runs: who owns the secret and config files, and their modes.
SWARM_PROBE = r"""
stat -c 'cred_file=%a %u:%g' /credentials/github_token/default/token
stat -c 'static_file=%a %u:%g' /app/static/SKILL.md
[ "$GITHUB_TOKEN" = "$(cat /credentials/github_token/default/token)" ] && echo token=match
echo "leaking $GITHUB_TOKEN"
echo started; sleep 3
"""


def swarm_project(registry: str, runtime: str = "", extra: str = "", swarm: str = "") -> str:
    """A project config.toml whose agents are swarm agents by default."""
    tables = (
        f'[swarm]\nregistry = "{registry}"\n{swarm}\n[runtime]\ntype = "swarm"\n{runtime}'
        '\n[network]\nmode = "open"\n'  # swarm runs cannot enforce a policy
    )
    return f"{extra}\n{tables}"


@pytest.fixture(scope="module")
def probed(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, swarm_image: str, registry: str
) -> Iterator[dict[str, Any]]:
    """One probe run on the swarm (with a credential), what was seen of it while it ran,
    and what was left after."""
    root = tmp_path_factory.mktemp("swarm-probe")
    store = CredentialStore(root / "creds")
    store.write(CredentialRef("github_token"), {"token": SENTINEL})
    config = swarm_project(registry, extra='[local]\nmemory = "256m"\ncpus = 1.5\n')
    write_files(
        root,
        {
            "config.toml": config,
            **script_agent("probe", PROBE + SWARM_PROBE, 'credentials = ["github_token"]\n'),
        },
    )
    proc = subprocess.Popen(
        [AL, "run", "probe", "-p", str(root), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AL_CREDENTIALS_DIR": str(store.root)},
    )
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line)
        if json.loads(line)["msg"] == "started":
            break
    api = docker_client.api
    label = {"label": f"al.project={root}"}
    while_running = {
        "services": api.services(filters=label),
        "secrets": [api.inspect_secret(s["ID"]) for s in api.secrets(filters=label)],
        "configs": api.configs(filters=label),
        "containers": [api.inspect_container(c["Id"]) for c in api.containers(filters=label)],
    }
    processes = subprocess.run(["ps", "auxww"], capture_output=True, text=True).stdout
    rest, err = proc.communicate(timeout=120)
    stdout = "".join(seen) + rest
    try:
        yield {
            "root": root,
            "exit": proc.returncode,
            "stdout": stdout,
            "stderr": err,
            "facts": facts(stdout),
            "while_running": while_running,
            "processes": processes,
            "left": left_in_swarm(docker_client, root),
            "stored": "".join(p.read_text() for p in (root / ".al/logs").rglob("*.jsonl")),
        }
    finally:
        cleanup_project(docker_client, root)


def test_a_swarm_run_has_the_container_layout(probed: dict[str, Any]) -> None:
    """uid 1000 (node) in /tmp with HOME=/home/node; /, /etc, /app, /app/static and
    /credentials read-only; /tmp a 2 GB tmpfs, /home/node a 64 MB one, /workspace about
    2 GB and writable."""
    assert probed["exit"] == 0, probed["stderr"]
    seen = probed["facts"]
    assert (seen["uid"], seen["user"], seen["home"], seen["cwd"]) == (
        "1000",
        "node",
        "/home/node",
        "/tmp",
    )
    for key in ("root", "etc", "app", "app_static", "credentials"):
        assert seen[f"{key}_writable"] == "no", key
    assert (seen["tmp_type"], seen["tmp_mb"], seen["tmp_writable"]) == ("tmpfs", "2048", "yes")
    assert (seen["home_type"], seen["home_mb"], seen["home_writable"]) == ("tmpfs", "64", "yes")
    assert seen["workspace_writable"] == "yes"
    assert 1900 <= int(seen["workspace_mb"]) <= 2048
    assert seen["skill_present"] == "yes"
    assert seen["app_has_package"] == "yes"


def test_a_swarm_run_has_the_limits_and_says_what_swarm_cannot_set(
    probed: dict[str, Any],
) -> None:
    """No capabilities, the [local] memory and CPU limits and 512 pids, enforced by the node;
    no-new-privileges, which a Swarm service cannot ask for on engine 20.10, is said to be
    off in the run's log, with the daemon-wide fix."""
    seen = probed["facts"]
    assert int(seen["cap_eff"], 16) == 0
    assert int(seen["mem_limit"]) == 256 * 1024**2
    assert int(seen["cpu_quota"]) == int(1.5 * int(seen["cpu_period"]))
    assert seen["pids_max"] == "512"
    warnings = [r for r in json_records(probed["stdout"]) if "no-new-privileges" in r["msg"]]
    if seen["no_new_privs"] == "0":
        assert warnings, "the run did not say that no-new-privileges is off"
        assert '"no-new-privileges": true' in warnings[0]["hint"]
    else:
        assert not warnings


def test_credentials_are_per_run_secrets_readable_only_by_the_agent(
    probed: dict[str, Any],
) -> None:
    """The credential is a file owned by uid 1000, mode 0400, and its variable is set; the
    agent files are configs owned likewise."""
    seen = probed["facts"]
    assert seen["cred_file"] == "400 1000:1000"
    assert seen["static_file"] == "400 1000:1000"
    assert "token=match" in script_output(probed["stdout"])


def test_the_secret_is_nowhere_but_in_the_run(probed: dict[str, Any]) -> None:
    """The sentinel is in no service, secret, config or container inspect, no process list,
    no stored log and no terminal output (the agent's own echo of it is redacted)."""
    while_running = probed["while_running"]
    assert len(while_running["services"]) == 1
    assert len(while_running["secrets"]) == 1
    everything = {
        "swarm objects": json.dumps(while_running),
        "processes": probed["processes"],
        "stored logs": probed["stored"],
        "terminal": probed["stdout"] + probed["stderr"],
    }
    for where, text in everything.items():
        assert SENTINEL not in text, f"secret leaked into {where}"
    assert "leaking [redacted]" in probed["stdout"]


def test_a_run_is_a_labelled_service_and_leaves_nothing_in_the_swarm(
    probed: dict[str, Any],
) -> None:
    """While it runs, the run is the service al-<agent>-<run id>, labelled like container
    runs; afterwards its service, secrets and configs are gone."""
    (service,) = probed["while_running"]["services"]
    run_id = json_records(probed["stdout"])[0]["runId"]
    assert service["Spec"]["Name"] == f"al-probe-{run_id}"
    labels = service["Spec"]["Labels"]
    assert (labels["al.agent"], labels["al.run"]) == ("probe", run_id)
    assert labels["al.project"] == str(probed["root"])
    assert probed["left"] == {}


def test_timeout_stops_a_swarm_run_with_exit_124(
    make_project: ProjectFactory, swarm_image: str, registry: str, docker_client: Any
) -> None:
    """A swarm run past its timeout is stopped and reported as timed out, exit 124."""
    root = make_project(
        script_agent("sleepy", "echo start; sleep 60; echo never", "timeout = 2\n"),
        config=swarm_project(registry),
    )
    result = run_al("run", "sleepy", "-p", str(root), timeout=90)
    assert result.returncode == 124
    assert "never" not in result.stdout
    assert "timed out after 2s" in result.stderr
    assert left_in_swarm(docker_client, root) == {}


def test_out_of_memory_is_reported_with_the_memory_hint(
    make_project: ProjectFactory, swarm_image: str, registry: str, docker_client: Any
) -> None:
    """A swarm run over [local].memory is OOM-killed: exit 137 and the setting to raise."""
    hog = 'python3 -c "x = bytearray(300 * 1024 * 1024); print(len(x))"'
    root = make_project(
        script_agent("hog", hog),
        config=swarm_project(registry, extra='[local]\nmemory = "64m"\n'),
    )
    result = run_al("run", "hog", "-p", str(root), timeout=90)
    assert result.returncode == 137
    assert "ran out of memory (limit 64m)" in result.stderr
    assert 'memory = "8g"' in result.stderr
    assert left_in_swarm(docker_client, root) == {}


def test_ctrl_c_stops_a_swarm_run_and_records_it_killed(
    make_project: ProjectFactory, swarm_image: str, registry: str, docker_client: Any
) -> None:
    """Ctrl-C during `al run` stops the swarm run within seconds, records it killed with its
    last lines, and leaves no service, secret or config behind."""
    root = make_project(
        script_agent("long", "echo started; sleep 120", "timeout = 300\n"),
        config=swarm_project(registry),
    )
    proc = subprocess.Popen(
        [AL, "run", "long", "-p", str(root), "--json", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line)["msg"] == "started":
            break
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert time.monotonic() - sent < 15
    assert proc.returncode == 130
    (run,) = stored_runs(root, "long")
    assert run.status == "killed"
    assert left_in_swarm(docker_client, root) == {}


def test_a_pinned_workspace_persists_and_is_capped_a_per_run_one_starts_empty(
    make_project: ProjectFactory, swarm_image: str, registry: str
) -> None:
    """/workspace of a swarm agent is kept between its runs (on this node) and capped at
    2 GB; with workspace = "per-run" each run gets a fresh 2 GB one."""
    script = """
    if [ -f /workspace/note ]; then echo "found=$(cat /workspace/note)"; fi
    echo "$AL_RUN_ID" > /workspace/note
    if fallocate -l 2100M /workspace/big 2>/dev/null; then echo cap=none; else echo cap=enforced; fi
    rm -f /workspace/big
    df -Pm /workspace | awk 'NR==2 {print "size=" $2}'
    """
    root = make_project(
        {
            **script_agent("keeper", script),
            **script_agent("fresh", script, '[runtime]\nworkspace = "per-run"\n'),
        },
        config=swarm_project(registry),
    )
    runs = {
        (agent, n): run_al("run", agent, "-p", str(root), "--json", "-q", timeout=120)
        for agent in ("keeper", "fresh")
        for n in (1, 2)
    }
    for (agent, n), result in runs.items():
        assert result.returncode == 0, (agent, n, result.stderr)
    first = json_records(runs["keeper", 1].stdout)[0]["runId"]
    assert f"found={first}" in script_output(runs["keeper", 2].stdout)
    assert "cap=enforced" in script_output(runs["keeper", 1].stdout)
    fresh = script_output(runs["fresh", 2].stdout)
    assert not any(line.startswith("found=") for line in fresh)
    assert "cap=enforced" in fresh
    assert "size=2048" in fresh


def test_an_unchanged_chain_is_not_pushed_again_and_a_rebuild_leaves_no_old_image(
    make_project: ProjectFactory, swarm_image: str, registry: str, docker_client: Any
) -> None:
    """The chain is published by content: building it again gives the same references and
    pushes nothing; an agent whose Dockerfile changed gets a new reference in the registry,
    and its old image goes from this engine, registry name and all."""
    from action_llama.images.build import build_images
    from action_llama.project import load_project
    from action_llama.runtimes.swarm_images import in_registry

    dockerfile = "FROM al-agent:latest\nUSER root\nRUN echo {} > /etc/marker\nUSER node\n"
    root = make_project(
        script_agent("tooled", "true\n", dockerfile=dockerfile.format("one")),
        config=swarm_project(registry),
    )
    api = docker_client.api
    pushes: list[str] = []
    push = api.push

    def counted(repository: str, *args: Any, **kwargs: Any) -> Any:
        pushes.append(repository)
        return push(repository, *args, **kwargs)

    first = build_images(load_project(root))["tooled"]
    old_id = api.inspect_image(first)["Id"]
    api.push = counted
    try:
        assert build_images(load_project(root)) == {"tooled": first}
        assert pushes == []
        (root / "agents/tooled/Dockerfile").write_text(dockerfile.format("two"))
        second = build_images(load_project(root))["tooled"]
    finally:
        del api.push
    assert second != first
    assert second.startswith(f"{registry}/")
    assert pushes == [second.rsplit(":", 1)[0]]
    assert in_registry(docker_client, second)
    assert api.images(filters={"reference": first}) == []
    assert old_id not in {image["Id"] for image in api.images(all=True)}


def test_a_run_no_node_can_take_fails_with_the_constraint_named(
    make_project: ProjectFactory, swarm_image: str, registry: str, docker_client: Any
) -> None:
    """A run whose constraints no node meets fails within seconds, saying so and where to
    look, and leaves nothing behind."""
    root = make_project(
        script_agent("nowhere", "echo ran"),
        config=swarm_project(registry, 'constraints = ["node.labels.al-test-nowhere == yes"]\n'),
    )
    result = run_al("run", "nowhere", "-p", str(root), timeout=120)
    assert result.returncode == 1
    assert "No node of the swarm can take run" in result.stderr
    assert "constraints" in result.stderr.split("hint:")[1]
    assert "Traceback" not in result.stderr
    assert left_in_swarm(docker_client, root) == {}


def test_secrets_of_a_run_whose_al_was_killed_are_swept(
    make_project: ProjectFactory, swarm: str, docker_client: Any
) -> None:
    """Secrets and configs of a project's run whose service is gone (its `al` was killed
    between making them and removing them) are removed by the sweep each run starts with;
    those of a run whose service exists are kept."""
    from action_llama.runtimes.swarm_spec import sweep_orphans

    root = make_project({})
    api = docker_client.api

    def objects_of(run_id: str) -> None:
        labels = {"al.project": str(root), "al.run": run_id, "al.agent": "x"}
        api.create_secret(f"al-test-{run_id}-s0", b"value", labels=labels)
        api.create_config(f"al-test-{run_id}-c0", b"file", labels=labels)

    objects_of("deadbeef")
    objects_of("0000live")
    api.create_service(
        {"ContainerSpec": {"Image": "al-agent:latest", "Command": ["true"]}},
        name="al-x-0000live",
        labels={"al.project": str(root), "al.run": "0000live"},
        mode={"Replicated": {"Replicas": 0}},
    )
    assert sweep_orphans(docker_client, root, older_than=0) == ["deadbeef"]
    left = swarm_objects(docker_client, f"al.project={root}")
    assert left["secrets"] == ["al-test-0000live-s0"]
    assert left["configs"] == ["al-test-0000live-c0"]


def test_doctor_checks_the_swarm_the_registry_and_every_node(
    make_project: ProjectFactory, swarm_image: str, registry: str, docker_client: Any
) -> None:
    """`al doctor` for swarm agents: this engine manages a swarm, its nodes are ready, the
    registry takes a push, and a probe task on every node reaches the gateway's address and
    reports no-new-privileges (said plainly, with the daemon-wide fix, when it is off); the
    probe leaves no container behind."""
    root = make_project(script_agent("hello", "echo hi"), config=swarm_project(registry))
    assert run_al("image", "build", "-p", str(root), "-q").returncode == 0
    result = run_al("doctor", "-p", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "manager of a swarm of" in out
    assert "ready and active" in out
    assert f"{registry} takes pushes" in out
    assert "reachable from" in out
    assert docker_client.api.containers(all=True, filters={"label": "al.doctor"}) == []
    if "no-new-privileges is off" in out:
        assert '"no-new-privileges": true in /etc/docker/daemon.json' in out


def test_doctor_fails_swarm_agents_without_a_registry_that_takes_pushes(
    make_project: ProjectFactory, swarm: str
) -> None:
    """No [swarm] registry, or one nobody listens on, fails `al doctor` with the fix."""
    files = script_agent("hello", "echo hi")
    none = make_project(files, config='[runtime]\ntype = "swarm"\n', name="none")
    gone = make_project(files, config=swarm_project("127.0.0.1:9"), name="gone")
    missing = run_al("doctor", "-p", str(none))
    assert missing.returncode == 1
    assert "config.toml names no registry" in missing.stdout
    assert 'registry = "registry.internal:5000"' in missing.stdout
    unreachable = run_al("doctor", "-p", str(gone))
    assert unreachable.returncode == 1
    assert "Cannot push to 127.0.0.1:9" in unreachable.stdout


@pytest.fixture(scope="module")
def worker(docker_client: Any, swarm: str, registry: str) -> Iterator[Worker]:
    """A second node: a Docker-in-Docker worker joined to the swarm (see tests/dind.py)."""
    with worker_node(docker_client, registry) as node:
        yield node


@pytest.mark.slow
def test_a_run_placed_on_another_node_runs_there_and_leaves_nothing_on_it(
    make_project: ProjectFactory,
    swarm_image: str,
    registry: str,
    docker_client: Any,
    worker: Worker,
    tmp_path: Path,
) -> None:
    """A per-run agent constrained to the worker runs on it: its image pulled from the
    registry, its credential delivered as a secret, its output and exit code back through the
    manager; afterwards neither the swarm nor the worker keeps anything of it (its volumes
    there are removed by a short task on the worker)."""
    store = CredentialStore(tmp_path / "creds")
    store.write(CredentialRef("github_token"), {"token": SENTINEL})
    runtime = f'constraints = ["node.hostname == {worker.hostname}"]\nworkspace = "per-run"\n'
    script = 'echo "on $(cat /etc/hostname)"; [ -n "$GITHUB_TOKEN" ] && echo token=set; exit 5'
    root = make_project(
        script_agent("remote", script, 'credentials = ["github_token"]\n'),
        config=swarm_project(registry, runtime),
    )
    result = run_al(
        "run",
        "remote",
        "-p",
        str(root),
        "--json",
        "-q",
        env={"AL_CREDENTIALS_DIR": str(store.root)},
        timeout=600,
    )
    assert result.returncode == 5, result.stderr
    assert "token=set" in script_output(result.stdout)
    run_id = json_records(result.stdout)[0]["runId"]
    assert left_in_swarm(docker_client, root) == {}
    assert worker.docker("volume", "ls", "-q", "--filter", f"label=al.run={run_id}") == ""
    assert worker.docker("ps", "-aq", "--filter", f"label=al.run={run_id}") == ""
    assert not docker_client.api.services(filters={"label": "al.janitor"})


@pytest.mark.slow
def test_doctor_finds_a_node_that_cannot_reach_the_gateway(
    make_project: ProjectFactory, swarm_image: str, registry: str, worker: Worker
) -> None:
    """With a second node, the default gateway address (this host's bridge) is not reachable
    from the worker's runs: `al doctor` fails naming the node and the fix; with [swarm]
    advertise set to an address the worker reaches, it passes."""
    from action_llama.gateway.bind import bridge_addresses

    bridge = bridge_addresses()[0]
    files = script_agent("hello", "echo hi", '[runtime]\nworkspace = "per-run"\n')
    default = make_project(files, config=swarm_project(registry), name="default")
    advertised = make_project(
        files,
        config=swarm_project(registry, swarm=f'advertise = "http://{bridge}:8080"\n'),
        name="advertised",
    )
    failing = run_al("doctor", "-p", str(default), timeout=300)
    assert failing.returncode == 1
    assert f"Runs on {worker.hostname}" in failing.stdout
    assert "[swarm] advertise" in failing.stdout
    # al-agent:latest is shared with other worktrees' test sessions: make it this one's again.
    assert run_al("image", "build", "-p", str(advertised), "-q").returncode == 0
    passing = run_al("doctor", "-p", str(advertised), timeout=300)
    assert f"{bridge} reachable from" in passing.stdout, passing.stdout
    assert worker.hostname in passing.stdout
