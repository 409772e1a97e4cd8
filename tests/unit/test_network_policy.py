"""`[network]`: entries, matching, config errors, and each agent's effective allow list."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from action_llama.credentials.types import BUILTIN
from action_llama.doctor.network import check_network
from action_llama.egress.policy import PROVIDER_HOSTS, effective_policy
from action_llama.egress.rules import PRESETS, Policy, parse_entry
from action_llama.errors import ConfigError
from action_llama.project import get_agent, load_project

from support import ProjectFactory, run_al, skill

LoadError = Callable[[Path], ConfigError]


def policy_of(*entries: str, mode: str = "allowlist") -> Policy:
    return Policy(mode, tuple(rule for entry in entries for rule in parse_entry(entry)))


# --- matching ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "host", "port", "allowed"),
    [
        ("api.example.com", "api.example.com", 443, True),
        ("api.example.com", "api.example.com", 80, True),
        ("api.example.com", "API.Example.COM.", 443, True),
        ("api.example.com", "api.example.com", 22, False),
        ("api.example.com", "example.com", 443, False),
        ("api.example.com", "x.api.example.com", 443, False),
        ("*.example.com", "a.example.com", 443, True),
        ("*.example.com", "a.b.example.com", 443, True),
        ("*.example.com", "example.com", 443, False),
        ("*.example.com", "evilexample.com", 443, False),
        ("*.example.com", "a.example.com.evil.test", 443, False),
        ("github.com", "github.com.evil.test", 443, False),
        ("github.com", "evil.test@github.com", 443, False),
        ("github.com", "github.com%2eevil.test", 443, False),
        ("github.com:22", "github.com", 22, True),
        ("github.com:22", "github.com", 443, False),
        ("*.example.com:8443", "x.example.com", 8443, True),
        ("10.0.0.5:5432", "10.0.0.5", 5432, True),
        ("10.0.0.5:5432", "10.0.0.05", 5432, False),
        ("*.example.com", "1.2.3.4", 443, False),
        ("bücher.example", "xn--bcher-kva.example", 443, True),
    ],
)
def test_destinations_match_on_whole_labels(
    entry: str, host: str, port: int, allowed: bool
) -> None:
    """Hosts match exactly (case and a trailing dot aside), wildcards on whole labels only, on
    their ports; lookalikes and malformed names match nothing."""
    assert policy_of(entry).decide(host, port).allowed is allowed


def test_ip_literals_match_no_host_entry() -> None:
    """An IP address is allowed only when listed as written: no name entry covers it."""
    policy = policy_of("github", "pypi", "*.example.com")
    for host in ("140.82.112.3", "127.0.0.1", "2130706433", "0x7f000001", "[::1]"):
        assert not policy.decide(host, 443).allowed, host


def test_presets_expand_to_their_hosts() -> None:
    """A preset allows the hosts its ecosystem documents, on their usual ports."""
    policy = policy_of("github", "pypi", "npm", "debian")
    for host, port in [
        ("github.com", 443),
        ("api.github.com", 443),
        ("raw.githubusercontent.com", 443),
        ("github.com", 22),
        ("pypi.org", 443),
        ("files.pythonhosted.org", 443),
        ("registry.npmjs.org", 443),
        ("deb.debian.org", 80),
        ("security.debian.org", 80),
    ]:
        assert policy.decide(host, port).allowed, (host, port)
    assert not policy.decide("gist.evil.test", 443).allowed
    assert set(PRESETS) >= {"github", "pypi", "npm", "debian"}


def test_modes_none_and_open() -> None:
    """`none` allows nothing (the gateway is reached another way), `open` everything."""
    assert not policy_of(mode="none").decide("api.example.com", 443).allowed
    assert policy_of(mode="open").decide("anything.test", 31337).allowed


# --- config errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ('"https://api.example.com/v1"', 'write the host only: "api.example.com"'),
        ('"api.example.com/v1"', "not paths"),
        ('"*"', 'use mode = "open"'),
        ('"*.com"', "too broad"),
        ('"a.*.example.com"', "is not a host"),
        ('"example.com:0"', "port must be a number from 1 to 65535"),
        ('"example.com:http"', "port must be a number"),
        ('"pipy"', 'did you mean "pypi"?'),
        ('"[::1]:443"', "IPv6"),
        ('""', "empty entry"),
    ],
)
def test_bad_entries_name_file_and_key(
    make_project: ProjectFactory, load_error: LoadError, entry: str, says: str
) -> None:
    """A bad entry is a config error naming the file, the key with its index, and the fix."""
    root = make_project(config=f'[network]\nallow = ["pypi", {entry}]\n')
    err = load_error(root)
    assert str(err).startswith('config.toml: key "network.allow[1]"'), str(err)
    assert says in str(err)


def test_bad_mode_and_unknown_key_in_agent_file(
    make_project: ProjectFactory, load_error: LoadError
) -> None:
    """An agent's `[network]` is checked too, its errors naming the agent's file."""
    root = make_project(
        {
            "agents/a/SKILL.md": skill(),
            "agents/a/config.toml": '[network]\nmode = "closed"\nalow = []\n',
        }
    )
    err = load_error(root)
    assert 'agents/a/config.toml: key "network.mode"' in str(err)
    assert 'agents/a/config.toml: unknown key "network.alow"' in str(err)
    assert err.hint is not None
    assert '"network.allow"' in err.hint


# --- the effective policy ---------------------------------------------------------------------


PROJECT = """\
[network]
allow = ["api.example.com", "pypi"]

