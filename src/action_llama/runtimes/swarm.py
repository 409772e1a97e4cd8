"""Runs as Docker Swarm services on a cluster, with the hardening of container runs.

`al` runs on a manager. Each run is a service of one never-restarted task (see
`swarm_spec` for why not a `replicated-job`), from the chain's images pushed to the
cluster's registry by content (`swarm_images`), with its credentials as per-run Swarm
secrets and its agent files as per-run Swarm configs, all removed with the run. Its output
streams through the manager (`swarm_logs`); its exit code is its task's.

/workspace: an agent's workspace is kept on the node `al` runs on, the same capped ext4
volume container runs get, and its runs are pinned to that node (`workspace = "pinned"`,
the default); with `workspace = "per-run"` each run gets a fresh 2 GB tmpfs instead and may
be placed on any node its constraints allow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from action_llama.config._base import changed
from action_llama.errors import ActionLlamaError, RunError, RuntimeUnavailable, docker_not_running
from action_llama.runtimes import swarm_spec
from action_llama.runtimes.base import (
    EXIT_KILLED,
    EXIT_TIMEOUT,
    RunHandle,
    RunIdentity,
    RunResult,
    RunSpec,
    status_for,
)
from action_llama.runtimes.swarm_spec import LABEL_AGENT, LABEL_PROJECT, LABEL_RUN

if TYPE_CHECKING:
    import docker

    from action_llama.doctor.result import Check
    from action_llama.project import Agent, Project

#: Extra seconds past the timeout before the host stops a run (the entry's timer goes first).
TIMEOUT_GRACE = 3
#: Seconds between looks at a task's state.
POLL_SECONDS = 0.25
#: A task no node can take for this long (constraints, a drained node) fails the run.
UNPLACEABLE_SECONDS = 10
#: Task states after which a task never runs again.
ENDED = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}
NOT_A_MANAGER_HINT = (
    "Run al on a manager of the swarm, or make this engine one: "
    "docker swarm init --advertise-addr <this host's address>"
)


@contextlib.contextmanager
def swarm_errors(what: str) -> Iterator[None]:
    """Translate what the engine raises while doing `what` ("waiting for run x"): a service
    that is gone or a refusal becomes RunError, "not a manager" says so, and a lost
    connection is "Docker is not running"."""
    from docker.errors import APIError, DockerException, NotFound
    from requests import RequestException

    from action_llama.engine_api import EngineAPIError, EngineNotFound

    try:
        yield
    except (NotFound, EngineNotFound) as exc:
        raise RunError(f"The swarm no longer has it while {what}: {exc.explanation}") from exc
    except (APIError, EngineAPIError) as exc:
        raise _not_a_manager(exc) or RunError(
            f"The swarm refused {what}: {exc.explanation or exc}"
        ) from exc
    except (DockerException, RequestException) as exc:
        raise docker_not_running(f"({str(exc).splitlines()[0][:200]})") from exc


def _not_a_manager(exc: BaseException | None) -> RuntimeUnavailable | None:
    text = str(getattr(exc, "explanation", None) or exc or "")
    if "not a swarm manager" in text or "not part of a swarm" in text:
        return RuntimeUnavailable(
            "This Docker engine is not a manager of a swarm: swarm agents need one.",
            hint=NOT_A_MANAGER_HINT,
        )
    return None


class SwarmRuntime:
    """The `swarm` runtime: one Swarm service per run, on the cluster this engine manages."""

    name = "swarm"
    needs_image: ClassVar[bool] = True
    #: Its runs happen on other nodes, where this host's egress proxy is out of reach.
    brokers: ClassVar[bool] = False

    def __init__(self, client: docker.DockerClient | None = None):
        self._client = client
        self._node: dict[str, Any] | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            from action_llama.engine import connect

            self._client = connect()
        return self._client

    @property
    def _api(self) -> Any:
        return swarm_spec.swarm_api(self.client)

    # -- what callers ask about the agents it runs ------------------------------------------

    def identity(self, agent: Agent) -> RunIdentity:
        # `al` itself reads the staged files to make them secrets and configs; in the task
        # they belong to uid 1000, as in container runs.
        return RunIdentity(uid=os.geteuid(), gid=os.getegid())

    def publish(self, project: Project, images: Mapping[str, str]) -> dict[str, str]:
        from action_llama.runtimes.swarm_images import publish

        registry = project.config.swarm.registry
        if registry is None:
            raise RuntimeUnavailable(
                "Swarm agents need a registry every node can pull from; config.toml names none.",
                hint='Add to config.toml:\n[swarm]\nregistry = "registry.internal:5000"',
            )
        return publish(self.client, registry, images)

    def gateway_url(self, project: Project, port: int) -> str:
        if project.config.swarm.advertise:
            return project.config.swarm.advertise
        address = self.manager_address()
        if address is None or address.startswith("127."):
            # A one-node swarm advertised on loopback: its tasks are on this host's bridge.
            return f"http://{swarm_spec.CONTAINER_HOST}:{port}"
        return f"http://{address}:{port}"

    def describe(self, agent: Agent) -> str:
        runtime = agent.config.runtime
        where = ", ".join(runtime.constraints) if runtime.constraints else "any node"
        if runtime.workspace == "pinned":
            where = "this node (its /workspace is kept here)"
        return f"swarm service on {where}"

    def warnings(self, project: Project, agent: Agent) -> list[str]:
        set_here = changed(agent.config.runtime)
        ignored = [k for k in ("run_as", "groups") if k in set_here]
        if not ignored:
            return []
        keys = " and ".join(f"[runtime] {k}" for k in ignored)
        return [f"{keys} of agent {agent.name} do not apply: its runs are uid 1000 in a task."]

    def checks(self, project: Project, agents: Sequence[Agent], *, fix: bool) -> list[Check]:
        from action_llama.runtimes.swarm_checks import network_checks, swarm_checks

        return network_checks(agents) + swarm_checks(self, project, agents)

    async def prepare(self, project: Project, agents: Sequence[Agent]) -> None:
        return None  # services are made per run; the registry already has what was published

    # -- the node `al` runs on -------------------------------------------------------------

    def node(self) -> dict[str, Any]:
        """The `Swarm` part of this engine's `docker info` (asked once)."""
        if self._node is None:
            with swarm_errors("asking the engine about its swarm"):
                self._node = dict(self.client.info().get("Swarm") or {})
        return self._node

    def manager_address(self) -> str | None:
        """The address this manager is advertised at, or None when it is not a manager."""
        with contextlib.suppress(RuntimeUnavailable):
            node = self.node()
            if node.get("ControlAvailable"):
                return str(node.get("NodeAddr") or "") or None
        return None

    # -- runs ------------------------------------------------------------------------------

    async def start(self, spec: RunSpec) -> RunHandle:
        if not spec.image:
            raise RunError(f"No image to run for agent {spec.agent}.")
        if spec.network is not None and spec.network.mode != "open":
            from action_llama.runtimes.swarm_checks import unenforced_policy

            detail, fix = unenforced_policy(spec.agent, spec.network.mode, spec.network.file)
            raise RunError(detail, hint=fix)
        creating = asyncio.ensure_future(asyncio.to_thread(self._create, spec))
        try:
            return await asyncio.shield(creating)
        except asyncio.CancelledError:
            # Stopped while the service was being made: do not leave it running.
            with contextlib.suppress(Exception):
                await self.remove(await creating)
            raise

    def _create(self, spec: RunSpec) -> RunHandle:
        with swarm_errors(f"starting run {spec.run_id}"):
            if not self.node().get("ControlAvailable"):
                raise RuntimeUnavailable(
                    "This Docker engine is not a manager of a swarm: swarm agents need one.",
                    hint=NOT_A_MANAGER_HINT,
                )
            swarm_spec.sweep_orphans(self.client, spec.project)
            objects = swarm_spec.RunObjects(self.client, spec)
            try:
                placement, uncapped = self._placement(spec)
                objects.create()
                env = {**spec.env, "AL_RUN_ID": spec.run_id, "AL_AGENT": spec.agent}
                if uncapped:
                    env["AL_WORKSPACE_UNCAPPED"] = "1"
                body = swarm_spec.service_spec(spec, objects, placement, env)
                created = self._create_service(spec, body)
            except BaseException:
                swarm_spec.remove_objects(self.client, spec.run_id)
                raise
        return RunHandle(
            run_id=spec.run_id,
            agent=spec.agent,
            runtime=self.name,
            ref=created,
            name=body["Name"],
            project=str(spec.project),
        )

    def _create_service(self, spec: RunSpec, body: dict[str, Any]) -> str:
        from docker.errors import APIError

        try:
            return str(
                self._api.create_service(
                    body["TaskTemplate"],
                    name=body["Name"],
                    labels=body["Labels"],
                    mode=body["Mode"],
                )["ID"]
            )
        except APIError as exc:
            raise _not_a_manager(exc) or RunError(
                f"Could not create the swarm service for agent {spec.agent}: "
                f"{exc.explanation or exc}",
                hint="Check the swarm with: al doctor",
            ) from None

    def _placement(self, spec: RunSpec) -> tuple[swarm_spec.Placement, bool]:
        """(where the run goes and its /workspace volume, whether that volume is uncapped)."""
        config = spec.runtime_config
        constraints = tuple(config.constraints)
        if config.workspace == "per-run":
            return swarm_spec.Placement(constraints, None), False
        from action_llama.engine import api
        from action_llama.runtimes.docker_workspace import ensure_workspace

        workspace = ensure_workspace(api(), spec.project, spec.agent, Path(spec.workspace))
        here = f"node.id == {self.node().get('NodeID')}"
        return swarm_spec.Placement((*constraints, here), workspace.volume), not workspace.capped

    async def logs(self, handle: RunHandle) -> AsyncIterator[str]:
        from docker.errors import DockerException
        from requests import RequestException

        from action_llama.runtimes.swarm_logs import follow

        async def ended() -> bool:
            try:
                task = await asyncio.to_thread(self._task, handle)
            except ActionLlamaError:
                return True  # the service is gone, or the engine: no more output either way
            return task is not None and _state(task) in ENDED

        try:
            async for line in follow(self.client, handle.ref, ended):
                yield line
        except (DockerException, RequestException):
            return  # as for container runs: output ends with the engine's answers

    def _task(self, handle: RunHandle) -> dict[str, Any] | None:
        """The run's task (the first of its service), None before Swarm has made it;
        RunError when the service is gone."""
        with swarm_errors(f"watching run {handle.run_id}"):
            tasks = self._api.tasks(filters={"service": handle.ref})
            tasks = [t for t in tasks if t.get("ServiceID") == handle.ref]
            if not tasks:
                self._api.inspect_service(handle.ref)  # NotFound when it is gone
                return None
        first: dict[str, Any] = min(tasks, key=lambda t: t.get("CreatedAt", ""))
        return first

    async def wait(self, handle: RunHandle, timeout: float) -> RunResult:
        deadline = time.monotonic() + timeout + TIMEOUT_GRACE
        timed_out = False
        unplaceable_since: float | None = None
        while True:
            task = await asyncio.to_thread(self._task, handle)
            if task is not None and _state(task) in ENDED:
                break
            now = time.monotonic()
            unplaceable_since = _unplaceable(task or {}, unplaceable_since, now)
            if unplaceable_since is not None and now - unplaceable_since > UNPLACEABLE_SECONDS:
                await self.stop(handle)
                raise RunError(
                    f"No node of the swarm can take run {handle.run_id} of agent "
                    f"{handle.agent}: {(task or {})['Status'].get('Err')}.",
                    hint=f"Check [runtime] constraints in agents/{handle.agent}/config.toml "
                    "against docker node ls; an agent whose /workspace is pinned runs only on "
                    'the node al runs on (or set workspace = "per-run").',
                )
            if not timed_out and now > deadline:
                timed_out = True
                await self.stop(handle)
            await asyncio.sleep(POLL_SECONDS)
        return await asyncio.to_thread(self._result, handle, task, timed_out)

    def _result(self, handle: RunHandle, task: dict[str, Any], timed_out: bool) -> RunResult:
        status = task.get("Status") or {}
        state = _state(task)
        if state == "rejected":
            raise RunError(
                f"The swarm could not start run {handle.run_id} of agent {handle.agent}: "
                f"{status.get('Err') or status.get('Message')}.",
                hint="Check the registry and the nodes with: al doctor",
            )
        if state == "orphaned":
            raise RunError(
                f"The node of run {handle.run_id} left the swarm while it ran; its end is unknown."
            )
        exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
        stopped = self._was_halted(handle)
        if exit_code is None:  # shut down before a container existed
            exit_code = 128 + 15 if stopped or timed_out else 1
        exit_code = int(exit_code)
        if exit_code == EXIT_KILLED and not stopped and self._oom_killed(task):
            return RunResult(exit_code=exit_code, status="oom", oom_killed=True)
        if timed_out or exit_code == EXIT_TIMEOUT:
            return RunResult(exit_code=EXIT_TIMEOUT, status="timeout", timed_out=True)
        if stopped:
            return RunResult(exit_code=exit_code, status="killed")
        return RunResult(exit_code=exit_code, status=status_for(exit_code))

    def _was_halted(self, handle: RunHandle) -> bool:
        from docker.errors import NotFound

        with swarm_errors(f"inspecting run {handle.run_id}"):
            try:
                spec = self._api.inspect_service(handle.ref)["Spec"]
            except NotFound:
                return False
        return swarm_spec.was_halted(spec)

    def _oom_killed(self, task: dict[str, Any]) -> bool:
        """Whether the kernel killed the run for memory. Only the node that ran it knows:
        asked when that is this one; elsewhere a SIGKILL that `al` did not send (no stop,
        no timeout) can only have come from the OOM killer inside the memory limit."""
        from docker.errors import APIError

        container = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        if task.get("NodeID") != self.node().get("NodeID") or not container:
            return True
        try:
            state = self._api.inspect_container(container)["State"]
        except APIError:
            return True
        return bool(state.get("OOMKilled"))

    async def stop(self, handle: RunHandle, grace: float = 10) -> None:
        # The task's own stop grace period (STOP_GRACE) applies: Swarm fixes it per task.
        await asyncio.to_thread(self._halt, handle)

    def _halt(self, handle: RunHandle) -> None:
        from docker.errors import APIError, NotFound

        api = self._api
        with swarm_errors(f"stopping run {handle.run_id}"):
            for _ in range(5):  # another update may have raced ours: take its version
                try:
                    service = api.inspect_service(handle.ref)
                except NotFound:
                    return
                if swarm_spec.was_halted(service["Spec"]):
                    return
                try:
                    api.update_service(
                        handle.ref,
                        service["Version"]["Index"],
                        task_template=swarm_spec.halted(service["Spec"], handle.run_id),
                        fetch_current_spec=True,
                    )
                    return
                except NotFound:
                    return
                except APIError as exc:
                    if "out of sequence" not in str(exc.explanation or exc):
                        raise

    async def adopt(self, run_id: str) -> RunHandle | None:
        """The service of run `run_id` (found by its `al.run` label), running or ended."""
        found = await self._services([f"{LABEL_RUN}={run_id}"])
        return found[0] if found else None

    async def list_runs(self, project: Path | None = None) -> list[RunHandle]:
        if not (await asyncio.to_thread(self.node)).get("ControlAvailable"):
            return []  # no swarm here: no swarm runs
        of_project = [f"{LABEL_PROJECT}={project}"] if project else []
        return await self._services([LABEL_RUN, *of_project])

    async def _services(self, labels: list[str]) -> list[RunHandle]:
        with swarm_errors("listing runs"):
            found = await asyncio.to_thread(self._api.services, filters={"label": labels})
        return [
            RunHandle(
                run_id=s["Spec"]["Labels"][LABEL_RUN],
                agent=s["Spec"]["Labels"].get(LABEL_AGENT, ""),
                runtime=self.name,
                ref=s["ID"],
                name=s["Spec"].get("Name", ""),
                project=s["Spec"]["Labels"].get(LABEL_PROJECT, ""),
            )
            for s in found
        ]

    async def remove(self, handle: RunHandle) -> None:
        await asyncio.to_thread(self._remove, handle)

    def _remove(self, handle: RunHandle) -> None:
        from docker.errors import NotFound

        with swarm_errors(f"removing run {handle.run_id}"):
            elsewhere = self._ran_elsewhere(handle)
            with contextlib.suppress(NotFound):
                self._api.remove_service(handle.ref)
            swarm_spec.remove_objects(self.client, handle.run_id)
            if elsewhere is not None:
                from action_llama.runtimes.swarm_janitor import sweep_node

                sweep_node(self.client, *elsewhere, handle.run_id, handle.project)

    def _ran_elsewhere(self, handle: RunHandle) -> tuple[str, str] | None:
        """(node, image) of the run when its task ran on a node other than this one."""
        from docker.errors import NotFound

        try:
            task = self._task(handle)
            image = self._api.inspect_service(handle.ref)["Spec"]["TaskTemplate"]
        except (RunError, NotFound):
            return None
        node = (task or {}).get("NodeID")
        if not node or node == self.node().get("NodeID"):
            return None
        return str(node), str(image["ContainerSpec"]["Image"])

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _state(task: dict[str, Any]) -> str:
    return str((task.get("Status") or {}).get("State", ""))


def _unplaceable(task: dict[str, Any], since: float | None, now: float) -> float | None:
    """Since when the task has been pending because no node may take it (not because the
    nodes are busy: that passes), or None."""
    error = str((task.get("Status") or {}).get("Err") or "")
    if _state(task) != "pending" or "no suitable node" not in error:
        return None
    if "insufficient resources" in error:
        return None
    return since if since is not None else now
