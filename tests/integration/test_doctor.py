"""`al doctor` on real projects, a real credential store, real users and the real engine: a ✓
per passing check, a ✗ with its fix per failing one, exit 1 when anything fails."""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.gateway.settings import API_KEY_REF, ensure_api_key

from support import ProjectFactory, run_al, script_agent

Doctor = Callable[..., subprocess.CompletedProcess[str]]  # the `doctor` fixture
NO_DOCKER = "unix:///nonexistent.sock"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creates and switches to users")


def host_agent(user: str = "nobody", top: str = "", runtime: str = "", tables: str = "") -> str:
    """An agent config.toml running as host user `user`: top-level keys, [runtime] keys, tables."""
    return f'{top}[runtime]\ntype = "host-user"\nrun_as = "{user}"\n{runtime}{tables}'


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    return CredentialStore(tmp_path / "creds")


@pytest.fixture
def doctor(store: CredentialStore, monkeypatch: pytest.MonkeyPatch) -> Doctor:
    """`al doctor -p ROOT ARGS` with the temp store; DOCKER_HOST as given (default: unchanged)."""
    monkeypatch.delenv("AL_DEBUG", raising=False)

    def run(
        root: Path, *args: str, docker_host: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {"AL_CREDENTIALS_DIR": str(store.root)}
        if docker_host:
            env["DOCKER_HOST"] = docker_host
        result = run_al("doctor", "-p", str(root), *args, env=env, timeout=120)
        assert "Traceback" not in result.stdout + result.stderr
        return result

    return run


def row(stdout: str, name: str) -> tuple[str, str]:
    """(mark, rest of the text) of the check called `name`, with its continuation lines."""
    lines = stdout.splitlines()
    for index, line in enumerate(lines):
        parts = line.split(maxsplit=1)
        if len(parts) == 2 and parts[0] in "✓✗!" and parts[1].startswith(name + " "):
            following = []
            for ln in lines[index + 1 :]:
                if not ln.startswith("      "):
                    break
                following.append(ln.strip())
            return parts[0], "\n".join([parts[1][len(name) :].strip(), *following])
    raise AssertionError(f"no check {name!r} in:\n{stdout}")


def host_project(make_project: ProjectFactory, config: str = "", **agent: str) -> Path:
    """A project with one host-user agent, ops, in script mode (`agent`: host_agent's args)."""
    return make_project(script_agent("ops", "echo hi\n", host_agent(**agent)), config=config)


@pytest.mark.docker
def test_good_project_passes(
    doctor: Doctor, make_project: ProjectFactory, store: CredentialStore, base_image: str
) -> None:
    """Valid files, Docker up, the base image built, credentials and webhook secret present:
    every check ✓ and exit 0."""
    config = (
        'credentials = ["github_token"]\n[[webhooks]]\nsource = "github"\nevents = ["issues"]\n'
    )
    root = make_project(
        script_agent("dev", "echo hi\n", config),
        config='[webhooks.github]\ntype = "github"\n',
    )
    store.write(CredentialRef("github_token"), {"token": "t0ken-value"})
    store.write(CredentialRef("github_webhook_secret"), {"secret": "s3cret-value"})
    ensure_api_key(store)
    result = doctor(root)
    assert result.returncode == 0, result.stdout
    for name in (
        "project",
        "docker",
        "base image",
        "agent dev",
        "credentials dev",
        "webhooks dev",
        "webhook secret github",
        "gateway API key",
    ):
        assert row(result.stdout, name)[0] == "✓", result.stdout
    assert "✗" not in result.stdout
    warned = [line for line in result.stdout.splitlines() if line.lstrip().startswith("!")]
    # Egress proxies of deleted projects are reported machine-wide: an engine that other
    # sessions share may have some, and that warning is not about this project.
    assert all(line.split()[1] == "egress" and "left behind" in line for line in warned), (
        result.stdout
    )
    assert result.stdout.rstrip().endswith("All checks passed.")


@pytest.mark.docker
def test_missing_base_image_is_not_built_by_doctor(
    doctor: Doctor, make_project: ProjectFactory, docker_client: object, base_image: str
) -> None:
    """A [local].image not built yet is not a failure while an OS image is here to build it
    from, and doctor leaves the building to al image build."""
    from docker.errors import ImageNotFound

    tag = f"al-doc-missing-{secrets.token_hex(4)}:latest"
    root = make_project(script_agent("dev", "echo hi\n"), config=f'[local]\nimage = "{tag}"\n')
    result = doctor(root)
    mark, text = row(result.stdout, "base image")
    assert mark in "✓!", result.stdout
    assert "not built yet" in text
    assert "al image build" in text
    with pytest.raises(ImageNotFound):
        docker_client.images.get(tag)  # type: ignore[attr-defined]


def test_bad_toml_is_a_failed_check(doctor: Doctor, make_project: ProjectFactory) -> None:
    """Broken TOML is a ✗ project line with the file, the line and the fix; no traceback."""
    root = make_project(script_agent("dev", "echo hi\n"), config="[local]\nmemory = 4g\n")
    result = doctor(root, docker_host=NO_DOCKER)
    assert result.returncode == 1
    mark, text = row(result.stdout, "project")
    assert mark == "✗"
    assert "config.toml: invalid TOML" in text
    assert "fix: Fix the syntax" in text
    assert result.stdout.rstrip().endswith("1 check failed.")


def test_every_config_problem_is_listed(doctor: Doctor, make_project: ProjectFactory) -> None:
    """Several mistakes in agent files each get their own line under the ✗ project check."""
    root = make_project(
        {
            **script_agent("dev", "echo hi\n", "timout = 60\n"),
            **script_agent("rev", "echo hi\n", 'models = ["sonet"]\n'),
        },
        config='[models.sonnet]\nprovider = "anthropic"\nmodel = "claude-sonnet-4-5"\n',
    )
    result = doctor(root, docker_host=NO_DOCKER)
    assert result.returncode == 1
    mark, text = row(result.stdout, "project")
    assert mark == "✗"
    assert 'agents/dev/config.toml: unknown key "timout"' in text
    assert 'references model "sonet"' in text
    assert 'did you mean "timeout"?' in text


def test_missing_credential_fails_with_the_add_command(
    doctor: Doctor, make_project: ProjectFactory, store: CredentialStore
) -> None:
    """Each credential an agent needs and the store lacks is named, with `al creds add`."""
    root = host_project(make_project, top='credentials = ["github_token", "sentry_token:prod"]\n')
    store.write(CredentialRef("github_token"), {"token": "t0ken-value"})
    result = doctor(root, docker_host=NO_DOCKER)
    assert result.returncode == 1
    mark, text = row(result.stdout, "credentials ops")
    assert mark == "✗"
    assert "sentry_token:prod" in text
    assert "github_token" not in text.split("fix:")[0].split(":", 1)[1]
    assert "fix: al creds add sentry_token:prod" in text


def test_undefined_webhook_source_fails_with_available_names(
    doctor: Doctor, make_project: ProjectFactory
) -> None:
    """A [[webhooks]] source missing from config.toml [webhooks] is ✗ with the defined ones."""
    root = host_project(
        make_project,
        config='[webhooks.github]\ntype = "github"\nallowUnsigned = true\n',
        tables='[[webhooks]]\nsource = "githb"\n',
    )
    result = doctor(root, docker_host=NO_DOCKER)
    assert result.returncode == 1
    mark, text = row(result.stdout, "webhooks ops")
    assert mark == "✗"
    assert 'webhook source "githb" which is not defined in config.toml [webhooks]' in text
    assert "Available: github" in text
    assert 'Did you mean "github"?' in text


@needs_root
def test_missing_webhook_secret_warns_unless_unsigned_allowed(
    doctor: Doctor, make_project: ProjectFactory, store: CredentialStore
) -> None:
    """A used source without its signing secret is a warning (!), not a failure; a source
    that allows unsigned webhooks needs none."""
    trigger = '[[webhooks]]\nsource = "{}"\n'
    root = host_project(
        make_project,
        tables=trigger.format("gh") + trigger.format("open"),
        config='[webhooks.gh]\ntype = "github"\ncredential = "org"\n'
        '[webhooks.open]\ntype = "sentry"\nallowUnsigned = true\n',
    )
    ensure_api_key(store)
    result = doctor(root, docker_host=NO_DOCKER)
    assert result.returncode == 0, result.stdout
    mark, text = row(result.stdout, "webhook secret gh")
    assert mark == "!"
    assert "fix: al creds add github_webhook_secret:org" in text
    assert row(result.stdout, "webhook secret open")[0] == "✓"
    # The other warning: without Docker, no egress proxy for the host-user agent's runs.
    assert row(result.stdout, "egress host users")[0] == "!"
    assert result.stdout.rstrip().endswith("All checks passed, 2 warnings.")


def test_docker_down_fails_for_a_container_project(
    doctor: Doctor, make_project: ProjectFactory
) -> None:
    """With container agents, an unreachable engine is ✗ with the platform's fix."""
    root = make_project(script_agent("dev", "echo hi\n"))
    result = doctor(root, docker_host=NO_DOCKER)
    assert result.returncode == 1
    mark, text = row(result.stdout, "docker")
    assert mark == "✗"
    assert "Docker is not running" in text
    assert "Container agents need it: dev" in text
    assert "fix: Start the Docker daemon: sudo systemctl start docker" in text


@needs_root
def test_docker_down_does_not_matter_without_container_agents(
    doctor: Doctor, make_project: ProjectFactory
) -> None:
    """A project of host-user agents passes with no engine reachable."""
    result = doctor(host_project(make_project), docker_host=NO_DOCKER)
    assert result.returncode == 0, result.stdout
    mark, text = row(result.stdout, "docker")
    assert mark == "✓"
    assert "not needed" in text
    assert "base image" not in result.stdout
    assert row(result.stdout, "host user nobody")[0] == "✓"
    assert "no sudo rule needed" in row(result.stdout, "switch to nobody")[1]


@pytest.fixture
def new_user() -> Iterator[str]:
    """A user name that does not exist yet; deleted after the test if something created it."""
    name = f"al-doc-{secrets.token_hex(3)}"
    yield name
    subprocess.run(["userdel", name], capture_output=True, check=False)


@needs_root
def test_fix_creates_a_missing_host_user(
    doctor: Doctor, make_project: ProjectFactory, new_user: str
) -> None:
    """A missing run_as user is ✗ with `al doctor --fix`, which creates it as a system user
    without a login shell; afterwards doctor passes."""
    root = host_project(make_project, user=new_user)
    before = doctor(root, docker_host=NO_DOCKER)
    assert before.returncode == 1
    mark, text = row(before.stdout, f"host user {new_user}")
    assert mark == "✗"
    assert f'User "{new_user}" (run_as of ops) does not exist.' in text
    assert "fix: al doctor --fix creates it" in text

    fixed = doctor(root, "--fix", docker_host=NO_DOCKER)
    assert fixed.returncode == 0, fixed.stdout
    mark, text = row(fixed.stdout, f"host user {new_user}")
    assert mark == "✓"
    assert "created (useradd --system" in text
    entry = pwd.getpwnam(new_user)
    assert entry.pw_uid < 1000
    assert entry.pw_shell.endswith(("nologin", "false"))

    after = doctor(root, docker_host=NO_DOCKER)
    assert after.returncode == 0, after.stdout
    assert "exists" in row(after.stdout, f"host user {new_user}")[1]


def test_missing_group_fails(doctor: Doctor, make_project: ProjectFactory) -> None:
    """A configured group that does not exist is ✗, named, and not created by --fix."""
    group = f"al-doc-nogroup-{secrets.token_hex(3)}"
    root = host_project(make_project, runtime=f'groups = ["{group}"]\n')
    result = doctor(root, "--fix", docker_host=NO_DOCKER)
    assert result.returncode == 1
    mark, text = row(result.stdout, "groups of nobody")
    assert mark == "✗"
    assert f"Group {group} (in [runtime] groups) does not exist." in text


def test_agent_that_cannot_run_fails(doctor: Doctor, make_project: ProjectFactory) -> None:
    """An agent with neither a script nor a model session is ✗ with what to add."""
    root = make_project(
        {
            "agents/idle/SKILL.md": "---\ndescription: idle\n---\nx\n",
            "agents/idle/config.toml": host_agent(),
        }
    )
    result = doctor(root, docker_host=NO_DOCKER)
    assert result.returncode == 1
    mark, text = row(result.stdout, "agent idle")
    assert mark == "✗"
    assert "test-script.sh" in text


def test_filter_the_source_type_cannot_apply_fails_with_the_fix(
    make_project: ProjectFactory,
) -> None:
    """A Sentry-only filter on a GitHub source would never match: doctor says so."""
    root = make_project(
        {
            "agents/triage/SKILL.md": "Triage.\n",
            "agents/triage/test-script.sh": "true\n",
            "agents/triage/config.toml": '[[webhooks]]\nsource = "gh"\nresources = ["issue"]\n',
        },
        config='[webhooks.gh]\ntype = "github"\nallowUnsigned = true\n',
    )
    result = run_al("doctor", "-p", str(root), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 1
    assert "resources" in result.stdout
    assert "Remove or change those filters" in result.stdout


def test_the_gateway_api_key_is_a_warning_until_fix_makes_it(
    doctor: Doctor, make_project: ProjectFactory, store: CredentialStore
) -> None:
    """Without the operator API key doctor warns and names the fix; --fix makes one, kept in
    the credential store, that later runs report present."""
    root = make_project({"agents/hello/SKILL.md": "Hello.\n"})
    first = doctor(root, docker_host=NO_DOCKER)
    mark, text = row(first.stdout, "gateway API key")
    assert mark == "!"
    assert "fix: al doctor --fix" in text
    assert not store.has(API_KEY_REF)
    fixed = doctor(root, "--fix", docker_host=NO_DOCKER)
    assert row(fixed.stdout, "gateway API key")[0] == "✓"
    key = store.read(API_KEY_REF)["key"]
    assert len(key) >= 40
    assert key not in fixed.stdout
    assert row(doctor(root, docker_host=NO_DOCKER).stdout, "gateway API key")[0] == "✓"
