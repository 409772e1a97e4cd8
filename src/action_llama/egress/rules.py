"""Allow entries of `[network]` and how a destination is matched against them.

Standard library only: the egress proxy imports this module inside its container.

An entry is one of

    api.example.com          that host, ports 80 and 443
    *.example.com            any subdomain on whole labels (a.example.com, a.b.example.com),
                             not example.com itself unless listed too
    github.com:22            that host on that port only (also *.example.com:8443)
    10.0.0.5:5432            an IPv4 address, matched only as written (never a resolved name)
    pypi                     a preset: the hosts an ecosystem documents (PRESETS)

Hosts are compared lowercased, without a trailing dot, with non-ASCII names in their IDNA
form. A destination that is not a well-formed host (`github.com.evil.test` is one, and does
not match `github.com`; `evil.test@github.com` is not one) matches nothing.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

#: Ports an entry without one allows.
DEFAULT_PORTS = (80, 443)

#: Named presets: the hosts each ecosystem documents for its clients.
PRESETS: dict[str, tuple[str, ...]] = {
    # git over HTTPS and SSH, the API, release and raw content, the container registry.
    "github": (
        "github.com",
        "*.github.com",
        "*.githubusercontent.com",
        "github.com:22",
        "ghcr.io",
    ),
    # pip: the index and the file host.
    "pypi": ("pypi.org", "files.pythonhosted.org"),
    # npm and yarn's mirror of the registry.
    "npm": ("registry.npmjs.org", "registry.yarnpkg.com"),
    # apt's mirrors and the security archive.
    "debian": ("deb.debian.org", "*.deb.debian.org", "security.debian.org", "ftp.debian.org"),
}

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_PORT = re.compile(r"^[0-9]{1,5}$")

HOW = (
    'write a host ("api.example.com"), "*.example.com", "host:port" or a preset '
    f"({', '.join(PRESETS)})"
)


def normalise_host(text: str) -> str | None:
    """`text` as a comparable host name or IPv4 address; None when it is neither."""
    host = text.strip().lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > 253:
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if ipv4(host) is not None:
        return host
    labels = host.split(".")
    if all(_LABEL.match(label) for label in labels) and not labels[-1].isdigit():
        return host
    return None


def ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address when `host` is a dotted-quad IPv4 literal (the only form entries use)."""
    if host.count(".") != 3:
        return None
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class Rule:
    """One allowed destination: a host or `*.suffix` pattern on some ports."""

    pattern: str
    ports: tuple[int, ...] = DEFAULT_PORTS
    #: Where it comes from, shown by `al doctor` ("config.toml [network]", "model sonnet"...).
    source: str = ""

    def matches(self, host: str, port: int) -> bool:
        if port not in self.ports:
            return False
        if self.pattern.startswith("*."):
            return host.endswith(self.pattern[1:]) and ipv4(host) is None
        return host == self.pattern

    def describe(self) -> str:
        ports = ",".join(str(p) for p in self.ports)
        return f"{self.pattern}:{ports}"


def _port(text: str, entry: str) -> int:
    if not _PORT.match(text) or not 1 <= int(text) <= 65535:
        raise ValueError(f'"{entry}": the port must be a number from 1 to 65535')
    return int(text)


def _reject_obvious(entry: str) -> None:
    """Forms people write by habit that are not entries, each with its right spelling."""
    if "://" in entry:
        host = entry.split("://", 1)[1].split("/", 1)[0]
        raise ValueError(f'"{entry}" is a URL; write the host only: "{host}"')
    if "/" in entry:
        raise ValueError(f'"{entry}": entries name hosts, not paths; write "{entry.split("/")[0]}"')
    if entry in ("*", "*.*") or entry.startswith("*:"):
        raise ValueError(f'"{entry}" would allow everything; use mode = "open" for that')
    if entry.startswith("[") or entry.count(":") > 1:
        raise ValueError(f'"{entry}": IPv6 addresses are not supported; {HOW}')
    if "@" in entry or " " in entry:
        raise ValueError(f'"{entry}" is not a host; {HOW}')


def parse_entry(entry: str) -> tuple[Rule, ...]:
    """The rules one `allow` entry stands for; ValueError saying how to write it otherwise."""
    text = entry.strip()
    if not text:
        raise ValueError(f"an empty entry; {HOW}")
    if text.lower() in PRESETS:
        return tuple(rule for item in PRESETS[text.lower()] for rule in parse_entry(item))
    _reject_obvious(text)
    host_part, _, port_part = text.partition(":")
    ports = (_port(port_part, text),) if port_part else DEFAULT_PORTS
    wildcard = host_part.startswith("*.")
    host = normalise_host(host_part[2:] if wildcard else host_part)
    if host is None or "*" in host_part[2 if wildcard else 0 :]:
        raise ValueError(f'"{text}" is not a host; {HOW}')
    if wildcard and (ipv4(host) is not None or "." not in host):
        raise ValueError(
            f'"{text}" is too broad: a wildcard needs a domain of at least two labels '
            '(like "*.example.com")'
        )
    if "." not in host and host != "localhost":
        # One label: a misspelt preset far more often than a host (names need a domain).
        import difflib

        close = difflib.get_close_matches(host, list(PRESETS), n=1, cutoff=0.5)
        guess = f'did you mean "{close[0]}"? ' if close else ""
        raise ValueError(
            f'"{text}" is neither a preset ({", ".join(PRESETS)}) nor a host with a domain; '
            f'{guess}(hosts need a domain, like "{host}.example.com")'
        )
    return (Rule(f"*.{host}" if wildcard else host, ports),)


def check_entry(entry: str) -> str:
    """`entry` unchanged when it parses (a pydantic validator); ValueError otherwise."""
    parse_entry(entry)
    return entry


def fix_for(mode: str, file: str, host: str, port: int) -> str:
    """How to allow `host:port` for an agent whose `[network]` is in `file`, in words."""
    entry = host if port in DEFAULT_PORTS else f"{host}:{port}"
    if mode == "none":
        return f'set [network] mode = "allowlist" and allow "{entry}" in {file}'
    return f'add "{entry}" to allow in {file}'


@dataclass(frozen=True)
class Decision:
    """What the policy says about one destination."""

    allowed: bool
    #: The rule that allowed it.
    rule: Rule | None = None
    #: Why it was refused, in words.
    reason: str = ""


class Policy:
    """A run's allow list, as the proxy applies it."""

    def __init__(self, mode: str, rules: tuple[Rule, ...] = ()):
        self.mode = mode
        self.rules = rules

    def decide(self, host: str, port: int) -> Decision:
        """Allowed or not, for a destination as a client named it."""
        if self.mode == "open":
            return Decision(True, Rule("*", (port,), 'mode = "open"'))
        name = normalise_host(host)
        if name is None:
            return Decision(False, reason="not a valid host name")
        for rule in self.rules:
            if rule.matches(name, port):
                return Decision(True, rule)
        if self.mode == "none":
            return Decision(False, reason='mode = "none"')
        return Decision(False, reason="not in the allow list")
