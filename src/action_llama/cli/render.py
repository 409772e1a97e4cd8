"""Terminal output shared by commands: errors, hints, build progress."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from action_llama.errors import ActionLlamaError


def use_color(stream: TextIO) -> bool:
    return stream.isatty()


def _paint(text: str, code: str, stream: TextIO) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if use_color(stream) else text


def record_printer(as_json: bool, stream: TextIO = sys.stdout) -> Callable[[dict[str, Any]], None]:
    """Prints log records as they come: human lines on a terminal, or raw JSON lines."""
    from action_llama.runs.records import format_record

    color = use_color(stream)

    def emit(record: dict[str, Any]) -> None:
        if as_json:
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            stream.write(format_record(record, color=color) + "\n")
        stream.flush()

    return emit


def print_error(exc: ActionLlamaError, stream: TextIO = sys.stderr) -> None:
    """`error: …` then `hint: …`, the only shape user-facing failures take."""
    stream.write(f"{_paint('error:', '1;31', stream)} {exc}\n")
    if exc.hint:
        lines = exc.hint.splitlines()
        stream.write(f"{_paint('hint:', '1;33', stream)} {lines[0]}\n")
        for line in lines[1:]:
            stream.write(f"      {line}\n")


def status(text: str, stream: TextIO = sys.stderr) -> None:
    stream.write(text + "\n")
    stream.flush()


class ConsoleEvents:
    """Build progress on stderr: one line per layer state, plus build steps (all output with
    `verbose`)."""

    def __init__(self, *, verbose: bool = False, stream: TextIO = sys.stderr):
        self.verbose = verbose
        self.stream = stream

    def layer(self, title: str, status: str) -> None:
        self.stream.write(f"{_paint(f'[{title}]', '1;36', self.stream)} {status}\n")
        self.stream.flush()

    def line(self, title: str, text: str) -> None:
        if self.verbose or text.startswith(("Step ", "I: Base system")):
            self.stream.write(_paint(f"  {text}", "2", self.stream) + "\n")
            self.stream.flush()


class QuietEvents:
    """Nothing but errors (`--quiet`)."""

    def layer(self, title: str, status: str) -> None:
        pass

    def line(self, title: str, text: str) -> None:
        pass


def reported(action: Callable[[], int | None]) -> int | None:
    """Run `action`; a user-fixable error becomes `error:`/`hint:` and its exit code, Ctrl-C
    exit 130 (tracebacks only with --debug / AL_DEBUG)."""
    try:
        return action()
    except ActionLlamaError as exc:
        if os.environ.get("AL_DEBUG"):
            raise
        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
