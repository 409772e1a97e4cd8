"""Agents that cannot run yet are refused before anything is built or started."""

from __future__ import annotations

from pathlib import Path

from support import run_al, write_files


def test_agent_without_script_or_model_session_gets_not_yet_configured(tmp_path: Path) -> None:
    """No test-script.sh and no model sessions yet: a clear error naming the fix, exit 1,
    even with Docker unreachable (nothing is started)."""
    write_files(tmp_path, {"config.toml": "", "agents/thinker/SKILL.md": "Think.\n"})
    result = run_al(
        "run", "thinker", "-p", str(tmp_path), env={"DOCKER_HOST": "unix:///nonexistent.sock"}
    )
    assert result.returncode == 1
    assert "not yet configured" in result.stderr
    assert "test-script.sh" in result.stderr
    assert "Docker" not in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".al").exists()


def test_host_user_agent_is_refused_clearly(tmp_path: Path) -> None:
    """A host-user agent gets an error saying this runtime is not available yet."""
    write_files(
        tmp_path,
        {
            "config.toml": "",
            "agents/local/SKILL.md": "Work.\n",
            "agents/local/test-script.sh": "true\n",
            "agents/local/config.toml": '[runtime]\ntype = "host-user"\n',
        },
    )
    result = run_al("run", "local", "-p", str(tmp_path))
    assert result.returncode == 1
    assert "host-user" in result.stderr
    assert "Traceback" not in result.stderr
