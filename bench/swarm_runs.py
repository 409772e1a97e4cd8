"""Swarm runs against container runs on this machine: launch to first log line, a push of an
unchanged chain, and a long series of runs that must leave nothing in the swarm.

A temporary project gets two agents printing one line, `dock` (a container run) and `swarmed`
(`[runtime] type = "swarm"`, its images pushed to `--registry`), and a credential both list
(so every swarm run makes a secret; its agent files make configs). The engine must manage a
swarm, or be in none: then one is made (`docker swarm init --advertise-addr 127.0.0.1`) and
left at the end. After a warm-up run of each:

  launch   `al run AGENT -p DIR --json --local`, a subprocess, until its first output line
           (the entry's "container starting" record), `--runs` times alternating between the
           two agents: the ratio swarm/docker of the medians (goal <= 2x: a service is a
           scheduling round trip through the manager, its task then a container);
  publish  the image phase of a swarm run when nothing changed: `SwarmRuntime.publish` of the
           chain already in the registry, `--publishes` times (goal: <= 0.2 s, nothing
           pushed), next to one push of a fresh agent layer for scale;
  series   `--series` (50) swarm runs in a row in-process (the run service, as `al run` does):
           afterwards the project has no service, secret, config, volume or container left,
           and no staging directory.

Cleanup: everything labelled with the project path, the fresh layer's image, the temp dir;
the swarm when the benchmark made it. The registry keeps what was pushed (content-addressed).

    .venv/bin/python bench/swarm_runs.py [--runs 10] [--publishes 10] [--series 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import AL, check, cleanup_project, run_al, script_agent, summary, verdict, write_files

GOAL_LAUNCH_RATIO = 2.0
GOAL_PUBLISH_SECONDS = 0.2


def swarm_ready() -> bool:
    """Whether this engine manages a swarm; makes one when it is in none. True if made here."""
    from action_llama.engine import connect

    swarm = connect().info().get("Swarm") or {}
    if swarm.get("ControlAvailable"):
        return False
    if swarm.get("LocalNodeState") != "inactive":
        raise SystemExit("this engine is a swarm worker: run the benchmark on a manager")
    subprocess.run(
        ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return True


def make_project(registry: str, creds: Path) -> Path:
    from action_llama.credentials.refs import CredentialRef
    from action_llama.credentials.store import CredentialStore

    root = Path(tempfile.mkdtemp(prefix="al-bench-swarm-")).resolve()
    listed = 'credentials = ["github_token"]\n'
    write_files(
        root,
        {
            # Open egress for both: swarm runs cannot enforce a [network] policy.
            "config.toml": f'[swarm]\nregistry = "{registry}"\n\n[network]\nmode = "open"\n',
            **script_agent("dock", "echo first-line\n"),
            "agents/dock/config.toml": listed,
            **script_agent("swarmed", "echo first-line\n"),
            "agents/swarmed/config.toml": f'{listed}[runtime]\ntype = "swarm"\n',
        },
    )
    CredentialStore(creds).write(CredentialRef("github_token"), {"token": "bench-token-0123"})
    return root


def first_line(root: Path, agent: str) -> float:
    """Seconds from launching `al run AGENT --local --json` to its first output line."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [AL, "run", agent, "-p", str(root), "--json", "--local"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - started
    rest, err = proc.communicate(timeout=120)
    if proc.returncode != 0 or not line:
        raise SystemExit(f"al run {agent} failed ({proc.returncode}):\n{line}{rest}\n{err}")
    return elapsed


def launch(root: Path, runs: int) -> tuple[bool, str]:
    times: dict[str, list[float]] = {"dock": [], "swarmed": []}
    for n in range(runs):
        order = ("dock", "swarmed") if n % 2 == 0 else ("swarmed", "dock")
        for agent in order:
            times[agent].append(first_line(root, agent))
    print(f"  docker  {summary(times['dock'])}")
    print(f"  swarm   {summary(times['swarmed'])}")
    ratio = statistics.median(times["swarmed"]) / statistics.median(times["dock"])
    ok = ratio <= GOAL_LAUNCH_RATIO
    print(
        f"  ratio swarm/docker (medians): {ratio:.2f}x   goal <= {GOAL_LAUNCH_RATIO}x: "
        f"{verdict(ok)}"
    )
    return ok, f"launch {ratio:.2f}x"


