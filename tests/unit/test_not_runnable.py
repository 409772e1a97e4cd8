"""Agents that cannot run yet are refused before anything is built or started."""

from __future__ import annotations

from pathlib import Path

from support import run_al, write_files


def test_agent_without_script_or_model_session_gets_not_yet_configured(tmp_path: Path) -> None:
    """No test-script.sh and no model sessions yet: a clear error naming the fix, exit 1,
    even with Docker unreachable (nothing is started); `al logs` says why afterwards."""
    write_files(tmp_path, {"config.toml": "", "agents/thinker/SKILL.md": "Think.\n"})
    result = run_al(
        "run", "thinker", "-p", str(tmp_path), env={"DOCKER_HOST": "unix:///nonexistent.sock"}
    )
    assert result.returncode == 1
    assert "not yet configured" in result.stderr
    assert "test-script.sh" in result.stderr
    assert "Docker" not in result.stderr
    assert "Traceback" not in result.stderr
    logs = run_al("logs", "thinker", "-p", str(tmp_path))
    assert "not yet configured" in logs.stdout
    assert "· error ·" in logs.stdout
