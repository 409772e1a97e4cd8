"""The model's tools: bash, read, write, edit (standard library only; session.py hands them to
the model library).

Every call is logged as one structured line (`tool`: name, bounded arguments, exit code or
error, duration); file contents and command outputs are not logged, except the tail of a failed
call's output. Outputs the model sees are bounded (the middle of a long one is cut). A call that
fails with an auth/permission message counts toward the abort rule of reference §4.4: the
third one ends the run (`AuthAbort`).

`bash` runs `/bin/bash -c` in the work dir with the run's environment. Before the command it
sources `$AL_BIN_DIR/al-bash-init.sh` when that exists (the helper that defines `setenv` and
reloads the variables it persisted in `$AL_ENV_FILE`), else `$AL_ENV_FILE` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from action_llama import procs
from action_llama.agent.logproto import Logger
from action_llama.errors import RunAborted

MAX_OUTPUT = 30_000
DEFAULT_TIMEOUT = 300
MAX_TIMEOUT = 3600
#: How long output is still read after the command exited (background jobs may hold it open).
DRAIN_SECONDS = 1.0
POLL_SECONDS = 0.02
MAX_LOGGED_ARG = 200
MAX_LOGGED_RESULT = 1000
READ_LINES = 2000
AUTH_FAILURE_LIMIT = 3
AUTH_PHRASES = (
    "permission denied",
    "could not read from remote repository",
    "resource not accessible by personal access token",
    "bad credentials",
    "authentication failed",
    "the requested url returned error: 403",
    "denied to ",
)
ABORT_MESSAGE = "Aborting: repeated auth/permission failures — check credentials"

BASH_PRELUDE = (
    'if [ -f "$AL_BIN_DIR/al-bash-init.sh" ]; then . "$AL_BIN_DIR/al-bash-init.sh"; '
    'elif [ -n "$AL_ENV_FILE" ] && [ -f "$AL_ENV_FILE" ]; then . "$AL_ENV_FILE"; fi\n'
)


class ToolError(Exception):
    """A tool call failed; the model is told `message` (session.py maps it to the library's).

    Not in `al`'s error tree: the model recovers from it; it is no failure of the run."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class AuthAbort(RunAborted):
    """Too many auth/permission failures: the run must end (exit 1)."""


def bound(text: str, limit: int = MAX_OUTPUT) -> str:
    """`text`, or its start and end with a note of how much was cut from the middle."""
    if len(text) <= limit:
        return text
    head = limit // 3
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n[… {cut} characters cut …]\n{text[-tail:]}"


class _Capture:
    """Keeps the start and the end of a stream, never more than about `limit` bytes."""

    def __init__(self, limit: int):
        self.head_cap = limit // 3
        self.tail_cap = limit - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.closed = False
        self._lock = threading.Lock()

    def add(self, chunk: bytes) -> None:
        with self._lock:
            if self.closed:
                return
            self.total += len(chunk)
            room = self.head_cap - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            self.tail += chunk
            if len(self.tail) > self.tail_cap:
                del self.tail[: len(self.tail) - self.tail_cap]

    def close(self) -> str:
        """Stop keeping what arrives; what was kept, as text."""
        with self._lock:
            self.closed = True
            return self._text()

    def _text(self) -> str:
        cut = self.total - len(self.head) - len(self.tail)
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if cut <= 0:
            return head + tail
        return f"{head}\n[… {cut} bytes cut …]\n{tail}"


class Toolbox:
    """The four tools of one run, sharing its work dir, environment and failure count."""

    def __init__(
        self,
        log: Logger,
        work: Path,
        env: dict[str, str],
        *,
        shared_group: bool = False,
        failure: Callable[[str], Exception] = ToolError,
        max_output: int = MAX_OUTPUT,
    ):
        self.log = log
        self.work = work
        self.env = env
        self.shared_group = shared_group
        self.failure = failure
        self.max_output = max_output
        self.auth_failures = 0
        self._running: set[int] = set()

    def functions(self) -> list[Callable[..., Coroutine[Any, Any, str]]]:
        return [self.bash, self.read, self.write, self.edit]

    # -- the tools (their docstrings are what the model reads) ---------------------------------

    async def bash(self, command: str, timeout: int = DEFAULT_TIMEOUT) -> str:
        """Run a shell command with /bin/bash in the working directory.

        stdout and stderr are returned together, with the exit code when it is not 0. Each
        call is a fresh shell: use `setenv NAME value` to keep a variable for later calls.

        Args:
            command: The command line, run with `bash -c`.
            timeout: Seconds before the command is killed (default 300, at most 3600).
        """
        started = time.monotonic()
        seconds = max(1, min(int(timeout), MAX_TIMEOUT))
        code, output, timed_out = await self._run_bash(command, seconds)
        if timed_out:
            output += f"\n[timed out after {seconds}s; the command was killed]"
        result = output.rstrip("\n") if output.strip() else "(no output)"
        if code != 0:
            result += f"\n[exit code {code}]"
        self._logged("bash", {"command": command[:MAX_LOGGED_ARG]}, started, code, result)
        return result

    async def read(self, path: str, offset: int = 1, limit: int = READ_LINES) -> str:
        """Read a text file.

        Args:
            path: The file (relative paths start at the working directory).
            offset: The first line to return, counting from 1.
            limit: How many lines to return at most (default 2000).
        """
        started = time.monotonic()
        args = {"path": path[:MAX_LOGGED_ARG], "offset": offset, "limit": limit}
        target = self._path(path)
        try:
            if not target.is_file():
                raise self._fail("read", args, started, f"{path}: not a file (or not found)")
            data = target.read_bytes()
        except OSError as exc:
            raise self._fail("read", args, started, f"{path}: {exc.strerror or exc}") from exc
        if b"\0" in data[:8192]:
            raise self._fail("read", args, started, f"{path}: binary file, not shown")
        lines = data.decode("utf-8", errors="replace").splitlines(keepends=True)
        first = max(1, offset)
        chosen = lines[first - 1 : first - 1 + max(1, limit)]
        text = "".join(chosen)
        last = first + len(chosen) - 1
        if len(text) > self.max_output:
            text = text[: self.max_output]
            text += f"\n[… cut at {self.max_output} characters; read on with a larger offset]"
        elif last < len(lines):
            text += f"\n[lines {first}-{last} of {len(lines)}; read on with offset={last + 1}]"
        self._logged("read", args, started, 0, "")
        return text if text else "(empty file)" if not lines else "(no lines at this offset)"

    async def write(self, path: str, content: str) -> str:
        """Write a file, replacing it if it exists (parent directories are created).

        Args:
            path: The file (relative paths start at the working directory).
            content: The whole new content.
        """
        started = time.monotonic()
        args = {"path": path[:MAX_LOGGED_ARG], "length": len(content)}
        target = self._path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        except OSError as exc:
            raise self._fail("write", args, started, f"{path}: {exc.strerror or exc}") from exc
        self._logged("write", args, started, 0, "")
        return f"Wrote {len(content.encode())} bytes to {path}"

    async def edit(self, path: str, old_text: str, new_text: str, replace_all: bool = False) -> str:
        """Replace an exact piece of text in a file.

        `old_text` must occur exactly once (include enough surrounding lines to make it
        unique), unless `replace_all` is set.

        Args:
            path: The file (relative paths start at the working directory).
            old_text: The exact text to replace, whitespace included.
            new_text: The replacement.
            replace_all: Replace every occurrence instead of exactly one.
        """
        started = time.monotonic()
        args = {"path": path[:MAX_LOGGED_ARG], "replaceAll": replace_all}
        target = self._path(path)
        if not old_text:
            raise self._fail("edit", args, started, "old_text is empty")
        try:
            text = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a UTF-8 text file"
            raise self._fail("edit", args, started, f"{path}: {reason or exc}") from exc
        count = text.count(old_text)
        if count == 0:
            raise self._fail("edit", args, started, f"old_text was not found in {path}")
        if count > 1 and not replace_all:
            raise self._fail(
                "edit",
                args,
                started,
                f"old_text occurs {count} times in {path}: include more surrounding text to "
                "make it unique, or set replace_all",
            )
        try:
            target.write_text(text.replace(old_text, new_text), encoding="utf-8")
        except OSError as exc:
            raise self._fail("edit", args, started, f"{path}: {exc.strerror or exc}") from exc
        self._logged("edit", args, started, 0, "")
        return f"Edited {path}: replaced {count if replace_all else 1} occurrence(s)"

    # -- stopping ------------------------------------------------------------------------------

    def kill_running(self) -> None:
        """Kill every command still running (the run is being stopped)."""
        for pid in list(self._running):
            self._kill(pid)

    # -- internals -----------------------------------------------------------------------------

    def _path(self, path: str) -> Path:
        candidate = Path(os.path.expanduser(path)) if path.startswith("~") else Path(path)
        return candidate if candidate.is_absolute() else self.work / candidate

    def _kill(self, pid: int) -> None:
        if self.shared_group:
            procs.signal_all(procs.descendants(pid), signal.SIGKILL)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)

    async def _run_bash(self, command: str, seconds: int) -> tuple[int, str, bool]:
        # The output goes through a plain pipe read by a thread: a background job that keeps
        # it open after the command exits is drained (and never blocks) until it closes it.
        read_fd, write_fd = os.pipe()
        try:
            # Popen returns once the child is forked; waiting for it is polled below.
            proc = subprocess.Popen(  # noqa: ASYNC220
                ["/bin/bash", "-c", BASH_PRELUDE + command],
                cwd=self.work,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=not self.shared_group,
            )
        except OSError as exc:
            os.close(read_fd)
            return 127, f"cannot run /bin/bash: {exc.strerror or exc}", False
        finally:
            os.close(write_fd)
        capture = _Capture(self.max_output)
        drained = asyncio.Event()
        loop = asyncio.get_running_loop()
        reader = threading.Thread(
            target=_pump, args=(read_fd, capture, lambda: _notify(loop, drained)), daemon=True
        )
        reader.start()
        self._running.add(proc.pid)
        timed_out = False
        try:
            deadline = time.monotonic() + seconds
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    timed_out = True
                    self._kill(proc.pid)
                    await asyncio.to_thread(proc.wait)
                    break
                await asyncio.sleep(POLL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drained.wait(), DRAIN_SECONDS)
        finally:
            if proc.poll() is None:  # cancelled: the run is stopping
                self._kill(proc.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=1)
            self._running.discard(proc.pid)
        # Whatever a background job writes from now on is drained, not kept.
        text = capture.close()
        code = proc.returncode
        # A command killed by a signal reports -N; shells report 128+N.
        return (128 - code if code < 0 else code), text, timed_out

    def _count_auth_failure(self, text: str) -> None:
        lowered = text.lower()
        if not any(phrase in lowered for phrase in AUTH_PHRASES):
            return
        self.auth_failures += 1
        if self.auth_failures >= AUTH_FAILURE_LIMIT:
            self.log.error(ABORT_MESSAGE, failures=self.auth_failures)
            raise AuthAbort(ABORT_MESSAGE)

    def _logged(
        self, tool: str, args: dict[str, Any], started: float, code: int, result: str
    ) -> None:
        fields: dict[str, Any] = {
            "tool": tool,
            "args": args,
            "exitCode": code,
            "durationMs": int((time.monotonic() - started) * 1000),
        }
        if code != 0:
            fields["result"] = result[-MAX_LOGGED_RESULT:]
            self.log.warn("tool", **fields)
            self._count_auth_failure(result)
        else:
            self.log.info("tool", **fields)

    def _fail(self, tool: str, args: dict[str, Any], started: float, message: str) -> Exception:
        """Log a failed call and return the exception that tells the model (or ends the run)."""
        self.log.warn(
            "tool",
            tool=tool,
            args=args,
            exitCode=1,
            error=message[:MAX_LOGGED_RESULT],
            durationMs=int((time.monotonic() - started) * 1000),
        )
        self._count_auth_failure(message)
        return self.failure(message)


def _pump(fd: int, capture: _Capture, done: Callable[[], None]) -> None:
    try:
        while chunk := os.read(fd, 65536):
            capture.add(chunk)
    except OSError:
        pass
    finally:
        os.close(fd)
        done()


def _notify(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    # The session may be over (its loop closed) when a background job finally lets go.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(event.set)
