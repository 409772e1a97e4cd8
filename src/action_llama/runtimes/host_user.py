"""Runs as processes of a separate OS user on this host: no container, no Docker.

Layout under the runs root (`/tmp/al-runs`, or `$AL_RUNS_DIR`; ours, mode 0711: others may
pass through it to what they are given, but not list it):

    <run id>/          the run's HOME and working directory, owned by the run's user, 0700
    <run id>.log       its stdout and stderr, ours, 0600 (the child inherits the open file)
    <run id>.pid       JSON record for reattaching: pid, process group, agent, project...
    <run id>.static/   a copy of the agent's files, when the run's user cannot reach the
                       originals (made only then)
    lib/<digest>/      the package, readable by every user (see host_launch)

Each run is its own session and process group, and the entry keeps its children in that
group (AL_SHARED_PGROUP=1), so stopping a run signals the group. The entry writes its exit
status to `<run id>/.al-exit`: a runtime that reattached to a run (and so cannot wait for
it) reads the status there. A run killed before it could write one (SIGKILL, the OOM
killer) is reported as failed with exit code 1: the real code is unknowable then.

Resource limits ([local].memory, cpus) do not apply: there is no container to hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from action_llama import procs
from action_llama.config._base import changed
from action_llama.errors import AgentNotRunnable, RunError
from action_llama.runtimes import host_launch as launch
from action_llama.runtimes.base import (
    EXIT_KILLED,
    EXIT_TIMEOUT,
    RunHandle,
    RunIdentity,
    RunResult,
    RunSpec,
    cluster_keys_ignored,
    status_for,
)
from action_llama.runtimes.host_user_network import (
    HostNetworkPlan,
    plan_host_network,
    release_host_network,
)

if TYPE_CHECKING:
    from action_llama.doctor.result import Check
    from action_llama.project import Agent, Project

DEFAULT_USER = "al-agent"
#: Extra seconds the host waits past the timeout, so the entry's own timer ends the run first
#: and says so in the log.
TIMEOUT_GRACE = 3
#: After SIGTERM at a timeout, how long before SIGKILL.
KILL_GRACE = 5
POLL = 0.1
#: Reported for a run that ended without leaving its exit status (see the module docstring).
EXIT_UNKNOWN = 1
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def default_runs_dir() -> Path:
    explicit = os.environ.get("AL_RUNS_DIR")
    if explicit:
        return Path(explicit)
    return Path("/tmp/al-runs" if os.geteuid() == 0 else f"/tmp/al-runs-{os.geteuid()}")


class PidFile(BaseModel):
    """The pid file: what a later process needs to find, watch and clean up a run."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    pid: int
    pgid: int
    #: Start time of the process in clock ticks since boot, so a reused pid is not mistaken.
    start_ticks: int | None
    agent: str
    project: str
    user: str
    uid: int
    gid: int
    groups: tuple[str, ...] = ()
    mode: launch.Mode
    started_at: str
    timeout: int
    log: str
    work_dir: str
    exit_file: str
    static_copy: str | None = None


#: Every run process this interpreter started, until it is seen to end: runs outlive the
#: runtime object that started them, and an unreaped child would stay a zombie.
_children: list[subprocess.Popen[bytes]] = []


def _reap() -> None:
    _children[:] = [proc for proc in _children if proc.poll() is None]


@dataclass
class _Run:
    record: PidFile
    #: The process, when we started it ourselves.
    proc: subprocess.Popen[bytes] | None = None
    #: What starting it had to say (egress), for the run's log.
    notes: tuple[str, ...] = ()


