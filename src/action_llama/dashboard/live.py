"""Live pages without polling: the daemon says when something changed, open pages are sent the
parts that did, as server-sent events.

    Changes   versions that move when the scheduler's state may have changed (`STATE`: a run
              started or ended, work queued, a pause, a webhook receipt, a reload) or when a
              run wrote log lines (`run_topic(id)`). `touch` is cheap and may be called from
              any thread; waiters sleep until a version moves (an idle daemon wakes nobody).
    Renders   one render per page and version, shared by every browser showing that page.
    event / KEEPALIVE / stream   the text/event-stream wire format.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from starlette.responses import StreamingResponse

STATE = "state"
#: Seconds between comments on an idle stream, so proxies keep it open and a logged-out
#: session's stream ends.
KEEPALIVE_SECONDS = 25.0
#: Changes arriving within this many seconds are sent as one update.
SETTLE_SECONDS = 0.3
#: How long a browser waits before reconnecting a dropped stream (the `retry:` field).
RETRY_MILLISECONDS = 2000
KEEPALIVE = b": keepalive\n\n"


def run_topic(run_id: str) -> str:
    return f"run:{run_id}"


@dataclass
class _Topic:
    version: int = 0
    waiters: set[asyncio.Event] = field(default_factory=set)


class Changes:
    """Change versions by topic, and the waiters of each."""

    def __init__(self) -> None:
        self._topics: dict[str, _Topic] = {STATE: _Topic()}
        self._loop: asyncio.AbstractEventLoop | None = None

    def version(self, topic: str = STATE) -> int:
        found = self._topics.get(topic)
        return found.version if found is not None else 0

    def touch(self, topic: str = STATE) -> None:
        """`topic` changed. Topics nobody watches (a run whose page is not open) cost nothing."""
        loop = self._loop
        if loop is None:
            self._move(topic)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._move(topic)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(self._move, topic)

    def _move(self, topic: str) -> None:
        found = self._topics.get(topic)
        if found is None:
            return
        found.version += 1
        for waiter in found.waiters:
            waiter.set()

    @contextlib.contextmanager
    def watching(self, *topics: str) -> Iterator[Watch]:
        """Watch `topics` (default: `STATE`) from the event loop for as long as the block runs."""
        self._loop = asyncio.get_running_loop()
        names = topics or (STATE,)
        watched = [self._topics.setdefault(name, _Topic()) for name in names]
        watch = Watch(watched)
        for topic in watched:
            topic.waiters.add(watch.event)
        try:
            yield watch
        finally:
            for name, topic in zip(names, watched, strict=True):
                topic.waiters.discard(watch.event)
                if not topic.waiters and name != STATE:
                    self._topics.pop(name, None)


class Watch:
    """One waiter's view of its topics: `seen` is the versions it last acted on."""

    def __init__(self, topics: list[_Topic]) -> None:
        self._topics = topics
        self.event = asyncio.Event()
        self.seen = self.versions()

    def versions(self) -> tuple[int, ...]:
        return tuple(topic.version for topic in self._topics)

    @property
    def version(self) -> int:
        """The first topic's version."""
        return self._topics[0].version

    async def moved(self, timeout: float) -> bool:
        """Wait until a topic moves past `seen` (True, and `seen` catches up) or `timeout`
        seconds pass (False)."""
        if self.versions() == self.seen:
            self.event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), timeout)
        now = self.versions()
        if now == self.seen:
            return False
        self.seen = now
        return True


class Renders:
    """The latest render of each live page part, by key, with the version it was made at: the
    first browser to ask for a newer version renders it, the others wait for that render.
    Only the `KEPT` most recently used keys are kept (an agent page per filter and page)."""

    KEPT = 64

    def __init__(self) -> None:
        self._done: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, key: str, version: int, make: Callable[[], Awaitable[str]]) -> str:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            done = self._done.get(key)
            if done is None or done[0] < version:
                done = (version, await make())
            self._done[key] = done
            self._done.move_to_end(key)
            while len(self._done) > self.KEPT:
                old, _ = self._done.popitem(last=False)
                self._locks.pop(old, None)
            return done[1]


def event(data: str, name: str | None = None, event_id: str | int | None = None) -> bytes:
    """One server-sent event; each line of `data` becomes a `data:` line."""
    head = ""
    if name is not None:
        head += f"event: {name}\n"
    if event_id is not None:
        head += f"id: {event_id}\n"
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return (head + body + "\n").encode()


def stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    """A text/event-stream response; the browser reconnects after `RETRY_MILLISECONDS`."""

    async def with_retry() -> AsyncIterator[bytes]:
        yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
        async for chunk in events:
            yield chunk

    return StreamingResponse(
        with_retry(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
