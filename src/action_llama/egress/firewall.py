"""Host firewall rules al adds for egress, each labelled with a comment naming its project.

For each agent network's bridge (runs' packets arrive on it):

    INPUT        -i <bridge> ESTABLISHED,RELATED  ACCEPT   (answers to what the host opened)
    INPUT        -i <bridge>                      REJECT   (no host service is reachable: not
                                                            on 0.0.0.0, not on any address)
    DOCKER-USER  -i <bridge> ! -o <bridge>        REJECT   (nothing routed off the network,
                                                            whatever Docker's own rules say)

Runs reach the scheduler's gateway through the proxy (which is not on that bridge's INPUT),
so no exception is needed.

For host-user runs, each run's processes are in a cgroup of their own (`cgroups.py`), and what
they send goes through rules of that run in one chain:

    OUTPUT            -j al-egress-runs
    al-egress-runs    -m cgroup --path <run's> ESTABLISHED,RELATED   ACCEPT
                      -m cgroup --path <run's> -d <proxy> --dport 3128 ACCEPT
                      -m cgroup --path <run's> -d 127.0.0.1 --dport <gateway or allowed> ACCEPT
                      -m cgroup --path <run's>                       REJECT   (DNS included)

and ip6tables rejects everything of the run (the proxy is reached over IPv4). The run's OS
user and its other processes are not touched.

Comments are `al-egress:<project id>`; `remove` deletes a project's rules, `remove_run` a
run's, and `remove_stray` those whose bridge or run cgroup no longer exists.
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


def _binary(tool: str) -> str:
    binary = shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if Path(p).exists()), None
    )
    if binary is None:
        raise FirewallError(f"{tool} is not installed (apt-get install iptables)")
    return binary


def _iptables(
    *args: str, check: bool = True, tool: str = "iptables"
) -> subprocess.CompletedProcess[str]:
    binary = _binary(tool)
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
    if _all_present(rules):
        return
    for chain, rule in rules:
        while _iptables("-D", chain, *rule, check=False).returncode == 0:
            pass
    # Inserted last first at the top, so they end up in the order given.
    for chain, rule in reversed(rules):
        _iptables("-I", chain, "1", *rule)


def _all_present(rules: list[tuple[str, list[str]]]) -> bool:
    """Whether every rule is in place: checked at once, one `iptables -C` each (every run
    checks its bridge's rules; one after the other they would add up)."""
    binary = _binary("iptables")
    checks = [
        subprocess.Popen(
            [binary, "-w", "-C", chain, *rule],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for chain, rule in rules
    ]
    try:
        # A list, not a generator: every check is waited for, whatever the first says.
        return all([check.wait(timeout=IPTABLES_TIMEOUT) == 0 for check in checks])
    finally:
        for check in checks:
            if check.poll() is None:
                check.kill()
                check.wait()


def _listed(chain: str, tool: str = "iptables") -> list[list[str]]:
    done = _iptables("-S", chain, check=False, tool=tool)
    if done.returncode != 0:
        return []
    return [shlex.split(line) for line in done.stdout.splitlines() if line.startswith("-A ")]


def _ours(rule: list[str], project: str | None) -> bool:
    comment = rule[rule.index("--comment") + 1] if "--comment" in rule else ""
    if not comment.startswith(f"{COMMENT}:"):
        return False
    return project is None or comment == f"{COMMENT}:{project}"


def _delete(rule: list[str], tool: str = "iptables") -> None:
    _iptables("-D", *rule[1:], check=False, tool=tool)


def remove(project: str) -> int:
    """Delete every rule of `project` (and the runs' chain once empty); how many."""
    count = 0
    with machine_lock():
        for chain, tool in _RULE_CHAINS:
            for rule in _listed(chain, tool):
                if _ours(rule, project):
                    _delete(rule, tool)
                    count += 1
        _drop_runs_chain_if_empty()
    return count


def remove_stray() -> int:
    """Delete al's rules whose bridge or run cgroup no longer exists (any project's)."""
    from action_llama.egress.cgroups import exists

    count = 0
    for chain, tool in _RULE_CHAINS:
        for rule in _listed(chain, tool):
            if not _ours(rule, None):
                continue
            if "-i" in rule and not Path("/sys/class/net", rule[rule.index("-i") + 1]).exists():
                gone = True
            else:
                gone = "--path" in rule and not exists(rule[rule.index("--path") + 1])
            if gone:
                _delete(rule, tool)
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


# -- host-user runs ---------------------------------------------------------------------------

RUNS_CHAIN = "al-egress-runs"

#: Where al's rules live (chain, tool): host input, Docker's forward hook, the runs' chain.
_RULE_CHAINS = (
    ("INPUT", "iptables"),
    ("DOCKER-USER", "iptables"),
    (RUNS_CHAIN, "iptables"),
    (RUNS_CHAIN, "ip6tables"),
)


def _ipv6_active() -> bool:
    return Path("/proc/net/if_inet6").exists() and bool(Path("/proc/net/if_inet6").read_text())


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """One al process at a time creates or drops the runs' chain (every project shares it)."""
    folder = Path("/run/lock") if os.access("/run/lock", os.W_OK) else Path(tempfile.gettempdir())
    fd = os.open(folder / "al-egress-firewall.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _drop_runs_chain_if_empty() -> None:
    jump = ["-m", "comment", "--comment", COMMENT, "-j", RUNS_CHAIN]
    for tool in ("iptables", "ip6tables"):
        with contextlib.suppress(FirewallError):
            listed = _iptables("-S", RUNS_CHAIN, check=False, tool=tool)
            if listed.returncode != 0 or len(listed.stdout.splitlines()) > 1:
                continue  # no such chain, or rules of runs still in it
            while _iptables("-D", "OUTPUT", *jump, check=False, tool=tool).returncode == 0:
                pass
            _iptables("-X", RUNS_CHAIN, check=False, tool=tool)


def _ensure_runs_chain(tool: str) -> None:
    _iptables("-N", RUNS_CHAIN, check=False, tool=tool)
    jump = ["-m", "comment", "--comment", COMMENT, "-j", RUNS_CHAIN]
    if _iptables("-C", "OUTPUT", *jump, check=False, tool=tool).returncode != 0:
        _iptables("-I", "OUTPUT", "1", *jump, tool=tool)


def run_rules(
    project: str, cgroup: str, proxy: str | None, proxy_port: int, ports: list[int]
) -> list[list[str]]:
    """The run's rules in RUNS_CHAIN, in order (IPv4)."""
    match = ["-m", "cgroup", "--path", cgroup]
    tag = _tag(project)
    rules = [[*match, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", *tag, "-j", "ACCEPT"]]
    if proxy is not None:
        rules.append(
            [
                *match,
                "-d",
                f"{proxy}/32",
                "-p",
                "tcp",
                "--dport",
                str(proxy_port),
                *tag,
                "-j",
                "ACCEPT",
            ]
        )
    for port in sorted(set(ports)):
        rules.append(
            [
                *match,
                "-d",
                "127.0.0.1/32",
                "-o",
                "lo",
                "-p",
                "tcp",
                "--dport",
                str(port),
                *tag,
                "-j",
                "ACCEPT",
            ]
        )
    rules.append([*match, *tag, "-j", "REJECT", "--reject-with", "icmp-port-unreachable"])
    return rules


def guard_run(
    project: str, cgroup: str, proxy: str | None, proxy_port: int, ports: list[int]
) -> None:
    """Everything the run's cgroup sends rejected but what it is allowed (see the module)."""
    with machine_lock():
        _ensure_runs_chain("iptables")
        for rule in reversed(run_rules(project, cgroup, proxy, proxy_port, ports)):
            _iptables("-I", RUNS_CHAIN, "1", *rule)
        if _ipv6_active():
            _ensure_runs_chain("ip6tables")
            _iptables(
                "-I",
                RUNS_CHAIN,
                "1",
                "-m",
                "cgroup",
                "--path",
                cgroup,
                *_tag(project),
                "-j",
                "REJECT",
                tool="ip6tables",
            )


def remove_run(cgroup: str) -> None:
    """Delete the rules of the run in `cgroup` (IPv4 and IPv6)."""
    with machine_lock():
        for tool in ("iptables", "ip6tables"):
            with contextlib.suppress(FirewallError):
                for rule in _listed(RUNS_CHAIN, tool):
                    if "--path" in rule and rule[rule.index("--path") + 1] == cgroup:
                        _delete(rule, tool)
        _drop_runs_chain_if_empty()
