"""`al add` and `al update` with git repositories the tests make (never a remote host)."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from action_llama.errors import InstallError
from action_llama.install.agents import with_source
from action_llama.install.sources import resolve

from support import ProjectFactory, run_al, write_files

GIT = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]

REVIEWER_SKILL = "---\nname: reviewer\ndescription: Reviews pull requests\n---\nReview PRs.\n"
REVIEWER_CONFIG = (
    "# written for the original\n"
    'schedule = "*/30 * * * *"\n'
    "credentials = []\n\n"
    "[params]\n"
    'repos = ["octo/app"]\n'
)
REVIEWER_DOCKERFILE = (
    "FROM al-agent:latest\nUSER root\nRUN apk add --no-cache github-cli\nUSER node\n"
)


def commit(repo: Path, files: dict[str, str], message: str = "change") -> None:
    """Write `files` into the git repository `repo` (made if need be) and commit them."""
    if not (repo / ".git").is_dir():
        repo.mkdir(parents=True, exist_ok=True)
        subprocess.run([*GIT, "init", "-q", str(repo)], check=True)
    write_files(repo, files)
    subprocess.run([*GIT, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-q", "-m", message], check=True)


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """A repository shaped like the original's public collection: agents/<name>/ folders."""
    repo = tmp_path / "agents-repo"
    commit(
        repo,
        {
            "agents/reviewer/SKILL.md": REVIEWER_SKILL,
            "agents/reviewer/config.toml": REVIEWER_CONFIG,
            "agents/reviewer/Dockerfile": REVIEWER_DOCKERFILE,
            "agents/reviewer/test-script.sh": "echo reviewing\n",
            "agents/planner/SKILL.md": "---\ndescription: Plans\n---\nPlan.\n",
            "agents/planner/test-script.sh": "echo planning\n",
            "README.md": "a collection\n",
        },
    )
    return repo


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A credential store of the test's own (al add's checks read it)."""
    return {"AL_CREDENTIALS_DIR": str(tmp_path / "credentials")}


def test_sources_resolve_to_github_urls_git_urls_and_folders(tmp_path: Path) -> None:
    """owner/repo is its GitHub URL (recorded as typed); a git URL is kept; an existing folder
    is read where it is (recorded absolute); anything else is refused with examples."""
    github = resolve("Action-Llama/agents", tmp_path)
    assert (github.location, github.recorded, github.local) == (
        "https://github.com/Action-Llama/agents.git",
        "Action-Llama/agents",
        False,
    )
    assert github.repo_name == "agents"
    assert resolve("git@example.com:team/tools.git", tmp_path).repo_name == "tools"
    (tmp_path / "team" / "tools").mkdir(parents=True)
    local = resolve("team/tools", tmp_path)
    assert (local.location, local.local) == (str(tmp_path / "team" / "tools"), True)
    with pytest.raises(InstallError, match="not a folder here, a git URL, or GitHub owner/repo"):
        resolve("no such thing", tmp_path)


def test_source_is_added_to_config_toml_keeping_comments_and_tables() -> None:
    """`source` goes first (a top-level key), an old one is replaced, tables stay intact."""
    text = with_source('source = "old/one"\n' + REVIEWER_CONFIG, "new/one")
    assert text.startswith('source = "new/one"\n# written for the original\n')
    assert tomllib.loads(text) == {**tomllib.loads(REVIEWER_CONFIG), "source": "new/one"}
    assert with_source("", 'we"ird') == 'source = "we\\"ird"\n'


def test_add_installs_one_agent_of_a_collection_and_checks_it(
    make_project: ProjectFactory, collection: Path, env: dict[str, str]
) -> None:
    """`al add file://REPO -a reviewer` clones it and copies SKILL.md, config.toml (with the
    source recorded, the rest kept), Dockerfile and test-script.sh; doctor's checks follow,
    including what the Dockerfile's apk line installs."""
    root = make_project()
    url = f"file://{collection}"
    added = run_al("add", url, "-a", "reviewer", "-p", str(root), env=env)
    assert added.returncode == 0, added.stderr + added.stdout
    folder = root / "agents" / "reviewer"
    assert sorted(p.name for p in folder.iterdir()) == [
        "Dockerfile",
        "SKILL.md",
        "config.toml",
        "test-script.sh",
    ]
    assert (folder / "SKILL.md").read_text() == REVIEWER_SKILL
    assert (folder / "Dockerfile").read_text() == REVIEWER_DOCKERFILE
    config = tomllib.loads((folder / "config.toml").read_text())
    assert config["source"] == url
    assert config["params"] == {"repos": ["octo/app"]}
    assert "Installed agent reviewer (Reviews pull requests) from " + url in added.stderr
    assert "agent reviewer" in added.stdout
    assert "uses apk (Alpine); al installs with apt-get instead: github-cli → gh" in added.stdout
    assert "All checks passed" in added.stdout
    assert not (root / "agents" / "planner").exists()


