"""Helpers the benchmarks share: where `al` is, temp projects, timing, statistics, cleanup.

Not a test module: the benchmarks are run by hand (see bench/README.md).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: The venv's `al`, beside the interpreter running the benchmark (as tests/support.py does).
AL = str(Path(sys.executable).parent / "al")


def unique(prefix: str) -> str:
    """A name no other session uses: image tags like al-<agent>:latest are engine-global."""
    return f"{prefix}-{secrets.token_hex(3)}"


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def script_agent(
    name: str, script: str = "true\n", dockerfile: str | None = None
) -> dict[str, str]:
    """Files of an agent that runs `script` in script mode."""
    files = {
        f"agents/{name}/SKILL.md": "---\ndescription: benchmark agent\n---\nDo nothing.\n",
        f"agents/{name}/test-script.sh": script,
    }
    if dockerfile is not None:
        files[f"agents/{name}/Dockerfile"] = dockerfile
    return files


def run_al(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AL, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        sys.stderr.write(
            f"{what} failed with exit {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}\n"
        )
        raise SystemExit(1)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, return value) of one call."""
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def wall(argv: Sequence[str], what: str) -> float:
    """Wall seconds of one subprocess, which must succeed."""
    started = time.perf_counter()
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    elapsed = time.perf_counter() - started
    check(proc, what)
    return elapsed


def p90(values: Sequence[float]) -> float:
    """Nearest-rank 90th percentile (with 15 samples: the 14th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def summary(values: Sequence[float]) -> str:
    return (
        f"median {statistics.median(values):7.3f} s   p90 {p90(values):7.3f} s   "
        f"min {min(values):7.3f} s   (n={len(values)})"
    )


def verdict(ok: bool) -> str:
    return "goal met" if ok else "GOAL MISSED"


def import_profile(modules: str) -> tuple[float, list[tuple[str, float, int]]]:
    """`python -X importtime -c 'import MODULES'`: the summed cumulative time of the top-level
    imports, and self time summed by top-level package, largest first. The tracing itself
    inflates the figures; compare them with each other, not with wall times."""

    def rows(code: str) -> list[tuple[str, str, str]]:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            capture_output=True,
            text=True,
            check=True,
        )
        return [
            tuple(line.removeprefix("import time:").split("|"))  # type: ignore[misc]
            for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "cumulative" not in line
        ]

    startup = {name.strip() for _, _, name in rows("pass")}  # what the interpreter loads anyway
    total = 0.0
    by_package: dict[str, list[float]] = {}
    for self_us, cumulative_us, name in rows(f"import {modules}"):
        if name.strip() in startup:
            continue
        if name.startswith(" ") and not name.startswith("  "):  # depth 0: imported at top
            total += int(cumulative_us) / 1e6
        entry = by_package.setdefault(name.strip().split(".")[0], [0.0, 0])
        entry[0] += int(self_us) / 1e6
        entry[1] += 1
    ranked = sorted(
        ((k, v[0], int(v[1])) for k, v in by_package.items()), key=lambda row: row[1], reverse=True
    )
    return total, ranked


#: Third-party packages of `al run`'s import graph, grouped by the dependency that pulls them in.
STACKS = {
    "pydantic": (
        "pydantic",
        "pydantic_core",
        "annotated_types",
        "typing_extensions",
        "typing_inspection",
    ),
    "typer": ("typer", "click", "rich", "shellingham", "markdown_it", "mdurl", "pygments"),
    "docker-py": ("docker", "requests", "urllib3", "charset_normalizer", "idna", "certifi"),
    "PyYAML": ("yaml", "_yaml"),
    "action_llama (incl. pydantic model building)": ("action_llama",),
}


def by_stack(ranked: list[tuple[str, float, int]]) -> list[tuple[str, float, int]]:
    """import_profile()'s packages summed by STACKS; the rest is the standard library."""
    owner = {pkg: stack for stack, pkgs in STACKS.items() for pkg in pkgs}
    sums: dict[str, list[float]] = {}
    for package, seconds, count in ranked:
        entry = sums.setdefault(owner.get(package, "standard library"), [0.0, 0])
        entry[0] += seconds
        entry[1] += count
    return sorted(
        ((k, v[0], int(v[1])) for k, v in sums.items()), key=lambda row: row[1], reverse=True
    )


