"""How host-user runs are launched, checked without root: commands, users, reachability."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from action_llama.errors import RunError
from action_llama.runtimes import host_launch as launch
from action_llama.runtimes.host_user import HostUserRuntime, PidFile

USER = launch.RunUser("agent", 5001, 6001, (6001, 6002), group="builders")
ENTRY = ["/usr/bin/python3", "-s", "-m", "action_llama.agent"]


def test_as_root_setpriv_switches_uid_gid_groups_and_forbids_new_privileges() -> None:
    """As root the entry runs under setpriv with the run's uid, primary group, every group,
    and no-new-privs; the entry's own argv follows unchanged."""
    argv = launch.as_user(USER, "setpriv", ENTRY, ["AL_WORK_DIR"])
    assert argv == [
        "setpriv",
        "--reuid=5001",
        "--regid=6001",
        "--groups=6001,6002",
        "--no-new-privs",
        "--",
        *ENTRY,
    ]


def test_without_root_sudo_is_non_interactive_and_names_only_the_variables_it_keeps() -> None:
    """Not root: `sudo -n -u <user> -g <first group>`, told which variables to keep by name;
    no value ever appears in the command line."""
    env = {"AL_CREDENTIALS_PATH": "/dev/shm/x", "GITHUB_TOKEN": "ghp_should_not_be_here"}
    argv = launch.as_user(USER, "sudo", ENTRY, list(env))
    assert argv == [
        "sudo",
        "-n",
        "-u",
        "agent",
        "-g",
        "builders",
        "--preserve-env=AL_CREDENTIALS_PATH,GITHUB_TOKEN",
        "--",
        *ENTRY,
    ]
    assert not any(value in arg for value in env.values() for arg in argv)


def test_runuser_fallback_keeps_the_environment_and_a_run_as_oneself_is_not_wrapped() -> None:
    """Without setpriv, runuser -u keeps the prepared environment; as the agent's own user
    the entry is run directly."""
    assert launch.as_user(USER, "runuser", ENTRY) == [
        "runuser",
        "-u",
        "agent",
        "-g",
        "builders",
        "--preserve-environment",
        "--",
        *ENTRY,
    ]
    assert launch.as_user(USER, "self", ENTRY) == ENTRY


def test_unknown_user_or_group_is_a_run_error_saying_how_to_fix_it() -> None:
    """A missing OS user points at `al doctor --fix`; a missing group names [runtime].groups."""
    with pytest.raises(RunError) as missing_user:
        launch.resolve_user("al-no-such-user-here")
    assert '"al-no-such-user-here"' in missing_user.value.message
    assert missing_user.value.hint == "Create it with: al doctor --fix"
    with pytest.raises(RunError) as missing_group:
        launch.resolve_user("root", ("al-no-such-group",))
    assert "[runtime].groups" in missing_group.value.message


def test_configured_first_group_becomes_the_runs_primary_group() -> None:
    """`groups = ["x", ...]`: the run's primary group is x, and it keeps the user's own."""
    import grp

    daemon = grp.getgrnam("daemon").gr_gid
    user = launch.resolve_user("root", ("daemon",))
    assert user.gid == daemon
    assert 0 in user.gids
    assert daemon in user.gids
    assert user.group == "daemon"


def test_reachability_follows_every_parent_directory(tmp_path: Path) -> None:
    """A readable file below a directory others cannot pass is unreachable for them."""
    outer = tmp_path / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    (inner / "file").write_text("x")
    for path in (tmp_path, outer, inner):
        path.chmod(0o755)
    (inner / "file").chmod(0o644)
    stranger = launch.RunUser("stranger", 54321, 54321, (54321,))
    reachable = all(os.stat(p).st_mode & 0o001 for p in [*tmp_path.parents] if p != Path("/"))
    assert launch.can_reach(inner / "file", stranger, launch.R) == reachable
    outer.chmod(0o700)
    assert not launch.can_reach(inner / "file", stranger, launch.R)
    assert not launch.can_read_tree(inner, stranger)
    outer.chmod(0o755)


def test_runs_root_made_by_someone_else_is_refused(tmp_path: Path) -> None:
    """A runs root that is a symlink (somebody prepared it) is not used."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "runs"
    link.symlink_to(real)
    with pytest.raises(RunError) as info:
        launch.owned_dir(link, 0o711)
    assert "AL_RUNS_DIR" in (info.value.hint or "")


def test_package_copy_is_world_readable_and_complete(tmp_path: Path) -> None:
    """The exposed package holds the entry point, with 0755 directories and 0644 files."""
    lib = launch.expose_package(tmp_path)
    entry = lib / "action_llama" / "agent" / "entry.py"
    assert entry.is_file()
    assert entry.stat().st_mode & 0o777 == 0o644
    assert (lib / "action_llama").stat().st_mode & 0o777 == 0o755
    assert not list(lib.rglob("__pycache__"))
    assert launch.expose_package(tmp_path) == lib


def test_list_runs_reads_pid_files_and_skips_broken_ones(tmp_path: Path) -> None:
    """`list_runs` comes from the pid files (filtered by project); garbage is ignored."""
    import asyncio

    record = PidFile(
        run_id="abcd1234",
        pid=999999,
        pgid=999999,
        start_ticks=None,
        agent="dev",
        project="/srv/proj",
        user="agent",
        uid=5001,
        gid=6001,
        mode="setpriv",
        started_at="2026-01-01T00:00:00+00:00",
        timeout=60,
        log=str(tmp_path / "abcd1234.log"),
        work_dir=str(tmp_path / "abcd1234"),
        exit_file=str(tmp_path / "abcd1234" / ".al-exit"),
    )
    (tmp_path / "abcd1234.pid").write_text(record.model_dump_json())
    (tmp_path / "broken.pid").write_text("{not json")
    runtime = HostUserRuntime(runs_dir=tmp_path)
    everything = asyncio.run(runtime.list_runs())
    assert [(h.run_id, h.agent, h.ref, h.runtime) for h in everything] == [
        ("abcd1234", "dev", "999999", "host-user")
    ]
    assert asyncio.run(runtime.list_runs(Path("/srv/other"))) == []


def test_registry_gives_the_host_user_runtime_without_importing_docker() -> None:
    """get_runtime("host-user") works and loads neither the docker package nor our Docker
    runtime module."""
    code = (
        "import sys\n"
        "from action_llama.runtimes.registry import get_runtime\n"
        "runtime = get_runtime('host-user')\n"
        "assert runtime.name == 'host-user', runtime\n"
        "loaded = [m for m in sys.modules if m == 'docker' or m.startswith('docker.')\n"
        "          or m == 'action_llama.runtimes.docker']\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
