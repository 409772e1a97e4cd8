"""Host firewall rules al adds for egress, each labelled with a comment naming its project.

For each agent network's bridge (runs' packets arrive on it):

    INPUT        -i <bridge> ESTABLISHED,RELATED  ACCEPT   (answers to what the host opened)
    INPUT        -i <bridge>                      REJECT   (no host service is reachable: not
                                                            on 0.0.0.0, not on any address)
    DOCKER-USER  -i <bridge> ! -o <bridge>        REJECT   (nothing routed off the network,
                                                            whatever Docker's own rules say)

Runs reach the scheduler's gateway through the proxy (which is not on that bridge's INPUT),
so no exception is needed. Comments are `al-egress:<project id>`; `remove` deletes a
project's rules and `remove_stray` those whose bridge no longer exists.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

COMMENT = "al-egress"
IPTABLES_TIMEOUT = 30


class FirewallError(Exception):
    """iptables is missing or refused (the message says which)."""


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("iptables") or next(
        (p for p in ("/usr/sbin/iptables", "/sbin/iptables") if Path(p).exists()), None
    )
    if binary is None:
        raise FirewallError("iptables is not installed (apt-get install iptables)")
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


def remove(project: str, chains: tuple[str, ...] = ("INPUT", "DOCKER-USER", "OUTPUT")) -> int:
    """Delete every rule of `project`; how many."""
    count = 0
    for chain in chains:
        for rule in _listed(chain):
            if _ours(rule, project):
                _delete(rule)
                count += 1
    return count


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
