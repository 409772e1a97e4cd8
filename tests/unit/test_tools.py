"""The model's tools without a model: bash, read, write and edit on a real file system."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from action_llama.agent.logproto import Logger
from action_llama.agent.tools import ABORT_MESSAGE, AuthAbort, Toolbox, ToolError, bound

T = TypeVar("T")

#: A stand-in for the helper al-bash-init.sh (same contract: setenv appends to $AL_ENV_FILE,
#: which is sourced before each command).
INIT = """
setenv() { printf "export %s='%s'\\n" "$1" "$2" >> "$AL_ENV_FILE"; export "$1=$2"; }
[ -f "$AL_ENV_FILE" ] && . "$AL_ENV_FILE"
:
"""


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Box:
    """A toolbox in a temp work dir, with its log lines at hand."""

    def __init__(self, tmp: Path, init: bool = True, max_output: int = 30_000):
        self.work = tmp / "work"
        self.bin = tmp / "bin"
        self.work.mkdir()
        self.bin.mkdir()
        if init:
            (self.bin / "al-bash-init.sh").write_text(INIT)
        self.stream = io.StringIO()
        env = {
            "PATH": os.environ["PATH"],
            "AL_BIN_DIR": str(self.bin),
            "AL_ENV_FILE": str(self.work / ".al-env.sh"),
            "RUN_SECRET_NAME": "visible-to-commands",
        }
        self.tools = Toolbox(Logger(self.stream), self.work, env, max_output=max_output)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


def test_bash_runs_in_the_work_dir_with_the_runs_environment(box: Box) -> None:
    """Commands run in the work dir and see the run's variables; stderr comes with stdout."""
    out = run(box.tools.bash("pwd; echo $RUN_SECRET_NAME; echo oops >&2"))
    assert out == f"{box.work}\nvisible-to-commands\noops"


def test_bash_reports_a_non_zero_exit_code(box: Box) -> None:
    """A failing command's output ends with its exit code; an empty output says so."""
    assert run(box.tools.bash("exit 3")) == "(no output)\n[exit code 3]"
    assert run(box.tools.bash("true")) == "(no output)"


def test_setenv_persists_between_calls_through_the_init_helper(box: Box) -> None:
    """A variable set with setenv in one call is there in the next (al-bash-init.sh contract)."""
    run(box.tools.bash("setenv GREETING 'hello there'"))
    assert run(box.tools.bash('echo "$GREETING"')) == "hello there"


def test_without_the_init_helper_the_env_file_is_still_sourced(tmp_path: Path) -> None:
    """With no al-bash-init.sh, $AL_ENV_FILE itself is sourced before each command."""
    box = Box(tmp_path, init=False)
    (box.work / ".al-env.sh").write_text("export KEPT=yes\n")
    assert run(box.tools.bash("echo $KEPT")) == "yes"


def test_long_output_is_cut_in_the_middle(tmp_path: Path) -> None:
    """Output past the bound keeps its start and end, with a note of what was cut."""
    box = Box(tmp_path, max_output=3000)
    out = run(box.tools.bash("echo START; head -c 100000 /dev/zero | tr '\\0' x; echo; echo END"))
    assert out.startswith("START\n")
    assert out.endswith("END")
    assert "bytes cut" in out
    assert len(out) < 3100


def test_a_command_past_its_timeout_is_killed(box: Box) -> None:
    """A command running past its timeout is killed, with a note and exit code 137."""
    started = time.monotonic()
    out = run(box.tools.bash("echo begun; sleep 30", timeout=1))
    assert time.monotonic() - started < 5
    assert out.startswith("begun")
    assert "[timed out after 1s; the command was killed]" in out
    assert out.endswith("[exit code 137]")


def test_a_background_job_holding_the_output_does_not_block_the_call(box: Box) -> None:
    """A call returns soon after its command exits, even if a background job keeps running."""
    started = time.monotonic()
    out = run(box.tools.bash("(sleep 4; echo late) & echo now"))
    assert time.monotonic() - started < 5
    assert out == "now"


