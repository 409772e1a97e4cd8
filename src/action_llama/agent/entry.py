"""Run one agent invocation (reference §4.2): credentials, pre hooks, then the script or a
model session (after `!`cmd`` context injection), post hooks, and the exit decision from the
signal files the helper commands leave.

Layout it expects (overridable for host-user runs through the environment):
    AL_STATIC_DIR   /app/static    agent-config.json, SKILL.md, test-script.sh, prompt.txt,
                                   trigger.json
    AL_WORK_DIR     /tmp           working directory
    AL_BIN_DIR      /app/bin       helper commands, put first on PATH

It exports to everything it starts: AL_SIGNAL_DIR (<work>/signals), AL_ENV_FILE
(<work>/.al-env.sh, where `setenv` keeps variables), AL_BIN_DIR, AL_ENTRY_PID (the entry's pid:
`al-shutdown` sends it SIGTERM, which stops the run within seconds), PROMPT (the trigger's
text, the last block of a model session's prompt) and AL_TRIGGER_FILE (trigger.json).

Host-user runs also set AL_SHARED_PGROUP=1 (children stay in the entry's process group, so
the host stops the whole run with one signal; there is no container to end stragglers) and
AL_EXIT_FILE (where the entry records its exit status, for a host that reattached to the run
and so cannot wait for it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from action_llama import procs
from action_llama.agent import signals, trigger
from action_llama.agent.logproto import Logger

# typing.TYPE_CHECKING without importing typing: this module loads in every run's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

    from action_llama.agent.prompt import CommandOutput

HOOK_TIMEOUT = 300
#: Seconds the output readers get to finish after a child exits.
PUMP_DRAIN = 1.0
#: Longest line kept from a child's output; longer ones are cut and marked.
MAX_LINE = 16 * 1024
#: The `al-exit` convention for "invalid config".
EXIT_CONFIG = 13
EXIT_TIMEOUT = 124
#: Context injection: seconds per `!`cmd`` command.
INJECT_TIMEOUT = 60


class Invocation:
    """State of one run inside the entry: the logger, the environment, the running child."""

    def __init__(self, log: Logger, static: Path, work: Path, env: dict[str, str]):
        self.log = log
        self.static = static
        self.work = work
        self.env = env
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.stopping = False
        #: Called (from the signal handler) when the run is asked to stop.
        self.stop_hooks: list[Callable[[], None]] = []
        #: Children share our process group (host-user runs) instead of having their own.
        self.shared_group = env.get("AL_SHARED_PGROUP") == "1"

    def kill_child(self, sig: int = signal.SIGKILL) -> None:
        with self._lock:
            child = self._child
        if child is None or child.poll() is not None:
            return
        if self.shared_group:
            procs.signal_all(procs.descendants(child.pid), sig)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)

    def _pump(self, stream: IO[bytes], name: str, source: str) -> None:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if len(line) > MAX_LINE:
                line = line[:MAX_LINE] + f" …[{len(line) - MAX_LINE} more characters cut]"
            self.log.info(line, stream=name, source=source)

    def run(self, argv: list[str], source: str, timeout: float | None = None) -> int:
        """Run `argv` in its own process group, logging each output line; its exit status."""
        child = subprocess.Popen(
            argv,
            cwd=self.work,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=not self.shared_group,
        )
        with self._lock:
            self._child = child
        assert child.stdout is not None
        assert child.stderr is not None
        pumps = [
            threading.Thread(target=self._pump, args=(child.stdout, "stdout", source), daemon=True),
            threading.Thread(target=self._pump, args=(child.stderr, "stderr", source), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_child()
            child.wait()
            self.log.error(f"{source} timed out after {timeout:.0f}s and was killed")
            code = EXIT_TIMEOUT
        # Output still arriving is kept, but a background process that holds the pipes open
        # must not hold the run up: give the readers a short, shared deadline.
        deadline = time.monotonic() + PUMP_DRAIN
        for pump in pumps:
            pump.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._child = None
        # A child killed by a signal reports -N; shells report 128+N.
        return 128 - code if code < 0 else code

    def on_stop(self, hook: Callable[[], None]) -> None:
        self.stop_hooks.append(hook)

    def capture(self, command: str, timeout: float) -> CommandOutput:
        """Run `command` with /bin/sh and return its output (context injection)."""
        from action_llama.agent.prompt import CommandOutput

        if self.stopping:
            return CommandOutput(-1, "", "the run is stopping")
        try:
            child = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=self.work,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=not self.shared_group,
            )
        except OSError as exc:
            return CommandOutput(-1, "", f"cannot run /bin/sh: {exc}")
        with self._lock:
            self._child = child
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_child()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.communicate(timeout=PUMP_DRAIN)
            return CommandOutput(-1, "", f"timed out after {timeout:.0f}s")
        finally:
            with self._lock:
                self._child = None
        return CommandOutput(
            child.returncode,
            out.decode("utf-8", errors="replace"),
            err.decode("utf-8", errors="replace"),
        )

    def hooks(self, phase: str, commands: list[str]) -> bool:
        """Run hook commands in order; False at the first failure."""
        if not commands:
            return True
        self.log.info(f"hooks.{phase} starting", count=len(commands))
        began = time.monotonic()
        for i, command in enumerate(commands, 1):
            self.log.info(f"hooks.{phase} [{i}/{len(commands)}]: {command[:200]}")
            code = self.run(["/bin/sh", "-c", command], f"hooks.{phase}", HOOK_TIMEOUT)
            if code != 0:
                self.log.error(
                    f"hooks.{phase} [{i}/{len(commands)}] failed with exit {code}",
                    command=command[:200],
                    exitCode=code,
                    hooks=phase,
                    seconds=round(time.monotonic() - began, 3),
                )
                return False
        # `hooks` and `seconds` are what the host records as the run's hook time.
        self.log.info(
            f"hooks.{phase} complete", hooks=phase, seconds=round(time.monotonic() - began, 3)
        )
        return True


def _environment(static: Path, work: Path) -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = env.get("AL_BIN_DIR", "/app/bin")
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/local/bin:/usr/bin:/bin')}"
    env["AL_BIN_DIR"] = bin_dir
    env.setdefault("HOME", "/home/node")
    signal_dir = work / "signals"
    signal_dir.mkdir(parents=True, exist_ok=True)
    env["AL_SIGNAL_DIR"] = str(signal_dir)
    env.setdefault("AL_ENV_FILE", str(work / ".al-env.sh"))
    env["AL_ENTRY_PID"] = str(os.getpid())
    from action_llama.agent.credentials import trust_egress_ca

    trust_egress_ca(env, work)
    # What the original gave scripts too: the trigger's text (a model session's last prompt
    # block) and the trigger itself as JSON.
    env["PROMPT"] = trigger.trigger_text(static)
    trigger_file = static / trigger.TRIGGER_FILE
    if trigger_file.is_file():
        env["AL_TRIGGER_FILE"] = str(trigger_file)
    return env


#: Set once the run's own timeout fired: the run's exit status is then 124, whichever
#: thread gets to exit the process first.
timed_out = threading.Event()
_exit_lock = threading.Lock()


def record_exit(code: int) -> None:
    """Leave the exit status where a reattached host can read it (host-user runs only)."""
    path = os.environ.get("AL_EXIT_FILE")
    if not path:
        return
    with _exit_lock, contextlib.suppress(OSError):
        Path(path).write_text(f"{code}\n", encoding="ascii")


def end_stragglers(inv: Invocation) -> None:
    """Kill what the run left behind in our process group (a container would end it too)."""
    if inv.shared_group:
        procs.kill_group_except_self(signal.SIGKILL)


def _arm_timeout(inv: Invocation, seconds: int) -> None:
    def fire() -> None:
        timed_out.set()
        inv.log.error(f"timeout reached after {seconds}s, stopping the run", timeout=seconds)
        record_exit(EXIT_TIMEOUT)
        inv.kill_child()
        end_stragglers(inv)
        os._exit(EXIT_TIMEOUT)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def _on_terminate(inv: Invocation) -> None:
    def handler(signum: int, _frame: Any) -> None:
        inv.stopping = True
        inv.log.warn("stop requested, ending the run", signal=signal.Signals(signum).name)
        inv.kill_child(signal.SIGTERM)
        for hook in inv.stop_hooks:
            hook()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _load_credentials(inv: Invocation, config: dict[str, Any]) -> bool:
    """Export the agent's credentials; False (after saying why, plainly) when one is missing."""
    from action_llama.agent.credentials import MissingCredential, export

    root = Path(os.environ.get("AL_CREDENTIALS_PATH", "/credentials"))
    refs = list(config.get("credentials") or [])
    try:
        exported = export(root, refs, inv.env, Path(inv.env["HOME"]))
    except MissingCredential as exc:
        inv.log.error(
            f'Missing credential "{exc}": it is listed in the agent\'s config.toml but was not '
            "provided to this run.",
            hint=f"Add it with: al creds add {exc}",
        )
        return False
    if refs:
        inv.log.info("credentials loaded", refs=refs, env=exported)
    return True


