"""A new user's first minutes: `al new`, `al run hello`, `al logs`, as typed in a terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support import cleanup_project, run_al

pytestmark = [pytest.mark.docker]


@pytest.fixture
def new_project(tmp_path: Path, docker_client: Any, base_image: str) -> Any:
    result = run_al("new", "my-agents", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = (tmp_path / "my-agents").resolve()
    yield root
    cleanup_project(docker_client, root)


def test_new_project_runs_its_hello_agent_twice_and_remembers(new_project: Path) -> None:
    """The scaffolded hello agent runs with no API key; its second run sees the first one's
    note in /workspace; `al logs` shows the latest run after the container is gone."""
    first = run_al("run", "hello", cwd=new_project)
    assert first.returncode == 0, first.stderr
    assert "Hello from agent hello" in first.stdout
    assert "This is my first run" in first.stdout
    assert "The root file system is read-only" in first.stdout
    assert "hello: completed" in first.stderr

    second = run_al("run", "hello", "-p", str(new_project), "--prompt", "wave")
    assert second.returncode == 0, second.stderr
    assert "My previous run was" in second.stdout
    assert "You asked: wave" in second.stdout

    logs = run_al("logs", "hello", "-p", str(new_project))
    assert logs.returncode == 0
    assert "You asked: wave" in logs.stdout
    assert "manual · completed exit 0" in logs.stdout

    runs = run_al("logs", "hello", "-p", str(new_project), "--runs")
    assert len(runs.stdout.splitlines()) == 2

    first_id = runs.stdout.splitlines()[1].split()[1]
    older = run_al("logs", "hello", "-p", str(new_project), "--run", first_id, "--json")
    records = [json.loads(line) for line in older.stdout.splitlines()]
    assert any("This is my first run" in r["msg"] for r in records)

    tail = run_al("logs", "hello", "-p", str(new_project), "-n", "1", "--json")
    assert len(tail.stdout.splitlines()) == 1
    assert json.loads(tail.stdout)["msg"] == "run completed"


def test_unknown_run_id_is_a_clear_error(new_project: Path) -> None:
    """`al logs --run` with an id that does not exist says so, without a traceback."""
    result = run_al("logs", "hello", "-p", str(new_project), "--run", "deadbeef")
    assert result.returncode == 1
    assert 'No run with id "deadbeef"' in result.stderr
    assert "Traceback" not in result.stderr


def test_follow_prints_a_running_runs_lines_until_it_ends(new_project: Path) -> None:
    """`al logs -f` during a run keeps printing until the run finishes."""
    import subprocess
    import time

    from support import AL

    script = new_project / "agents/hello/test-script.sh"
    script.write_text("echo begin; sleep 2; echo middle; sleep 1; echo end\n")
    runner = subprocess.Popen(
        [AL, "run", "hello", "-p", str(new_project), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = run_al("logs", "hello", "-p", str(new_project), "--runs")
            if "running" in listed.stdout:
                break
            time.sleep(0.2)
        follow = run_al("logs", "hello", "-p", str(new_project), "-f", timeout=60)
    finally:
        runner.wait(timeout=60)
    assert follow.returncode == 0
    assert "end" in follow.stdout.split()
    assert "run completed" in follow.stdout