def _read_exit(path: Path) -> int | None:
    """The exit status the entry left (the file is the run user's: no links, no FIFOs)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.read(fd, 16).decode("ascii", errors="replace").strip()
    finally:
        os.close(fd)
    return int(text) if text.isdigit() and int(text) < 256 else None


def _open_log(path: Path) -> IO[bytes] | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


class HostUserRuntime:
    """The `host-user` runtime: one process group per run, as the agent's OS user."""

    name = "host-user"
    needs_image: ClassVar[bool] = False
    brokers: ClassVar[bool] = True

    def identity(self, agent: Agent) -> RunIdentity:
        import pwd

        runtime = agent.config.runtime
        try:
            user = pwd.getpwnam(runtime.run_as)
        except KeyError as exc:
            raise AgentNotRunnable(
                f'Agent "{agent.name}" runs as user "{runtime.run_as}", which does not exist '
                "on this machine.",
                hint="Create it with: al doctor --fix",
            ) from exc
        return RunIdentity(user.pw_uid, user.pw_gid, runtime.run_as, tuple(runtime.groups))

    def publish(self, project: Project, images: Mapping[str, str]) -> dict[str, str]:
        return {}  # no image: runs start the installed package as a host user

    def gateway_url(self, project: Project, port: int) -> str:
        return f"http://{launch.LOOPBACK}:{port}"

    def describe(self, agent: Agent) -> str:
        return f"host user {agent.config.runtime.run_as}"

    def warnings(self, project: Project, agent: Agent) -> list[str]:
        """Container settings, said once: they do not apply to a run without a container."""
        ignored = []
        if agent.dockerfile is not None:
            ignored.append(f"agents/{agent.name}/Dockerfile")
        if changed(project.config.local):
            ignored.append("[local] in config.toml")
        said = cluster_keys_ignored(agent, "it runs as a host user on this machine")
        if not ignored:
            return said
        return [
            f"{' and '.join(ignored)} do{'es' if len(ignored) == 1 else ''} not apply to agent "
            f"{agent.name}: it runs as a host user, not in a container.",
            *said,
        ]

    def checks(self, project: Project, agents: Sequence[Agent], *, fix: bool) -> list[Check]:
        from action_llama.runtimes.egress_checks import host_user_egress_checks
        from action_llama.runtimes.host_user_checks import host_user_checks

        return [*host_user_checks(agents, fix=fix), *host_user_egress_checks(agents)]

    async def prepare(self, project: Project, agents: Sequence[Agent]) -> None:
        return None  # the OS user's firewall rules are checked by each run anyway

    def __init__(self, runs_dir: Path | None = None, python: str | None = None):
        self.runs_dir = runs_dir or default_runs_dir()
        #: Interpreter for runs; by default the first of host_launch.PYTHON_CANDIDATES the
        #: run's user can use.
        self.python = python or os.environ.get("AL_HOST_PYTHON") or None
        self._runs: dict[str, _Run] = {}
        self._stopped: set[str] = set()

    # -- starting -------------------------------------------------------------------------

    async def start(self, spec: RunSpec) -> RunHandle:
        if not RUN_ID_RE.match(spec.run_id):
            raise RunError(f"Invalid run id {spec.run_id!r} for a host-user run.")
        _reap()
        run = await asyncio.to_thread(self._start, spec)
        self._runs[spec.run_id] = run
        if run.proc is not None:
            _children.append(run.proc)
        return replace(self._handle(run.record), notes=run.notes)

    def _start(self, spec: RunSpec) -> _Run:
        user = launch.resolve_user(spec.user or DEFAULT_USER, spec.groups)
        mode = launch.privilege_mode(user)
        root = launch.owned_dir(self.runs_dir, 0o1733 if mode == "sudo" else 0o711)
        if not launch.can_reach(root, user, launch.X):
            raise RunError(
                f"User {user.name} cannot reach the runs directory {root}: one of its parents "
                "is closed to other users.",
                hint="Point AL_RUNS_DIR at a directory below /tmp (the default is /tmp/al-runs).",
            )
        lib = launch.expose_package(root)
        python = launch.choose_python(user, mode, lib, self.python)
        if not launch.can_reach(spec.credentials_dir, user, launch.R | launch.X):
            raise RunError(
                f"The run's credentials ({spec.credentials_dir}) are not readable by user "
                f"{user.name}.",
                hint="Stage them for that user (the run service does so for host-user agents).",
            )
        network = plan_host_network(spec)
        work = root / spec.run_id
        try:
            self._make_work_dir(work, user, mode)
            try:
                run = self._spawn(spec, user, mode, lib, python, network)
            except BaseException:
                self._remove_paths(spec.run_id, mode, user, keep_files=True)
                raise
        except BaseException:
            release_host_network(str(spec.project), spec.run_id)
            raise
        run.notes = network.notes
        return run

    def _spawn(
        self,
        spec: RunSpec,
        user: launch.RunUser,
        mode: launch.Mode,
        lib: Path,
        python: str,
        network: HostNetworkPlan,
    ) -> _Run:
        root, work = self.runs_dir, self.runs_dir / spec.run_id
        static, static_copy = spec.static_dir, None
        if not launch.can_read_tree(spec.static_dir, user):
            static = static_copy = self._copy_static(spec, user)
        log_path = root / f"{spec.run_id}.log"
        exit_file = work / ".al-exit"
        env = {
            "PATH": launch.SANE_PATH,
            "HOME": str(work),
            "USER": user.name,
            "LOGNAME": user.name,
            "LANG": "C.UTF-8",
            "TMPDIR": str(work / "tmp"),
            "PYTHONPATH": str(lib),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            **spec.env,
            **network.env,
            "AL_STATIC_DIR": str(static),
            "AL_WORK_DIR": str(work),
            "AL_CREDENTIALS_PATH": str(spec.credentials_dir),
            "AL_BIN_DIR": str(lib / "action_llama" / "docker" / "bin"),
            "AL_RUN_ID": spec.run_id,
            "AL_AGENT": spec.agent,
            "AL_SHARED_PGROUP": "1",
            "AL_EXIT_FILE": str(exit_file),
        }
        argv = network.wrap(
            launch.as_user(user, mode, [python, "-s", "-m", "action_llama.agent"], list(env))
        )
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            log_fd = os.open(log_path, flags, 0o600)
        except OSError as exc:
            raise RunError(f"Cannot create the run's log {log_path}: {exc.strerror}") from exc
        try:
            # cwd: a directory the user can read and that holds nothing but the package, since
            # `python -m` puts the cwd first on sys.path.
            proc = subprocess.Popen(
                argv,
                cwd=lib,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,
            )
        except OSError as exc:
            log_path.unlink(missing_ok=True)
            raise RunError(f"Could not start agent {spec.agent}: {exc}") from exc
        finally:
            os.close(log_fd)
        record = PidFile(
            run_id=spec.run_id,
            pid=proc.pid,
            pgid=proc.pid,
            start_ticks=procs.start_ticks(proc.pid),
            agent=spec.agent,
            project=str(spec.project),
            user=user.name,
            uid=user.uid,
            gid=user.gid,
            groups=spec.groups,
            mode=mode,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            timeout=spec.timeout,
            log=str(log_path),
            work_dir=str(work),
            exit_file=str(exit_file),
            static_copy=str(static_copy) if static_copy else None,
        )
        try:
            self._write_record(root, record)
        except OSError:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log_path.unlink(missing_ok=True)
            raise
        return _Run(record, proc)

    def _copy_static(self, spec: RunSpec, user: launch.RunUser) -> Path:
        """The agent's files where `user` can read them: theirs alone when we are root."""
        target = self.runs_dir / f"{spec.run_id}.static"
        shutil.copytree(spec.static_dir, target)
        private = os.geteuid() == 0
        for path in [target, *target.iterdir()]:
            is_dir = path.is_dir()
            if private:
                os.chown(path, user.uid, user.gid)
                path.chmod(0o500 if is_dir else 0o400)
            else:
                path.chmod(0o711 if is_dir else 0o644)
        return target

    @staticmethod
    def _make_work_dir(work: Path, user: launch.RunUser, mode: launch.Mode) -> None:
        if mode == "sudo":
            launch.run_as(
                user, mode, ["mkdir", "-m", "0700", str(work), str(work / "tmp")], "make its home"
            )
            return
        try:
            work.mkdir(mode=0o700)
        except FileExistsError as exc:
            raise RunError(f"A run with id {work.name} already exists in {work.parent}.") from exc
        (work / "tmp").mkdir(mode=0o700)
        if mode != "self":
            for path in (work, work / "tmp"):
                os.chown(path, user.uid, user.gid)

    def _write_record(self, root: Path, record: PidFile) -> None:
        path = root / f"{record.run_id}.pid"
        partial = root / f".{record.run_id}.pid.partial"
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(record.model_dump_json(indent=2) + "\n")
        partial.replace(path)

    def _handle(self, record: PidFile) -> RunHandle:
        return RunHandle(
            run_id=record.run_id,
            agent=record.agent,
            runtime=self.name,
            ref=str(record.pid),
            name=f"al-{record.agent}-{record.run_id}",
            project=record.project,
        )

    # -- finding runs again -----------------------------------------------------------------

    def _read_record(self, run_id: str) -> PidFile | None:
        if not RUN_ID_RE.match(run_id):
            return None
        try:
            text = (self.runs_dir / f"{run_id}.pid").read_text(encoding="utf-8")
            return PidFile.model_validate_json(text)
        except (OSError, ValidationError):
            return None

    def _get(self, handle: RunHandle) -> _Run:
        run = self._runs.get(handle.run_id)
        if run is None:
            record = self._read_record(handle.run_id)
            if record is None:
                raise RunError(f"No host-user run {handle.run_id} in {self.runs_dir}.")
            run = self._runs[handle.run_id] = _Run(record)
        return run

    async def adopt(self, run_id: str) -> RunHandle | None:
        """The handle of a run another process started (running, or ended but not removed),
        found through its pid file; its exit code comes from the entry's exit-status file."""
        return await self.reattach(run_id)

    async def reattach(self, run_id: str) -> RunHandle | None:
        """The handle of a run another process started (running, or ended but not removed).

        `logs` and `wait` work on it; its exit code comes from the entry's exit-status file.
        """
        if run_id in self._runs:
            return self._handle(self._runs[run_id].record)
        record = self._read_record(run_id)
        if record is None:
            return None
        self._runs[run_id] = _Run(record)
        return self._handle(record)

    async def list_runs(self, project: Path | None = None) -> list[RunHandle]:
        if not self.runs_dir.is_dir():
            return []
        records = [self._read_record(p.stem) for p in self.runs_dir.glob("*.pid")]
        found = [r for r in records if r and (project is None or r.project == str(project))]
        return [self._handle(r) for r in sorted(found, key=lambda r: r.started_at)]

    # -- watching -------------------------------------------------------------------------

    @staticmethod
    def _exited(run: _Run) -> bool:
        if run.proc is not None:
            return run.proc.poll() is not None
        return not procs.alive(run.record.pid, run.record.start_ticks)

    async def _until_exit(self, run: _Run, seconds: float) -> bool:
        """Wait up to `seconds` for the run's main process to end; whether it did."""
        deadline = time.monotonic() + seconds
        while not self._exited(run):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL)
        return True

    async def logs(self, handle: RunHandle) -> AsyncIterator[str]:
        try:
            run = self._get(handle)
        except RunError:
            return
        fh = _open_log(Path(run.record.log))
        if fh is None:
            return
        with fh:
            pending = b""
            while True:
                # Decide before reading: everything written before the exit is then read.
                ended = self._exited(run)
                chunk = fh.read()
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", errors="replace")
                if ended:
                    break
                if not chunk:
                    await asyncio.sleep(POLL)
            if pending:
                yield pending.decode("utf-8", errors="replace")

    def _exit_code(self, run: _Run) -> int | None:
        recorded = _read_exit(Path(run.record.exit_file))
        if run.proc is None or run.proc.returncode is None or recorded == EXIT_TIMEOUT:
            return recorded
        code = run.proc.returncode
        return 128 - code if code < 0 else code

    async def wait(self, handle: RunHandle, timeout: float) -> RunResult:
        run = self._get(handle)
        if not await self._until_exit(run, timeout + TIMEOUT_GRACE):
            await self._terminate(run, KILL_GRACE)
            return RunResult(exit_code=EXIT_TIMEOUT, status="timeout", timed_out=True)
        self._signal(run, signal.SIGKILL)  # whatever the run left behind
        code = self._exit_code(run)
        if handle.run_id in self._stopped:
            return RunResult(exit_code=EXIT_KILLED if code is None else code, status="killed")
        if code is None:
            return RunResult(exit_code=EXIT_UNKNOWN, status="failed")
        if code == EXIT_TIMEOUT:
            return RunResult(exit_code=code, status="timeout", timed_out=True)
        return RunResult(exit_code=code, status=status_for(code))

    # -- stopping and cleaning up -----------------------------------------------------------

    def _signal(self, run: _Run, sig: int) -> None:
        """`sig` to the run's processes.

        While the run's first process lives, its process group is surely the run's. After
        that the group id may be reused, so only processes carrying the run's id in their
        environment are signalled (that also finds those that left the group with setsid).
        """
        record = run.record
        if self._exited(run):
            if os.geteuid() in (0, record.uid):
                procs.signal_all(procs.tagged(record.uid, record.run_id), sig)
            return
        try:
            os.killpg(record.pgid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            if record.mode == "sudo":
                user = launch.resolve_user(record.user, record.groups)
                name = signal.Signals(sig).name.removeprefix("SIG")
                with contextlib.suppress(RunError):
                    launch.run_as(
                        user, "sudo", ["kill", "-s", name, "--", f"-{record.pgid}"], "signal it"
                    )

    async def _terminate(self, run: _Run, grace: float) -> None:
        if not self._exited(run):
            self._signal(run, signal.SIGTERM)
            if not await self._until_exit(run, grace):
                self._signal(run, signal.SIGKILL)
                await self._until_exit(run, KILL_GRACE)
        self._signal(run, signal.SIGKILL)

    async def stop(self, handle: RunHandle, grace: float = 10) -> None:
        try:
            run = self._get(handle)
        except RunError:
            return
        self._stopped.add(handle.run_id)
        await self._terminate(run, grace)

    async def remove(self, handle: RunHandle) -> None:
        run = self._runs.pop(handle.run_id, None)
        record = run.record if run else self._read_record(handle.run_id)
        self._stopped.discard(handle.run_id)
        if record is None:
            return
        run = run or _Run(record)
        await self._terminate(run, 0)
        user = None
        if record.mode == "sudo":
            with contextlib.suppress(RunError):
                user = launch.resolve_user(record.user, record.groups)
        await asyncio.to_thread(self._remove_paths, record.run_id, record.mode, user)
        await asyncio.to_thread(release_host_network, record.project, record.run_id)

    def _remove_paths(
        self,
        run_id: str,
        mode: launch.Mode,
        user: launch.RunUser | None,
        keep_files: bool = False,
    ) -> None:
        """Delete the run's home, its static copy and (unless `keep_files`) its log and pid."""
        root = self.runs_dir
        work = root / run_id
        if mode == "sudo" and user is not None and work.exists():
            with contextlib.suppress(RunError):
                launch.run_as(user, mode, ["rm", "-rf", "--", str(work)], "remove its home")
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(root / f"{run_id}.static", ignore_errors=True)
        if not keep_files:
            for suffix in (".pid", ".log"):
                (root / f"{run_id}{suffix}").unlink(missing_ok=True)

    async def close(self) -> None:
        """Nothing to release: runs outlive this object (reattach finds them again)."""
        _reap()
