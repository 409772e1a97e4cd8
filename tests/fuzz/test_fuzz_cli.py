"""Fuzzing the commands that take the most user input: `al creds` (names, --field values and
files, stdin bytes) and `al logs` (any stored log, any -n). Only the project's own errors come
out, with exit 1 (2 for usage errors), nothing lands outside the credential store, and no
half-written instance is left in it. A few examples also run as `al` itself, in a process."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from action_llama.cli.app import app
from action_llama.credentials.types import BUILTIN
from action_llama.errors import ActionLlamaError
from action_llama.runs.store import RunStore

from fuzzing import NASTY_TEXT, TEXT, budget, no_traceback
from support import AL, skill, write_files

pytestmark = [pytest.mark.fuzz]

REFS = st.one_of(
    st.sampled_from(sorted(BUILTIN)),
    st.builds(lambda t, i: f"{t}:{i}", st.sampled_from(sorted(BUILTIN)), TEXT),
    TEXT,
)
FIELDS = st.one_of(
    st.builds(
        lambda n, v: f"{n}={v}", st.sampled_from(["token", "secret", "id_rsa", "key", ""]), TEXT
    ),
    st.builds(
        lambda n, p: f"{n}=@{p}",
        st.sampled_from(["token", "id_rsa"]),
        st.sampled_from(
            ["LOOP", "DIR", "BINARY", "BIG", "/" + "x" * 5000, "~nobody-here/x", "", "\x00"]
        ),
    ),
    TEXT,
)


def invoke(args: list[str], stdin: bytes, env: dict[str, str]) -> Any:
    """`al ARGS` in this process: (exit code, output), the way `al` reports errors."""
    result = CliRunner().invoke(app, args, input=stdin, env=env)
    error = result.exception
    if isinstance(error, ActionLlamaError):
        return error.exit_code, str(error)
    assert error is None or isinstance(error, SystemExit), (args, repr(error))
    return result.exit_code, result.output


def in_folder(field: str, inputs: Path) -> str:
    """`name=@FILE` with a relative FILE made a file of `inputs` (LOOP, DIR, BINARY, BIG)."""
    name, at, path = field.partition("=@")
    if not at or path.startswith(("/", "~")):
        return field
    return f"{name}=@{inputs}/{path}"


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@budget(200)
@given(
    command=st.sampled_from(["add", "add", "add", "rm", "ls", "types"]),
    ref=REFS,
    fields=st.lists(FIELDS, max_size=3),
    force=st.booleans(),
    stdin=st.one_of(
        st.binary(max_size=50), NASTY_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))
    ),
)
def test_creds_commands_exit_with_our_errors_and_write_only_the_store(
    command: str, ref: str, fields: list[str], force: bool, stdin: bytes
) -> None:
    """Any `al creds` command line and stdin: exit 0, 1 (our error) or 2 (usage); files
    appear only inside the store, never a `.partial` or `.old` instance."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        store = base / "store"
        inputs = base / "inputs"
        inputs.mkdir()
        os.symlink(inputs / "LOOP", inputs / "LOOP")
        (inputs / "DIR").mkdir()
        (inputs / "BINARY").write_bytes(b"\xff\xfe")
        (inputs / "BIG").write_bytes(b"x" * (1024 * 1024 + 1))
        before = files_under(base)
        args = ["creds", command]
        if command in ("add", "rm"):
            args.append(ref)
        if command == "add":
            for field in fields:
                args += ["--field", in_folder(field, inputs)]
            args += ["--force"] if force else []
        if command == "types":
            args.append(ref)
        code, output = invoke(args, stdin, {"AL_CREDENTIALS_DIR": str(store), "AL_DEBUG": ""})
        assert code in (0, 1, 2), output
        no_traceback(output)
        created = files_under(base) - before
        assert all(path.startswith("store") for path in created), created
        assert not [p for p in created if p.endswith((".partial", ".old"))], created


LOG_LINES = st.one_of(
    st.fixed_dictionaries(
        {"ts": st.one_of(st.integers(), st.floats(), TEXT), "level": TEXT, "msg": TEXT},
        optional={"source": st.sampled_from(["script", "hooks.pre", "x"]), "extra": TEXT},
    ).map(lambda r: json.dumps(r, ensure_ascii=False).encode()),
    st.binary(max_size=60),
    st.sampled_from([b"[" * 5000, b"{}", b"null", b'"text"', b"\xe2\x82"]),
)


@budget(80)
@given(
    lines=st.lists(LOG_LINES, max_size=8),
    cut=st.integers(min_value=0, max_value=3),
    count=st.one_of(st.integers(min_value=-5, max_value=200), st.just(10**20)),
    extra=st.sampled_from([[], ["--json"], ["--runs"]]),
)
def test_logs_of_any_stored_log_show_or_say_why(
    lines: list[bytes], cut: int, count: int, extra: list[str]
) -> None:
    """A stored log of any bytes (cut anywhere, JSON of any shape) and any -n: `al logs`
    shows it (exit 0) or refuses -n (usage, exit 2)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "proj"
        write_files(root, {"config.toml": "", "agents/hello/SKILL.md": skill()})
        runs = RunStore(root / ".al")
        runs.start("run1", "hello", "manual", None, "docker", None)
        runs.finish("run1", "completed", 0, None)
        runs.close()
        log = root / ".al/logs/hello/run1.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        data = b"\n".join(lines)
        log.write_bytes(data[: len(data) - cut] if cut < len(data) else data)
        args = ["logs", "hello", "-p", str(root), "--run", "run1", "--no-follow", "-n", str(count)]
        code, output = invoke([*args, *extra], b"", {"AL_DEBUG": ""})
        assert code == (2 if count < 0 else 0), output
        no_traceback(output)


@budget(6)
@given(
    ref=REFS,
    stdin=st.one_of(st.binary(max_size=30), st.just(b"\xff\n")),
)
def test_al_itself_reads_stdin_bytes_and_names_as_the_user_types_them(
    ref: str, stdin: bytes
) -> None:
    """`al creds add REF` as a process (its own stdin decoding, its own exit): 0 or 1, never a
    traceback (a few examples: each starts an interpreter)."""
    if "\x00" in ref:
        return  # the OS cannot pass a NUL in an argument
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AL_CREDENTIALS_DIR": str(Path(tmp) / "store")}
        env.pop("AL_DEBUG", None)
        done = subprocess.run(
            [AL, "creds", "add", ref, "--force"],
            input=stdin,
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode in (0, 1, 2), done.stderr
        no_traceback(done.stderr.decode(errors="replace"))


@budget(60)
@given(name=st.one_of(TEXT, st.sampled_from(["LOOP/x", "FILE", "FILE/x", "DIR", "x" * 300])))
def test_new_in_any_folder_makes_a_project_or_says_why(name: str) -> None:
    """`al new NAME` (a link loop, a file, a folder with files, a name too long, anything
    typed): a project, or exit 1 (2 for usage) naming the problem; never a traceback."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.symlink(base / "LOOP", base / "LOOP")
        (base / "FILE").write_text("x")
        (base / "DIR").mkdir()
        (base / "DIR" / "kept").write_text("x")
        if "\x00" in name or name.startswith("/") or ".." in Path(name).parts:
            return  # no argument holds a NUL; and the project stays inside the temp dir
        code, output = invoke(["new", str(base / name)], b"", {"AL_DEBUG": ""})
        assert code in (0, 1, 2), output
        no_traceback(output)
        assert (base / "DIR" / "kept").read_text() == "x"
