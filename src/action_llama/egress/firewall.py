"""Host firewall rules al adds for egress, each labelled with a comment naming its project.

For each agent network's bridge (runs' packets arrive on it):

    INPUT        -i <bridge> ESTABLISHED,RELATED  ACCEPT   (answers to what the host opened)
    INPUT        -i <bridge>                      REJECT   (no host service is reachable: not
                                                            on 0.0.0.0, not on any address)
    DOCKER-USER  -i <bridge> ! -o <bridge>        REJECT   (nothing routed off the network,
                                                            whatever Docker's own rules say)

Runs reach the scheduler's gateway through the proxy (which is not on that bridge's INPUT),
so no exception is needed.

For host-user runs, every packet their OS user sends goes through a chain of its own:

    OUTPUT       -m owner --uid-owner <uid>        -j al-uid-<uid>
    al-uid-<uid> ESTABLISHED,RELATED               ACCEPT
                 -d <proxy> --dport 3128           ACCEPT   (per project: its egress proxy,
                 -d 127.0.0.1 --dport <gateway>    ACCEPT    its gateway, loopback services
                 -d 127.0.0.1 --dport <allowed>    ACCEPT    its allow list names)
                                                   REJECT   (everything else, DNS included)

and ip6tables rejects everything of that user (the proxy is reached over IPv4).

Comments are `al-egress:<project id>` (`al-egress:uid` for a chain's own rules); `remove`
deletes a project's rules (and a user's chain once no project has rules in it) and
`remove_stray` those whose bridge no longer exists.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

COMMENT = "al-egress"
IPTABLES_TIMEOUT = 30


class FirewallError(Exception):
    """iptables is missing or refused (the message says which)."""


def _iptables(
    *args: str, check: bool = True, tool: str = "iptables"
) -> subprocess.CompletedProcess[str]:
    binary = shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if Path(p).exists()), None
    )
    if binary is None:
        raise FirewallError(f"{tool} is not installed (apt-get install iptables)")
    done = subprocess.run(
        [binary, "-w", *args], capture_output=True, text=True, timeout=IPTABLES_TIMEOUT, check=False
    )
    if check and done.returncode != 0:
        raise FirewallError(f"iptables {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def _tag(project: str) -> list[str]:
    return ["-m", "comment", "--comment", f"{COMMENT}:{project}"]


def bridge_rules(bridge: str, project: str) -> list[tuple[str, list[str]]]:
    """(chain, rule) in the order they must be evaluated."""
    tag = _tag(project)
    return [
        (
            "INPUT",
            [
                "-i",
                bridge,
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                *tag,
                "-j",
                "ACCEPT",
            ],
        ),
        ("INPUT", ["-i", bridge, *tag, "-j", "REJECT", "--reject-with", "icmp-port-unreachable"]),
        ("DOCKER-USER", ["-i", bridge, "!", "-o", bridge, *tag, "-j", "REJECT"]),
    ]


def guard_bridge(bridge: str, project: str) -> None:
    """The bridge's rules in place (checked; put back whole when any is missing)."""
    rules = bridge_rules(bridge, project)
    if all(_iptables("-C", chain, *rule, check=False).returncode == 0 for chain, rule in rules):
        return
    for chain, rule in rules:
        while _iptables("-D", chain, *rule, check=False).returncode == 0:
            pass
    # Inserted last first at the top, so they end up in the order given.
    for chain, rule in reversed(rules):
        _iptables("-I", chain, "1", *rule)


def _listed(chain: str) -> list[list[str]]:
    done = _iptables("-S", chain, check=False)
    if done.returncode != 0:
        return []
    return [shlex.split(line) for line in done.stdout.splitlines() if line.startswith("-A ")]


def _ours(rule: list[str], project: str | None) -> bool:
    comment = rule[rule.index("--comment") + 1] if "--comment" in rule else ""
    if not comment.startswith(f"{COMMENT}:"):
        return False
    return project is None or comment == f"{COMMENT}:{project}"


def _delete(rule: list[str]) -> None:
    _iptables("-D", *rule[1:], check=False)


def remove(project: str) -> int:
    """Delete every rule of `project` (and users' chains left empty by it); how many."""
    count = 0
    with machine_lock():
        for chain in ("INPUT", "DOCKER-USER", *_user_chains()):
            for rule in _listed(chain):
                if _ours(rule, project):
                    _delete(rule)
                    count += 1
        for chain in _user_chains():
            if not any(_ours(r, None) and not _ours(r, "uid") for r in _listed(chain)):
                _drop_user_chain(int(chain.removeprefix(USER_CHAIN)))
    return count


# -- host-user runs ---------------------------------------------------------------------------

