"""A fake model provider: a real HTTP server speaking the OpenAI Chat Completions and Anthropic
Messages APIs, answering from a script, recording every request.

    server = FakeModelServer()
    server.script(tool_call("bash", command="echo hi"), reply("done"))
    ...point a model's base_url at server.openai_url(host) or server.anthropic_url(host)...
    server.requests[0].headers["authorization"]

Each request takes the next step of its model's queue (`script(..., model="name")`), else of the
shared queue; `always(step, model=...)` answers every request of that model the same way. A
request with no step left gets HTTP 500 and is recorded in `unanswered`. Steps are replies (text
and/or tool calls, with token usage) or failures (HTTP 401, 429, 529... with the error JSON each
provider really sends). Streaming requests (`"stream": true`) get server-sent events, as the SDKs
expect. Errors carry `x-should-retry: false` unless `retry=True`, so the SDKs' own retries do not
multiply requests (both SDKs honour the header).

It listens on 0.0.0.0, so a container reaches it as http://host.docker.internal:<port> and a
host-user run as http://127.0.0.1:<port>.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    """One tool call the model makes."""

    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    input: int = 100
    output: int = 20
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True)
class Reply:
    """A successful answer: text, tool calls, or both."""

    text: str = ""
    calls: tuple[Call, ...] = ()
    usage: Usage = Usage()


@dataclass(frozen=True)
class Fail:
    """An error answer with the provider's real error JSON for `status`."""

    status: int
    message: str = ""
    retry: bool = False


Step = Reply | Fail


def reply(text: str, usage: Usage = Usage()) -> Reply:
    return Reply(text=text, usage=usage)


def tool_call(name: str, text: str = "", **args: Any) -> Reply:
    return Reply(text=text, calls=(Call(name, args),))


def tool_calls(*calls: tuple[str, dict[str, Any]], text: str = "") -> Reply:
    return Reply(text=text, calls=tuple(Call(n, a) for n, a in calls))


@dataclass
class Recorded:
    """One request as the server received it."""

    api: str  # "openai" or "anthropic"
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    answered_with: Step | None = None

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def raw(self) -> str:
        """The body as JSON text (for "does this appear anywhere in what was sent")."""
        return json.dumps(self.body, ensure_ascii=False)

    def system_text(self) -> str:
        """The system instructions the request carries."""
        if self.api == "anthropic":
            system = self.body.get("system", "")
            if isinstance(system, list):
                return "\n".join(b.get("text", "") for b in system)
            return str(system)
        return "\n".join(
            _text(m.get("content"))
            for m in self.body.get("messages", [])
            if m.get("role") in ("system", "developer")
        )

    def user_text(self) -> str:
        """Text of the user turns (tool results excluded)."""
        parts = []
        for message in self.body.get("messages", []):
            if message.get("role") != "user":
                continue
            content = message.get("content")
            if isinstance(content, list):
                parts += [b.get("text", "") for b in content if b.get("type") == "text"]
            else:
                parts.append(str(content))
        return "\n".join(parts)

    def tool_results(self) -> list[str]:
        """What the tools returned, as the model sees it, oldest first."""
        results = []
        for message in self.body.get("messages", []):
            if self.api == "openai" and message.get("role") == "tool":
                results.append(_text(message.get("content")))
            elif self.api == "anthropic" and isinstance(message.get("content"), list):
                results += [
                    _text(b.get("content"))
                    for b in message["content"]
                    if b.get("type") == "tool_result"
                ]
        return results

    def tool_names(self) -> list[str]:
        """Names of the tools offered to the model."""
        tools = self.body.get("tools", [])
        if self.api == "openai":
            return [t["function"]["name"] for t in tools]
        return [t["name"] for t in tools]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict))
    return "" if content is None else str(content)


_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
    529: ("server_error", "overloaded"),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_DEFAULT_MESSAGES = {
    401: "Incorrect API key provided.",
    429: "Rate limit reached for requests. Please try again later.",
    529: "Overloaded",
}


