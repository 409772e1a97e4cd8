"""A project whose files are as they were at its last load is not read and validated again:
the load comes from `.al/project.snapshot`, and any change of its files is seen."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from action_llama.errors import ConfigError
from action_llama.project import load_project

from support import ProjectFactory, skill

AGENT_CONFIG = "timeout = 60\n"


def settled(root: Path) -> Path:
    """Load `root` until it keeps its snapshot (files changed in the last second are not
    snapshotted yet, so this polls for about that long); the snapshot's path."""
    (root / ".al").mkdir(exist_ok=True)
    snapshot = root / ".al" / "project.snapshot"
    deadline = time.monotonic() + 10
    while not snapshot.exists():
        assert time.monotonic() < deadline, "no snapshot was kept"
        load_project(root)
        time.sleep(0.05)
    return snapshot


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project({"agents/a/SKILL.md": skill(), "agents/a/config.toml": AGENT_CONFIG})


def _load_in_new_process(root: Path) -> str:
    code = (
        "import sys; from action_llama.project import load_project; "
        f"agent = load_project({str(root)!r}).agents['a']; "
        "print(agent.timeout, 'pydantic' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return proc.stdout.strip()


def test_unchanged_project_is_not_validated_again(project: Path) -> None:
    """A new process loading an unchanged project gets the same agents without importing
    pydantic; before the snapshot, the same load validates."""
    assert _load_in_new_process(project) == "60 True"
    settled(project)
    assert _load_in_new_process(project) == "60 False"


def test_files_changed_within_the_last_second_are_not_snapshotted(project: Path) -> None:
    """A file changed a moment ago could change again without its stat changing (timestamps
    are coarse), so its load is not kept until it has settled."""
    (project / ".al").mkdir()
    (project / "agents" / "a" / "config.toml").write_text("timeout = 62\n")
    assert load_project(project).agents["a"].timeout == 62
    assert not (project / ".al" / "project.snapshot").exists()


def test_a_file_edited_after_the_snapshot_is_validated_again(project: Path) -> None:
    """Editing a file right after the snapshot was kept is seen by the next load, errors too."""
    settled(project)
    agent_config = project / "agents" / "a" / "config.toml"
    agent_config.write_text("timeout = 61\n")
    assert load_project(project).agents["a"].timeout == 61
    agent_config.write_text("timeout = -1\n")
    with pytest.raises(ConfigError, match=r'agents/a/config.toml: key "timeout"'):
        load_project(project)


def test_agent_folders_added_and_removed_are_seen(project: Path) -> None:
    settled(project)
    (project / "agents" / "b").mkdir()
    (project / "agents" / "b" / "SKILL.md").write_text(skill())
    assert sorted(load_project(project).agents) == ["a", "b"]
    settled(project)
    (project / "agents" / "b" / "SKILL.md").unlink()
    (project / "agents" / "b").rmdir()
    assert sorted(load_project(project).agents) == ["a"]


def _tampered(snapshot: Path, timeout: int) -> None:
    """Rewrite the snapshot (its key kept) with agent a's timeout changed."""
    key, project = pickle.loads(snapshot.read_bytes())
    agent = dataclasses.replace(project.agents["a"], timeout=timeout)
    project = dataclasses.replace(project, agents={"a": agent})
    snapshot.write_bytes(pickle.dumps((key, project)))


def test_snapshot_others_may_write_is_not_used(project: Path) -> None:
    """A snapshot writable by the group or by anyone is ignored: the files are read."""
    snapshot = settled(project)
    _tampered(snapshot, 999)
    snapshot.chmod(0o600)
    assert load_project(project).agents["a"].timeout == 999  # this user's own: taken
    for mode in (0o620, 0o606):
        _tampered(snapshot, 999)
        snapshot.chmod(mode)
        assert load_project(project).agents["a"].timeout == 60


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_planted_snapshot_cannot_run_code(project: Path, tmp_path: Path) -> None:
    """A snapshot naming anything but the project's own types is not loaded (nothing runs)
    and the project is read from its files."""
    snapshot = settled(project)
    key, _ = pickle.loads(snapshot.read_bytes())
    marker = tmp_path / "ran"
    planted = pickle.dumps((key, _RunsCode(marker)))
    snapshot.write_bytes(planted)
    snapshot.chmod(0o600)
    assert load_project(project).agents["a"].timeout == 60
    assert not marker.exists()
    pickle.loads(planted)  # what the snapshot would have done, unguarded
    assert marker.exists()
