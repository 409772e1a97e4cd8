"""CPU an idle `al start` spends with many agents, and how soon it sees an edit.
Goals: <= 1% of a core at 1,000 agents; an edit reloaded within 2 s.

For each size (`--agents`, default 200 and 1000) a temporary project gets that many host-user
agents in script mode, with `run_as = "nobody"` and no schedule (so no engine is needed and
nothing runs: what is left is the daemon's own housekeeping and its watching of the project).
After start-up settles, the daemon's CPU time (utime + stime of its process) is read over
`--idle` seconds. Then one agent's SKILL.md is edited, `--edits` times, and the time until the
daemon says "reload: project reloaded" is taken.

Baseline, measured in the same run: what watching by polling cost, one walk of the watched
files (`daemon.reload.fingerprint`) per second, as the daemon did before it listened for file
system events.

    .venv/bin/python bench/idle_daemon.py [--agents 200 1000] [--idle 20] [--edits 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import Daemon, cpu_seconds, script_agent, verdict, write_files

GOAL_CPU = 0.01
GOAL_RELOAD = 2.0


def make_project(base: Path, agents: int) -> Path:
    root = base / f"proj-{agents}"
    files: dict[str, str] = {"config.toml": ""}
    for i in range(agents):
        name = f"agent-{i:04d}"
        files.update(script_agent(name))
        files[f"agents/{name}/config.toml"] = '[runtime]\ntype = "host-user"\nrun_as = "nobody"\n'
    write_files(root, files)
    return root


def polling_cost(root: Path) -> float:
    """Seconds of CPU per second that a once-a-second walk of the project would take."""
    from action_llama.daemon.reload import fingerprint

    samples = []
    for _ in range(5):
        started = time.process_time()
        fingerprint(root)
        samples.append(time.process_time() - started)
    return statistics.median(samples)


def reload_latency(daemon: Daemon, root: Path, edits: int) -> list[float]:
    skill = root / "agents" / "agent-0000" / "SKILL.md"
    seconds = []
    for i in range(edits):
        seen = daemon.log.read_text().count("reload: project reloaded")
        skill.write_text(f"---\ndescription: benchmark agent\n---\nEdit {i}.\n")
        started = time.perf_counter()
        while daemon.log.read_text().count("reload: project reloaded") <= seen:
            if time.perf_counter() - started > 30:
                raise SystemExit(f"no reload within 30 s:\n{daemon.log.read_text()[-2000:]}")
            time.sleep(0.01)
        seconds.append(time.perf_counter() - started)
        time.sleep(0.5)
    return seconds


def measure(base: Path, agents: int, idle: float, edits: int) -> tuple[bool, bool]:
    root = make_project(base, agents)
    daemon = Daemon(root, base / "creds", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    try:
        time.sleep(3)  # start-up work (the first sweeps, imports) settles
        before, clock = cpu_seconds(daemon.pid), time.perf_counter()
        time.sleep(idle)
        rate = (cpu_seconds(daemon.pid) - before) / (time.perf_counter() - clock)
        latencies = reload_latency(daemon, root, edits)
    finally:
        daemon.stop()
    poll = polling_cost(root)
    worst = max(latencies)
    print(
        f"{agents:>5} agents: idle {rate * 100:.2f}% of a core "
        f"(polling once a second would cost {poll * 100:.2f}%: "
        f"{poll / rate if rate else float('inf'):.0f}x); "
        f"edit to reload median {statistics.median(latencies):.2f} s, max {worst:.2f} s"
    )
    return rate <= GOAL_CPU or agents < 1000, worst <= GOAL_RELOAD


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--idle", type=float, default=20, help="idle seconds measured (20)")
    parser.add_argument("--edits", type=int, default=5, help="edits timed per size (5)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the host-user agents run as nobody")
    base = Path(tempfile.mkdtemp(prefix="al-bench-idle-")).resolve()
    try:
        results = [measure(base, n, args.idle, args.edits) for n in args.agents]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    cpu_ok = all(c for c, _ in results)
    reload_ok = all(r for _, r in results)
    print(f"goal: idle <= {GOAL_CPU * 100:.0f}% of a core at 1,000 agents: {verdict(cpu_ok)}")
    print(f"goal: an edit reloaded within {GOAL_RELOAD:.0f} s: {verdict(reload_ok)}")
    return 1 if args.check and not (cpu_ok and reload_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
