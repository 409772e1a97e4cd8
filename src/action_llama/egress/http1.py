"""HTTP/1.1 message framing for the proxy's handlers that read what passes (the model broker,
the token substitution): where a body ends, copied on as it arrives.

Standard library only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from action_llama.egress.handlers import CHUNK

Send = Callable[[bytes], Awaitable[None]]
Feed = Callable[[bytes], None]


def header_fields(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The first line of a message head and its headers, in order."""
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def value_of(headers: list[tuple[str, str]], name: str) -> str:
    lowered = name.lower()
    return next((v for k, v in headers if k.lower() == lowered), "")


def no_body(status_line: str, method: str) -> bool:
    """Whether a response to `method` with this status line has no body."""
    parts = status_line.split(" ", 2)
    code = parts[1] if len(parts) > 1 else ""
    return method == "HEAD" or code.startswith("1") or code in ("204", "304")


async def copy_body(
    reader: asyncio.StreamReader,
    headers: list[tuple[str, str]],
    send: Send,
    feed: Feed = lambda data: None,
    *,
    until_eof: bool,
) -> bool:
    """Copy the body that follows a head with `headers` from `reader` to `send`, raw (chunks
    stay chunks); `feed` gets its payload. A body with neither length nor chunks runs to the
    end of the stream when `until_eof` (a response), else is empty (a request). True when the
    stream ended with it (the connection cannot carry another message)."""
    if "chunked" in value_of(headers, "Transfer-Encoding").lower():
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            data = await reader.readexactly(size + 2) if size else b""
            await send(line + data)
            feed(data[:-2])
            if size == 0:
                while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                    await send(trailer)
                await send(b"\r\n")
                return False
    length = value_of(headers, "Content-Length")
    if length.isdigit():
        remaining = int(length)
        while remaining > 0:
            data = await reader.read(min(CHUNK, remaining))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            await send(data)
            feed(data)
            remaining -= len(data)
        return False
    if not until_eof:
        return False
    while data := await reader.read(CHUNK):
        await send(data)
        feed(data)
    return True