def bytecode_cache(directory: Path) -> str | None:
    """Let the benchmark's Python subprocesses cache bytecode, as an installed package does.

    With PYTHONDONTWRITEBYTECODE set (as in some dev shells), modules without a current .pyc
    are compiled again on every `al` start, which no user pays. The cache goes to `directory`
    (PYTHONPYCACHEPREFIX), so nothing is written under src/ or the venv. Returns a note, or
    None when the environment already caches bytecode.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return None
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ["PYTHONPYCACHEPREFIX"] = str(directory)
    return (
        f"PYTHONDONTWRITEBYTECODE was set: subprocesses cache bytecode in {directory} "
        "instead (--bytecode as-is to keep it)"
    )


def cleanup_project(root: Path, *, images: bool) -> None:
    """Remove what the benchmark made in Docker for `root`: containers, workspace volumes
    (detaching their loop devices), other volumes and, with `images`, images labelled with it."""
    from docker.errors import APIError

    from action_llama.egress.maintenance import teardown
    from action_llama.engine import connect
    from action_llama.runtimes.docker_workspace import release_workspaces

    client = connect()
    label = f"al.project={root}"
    for container in client.api.containers(all=True, filters={"label": label}):
        client.api.remove_container(container["Id"], force=True)
    teardown(client, root)  # the project's egress proxy, networks and firewall rules
    release_workspaces(client, root)
    for volume in client.api.volumes(filters={"label": label}).get("Volumes") or []:
        try:
            client.api.remove_volume(volume["Name"], force=True)
        except APIError as exc:
            sys.stderr.write(f"could not remove volume {volume['Name']}: {exc}\n")
    if images:
        for image in client.api.images(filters={"label": label}):
            try:
                client.api.remove_image(image["Id"], force=True)
            except APIError as exc:
                sys.stderr.write(f"could not remove image {image['Id'][:19]}: {exc}\n")
    client.close()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, `q` in (0, 100]."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process `pid` has used so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command: state is field 3 of stat(5), utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_wait_seconds(pid: int) -> float:
    """Seconds process `pid`'s main thread has waited, runnable, for a CPU (other processes
    had them): /proc/<pid>/schedstat. Tells a server starved of CPU from one that blocks."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


class Daemon:
    """`al start -p ROOT --port 0` as a subprocess, its output in ROOT/../daemon.log.

    Waits for `.al/daemon.json`; `url` is its gateway, `api_key` the operator key `al start`
    put in the credential store at `creds` (AL_CREDENTIALS_DIR).
    """

    def __init__(
        self, root: Path, creds: Path, env: dict[str, str] | None = None, timeout: float = 600
    ) -> None:
        from action_llama.credentials.refs import CredentialRef
        from action_llama.credentials.store import CredentialStore

        self.root = root
        self.log = root.parent / "daemon.log"
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [AL, "start", "-p", str(root), "--port", "0"],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "AL_CREDENTIALS_DIR": str(creds), **(env or {})},
            )
        marker = root / ".al" / "daemon.json"
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.stderr.write(f"al start did not come up:\n{self.log.read_text()}\n")
                raise SystemExit(1)
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{json.loads(marker.read_text())['port']}"
        self.api_key = CredentialStore(creds).read(CredentialRef("gateway_api_key"))["key"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One operator request (`/control/<path>`), which must succeed."""
        import httpx2 as httpx

        answer = httpx.request(
            method,
            f"{self.url}/control{path}",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        if answer.status_code != 200:
            sys.stderr.write(f"{method} /control{path}: {answer.status_code} {answer.text}\n")
            raise SystemExit(1)
        result: dict[str, Any] = answer.json()
        return result

    def stop(self, *, kill: bool = False, timeout: float = 90) -> None:
        """SIGTERM (graceful) or SIGKILL, and wait for the process to end."""
        if self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
