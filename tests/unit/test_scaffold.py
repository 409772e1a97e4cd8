"""`al new`'s project: every default written out, a bare Dockerfile, a runnable hello agent."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

from action_llama.config import ProjectConfig
from action_llama.config._base import dump
from action_llama.errors import ConfigError
from action_llama.images.plan import is_customized
from action_llama.project import load_project
from action_llama.project.scaffold import create_project

LOCAL_KEYS = ("image", "memory", "cpus", "timeout")
SCHEDULER_KEYS = (
    "maxReruns",
    "maxCallDepth",
    "workQueueSize",
    "resourceLockTimeout",
    "defaultAgentScale",
    "historyRetentionDays",
)


def commented_value(text: str, key: str) -> str:
    """The value written in the `# key = value   # note` comment line for `key`."""
    match = re.search(rf"^# {key} = (\S+)", text, re.MULTILINE)
    assert match, f"no commented default for {key}"
    return match[1]


def uncomment(text: str, keys: tuple[str, ...]) -> str:
    """`text` with the `# key = value` lines of `keys` turned into settings."""
    for key in keys:
        text = re.sub(rf"^# ({key} = )", r"\1", text, flags=re.MULTILINE)
    return text


@pytest.fixture
def new_project(tmp_path: Path) -> Path:
    target = tmp_path / "my-agents"
    create_project(target)
    return target


def test_creates_the_documented_files(tmp_path: Path) -> None:
    """create_project writes config.toml, Dockerfile, .gitignore and the hello agent's files."""
    target = tmp_path / "my-agents"
    created = create_project(target)
    expected = {
        "config.toml",
        "Dockerfile",
        ".gitignore",
        "agents/hello/SKILL.md",
        "agents/hello/config.toml",
        "agents/hello/test-script.sh",
    }
    assert {p.relative_to(target).as_posix() for p in created} == expected
    on_disk = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert on_disk == expected


def test_new_project_loads_with_all_defaults(new_project: Path) -> None:
    """The new project loads, and its settings are exactly the defaults."""
    project = load_project(new_project)
    assert project.config == ProjectConfig()
    assert list(project.agents) == ["hello"]


def test_config_comments_show_the_real_local_defaults(new_project: Path) -> None:
    """The commented [local] values in config.toml are the real defaults."""
    text = (new_project / "config.toml").read_text()
    defaults = dump(ProjectConfig().local)
    for key in LOCAL_KEYS:
        written = tomllib.loads(f"v = {commented_value(text, key)}")["v"]
        assert written == defaults[key], key


def test_config_comments_show_the_real_scheduler_defaults(new_project: Path) -> None:
    """The commented scheduler values in config.toml are the real defaults."""
    text = (new_project / "config.toml").read_text()
    defaults = dump(ProjectConfig(), by_alias=True)
    for key in SCHEDULER_KEYS:
        assert int(commented_value(text, key)) == defaults[key], key


def test_uncommenting_local_defaults_changes_nothing(new_project: Path) -> None:
    """Uncommenting the [local] default lines keeps the project loading with the same settings."""
    path = new_project / "config.toml"
    path.write_text(uncomment(path.read_text(), LOCAL_KEYS))
    assert load_project(new_project).config == ProjectConfig()


def test_uncommenting_scheduler_defaults_changes_nothing(new_project: Path) -> None:
    """Uncommenting the scheduler default lines keeps the project loading with the same settings."""
    path = new_project / "config.toml"
    path.write_text(uncomment(path.read_text(), SCHEDULER_KEYS))
    assert load_project(new_project).config == ProjectConfig()


def test_project_dockerfile_is_bare(new_project: Path) -> None:
    """The project Dockerfile is a bare FROM al-agent:latest, so it adds no image layer."""
    text = (new_project / "Dockerfile").read_text()
    assert "FROM al-agent:latest" in text
    assert not is_customized(text)


def test_hello_agent_is_complete(new_project: Path) -> None:
    """agents/hello has a described SKILL.md, a config.toml that loads and an executable script."""
    agent = load_project(new_project).agents["hello"]
    assert agent.skill.frontmatter.description
    assert agent.skill.body.strip()
    assert agent.config.params == {"greeting": "Hello"}
    assert agent.models == ()
    assert agent.timeout == 900
    assert agent.script is not None
    assert os.access(agent.script, os.X_OK)
    assert agent.script.read_text().startswith("#!/bin/sh\n")
    assert agent.dockerfile is None


def test_gitignore_ignores_state_dir(new_project: Path) -> None:
    """.gitignore lists .al/, where run history and logs go."""
    assert ".al/" in (new_project / ".gitignore").read_text().splitlines()


def test_empty_existing_directory_is_used(tmp_path: Path) -> None:
    """An existing but empty folder becomes the project."""
    create_project(tmp_path)
    assert (tmp_path / "config.toml").is_file()


def test_refuses_non_empty_directory_and_touches_nothing(tmp_path: Path) -> None:
    """A folder with files in it is refused and its files are left exactly as they were."""
    (tmp_path / "config.toml").write_text("mine = 1\n")
    (tmp_path / "notes.md").write_text("keep me\n")
    with pytest.raises(ConfigError) as info:
        create_project(tmp_path)
    assert "already exists and is not empty" in str(info.value)
    assert info.value.hint is not None
    assert "al new" in info.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "notes.md"]
    assert (tmp_path / "config.toml").read_text() == "mine = 1\n"
    assert (tmp_path / "notes.md").read_text() == "keep me\n"


def test_refuses_a_path_that_is_a_file(tmp_path: Path) -> None:
    """A target that is an existing file is refused and left as it was."""
    target = tmp_path / "taken"
    target.write_text("data\n")
    with pytest.raises(ConfigError):
        create_project(target)
    assert target.read_text() == "data\n"
