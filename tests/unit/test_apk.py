"""The apk command line and the Alpine-to-Debian names (the shim's pure part), and what
`al doctor` says about Dockerfiles written for the original's Alpine-and-Node base."""

from __future__ import annotations

from pathlib import Path

import pytest

from action_llama.doctor.dockerfiles import check_dockerfiles, run_commands, usage_of
from action_llama.doctor.result import Check
from action_llama.images.apk import parse_command
from action_llama.images.apk_names import translate
from action_llama.project import load_project

from support import script_agent, write_files


@pytest.mark.parametrize(
    ("argv", "action", "args", "no_cache", "update", "virtual"),
    [
        (["add", "--no-cache", "github-cli"], "add", ["github-cli"], True, False, None),
        (["--no-cache", "add", "jq", "git"], "add", ["jq", "git"], True, False, None),
        (["add", "-U", "--virtual", ".deps", "gcc"], "add", ["gcc"], False, True, ".deps"),
        (["add", "--update", "-t", "build", "make"], "add", ["make"], False, True, "build"),
        (["add", "--virtual=.deps", "gcc"], "add", ["gcc"], False, False, ".deps"),
        (["del", ".deps"], "del", [".deps"], False, False, None),
        (["update"], "update", [], False, False, None),
        (["upgrade", "--no-cache"], "upgrade", [], True, False, None),
    ],
)
def test_apk_command_lines_are_read_as_alpine_reads_them(
    argv: list[str],
    action: str,
    args: list[str],
    no_cache: bool,
    update: bool,
    virtual: str | None,
) -> None:
    """Options may come before or after the subcommand; --virtual and -t take a name."""
    command = parse_command(argv)
    assert (command.action, command.args) == (action, args)
    assert (command.no_cache, command.update, command.virtual) == (no_cache, update, virtual)


def test_alpine_only_options_are_set_aside_not_taken_as_packages() -> None:
    """A repository URL or --allow-untrusted is reported as ignored, never installed."""
    command = parse_command(
        ["add", "-X", "http://dl-cdn.alpinelinux.org/alpine/edge", "--allow-untrusted", "jq"]
    )
    assert command.args == ["jq"]
    assert command.ignored == ["-X http://dl-cdn.alpinelinux.org/alpine/edge", "--allow-untrusted"]


@pytest.mark.parametrize(
    ("alpine", "debian"),
    [
        ("github-cli", ("gh",)),
        ("build-base", ("build-essential",)),
        ("py3-pip", ("python3-pip",)),
        ("py3-requests", ("python3-requests",)),
        ("py3-pillow", ("python3-pil",)),
        ("musl-dev", ("libc6-dev",)),
        ("openssl-dev", ("libssl-dev",)),
        ("zlib-dev", ("zlib1g-dev",)),
        ("python3", ("python3", "python3-venv")),
        ("nodejs", ("nodejs",)),
        ("npm", ("npm",)),
        ("ripgrep", ("ripgrep",)),
        ("jq", ("jq",)),
        ("yq", ("yq",)),
        ("bash", ("bash",)),
        ("coreutils", ("coreutils",)),
        ("findutils", ("findutils",)),
        ("openssh-client", ("openssh-client",)),
        ("git", ("git",)),
        ("curl", ("curl",)),
        ("make", ("make",)),
        ("gcc", ("gcc",)),
        ("gcompat", ()),
    ],
)
def test_alpine_names_become_debian_names(alpine: str, debian: tuple[str, ...]) -> None:
    """The table, the py3-* rule, and names that are the same on both pass through."""
    assert translate(alpine).debian == debian


def test_translations_say_what_differs() -> None:
    """Renames show an arrow; a version pin is dropped and said; Debian's yq and Node differ."""
    assert translate("github-cli").describe() == "github-cli → gh"
    assert translate("jq").describe() == "jq"
    pinned = translate("bash=5.2.15-r0")
    assert pinned.debian == ("bash",)
    assert "version =5.2.15-r0 ignored" in pinned.describe()
    assert "jq wrapper" in translate("yq").describe()
    assert "Node.js 18" in translate("nodejs").describe()
    docker = translate("docker-cli")
    assert docker.docker_client
    assert docker.describe().startswith("docker-cli → docker (the client only")


def test_names_debian_lacks_carry_what_to_do_instead() -> None:
    """kubectl has no Debian package: the translation says so and how to get it."""
    item = translate("kubectl")
    assert item.debian == ()
    assert item.unavailable is not None
    assert "dl.k8s.io" in item.unavailable


def test_run_lines_are_found_with_continuations_and_exec_form() -> None:
    """Continuation lines join, comments go, exec-form RUN becomes a command line."""
    text = (
        "FROM al-agent:latest\n"
        "# RUN apk add nothing\n"
        "RUN apk add --no-cache \\\n    github-cli \\\n    jq\n"
        'RUN ["apk", "add", "ripgrep"]\n'
    )
    assert run_commands(text) == ["apk add --no-cache      github-cli      jq", "apk add ripgrep"]
    usage = usage_of(text)
    assert [t.alpine for t in usage.apk] == ["github-cli", "jq", "ripgrep"]


def test_node_use_without_node_installed_is_noticed() -> None:
    """npm after `&&` counts; an apk or apt-get install of nodejs in the file satisfies it."""
    lacking = usage_of("RUN apk add --no-cache git && npm install -g pnpm\n")
    assert lacking.node_commands == ("npm",)
    assert not lacking.installs_node
    assert usage_of("RUN apk add --no-cache nodejs npm && npx -y x\n").installs_node
    assert usage_of("RUN apt-get update && apt-get install -y nodejs npm\n").installs_node


def dockerfile_checks(root: Path) -> list[Check]:
    project = load_project(root)
    return check_dockerfiles(project, list(project.agents.values()))


def test_doctor_says_what_apk_lines_install_and_warns_about_missing_node(tmp_path: Path) -> None:
    """The public collection's Dockerfile is information (ok); an agent running npm without
    Node.js anywhere in its chain is a warning with the one-line fix; an agent whose project
    Dockerfile installs Node.js is fine."""
    write_files(
        tmp_path,
        {
            "config.toml": "",
            "Dockerfile": "FROM al-agent:d4227bec\nUSER root\nRUN apk add --no-cache github-cli\n",
            **script_agent("plain", "true"),
            **script_agent("npmer", "true", dockerfile="RUN npm install -g typescript\n"),
        },
    )
    checks = {c.name: c for c in dockerfile_checks(tmp_path)}
    assert checks["Dockerfile"].status == "ok"
    assert checks["Dockerfile"].detail == (
        "uses apk (Alpine); al installs with apt-get instead: github-cli → gh"
    )
    npmer = checks["agents/npmer/Dockerfile"]
    assert npmer.status == "warn"
    assert "runs npm, but installs no Node.js" in npmer.detail
    assert npmer.fix is not None
    assert "RUN apk add --no-cache nodejs npm" in npmer.fix
    assert "agents/plain/Dockerfile" not in checks

    (tmp_path / "Dockerfile").write_text("USER root\nRUN apk add --no-cache nodejs npm\n")
    checks = {c.name: c for c in dockerfile_checks(tmp_path)}
    assert "agents/npmer/Dockerfile" not in checks
