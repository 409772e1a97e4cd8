"""What `al doctor` (and `al start`, before it starts) checks for swarm agents: this engine
manages a swarm whose nodes are ready, the registry takes pushes, and, from a probe task on
every node, that the gateway's address is reachable there and how the node's engine is set
up where Swarm cannot set it per service (no-new-privileges, swap)."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import tarfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from action_llama.doctor.result import Check
from action_llama.errors import ActionLlamaError
from action_llama.runtimes.swarm_spec import CONTAINER_HOST, swarm_api

if TYPE_CHECKING:
    import docker

    from action_llama.project import Agent, Project
    from action_llama.runtimes.swarm import SwarmRuntime

#: How long the probe task may take on every node (a first pull of the image included).
PROBE_SECONDS = 90
#: How long the probe's output may take to show in its service's log once its tasks ended.
LOG_SETTLE_SECONDS = 15
#: What the probe task prints: one JSON line about its node.
PROBE_SCRIPT = """
import json, os, socket
seen = {"node": os.environ.get("AL_NODE", "?")}
for line in open("/proc/self/status"):
    if line.startswith("NoNewPrivs:"):
        seen["no_new_privs"] = line.split()[1]
for line in open("/proc/meminfo"):
    if line.startswith("SwapTotal:"):
        seen["swap_kb"] = int(line.split()[1])
host, port = os.environ["AL_GATEWAY"].rsplit(":", 1)
try:
    socket.create_connection((host, int(port)), 5).close()
    seen["gateway"] = "ok"
except OSError as exc:
    seen["gateway"] = str(exc)
