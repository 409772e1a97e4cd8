"""A small client of the Docker Engine API for the calls every run makes.

A run needs a handful of engine calls (is the image there, the workspace volume, create,
start, logs, wait, inspect, stop, remove). docker-py makes them well, but importing it (and
requests, urllib3, their codecs and cookie jars) costs about a tenth of a second, which `al run`
would pay on every launch. This client speaks those calls over the standard library's
`http.client`, to the engine DOCKER_HOST names (a unix socket, the default, or tcp:// with
DOCKER_TLS_VERIFY / DOCKER_CERT_PATH as docker-py reads them). Everything else (builds,
networks, swarm services) still goes through docker-py (`action_llama.engine.connect`).

Errors:

    EngineAPIError          the engine answered with an error (`.status`, `.explanation`)
    └── EngineNotFound      404: no such container, volume or image
        └── NoSuchImage     the image named does not exist

A failure to reach the engine at all is `RuntimeUnavailable` ("Docker is not running"), the
same error `engine.connect` raises.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from action_llama.engine import reason
from action_llama.errors import docker_not_running

#: Seconds a call may take, as docker-py's default; waits and log streams have no limit.
DEFAULT_TIMEOUT = 60.0
DEFAULT_SOCKET = "/var/run/docker.sock"


class EngineAPIError(Exception):
    """The engine refused a call: `status` is the HTTP status, `explanation` its message."""

    def __init__(self, status: int, explanation: str):
        super().__init__(f"{status}: {explanation}")
        self.status = status
        self.explanation = explanation


class EngineNotFound(EngineAPIError):
    """The container, volume or image named does not exist."""


class NoSuchImage(EngineNotFound):
    """The image a call named does not exist on the engine."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class EngineAPI:
    """The engine at `host` (DOCKER_HOST's syntax; None: the default unix socket).

    Safe to share between threads: each call opens its own connection (a unix socket's
    connect costs microseconds; the engine closes idle ones anyway)."""

    def __init__(self, host: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.host = host
        self.timeout = timeout
        url = host or f"unix://{DEFAULT_SOCKET}"
        if url.startswith("unix://"):
            self._socket_path: str | None = url.removeprefix("unix://")
            self._address: tuple[str, int] = ("localhost", 80)
        elif url.startswith(("tcp://", "http://", "https://")):
            parts = urlsplit(url)
            self._socket_path = None
            self._address = (parts.hostname or "localhost", parts.port or 2375)
        else:
            raise docker_not_running(f"(DOCKER_HOST={host}: only unix:// and tcp:// are supported)")
        self._tls = self._tls_context(url)

    @staticmethod
    def _tls_context(url: str) -> Any:
        verify = os.environ.get("DOCKER_TLS_VERIFY") not in (None, "")
        cert_path = os.environ.get("DOCKER_CERT_PATH")
        if url.startswith("unix://") or not (verify or cert_path or url.startswith("https://")):
            return None
        import ssl

        folder = cert_path or os.path.join(os.path.expanduser("~"), ".docker")
        context = ssl.create_default_context(
            cafile=os.path.join(folder, "ca.pem") if verify else None
        )
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        if os.path.exists(cert) and os.path.exists(key):
            context.load_cert_chain(cert, key)
        return context

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._socket_path is not None:
            return _UnixConnection(self._socket_path, timeout)
        host, port = self._address
        if self._tls is not None:
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _open(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a call; (connection, response) with the response's status checked."""
        if params:
            path = f"{path}?{urlencode(params)}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn = self._connection(timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise docker_not_running(reason(exc)) from exc
        if response.status >= 400:
            try:
                raw = response.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                conn.close()
            raise _error(response.status, raw)
        return conn, response

    def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Any:
        """One call; its decoded JSON answer (None for an empty one)."""
        conn, response = self._open(method, path, params, body, timeout)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise docker_not_running(reason(exc)) from exc
        finally:
            conn.close()
        return json.loads(raw) if raw.strip() else None

    # -- the calls --------------------------------------------------------------------------

    def ping(self) -> None:
        self._call("GET", "/_ping")

    def inspect_image(self, ref: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = self._call("GET", f"/images/{_part(ref)}/json")
        except EngineNotFound as exc:
            raise NoSuchImage(exc.status, exc.explanation) from None
        return found

    def inspect_volume(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/volumes/{_part(name)}")
        return found

    def create_volume(
        self,
        name: str,
        driver: str = "local",
        driver_opts: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "Name": name,
            "Driver": driver,
            "DriverOpts": dict(driver_opts or {}),
            "Labels": dict(labels or {}),
        }
        made: dict[str, Any] = self._call("POST", "/volumes/create", body=body)
        return made

    def remove_volume(self, name: str, force: bool = False) -> None:
        self._call("DELETE", f"/volumes/{_part(name)}", {"force": "1" if force else "0"})

    def create_container(self, config: Mapping[str, Any], name: str) -> dict[str, Any]:
        """Create a container from the engine's `ContainerCreate` body; {"Id": ...}."""
        made: dict[str, Any] = self._call(
            "POST", "/containers/create", {"name": name}, body=dict(config)
        )
        return made

    def start(self, ref: str) -> None:
        self._call("POST", f"/containers/{_part(ref)}/start")

    def wait(self, ref: str) -> dict[str, Any]:
        """Block until the container exits; the engine's answer ({"StatusCode": ...})."""
        ended: dict[str, Any] = self._call("POST", f"/containers/{_part(ref)}/wait", timeout=None)
        return ended

    def inspect_container(self, ref: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/containers/{_part(ref)}/json")
        return found

    def inspect_network(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/networks/{_part(name)}")
        return found

    def kill(self, ref: str) -> None:
        self._call("POST", f"/containers/{_part(ref)}/kill")

    def stop(self, ref: str, timeout: int) -> None:
        self._call(
            "POST", f"/containers/{_part(ref)}/stop", {"t": timeout}, timeout=self.timeout + timeout
        )

    def remove_container(self, ref: str, force: bool = False) -> None:
        self._call("DELETE", f"/containers/{_part(ref)}", {"force": "1" if force else "0"})

    def containers(self, filters: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        """All containers (running or not) matching `filters` ({"label": [...]})."""
        found: list[dict[str, Any]] = self._call(
            "GET", "/containers/json", {"all": "1", "filters": json.dumps(dict(filters))}
        )
        return found

    def logs(self, ref: str) -> Iterator[bytes]:
        """The container's output (stdout and stderr, as written) from its start, followed
        until it exits: chunks of bytes, not split into lines."""
        conn, response = self._open(
            "GET",
            f"/containers/{_part(ref)}/logs",
            {"follow": "1", "stdout": "1", "stderr": "1"},
            timeout=None,
        )
        try:
            if response.getheader("Content-Type") == "application/vnd.docker.raw-stream":
                # A container with a TTY: its output is not framed.
                while chunk := response.read1(65536):
                    yield chunk
                return
            # Frames of an 8-byte header (stream, 3 zero bytes, big-endian length) + payload.
            while len(header := response.read(8)) == 8:
                size = int.from_bytes(header[4:], "big")
                if size:
                    yield response.read(size)
        except (OSError, http.client.HTTPException) as exc:
            raise docker_not_running(reason(exc)) from exc
        finally:
            conn.close()


def _part(text: str) -> str:
    """`text` in a URL path, as docker-py quotes it (image references keep `/` and `:`)."""
    return quote(text, safe="/:")


def _error(status: int, raw: bytes) -> EngineAPIError:
    try:
        message = str(json.loads(raw).get("message", ""))
    except (ValueError, AttributeError):
        message = raw.decode("utf-8", errors="replace").strip()
    message = message or http.client.responses.get(status, "error")
    if status == 404:
        if "no such image" in message.lower():
            return NoSuchImage(status, message)
        return EngineNotFound(status, message)
    return EngineAPIError(status, message)
