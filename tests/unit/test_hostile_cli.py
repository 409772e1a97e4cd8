"""`al` given hostile input on its command line, stdin or state files: an `error:` line, exit 1
and nothing half-written. Never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from test_creds_cli import Creds, assert_error
from test_creds_cli import creds as creds  # the fixture, shared with that module

from action_llama.runs.store import RunStore

from support import AL, skill, write_files

LOOP = "loop"


def test_stdin_that_is_not_utf8_is_refused_and_leaves_nothing(creds: Creds) -> None:
    """Bytes that are not UTF-8 on stdin are an error, and no .partial folder is left."""
    result = subprocess.run(
        [*creds_command(), "add", "github_token", "--force"],
        input=b"\xff\n",
        capture_output=True,
        env=creds.env,
        timeout=60,
        check=False,
    )
    stderr = result.stderr.decode()
    assert (result.returncode, stderr.splitlines()[0]) == (
        1,
        "error: The value on stdin is not UTF-8 text.",
    )
    assert not (creds.root / "github_token").exists() or not any(
        (creds.root / "github_token").iterdir()
    )


def creds_command() -> list[str]:
    return [AL, "creds"]


@pytest.mark.parametrize(
    ("path", "says"),
    [
        (LOOP, "is a symbolic link loop"),
        ("/" + "x" * 5000, "its name is too long"),
        ("~nosuchuser/key", "cannot be found"),
        (".", "is a folder, not a file"),
    ],
)
def test_field_from_a_file_that_cannot_be_read_is_named(
    creds: Creds, tmp_path: Path, path: str, says: str
) -> None:
    """--field token=@PATH at a link loop, a too-long name or a folder: the error says which."""
    if path == LOOP:
        path = str(tmp_path / LOOP)
        os.symlink(path, path)
    result = creds("add", "github_token", "--field", f"token=@{path}")
    assert_error(result, says)
    assert len(result.stderr) < 1000  # a 5,000-character path is not repeated whole


@pytest.mark.parametrize(
    "ref", ["github_token:..", "github_token:.x", "github_token:-x", f"github_token:{'a' * 65}"]
)
def test_instance_names_that_are_not_names_are_refused(creds: Creds, ref: str) -> None:
    """Instances that would be paths, hidden files or too long for the file system."""
    assert_error(creds("add", ref, stdin="value"), "is not a credential reference")
    assert_error(creds("rm", ref), "is not a credential reference")


def test_a_file_where_the_store_needs_a_folder_is_named(creds: Creds) -> None:
    """A file at <store>/github_token: the error names it (not "fix its permissions")."""
    creds.root.mkdir()
    (creds.root / "github_token").write_text("oops")
    result = creds("add", "github_token", stdin="value")
    assert_error(result, "is damaged", str(creds.root / "github_token"))
    assert "permission" not in result.stderr


@pytest.fixture
def logged_project(tmp_path: Path) -> tuple[Path, str]:
    """A project with one stored run of hello whose log ends inside a UTF-8 character."""
    root = tmp_path / "proj"
    write_files(root, {"config.toml": "", "agents/hello/SKILL.md": skill()})
    store = RunStore(root / ".al")
    store.start("abcd1234", "hello", "manual", None, "docker", None)
    store.finish("abcd1234", "completed", 0, None)
    store.close()
    log = root / ".al/logs/hello/abcd1234.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    whole = json.dumps({"ts": 1, "level": "info", "msg": "héllo"}).encode()
    huge_ts = json.dumps({"ts": 10**30, "level": "info", "msg": "far"}).encode()
    log.write_bytes(whole + b"\n" + huge_ts + b"\n" + '{"msg": "é'.encode()[:-1])
    return root, "abcd1234"


@pytest.mark.parametrize(
    "args", [["-n", "100000000000000000000"], ["-n", "100000000000000000000", "--runs"], []]
)
def test_logs_of_a_cut_log_with_huge_numbers(
    al: object, logged_project: tuple[Path, str], args: list[str]
) -> None:
    """A log cut inside a character, a record with a timestamp no clock can show, and -n
    beyond any integer SQLite holds: the log is shown, exit 0."""
    root, run_id = logged_project
    result = al("logs", "hello", "-p", str(root), "--run", run_id, "--no-follow", *args)  # type: ignore[operator]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if "--runs" not in args:
        assert "héllo" in result.stdout
        assert "far" in result.stdout


def test_negative_line_count_is_a_usage_error(al: object, logged_project: tuple[Path, str]) -> None:
    """-n -5 is refused by the option parser (exit 2), naming the option."""
    root, _ = logged_project
    result = al("logs", "hello", "-p", str(root), "-n", "-5")  # type: ignore[operator]
    assert result.returncode == 2
    assert "-n" in result.stderr


@pytest.mark.parametrize("pid", [0, -1, 10**30, "x", None, "other"])
def test_a_stale_daemon_marker_means_no_scheduler(al: object, tmp_path: Path, pid: object) -> None:
    """.al/daemon.json naming pid 0, -1, 10**30, garbage, or a live process that is not a
    scheduler of this project: `al stat` says no scheduler runs (not "No gateway API key")."""
    root = tmp_path / "proj"
    write_files(root, {"config.toml": "", "agents/hello/SKILL.md": skill()})
    marker = root / ".al/daemon.json"
    marker.parent.mkdir()
    live = os.getppid() if pid == "other" else pid
    marker.write_text(json.dumps({"pid": live, "port": 1}))
    result = al("stat", "-p", str(root))  # type: ignore[operator]
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: No scheduler is running for {root}."), result.stderr