[models.sonnet]
provider = "anthropic"
model = "claude"

[models.local]
provider = "openai-compatible"
model = "llama"
base_url = "http://host.docker.internal:11434/v1"
"""


def load_agents(make_project: ProjectFactory) -> Path:
    return make_project(
        {
            "agents/plain/SKILL.md": skill(),
            "agents/plain/config.toml": 'models = ["sonnet", "local"]\n'
            'credentials = ["github_token", "git_ssh:work"]\n',
            "agents/own/SKILL.md": skill(),
            "agents/own/config.toml": 'models = ["sonnet"]\n[network]\nallow = ["npm"]\n',
            "agents/sealed/SKILL.md": skill(),
            "agents/sealed/config.toml": 'models = ["sonnet"]\n[network]\nmode = "none"\n',
        },
        config=PROJECT,
    )


def test_project_default_plus_implicit_entries(make_project: ProjectFactory) -> None:
    """An agent without `[network]` gets the project's entries, its models' API hosts (the
    provider's, or base_url's host and port) and its credentials' hosts, each with its source."""
    agent = get_agent(load_project(load_agents(make_project)), "plain")
    policy = effective_policy(agent)
    sources = {r.describe(): r.source for r in policy.rules}
    assert sources["api.example.com:80,443"] == "config.toml [network]"
    assert sources["pypi.org:80,443"] == "config.toml [network] preset pypi"
    assert sources["api.anthropic.com:443"] == "model sonnet (anthropic)"
    assert sources["host.docker.internal:11434"] == "model local (base_url)"
    assert sources["api.github.com:80,443"] == "credential github_token"
    assert sources["github.com:22"] == "credential git_ssh"
    decide = policy.policy().decide
    assert decide("objects.githubusercontent.com", 443).allowed
    assert not decide("host.docker.internal", 8080).allowed
    assert not decide("api.openai.com", 443).allowed
    assert policy.fix_for("evil.example", 443) == 'add "evil.example" to allow in config.toml'


def test_agent_table_replaces_the_project_table(make_project: ProjectFactory) -> None:
    """An agent's own `[network]` replaces the project's (its implicit entries stay), and the
    fix for a denied host names the agent's file."""
    project = load_project(load_agents(make_project))
    policy = effective_policy(get_agent(project, "own"))
    decide = policy.policy().decide
    assert decide("registry.npmjs.org", 443).allowed
    assert decide("api.anthropic.com", 443).allowed
    assert not decide("api.example.com", 443).allowed
    assert not decide("pypi.org", 443).allowed
    assert policy.fix_for("evil.example", 8443) == (
        'add "evil.example:8443" to allow in agents/own/config.toml'
    )


