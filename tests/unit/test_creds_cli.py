"""`al creds` as a user types it: values go in by --field, a file, stdin or a prompt, and never
come back out (a sentinel secret is searched for in every output)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import AL

SENTINEL = "sk-sentinel-4e1b7c9d2a6f3085"
KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    f"b3BlbnNzaC1rZXktdjEAAAAA{SENTINEL}\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


class Creds:
    """Runs `al creds ...` against a temporary store and keeps every output it printed."""

    def __init__(self, root: Path):
        self.root = root
        self.outputs: list[str] = []

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "AL_DEBUG"}
        return {**env, "AL_CREDENTIALS_DIR": str(self.root)}

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [AL, "creds", *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        self.outputs += [result.stdout, result.stderr]
        assert "Traceback" not in result.stdout + result.stderr
        return result

    def value(self, *parts: str) -> str:
        return self.root.joinpath(*parts).read_text(encoding="utf-8")


@pytest.fixture
def creds(tmp_path: Path) -> Iterator[Creds]:
    """`al creds` on a store in a temp dir; after the test, no output held the sentinel."""
    runner = Creds(tmp_path / "store")
    yield runner
    for output in runner.outputs:
        assert SENTINEL not in output


def assert_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_add_with_field_stores_private_files(creds: Creds) -> None:
    """--field saves the value in a 0600 file inside 0700 directories and prints only the ref."""
    result = creds("add", "github_token", "--field", f"token={SENTINEL}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'Credential "github_token" saved.\n'
    assert creds.value("github_token", "default", "token") == SENTINEL + "\n"
    for directory in (creds.root, creds.root / "github_token", creds.root / "github_token/default"):
        assert mode(directory) == 0o700, directory
    assert mode(creds.root / "github_token/default/token") == 0o600


def test_add_single_field_type_takes_all_of_stdin(creds: Creds) -> None:
    """A one-field type piped on stdin takes the whole input (trimmed) as its value."""
    result = creds("add", "github_token:work", stdin=f"{SENTINEL}\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'Credential "github_token:work" saved.\n'
    assert creds.value("github_token", "work", "token") == SENTINEL + "\n"


def test_add_reads_a_key_file_and_name_value_lines(creds: Creds, tmp_path: Path) -> None:
    """`id_rsa=@file` reads a multi-line key intact; the other fields come as stdin lines."""
    key = tmp_path / "id_ed25519"
    key.write_text(KEY + "\n")
    result = creds(
        "add", "git_ssh:deploy", "--field", f"id_rsa=@{key}", stdin="username=Bot\nemail=b@x.io\n"
    )
    assert result.returncode == 0, result.stderr
    assert creds.value("git_ssh", "deploy", "id_rsa") == KEY + "\n"
    assert creds.value("git_ssh", "deploy", "username") == "Bot\n"
    assert creds.value("git_ssh", "deploy", "email") == "b@x.io\n"


def test_ls_shows_names_and_fields_never_values(creds: Creds, tmp_path: Path) -> None:
    """`ls` groups instances under their type's label and lists field names only."""
    key = tmp_path / "key"
    key.write_text(KEY)
    creds("add", "github_token", "--field", f"token={SENTINEL}")
    creds("add", "github_token:work", stdin=SENTINEL)
    creds("add", "git_ssh", "--field", f"id_rsa=@{key}", stdin=f"username={SENTINEL}\nemail=e@x")
    result = creds("ls")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "  GitHub token (github_token)" in lines
    assert "  Git SSH key (git_ssh)" in lines
    assert any(line.split() == ["github_token", "token"] for line in lines)
    assert any(line.split() == ["github_token:work", "token"] for line in lines)
    assert any(line.split() == ["git_ssh", "email,", "id_rsa,", "username"] for line in lines)


def test_ls_of_an_empty_store_says_how_to_add(creds: Creds) -> None:
    """An empty store names its location and the command that adds a credential."""
    result = creds("ls")
    assert result.returncode == 0
    assert str(creds.root) in result.stdout
    assert "al creds add <type>" in result.stdout


