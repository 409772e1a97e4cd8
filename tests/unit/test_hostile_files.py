"""Project files written to break the loader get a ConfigError naming the file and the fix:
numbers too long, nesting too deep, impossible dates, odd keys, files that are folders or
links to nowhere, settings that would overflow later. Never a traceback, never a silent default.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_config_errors import AGENT_CFG, LoadError, agent_project

from action_llama.errors import AgentNotFound, ConfigError
from action_llama.project import get_agent, load_project

from support import ProjectFactory, skill

NINES = "9" * 400


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (f"[local]\ntimeout = {'9' * 5000}\n", "config.toml: invalid TOML: a number is too long"),
        ("a = " + "[" * 5000 + "]" * 5000 + "\n", "config.toml: is nested more than 32 levels"),
        (f'[local]\nmemory = "{NINES}g"\n', 'key "local.memory"'),
        ('[local]\nmemory = "2000t"\n', "is more than 1024t"),
        ("[local]\ncpus = inf\n", 'key "local.cpus": Input should be a finite number'),
        ("[local]\ncpus = nan\n", 'key "local.cpus"'),
        (f"[local]\ntimeout = {2**70}\n", 'key "local.timeout": Input should be less than'),
        ('[local]\nimage = ""\n', 'key "local.image": "" is not an image name'),
        ('[local]\nimage = "a b"\n', 'key "local.image"'),
        (f"workQueueSize = {2**63}\n", 'key "workQueueSize"'),
        ('[webhooks.gh]\ntype = "github"\ncredential = "../../etc"\n', "webhooks.gh.credential"),
        ('projectName = "a\\u0000b"\n', "projectName holds a NUL character"),
    ],
)
def test_project_config_that_would_overflow_or_escape_is_refused(
    make_project: ProjectFactory, load_error: LoadError, config: str, says: str
) -> None:
    """Each hostile config.toml is one ConfigError naming config.toml (and the key)."""
    err = load_error(make_project(config=config))
    assert says in str(err)
    assert str(err).startswith("config.toml")


def test_a_key_with_brackets_is_named_as_written(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """Keys holding [ ] are the user's keys, quoted as TOML would, with a did-you-mean in the
    table they are in (not "unknown key local, did you mean local")."""
    err = load_error(make_project(config='"a[b" = 1\n[local]\n"mem[ory" = 1\n'))
    assert sorted(err.problems) == [
        "config.toml: unknown key '\"a[b\"'",
        "config.toml: unknown key 'local.\"mem[ory\"'",
    ]
    assert err.hint is not None
    assert 'did you mean "local.memory"?' in err.hint


@pytest.mark.parametrize(
    ("agent_config", "says"),
    [
        ('credentials = ["github_token:.."]\n', '"github_token:.." is not a credential reference'),
        ('credentials = ["github_token:.x"]\n', '"github_token:.x" is not a credential reference'),
        ('credentials = ["github_token:-x"]\n', '"github_token:-x" is not a credential reference'),
        (f'credentials = ["github_token:{"a" * 65}"]\n', "is not a credential reference"),
        ('[runtime]\ntype = "host-user"\ngroups = ["a\\u0000b"]\n', "holds a NUL character"),
        ('[runtime]\ntype = "host-user"\nrun_as = "../x"\n', '"../x" is not a user name'),
        ('schedule = "0 0 31 2 *"\n', '"0 0 31 2 *" never fires'),
        ('schedule = "* * * * * 99999999999999999999"\n', "is not a valid cron expression"),
        (f"timeout = {2**70}\n", 'key "timeout"'),
        ("[params]\n" + "a = " + "[" * 40 + "]" * 40 + "\n", "is nested more than 32 levels"),
    ],
)
def test_agent_config_that_would_fail_later_is_refused(
    make_project: ProjectFactory, load_error: LoadError, agent_config: str, says: str
) -> None:
    """What doctor passed and a run then crashed on is an error of the agent's config.toml."""
    err = load_error(agent_project(make_project, agent_config))
    assert says in str(err)
    assert str(err).startswith(AGENT_CFG)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("---\ndescription: " + "[" * 10000 + "]" * 10000 + "\n---\nbody\n", "nested more"),
        ("---\ndescription: !!timestamp 2001-13-45\n---\nbody\n", "is not valid YAML"),
        ("---\ndescription: x\nbody without an end\n", "is never closed"),
        ("---\n- a\n- b\n---\nbody\n", "must be key: value lines"),
        ("\xef\xbb\xbf", None),  # a BOM alone is an empty file: fine
    ],
)
def test_hostile_skill_md_is_an_error_of_that_file(
    make_project: ProjectFactory, load_error: LoadError, text: str, says: str | None
) -> None:
    """A SKILL.md nested too deep, with an impossible explicit date or an unclosed frontmatter
    names agents/hello/SKILL.md."""
    root = make_project({"agents/hello/SKILL.md": skill()})
    (root / "agents/hello/SKILL.md").write_bytes(text.encode("latin-1", errors="ignore"))
    if says is None:
        load_project(root)
        return
    err = load_error(root)
    assert str(err).startswith("agents/hello/SKILL.md")
    assert says in str(err)


