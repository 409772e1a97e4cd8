"""Helpers the benchmarks share: where `al` is, temp projects, timing, statistics, cleanup.

Not a test module: the benchmarks are run by hand (see bench/README.md).
"""

from __future__ import annotations

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


def script_agent(name: str, script: str = "true\n", dockerfile: str | None = None
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
    return subprocess.run([AL, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        sys.stderr.write(f"{what} failed with exit {proc.returncode}\n"
                         f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}\n")
        raise SystemExit(1)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, return value) of one call."""
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def wall(argv: Sequence[str], what: str) -> float:
    """Wall seconds of one subprocess, which must succeed."""
    started = time.perf_counter()
    proc = subprocess.run(list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          check=False)
    elapsed = time.perf_counter() - started
    check(proc, what)
    return elapsed


def p90(values: Sequence[float]) -> float:
    """Nearest-rank 90th percentile (with 15 samples: the 14th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def summary(values: Sequence[float]) -> str:
    return (f"median {statistics.median(values):7.3f} s   p90 {p90(values):7.3f} s   "
            f"min {min(values):7.3f} s   (n={len(values)})")


def verdict(ok: bool) -> str:
    return "goal met" if ok else "GOAL MISSED"


def importtime_total(module: str) -> float:
    """Seconds `python -X importtime -c 'import module'` reports for `module`, cumulative."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "0"})
    for line in reversed(proc.stderr.splitlines()):
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1e6
    raise RuntimeError(f"no importtime line for {module}")


def importtime_top(module: str, count: int = 8) -> list[tuple[float, str]]:
    """The `count` first-level imports (under `module`'s tree) with the largest cumulative time."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                          capture_output=True, text=True, check=True)
    rows: list[tuple[float, str]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        indent = len(name) - len(name.lstrip())
        # Depth 1 (`  name`) are the direct imports of the top module, depth 0 the top module.
        if indent <= 3:
            rows.append((int(cumulative) / 1e6, name.strip()))
    rows.sort(reverse=True)
    return rows[:count]


def cleanup_project(root: Path, *, images: bool) -> None:
    """Remove what the benchmark made in Docker for `root`: containers, workspace volumes
    (detaching their loop devices), other volumes and, with `images`, images labelled with it."""
    from action_llama.engine import connect
    from action_llama.runtimes.docker_workspace import release_workspaces
    from docker.errors import APIError

    client = connect()
    label = f"al.project={root}"
    for container in client.api.containers(all=True, filters={"label": label}):
        client.api.remove_container(container["Id"], force=True)
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