def test_rm_removes_the_instance(creds: Creds) -> None:
    """`rm` deletes one instance (and its type folder once empty); an unknown ref is an error."""
    creds("add", "github_token:work", stdin=SENTINEL)
    creds("add", "sentry_token", stdin=SENTINEL)
    result = creds("rm", "github_token:work")
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'Credential "github_token:work" removed.\n'
    assert not (creds.root / "github_token").exists()
    assert "sentry_token" in creds("ls").stdout
    assert_error(creds("rm", "github_token:work"), '"github_token:work" is not in', "al creds ls")


def test_types_describe_fields_variables_and_purpose(creds: Creds) -> None:
    """`types` shows each type's fields, the variables agents get and what it is for."""
    result = creds("types")
    assert result.returncode == 0
    text = result.stdout
    assert "github_token  (GitHub token)" in text
    assert "agents get: GITHUB_TOKEN, GH_TOKEN" in text
    assert "GIT_SSH_COMMAND" in text
    assert "fields:     id_rsa, username (not secret), email (not secret)" in text
    assert "never given to agents" in text  # the gateway-only webhook secrets
    only = creds("types", "sentry").stdout
    assert "sentry_token" in only
    assert "github_token" not in only


def test_types_say_whether_each_type_is_brokered(creds: Creds) -> None:
    """`types` says for each type given to agents how brokered runs get it: model keys by the
    broker, header tokens as placeholders, an ssh key in an agent, the rest (OAuth secrets,
    service-account keys) as files."""
    brokered = {
        name: creds("types", name).stdout.rsplit("brokered:", 1)[-1].strip().split(":")[0]
        for name in (
            "anthropic_key",
            "github_token",
            "sentry_token",
            "git_ssh",
            "gcp_service_account",
        )
    }
    assert brokered == {
        "anthropic_key": "yes",
        "git_ssh": "yes",
        "github_token": "yes",
        "sentry_token": "yes",
        "gcp_service_account": "no",
    }
    assert "model broker adds the key" in creds("types", "anthropic_key").stdout
    assert "brokered" not in creds("types", "gateway_api_key").stdout


def test_unknown_type_suggests_and_lists_known_types(creds: Creds) -> None:
    """A misspelt type gets a did-you-mean and the list of known types; nothing is written."""
    result = creds("add", "githb_token", "--field", f"token={SENTINEL}")
    assert_error(result, 'Unknown credential type "githb_token"', 'Did you mean "github_token"?')
    assert "sentry_token" in result.stderr
    assert not creds.root.exists()


def test_unknown_field_names_the_allowed_fields(creds: Creds) -> None:
    """A field the type does not have is refused with the fields it has."""
    result = creds("add", "git_ssh", "--field", f"idrsa={SENTINEL}")
    assert_error(
        result, 'git_ssh has no field "idrsa"', 'Did you mean "id_rsa"?', "id_rsa, username, email"
    )


def test_field_without_a_name_is_not_echoed(creds: Creds) -> None:
    """`--field VALUE` (the name forgotten) is refused without repeating what was typed."""
    assert_error(creds("add", "github_token", "--field", SENTINEL), "name=value")


def test_empty_value_is_refused(creds: Creds) -> None:
    """Empty stdin or an empty --field value leaves nothing stored."""
    assert_error(
        creds("add", "github_token", stdin="  \n"), 'Field "token" of github_token is empty'
    )
    assert_error(creds("add", "github_token", "--field", "token="), "is empty")
    assert not (creds.root / "github_token").exists()


def test_missing_fields_of_a_multi_field_type_are_named(creds: Creds) -> None:
    """Without a terminal, fields given neither by --field nor stdin are named, with the ways."""
    result = creds("add", "git_ssh", "--field", "username=Bot")
    assert_error(result, "git_ssh needs fields id_rsa, email", "--field name=@FILE")


def test_a_key_cut_to_one_line_is_refused(creds: Creds) -> None:
    """A private key of which only the first line arrived is refused, pointing at name=@file."""
    lines = f"id_rsa=-----BEGIN OPENSSH PRIVATE KEY----- {SENTINEL}\nusername=a\nemail=b\n"
    assert_error(creds("add", "git_ssh", stdin=lines), "first line of a key", "--field id_rsa=@")


