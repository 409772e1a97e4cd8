"""Runs as Docker containers: read-only root, no capabilities, sized tmpfs, engine limits."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from action_llama.egress.names import GATEWAY_NAME
from action_llama.engine import engine_errors
from action_llama.errors import ActionLlamaError, ImageMissing, RunError
from action_llama.runtimes.base import (
    CONTAINER_UID,
    EXIT_TIMEOUT,
    RunHandle,
    RunIdentity,
    RunResult,
    RunSpec,
    cluster_keys_ignored,
    status_for,
)
from action_llama.runtimes.docker_network import NetworkPlan, plan_network, release_network
from action_llama.runtimes.docker_workspace import Workspace, ensure_workspace

if TYPE_CHECKING:
    import docker

    from action_llama.doctor.result import Check
    from action_llama.engine_api import EngineAPI
    from action_llama.project import Agent, Project

LABEL_RUN = "al.run"
LABEL_AGENT = "al.agent"
LABEL_PROJECT = "al.project"
#: Extra seconds the host waits past the timeout, so the entry's own timer ends the run first
#: and says so in the log.
TIMEOUT_GRACE = 3


def container_name(agent: str, run_id: str) -> str:
    return f"al-{agent}-{run_id}"


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Whole lines out of a stream of byte chunks (a trailing partial line included)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


class DockerRuntime:
    """The `docker` runtime: one container per run, on the local engine."""

    name = "docker"
    needs_image: ClassVar[bool] = True
    brokers: ClassVar[bool] = True

    def identity(self, agent: Agent) -> RunIdentity:
        # The image's user `node`: the same uid whoever starts the run.
        return RunIdentity(uid=CONTAINER_UID, gid=CONTAINER_UID)

    def publish(self, project: Project, images: Mapping[str, str]) -> dict[str, str]:
        return dict(images)  # runs start on this engine, where the chain was built

    def gateway_url(self, project: Project, port: int) -> str:
        # A name each run's container maps: to the proxy (which relays it) when its network
        # is checked, else to the host.
        return f"http://{GATEWAY_NAME}:{port}"

    def describe(self, agent: Agent) -> str:
        return "container"

    def warnings(self, project: Project, agent: Agent) -> list[str]:
        return cluster_keys_ignored(agent, "it runs in a container on this machine")

    def checks(self, project: Project, agents: Sequence[Agent], *, fix: bool) -> list[Check]:
        from action_llama.doctor.dockerfiles import check_dockerfiles
        from action_llama.runtimes.docker_checks import engine_checks
        from action_llama.runtimes.egress_checks import container_egress_checks

        return [
            *engine_checks(project, agents),
            *check_dockerfiles(project, agents),
            *container_egress_checks(agents),
        ]

    async def prepare(self, project: Project, agents: Sequence[Agent]) -> None:
        """The egress of agents whose runs use it: the proxy, and for checked agents their
        network and its first address holder (a first run would otherwise wait seconds)."""
        from action_llama.egress.brokering import uses_proxy
        from action_llama.egress.service import EgressUnavailable, ProjectEgress

        egress = ProjectEgress(self.client, project.root)
        for agent in agents:
            if uses_proxy(agent):
                with contextlib.suppress(EgressUnavailable):
                    await asyncio.to_thread(egress.prepare, agent.name, agent.network.mode)

    def __init__(self, client: docker.DockerClient | None = None):
        #: docker-py, for what runs of agents with checked egress need (their networks).
        self._client = client
        self._api: EngineAPI | None = None
        #: Containers `stop` was called on: their end is reported as "killed".
        self._stopped: set[str] = set()

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            from action_llama.engine import connect

            self._client = connect()
        return self._client

    @property
    def api(self) -> EngineAPI:
        """The engine's client for the calls runs make (docker-py is not needed for them)."""
        if self._api is None:
            from action_llama.engine import api

            self._api = api()
        return self._api

    def _create(self, spec: RunSpec) -> RunHandle:
        from action_llama.engine_api import EngineAPIError, NoSuchImage

        api = self.api
        workspace = ensure_workspace(api, spec.project, spec.agent, Path(spec.workspace))
        name = container_name(spec.agent, spec.run_id)
        network = plan_network(self._client, spec)
        with engine_errors(f"starting run {spec.run_id}"):
            try:
                created = api.create_container(_container_config(spec, workspace, network), name)
                api.start(created["Id"])
            except BaseException as exc:
                # A container that never started must not outlive its run: one the engine made
                # before `start` failed, or whose create timed out here but went through there.
                self._discard_unstarted(name)
                release_network(str(spec.project), spec.run_id)
                if isinstance(exc, NoSuchImage):
                    raise ImageMissing(
                        f"The image of agent {spec.agent} is gone: {exc.explanation}",
                        hint="Build it again with: al image build",
                    ) from exc
                if isinstance(exc, EngineAPIError):
                    raise RunError(
                        f"Could not start the container for agent {spec.agent}: {exc.explanation}",
                        hint="Check the image with: al image ls",
                    ) from exc
                raise
        return RunHandle(
            run_id=spec.run_id,
            agent=spec.agent,
            runtime=self.name,
            ref=created["Id"],
            name=name,
            project=str(spec.project),
            notes=network.notes,
        )

    def _discard_unstarted(self, name: str) -> None:
        from action_llama.engine_api import EngineAPIError

        with contextlib.suppress(EngineAPIError, ActionLlamaError):
            self.api.remove_container(name, force=True)

    async def start(self, spec: RunSpec) -> RunHandle:
        if not spec.image:
            raise RunError(f"No image to run for agent {spec.agent}.")
        return await asyncio.to_thread(self._create, spec)

    async def logs(self, handle: RunHandle) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        def pump() -> None:
            try:
                for line in _lines(self.api.logs(handle.ref)):
                    loop.call_soon_threadsafe(queue.put_nowait, line)
            except Exception:
                pass
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=pump, name=f"logs-{handle.run_id}", daemon=True).start()
        while (line := await queue.get()) is not None:
            yield line

    async def wait(self, handle: RunHandle, timeout: float) -> RunResult:
        with engine_errors(f"waiting for run {handle.run_id}"):
            return await self._wait(handle, timeout)

    async def _wait(self, handle: RunHandle, timeout: float) -> RunResult:
        api = self.api
        waiting = asyncio.ensure_future(asyncio.to_thread(api.wait, handle.ref))
        timed_out = False
        try:
            outcome = await asyncio.wait_for(asyncio.shield(waiting), timeout + TIMEOUT_GRACE)
        except TimeoutError:
            timed_out = True
            await asyncio.to_thread(self._kill, handle.ref)
            outcome = await waiting
        state = (await asyncio.to_thread(api.inspect_container, handle.ref))["State"]
        exit_code = int(outcome.get("StatusCode", state.get("ExitCode", 1)))
        if state.get("OOMKilled"):
            return RunResult(exit_code=exit_code, status="oom", oom_killed=True)
        if timed_out or exit_code == EXIT_TIMEOUT:
            return RunResult(exit_code=EXIT_TIMEOUT, status="timeout", timed_out=True)
        if handle.ref in self._stopped:
            return RunResult(exit_code=exit_code, status="killed")
        return RunResult(exit_code=exit_code, status=status_for(exit_code))

    def _kill(self, ref: str) -> None:
        from action_llama.engine_api import EngineAPIError

        with contextlib.suppress(EngineAPIError):  # already gone
            self.api.kill(ref)

    async def stop(self, handle: RunHandle, grace: float = 10) -> None:
        from action_llama.engine_api import EngineAPIError

        self._stopped.add(handle.ref)
        # Gone or not running is fine (EngineAPIError); a lost engine is not.
        with engine_errors(f"stopping run {handle.run_id}"), contextlib.suppress(EngineAPIError):
            await asyncio.to_thread(self.api.stop, handle.ref, int(grace))

    async def adopt(self, run_id: str) -> RunHandle | None:
        """The container of run `run_id` (found by its `al.run` label), running or exited.

        One created but never started (its process was killed between the two calls) is
        removed, and None returned: it never ran, and waiting on it would say it exited 0."""
        with engine_errors("listing runs"):
            found = await asyncio.to_thread(
                self.api.containers, {"label": [f"{LABEL_RUN}={run_id}"]}
            )
        if found and found[0].get("State") == "created":
            await self.remove(self._handle(found[0]))
            return None
        return self._handle(found[0]) if found else None

    async def list_runs(self, project: Path | None = None) -> list[RunHandle]:
        of_project = [f"{LABEL_PROJECT}={project}"] if project else []
        return await self._containers([LABEL_RUN, *of_project])

    async def _containers(self, labels: list[str]) -> list[RunHandle]:
        with engine_errors("listing runs"):
            found = await asyncio.to_thread(self.api.containers, {"label": labels})
        return [self._handle(c) for c in found]

    def _handle(self, container: dict[str, Any]) -> RunHandle:
        labels = container["Labels"]
        return RunHandle(
            run_id=labels[LABEL_RUN],
            agent=labels.get(LABEL_AGENT, ""),
            runtime=self.name,
            ref=container["Id"],
            name=(container.get("Names") or ["/"])[0].lstrip("/"),
            project=labels.get(LABEL_PROJECT, ""),
        )

    async def remove(self, handle: RunHandle) -> None:
        from action_llama.engine_api import EngineAPIError

        self._stopped.discard(handle.ref)
        with engine_errors(f"removing run {handle.run_id}"), contextlib.suppress(EngineAPIError):
            await asyncio.to_thread(self.api.remove_container, handle.ref, True)
        # Only once its container is gone: the address must not serve another run before.
        await asyncio.to_thread(release_network, handle.project, handle.run_id)

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _container_config(spec: RunSpec, workspace: Workspace, network: NetworkPlan) -> dict[str, Any]:
    """The engine's `ContainerCreate` body for a run: read-only root, no capabilities, no new
    privileges, sized tmpfs, the engine's limits, an init, uid 1000."""
    limits = spec.limits
    owner = f"uid={CONTAINER_UID},gid={CONTAINER_UID}"
    host_config: dict[str, Any] = {
        "ReadonlyRootfs": True,
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges:true"],
        "PidsLimit": limits.pids,
        "Memory": limits.memory_bytes,
        # Same as the memory limit: no swap, so an over-limit run is OOM-killed, not slowed.
        "MemorySwap": limits.memory_bytes,
        "NanoCpus": int(limits.cpus * 1e9),
        "Tmpfs": {
            "/tmp": f"rw,exec,nosuid,nodev,size={limits.tmp_bytes},{owner},mode=1777",
            "/home/node": f"rw,nosuid,nodev,size={limits.home_bytes},{owner},mode=0755",
        },
        "Mounts": [
            _mount("/app/static", str(spec.static_dir), "bind", read_only=True),
            _mount("/credentials", str(spec.credentials_dir), "bind", read_only=True),
            _mount("/workspace", workspace.volume, "volume"),
        ],
        "Init": True,
        "ExtraHosts": [f"{host}:{address}" for host, address in network.extra_hosts.items()],
        "NetworkMode": network.network_mode or "default",
    }
    if network.dns:
        host_config["Dns"] = list(network.dns)
    env = {**spec.env, **network.env, "AL_RUN_ID": spec.run_id, "AL_AGENT": spec.agent}
    if not workspace.capped:
        env["AL_WORKSPACE_UNCAPPED"] = "1"
    return {
        "Image": spec.image,
        "User": f"{CONTAINER_UID}:{CONTAINER_UID}",
        "WorkingDir": "/tmp",
        "Env": [f"{key}={value}" for key, value in env.items()],
        "Labels": {
            **spec.labels,
            LABEL_RUN: spec.run_id,
            LABEL_AGENT: spec.agent,
            LABEL_PROJECT: str(spec.project),
        },
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": host_config,
    }


def _mount(target: str, source: str, kind: str, *, read_only: bool = False) -> dict[str, Any]:
    return {"Target": target, "Source": source, "Type": kind, "ReadOnly": read_only}
