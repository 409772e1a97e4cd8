"""CPU seconds the `al start` daemon spends per script-mode run. Goal: <= 50 ms per run.

A temporary project gets one container agent whose test-script.sh is `true` (scale
`--scale`, a work queue large enough for every trigger). After a warm-up run, the benchmark
reads the daemon's own CPU time (utime + stime in /proc/<pid>/stat: the daemon process only,
so neither the containers, which are not its children, nor dockerd count) while:

  idle    the daemon sits with nothing to do for `--idle` seconds: its cron loop, sweeper and
          gateway, the baseline;
  runs    `--runs` manual triggers through the operator API (`POST /control/trigger/<agent>`),
          then until every run has ended (watched in the database, read-only, so the watching
          costs the daemon nothing).

Per run = (CPU during the runs - idle CPU rate x their wall time) / runs. That is everything
the scheduler does for a run: the trigger request, dispatch and queueing, staging the run,
the Docker API calls (create, start, wait, logs, remove), the run record and log lines, the
per-run secret, releasing locks.

    .venv/bin/python bench/scheduler_overhead.py [--runs 20] [--scale 2] [--idle 10]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from _common import Daemon, cleanup_project, cpu_seconds, script_agent, verdict, write_files

GOAL_SECONDS = 0.050
AGENT = "noop"


def make_project(base: Path, scale: int, runs: int) -> tuple[Path, Path]:
    root = base / "proj"
    files = script_agent(AGENT, "true\n")
    files[f"agents/{AGENT}/config.toml"] = f"scale = {scale}\nmaxWorkQueueSize = {runs + 10}\n"
    write_files(root, {"config.toml": "", **files})
    return root, base / "creds"


def finished_runs(root: Path) -> int:
    conn = sqlite3.connect(f"file:{root / '.al' / 'action-llama.db'}?mode=ro", uri=True)
    try:
        (count,) = conn.execute(
            "SELECT count(*) FROM runs WHERE agent = ? AND finished_at IS NOT NULL", (AGENT,)
        ).fetchone()
        statuses = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status"))
    finally:
        conn.close()
    bad = {k: v for k, v in statuses.items() if k not in ("completed", "running")}
    if bad:
        raise SystemExit(f"runs did not complete: {bad} (see the daemon's log)")
    return int(count)


def wait_runs(root: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while finished_runs(root) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {finished_runs(root)} of {count} runs ended in {timeout} s")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="measured runs (20)")
    parser.add_argument("--scale", type=int, default=2, help="the agent's scale (2)")
    parser.add_argument("--idle", type=float, default=10, help="idle baseline seconds (10)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--keep", action="store_true", help="keep the temp project")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="al-bench-sched-")).resolve()
    root, creds = make_project(base, args.scale, args.runs)
    daemon = None
    try:
        started = time.perf_counter()
        daemon = Daemon(root, creds)  # builds the image chain first if need be
        print(f"daemon up in {time.perf_counter() - started:.1f} s (image chain checked)")
        daemon.control("POST", f"/trigger/{AGENT}")  # warm-up: imports, the workspace volume
        wait_runs(root, 1, 300)
        time.sleep(1)

        before, clock = cpu_seconds(daemon.pid), time.perf_counter()
        time.sleep(args.idle)
        idle_rate = (cpu_seconds(daemon.pid) - before) / (time.perf_counter() - clock)

        before, clock = cpu_seconds(daemon.pid), time.perf_counter()
        for _ in range(args.runs):
            daemon.control("POST", f"/trigger/{AGENT}")
        wait_runs(root, 1 + args.runs, 60 + 30 * args.runs)
        used, wall = cpu_seconds(daemon.pid) - before, time.perf_counter() - clock

        per_run = (used - idle_rate * wall) / args.runs
        print(f"idle: {idle_rate * 1000:.1f} ms of CPU per second")
        print(
            f"runs: {args.runs} at scale {args.scale} in {wall:.1f} s: "
            f"{used:.2f} s of daemon CPU, {idle_rate * wall:.2f} s of it idle work"
        )
        print(
            f"per run: {per_run * 1000:.1f} ms of daemon CPU (wall {wall / args.runs:.2f} s "
            f"per run with {args.scale} at once)"
        )
        ok = per_run <= GOAL_SECONDS
        print(f"goal: <= {GOAL_SECONDS * 1000:.0f} ms per run: {verdict(ok)}")
        return 1 if args.check and not ok else 0
    finally:
        if daemon is not None:
            daemon.stop()
        cleanup_project(root, images=True)
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