def test_missing_key_file_names_the_path(creds: Creds, tmp_path: Path) -> None:
    """`name=@path` of a file that does not exist names the path."""
    missing = tmp_path / "nope"
    assert_error(
        creds("add", "git_ssh", "--field", f"id_rsa=@{missing}"), str(missing), "does not exist"
    )


def test_existing_instance_needs_force_without_a_terminal(creds: Creds) -> None:
    """Without a terminal an existing instance is kept unless --force, which replaces it."""
    creds("add", "github_token", stdin=SENTINEL)
    refused = creds("add", "github_token", stdin="other-value")
    assert_error(refused, "already exists", "--force")
    assert creds.value("github_token", "default", "token") == SENTINEL + "\n"
    replaced = creds("add", "github_token", "--force", stdin="other-value")
    assert replaced.returncode == 0, replaced.stderr
    assert creds.value("github_token", "default", "token") == "other-value\n"


def test_bad_reference_is_refused(creds: Creds) -> None:
    """A reference that is not `type[:instance]` says the expected shape."""
    assert_error(creds("add", "github token", stdin=SENTINEL), 'write "type" or "type:instance"')


class Terminal:
    """`al creds ...` on a pseudo-terminal, as a person at a keyboard runs it."""

    def __init__(self, creds: Creds, *args: str):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec at once
            os.execve(AL, [AL, "creds", *args], creds.env)
        self.seen = ""

    def expect(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} in {self.seen!r}"
            if select.select([self.fd], [], [], left)[0]:
                try:
                    self.seen += os.read(self.fd, 4096).decode(errors="replace")
                except OSError:  # the child exited: the terminal is gone
                    break
        assert text in self.seen, self.seen

    def type(self, line: str) -> None:
        os.write(self.fd, (line + "\r").encode())

    def finish(self) -> int:
        self.expect("\n")
        try:
            while select.select([self.fd], [], [], 10)[0]:
                chunk = os.read(self.fd, 4096)
                if not chunk:
                    break
                self.seen += chunk.decode(errors="replace")
        except OSError:
            pass
        os.close(self.fd)
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])


def test_prompts_hide_secret_fields_and_show_plain_ones(creds: Creds) -> None:
    """On a terminal each field is prompted for; only non-secret answers are echoed."""
    term = Terminal(creds, "add", "discord_bot")
    term.expect("application_id")
    term.type("app-1234")
    term.expect("public_key")
    term.type("pub-5678")
    term.expect("bot_token: ")  # the space comes once echo is off
    term.type(SENTINEL)
    term.expect('Credential "discord_bot" saved.')
    assert term.finish() == 0
    creds.outputs.append(term.seen)
    assert "app-1234" in term.seen
    assert "pub-5678" in term.seen
    assert creds.value("discord_bot", "default", "bot_token") == SENTINEL + "\n"


def test_replacing_on_a_terminal_asks_first(creds: Creds) -> None:
    """On a terminal an existing instance is replaced only if the user says yes."""
    creds("add", "github_token", stdin=SENTINEL)
    term = Terminal(creds, "add", "github_token")
    term.expect("already exists. Replace it?")
    term.type("n")
    term.expect("Kept the existing credential")
    assert term.finish() == 0
    creds.outputs.append(term.seen)
    assert creds.value("github_token", "default", "token") == SENTINEL + "\n"


def test_prompt_for_a_key_asks_for_its_file(creds: Creds, tmp_path: Path) -> None:
    """A multi-line field (an SSH key) is prompted for as a file path, read intact."""
    key = tmp_path / "id_ed25519"
    key.write_text(KEY + "\n")
    term = Terminal(creds, "add", "git_ssh")
    term.expect("id_rsa: path of the file holding it")
    term.type(str(key))
    term.expect("username")
    term.type("Bot")
    term.expect("email")
    term.type("bot@example.com")
    term.expect('Credential "git_ssh" saved.')
    assert term.finish() == 0
    creds.outputs.append(term.seen)
    assert creds.value("git_ssh", "default", "id_rsa") == KEY + "\n"
    assert creds.value("git_ssh", "default", "email") == "bot@example.com\n"
