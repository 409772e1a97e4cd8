"""Talk to the scheduler running for a project (`al start`): find it, ask it, watch its runs.

Standard library only, on purpose: `al run` through the daemon has to start about as fast as
`docker run`, so this module loads neither pydantic nor FastAPI nor docker-py. The names it
looks for are shared through `action_llama.layout`; the run it follows is read from the run
history (`action_llama.runs.store`, as light).

    find_daemon(dir)           the daemon of the project at `dir`, or None (no marker, dead pid)
    require_daemon(dir)        the same, or DaemonUnavailable naming `al start -p DIR`
    Daemon.get / Daemon.post   JSON over /control/* with the bearer key, errors translated:
        no answer, 401, 503    DaemonUnavailable (with what to do)
        404                    AgentNotFound or RunNotFound
        409                    TriggerRefused (the scheduler's reason)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from action_llama import oserrors
from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.errors import (
    ActionLlamaError,
    AgentNotFound,
    DaemonUnavailable,
    RunNotFound,
    TriggerRefused,
)
from action_llama.layout import (
    API_KEY_FIELD,
    API_KEY_TYPE,
    DAEMON_FILE,
    DAEMON_LOCK,
    STATE_DIR,
)

DAEMON_MARKER = Path(STATE_DIR) / DAEMON_FILE
LOCK_MARKER = Path(STATE_DIR) / DAEMON_LOCK
#: Linux's largest pid (pid_max can be at most 2**22); anything beyond is not a process.
MAX_PID = 1 << 22
API_KEY_REF = CredentialRef(API_KEY_TYPE)
REQUEST_TIMEOUT = 30.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    try:
        # A daemon that has exited but was not reaped yet (a zombie) is gone all the same.
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True  # no /proc (macOS): the signal test is all there is
    return stat.rsplit(b")", 1)[-1].split()[:1] != [b"Z"]


def project_root(project_dir: Path) -> Path:
    return oserrors.project_root(project_dir)


class Daemon(NamedTuple):
    """A live scheduler: its project, pid and the gateway port on 127.0.0.1."""

    root: Path
    pid: int
    port: int

    @property
    def state_dir(self) -> Path:
        """The project's state folder, where the daemon keeps the run history."""
        return self.root / STATE_DIR

    def alive(self) -> bool:
        return _alive(self.pid)

    def get(self, path: str) -> dict[str, Any]:
        return self._request("GET", path, None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._request("POST", path, body or {})

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {_api_key()}", "Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            status, raw = _exchange(self.port, method, f"/control{path}", headers, payload or b"")
        except (OSError, ValueError) as exc:
            raise self._silent(exc) from exc
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"error": raw[:200].decode("utf-8", errors="replace")}
        if status != 200:
            raise self._refusal(status, path, data)
        return data if isinstance(data, dict) else {"value": data}

    def _silent(self, exc: OSError | ValueError) -> DaemonUnavailable:
        what = "stopped answering" if self.alive() else "has exited"
        return DaemonUnavailable(
            f"The scheduler for {self.root} (pid {self.pid}, port {self.port}) {what}: {exc}.",
            hint="It may be shutting down. Check the terminal that ran al start, "
            f"or start it again with: al start -p {self.root}",
        )

    def _refusal(self, status: int, path: str, data: dict[str, Any]) -> ActionLlamaError:
        error = str(data.get("error") or f"HTTP {status}")
        hint = data.get("hint") if isinstance(data.get("hint"), str) else None
        if status == 401:
            return DaemonUnavailable(
                "The scheduler did not accept this user's gateway API key.",
                hint="Run this command as the user who started al start, with the same "
                "AL_CREDENTIALS_DIR / AL_HOME (the key is the gateway_api_key credential).",
            )
        if status == 404 and path.startswith("/kill/"):
            return RunNotFound(error, hint="See what is running with: al stat")
        if status == 404:
            return AgentNotFound(error, hint=hint or f"See the agents with: al stat -p {self.root}")
        if status == 409:
            reason = data.get("reason") or error
            return TriggerRefused(f"The scheduler refused: {reason}.", hint=hint)
        return DaemonUnavailable(f"The scheduler answered {status}: {error}", hint=hint)


def _exchange(
    port: int, method: str, target: str, headers: dict[str, str], body: bytes
) -> tuple[int, bytes]:
    """One HTTP/1.0 request to the gateway on 127.0.0.1: (status, body).

    A socket, not http.client: that module (with email and ssl behind it) is a third of this
    client's start-up, and the gateway is ours: it answers HTTP/1.0 with a whole body and
    closes the connection. ValueError for an answer that is not HTTP."""
    import socket

    lines = [f"{method} {target} HTTP/1.0", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, separator, content = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not separator or len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
        raise ValueError("the answer was not HTTP")
    return int(status_line[1]), content


def _api_key() -> str:
    store = CredentialStore()
    key = store.read(API_KEY_REF).get(API_KEY_FIELD) if store.has(API_KEY_REF) else None
    if not key:
        raise DaemonUnavailable(
            f"No gateway API key in the credential store ({store.root}).",
            hint="al start makes one; run this command as the user who started it, with the "
            "same AL_CREDENTIALS_DIR / AL_HOME.",
        )
    return key


def _holds_lock(pid: int, lock: Path) -> bool:
    """Whether process `pid` holds the flock on `lock`, read from /proc/locks (True when that
    cannot be known, as on macOS: the pid's liveness is then all there is). Reading the table
    rather than trying the lock never gets in the way of a scheduler taking it."""
    try:
        info = lock.stat()
    except OSError:
        return False  # no lock file: no scheduler ever ran here
    try:
        table = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    inode = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; waiters have a "->" field.
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode:
            return fields[4] == str(pid)
    return False


def find_daemon(project_dir: Path) -> Daemon | None:
    """The scheduler running for the project at `project_dir`; None when there is none (no
    marker file, or one a dead daemon left behind, whose pid may be another process's now)."""
    root = project_root(project_dir)
    try:
        data = json.loads((root / DAEMON_MARKER).read_text(encoding="utf-8"))
        daemon = Daemon(root, int(data["pid"]), int(data["port"]))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if not (0 < daemon.pid <= MAX_PID and 0 < daemon.port <= 65535):
        return None
    if not daemon.alive() or not _holds_lock(daemon.pid, root / LOCK_MARKER):
        return None
    return daemon


def require_daemon(project_dir: Path) -> Daemon:
    """`find_daemon`, or DaemonUnavailable telling how to start one."""
    daemon = find_daemon(project_dir)
    if daemon is None:
        root = project_root(project_dir)
        raise DaemonUnavailable(
            f"No scheduler is running for {root}.",
            hint=f"Start one with: al start -p {root}",
        )
    return daemon
