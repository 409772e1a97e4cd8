"""The run's exit code from the agent's own code and the helper commands' signal files."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from action_llama.agent.logproto import Logger
from action_llama.agent.signals import decide


def decided(code: int, files: dict[str, str], tmp_path: Path) -> tuple[int, list[dict[str, Any]]]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    stream = io.StringIO()
    result = decide(code, tmp_path, Logger(stream))
    return result, [json.loads(line) for line in stream.getvalue().splitlines()]


def test_no_signal_is_a_plain_success(tmp_path: Path) -> None:
    """Nothing signalled: exit 0, nothing logged."""
    assert decided(0, {}, tmp_path) == (0, [])


def test_a_failure_of_the_agent_wins_over_every_signal(tmp_path: Path) -> None:
    """A session or script that failed keeps its code (abort 1, exhausted 12…)."""
    code, lines = decided(12, {"exit": "0", "rerun": "", "return": "v"}, tmp_path)
    assert (code, lines) == (12, [])


def test_exit_signal_gives_its_code_and_reason(tmp_path: Path) -> None:
    """`al-exit 10 bad token` ends the run with 10, logged as a signal-result."""
    code, lines = decided(0, {"exit": "10 bad token\n", "rerun": ""}, tmp_path)
    assert code == 10
    assert lines[-1]["msg"] == "signal-result"
    assert (lines[-1]["type"], lines[-1]["exitCode"], lines[-1]["reason"]) == (
        "exit",
        10,
        "bad token",
    )


@pytest.mark.parametrize("text", ["abc", "999"])
def test_unreadable_exit_code_is_15(text: str, tmp_path: Path) -> None:
    """An exit file without a code 0-255 means "unrecoverable" (15), with a warning."""
    code, lines = decided(0, {"exit": text}, tmp_path)
    assert code == 15
    assert lines[0]["level"] == "warn"


def test_rerun_signal_is_42(tmp_path: Path) -> None:
    """`al-rerun` makes the run end with 42."""
    code, lines = decided(0, {"rerun": "", "return": "x"}, tmp_path)
    assert code == 42
    assert lines == [{**lines[0], "msg": "signal-result", "type": "rerun"}]


def test_return_value_is_reported_cut_at_1000(tmp_path: Path) -> None:
    """The returned value is logged (≤ 1000 chars, trailing newline dropped); exit 0."""
    code, lines = decided(0, {"return": "v" * 1500 + "\n"}, tmp_path)
    assert code == 0
    assert lines[0]["type"] == "return"
    assert lines[0]["value"] == "v" * 1000


def test_signal_files_are_removed(tmp_path: Path) -> None:
    """The files are gone after the decision, whatever it was."""
    decided(1, {"exit": "3", "rerun": "", "return": "x", "status": "busy"}, tmp_path)
    assert list(tmp_path.iterdir()) == []