def main() -> int:
    """Run the invocation; record its exit status and end its leftovers on the way out."""
    code = 1
    try:
        code = _main()
    finally:
        if timed_out.is_set():
            code = EXIT_TIMEOUT
        record_exit(code)
    return code


def _main() -> int:
    log = Logger()
    static = Path(os.environ.get("AL_STATIC_DIR", "/app/static"))
    work = Path(os.environ.get("AL_WORK_DIR", "/tmp"))
    try:
        config: dict[str, Any] = json.loads((static / "agent-config.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        log.error(
            f"cannot read the agent's files in {static}: {exc}",
            hint="Run the agent through `al run`, which provides them.",
        )
        return EXIT_CONFIG
    os.chdir(work)
    inv = Invocation(log, static, work, _environment(static, work))
    _on_terminate(inv)
    _arm_timeout(inv, int(config.get("timeout", 900)))
    log.info(
        "run starting" if inv.shared_group else "container starting",
        agent=config.get("name"),
        runId=os.environ.get("AL_RUN_ID"),
    )
    try:
        return _invoke(inv, config)
    finally:
        end_stragglers(inv)


def _invoke(inv: Invocation, config: dict[str, Any]) -> int:
    log, static = inv.log, inv.static
    if os.environ.get("AL_WORKSPACE_UNCAPPED"):
        log.warn("/workspace has no size cap on this host (needs root and loop devices)")
    if not inv.shared_group and _status_field("NoNewPrivs") == "0":
        log.warn(
            "no-new-privileges is off in this container: a setuid program could change its "
            "user (it gets no capabilities: every one is dropped)",
            hint='Set "no-new-privileges": true in /etc/docker/daemon.json of the node and '
            "restart dockerd (Swarm services cannot ask for it on engine 20.10; al doctor "
            "checks every node)",
        )
    if not _load_credentials(inv, config):
        return 1
    hooks = config.get("hooks") or {}
    if not inv.hooks("pre", list(hooks.get("pre") or [])):
        return 1
    script = static / "test-script.sh"
    if script.is_file():
        log.info("script mode: running test-script.sh")
        code = inv.run(["/bin/sh", str(script)], "script")
    elif config.get("models"):
        code = _session(inv, config)
    else:
        log.error(
            f"Agent {config.get('name')} has no test-script.sh and no model to run.",
            hint=f'List a model in agents/{config.get("name")}/config.toml (models = ["..."]).',
        )
        return EXIT_CONFIG
    if inv.stopping or timed_out.is_set():
        return code
    # Post hooks run after any session or script that ended by itself, failed or not (they
    # are the agent's clean-up); a failing one never changes the run's exit code.
    if not inv.hooks("post", list(hooks.get("post") or [])):
        log.warn("post hook failed; the run's exit code is unchanged")
    code = signals.decide(code, Path(inv.env["AL_SIGNAL_DIR"]), log)
    log.info("run completed", exitCode=code)
    return code


def _status_field(name: str) -> str | None:
    """A field of /proc/self/status ("NoNewPrivs"), or None where there is none."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key == name:
                    return value.strip()
    except OSError:
        pass
    return None


def _session(inv: Invocation, config: dict[str, Any]) -> int:
    """Context injection, the prompt, then a model session (pydantic-ai is imported here)."""
    from action_llama.agent import prompt, session, tools

    name = str(config.get("name") or "agent")
    try:
        skill = (inv.static / "SKILL.md").read_text(encoding="utf-8")
    except OSError as exc:
        inv.log.error(f"cannot read SKILL.md: {exc}")
        return EXIT_CONFIG
    body = prompt.inject_context(
        prompt.skill_body(skill, name), lambda cmd: inv.capture(cmd, INJECT_TIMEOUT)
    )
    credentials = os.environ.get("AL_CREDENTIALS_PATH", "/credentials")
    layout = prompt.Layout(
        host_user=config.get("runtime") == "host-user" or inv.shared_group,
        work_dir=str(inv.work),
        static_dir=str(inv.static),
        credentials_dir=credentials,
        workspace_capped=not os.environ.get("AL_WORKSPACE_UNCAPPED"),
    )
    text = prompt.user_prompt(config, layout, None, suffix=inv.env["PROMPT"])
    toolbox = tools.Toolbox(
        inv.log,
        inv.work,
        inv.env,
        shared_group=inv.shared_group,
        failure=session.tool_failure,
    )
    spec = session.SessionSpec(
        system=body,
        prompt=text,
        models=list(config.get("models") or []),
        credentials=Path(credentials),
        agent=name,
    )
    if inv.stopping:
        return 128 + signal.SIGTERM
    return session.run_session(inv.log, spec, toolbox, inv)