def test_add_refuses_ambiguity_conflicts_and_unknown_agents_and_writes_nothing(
    make_project: ProjectFactory, collection: Path, env: dict[str, str]
) -> None:
    """Several agents and no -a: the choices are listed; an existing agent is never
    overwritten; an unknown -a names what there is. Each exits 1 with a hint."""
    root = make_project()
    several = run_al("add", str(collection), "-p", str(root), env=env)
    assert several.returncode == 1
    assert "holds 2 agents: planner, reviewer" in several.stderr
    assert "hint: Choose one: al add" in several.stderr
    assert not (root / "agents").exists()

    assert run_al("add", str(collection), "-a", "planner", "-p", str(root), env=env).returncode == 0
    (root / "agents" / "planner" / "SKILL.md").write_text("mine\n")
    again = run_al("add", str(collection), "-a", "planner", "-p", str(root), env=env)
    assert again.returncode == 1
    assert "agents/planner already exists; al add never overwrites an agent" in again.stderr
    assert "al update planner" in again.stderr
    assert (root / "agents" / "planner" / "SKILL.md").read_text() == "mine\n"

    unknown = run_al("add", str(collection), "-a", "deployer", "-p", str(root), env=env)
    assert unknown.returncode == 1
    assert 'has no agent "deployer". It has: planner, reviewer' in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_a_repository_with_one_root_skill_installs_under_its_frontmatter_name(
    make_project: ProjectFactory, tmp_path: Path, env: dict[str, str]
) -> None:
    """A single-agent repository (SKILL.md at its root) is named by its frontmatter name; a
    repository that cannot be cloned is reported with git's reason."""
    repo = tmp_path / "single"
    commit(repo, {"SKILL.md": "---\nname: triage\n---\nTriage.\n", "test-script.sh": "true\n"})
    root = make_project()
    added = run_al("add", f"file://{repo}", "-p", str(root), env=env)
    assert added.returncode == 0, added.stderr
    assert (root / "agents" / "triage" / "SKILL.md").is_file()
    assert tomllib.loads((root / "agents/triage/config.toml").read_text()) == {
        "source": f"file://{repo}"
    }
    missing = run_al("add", f"file://{tmp_path}/nowhere", "-p", str(root), env=env)
    assert missing.returncode == 1
    assert f"error: Could not fetch file://{tmp_path}/nowhere" in missing.stderr


def test_update_shows_the_changes_asks_and_applies_them_keeping_config_toml(
    make_project: ProjectFactory, collection: Path, env: dict[str, str]
) -> None:
    """After the source changes SKILL.md and the Dockerfile: without a terminal and --yes,
    al update shows the diff and applies nothing (exit 1); with --yes it writes both and
    leaves the user's config.toml alone; then it is up to date."""
    root = make_project()
    url = f"file://{collection}"
    assert run_al("add", url, "-a", "reviewer", "-p", str(root), env=env).returncode == 0
    folder = root / "agents" / "reviewer"
    mine = (folder / "config.toml").read_text().replace("*/30", "*/10")
    (folder / "config.toml").write_text(mine)
    commit(
        collection,
        {
            "agents/reviewer/SKILL.md": REVIEWER_SKILL + "Also check the tests.\n",
            "agents/reviewer/Dockerfile": REVIEWER_DOCKERFILE.replace(
                "github-cli", "github-cli jq"
            ),
            "agents/reviewer/config.toml": REVIEWER_CONFIG + "timeout = 60\n",
        },
    )

    asked = run_al("update", "reviewer", "-p", str(root), env=env)
    assert asked.returncode == 1
    assert "+Also check the tests." in asked.stdout
    assert "+RUN apk add --no-cache github-cli jq" in asked.stdout
    assert "the source's config.toml differs" in asked.stderr
    assert "al update --yes reviewer" in asked.stderr
    assert (folder / "SKILL.md").read_text() == REVIEWER_SKILL

    applied = run_al("update", "reviewer", "--yes", "-p", str(root), env=env)
    assert applied.returncode == 0, applied.stderr
    assert "reviewer: updated SKILL.md, Dockerfile" in applied.stderr
    assert (folder / "SKILL.md").read_text().endswith("Also check the tests.\n")
    assert "github-cli jq" in (folder / "Dockerfile").read_text()
    assert (folder / "config.toml").read_text() == mine

    again = run_al("update", "-p", str(root), env=env)
    assert again.returncode == 0
    assert f"reviewer: up to date with {url}." in again.stderr


def test_update_of_an_agent_not_installed_with_add_says_why(
    make_project: ProjectFactory, env: dict[str, str]
) -> None:
    """An agent without `source` cannot be updated: the error names the file and the fix."""
    root = make_project(
        {
            "agents/local/SKILL.md": "---\ndescription: x\n---\nx\n",
            "agents/local/test-script.sh": "true\n",
        }
    )
    result = run_al("update", "local", "-p", str(root), env=env)
    assert result.returncode == 1
    assert "agents/local/config.toml has no source" in result.stderr
    assert 'hint: Add the line source = "' in result.stderr
    nothing = run_al("update", "-p", str(root), env=env)
    assert nothing.returncode == 0
    assert "No agent here was installed with al add" in nothing.stderr
