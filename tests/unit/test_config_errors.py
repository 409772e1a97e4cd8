"""Every mistake in a project's files is a ConfigError naming the file, the key and the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from action_llama.errors import AgentNotFound, ConfigError
from action_llama.project import get_agent, load_project

from support import ProjectFactory, skill

LoadError = Callable[[Path], ConfigError]  # the `load_error` fixture

AGENT_CFG = "agents/hello/config.toml"


def agent_project(make_project: ProjectFactory, agent_config: str, config: str = "") -> Path:
    """A project whose one agent, hello, has `agent_config` as its config.toml."""
    return make_project({"agents/hello/SKILL.md": skill(), AGENT_CFG: agent_config}, config=config)


# --- malformed TOML ---------------------------------------------------------------------------


def test_malformed_project_toml_names_file_and_line(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """Broken TOML in config.toml names the file and the line, with a hint on the syntax."""
    err = load_error(make_project(config="[local]\nmemory = 4g\n"))
    assert str(err).startswith("config.toml: invalid TOML")
    assert "line 2" in str(err)
    assert err.hint is not None
    assert "quotes" in err.hint


def test_malformed_agent_toml_names_agent_file(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """Broken TOML in an agent's config.toml names that file, not the project's."""
    err = load_error(agent_project(make_project, "timeout = \n"))
    assert str(err).startswith(f"{AGENT_CFG}: invalid TOML")
    assert err.hint is not None
    assert "syntax" in err.hint


# --- unknown keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent_config", "key", "suggestion"),
    [
        ("timout = 5\n", "timout", "timeout"),
        ('[hooks]\npree = ["echo hi"]\n', "hooks.pree", "hooks.pre"),
        ("maxWorkQueSize = 3\n", "maxWorkQueSize", "maxWorkQueueSize"),
        (
            '[[webhooks]]\nsource = "gh"\nevnts = ["issues"]\n',
            "webhooks[0].evnts",
            "webhooks[0].events",
        ),
    ],
)
def test_unknown_agent_key_suggests_the_close_one(
    make_project: ProjectFactory,
    load_error: LoadError,
    agent_config: str,
    key: str,
    suggestion: str,
) -> None:
    """A misspelt key in an agent's config.toml is named, with a did-you-mean for the right one."""
    err = load_error(agent_project(make_project, agent_config))
    assert str(err) == f'{AGENT_CFG}: unknown key "{key}"'
    assert err.hint is not None
    assert f'did you mean "{suggestion}"?' in err.hint


@pytest.mark.parametrize(
    ("config", "key", "suggestion"),
    [
        ('[local]\nmemmory = "4g"\n', "local.memmory", "local.memory"),
        ("[gateway]\nprot = 9000\n", "gateway.prot", "gateway.port"),
        (
            '[webhooks.gh]\ntype = "github"\ncredentail = "x"\n',
            "webhooks.gh.credentail",
            "webhooks.gh.credential",
        ),
        ("max_reruns = 3\n", "max_reruns", "maxReruns"),
    ],
)
def test_unknown_project_key_suggests_the_close_one(
    make_project: ProjectFactory, load_error: LoadError, config: str, key: str, suggestion: str
) -> None:
    """A misspelt key in config.toml (top level or in a table) gets a did-you-mean."""
    err = load_error(make_project(config=config))
    assert str(err) == f'config.toml: unknown key "{key}"'
    assert err.hint is not None
    assert f'did you mean "{suggestion}"?' in err.hint