def test_mode_none_keeps_nothing(make_project: ProjectFactory) -> None:
    """`mode = "none"` drops even the implicit entries (only the gateway stays reachable)."""
    project = load_project(load_agents(make_project))
    policy = effective_policy(get_agent(project, "sealed"))
    assert policy.rules == ()
    assert not policy.policy().decide("api.anthropic.com", 443).allowed


def test_provider_hosts_match_the_session_endpoints() -> None:
    """Every provider the model session reaches at a fixed endpoint has that host allowed, and
    the provider key credential declares the same host."""
    from action_llama.agent.models import OPENAI_COMPATIBLE_ENDPOINTS
    from action_llama.config.project import PROVIDERS

    for provider, url in OPENAI_COMPATIBLE_ENDPOINTS.items():
        assert url.split("/")[2] == PROVIDER_HOSTS[provider]
    for provider in PROVIDERS:
        kind = BUILTIN[f"{provider.replace('-', '_')}_key"]
        if provider in PROVIDER_HOSTS:
            assert kind.hosts == (PROVIDER_HOSTS[provider],)
        else:
            assert kind.hosts == ()  # reached at base_url only


def test_declared_hosts_are_valid_entries() -> None:
    """Each credential type's hosts parse as entries; the types agents use against an API
    declare them (GitHub, git over SSH, Sentry...)."""
    for kind in BUILTIN.values():
        for entry in kind.hosts:
            parse_entry(entry)
    assert "github.com" in BUILTIN["github_token"].hosts
    assert BUILTIN["git_ssh"].hosts == ("github.com:22",)
    assert "sentry.io" in BUILTIN["sentry_token"].hosts


# --- what the user sees -----------------------------------------------------------------------


def test_doctor_lists_each_entry_with_its_source(make_project: ProjectFactory) -> None:
    """`al doctor` shows each agent's effective list with sources, and warns about `none`
    starving a model session and about `open`."""
    project = load_project(load_agents(make_project))
    plain = check_network(get_agent(project, "plain"))
    assert plain.status == "ok"
    assert plain.detail.startswith("allowlist (config.toml [network]): ")
    assert "api.anthropic.com:443" in plain.detail
    assert "model sonnet (anthropic)" in plain.detail
    assert "al-gateway" in plain.detail
    sealed = check_network(get_agent(project, "sealed"))
    assert sealed.status == "warn"
    assert sealed.fix is not None
    assert "agents/sealed/config.toml" in sealed.fix


def test_doctor_warns_about_open(make_project: ProjectFactory) -> None:
    """`mode = "open"` is shown as a warning: nothing is checked for that agent."""
    root = make_project(
        {"agents/a/SKILL.md": skill(), "agents/a/test-script.sh": "true\n"},
        config='[network]\nmode = "open"\n',
    )
    check = check_network(get_agent(load_project(root), "a"))
    assert check.status == "warn"
    assert "nothing is checked" in check.detail


def test_creds_types_shows_declared_hosts() -> None:
    """`al creds types` says which hosts each type makes reachable."""
    result = run_al("creds", "types")
    assert result.returncode == 0
    block = result.stdout.split("github_token", 1)[1].split("\n\n", 1)[0]
    assert "reaches:" in block
    assert "api.github.com" in block


def test_new_project_has_a_commented_network_table(tmp_path: Path) -> None:
    """`al new` writes a `[network]` table with every key commented, and the project loads
    with the default allowlist."""
    result = run_al("new", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "p" / "config.toml").read_text()
    assert "[network]" in text
    assert '# mode = "allowlist"' in text
    assert "# allow = []" in text
    project = load_project(tmp_path / "p")
    assert project.config.network.mode == "allowlist"
    assert project.agents["hello"].network.allow == []
