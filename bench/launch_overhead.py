"""How much slower `al run` is than `docker run` of the same container. Goal: <= 1.3x (median).

A temporary project gets one agent whose test-script.sh is `true`. After a warm-up (the image
chain built, the agent's workspace created, one run of each kind), the benchmark alternates
`--runs` times between:

  al       `al run AGENT -p DIR -q --local`, a subprocess: the run done in-process (the
           project comes from its snapshot, .al/project.snapshot, as for any project that
           ran before and was not edited since);
  edited   the same without the snapshot (removed before each run), as the first run after
           an edit: it reads and validates the project, and keeps the snapshot again (not
           part of the goal; shown for what it costs);
  daemon   `al run AGENT -p DIR -q` while `al start` runs for the project (started before the
           loop, idle otherwise): the run is triggered in the daemon and followed from its
           log file and run record (what users get whenever a scheduler runs);
  docker   `docker run --rm` of the same image with the same flags as the docker runtime
           (read-only root, sized tmpfs, cap-drop ALL, no-new-privileges, pids/memory/cpu
           limits, --init, uid 1000, the staged /app/static and /credentials bound read-only,
           the agent's workspace volume at /workspace) and `--entrypoint true`;
  entry    the same `docker run`, but with the image's own entrypoint: the in-container
           Python entry running test-script.sh (`true`). entry - docker is the part of al's
           overhead paid inside the container, al - entry the part paid on the host.

It then prints medians and p90s, the ratios al/docker and daemon/docker, and a breakdown of
al's time: import cost, `al --version`, and the phases of one run done in-process
(bench/_phases.py). Everything it creates is removed at the end: the daemon, containers,
volumes and loop devices labelled with its project path, the temp dir (its credential store,
AL_CREDENTIALS_DIR, included). Images are not: the agent runs the shared base image.

    .venv/bin/python bench/launch_overhead.py [--runs 15] [--phases 5] [--no-daemon]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from _common import (
    AL,
    by_stack,
    bytecode_cache,
    check,
    cleanup_project,
    import_profile,
    run_al,
    script_agent,
    summary,
    verdict,
    wall,
    write_files,
)

AGENT = "noop"
#: The modules `al run --local` imports for a container run.
RUN_MODULES = "action_llama.cli.local, action_llama.runs.local, action_llama.runtimes.docker"
GOAL_RATIO = 1.3
HERE = Path(__file__).resolve().parent


def make_project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="al-bench-launch-")).resolve()
    write_files(root, {"config.toml": "", **script_agent(AGENT, "true\n")})
    return root


def stage_for_docker(root: Path) -> tuple[Path, Path]:
    """/app/static and /credentials for the docker variants, laid out as the run service does."""
    stage = root / "docker-stage"
    static = stage / "static"
    static.mkdir(parents=True, mode=0o755)
    stage.chmod(0o755)
    (static / "SKILL.md").write_text((root / "agents" / AGENT / "SKILL.md").read_text())
    (static / "test-script.sh").write_text("true\n")
    config = {
        "name": AGENT,
        "description": "benchmark agent",
        "timeout": 900,
        "hooks": {"pre": [], "post": []},
        "params": {},
        "credentials": [],
        "models": [],
    }
    (static / "agent-config.json").write_text(json.dumps(config))
    for path in static.iterdir():
        path.chmod(0o644)
    creds = stage / "credentials"
    creds.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(creds, 1000, 1000)
    return static, creds


def docker_argv(
    root: Path, image: str, static: Path, creds: Path, volume: str, *, entrypoint: bool
) -> list[str]:
    """`docker run` with the flags DockerRuntime._create gives the engine."""
    from action_llama.project import load_project
    from action_llama.runtimes.base import Limits

    local = load_project(root).config.local
    limits = Limits(memory_bytes=local.memory_bytes, cpus=local.cpus)
    argv = [
        "docker",
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        f"/tmp:rw,exec,nosuid,nodev,size={limits.tmp_bytes},uid=1000,gid=1000,mode=1777",
        "--tmpfs",
        f"/home/node:rw,nosuid,nodev,size={limits.home_bytes},uid=1000,gid=1000,mode=0755",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
        "--pids-limit",
        str(limits.pids),
        "--memory",
        str(limits.memory_bytes),
        "--memory-swap",
        str(limits.memory_bytes),
        "--cpus",
        str(limits.cpus),
        "--init",
        "--user",
        "1000:1000",
        "--workdir",
        "/tmp",
        "--add-host",
        "host.docker.internal:host-gateway",
        "-v",
        f"{static}:/app/static:ro",
        "-v",
        f"{creds}:/credentials:ro",
        "-v",
        f"{volume}:/workspace",
        "--label",
        f"al.project={root}",
        "-e",
        f"AL_AGENT={AGENT}",
        "-e",
        "AL_RUN_ID=bench",
    ]
    if not entrypoint:
        argv += ["--entrypoint", "true"]
    return [*argv, image]


def workspace_volume(root: Path, kind: str) -> str:
    """The volume the docker variants mount: al's own (capped, loop-backed) or a plain one."""
    from action_llama.runtimes.docker_workspace import volume_name

    if kind == "al":
        return volume_name(root, AGENT)
    name = f"al-bench-{root.name}"
    subprocess.run(
        ["docker", "volume", "create", "--label", f"al.project={root}", name],
        check=True,
        capture_output=True,
    )
    return name


