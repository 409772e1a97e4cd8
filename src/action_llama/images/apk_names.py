"""Alpine package names → Debian bookworm ones, for the base image's `apk` (see `apk.py`).

A table of what agent images commonly install whose Debian name differs, `py3-*` →
`python3-*`, and every other name unchanged (its existence is checked by `apk` against the
Debian archive). Standard library only: `apk` runs inside image builds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Alpine names whose Debian package has another name (or that need several).
RENAMED: dict[str, tuple[str, ...]] = {
    "alpine-sdk": ("build-essential", "git"),
    "aws-cli": ("awscli",),
    "bind-tools": ("dnsutils",),
    "build-base": ("build-essential",),
    "bzip2-dev": ("libbz2-dev",),
    "chromium-chromedriver": ("chromium-driver",),
    "curl-dev": ("libcurl4-openssl-dev",),
    "docker-cli-compose": ("docker-compose",),
    "expat-dev": ("libexpat1-dev",),
    "font-noto": ("fonts-noto-core",),
    "font-noto-emoji": ("fonts-noto-color-emoji",),
    "freetype": ("libfreetype6",),
    "freetype-dev": ("libfreetype-dev",),
    "gdbm-dev": ("libgdbm-dev",),
    "github-cli": ("gh",),
    "gmp-dev": ("libgmp-dev",),
    "go": ("golang",),
    "harfbuzz": ("libharfbuzz0b",),
    "iputils": ("iputils-ping",),
    "jpeg-dev": ("libjpeg-dev",),
    "krb5-dev": ("libkrb5-dev",),
    "libjpeg-turbo-dev": ("libjpeg-dev",),
    "libgcc": ("libgcc-s1",),
    "libstdc++": ("libstdc++6",),
    "linux-headers": ("linux-libc-dev",),
    "mariadb-dev": ("libmariadb-dev",),
    "musl-dev": ("libc6-dev",),
    "mysql-client": ("default-mysql-client",),
    "ncurses-dev": ("libncurses-dev",),
    "nodejs-current": ("nodejs",),
    "nss": ("libnss3",),
    "openjdk17": ("openjdk-17-jdk-headless",),
    "openjdk17-jre": ("openjdk-17-jre-headless",),
    "openldap-dev": ("libldap2-dev",),
    "openssh": ("openssh-client", "openssh-server"),
    "openssh-client-default": ("openssh-client",),
    "openssh-keygen": ("openssh-client",),
    "openssl-dev": ("libssl-dev",),
    "pcre-dev": ("libpcre3-dev",),
    "pcre2-dev": ("libpcre2-dev",),
    "pkgconf": ("pkg-config",),
    "pkgconfig": ("pkg-config",),
    "postgresql-dev": ("libpq-dev",),
    "procps-ng": ("procps",),
    # Alpine's python3 has venv built in; Debian ships it separately.
    "python3": ("python3", "python3-venv"),
    "py3-gobject3": ("python3-gi",),
    "py3-pillow": ("python3-pil",),
    "py3-pynacl": ("python3-nacl",),
    "py3-pyzmq": ("python3-zmq",),
    "readline-dev": ("libreadline-dev",),
    "redis": ("redis-server",),
    "rust": ("rustc",),
    "shadow": ("passwd",),
    "sqlite": ("sqlite3",),
    "sqlite-dev": ("libsqlite3-dev",),
    "ttf-freefont": ("fonts-freefont-ttf",),
    "util-linux-dev": ("uuid-dev",),
    "xz": ("xz-utils",),
    "xz-dev": ("liblzma-dev",),
    "yaml-dev": ("libyaml-dev",),
    "zlib-dev": ("zlib1g-dev",),
    # Alpine needs these for glibc programs; Debian is glibc: nothing to install.
    "gcompat": (),
    "libc6-compat": (),
    "musl": (),
    "gnu-libiconv": (),
}
#: Alpine names that need a word about how Debian's package differs.
NOTES: dict[str, str] = {
    "nodejs": "Debian's Node.js 18",
    "nodejs-current": "Debian's Node.js 18",
    "yq": "Debian's yq is the jq wrapper: jq syntax, JSON output unless -y",
    "docker-cli-compose": "Compose v1 (docker-compose)",
    "docker-cli": "the client only, from Debian's docker.io",
    "docker": "the client only, from Debian's docker.io: no daemon runs in agent containers",
}
#: Alpine names Debian bookworm has no package for, with what to do instead.
UNAVAILABLE: dict[str, str] = {
    "kubectl": "download the binary in the Dockerfile (curl -fsSLo /usr/local/bin/kubectl "
    "from dl.k8s.io, then chmod +x; see kubernetes.io/docs/tasks/tools)",
    "helm": "download a release from github.com/helm/helm/releases in the Dockerfile",
    "terraform": "download a release from releases.hashicorp.com/terraform in the Dockerfile",
    "su-exec": "apt-get install -y gosu, and call gosu (same arguments: gosu USER COMMAND)",
    "yarn": "npm install -g yarn (after apk add nodejs npm)",
}
#: Names for the Docker client, taken out of Debian's docker.io package (which would also
#: install a daemon, containerd and runc).
DOCKER_CLIENT = frozenset({"docker-cli", "docker"})
#: `name=1.2`, `name>=1.2`, `name~1.2`, `name<2`, `name@edge`: the name, and the rest.
_CONSTRAINT = re.compile(r"^([^=<>~@]+)([=<>~@].*)?$")


@dataclass(frozen=True)
class Translation:
    """What one Alpine name becomes: Debian packages, or why it cannot be installed."""

    alpine: str
    debian: tuple[str, ...]
    #: Something the user should know (version differences, an ignored version pin).
    note: str | None = None
    #: Set when Debian has no such package: what to do instead.
    unavailable: str | None = None
    docker_client: bool = False

    def describe(self) -> str:
        """`github-cli → gh`, `jq`, `gcompat → (nothing: Debian is glibc)`, with its note."""
        if self.unavailable:
            text = f"{self.alpine} → (no Debian package)"
        elif self.docker_client:
            text = f"{self.alpine} → docker"
        elif not self.debian:
            text = f"{self.alpine} → (nothing needed on Debian)"
        elif self.debian == (self.alpine,):
            text = self.alpine
        else:
            text = f"{self.alpine} → {' '.join(self.debian)}"
        return f"{text} ({self.note})" if self.note else text


def translate(spec: str) -> Translation:
    """The Debian packages for Alpine package `spec` (a version constraint is dropped)."""
    match = _CONSTRAINT.match(spec)
    name, pin = (match[1], match[2]) if match else (spec, None)
    notes = [NOTES[name]] if name in NOTES else []
    if pin:
        notes.append(f"version {pin} ignored: Debian's version is installed")
    note = "; ".join(notes) or None
    if name in DOCKER_CLIENT:
        return Translation(name, ("docker.io",), note, docker_client=True)
    if name in UNAVAILABLE:
        return Translation(name, (), note, unavailable=UNAVAILABLE[name])
    if name in RENAMED:
        return Translation(name, RENAMED[name], note)
    if name.startswith("py3-"):
        return Translation(name, ("python3-" + name.removeprefix("py3-"),), note)
    return Translation(name, (name,), note)
