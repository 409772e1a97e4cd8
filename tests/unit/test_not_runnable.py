"""Agents that cannot run are refused before anything is built or started."""

from __future__ import annotations

from pathlib import Path

from support import run_al, write_files


def test_agent_without_script_or_model_is_refused_with_the_fix(tmp_path: Path) -> None:
    """No test-script.sh and no model: a clear error naming both fixes, exit 1,
    even with Docker unreachable (nothing is started); `al logs` says why afterwards."""
    write_files(tmp_path, {"config.toml": "", "agents/thinker/SKILL.md": "Think.\n"})
    result = run_al(
        "run", "thinker", "-p", str(tmp_path), env={"DOCKER_HOST": "unix:///nonexistent.sock"}
    )
    assert result.returncode == 1
    assert "has no model to run a session with" in result.stderr
    assert 'models = ["sonnet"]' in result.stderr
    assert "test-script.sh" in result.stderr
    assert "Docker" not in result.stderr
    assert "Traceback" not in result.stderr
    logs = run_al("logs", "thinker", "-p", str(tmp_path))
    assert "has no model" in logs.stdout
    assert "· error ·" in logs.stdout
