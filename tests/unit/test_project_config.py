"""Loading a valid project: documented defaults, deprecated aliases, timeouts, named tables."""

from __future__ import annotations

import pytest

from action_llama.project import load_project

from support import ProjectFactory, skill


def test_empty_config_gives_documented_local_defaults(make_project: ProjectFactory) -> None:
    """An empty config.toml gives [local] image al-agent:latest, 4g memory, 2 CPUs, 900 s."""
    local = load_project(make_project()).config.local
    assert local.image == "al-agent:latest"
    assert local.memory == "4g"
    assert local.memory_bytes == 4 * 1024**3
    assert local.cpus == 2
    assert local.timeout == 900


def test_empty_config_gives_documented_scheduler_defaults(make_project: ProjectFactory) -> None:
    """An empty config.toml gives the documented queue, rerun, depth, lock and history limits."""
    config = load_project(make_project()).config
    assert config.work_queue_size == 20
    assert config.max_reruns == 10
    assert config.max_call_depth == 3
    assert config.resource_lock_timeout == 1800
    assert config.default_agent_scale == 1
    assert config.history_retention_days == 14
    assert config.models == {}
    assert config.webhooks == {}


def test_project_without_config_toml_loads_from_agents_folder(make_project: ProjectFactory) -> None:
    """A folder with only agents/ (no config.toml) is a project with default settings."""
    root = make_project({"agents/a/SKILL.md": skill()})
    (root / "config.toml").unlink()
    project = load_project(root)
    assert list(project.agents) == ["a"]
    assert project.config.local.timeout == 900


def test_keys_set_in_config_override_defaults(make_project: ProjectFactory) -> None:
    """Values written in config.toml replace the defaults."""
    root = make_project(
        config="""
        maxReruns = 2
        workQueueSize = 5
        [local]
        image = "my-base:1"
        memory = "512m"
        cpus = 0.5
        timeout = 60
    """
    )
    config = load_project(root).config
    assert (config.max_reruns, config.work_queue_size) == (2, 5)
    assert config.local.image == "my-base:1"
    assert config.local.memory_bytes == 512 * 1024**2
    assert (config.local.cpus, config.local.timeout) == (0.5, 60)


@pytest.mark.parametrize(
    ("old", "attribute"),
    [("maxTriggerDepth", "max_call_depth"), ("webhookQueueSize", "work_queue_size")],
)
def test_deprecated_key_sets_its_replacement(
    make_project: ProjectFactory, old: str, attribute: str
) -> None:
    """The deprecated maxTriggerDepth / webhookQueueSize still set maxCallDepth / workQueueSize."""
    config = load_project(make_project(config=f"{old} = 7\n")).config
    assert getattr(config, attribute) == 7


@pytest.mark.parametrize(
    ("old", "new", "attribute"),
    [
        ("maxTriggerDepth", "maxCallDepth", "max_call_depth"),
        ("webhookQueueSize", "workQueueSize", "work_queue_size"),
    ],
)
def test_current_key_wins_over_deprecated_alias(
    make_project: ProjectFactory, old: str, new: str, attribute: str
) -> None:
    """When both spellings are set, the current key's value is used."""
    config = load_project(make_project(config=f"{old} = 7\n{new} = 2\n")).config
    assert getattr(config, attribute) == 2


def test_agent_timeout_defaults_to_900(make_project: ProjectFactory) -> None:
    """An agent with no timeout anywhere gets 900 seconds."""
    root = make_project({"agents/a/SKILL.md": skill()})
    assert load_project(root).agents["a"].timeout == 900


def test_agent_timeout_falls_back_to_local_timeout(make_project: ProjectFactory) -> None:
    """An agent without its own timeout uses [local].timeout."""
    root = make_project({"agents/a/SKILL.md": skill()}, config="[local]\ntimeout = 30\n")
    assert load_project(root).agents["a"].timeout == 30


def test_agent_timeout_overrides_local_timeout(make_project: ProjectFactory) -> None:
    """An agent's own timeout wins over [local].timeout."""
    root = make_project(
        {"agents/a/SKILL.md": skill(), "agents/a/config.toml": "timeout = 5\n"},
        config="[local]\ntimeout = 30\n",
    )
    assert load_project(root).agents["a"].timeout == 5


