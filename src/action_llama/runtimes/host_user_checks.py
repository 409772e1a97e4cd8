"""What `al doctor` checks for host-user agents: their user and groups exist, and `al` may
start processes as that user, the way runs are started (`host_launch` decides how, here and
for runs alike, and the check runs `true` that very way).

As root, `al` switches user itself (setpriv/runuser): no sudo rule is needed. Otherwise it runs
`sudo -n -u <user>`, which needs a rule in /etc/sudoers.d. `--fix` (Linux) creates a missing
user with `useradd --system --shell nologin` (no home: runs get a work dir as HOME) and, when
not root, writes the sudo rule, checked with `visudo -c` before it is installed.
"""

from __future__ import annotations

import grp
import os
import platform
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from action_llama.doctor.result import Check
from action_llama.errors import RunError
from action_llama.runtimes import host_launch as launch

if TYPE_CHECKING:
    from action_llama.project import Agent

#: What useradd accepts by default (and nothing a sudoers line or a shell could misread).
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SUDOERS_DIR = Path("/etc/sudoers.d")
COMMAND_TIMEOUT = 30


def host_user_checks(agents: Sequence[Agent], *, fix: bool = False) -> list[Check]:
    """For each distinct `run_as` of host-user `agents`: user, groups, and switching to it
    with each set of groups its agents' runs have."""
    users: dict[str, list[str]] = {}
    groups: dict[str, list[str]] = {}
    #: The distinct `[runtime] groups` of the user's agents: each is how some run starts.
    group_sets: dict[str, list[tuple[str, ...]]] = {}
    for agent in agents:
        runtime = agent.config.runtime
        users.setdefault(runtime.run_as, []).append(agent.name)
        seen = groups.setdefault(runtime.run_as, [])
        seen += [g for g in runtime.groups if g not in seen]
        sets = group_sets.setdefault(runtime.run_as, [])
        if tuple(runtime.groups) not in sets:
            sets.append(tuple(runtime.groups))
    checks: list[Check] = []
    for user, names in users.items():
        exists = check_user(user, names, fix)
        checks.append(exists)
        found = True
        if groups[user]:
            checks.append(check_groups(user, groups[user]))
            found = checks[-1].status == "ok"
        if exists.status != "fail" and found:
            checks.append(check_switch(user, group_sets[user], fix))
    return checks


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _nologin() -> str:
    for path in ("/usr/sbin/nologin", "/sbin/nologin", "/usr/bin/false", "/bin/false"):
        if Path(path).exists():
            return path
    return "/usr/sbin/nologin"


def _as_root(cmd: list[str]) -> list[str] | None:
    """`cmd` as root: itself when al is root, through sudo otherwise (None: no sudo)."""
    if os.geteuid() == 0:
        return cmd
    sudo = shutil.which("sudo")
    return [sudo, *cmd] if sudo else None


def _run(cmd: list[str]) -> tuple[bool, str]:
    """(succeeded, last line of its output) of a fix command; sudo may prompt on the terminal."""
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    lines = (done.stderr or done.stdout).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else f"exit {done.returncode}"


def check_user(user: str, agents: list[str], fix: bool) -> Check:
    """The `run_as` user exists (with `fix` on Linux: create it)."""
    name = f"host user {user}"
    who = f"run_as of {', '.join(agents)}"
    if not USER_NAME.match(user):
        return Check(
            name,
            "fail",
            f'"{user}" ({who}) is not a valid user name.',
            "Use lowercase letters, digits, _ and -, starting with a letter or _ "
            "([runtime] run_as in the agent's config.toml).",
        )
    if _exists(user):
        if user == "root":
            return Check(
                name,
                "warn",
                f"{who}: agents running as root can change anything on this machine.",
                'Use an unprivileged user (the default is run_as = "al-agent").',
            )
        return Check(name, "ok", f"exists ({who})")
    useradd = ["useradd", "--system", "--shell", _nologin(), user]
    linux = platform.system() == "Linux"
    if not fix or not linux:
        how = (
            f"al doctor --fix creates it ({' '.join(useradd)})"
            if linux
            else f"Create it, e.g.: sudo sysadminctl -addUser {user} -shell /usr/bin/false"
        )
        return Check(name, "fail", f'User "{user}" ({who}) does not exist.', how)
    cmd = _as_root(useradd)
    if cmd is None:
        return Check(
            name,
            "fail",
            f'User "{user}" ({who}) does not exist, and creating it needs root (no sudo here).',
            f"As root: {' '.join(useradd)}",
        )
    ok, output = _run(cmd)
    if not ok or not _exists(user):
        return Check(
            name, "fail", f'Creating user "{user}" failed: {output}', f"Run: {' '.join(cmd)}"
        )
    return Check(name, "ok", f"created ({' '.join(useradd)}) for {who}")