def test_unknown_key_with_no_close_match_lists_allowed_keys(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """An unknown key unlike any real one gets the list of keys allowed in that table."""
    err = load_error(make_project(config="[local]\nzzzz = 1\n"))
    assert str(err) == 'config.toml: unknown key "local.zzzz"'
    assert err.hint is not None
    assert "memory" in err.hint
    assert "cpus" in err.hint


def test_project_table_in_agent_config_is_not_matched_to_an_unrelated_key(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """[local] in an agent's config.toml is refused without suggesting the unrelated "scale"."""
    err = load_error(agent_project(make_project, "[local]\ntimeout = 60\n"))
    assert str(err) == f'{AGENT_CFG}: unknown key "local"'
    assert err.hint is not None
    assert '"scale"' not in err.hint


# --- wrong types and values -------------------------------------------------------------------


def test_hooks_pre_as_string_says_it_must_be_a_list(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """hooks.pre written as a string (not a list) names the file, the key and the value."""
    err = load_error(agent_project(make_project, '[hooks]\npre = "echo hi"\n'))
    assert str(err).startswith(f'{AGENT_CFG}: key "hooks.pre": ')
    assert "list" in str(err)
    assert "'echo hi'" in str(err)


@pytest.mark.parametrize("schedule", ["* * *", "* * * * * * *"])
def test_schedule_with_wrong_field_count_is_refused(
    make_project: ProjectFactory, load_error: LoadError, schedule: str
) -> None:
    """A schedule without 5 or 6 fields says how many it has and shows a valid example."""
    err = load_error(agent_project(make_project, f'schedule = "{schedule}"\n'))
    assert str(err).startswith(f'{AGENT_CFG}: key "schedule": "{schedule}" has ')
    assert "5 (minute hour day month weekday)" in str(err)
    assert '"*/15 * * * *"' in str(err)


@pytest.mark.parametrize("schedule", ["61 * * * *", "* 25 * * *", "* * * * funday"])
def test_schedule_with_out_of_range_value_is_refused(
    make_project: ProjectFactory, load_error: LoadError, schedule: str
) -> None:
    """A 5-field schedule with an impossible value names the file, the key and the expression."""
    err = load_error(agent_project(make_project, f'schedule = "{schedule}"\n'))
    assert str(err).startswith(f'{AGENT_CFG}: key "schedule": "{schedule}" is not a valid cron')


def test_memory_that_is_not_a_size_shows_the_format(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """[local] memory = "4 gigs" names the key and shows how to write a size."""
    err = load_error(make_project(config='[local]\nmemory = "4 gigs"\n'))
    assert str(err) == (
        'config.toml: key "local.memory": "4 gigs" is not a size; write it like "4g" or "512m"'
    )


@pytest.mark.parametrize("memory", ["5m", "1k", "0"])
def test_memory_below_docker_minimum_is_refused(
    make_project: ProjectFactory, load_error: LoadError, memory: str
) -> None:
    """[local] memory below 6m is refused, naming Docker's minimum."""
    err = load_error(make_project(config=f'[local]\nmemory = "{memory}"\n'))
    assert str(err) == (
        f'config.toml: key "local.memory": "{memory}" is below Docker\'s minimum of 6m'
    )


def test_memory_at_docker_minimum_is_accepted(make_project: ProjectFactory) -> None:
    """[local] memory = "6m" is exactly Docker's minimum and loads."""
    assert load_project(make_project(config='[local]\nmemory = "6m"\n')).config.local.memory == "6m"


@pytest.mark.parametrize("cpus", ["0", "-1"])
def test_cpus_must_be_positive(
    make_project: ProjectFactory, load_error: LoadError, cpus: str
) -> None:
    """[local] cpus below Docker's minimum of 0.01 is refused, naming the key."""
    err = load_error(make_project(config=f"[local]\ncpus = {cpus}\n"))
    assert str(err).startswith('config.toml: key "local.cpus": ')
    assert "greater than or equal to 0.01" in str(err)


def test_unknown_provider_lists_the_valid_ones(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """A model with an unknown provider names the key and lists the providers."""
    err = load_error(make_project(config='[models.s]\nprovider = "antropic"\nmodel = "m"\n'))
    assert str(err).startswith('config.toml: key "models.s.provider": ')
    assert "'anthropic'" in str(err)
    assert "'antropic'" in str(err)


def test_model_without_model_key_is_refused(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """A [models.x] table without `model` names the missing key."""
    err = load_error(make_project(config='[models.s]\nprovider = "anthropic"\n'))
    assert str(err) == 'config.toml: missing required key "models.s.model"'


def test_model_that_is_not_a_table_does_not_leak_class_names(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """`[models] x = 1` names the key without mentioning internal class names."""
    err = load_error(make_project(config="[models]\nx = 1\n"))
    assert str(err).startswith('config.toml: key "models.x": ')
    assert "ModelConfig" not in str(err)


def test_bad_value_of_deprecated_key_names_the_key_written(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """A bad value under maxTriggerDepth names maxTriggerDepth, the key the user wrote."""
    err = load_error(make_project(config='maxTriggerDepth = "deep"\n'))
    assert str(err).startswith('config.toml: key "maxTriggerDepth": ')


# --- agent names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Hello", "only lowercase letters, numbers, and hyphens"),
        ("my_agent", "only lowercase letters, numbers, and hyphens"),
        ("-agent", "cannot start or end with a hyphen"),
        ("agent-", "cannot start or end with a hyphen"),
        ("my--agent", "no consecutive hyphens"),
        ("a" * 65, "must be 1-64 characters"),
        ("default", '"default" is reserved'),
    ],
)
def test_bad_agent_folder_name_is_refused(
    make_project: ProjectFactory, load_error: LoadError, name: str, reason: str
) -> None:
    """An agent folder with an invalid name is named, with the rule broken and a rename hint."""
    err = load_error(make_project({f"agents/{name}/SKILL.md": skill()}))
    assert str(err).startswith(f'agents/{name}: Agent name "{name}"')
    assert reason in str(err)
    assert err.hint == f"Rename the folder agents/{name}."


# --- references to models and credentials -----------------------------------------------------


def test_unknown_model_ref_lists_available_models(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """An agent listing an undefined model names the file, the model and the ones available."""
    err = load_error(
        agent_project(
            make_project,
            'models = ["sonet"]\n',
            config='[models.sonnet]\nprovider = "anthropic"\nmodel = "m"\n'
            '[models.gpt]\nprovider = "openai"\nmodel = "g"\n',
        )
    )
    assert str(err).startswith(f'{AGENT_CFG}: key "models": ')
    assert 'model "sonet" which is not defined in config.toml' in str(err)
    assert str(err).endswith("Available: sonnet, gpt")
    assert err.hint == 'did you mean "sonnet"?'


def test_model_ref_with_no_models_defined_shows_how_to_define_one(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """With no [models] at all, the error says none are available and the hint shows a table."""
    err = load_error(agent_project(make_project, 'models = ["sonnet"]\n'))
    assert str(err).endswith("Available: (none)")
    assert err.hint is not None
    assert "[models.sonnet]" in err.hint
    assert "provider = " in err.hint


@pytest.mark.parametrize("ref", ["GitHub Token", "github-token", "github_token:"])
def test_bad_credential_ref_shows_the_form(
    make_project: ProjectFactory, load_error: LoadError, ref: str
) -> None:
    """A credential reference that is not type or type:instance names it and shows examples."""
    err = load_error(agent_project(make_project, f'credentials = ["{ref}"]\n'))
    assert str(err).startswith(f'{AGENT_CFG}: key "credentials[0]": "{ref}" is not a credential')
    assert '"github_token:work"' in str(err)


# --- SKILL.md -----------------------------------------------------------------------------------


def test_frontmatter_invalid_yaml_names_file_and_line(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """Invalid YAML in SKILL.md frontmatter names the file and the line in that file."""
    text = "---\ndescription: ok\nname: [unclosed\n---\nBody.\n"
    err = load_error(make_project({"agents/hello/SKILL.md": text}))
    assert str(err).startswith("agents/hello/SKILL.md: the frontmatter is not valid YAML: ")
    assert "(line 4)" in str(err)
    assert err.hint is not None
    assert "'---'" in err.hint


def test_frontmatter_unknown_key_suggests_description(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """A misspelt frontmatter key is named with a did-you-mean for "description"."""
    text = "---\ndescripton: Says hi.\n---\nBody.\n"
    err = load_error(make_project({"agents/hello/SKILL.md": text}))
    assert str(err) == 'agents/hello/SKILL.md frontmatter: unknown key "descripton"'
    assert err.hint is not None
    assert 'did you mean "description"?' in err.hint


def test_frontmatter_that_is_not_a_mapping_is_refused(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """Frontmatter that is a YAML list rather than key: value pairs is a ConfigError."""
    text = "---\n- description\n- Says hi.\n---\nBody.\n"
    err = load_error(make_project({"agents/hello/SKILL.md": text}))
    assert str(err).startswith("agents/hello/SKILL.md")


# --- several problems ---------------------------------------------------------------------------


def test_all_problems_across_files_are_listed_together(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """Problems in config.toml, an agent's config.toml and SKILL.md are all reported at once."""
    root = make_project(
        {
            "agents/hello/SKILL.md": "---\ndescripton: x\n---\nBody.\n",
            AGENT_CFG: "timout = 5\n",
            "agents/Bad/SKILL.md": skill(),
        },
        config='[local]\nmemmory = "4g"\ncpus = 0\n',
    )
    err = load_error(root)
    assert len(err.problems) == 5
    assert err.message == "5 problems in the project files:"
    text = str(err)
    for problem in err.problems:
        assert f"  - {problem}" in text
    joined = "\n".join(err.problems)
    for expected in (
        'config.toml: unknown key "local.memmory"',
        'config.toml: key "local.cpus"',
        f'{AGENT_CFG}: unknown key "timout"',
        'agents/hello/SKILL.md frontmatter: unknown key "descripton"',
        'agents/Bad: Agent name "Bad"',
    ):
        assert expected in joined
    assert err.hint is not None
    for suggestion in ('"local.memory"', '"timeout"', '"description"', "agents/Bad"):
        assert suggestion in err.hint


def test_single_problem_is_the_message_itself(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """With one problem, the error text is that problem with no list around it."""
    err = load_error(agent_project(make_project, "timout = 5\n"))
    assert err.problems == [str(err)]


# --- finding the agent --------------------------------------------------------------------------


def test_agent_folder_without_skill_md_is_a_problem_naming_skill_md(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """An agent folder with its config.toml but no SKILL.md is a problem of the project (not
    an agent silently left out), naming SKILL.md and how to add it."""
    err = load_error(make_project({"agents/hello/config.toml": "timeout = 5\n"}))
    assert str(err) == "agents/hello/SKILL.md: is missing"
    assert err.hint is not None
    assert "add agents/hello/SKILL.md" in err.hint


def test_empty_agent_folder_is_not_found_and_names_skill_md(make_project: ProjectFactory) -> None:
    """Asking for an empty agents/x/ says SKILL.md is missing and how to add it."""
    root = make_project({"agents/other/SKILL.md": skill()})
    (root / "agents/hello").mkdir()
    project = load_project(root)
    with pytest.raises(AgentNotFound) as info:
        get_agent(project, "hello")
    assert "SKILL.md" in str(info.value)
    assert info.value.hint is not None
    assert "agents/hello/SKILL.md" in info.value.hint


def test_misspelt_agent_name_suggests_the_close_one(make_project: ProjectFactory) -> None:
    """Asking for an agent that does not exist suggests the closest existing name."""
    project = load_project(make_project({"agents/hello/SKILL.md": skill()}))
    with pytest.raises(AgentNotFound) as info:
        get_agent(project, "helo")
    assert 'Agent "helo" not found' in str(info.value)
    assert info.value.hint == 'Did you mean "hello"?'


def test_unknown_agent_name_lists_available_agents(make_project: ProjectFactory) -> None:
    """Asking for an unrelated name lists the agents that exist."""
    project = load_project(
        make_project(
            {
                "agents/hello/SKILL.md": skill(),
                "agents/triage/SKILL.md": skill(),
            }
        )
    )
    with pytest.raises(AgentNotFound) as info:
        get_agent(project, "zzz")
    assert info.value.hint == "Available agents: hello, triage"


# --- the project directory itself ---------------------------------------------------------------


def test_agent_directory_as_project_points_at_the_project_root(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """-p at agents/<x> says it looks like an agent directory and names the project root."""
    root = make_project({"agents/hello/SKILL.md": skill()})
    err = load_error(root / "agents" / "hello")
    assert "looks like an agent directory" in str(err)
    assert err.hint == f"Run from the project root: -p {root}"


def test_non_project_directory_suggests_al_new(tmp_path: Path, load_error: LoadError) -> None:
    """A folder with neither config.toml nor agents/ is refused with a hint to run `al new`."""
    (tmp_path / "notes.txt").write_text("hi")
    err = load_error(tmp_path)
    assert "is not an action-llama project" in str(err)
    assert err.hint is not None
    assert "al new" in err.hint


def test_missing_directory_is_named(tmp_path: Path, load_error: LoadError) -> None:
    """A project path that does not exist is named as missing, with a hint."""
    missing = tmp_path / "nope"
    err = load_error(missing)
    assert str(err) == f'Project directory "{missing}" does not exist.'
    assert err.hint is not None
    assert "al new" in err.hint


def test_file_as_project_directory_is_not_called_missing(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """-p pointing at config.toml (a file) says it is not a directory, not that it is missing."""
    root = make_project()
    err = load_error(root / "config.toml")
    assert "does not exist" not in str(err)
    assert "not a directory" in str(err)


def test_gateway_only_credential_in_an_agent_is_refused(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """Listing a webhook secret (used by al itself) in an agent's credentials is an error."""
    root = make_project(
        {
            "agents/hook/SKILL.md": "Hook.\n",
            "agents/hook/config.toml": 'credentials = ["github_webhook_secret"]\n',
        }
    )
    err = load_error(root)
    assert "agents/hook/config.toml" in str(err)
    assert "agents never receive it" in str(err)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('provider = "anthropic"\nmodel = "m"\nauthType = "pi_auth"', "al creds add anthropic_key"),
        ('provider = "openai-compatible"\nmodel = "llama3"', "needs base_url"),
    ],
)
def test_model_that_cannot_work_in_a_run_is_a_config_error(
    make_project: ProjectFactory, load_error: LoadError, table: str, expected: str
) -> None:
    """pi_auth models and OpenAI-compatible models without base_url fail at load time."""
    root = make_project(config=f"[models.m]\n{table}\n")
    err = load_error(root)
    assert 'key "models.m"' in str(err)
    assert expected in str(err)
