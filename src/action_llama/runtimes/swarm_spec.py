"""What one Swarm run is made of: its secrets and configs, and its service's spec.

A run's staged credentials become one Swarm secret per file and its agent files one Swarm
config per file, each mounted at the path a container run has them at (uid 1000, mode 0400),
all labelled with the run, and removed with it. Swarm keeps secrets encrypted in its raft
log and hands them only to the node that runs the task, into a tmpfs.

/tmp and /home/node (and a per-run /workspace) are tmpfs *volumes* of the run, made by the
node's engine when the task starts: a service's plain tmpfs mount is always `noexec` and
root's on engine 20.10, which would break every agent that runs what it builds in /tmp.

The service is a replicated service of one task that is never restarted, rather than a
`replicated-job`: on engine 20.10 nothing ends one task of a job and keeps its exit code and
output (updating a job re-runs it, and the old task is removed). A replicated service can be
stopped the way `al` needs (see `halted`): an update whose new task can be placed nowhere
shuts the running one down (stop signal, then SIGKILL after the grace period), and the
ended task keeps its exit code and log.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from action_llama.runtimes.base import CONTAINER_UID, RunSpec

if TYPE_CHECKING:
    import docker

LABEL_RUN = "al.run"
LABEL_AGENT = "al.agent"
LABEL_PROJECT = "al.project"
#: The constraint a stopped run's service gets: no node has the label, so nothing replaces
#: the task it shut down; it also tells any later `al` that the run was stopped on purpose.
HALT_LABEL = "node.labels.al-halted"
#: How runs name the host, as in container runs.
CONTAINER_HOST = "host.docker.internal"
#: Seconds between the stop signal and SIGKILL (the entry ends within one on SIGTERM).
STOP_GRACE = 10
#: Secrets and configs older than this whose service is gone were left by a killed `al`.
ORPHAN_AGE = 60
#: How long `remove` waits for the run's container to go before removing its volumes.
VOLUME_RELEASE_SECONDS = 10
_NANO = 1_000_000_000


def swarm_api(client: docker.DockerClient) -> Any:
    """The engine's low-level API, untyped: types-docker leaves its Swarm calls unannotated."""
    return client.api


def service_name(agent: str, run_id: str) -> str:
    """al-<agent>-<run id>, as container runs are named (Swarm allows 63 characters)."""
    return f"al-{agent[:50].rstrip('-')}-{run_id}"


def run_labels(spec: RunSpec) -> dict[str, str]:
    return {
        **spec.labels,
        LABEL_RUN: spec.run_id,
        LABEL_AGENT: spec.agent,
        LABEL_PROJECT: str(spec.project),
    }


@dataclass(frozen=True)
class Mounted:
    """A secret or config of the run and where its file appears in the task."""

    id: str
    name: str
    target: str

    def reference(self, kind: str) -> dict[str, Any]:
        file = {"Name": self.target, "UID": str(CONTAINER_UID), "GID": str(CONTAINER_UID)}
        return {f"{kind}ID": self.id, f"{kind}Name": self.name, "File": {**file, "Mode": 0o400}}


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


class RunObjects:
    """The secrets and configs of one run: made from its staged files, removed by label."""

    def __init__(self, client: docker.DockerClient, spec: RunSpec):
        self.client = client
        self.spec = spec
        self.secrets: list[Mounted] = []
        self.configs: list[Mounted] = []
        digest = hashlib.sha256(str(spec.project).encode()).hexdigest()[:8]
        #: The start of the name of everything made for the run.
        self.prefix = f"al-{digest}-{spec.run_id}"
        self._labels = run_labels(spec)

    def create(self) -> None:
        """One secret per credential file, one config per agent file."""
        api = swarm_api(self.client)
        credentials = self.spec.credentials_dir
        for n, path in enumerate(_files(credentials)):
            name = f"{self.prefix}-s{n}"
            made = api.create_secret(name, path.read_bytes(), labels=self._labels)
            target = f"/credentials/{path.relative_to(credentials).as_posix()}"
            self.secrets.append(Mounted(made["ID"], name, target))
        static = self.spec.static_dir
        for n, path in enumerate(_files(static)):
            name = f"{self.prefix}-c{n}"
            made = api.create_config(name, path.read_bytes(), labels=self._labels)
            target = f"/app/static/{path.relative_to(static).as_posix()}"
            self.configs.append(Mounted(made["ID"], name, target))


def remove_objects(client: docker.DockerClient, run_id: str) -> None:
    """Remove the secrets and configs of run `run_id` (its service must be gone), and its
    tmpfs volumes on this node once their container is gone (a few seconds at most)."""
    from docker.errors import APIError, NotFound

    api = swarm_api(client)
    selector = {"label": [f"{LABEL_RUN}={run_id}"]}
    for secret in api.secrets(filters=selector):
        with contextlib.suppress(NotFound):
            api.remove_secret(secret["ID"])
    for config in api.configs(filters=selector):
        with contextlib.suppress(NotFound):
            api.remove_config(config["ID"])
    deadline = time.monotonic() + VOLUME_RELEASE_SECONDS
    while (
        containers := api.containers(all=True, filters=selector)
    ) and time.monotonic() < deadline:
        # Swarm removes the task's container with its service, in its own time (seconds on
        # a busy engine); the volumes can only go after it.
        for container in containers:
            with contextlib.suppress(APIError):  # already being removed
                api.remove_container(container["Id"], force=True)
        time.sleep(0.1)
    for volume in api.volumes(filters=selector).get("Volumes") or []:
        with contextlib.suppress(APIError):  # still in use: the next sweep takes it
            api.remove_volume(volume["Name"])


