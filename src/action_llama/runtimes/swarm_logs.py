"""A Swarm run's output, line by line, from its start until its task ended.

`GET /services/{id}/logs?follow=1` streams a service's output but never ends, not even when
its tasks have ended and not when the service is removed (engine 20.10). So the live stream
is read in a thread, the task's state is watched beside it, and once the task has ended the
whole log is fetched once more: what the live stream had not delivered yet is yielded from
that copy, then the live stream is cut. Each stream (stdout, stderr) keeps its own order in
both, so the lines missing from the live copy are the last ones of each stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from action_llama.runtimes.swarm_spec import swarm_api

if TYPE_CHECKING:
    import docker

#: Seconds between looks at the task's state while its output streams.
POLL_SECONDS = 0.25
#: Longest wait for one read of a log that is not followed (a node that stopped answering).
FETCH_TIMEOUT = 30
_HEADER = struct.Struct(">BxxxL")


class LogStream:
    """One logs request of a service, read frame by frame; `close` (from any thread) ends a
    read that is waiting for more."""

    def __init__(self, client: docker.DockerClient, service: str, *, follow: bool):
        api = swarm_api(client)
        params = {"stdout": 1, "stderr": 1, "follow": int(follow), "timestamps": 0}
        # The SDK's service_logs gives no handle on the response, so nothing could end a
        # followed stream; these are the requests it makes itself.
        self._response = api._get(
            api._url("/services/{0}/logs", service), params=params, stream=True
        )
        api._raise_for_status(self._response)
        raw = api._get_raw_response_socket(self._response)
        self._socket: socket.socket | None = getattr(raw, "_sock", raw)
        if self._socket is not None and not follow:
            self._socket.settimeout(FETCH_TIMEOUT)

    def lines(self) -> Iterator[tuple[int, str]]:
        """(stream, line) pairs, stream 1 for stdout and 2 for stderr, until the end."""
        pending: dict[int, bytes] = {1: b"", 2: b""}
        raw: Any = self._response.raw
        try:
            while len(header := raw.read(_HEADER.size)) == _HEADER.size:
                stream, length = _HEADER.unpack(header)
                data = raw.read(length) if length else b""
                buffered = pending.get(stream, b"") + data
                *complete, pending[stream] = buffered.split(b"\n")
                for line in complete:
                    yield stream, line.decode("utf-8", errors="replace")
        except Exception:
            # Closed under us, or the connection dropped (urllib3 says so in its own
            # exceptions): what came is what there is; the whole log completes it.
            pass
        for stream, rest in pending.items():
            if rest:
                yield stream, rest.decode("utf-8", errors="replace")

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._response.close()


def whole_log(client: docker.DockerClient, service: str) -> list[tuple[int, str]]:
    """Every (stream, line) the service's tasks printed so far."""
    stream = LogStream(client, service, follow=False)
    try:
        return list(stream.lines())
    finally:
        stream.close()


async def follow(
    client: docker.DockerClient, service: str, ended: Callable[[], Awaitable[bool]]
) -> AsyncIterator[str]:
    """Every output line of `service` from its start; ends once `ended()` says its task has
    ended and the last lines are out."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
    live = await asyncio.to_thread(LogStream, client, service, follow=True)

    def pump() -> None:
        try:
            for item in live.lines():
                loop.call_soon_threadsafe(queue.put_nowait, item)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    async def watch() -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if await ended():
                return

    threading.Thread(target=pump, name=f"swarm-logs-{service[:12]}", daemon=True).start()
    watcher = asyncio.ensure_future(watch())
    seen = {1: 0, 2: 0}
    try:
        while True:
            getting = asyncio.ensure_future(queue.get())
            await asyncio.wait({getting, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():
                getting.cancel()
                break  # the task ended: the rest comes from the whole log
            item = getting.result()
            if item is None:
                await watcher  # the live stream dropped: finish from the whole log
                break
            seen[item[0]] = seen.get(item[0], 0) + 1
            yield item[1]
        watcher.result()  # an engine error while watching is the caller's to see
        for stream, line in await asyncio.to_thread(whole_log, client, service):
            if seen.get(stream, 0) > 0:
                seen[stream] -= 1
                continue
            yield line
    finally:
        watcher.cancel()
        live.close()
