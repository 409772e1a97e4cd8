"""The runtime seam: one small async protocol every way of running an agent implements.

A runtime starts one run from a `RunSpec`, streams its output lines, waits for it with a
timeout, stops it, lists the runs it has, and cleans up. It can also find a run again by id
(`adopt`) after the process that started it died, so a restarted scheduler follows it to its
end. Engine types and errors never cross this seam.

It also answers what the rest of `al` needs to know about the agents it runs, so nothing
outside `runtimes/` asks which kind of runtime an agent has: whether runs need an image of
the chain (`needs_image`) and how the chain's images reach where runs start (`publish`: as
they are on this engine, or pushed to a cluster's registry), who a run is (`identity`: the
owner of its staged files), how a run reaches the gateway (`gateway_url`), what of the
project does not apply to it (`warnings`), how to name where it runs (`describe`) and what
`al doctor` checks for it (`checks`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from action_llama.config import RuntimeConfig
from action_llama.config._base import changed
from action_llama.egress.brokering import BrokerPlan
from action_llama.egress.policy import AgentPolicy

if TYPE_CHECKING:
    from action_llama.doctor.result import Check
    from action_llama.project import Agent, Project

#: Exit code reported for a run stopped at its timeout (as GNU timeout does).
EXIT_TIMEOUT = 124
#: Exit code of a process killed by SIGKILL (what the kernel's OOM killer sends).
EXIT_KILLED = 137
#: The uid (and gid) of runs in containers: the base image's user `node`.
CONTAINER_UID = 1000

#: `token_limit`: stopped when the model broker counted `[limits] tokens_per_run` (exit 14).
RunStatus = Literal["completed", "failed", "timeout", "oom", "killed", "rerun", "token_limit"]


@dataclass(frozen=True)
class RunIdentity:
    """Who a run is: the uid and gid that must be able to read what is staged for it, and
    (for runtimes that switch users on this host) the OS user and groups it runs as."""

    uid: int
    gid: int
    user: str | None = None
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Resources one run may use."""

    memory_bytes: int
    cpus: float
    pids: int = 512
    tmp_bytes: int = 2 * 1024**3
    home_bytes: int = 64 * 1024**2


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """Everything a runtime needs to start one run; built by the run service."""

    run_id: str
    agent: str
    project: Path
    #: Image id or tag (container runtimes only).
    image: str | None = None
    #: Read-only agent files: SKILL.md, agent-config.json, test-script.sh.
    static_dir: Path
    #: Read-only credentials, laid out as <type>/<instance>/<field>.
    credentials_dir: Path
    #: Where the agent's persistent workspace lives (each runtime decides how to provide it).
    workspace: str
    #: OS user and groups the run runs as, when its runtime switches users on this host
    #: (`RunIdentity.user`; None for container runtimes).
    user: str | None = None
    groups: tuple[str, ...] = ()
    limits: Limits
    #: The agent's `[runtime]` table: what a runtime reads of it at start (a cluster's
    #: placement constraints, how /workspace lives); each ignores what does not apply to it.
    runtime_config: RuntimeConfig = field(default_factory=RuntimeConfig)
    #: Seconds the run may take (> 0).
    timeout: int
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    #: Where the run may connect to (`[network]`); None: nowhere is checked (as `open`).
    network: AgentPolicy | None = None
    #: The models the egress proxy's broker forwards for the run, with their keys, which are
    #: then not in `credentials_dir` (`egress.brokering`); None: keys are staged as files.
    broker: BrokerPlan | None = None

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"RunSpec.timeout must be greater than 0, not {self.timeout}")


@dataclass(frozen=True, kw_only=True)
class RunHandle:
    """A started run, as the runtime knows it."""

    run_id: str
    agent: str
    runtime: str
    #: Container id, pid, ... whatever the runtime uses to find the run again.
    ref: str
    name: str = ""
    project: str = ""
    #: What the runtime has to say about how it started the run (a warning each), for its log.
    notes: tuple[str, ...] = ()