def sweep_orphans(
    client: docker.DockerClient, project: Path, older_than: float = ORPHAN_AGE
) -> list[str]:
    """Remove the secrets, configs and (on this node) volumes of `project`'s runs whose
    service is gone: left by an `al` killed between making them and removing them. Recent
    ones are spared (another `al` may be about to create their service). The run ids swept."""
    api = swarm_api(client)
    of_project = {"label": [f"{LABEL_PROJECT}={project}", LABEL_RUN]}
    live = {s["Spec"]["Labels"].get(LABEL_RUN) for s in api.services(filters=of_project)}
    objects = [
        (o["Spec"]["Labels"], o.get("CreatedAt", ""))
        for o in [*api.secrets(filters=of_project), *api.configs(filters=of_project)]
    ]
    volumes = api.volumes(filters=of_project).get("Volumes") or []
    objects += [(v.get("Labels") or {}, v.get("CreatedAt", "")) for v in volumes]
    now = time.time()
    orphans = {
        labels[LABEL_RUN]
        for labels, created in objects
        if labels.get(LABEL_RUN) not in live and now - _created(created) >= older_than
    }
    for run_id in sorted(orphans):
        remove_objects(client, run_id)
    return sorted(orphans)


def _created(stamp: str) -> float:
    """Seconds since the epoch of an engine timestamp: Swarm's are UTC with nanoseconds
    ("...T09:17:31.123456789Z"), volumes' carry an offset and no fraction."""
    whole, _, rest = stamp.partition(".")
    zone = rest.lstrip("0123456789") if rest else ""
    if not rest:
        whole, zone = whole[:19], whole[19:]
    fraction = rest[: len(rest) - len(zone)][:6] if rest else "0"
    zone = "+00:00" if zone in ("Z", "") else zone
    try:
        return datetime.fromisoformat(f"{whole}.{fraction or '0'}{zone}").timestamp()
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class Placement:
    """Where the run goes and what backs its /workspace."""

    constraints: tuple[str, ...]
    #: The agent's workspace volume on the pinned node, or None for a fresh tmpfs.
    volume: str | None


def service_spec(
    spec: RunSpec, objects: RunObjects, placement: Placement, env: dict[str, str]
) -> dict[str, Any]:
    """The `POST /services/create` body of the run."""
    limits = spec.limits
    labels = run_labels(spec)
    prefix = objects.prefix
    mounts = [
        _tmpfs(f"{prefix}-tmp", "/tmp", limits.tmp_bytes, 0o1777, labels),
        _tmpfs(f"{prefix}-home", "/home/node", limits.home_bytes, 0o755, labels),
    ]
    if placement.volume is not None:
        mounts.append({"Type": "volume", "Source": placement.volume, "Target": "/workspace"})
    else:
        mounts.append(_tmpfs(f"{prefix}-ws", "/workspace", WORKSPACE_BYTES, 0o755, labels))
    container = {
        "Image": spec.image,
        "Labels": labels,
        "Env": [f"{key}={value}" for key, value in env.items()],
        "Dir": "/tmp",
        "User": f"{CONTAINER_UID}:{CONTAINER_UID}",
        "ReadOnly": True,
        "Init": True,
        "CapabilityDrop": ["ALL"],
        "Mounts": mounts,
        "Secrets": [s.reference("Secret") for s in objects.secrets],
        "Configs": [c.reference("Config") for c in objects.configs],
        "Hosts": [f"host-gateway {CONTAINER_HOST}"],
        "StopGracePeriod": STOP_GRACE * _NANO,
    }
    return {
        "Name": service_name(spec.agent, spec.run_id),
        "Labels": labels,
        "TaskTemplate": {
            "ContainerSpec": container,
            "Resources": {
                "Limits": {
                    "NanoCPUs": int(limits.cpus * _NANO),
                    "MemoryBytes": limits.memory_bytes,
                    "Pids": limits.pids,
                }
            },
            "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
            "Placement": {"Constraints": list(placement.constraints)},
        },
        "Mode": {"Replicated": {"Replicas": 1}},
    }


#: The size of /workspace, kept or fresh.
WORKSPACE_BYTES = 2 * 1024**3


def _tmpfs(name: str, target: str, size: int, mode: int, labels: dict[str, str]) -> dict[str, Any]:
    """A tmpfs volume of the run: sized, uid 1000's, programs may run from it."""
    owner = f"uid={CONTAINER_UID},gid={CONTAINER_UID}"
    options = f"size={size},mode={mode:o},{owner},exec,nosuid,nodev"
    driver = {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs", "o": options}}
    return {
        "Type": "volume",
        "Source": name,
        "Target": target,
        "VolumeOptions": {"Labels": labels, "DriverConfig": driver},
    }


def halted(service_spec: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The task template that shuts the run's task down and starts no other."""
    template = dict(service_spec["TaskTemplate"])
    placement = dict(template.get("Placement") or {})
    placement["Constraints"] = [*placement.get("Constraints", []), f"{HALT_LABEL} == {run_id}"]
    template["Placement"] = placement
    template["ForceUpdate"] = int(template.get("ForceUpdate", 0)) + 1
    return template


def was_halted(service_spec: dict[str, Any]) -> bool:
    constraints = (service_spec["TaskTemplate"].get("Placement") or {}).get("Constraints") or []
    return any(c.startswith(HALT_LABEL) for c in constraints)
