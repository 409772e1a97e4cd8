"""Dockerfiles written for the original's Alpine base build on ours: `apk` is translated to
apt-get (from the Debian mirror, in the build), with the real engine."""

from __future__ import annotations

from typing import Any

import pytest

from support import ProjectFactory, run_al, script_agent, script_output

pytestmark = [pytest.mark.docker, pytest.mark.slow]

#: The project Dockerfile of the original's public agent collection, as it is there.
ORIGINAL_PROJECT_DOCKERFILE = """
# Project base image — shared by all agents in this project.
#   RUN apk add --no-cache python3 py3-pip
FROM al-agent:d4227bec

USER root
RUN apk add --no-cache github-cli
USER node
"""
#: Every apk form: update, add (plain, pinned, --update, --virtual, --no-cache), del, upgrade.
TOOLS_DOCKERFILE = """
FROM al-agent:latest
USER root
RUN apk update && apk add ripgrep py3-yaml bash=5.2.15-r0
RUN apk add --update --virtual .scratch tree && tree --version && apk del .scratch
RUN apk upgrade
RUN apk --no-cache add nodejs npm docker-cli
USER node
"""
TOOLS_SCRIPT = """
gh --version | sed -n 1p
rg --version | sed -n 1p
python3 -c 'import yaml; print("yaml", yaml.__name__)'
command -v tree || echo no-tree
node -e 'console.log("node says", 6 * 7)'
echo "npm $(npm --version)"
echo "npx $(npx --version)"
docker --version
echo "lists $(ls /var/lib/apt/lists | grep -c Packages)"
echo "debs $(ls /var/cache/apt/archives | grep -c deb)"
"""


def test_original_dockerfiles_build_and_their_tools_run(
    make_project: ProjectFactory, base_image: str, docker_client: Any
) -> None:
    """github-cli (project layer) and ripgrep, py3-yaml, nodejs, npm, docker-cli (agent layer)
    are installed from Debian; a --virtual group is removed by apk del; --no-cache leaves no
    package lists and no downloaded packages in the image."""
    root = make_project(
        {
            "Dockerfile": ORIGINAL_PROJECT_DOCKERFILE,
            **script_agent("tools", TOOLS_SCRIPT, dockerfile=TOOLS_DOCKERFILE),
        }
    )
    built = run_al("image", "build", "-p", str(root), "--verbose", timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "apk (al): installing with apt-get: github-cli → gh" in built.stderr
    assert "bash (version =5.2.15-r0 ignored" in built.stderr
    assert "docker-cli → docker (the client only" in built.stderr

    ran = run_al("run", "tools", "-p", str(root), "--json", "-q")
    assert ran.returncode == 0, ran.stdout[-3000:]
    lines = script_output(ran.stdout)
    assert lines[0].startswith("gh version 2.")
    assert lines[1].startswith("ripgrep 13.")
    assert lines[2:6] == ["yaml yaml", "no-tree", "node says 42", lines[5]]
    assert lines[5].startswith("npm 9.")
    assert lines[6].startswith("npx 9.")
    assert lines[7].startswith("Docker version 20.10")
    assert lines[8:] == ["lists 0", "debs 0"]

    doctor = run_al("doctor", "-p", str(root))
    assert "Dockerfile" in doctor.stdout
    assert "uses apk (Alpine); al installs with apt-get instead: github-cli → gh" in doctor.stdout


def test_a_package_debian_lacks_fails_the_build_naming_it_and_the_fix(
    make_project: ProjectFactory, base_image: str
) -> None:
    """kubectl (known to be missing) and an unknown name both fail the build, each named with
    what to write instead; nothing is installed halfway."""
    root = make_project(
        script_agent(
            "lacking",
            "true",
            dockerfile="USER root\nRUN apk add --no-cache jq kubectl no-such-tool-xyz\n",
        )
    )
    built = run_al("image", "build", "-p", str(root), timeout=600)
    assert built.returncode == 1
    assert "Traceback" not in built.stderr
    assert "error: Building the agent lacking image" in built.stderr
    assert '"kubectl": Debian has no package for it; download the binary' in built.stderr
    assert 'Debian bookworm has no package "no-such-tool-xyz"' in built.stderr
    assert "apt-get install -y --no-install-recommends" in built.stderr