def test_models_table_parses_and_agents_resolve_their_models(make_project: ProjectFactory) -> None:
    """[models.x] tables parse, and an agent's models list resolves to them in order."""
    root = make_project(
        {"agents/a/SKILL.md": skill(), "agents/a/config.toml": 'models = ["fast", "sonnet"]\n'},
        config="""
            [models.sonnet]
            provider = "anthropic"
            model = "claude-sonnet-4-5"
            authType = "oauth_token"
            thinkingLevel = "high"

            [models.fast]
            provider = "openai-compatible"
            model = "llama3"
            base_url = "http://host.docker.internal:11434/v1"
        """,
    )
    project = load_project(root)
    sonnet = project.config.models["sonnet"]
    assert (sonnet.provider, sonnet.model) == ("anthropic", "claude-sonnet-4-5")
    assert (sonnet.auth_type, sonnet.thinking_level) == ("oauth_token", "high")
    fast = project.config.models["fast"]
    assert fast.auth_type == "api_key"
    assert fast.base_url == "http://host.docker.internal:11434/v1"
    assert [name for name, _ in project.agents["a"].models] == ["fast", "sonnet"]


def test_gateway_table_parses(make_project: ProjectFactory) -> None:
    """[gateway] sets port, url and maxChatSessions; an absent table gives port 8080."""
    assert load_project(make_project()).config.gateway.port == 8080
    root = make_project(
        config='[gateway]\nport = 9000\nurl = "https://al.example.com"\nmaxChatSessions = 2\n',
        name="other",
    )
    gateway = load_project(root).config.gateway
    assert (gateway.port, gateway.url, gateway.max_chat_sessions) == (
        9000,
        "https://al.example.com",
        2,
    )


def test_webhooks_table_parses_and_agents_subscribe(make_project: ProjectFactory) -> None:
    """[webhooks.x] sources parse, and an agent's [[webhooks]] entries keep their filters."""
    root = make_project(
        {
            "agents/a/SKILL.md": skill(),
            "agents/a/config.toml": """
                [[webhooks]]
                source = "gh"
                events = ["issues"]
                labels = ["agent"]
            """,
        },
        config="""
            [webhooks.gh]
            type = "github"
            credential = "work"
            allowUnsigned = true

            [webhooks.hook]
            type = "generic"
        """,
    )
    project = load_project(root)
    gh = project.config.webhooks["gh"]
    assert (gh.type, gh.credential, gh.allow_unsigned) == ("github", "work", True)
    hook = project.config.webhooks["hook"]
    assert (hook.credential, hook.allow_unsigned) == ("default", False)
    (trigger,) = project.agents["a"].config.webhooks
    assert (trigger.source, trigger.events, trigger.labels) == ("gh", ["issues"], ["agent"])


def test_agent_config_keys_parse(make_project: ProjectFactory) -> None:
    """An agent's config.toml sets credentials, schedule, hooks, params and scale."""
    root = make_project(
        {
            "agents/a/SKILL.md": skill("Triage issues."),
            "agents/a/config.toml": """
            credentials = ["github_token", "github_token:work"]
            schedule = "*/15 * * * *"
            scale = 2
            [hooks]
            pre = ["echo before"]
            [params]
            repo = "me/app"
        """,
        }
    )
    agent = load_project(root).agents["a"]
    assert agent.config.credentials == ["github_token", "github_token:work"]
    assert agent.config.schedule == "*/15 * * * *"
    assert agent.config.scale == 2
    assert agent.config.hooks.pre == ["echo before"]
    assert agent.config.hooks.post == []
    assert agent.config.params == {"repo": "me/app"}
    assert agent.skill.frontmatter.description == "Triage issues."
    assert agent.skill.body == "Do the test.\n"


def test_six_field_schedule_with_seconds_is_accepted(make_project: ProjectFactory) -> None:
    """A cron schedule of 6 fields (seconds first) is valid."""
    root = make_project(
        {"agents/a/SKILL.md": skill(), "agents/a/config.toml": 'schedule = "0 */5 * * * *"\n'}
    )
    assert load_project(root).agents["a"].config.schedule == "0 */5 * * * *"


def test_agents_are_sorted_and_folders_without_skill_md_skipped(
    make_project: ProjectFactory,
) -> None:
    """Agents load in name order; dot-folders and folders without SKILL.md are not agents."""
    root = make_project(
        {
            "agents/zed/SKILL.md": skill(),
            "agents/alpha/SKILL.md": skill(),
            "agents/.hidden/SKILL.md": skill(),
            "agents/notes/README.md": "not an agent",
        }
    )
    assert list(load_project(root).agents) == ["alpha", "zed"]


def test_agent_name_at_64_characters_is_accepted(make_project: ProjectFactory) -> None:
    """A 64-character lowercase name with single hyphens is a valid agent name."""
    name = "a-" * 31 + "bc"
    assert len(name) == 64
    root = make_project({f"agents/{name}/SKILL.md": skill()})
    assert list(load_project(root).agents) == [name]