def test_dates_in_frontmatter_are_text(make_project: ProjectFactory) -> None:
    """`description: 2001-13-45` (or any date) is the description, as written."""
    root = make_project({"agents/hello/SKILL.md": "---\ndescription: 2001-13-45\n---\nGo.\n"})
    assert load_project(root).agents["hello"].skill.frontmatter.description == "2001-13-45"


@pytest.mark.parametrize("name", ["config.toml", "agents/hello/SKILL.md", "Dockerfile"])
def test_a_folder_where_a_file_should_be_is_named(
    make_project: ProjectFactory, load_error: LoadError, name: str
) -> None:
    """config.toml, SKILL.md or a Dockerfile that is a folder is an error, not a skipped file."""
    root = make_project({"agents/hello/SKILL.md": skill()})
    (root / name).unlink(missing_ok=True)
    (root / name).mkdir()
    err = load_error(root)
    assert f"{name}: is a folder, not a file." in str(err)


@pytest.mark.parametrize(
    "name", ["config.toml", "agents/hello/SKILL.md", "agents/hello/Dockerfile"]
)
def test_a_symlink_loop_or_dangling_link_is_named(
    make_project: ProjectFactory, load_error: LoadError, name: str
) -> None:
    """A file that is a symbolic link loop names the file and says so."""
    root = make_project({"agents/hello/SKILL.md": skill()})
    (root / name).unlink(missing_ok=True)
    os.symlink(root / name, root / name)
    err = load_error(root)
    assert f"{name}: cannot be read: is a symbolic link loop." in str(err)
    (root / name).unlink()
    os.symlink(root / "nowhere", root / name)
    assert f"{name}: is a symbolic link to " in str(load_error(root))


@pytest.mark.parametrize("name", ["Dockerfile", "agents/hello/Dockerfile", "config.toml"])
def test_a_file_that_is_not_utf8_is_named_with_its_line(
    make_project: ProjectFactory, load_error: LoadError, name: str
) -> None:
    """A config.toml or Dockerfile in another encoding fails at load (al doctor sees it, not
    only the image build), naming the file, the byte and its line."""
    root = make_project({"agents/hello/SKILL.md": skill()})
    (root / name).write_bytes(b"FROM al-agent:latest\nRUN echo \xff\n")
    err = load_error(root)
    assert str(err) == f"{name}: is not UTF-8 text (byte 0xff on line 2)."


def test_a_fifo_is_refused_without_blocking(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """A config.toml that is a FIFO is refused at once (reading it would wait forever)."""
    root = make_project({"agents/hello/SKILL.md": skill()})
    (root / "config.toml").unlink()
    os.mkfifo(root / "config.toml")
    assert "config.toml: is not a regular file" in str(load_error(root))


def test_agents_that_is_a_file_is_named(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """agents/ as a file is an error, not "no agents yet"."""
    root = make_project()
    (root / "agents").write_text("hello\n")
    assert str(load_error(root)) == "agents: is a file, not a folder."


def test_project_dir_that_is_a_symlink_loop_is_named(tmp_path: Path) -> None:
    """-p at a symbolic link loop says so (every command loads through here)."""
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path / "loop")
    assert "cannot be used: is a symbolic link loop" in str(info.value)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "Hello"])
def test_agent_names_that_are_not_names_are_not_found(
    make_project: ProjectFactory, name: str
) -> None:
    """`al run ''` or `al run .` says the name is invalid (never "add agents//SKILL.md")."""
    project = load_project(make_project({"agents/hello/SKILL.md": skill()}))
    with pytest.raises(AgentNotFound) as info:
        get_agent(project, name)
    assert f'Agent name "{name}" is invalid' in str(info.value)
    assert "//" not in (info.value.hint or "")
