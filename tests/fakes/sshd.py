"""A real OpenSSH server for git over ssh, in a container on a test's network.

    image = build_image(client, base_image)        # once per session: `sshd_image` fixture
    sshd = Sshd.start(client, image, network, "ssh.test", public_key, repos, project)
    ...runs `git clone git@ssh.test:r.git` (`repos/r.git`) through their egress proxy...
    sshd.remove()

The image is the base image with Debian's openssh-server installed (from the Debian mirror the
base's apt uses) and a user `git` whose home is /srv/git, where `repos` is mounted; the server
lets in only the key given (`git` user, public key only). Nothing here talks to any address
outside this machine once the image is built.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from fakes.upstream import ServerContainer, start_server

#: The git user's uid in the image (the repositories are handed to it when the server starts).
GIT_UID = 2222
LABEL = {"al.test": "sshd-image"}

DOCKERFILE = f"""
FROM {{base}}
USER root
RUN apt-get update -q \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server \\
 && rm -rf /var/lib/apt/lists/* \\
 && ssh-keygen -A \\
 && useradd --uid {GIT_UID} --home-dir /srv/git --shell /bin/sh git \\
 && usermod -p '*' git
"""

#: The account is not locked (`*`), so sshd lets it in by key without PAM.
START = (
    "mkdir -p /run/sshd && chown -R git:git /srv/git && exec /usr/sbin/sshd -D -e"
    " -o AuthorizedKeysFile=/srv/ssh/authorized_keys -o StrictModes=no -o UsePAM=no"
    " -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no -o PermitRootLogin=no"
)


def build_image(client: Any, base: str) -> str:
    """The sshd image for this test session (tagged with its pid, labelled `LABEL`)."""
    tag = f"al-test-sshd:session-{os.getpid()}"
    dockerfile = DOCKERFILE.replace("{base}", base).encode()
    client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, labels=LABEL, rm=True)
    return tag


class Sshd(ServerContainer):
    """The sshd container."""

    @classmethod
    def start(
        cls,
        client: Any,
        image: str,
        network: str,
        name: str,
        public_key: str,
        repos: Path,
        project: Path,
    ) -> Sshd:
        """sshd answering as `name` on `network`, letting in `public_key` as user git, whose
        home is `repos` (handed to the git user: read it with `git -c safe.directory='*'`)."""
        from docker.types import Mount

        keys = repos.parent / f"{repos.name}-keys"
        keys.mkdir(mode=0o755)
        (keys / "authorized_keys").write_text(public_key)
        (keys / "authorized_keys").chmod(0o644)
        container, address = start_server(
            client,
            image,
            network,
            [name],
            ["sh", "-c", START],
            [
                Mount("/srv/ssh", str(keys), type="bind", read_only=True),
                Mount("/srv/git", str(repos), type="bind"),
            ],
            {"al.project": str(project), "al.test": "sshd"},
            b"Server listening",
        )
        return cls(client, container, address)