print(json.dumps(seen))
"""


def unenforced_policy(agent: str, mode: str, file: str) -> tuple[str, str]:
    """Why a swarm run of `agent` under `[network] mode = mode` is refused, and the fix: the
    egress proxy and the internal networks that enforce a policy exist on this host only."""
    return (
        f'Agent {agent} has [network] mode = "{mode}" ({file}), which swarm runs cannot '
        "enforce: the egress proxy and its internal networks exist on this host only, so a "
        "task on any node could reach anything.",
        f'Run it as a container on this host ([runtime] type = "docker"), or accept open '
        f'egress for it in {file}:\n[network]\nmode = "open"',
    )


def network_checks(agents: Sequence[Agent]) -> list[Check]:
    """A failing check for each swarm agent whose [network] policy its runs would be refused
    for (al start stops on it, rather than refusing each run); a warning for each whose runs
    hold secrets that runs on this host would not (nothing is brokered on a swarm)."""
    checks = []
    for agent in agents:
        if agent.network.mode != "open":
            detail, fix = unenforced_policy(agent.name, agent.network.mode, agent.network_file)
            checks.append(Check(f"network {agent.name}", "fail", detail, fix))
        elif agent.config.credentials or agent.models:
            checks.append(
                Check(
                    f"secrets {agent.name}",
                    "warn",
                    "its swarm runs hold their real keys and tokens as files: the egress "
                    "proxy that brokers them is on this host, out of the nodes' reach",
                    f"Give agents/{agent.name} only credentials it may hold, or run it on this "
                    'host ([runtime] type = "container") to have them brokered.',
                )
            )
    return checks


def swarm_checks(runtime: SwarmRuntime, project: Project, agents: Sequence[Agent]) -> list[Check]:
    """The checks for `agents` (the project's swarm agents): none when there are none."""
    if not agents:
        return []
    names = ", ".join(a.name for a in agents)
    try:
        manager = _manager(runtime, names)
        if manager.status == "fail":
            return [manager]
        from action_llama.runtimes.docker_checks import check_base_image

        checks = [manager, _nodes(runtime, agents), check_base_image(runtime.client, project)]
        registry = _registry(runtime.client, project)
        checks.append(registry)
        if registry.status != "fail":
            checks += _probe(runtime, project)
        return checks
    except ActionLlamaError as exc:
        return [Check("swarm", "fail", f"{exc.message}\nSwarm agents need it: {names}", exc.hint)]


def _manager(runtime: SwarmRuntime, names: str) -> Check:
    node = runtime.node()
    state = node.get("LocalNodeState")
    if state != "active":
        return Check(
            "swarm",
            "fail",
            f"This Docker engine is in no swarm ({state}); swarm agents need one: {names}",
            "docker swarm init --advertise-addr <this host's address> (then join the other "
            "nodes with the command it prints)",
        )
    if not node.get("ControlAvailable"):
        return Check(
            "swarm",
            "fail",
            "This Docker engine is a worker of its swarm; al must run on a manager.",
            "Run al on a manager node (docker node ls there lists the managers)",
        )
    return Check(
        "swarm",
        "ok",
        f"manager of a swarm of {node.get('Nodes', '?')} node(s), advertised at "
        f"{node.get('NodeAddr')}",
    )


def _nodes(runtime: SwarmRuntime, agents: Sequence[Agent]) -> Check:
    nodes = swarm_api(runtime.client).nodes()
    usable = [
        n
        for n in nodes
        if n["Status"].get("State") == "ready" and n["Spec"].get("Availability") == "active"
    ]
    others = [n["Description"].get("Hostname", n["ID"]) for n in nodes if n not in usable]
    here = runtime.node().get("NodeID")
    pinned = [a.name for a in agents if a.config.runtime.workspace == "pinned"]
    if pinned and here not in {n["ID"] for n in usable}:
        return Check(
            "swarm nodes",
            "fail",
            f"This node is not ready and active, and agents {', '.join(pinned)} keep their "
            "/workspace on it (their runs go nowhere else).",
            "docker node update --availability active <this node>, or set workspace = "
            '"per-run" in [runtime] of those agents',
        )
    if not usable:
        return Check("swarm nodes", "fail", "No node is ready and active.", "docker node ls")
    detail = f"{len(usable)} ready and active"
    if others:
        detail += f"; not: {', '.join(others)}"
    return Check(
        "swarm nodes", "warn" if others else "ok", detail, "docker node ls" if others else None
    )


def _registry(client: docker.DockerClient, project: Project) -> Check:
    """[swarm] registry is set and takes a push (of a one-file probe image)."""
    registry = project.config.swarm.registry
    if registry is None:
        return Check(
            "registry",
            "fail",
            "config.toml names no registry for swarm agents: every node pulls the chain from one.",
            '[swarm]\nregistry = "registry.internal:5000"',
        )
    from docker.errors import APIError

    api = swarm_api(client)
    repository = f"{registry}/al-doctor-probe"
    failure: str | None = None
    try:
        api.import_image_from_data(_one_file_tar(), repository=repository, tag="latest")
        events = api.push(repository, tag="latest", stream=True, decode=True)
        failure = next((str(e["error"]) for e in events if e.get("error")), None)
    except APIError as exc:
        failure = str(exc.explanation or exc)
    finally:
        with contextlib.suppress(APIError):
            api.remove_image(f"{repository}:latest", force=True)
    if failure:
        return Check(
            "registry",
            "fail",
            f"Cannot push to {registry}: {failure}",
            "Start the registry, or fix [swarm] registry in config.toml; an engine pushes "
            'over plain HTTP only to loopback or its "insecure-registries".',
        )
    detail = f"{registry} takes pushes"
    nodes = len(swarm_api(client).nodes())
    if urlsplit(f"//{registry}").hostname in ("127.0.0.1", "localhost") and nodes > 1:
        return Check(
            "registry",
            "warn",
            f"{detail}, but it is on loopback: the other {nodes - 1} node(s) cannot pull from it.",
            "Serve the registry on an address every node reaches and name it in [swarm] registry",
        )
    return Check("registry", "ok", detail)


def _one_file_tar() -> bytes:
    data = b"al doctor\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("al-doctor-probe")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _probe(runtime: SwarmRuntime, project: Project) -> list[Check]:
    """A task on every node: is the gateway's address reachable there, and is the node's
    engine set up for what Swarm cannot ask per service."""
    from action_llama.runtimes.swarm_images import in_registry, reference

    registry = project.config.swarm.registry
    assert registry is not None
    from docker.errors import APIError

    from action_llama.images.build import base_ref

    client = runtime.client
    base = None
    # This install's base by its key first: `[local].image` itself names the base built last
    # by any install on the engine (or one the user made).
    for tag in (base_ref(project.config.local.image), project.config.local.image):
        try:
            base = swarm_api(client).inspect_image(tag)["Id"]
            break
        except APIError:  # not built yet: the base image's own check says so
            continue
    ref = reference(client, registry, base) if base else None
    if ref is None or not in_registry(client, ref):
        not_yet = "not checked yet: the base image is not in the registry (al start pushes it)"
        return [Check("gateway from the nodes", "ok", not_yet)]
    # A listener of our own on the gateway's address: the gateway itself may not run yet.
    with socket.create_server(("0.0.0.0", 0)) as listener:
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        host = urlsplit(runtime.gateway_url(project, port)).hostname or CONTAINER_HOST
        seen = _run_probe(client, ref, f"{host}:{port}", listener)
    return _verdicts(seen, host)


def _run_probe(
    client: docker.DockerClient, image: str, gateway: str, listener: socket.socket
) -> list[dict[str, Any]]:
    api = swarm_api(client)
    template = {
        "ContainerSpec": {
            "Image": image,
            "Command": ["python3", "-c", PROBE_SCRIPT],
            "Env": [f"AL_GATEWAY={gateway}", "AL_NODE={{.Node.Hostname}}"],
            "User": "1000:1000",
            "ReadOnly": True,
            "CapabilityDrop": ["ALL"],
            "Hosts": [f"host-gateway {CONTAINER_HOST}"],
            "Labels": {"al.doctor": "1"},
        },
        "RestartPolicy": {"Condition": "none"},
    }
    service = api.create_service(
        template,
        name=f"al-doctor-{int(time.time())}",
        labels={"al.doctor": "1"},
        mode={"GlobalJob": {}},
    )["ID"]
    try:
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                listener.accept()[0].close()  # the probes connect here
            tasks = api.tasks(filters={"service": service})
            states = [t["Status"]["State"] for t in tasks]
            if tasks and all(s in ("complete", "failed", "rejected", "shutdown") for s in states):
                break
        from action_llama.runtimes.swarm_logs import whole_log

        # An ended task's output reaches the service's log a moment later on a busy node.
        settle = time.monotonic() + LOG_SETTLE_SECONDS
        while not (lines := [line for _, line in whole_log(client, service)]):
            if time.monotonic() > settle:
                break
            time.sleep(0.5)
    finally:
        api.remove_service(service)
        _remove_ended_containers(api, service)
    found = []
    for line in lines:
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def _remove_ended_containers(api: Any, service: str) -> None:
    """Remove this node's containers of the probe's tasks: engine 20.10 keeps those of a
    job's ended tasks after the service is removed (one per `al doctor` otherwise). Other
    nodes' stay until their engine's `docker container prune`."""
    from docker.errors import APIError

    of_service = {"label": f"com.docker.swarm.service.id={service}"}
    for container in api.containers(all=True, filters=of_service):
        with contextlib.suppress(APIError):  # being removed already
            api.remove_container(container["Id"], force=True)


def _verdicts(seen: list[dict[str, Any]], gateway: str) -> list[Check]:
    if not seen:
        return [
            Check(
                "gateway from the nodes",
                "warn",
                f"The probe task answered from no node within {PROBE_SECONDS} s.",
                "docker service ls / docker node ls: are the nodes pulling the image?",
            )
        ]
    unreachable = [f"{s['node']} ({s['gateway']})" for s in seen if s.get("gateway") != "ok"]
    nodes = ", ".join(sorted(s["node"] for s in seen))
    checks = [
        Check(
            "gateway from the nodes",
            "fail",
            f"Runs on {', '.join(unreachable)} cannot reach the gateway at {gateway}.",
            "Set [swarm] advertise in config.toml to the gateway's URL as every node reaches "
            "it (an address of this host), and let its port through the firewall",
        )
        if unreachable
        else Check("gateway from the nodes", "ok", f"{gateway} reachable from {nodes}")
    ]
    loose = [s["node"] for s in seen if s.get("no_new_privs") != "1"]
    swapping = [s["node"] for s in seen if s.get("swap_kb", 0) > 0]
    problems, fixes = [], []
    if loose:
        problems.append(
            f"no-new-privileges is off on {', '.join(loose)} (Swarm services cannot ask for "
            "it on engine 20.10; every capability is still dropped)"
        )
        fixes.append('"no-new-privileges": true in /etc/docker/daemon.json, then restart dockerd')
    if swapping:
        problems.append(
            f"{', '.join(swapping)} have swap: a run may use as much again as [local].memory "
            "in swap (Swarm cannot turn it off per service)"
        )
        fixes.append("swapoff -a on those nodes")
    if problems:
        checks.append(
            Check("swarm node settings", "warn", "; ".join(problems), " and ".join(fixes))
        )
    else:
        checks.append(Check("swarm node settings", "ok", f"no-new-privileges on, no swap: {nodes}"))
    return checks