def image_of(root: Path) -> str:
    from action_llama.engine import connect
    from action_llama.images.build import ChainBuilder
    from action_llama.project import load_project

    client = connect()
    try:
        return ChainBuilder(client, load_project(root)).ensure([AGENT]).image_for(AGENT)
    finally:
        client.close()


@contextlib.contextmanager
def running_daemon(root: Path, wanted: bool) -> Iterator[None]:
    """`al start -p ROOT --port 0` for the duration (its output in ROOT/daemon.log)."""
    if not wanted:
        yield
        return
    log = root / "daemon.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [AL, "start", "-p", str(root), "--port", "0"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 600
        while not (root / ".al" / "daemon.json").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.stderr.write(f"al start did not come up:\n{log.read_text()}\n")
                raise SystemExit(1)
            time.sleep(0.05)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def measure(args: argparse.Namespace, root: Path) -> dict[str, list[float]]:
    print(f"project {root}")
    print("warm-up: building the image chain (al image build -q)...", flush=True)
    check(run_al("image", "build", "-p", str(root), "-q"), "al image build")
    check(run_al("run", AGENT, "-p", str(root), "-q"), "warm-up al run")
    image = image_of(root)
    static, creds = stage_for_docker(root)
    volume = workspace_volume(root, args.workspace)
    variants = {
        "al": [AL, "run", AGENT, "-p", str(root), "-q", "--local"],
        "edited": [AL, "run", AGENT, "-p", str(root), "-q", "--local"],
        "daemon": [AL, "run", AGENT, "-p", str(root), "-q"],
        "docker": docker_argv(root, image, static, creds, volume, entrypoint=False),
        "entry": docker_argv(root, image, static, creds, volume, entrypoint=True),
    }
    if args.no_entry:
        del variants["entry"]
    if args.no_daemon:
        del variants["daemon"]
    snapshot = root / ".al" / "project.snapshot"
    before = {"edited": lambda: snapshot.unlink(missing_ok=True)}
    with running_daemon(root, "daemon" in variants):
        return measure_variants(args, variants, before, image, volume)


def measure_variants(
    args: argparse.Namespace,
    variants: dict[str, list[str]],
    before: dict[str, Callable[[], None]],
    image: str,
    volume: str,
) -> dict[str, list[float]]:
    for name, argv in variants.items():
        if name not in ("al", "edited"):
            wall(argv, f"warm-up {name}")
    print(f"image {image[:19]}, workspace volume {volume}")
    print("docker variant: " + " ".join(variants["docker"]), flush=True)
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for i in range(args.runs):
        # Alternate the order so neither variant always runs right after the other.
        for name in order if i % 2 == 0 else reversed(order):
            if name in before:
                before[name]()
            times[name].append(wall(variants[name], name))
        print(
            f"  run {i + 1:>2}/{args.runs}: "
            + "  ".join(f"{name} {times[name][-1]:.3f}s" for name in variants),
            flush=True,
        )
    return times


def phases(root: Path, count: int) -> tuple[dict[str, float], list[float]]:
    """Median seconds per phase of `count` in-process runs, and their wall times."""
    samples: list[dict[str, float]] = []
    walls: list[float] = []
    probe = [sys.executable, str(HERE / "_phases.py"), str(root), AGENT]
    for _ in range(count):
        started = time.monotonic()
        proc = subprocess.run(probe, capture_output=True, text=True, check=False)
        ended = time.monotonic()
        walls.append(ended - started)
        check(proc, "phase probe")
        sample = json.loads(proc.stdout)
        # CLOCK_MONOTONIC is shared by processes: split off interpreter start-up and exit.
        sample = {
            "interpreter start-up (spawn to probe)": sample.pop("entered (monotonic)") - started,
            **sample,
        }
        sample["interpreter exit (probe end to reaped)"] = ended - sample.pop("left (monotonic)")
        samples.append(sample)
    keys = list(samples[0])
    return {k: statistics.median(s[k] for s in samples) for k in keys}, walls