USER_CHAIN = "al-uid-"
LOCK_FILE = "al-egress-firewall.lock"


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """One al process at a time edits users' chains (they are shared by every project)."""
    folder = Path("/run/lock") if os.access("/run/lock", os.W_OK) else Path(tempfile.gettempdir())
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _user_chains() -> list[str]:
    done = _iptables("-S", check=False)
    return [
        line.split()[1] for line in done.stdout.splitlines() if line.startswith(f"-N {USER_CHAIN}")
    ]


def _jump(uid: int) -> list[str]:
    return ["-m", "owner", "--uid-owner", str(uid), *_tag("uid"), "-j", f"{USER_CHAIN}{uid}"]


def _ipv6_active() -> bool:
    return Path("/proc/net/if_inet6").exists() and bool(Path("/proc/net/if_inet6").read_text())


def _ensure_user_chain(uid: int) -> str:
    chain = f"{USER_CHAIN}{uid}"
    _iptables("-N", chain, check=False)
    established = [
        "-m",
        "conntrack",
        "--ctstate",
        "ESTABLISHED,RELATED",
        *_tag("uid"),
        "-j",
        "ACCEPT",
    ]
    reject = [*_tag("uid"), "-j", "REJECT", "--reject-with", "icmp-port-unreachable"]
    if _iptables("-C", chain, *established, check=False).returncode != 0:
        _iptables("-I", chain, "1", *established)
    if _iptables("-C", chain, *reject, check=False).returncode != 0:
        _iptables("-A", chain, *reject)
    if _iptables("-C", "OUTPUT", *_jump(uid), check=False).returncode != 0:
        _iptables("-I", "OUTPUT", "1", *_jump(uid))
    if _ipv6_active():
        v6 = ["-m", "owner", "--uid-owner", str(uid), *_tag("uid"), "-j", "REJECT"]
        if _iptables("-C", "OUTPUT", *v6, check=False, tool="ip6tables").returncode != 0:
            _iptables("-I", "OUTPUT", "1", *v6, tool="ip6tables")
    return chain


def _drop_user_chain(uid: int) -> None:
    chain = f"{USER_CHAIN}{uid}"
    while _iptables("-D", "OUTPUT", *_jump(uid), check=False).returncode == 0:
        pass
    _iptables("-F", chain, check=False)
    _iptables("-X", chain, check=False)
    v6 = ["-m", "owner", "--uid-owner", str(uid), *_tag("uid"), "-j", "REJECT"]
    with contextlib.suppress(FirewallError):
        while _iptables("-D", "OUTPUT", *v6, check=False, tool="ip6tables").returncode == 0:
            pass


def user_rules(
    project: str, proxy: str | None, proxy_port: int, gateway: int | None, loopback: list[int]
) -> list[list[str]]:
    """The ACCEPT rules of one project in a user's chain."""
    tag = _tag(project)
    rules = []
    if proxy is not None:
        rules.append(
            [
                "-d",
                f"{proxy}/32",
                "-p",
                "tcp",
                "-m",
                "tcp",
                "--dport",
                str(proxy_port),
                *tag,
                "-j",
                "ACCEPT",
            ]
        )
    for port in sorted({*loopback, *([gateway] if gateway else [])}):
        rules.append(
            [
                "-d",
                "127.0.0.1/32",
                "-o",
                "lo",
                "-p",
                "tcp",
                "-m",
                "tcp",
                "--dport",
                str(port),
                *tag,
                "-j",
                "ACCEPT",
            ]
        )
    return rules


def guard_user(
    uid: int,
    project: str,
    proxy: str | None,
    proxy_port: int,
    gateway: int | None,
    loopback: list[int],
) -> None:
    """Everything `uid` sends rejected but what `project` allows it (see the module)."""
    if uid == 0:
        raise FirewallError("host-user runs as root cannot be restricted (run_as root)")
    with machine_lock():
        chain = _ensure_user_chain(uid)
        wanted = user_rules(project, proxy, proxy_port, gateway, loopback)
        present = [r[2:] for r in _listed(chain) if _ours(r, project)]
        if present == wanted:
            return
        for rule in present:
            _iptables("-D", chain, *rule, check=False)
        for rule in reversed(wanted):
            _iptables("-I", chain, "2", *rule)


def remove_stray() -> int:
    """Delete al's bridge rules whose bridge no longer exists (any project's); how many."""
    count = 0
    for chain in ("INPUT", "DOCKER-USER"):
        for rule in _listed(chain):
            if _ours(rule, None) and "-i" in rule:
                bridge = rule[rule.index("-i") + 1]
                if not Path("/sys/class/net", bridge).exists():
                    _delete(rule)
                    count += 1
    return count


def available() -> str | None:
    """Why rules cannot be set here, or None when they can."""
    try:
        done = _iptables("-S", "INPUT", check=False)
    except FirewallError as exc:
        return str(exc)
    if done.returncode != 0:
        return f"iptables refused: {done.stderr.strip()} (al must run as root to set rules)"
    return None