def test_cancelling_a_call_kills_its_command(box: Box) -> None:
    """A stopped session (its task cancelled) leaves no command running."""
    began, marker = box.work / "began", box.work / "alive"

    async def scenario() -> None:
        task = asyncio.ensure_future(box.tools.bash(f"touch {began}; sleep 2; touch {marker}"))
        while not began.exists():  # noqa: ASYNC110 (a file appearing sets no event)
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    # The command is gone, not merely slower than the test: no process is left to touch it.
    assert not [p for p in Path("/proc").glob("[0-9]*") if str(marker) in _cmdline(p)]
    assert not marker.exists()


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_write_then_read_with_offset_and_limit(box: Box) -> None:
    """write creates parent dirs; read returns lines from an offset, saying where to go on."""
    assert run(box.tools.write("deep/dir/f.txt", "one\ntwo\nthree\n")) == (
        "Wrote 14 bytes to deep/dir/f.txt"
    )
    assert (box.work / "deep/dir/f.txt").read_text() == "one\ntwo\nthree\n"
    assert run(box.tools.read("deep/dir/f.txt")) == "one\ntwo\nthree\n"
    part = run(box.tools.read(str(box.work / "deep/dir/f.txt"), offset=2, limit=1))
    assert part == "two\n\n[lines 2-2 of 3; read on with offset=3]"


def test_read_refuses_missing_and_binary_files(box: Box) -> None:
    """A missing or binary file is a tool error the model sees."""
    with pytest.raises(ToolError, match="not a file"):
        run(box.tools.read("nope.txt"))
    (box.work / "blob").write_bytes(b"\x00\x01\x02")
    with pytest.raises(ToolError, match="binary"):
        run(box.tools.read("blob"))


def test_edit_replaces_exactly_one_occurrence(box: Box) -> None:
    """edit changes the one place old_text occurs."""
    (box.work / "f.py").write_text("a = 1\nb = 2\n")
    assert run(box.tools.edit("f.py", "b = 2", "b = 3")) == "Edited f.py: replaced 1 occurrence(s)"
    assert (box.work / "f.py").read_text() == "a = 1\nb = 3\n"


def test_edit_refuses_missing_and_ambiguous_text(box: Box) -> None:
    """Text not found, or found more than once without replace_all, is an error; the file is
    untouched."""
    (box.work / "f.txt").write_text("x x\n")
    with pytest.raises(ToolError, match="was not found"):
        run(box.tools.edit("f.txt", "y", "z"))
    with pytest.raises(ToolError, match="occurs 2 times"):
        run(box.tools.edit("f.txt", "x", "z"))
    assert (box.work / "f.txt").read_text() == "x x\n"
    assert run(box.tools.edit("f.txt", "x", "z", replace_all=True)).endswith("2 occurrence(s)")
    assert (box.work / "f.txt").read_text() == "z z\n"


def test_each_call_is_one_log_line_without_contents(box: Box) -> None:
    """One `tool` line per call: name, bounded args, exit code, duration; written content
    and command output of a successful call are not logged."""
    run(box.tools.write("f.txt", "secret-content"))
    run(box.tools.bash("echo " + "y" * 500))
    run(box.tools.bash("echo failing-output; exit 4"))
    lines = box.lines()
    assert [line["msg"] for line in lines] == ["tool", "tool", "tool"]
    assert lines[0]["args"] == {"path": "f.txt", "length": 14}
    assert "secret-content" not in json.dumps(lines)
    assert len(lines[1]["args"]["command"]) == 200
    assert "result" not in lines[1]
    assert lines[2]["exitCode"] == 4
    assert lines[2]["level"] == "warn"
    assert "failing-output" in lines[2]["result"]
    assert all(isinstance(line["durationMs"], int) for line in lines)


def test_third_auth_failure_aborts_the_run(box: Box) -> None:
    """Failures saying "Permission denied" (any tool) count; the third aborts with the
    original's message; successes and other failures do not count."""
    run(box.tools.bash("echo 'Permission denied' >&2; exit 1"))
    run(box.tools.bash("echo 'permission denied, but fine'"))
    run(box.tools.bash("echo 'no such file'; exit 1"))
    with pytest.raises(ToolError):
        run(box.tools.edit("missing.txt", "a", "b"))
    run(box.tools.bash("echo \"fatal: Authentication failed for 'https://x'\" >&2; exit 128"))
    assert box.tools.auth_failures == 2
    with pytest.raises(AuthAbort):
        run(box.tools.bash("echo 'remote: Permission to x denied to bot.' >&2; exit 1"))
    assert box.lines()[-1]["msg"] == ABORT_MESSAGE


def test_bound_keeps_short_text() -> None:
    """Text within the bound is unchanged; longer text keeps start and end."""
    assert bound("abc", 10) == "abc"
    cut = bound("a" * 50 + "b" * 50, 30)
    assert cut.startswith("a" * 10)
    assert cut.endswith("b" * 20)
    assert "70 characters cut" in cut