#: The exit code a run that failed in this way reports when its own process exited 0 (its
#: script went on after the OOM killer took a child, say): a failed run never exits 0.
FAILURE_EXIT: dict[str, int] = {
    "oom": EXIT_KILLED,
    "timeout": EXIT_TIMEOUT,
    "killed": EXIT_KILLED,
    "failed": 1,
}


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """How a run ended. `exit_code` is 0 only for a completed run."""

    exit_code: int
    status: RunStatus
    timed_out: bool = False
    oom_killed: bool = False

    def __post_init__(self) -> None:
        # A failed run whose own process exited 0 reports its failure's code (FAILURE_EXIT).
        if self.exit_code == 0 and self.status in FAILURE_EXIT:
            object.__setattr__(self, "exit_code", FAILURE_EXIT[self.status])


def cluster_keys_ignored(agent: Agent, why: str) -> list[str]:
    """A warning when the agent's `[runtime]` sets cluster-only keys its runtime ignores."""
    set_here = changed(agent.config.runtime)
    keys = [k for k in ("constraints", "workspace") if k in set_here]
    if not keys:
        return []
    listed = " and ".join(f"[runtime] {k}" for k in keys)
    return [f'{listed} of agent {agent.name} only apply to type = "swarm": {why}.']


def status_for(exit_code: int) -> RunStatus:
    """The status of a run that ended by itself with `exit_code`."""
    if exit_code == 0:
        return "completed"
    if exit_code == 42:
        return "rerun"
    if exit_code == EXIT_TIMEOUT:
        return "timeout"
    return "failed"


class Runtime(Protocol):
    """Starts and supervises runs. Implementations: `docker`, `host-user`, and
    `action_llama.testing.FakeRuntime` for tests."""

    name: str
    #: Whether runs need an image of the project's chain (`RunSpec.image`).
    needs_image: ClassVar[bool]
    #: Whether runs reach this host's egress proxy, which then holds their brokered secrets
    #: (`runs.brokered`); when not, they get their credentials as files.
    brokers: ClassVar[bool]

    # -- what callers ask about the agents it runs ------------------------------------------

    def identity(self, agent: Agent) -> RunIdentity:
        """Who runs of `agent` are; AgentNotRunnable when that cannot be on this machine."""
        ...

    def publish(self, project: Project, images: Mapping[str, str]) -> dict[str, str]:
        """What runs of these agents start from (`RunSpec.image`), given the chain's image
        ids on this engine by agent: the same ids when runs start here, else references
        where the runs' nodes pull them (pushing only what the registry lacks)."""
        ...

    def gateway_url(self, project: Project, port: int) -> str:
        """The gateway's URL as runs of `project` reach it, the gateway listening on `port`."""
        ...

    def describe(self, agent: Agent) -> str:
        """Where runs of `agent` happen, in a few words ("container", "host user x")."""
        ...

    def warnings(self, project: Project, agent: Agent) -> list[str]:
        """Settings of the project or agent that do not apply to runs on this runtime."""
        ...

    def checks(self, project: Project, agents: Sequence[Agent], *, fix: bool) -> list[Check]:
        """What `al doctor` checks for `agents` (those of the project on this runtime; maybe
        none); with `fix`, repair what can be."""
        ...

    async def prepare(self, project: Project, agents: Sequence[Agent]) -> None:
        """Make ready what runs of `agents` need before the first one starts, so that it does
        not pay for it (the scheduler asks at start). Failures are left for the runs to meet."""
        ...

    # -- runs ------------------------------------------------------------------------------

    async def start(self, spec: RunSpec) -> RunHandle:
        """Create and start the run; raise RunError when it cannot start."""
        ...

    def logs(self, handle: RunHandle) -> AsyncIterator[str]:
        """Every output line of the run from its start, until it exits."""
        ...

    async def wait(self, handle: RunHandle, timeout: float) -> RunResult:
        """Wait for the run to end; stop it at `timeout` seconds and report exit 124."""
        ...

    async def stop(self, handle: RunHandle, grace: float = 10) -> None:
        """Ask the run to stop, kill it after `grace` seconds."""
        ...

    async def adopt(self, run_id: str) -> RunHandle | None:
        """The run `run_id` another process started (running, or ended and not yet removed),
        or None when it is gone. `logs`, `wait`, `stop` and `remove` work on the handle as on
        one from `start`; `logs` again yields every line from the run's start."""
        ...

    async def list_runs(self, project: Path | None = None) -> list[RunHandle]:
        """Runs this runtime still has (running or not yet removed), optionally of one project."""
        ...

    async def remove(self, handle: RunHandle) -> None:
        """Forget the run and free what it held (the container, its pid file...)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
