"""`al` as a user types it, getting things wrong: `error:`/`hint:` on stderr, never a traceback.

None of these reach Docker: the `al` fixture points DOCKER_HOST at a socket that does not exist.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from action_llama import __version__
from action_llama.project.scaffold import create_project

RunAl = Callable[..., subprocess.CompletedProcess[str]]  # the `al` fixture


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project as `al new` writes it, with its hello agent."""
    root = tmp_path / "proj"
    create_project(root)
    return root


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 1, `error:` first on stderr, every fragment shown, no traceback anywhere."""
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_version_prints_package_version(al: RunAl) -> None:
    """`al --version` prints the package version and exits 0."""
    result = al("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"al {__version__}"


@pytest.mark.parametrize("command", ["run", "logs"])
def test_bad_toml_is_reported_with_file_and_hint(al: RunAl, project: Path, command: str) -> None:
    """Broken TOML in config.toml stops `al run`/`al logs` with the file, the line and a hint."""
    (project / "config.toml").write_text("[local]\nmemory = 4g\n")
    result = al(command, "hello", cwd=project)
    assert_user_error(result, "error: config.toml: invalid TOML", "line 2", "\nhint: ")


@pytest.mark.parametrize("command", ["run", "logs"])
def test_unknown_key_suggests_the_right_one(al: RunAl, project: Path, command: str) -> None:
    """A misspelt agent key is named with a did-you-mean hint."""
    (project / "agents" / "hello" / "config.toml").write_text("timout = 60\n")
    result = al(command, "hello", "-p", str(project))
    assert_user_error(
        result,
        'error: agents/hello/config.toml: unknown key "timout"',
        'hint: did you mean "timeout"?',
    )


def test_several_problems_are_each_listed(al: RunAl, project: Path) -> None:
    """Problems in two files are all shown, one per line."""
    (project / "config.toml").write_text('[local]\nmemmory = "4g"\n')
    (project / "agents" / "hello" / "config.toml").write_text("timout = 60\n")
    result = al("run", "hello", cwd=project)
    assert_user_error(
        result,
        "error: 2 problems in the project files:",
        '  - config.toml: unknown key "local.memmory"',
        '  - agents/hello/config.toml: unknown key "timout"',
    )


@pytest.mark.parametrize("command", ["run", "logs"])
def test_unknown_agent_lists_the_agents(al: RunAl, project: Path, command: str) -> None:
    """`al run nope` / `al logs nope` say the agent is not found and list those that exist."""
    result = al(command, "nope", cwd=project)
    assert_user_error(result, 'Agent "nope" not found', "hint: Available agents: hello")


def test_misspelt_agent_suggests_the_close_one(al: RunAl, project: Path) -> None:
    """`al run helo` suggests hello."""
    assert_user_error(al("run", "helo", cwd=project), 'hint: Did you mean "hello"?')


@pytest.mark.parametrize("command", ["run", "logs"])
def test_missing_project_dir_is_named(al: RunAl, tmp_path: Path, command: str) -> None:
    """-p at a folder that does not exist names it and suggests `al new`."""
    missing = tmp_path / "nowhere"
    result = al(command, "hello", "-p", str(missing))
    assert_user_error(result, f'"{missing}" does not exist', "hint: ", "al new")


def test_agent_dir_as_project_points_at_root(al: RunAl, project: Path) -> None:
    """-p at agents/hello says it looks like an agent directory and names the project root."""
    result = al("run", "hello", "-p", str(project / "agents" / "hello"))
    assert_user_error(
        result, "looks like an agent directory", f"hint: Run from the project root: -p {project}"
    )


def test_non_project_dir_suggests_al_new(al: RunAl, tmp_path: Path) -> None:
    """Running in a folder that is not a project suggests `al new`."""
    result = al("run", "hello", cwd=tmp_path)
    assert_user_error(result, "is not an action-llama project", "hint: Create one with: al new")


def test_docker_unreachable_says_how_to_start_it(al: RunAl, tmp_path: Path) -> None:
    """`al run hello` in a fresh project with Docker unreachable says so and how to start it."""
    created = al("new", "proj", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    result = al("run", "hello", cwd=tmp_path / "proj")
    fix = "open -a Docker" if platform.system() == "Darwin" else "sudo systemctl start docker"
    assert_user_error(result, "error: Docker is not running", "hint: Start ", fix)


def test_logs_before_any_run_says_there_are_none(al: RunAl, project: Path) -> None:
    """`al logs hello` before any run says there are no runs yet, how to start one, and exits 0."""
    result = al("logs", "hello", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'No runs of "hello" yet. Start one with: al run hello'
    assert result.stderr == ""


def test_new_creates_project_and_says_what_next(al: RunAl, tmp_path: Path) -> None:
    """`al new DIR` creates the project, lists the files and suggests `al run hello`."""
    result = al("new", "my-agents", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "my-agents" / "agents" / "hello" / "SKILL.md").is_file()
    assert "created my-agents/config.toml" in result.stderr
    assert "Next: al run hello -p my-agents" in result.stderr


def test_new_refuses_non_empty_dir_and_keeps_its_files(al: RunAl, tmp_path: Path) -> None:
    """`al new` on a folder with files is an error and leaves the files as they were."""
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.md").write_text("keep me\n")
    result = al("new", "mine", cwd=tmp_path)
    assert_user_error(result, "already exists and is not empty", "hint: Choose a new folder name")
    assert [p.name for p in target.iterdir()] == ["notes.md"]
    assert (target / "notes.md").read_text() == "keep me\n"