def check_groups(user: str, names: list[str]) -> Check:
    """The configured `[runtime] groups` exist. Not fixed: a missing group is more likely a typo
    than something to create empty."""
    missing = []
    for group in names:
        try:
            grp.getgrnam(group)
        except KeyError:
            missing.append(group)
    name = f"groups of {user}"
    if not missing:
        return Check(name, "ok", ", ".join(names))
    plural = len(missing) > 1
    return Check(
        name,
        "fail",
        f"Group{'s' * plural} {', '.join(missing)} (in [runtime] groups) "
        f"do{'' if plural else 'es'} not exist.",
        f"Check the spelling, or create {'them' if plural else 'it'}: "
        + "; ".join(f"sudo groupadd {g}" for g in missing),
    )


def _starts(user: launch.RunUser, mode: launch.Mode) -> tuple[bool, str]:
    """Whether `true` starts as `user` exactly as a run's entry point would (same switch,
    groups, and kept variables); (worked, its complaint)."""
    return _run(launch.as_user(user, mode, ["true"], list(launch.KEPT_FOR_PROBE)))


def check_switch(user: str, group_sets: list[tuple[str, ...]], fix: bool) -> Check:
    """al can start processes as `user`, with each of `group_sets` (the `[runtime] groups`
    its agents' runs have): as root directly, as that user itself, else through a sudo rule."""
    name = f"switch to {user}"
    try:
        identities = [launch.resolve_user(user, groups) for groups in group_sets or [()]]
        mode = launch.privilege_mode(identities[0])
    except RunError as exc:
        return Check(name, "fail", exc.message, exc.hint)
    failed = [(who, output) for who in identities for ok, output in [_starts(who, mode)] if not ok]
    if not failed:
        how = {
            "setpriv": "al runs as root: setpriv, no sudo rule needed",
            "runuser": "al runs as root: runuser, no sudo rule needed",
            "self": "al runs as that user: nothing to switch",
            "sudo": f"sudo -n -u {user} works",
        }[mode]
        return Check(name, "ok", how)
    command = " ".join(launch.as_user(failed[0][0], mode, ["true"]))
    if mode != "sudo":
        return Check(name, "fail", f"{command} fails: {failed[0][1]}", None)
    operator = pwd.getpwuid(os.geteuid()).pw_name
    primaries = [g[0] for g in group_sets if g]
    odd = [n for n in [operator, *primaries] if not USER_NAME.match(n)]
    if odd:
        return Check(
            name,
            "fail",
            f"{command} fails, and {', '.join(odd)} cannot go in a sudo rule safely.",
            f"Allow {operator} to run commands as {user} in sudoers by hand (visudo).",
        )
    groups = list(dict.fromkeys(primaries))
    runas = f"{user} : {', '.join(groups)}" if groups else user
    rule = f"{operator} ALL=({runas}) NOPASSWD: ALL"
    target = SUDOERS_DIR / f"al-{user}"
    if not fix:
        return Check(
            name,
            "fail",
            f"{command} fails: {operator} may not run commands as {user} without a password.",
            f"al doctor --fix writes {target} with:\n{rule}",
        )
    sudo = shutil.which("sudo") or "sudo"
    problem = write_sudo_rule(sudo, rule, target)
    if problem is None and all(_starts(who, mode)[0] for who in identities):
        return Check(name, "ok", f"wrote {target}: {rule}")
    return Check(
        name,
        "fail",
        f"Writing the sudo rule failed: {problem or 'sudo -n still refuses'}",
        f"As root, write {target} (mode 0440) with:\n{rule}",
    )


def write_sudo_rule(sudo: str, rule: str, target: Path) -> str | None:
    """Install `rule` as `target` (0440, root-owned), validated first; None or the problem."""
    with tempfile.TemporaryDirectory(prefix="al-sudoers-") as tmp:
        draft = Path(tmp) / target.name
        draft.write_text(rule + "\n", encoding="utf-8")
        draft.chmod(0o440)
        visudo = shutil.which("visudo")
        if visudo:
            ok, output = _run([visudo, "-cf", str(draft)])
            if not ok:
                return f"visudo rejects the rule: {output}"
        ok, output = _run(
            [sudo, "install", "-m", "0440", "-o", "0", "-g", "0", str(draft), str(target)]
        )
        return None if ok else output