def publish(root: Path, publishes: int) -> tuple[bool, str]:
    from action_llama.engine import connect
    from action_llama.images.build import ChainBuilder
    from action_llama.project import load_project
    from action_llama.runtimes.swarm import SwarmRuntime

    project = load_project(root)
    chain = ChainBuilder(connect(), project).ensure(["swarmed"])
    images = {"swarmed": chain.image_for("swarmed")}
    runtime = SwarmRuntime()
    runtime.publish(project, images)  # warm: already there after the warm-up run
    times = []
    for _ in range(publishes):
        started = time.perf_counter()
        runtime.publish(project, images)
        times.append(time.perf_counter() - started)
    print(f"  unchanged chain  {summary(times)}")
    # For scale: one push of a layer the registry has never seen.
    (root / "agents/swarmed/Dockerfile").write_text(
        f"FROM al-agent:latest\nRUN echo {time.time_ns()} > /tmp/bench-marker\n"
    )
    fresh = load_project(root)
    chain = ChainBuilder(connect(), fresh).ensure(["swarmed"])
    started = time.perf_counter()
    runtime.publish(fresh, {"swarmed": chain.image_for("swarmed")})
    print(f"  a fresh agent layer pushed once: {time.perf_counter() - started:.3f} s")
    (root / "agents/swarmed/Dockerfile").unlink()
    median = statistics.median(times)
    ok = median <= GOAL_PUBLISH_SECONDS
    print(f"  median {median:.3f} s   goal <= {GOAL_PUBLISH_SECONDS} s: {verdict(ok)}")
    return ok, f"publish {median * 1000:.0f} ms"


def left(root: Path) -> dict[str, int]:
    from action_llama.engine import connect

    api: Any = connect().api
    label = {"label": [f"al.project={root}"]}
    runs = {"label": [f"al.project={root}", "al.run"]}
    return {
        "services": len(api.services(filters=label)),
        "secrets": len(api.secrets(filters=label)),
        "configs": len(api.configs(filters=label)),
        "volumes": len(api.volumes(filters=runs).get("Volumes") or []),
        "containers": len(api.containers(all=True, filters=runs)),
    }


def series(root: Path, count: int) -> tuple[bool, str]:
    from action_llama.credentials.staging import staging_root
    from action_llama.engine import connect
    from action_llama.images.build import ChainBuilder
    from action_llama.project import load_project
    from action_llama.runs.service import RunService
    from action_llama.runs.store import RunStore
    from action_llama.runtimes.swarm import SwarmRuntime

    project = load_project(root)
    agent = project.agents["swarmed"]
    runtime = SwarmRuntime()
    chain = ChainBuilder(connect(), project).ensure(["swarmed"])
    image = runtime.publish(project, {"swarmed": chain.image_for("swarmed")})["swarmed"]
    store = RunStore(project.state_dir)

    async def many() -> list[tuple[float, int, str]]:
        service = RunService(project, runtime, store)
        done = []
        for _ in range(count):
            started = time.perf_counter()
            outcome = await service.run(agent, image=image)
            done.append((time.perf_counter() - started, outcome.result.exit_code, outcome.run_id))
        return done

    try:
        done = asyncio.run(many())
    finally:
        store.close()
    failed = sum(1 for _, code, _ in done if code != 0)
    remains = left(root)
    ours = tuple(f"{run_id}-" for _, _, run_id in done)
    stages = [p for p in staging_root().iterdir() if p.name.startswith(ours)]
    print(f"  {count} runs  {summary([seconds for seconds, _, _ in done])}   failed: {failed}")
    print(
        f"  left in the swarm and on this node: {json.dumps(remains)}; "
        f"staging directories: {len(stages)}"
    )
    ok = failed == 0 and not any(remains.values()) and not stages
    print(f"  goal: nothing left, every run completed: {verdict(ok)}")
    return ok, f"{count} runs, {sum(remains.values()) + len(stages)} objects left"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="launches of each agent")
    parser.add_argument("--publishes", type=int, default=10)
    parser.add_argument("--series", type=int, default=50, help="swarm runs in a row")
    parser.add_argument("--registry", default=os.environ.get("AL_BENCH_REGISTRY", "127.0.0.1:5000"))
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    try:
        urllib.request.urlopen(f"http://{args.registry}/v2/", timeout=5).close()
    except OSError as exc:
        raise SystemExit(
            f"no registry at {args.registry} ({exc}): source scripts/lib.sh && start_registry"
        ) from None
    made_swarm = swarm_ready()
    scratch = Path(tempfile.mkdtemp(prefix="al-bench-swarm-creds-"))
    os.environ["AL_CREDENTIALS_DIR"] = str(scratch / "creds")
    root = make_project(args.registry, scratch / "creds")
    results: list[tuple[bool, str]] = []
    try:
        for agent in ("dock", "swarmed"):  # warm-up: images built and pushed, workspaces made
            check(run_al("run", agent, "-p", str(root), "-q", "--local"), f"warm-up {agent}")
        print("== launch to first log line: swarm vs docker")
        results.append(launch(root, args.runs))
        print("== publish of an unchanged chain")
        results.append(publish(root, args.publishes))
        print(f"== {args.series} swarm runs in a row")
        results.append(series(root, args.series))
    finally:
        from action_llama.engine import connect

        api: Any = connect().api
        for kind in ("services", "secrets", "configs"):
            for item in getattr(api, kind)(filters={"label": [f"al.project={root}"]}):
                getattr(api, f"remove_{kind[:-1]}")(item["ID"])
        cleanup_project(root, images=True)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
        if made_swarm:
            subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True)
    print("summary: " + "; ".join(text for _, text in results))
    return 1 if args.check and not all(ok for ok, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
