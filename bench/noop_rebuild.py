"""How long the image phase takes when nothing changed. Goal: <= 0.5 s and zero docker builds.

A temporary project gets 10 agents, 5 of them with a Dockerfile
(`FROM al-agent:latest` + `RUN echo <agent> > /tmp/marker`). After one full build it measures:

  ensure()          ChainBuilder(client, project).ensure(), client and project loaded once;
  connect+load+ensure   ChainBuilder(connect(), load_project(dir)).ensure(), all in the loop;
  al image build -q     the same as a user types it (a subprocess: interpreter and imports too);
  floor             client.api.inspect_image of every tag of the chain: the engine round trips
                    a no-op check cannot avoid, for comparison;

counting builds two ways: ChainResult.built (in-process) and the engine's own `tag` events for
the project's tags (both in-process and subprocess). Then it edits one agent's Dockerfile and
checks that exactly that agent's image is rebuilt, and that the next ensure() is a no-op again.

Agent names carry a random suffix (image tags al-<agent>:latest are engine-wide). At the end
it removes the images labelled al.project=<its dir> and the temp dir; the shared base image
al-agent:latest stays (it is built first if missing, which can take minutes).

    .venv/bin/python bench/noop_rebuild.py [--runs 10] [--cli-runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    AL,
    bytecode_cache,
    cleanup_project,
    script_agent,
    summary,
    timed,
    unique,
    verdict,
    write_files,
)

AGENTS = 10
WITH_DOCKERFILE = 5
GOAL_SECONDS = 0.5


def make_project(prefix: str) -> tuple[Path, list[str]]:
    root = Path(tempfile.mkdtemp(prefix="al-bench-rebuild-")).resolve()
    files: dict[str, str] = {"config.toml": ""}
    names = [f"{prefix}-{i:02d}" for i in range(AGENTS)]
    for i, name in enumerate(names):
        dockerfile = (
            f"FROM al-agent:latest\nRUN echo {name} > /tmp/marker\n"
            if i < WITH_DOCKERFILE
            else None
        )
        files.update(script_agent(name, "true\n", dockerfile))
    write_files(root, files)
    return root, names


class TagEvents:
    """Counts the engine's `tag` events for a set of image tags in a time window: one per
    `docker build -t`, whether or not al decided to call the builder."""

    def __init__(self, client: Any, tags: set[str]):
        self.client = client
        self.tags = tags

    def between(self, started: float, ended: float) -> list[str]:
        events = self.client.events(
            since=int(started) - 1,
            until=int(ended) + 2,
            decode=True,
            filters={"type": "image", "event": "tag"},
        )
        return [
            e["Actor"]["Attributes"].get("name", "?")
            for e in events
            if started * 1e9 <= e.get("timeNano", 0) <= ended * 1e9
            and e["Actor"]["Attributes"].get("name") in self.tags
        ]


def measure_ensure(client: Any, root: Path, runs: int, events: TagEvents) -> dict[str, Any]:
    from action_llama.engine import connect
    from action_llama.images.build import ChainBuilder
    from action_llama.project import load_project

    project = load_project(root)
    ensure_times: list[float] = []
    full_times: list[float] = []
    built: list[str] = []
    started = time.time()
    for _ in range(runs):
        seconds, result = timed(lambda: ChainBuilder(client, project).ensure())
        ensure_times.append(seconds)
        built += result.built

        def full() -> Any:
            fresh = connect()
            try:
                return ChainBuilder(fresh, load_project(root)).ensure()
            finally:
                fresh.close()

        seconds, result = timed(full)
        full_times.append(seconds)
        built += result.built
    tagged = events.between(started, time.time())
    return {"ensure": ensure_times, "full": full_times, "built": built, "tagged": tagged}


def measure_cli(root: Path, runs: int, events: TagEvents) -> tuple[list[float], list[str]]:
    import subprocess

    times: list[float] = []
    started = time.time()
    for i in range(runs + 1):  # the first one is a warm-up (page cache, bytecode cache)
        began = time.perf_counter()
        proc = subprocess.run(
            [AL, "image", "build", "-p", str(root), "-q"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if i:
            times.append(time.perf_counter() - began)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit("al image build failed")
    return times, events.between(started, time.time())


def floor(client: Any, tags: list[str], runs: int) -> list[float]:
    """Seconds to inspect every tag once: what any no-op check must ask the engine."""
    times = []
    for _ in range(runs):
        seconds, _ = timed(lambda: [client.api.inspect_image(tag) for tag in tags])
        times.append(seconds)
    return times


def parts(client: Any, root: Path, runs: int) -> dict[str, list[float]]:
    """The pieces of one no-op ensure(), timed one by one."""
    from action_llama.engine import connect
    from action_llama.images import base
    from action_llama.project import load_project

    out: dict[str, list[float]] = {
        "load_project": [],
        "connect + ping": [],
        "base.package_digest()": [],
    }
    for _ in range(runs):
        out["load_project"].append(timed(lambda: load_project(root))[0])
        seconds, fresh = timed(connect)
        fresh.close()
        out["connect + ping"].append(seconds)
        out["base.package_digest()"].append(timed(base.package_digest)[0])
    return out


def edit_one(client: Any, root: Path, name: str, events: TagEvents) -> bool:
    from action_llama.images.build import ChainBuilder
    from action_llama.images.plan import agent_tag
    from action_llama.project import load_project

    dockerfile = root / "agents" / name / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "RUN echo changed >> /tmp/marker\n")
    started = time.time()
    seconds, result = timed(lambda: ChainBuilder(client, load_project(root)).ensure())
    tagged = events.between(started, time.time())
    again_seconds, again = timed(lambda: ChainBuilder(client, load_project(root)).ensure())
    ok = result.built == [agent_tag(name)] and not again.built
    print(
        f"\nedit agents/{name}/Dockerfile, then ensure(): {seconds:.2f} s, rebuilt "
        f"{result.built or 'nothing'} (engine tag events: {tagged or 'none'})"
    )
    print(f"next ensure(): {again_seconds:.3f} s, rebuilt {again.built or 'nothing'}")
    print(f"only the edited agent rebuilt: {verdict(ok)}")
    return ok


def run(args: argparse.Namespace, root: Path, names: list[str]) -> bool:
    from action_llama.engine import connect
    from action_llama.images.build import ChainBuilder
    from action_llama.project import load_project

    client = connect()
    print(
        f"project {root}: {AGENTS} agents ({names[0]} .. {names[-1]}), "
        f"{WITH_DOCKERFILE} with a Dockerfile"
    )
    print(
        "first build (builds the 5 agent layers, and the base if it is missing or stale)...",
        flush=True,
    )
    seconds, result = timed(lambda: ChainBuilder(client, load_project(root)).ensure())
    print(f"  {seconds:.1f} s, built {len(result.built)}: {', '.join(result.built)}")
    tags = [layer.tag for layer in result.layers]
    events = TagEvents(client, set(tags))

    measured = measure_ensure(client, root, args.runs, events)
    cli_times, cli_tagged = measure_cli(root, args.cli_runs, events)
    inspect_times = floor(client, tags, args.runs)
    pieces = parts(client, root, args.runs)

    ensure_median = statistics.median(measured["ensure"])
    full_median = statistics.median(measured["full"])
    cli_median = statistics.median(cli_times)
    print(f"\nno-op image phase ({len(tags)} layers: base + {len(tags) - 1} agent images)")
    print(f"  ensure()               {summary(measured['ensure'])}")
    print(f"  connect+load+ensure    {summary(measured['full'])}")
    print(f"  al image build -q      {summary(cli_times)}")
    print(f"  floor: inspect {len(tags)} tags {summary(inspect_times)}")
    print(f"  ensure() / floor: {ensure_median / statistics.median(inspect_times):.1f}x")
    print("  pieces:")
    for name, values in pieces.items():
        print(f"    {name:<22} median {statistics.median(values):.3f} s")
    builds = len(measured["built"]) + len(measured["tagged"]) + len(cli_tagged)
    print(
        f"\ndocker builds during the no-op runs: ChainResult.built {len(measured['built'])}, "
        f"engine tag events in-process {len(measured['tagged'])}, "
        f"from al image build {len(cli_tagged)}"
    )
    fast = full_median <= GOAL_SECONDS
    print(
        f"in-process no-op (connect+load+ensure) {full_median:.3f} s <= {GOAL_SECONDS} s: "
        f"{verdict(fast)}"
    )
    print(
        f"al image build -q {cli_median:.3f} s <= {GOAL_SECONDS} s: "
        f"{verdict(cli_median <= GOAL_SECONDS)}"
    )
    print(f"zero builds: {verdict(builds == 0)}")
    ok = edit_one(client, root, names[0], events)
    client.close()
    return fast and builds == 0 and ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="in-process no-op runs (10)")
    parser.add_argument("--cli-runs", type=int, default=5, help="al image build -q runs (5)")
    parser.add_argument(
        "--bytecode",
        choices=("cached", "as-is"),
        default="cached",
        help="let subprocesses cache bytecode in the temp dir when "
        "PYTHONDONTWRITEBYTECODE is set (default), or keep it as is",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--keep", action="store_true", help="keep the temp project and images")
    args = parser.parse_args()
    root, names = make_project(unique("bnr"))
    try:
        note = bytecode_cache(root / "pycache") if args.bytecode == "cached" else None
        if note:
            print(note)
        ok = run(args, root, names)
    finally:
        if args.keep:
            print(f"\nkept {root} and its images")
        else:
            cleanup_project(root, images=True)
            shutil.rmtree(root, ignore_errors=True)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