def report(times: dict[str, list[float]]) -> bool:
    print("\nwall time per launch")
    for name, values in times.items():
        print(f"  {name:<7} {summary(values)}")
    al, docker = statistics.median(times["al"]), statistics.median(times["docker"])
    ratio = al / docker
    ok = ratio <= GOAL_RATIO
    print(f"\nal / docker (median): {ratio:.2f}x   (goal <= {GOAL_RATIO}x: {verdict(ok)})")
    if "daemon" in times:
        through = statistics.median(times["daemon"])
        daemon_ok = through / docker <= GOAL_RATIO
        print(
            f"daemon / docker (median): {through / docker:.2f}x   "
            f"(goal <= {GOAL_RATIO}x: {verdict(daemon_ok)}; al run while al start runs)"
        )
        print(f"daemon overhead over docker: {through - docker:+.3f} s per run")
        ok = ok and daemon_ok
    print(f"al overhead over docker: {al - docker:+.3f} s per run")
    if "edited" in times:
        edited = statistics.median(times["edited"])
        print(f"first al run after an edit (validates the project): {edited / docker:.2f}x")
    if "entry" in times:
        entry = statistics.median(times["entry"])
        print(f"  in the container (entry - docker): {entry - docker:+.3f} s")
        print(f"  on the host      (al - entry):     {al - entry:+.3f} s")
    return ok


def breakdown(root: Path, count: int) -> None:
    print("\nwhere al's time goes")
    python = [wall([sys.executable, "-c", "pass"], "python") for _ in range(5)]
    version = [wall([AL, "--version"], "al --version") for _ in range(5)]
    print(f"  python -c pass                     {statistics.median(python):.3f} s (median of 5)")
    print(f"  al --version                       {statistics.median(version):.3f} s (median of 5)")
    # What the in-process `al run` loads (cli/local.py; typer and docker-py it does not).
    total, ranked = import_profile(RUN_MODULES)
    print(
        f"  import {RUN_MODULES} under -X importtime: {total:.3f} s "
        "(tracing inflates it), self time by stack:"
    )
    for stack, seconds, modules in by_stack(ranked):
        print(f"      {seconds:.3f} s  {stack} ({modules} modules)")
    if count <= 0:
        return
    medians, walls = phases(root, count)
    print(f"  one run in-process (bench/_phases.py, median of {count}):")
    for name, seconds in medians.items():
        print(f"    {name:<55} {seconds:.3f} s")
    total = sum(v for k, v in medians.items() if not k.startswith(" "))
    print(f"    {'sum of phases':<55} {total:.3f} s")
    print(f"    {'whole probe process (wall, median)':<55} {statistics.median(walls):.3f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="launches of each kind (15)")
    parser.add_argument(
        "--phases",
        type=int,
        default=5,
        help="in-process runs for the phase breakdown (5; 0 skips it)",
    )
    parser.add_argument(
        "--workspace",
        choices=("al", "plain"),
        default="al",
        help="volume the docker variants mount at /workspace: the agent's own "
        "loop-backed ext4 volume, as al mounts it (default), or a plain "
        "named volume",
    )
    parser.add_argument(
        "--no-entry",
        action="store_true",
        help="skip the 'entry' variant (docker run with the in-container entry)",
    )
    parser.add_argument(
        "--no-daemon",
        action="store_true",
        help="skip the 'daemon' variant (al run through a running al start)",
    )
    parser.add_argument(
        "--bytecode",
        choices=("cached", "as-is"),
        default="cached",
        help="let subprocesses cache bytecode in the temp dir when "
        "PYTHONDONTWRITEBYTECODE is set (default), or keep it as is",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the goal is missed")
    parser.add_argument("--keep", action="store_true", help="keep the temp project and volumes")
    args = parser.parse_args()
    if shutil.which("docker") is None:
        sys.stderr.write("needs the docker CLI on PATH\n")
        return 1
    root = make_project()
    # The daemon makes its operator key in the credential store: keep it out of the user's.
    os.environ["AL_CREDENTIALS_DIR"] = str(root / "credentials-store")
    try:
        note = bytecode_cache(root / "pycache") if args.bytecode == "cached" else None
        if note:
            print(note)
        ok = report(measure(args, root))
        breakdown(root, args.phases)
    finally:
        if args.keep:
            print(f"\nkept {root}")
        else:
            cleanup_project(root, images=False)
            shutil.rmtree(root, ignore_errors=True)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