class FakeModelServer:
    """The server; start it with the constructor, stop it with `close()`."""

    def __init__(self, host: str = "0.0.0.0"):
        self.requests: list[Recorded] = []
        self.unanswered: list[Recorded] = []
        self._queues: dict[str | None, deque[Step]] = {None: deque()}
        self._always: dict[str | None, Step] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd = ThreadingHTTPServer((host, 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def openai_url(self, host: str = "127.0.0.1") -> str:
        """base_url for OpenAI clients (the SDK appends /chat/completions)."""
        return f"http://{host}:{self.port}/v1"

    def anthropic_url(self, host: str = "127.0.0.1") -> str:
        """base_url for Anthropic clients (the SDK appends /v1/messages)."""
        return f"http://{host}:{self.port}"

    def script(self, *steps: Step, model: str | None = None) -> None:
        """Queue steps, for one model or (model=None) for any request."""
        with self._lock:
            self._queues.setdefault(model, deque()).extend(steps)

    def always(self, step: Step, model: str | None = None) -> None:
        """Answer every request of `model` (when its queue is empty) with `step`."""
        with self._lock:
            self._always[model] = step

    def for_model(self, model: str) -> list[Recorded]:
        return [r for r in self.requests if r.model == model]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def next_id(self) -> int:
        return next(self._ids)

    def take(self, recorded: Recorded) -> Step | None:
        with self._lock:
            self.requests.append(recorded)
            for key in (recorded.model, None):
                queue = self._queues.get(key)
                if queue:
                    step = queue.popleft()
                    break
                if key in self._always:
                    step = self._always[key]
                    break
            else:
                self.unanswered.append(recorded)
                return None
            recorded.answered_with = step
            return step


def _route(path: str) -> str | None:
    clean = path.split("?")[0].rstrip("/")
    if clean.endswith("/chat/completions"):
        return "openai"
    if clean.endswith("/messages"):
        return "anthropic"
    return None


def _answer(server: FakeModelServer, recorded: Recorded) -> tuple[int, dict[str, str], Any]:
    """(status, extra headers, JSON payload) for a request, or status 200 with a list of
    server-sent events as the payload for a streaming one."""
    api = recorded.api
    step = server.take(recorded)
    if step is None:
        return 500, {}, _error(api, 500, "fake model server: no scripted step left")
    if isinstance(step, Fail):
        message = step.message or _DEFAULT_MESSAGES.get(step.status, "error")
        extra = {"x-should-retry": "true" if step.retry else "false"}
        if step.status == 429:
            extra["retry-after"] = "0"
        return step.status, extra, _error(api, step.status, message)
    if recorded.body.get("stream"):
        events = _openai_events if api == "openai" else _anthropic_events
        return 200, {}, events(server, recorded.model, step)
    builder = _openai_reply if api == "openai" else _anthropic_reply
    return 200, {}, builder(server, recorded.model, step)


def _handler(server: FakeModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"_unparsed": raw.decode("utf-8", "replace")}
            api = _route(self.path)
            if api is None:
                self._json(404, {"error": {"message": f"fake server: no route {self.path}"}})
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = _answer(server, Recorded(api, self.path, headers, body))
            if isinstance(payload, list):
                self._stream(payload)
            else:
                self._json(status, payload, extra)

        def _json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", f"req_{server.next_id()}")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, events: list[tuple[str, Any]]) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")
            self.end_headers()
            self.close_connection = True
            for name, data in events:
                prefix = f"event: {name}\n" if name else ""
                payload = data if isinstance(data, str) else json.dumps(data)
                self.wfile.write(f"{prefix}data: {payload}\n\n".encode())
                self.wfile.flush()

    return Handler


def _error(api: str, status: int, message: str) -> dict[str, Any]:
    if api == "anthropic":
        kind = _ANTHROPIC_ERRORS.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind, code = _OPENAI_ERRORS.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _openai_reply(server: FakeModelServer, model: str, step: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": step.text or None}
    if step.calls:
        message["tool_calls"] = [
            {
                "id": f"call_{server.next_id()}",
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.args)},
            }
            for c in step.calls
        ]
    return {
        "id": f"chatcmpl-{server.next_id()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if step.calls else "stop",
                "logprobs": None,
            }
        ],
        "usage": _openai_usage(step),
    }


def _openai_usage(step: Reply) -> dict[str, Any]:
    prompt = step.usage.input + step.usage.cache_read
    return {
        "prompt_tokens": prompt,
        "completion_tokens": step.usage.output,
        "total_tokens": prompt + step.usage.output,
        "prompt_tokens_details": {"cached_tokens": step.usage.cache_read},
    }


def _openai_events(server: FakeModelServer, model: str, step: Reply) -> list[tuple[str, Any]]:
    base = {
        "id": f"chatcmpl-{server.next_id()}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[str, Any]:
        return "", {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": ""})]
    if step.text:
        events.append(chunk({"content": step.text}))
    for i, c in enumerate(step.calls):
        call_id = f"call_{server.next_id()}"
        events.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": json.dumps(c.args)},
                        }
                    ]
                }
            )
        )
    events.append(chunk({}, "tool_calls" if step.calls else "stop"))
    events.append(("", {**base, "choices": [], "usage": _openai_usage(step)}))
    events.append(("", "[DONE]"))
    return events


def _anthropic_blocks(server: FakeModelServer, step: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if step.text:
        blocks.append({"type": "text", "text": step.text})
    blocks += [
        {"type": "tool_use", "id": f"toolu_{server.next_id()}", "name": c.name, "input": c.args}
        for c in step.calls
    ]
    return blocks


def _anthropic_usage(step: Reply, output: int | None = None) -> dict[str, Any]:
    return {
        "input_tokens": step.usage.input,
        "output_tokens": step.usage.output if output is None else output,
        "cache_creation_input_tokens": step.usage.cache_write,
        "cache_read_input_tokens": step.usage.cache_read,
    }


def _anthropic_reply(server: FakeModelServer, model: str, step: Reply) -> dict[str, Any]:
    return {
        "id": f"msg_{server.next_id()}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _anthropic_blocks(server, step),
        "stop_reason": "tool_use" if step.calls else "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(step),
    }


def _anthropic_events(server: FakeModelServer, model: str, step: Reply) -> list[tuple[str, Any]]:
    message = _anthropic_reply(server, model, step)
    blocks = message.pop("content")
    start = {**message, "content": [], "stop_reason": None, "usage": _anthropic_usage(step, 1)}
    events: list[tuple[str, Any]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            opening = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            opening = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events += [
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": step.usage.output},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


__all__ = [
    "Call",
    "Fail",
    "FakeModelServer",
    "Recorded",
    "Reply",
    "Usage",
    "reply",
    "tool_call",
    "tool_calls",
]
