"""What an agent sees inside its container, checked from inside a real container."""

from __future__ import annotations

import re
from typing import Any

import pytest

from support import (
    PROBE,
    ProjectFactory,
    facts,
    json_records,
    run_al,
    script_agent,
    script_output,
    stored_runs,
)

pytestmark = [pytest.mark.docker]


@pytest.fixture
def probed(make_project: ProjectFactory, base_image: str) -> dict[str, str]:
    root = make_project(
        script_agent("probe", PROBE),
        config='[local]\nmemory = "256m"\ncpus = 1.5\n',
    )
    result = run_al("run", "probe", "-p", str(root), "--json", "-q")
    assert result.returncode == 0, result.stderr
    return facts(result.stdout)


def test_runs_as_uid_1000_named_node_with_home_and_tmp_workdir(probed: dict[str, str]) -> None:
    """The agent runs as uid 1000 (node), HOME=/home/node, in /tmp, with /app/bin on PATH."""
    assert probed["uid"] == "1000"
    assert probed["user"] == "node"
    assert probed["home"] == "/home/node"
    assert probed["cwd"] == "/tmp"
    assert probed["path"].split(":")[0] == "/app/bin"


def test_root_app_static_and_credentials_are_read_only(probed: dict[str, str]) -> None:
    """/, /etc, /app, /app/static and /credentials cannot be written."""
    for key in ("root", "etc", "app", "app_static", "credentials"):
        assert probed[f"{key}_writable"] == "no", key
    assert probed["credentials_exists"] == "yes"
    assert probed["app_has_package"] == "yes"
    assert probed["skill_present"] == "yes"


def test_tmp_is_a_2g_tmpfs_and_home_a_64m_tmpfs(probed: dict[str, str]) -> None:
    """/tmp is a writable 2 GB tmpfs and /home/node a writable 64 MB tmpfs."""
    assert probed["tmp_writable"] == "yes"
    assert probed["tmp_type"] == "tmpfs"
    assert int(probed["tmp_mb"]) == 2048
    assert probed["home_writable"] == "yes"
    assert probed["home_type"] == "tmpfs"
    assert int(probed["home_mb"]) == 64


def test_workspace_is_writable_and_about_2g(probed: dict[str, str]) -> None:
    """/workspace is writable and its file system is 2 GB."""
    assert probed["workspace_writable"] == "yes"
    assert 1900 <= int(probed["workspace_mb"]) <= 2048


def test_limits_are_enforced_by_the_engine(probed: dict[str, str]) -> None:
    """No capabilities, no-new-privileges, and the configured memory, CPU and pids limits."""
    assert int(probed["cap_eff"], 16) == 0
    assert probed["no_new_privs"] == "1"
    assert int(probed["mem_limit"]) == 256 * 1024**2
    assert int(probed["cpu_quota"]) == int(1.5 * int(probed["cpu_period"]))
    assert probed["pids_max"] == "512"


def test_base_image_has_the_tools_agents_need(probed: dict[str, str]) -> None:
    """git, curl, jq, ssh and python3 are in the base image."""
    for tool in ("git", "curl", "jq", "ssh", "python3"):
        assert probed[f"has_{tool}"] == "yes", tool


def test_default_cpus_is_2(make_project: ProjectFactory, base_image: str) -> None:
    """Without [local].cpus a run gets 2 CPUs, as the seed says."""
    root = make_project(script_agent("probe", PROBE))
    result = run_al("run", "probe", "-p", str(root), "--json", "-q")
    found = facts(result.stdout)
    assert int(found["cpu_quota"]) == 2 * int(found["cpu_period"])
    assert int(found["mem_limit"]) == 4 * 1024**3


def test_workspace_persists_between_runs_and_is_capped(
    make_project: ProjectFactory, base_image: str
) -> None:
    """A file written to /workspace is there on the next run; writing past 2 GB fails."""
    script = """
    if [ -f /workspace/note ]; then echo "found=$(cat /workspace/note)"; fi
    echo "$AL_RUN_ID" > /workspace/note
    if fallocate -l 2100M /workspace/big 2>/dev/null; then echo cap=none; else echo cap=enforced; fi
    rm -f /workspace/big
    """
    root = make_project(script_agent("keeper", script))
    first = run_al("run", "keeper", "-p", str(root), "--json", "-q")
    second = run_al("run", "keeper", "-p", str(root), "--json", "-q")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    first_run = json_records(first.stdout)[0]["runId"]
    assert f"found={first_run}" in script_output(second.stdout)
    assert "cap=enforced" in script_output(first.stdout)


def test_tmp_does_not_persist(make_project: ProjectFactory, base_image: str) -> None:
    """/tmp starts empty on every run (it is a tmpfs)."""
    script = "ls /tmp/left-behind 2>/dev/null && echo stale=yes; touch /tmp/left-behind; echo ok"
    root = make_project(script_agent("scratch", script))
    run_al("run", "scratch", "-p", str(root), "-q")
    second = run_al("run", "scratch", "-p", str(root), "--json", "-q")
    assert "stale=yes" not in script_output(second.stdout)


def test_exit_code_of_the_script_is_al_runs_exit_code(
    make_project: ProjectFactory, base_image: str
) -> None:
    """`al run` exits with the agent's own exit code and says so on stderr."""
    root = make_project(script_agent("failing", "echo about to fail; exit 3"))
    result = run_al("run", "failing", "-p", str(root))
    assert result.returncode == 3
    assert "about to fail" in result.stdout
    assert "exited with code 3" in result.stderr
    assert "al logs failing" in result.stderr


def test_timeout_stops_the_run_with_exit_124(make_project: ProjectFactory, base_image: str) -> None:
    """A run past its timeout is stopped and reported as timed out, exit 124."""
    root = make_project(script_agent("sleepy", "echo start; sleep 60; echo never", "timeout = 2\n"))
    result = run_al("run", "sleepy", "-p", str(root), timeout=60)
    assert result.returncode == 124
    assert "never" not in result.stdout
    assert "timed out after 2s" in result.stderr
    assert "timeout" in result.stderr.split("hint:")[1]


HOG = 'python3 -c "x = bytearray(300 * 1024 * 1024); print(len(x))"'


@pytest.mark.parametrize("script", [HOG, f"{HOG} || echo 'my child was killed'; exit 0"])
def test_out_of_memory_is_reported_with_the_memory_hint(
    make_project: ProjectFactory, base_image: str, script: str
) -> None:
    """A run that exceeds [local].memory is OOM-killed and told how to raise the limit; it
    exits 137 also when the script went on (and exited 0) after its child was killed."""
    root = make_project(script_agent("hog", script), config='[local]\nmemory = "64m"\n')
    result = run_al("run", "hog", "-p", str(root))
    assert result.returncode == 137
    [run] = stored_runs(root, "hog")
    assert (run.status, run.exit_code) == ("oom", 137)
    assert "ran out of memory (limit 64m)" in result.stderr
    assert "[local]" in result.stderr
    assert 'memory = "8g"' in result.stderr


def test_container_is_named_labelled_and_removed_after_its_logs_are_stored(
    make_project: ProjectFactory, base_image: str, docker_client: Any
) -> None:
    """While running the container is al-<agent>-<run id> with labels; after, it is gone but
    `al logs` still shows its output."""
    import subprocess

    from support import AL

    root = make_project(script_agent("named", "echo marker-line; sleep 3"))
    proc = subprocess.Popen(
        [AL, "run", "named", "-p", str(root), "--json", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        run_id = __import__("json").loads(first)["runId"]
        found = docker_client.api.containers(filters={"label": f"al.run={run_id}"})
        assert len(found) == 1
        assert found[0]["Names"] == [f"/al-named-{run_id}"]
        labels = found[0]["Labels"]
        assert labels["al.agent"] == "named"
        assert labels["al.project"] == str(root)
    finally:
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert docker_client.api.containers(all=True, filters={"label": f"al.run={run_id}"}) == []
    logs = run_al("logs", "named", "-p", str(root))
    assert logs.returncode == 0
    assert "marker-line" in logs.stdout
    assert run_id in logs.stdout


def test_hooks_run_around_the_script_in_order(
    make_project: ProjectFactory, base_image: str
) -> None:
    """Pre hooks run before the script and post hooks after, each in /tmp; how long each
    phase took is kept with the run and shown by `al logs --runs`."""
    config = (
        '[hooks]\npre = ["echo pre-one > /tmp/order", "sleep 0.3; echo pre-two >> /tmp/order"]\n'
        'post = ["echo post-ran"]\n'
    )
    root = make_project(script_agent("hooked", "cat /tmp/order; echo script-ran", config))
    result = run_al("run", "hooked", "-p", str(root), "--json", "-q")
    assert result.returncode == 0, result.stderr
    lines = [r["msg"] for r in json_records(result.stdout)]
    assert lines.index("pre-one") < lines.index("pre-two") < lines.index("script-ran")
    assert lines.index("script-ran") < lines.index("post-ran")
    (run,) = stored_runs(root, "hooked")
    assert run.pre_hooks_seconds is not None
    assert run.pre_hooks_seconds >= 0.3
    assert run.post_hooks_seconds is not None
    assert run.post_hooks_seconds < run.pre_hooks_seconds
    listed = run_al("logs", "hooked", "-p", str(root), "--runs")
    assert re.search(r"pre hooks 0\.\ds · post hooks 0\.\ds", listed.stdout), listed.stdout


def test_failing_pre_hook_stops_the_run_with_exit_1(
    make_project: ProjectFactory, base_image: str
) -> None:
    """A failing pre hook is logged, the script does not run, and the run exits 1."""
    config = '[hooks]\npre = ["echo oops >&2; exit 7"]\n'
    root = make_project(script_agent("prefail", "echo script-ran", config))
    result = run_al("run", "prefail", "-p", str(root), "--json", "-q")
    assert result.returncode == 1
    records = json_records(result.stdout)
    assert "script-ran" not in [r["msg"] for r in records]
    assert any(r["level"] == "error" and "hooks.pre [1/1] failed" in r["msg"] for r in records)


def test_failing_post_hook_keeps_the_scripts_exit_code(
    make_project: ProjectFactory, base_image: str
) -> None:
    """A failing post hook is logged as a warning; the run's exit code is the script's."""
    config = '[hooks]\npost = ["exit 5"]\n'
    root = make_project(script_agent("postfail", "echo fine", config))
    result = run_al("run", "postfail", "-p", str(root), "--json", "-q")
    assert result.returncode == 0
    assert any("post hook failed" in r["msg"] for r in json_records(result.stdout))


def test_prompt_reaches_the_script(make_project: ProjectFactory, base_image: str) -> None:
    """A script-mode run gets the text a model session gets last: `al run --prompt` as the
    <user-prompt> block in PROMPT (the trigger as JSON in AL_TRIGGER_FILE); without a prompt,
    the manual-run sentence."""
    script = 'printf "%s\\n" "$PROMPT"\necho "file: $(cat "$AL_TRIGGER_FILE")"\n'
    root = make_project(script_agent("asked", script))
    result = run_al(
        "run", "asked", "-p", str(root), "--prompt", 'fix issue #7 "now"', "--json", "-q"
    )
    assert script_output(result.stdout) == [
        "<user-prompt>",
        'fix issue #7 "now"',
        "</user-prompt>",
        "",
        "You have been given a specific task. Complete the task described above.",
        'file: {"type":"manual","prompt":"fix issue #7 \\"now\\""}',
    ]
    plain = run_al("run", "asked", "-p", str(root), "--json", "-q")
    assert script_output(plain.stdout)[0] == (
        "You have been triggered manually. Check for new work and act on anything you find."
    )


def test_every_output_line_is_a_structured_record(
    make_project: ProjectFactory, base_image: str
) -> None:
    """stdout and stderr of the script both arrive as JSON records with level, msg and ts."""
    root = make_project(script_agent("talky", "echo to-out; echo to-err >&2"))
    result = run_al("run", "talky", "-p", str(root), "--json", "-q")
    records = json_records(result.stdout)
    assert len(records) == len(result.stdout.splitlines())
    by_msg = {r["msg"]: r for r in records}
    assert by_msg["to-out"]["stream"] == "stdout"
    assert by_msg["to-err"]["stream"] == "stderr"
    assert all({"level", "msg", "ts"} <= r.keys() for r in records)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupting_al_run_stops_the_container_and_records_it_killed(
    make_project: ProjectFactory, base_image: str, docker_client: Any, sig: str
) -> None:
    """Ctrl-C (or SIGTERM) during `al run` stops the container within seconds, removes it,
    and records the run as killed with its last lines kept."""
    import json
    import signal
    import subprocess
    import time

    from support import AL

    root = make_project(script_agent("long", "echo started; sleep 120", "timeout = 300\n"))
    proc = subprocess.Popen(
        [AL, "run", "long", "-p", str(root), "--json", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    run_id = None
    for line in proc.stdout:
        record = json.loads(line)
        run_id = run_id or record.get("runId")
        if record["msg"] == "started":
            break
    sent = time.monotonic()
    proc.send_signal(getattr(signal, sig))
    proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 130
    assert docker_client.api.containers(all=True, filters={"label": f"al.run={run_id}"}) == []
    runs = run_al("logs", "long", "-p", str(root), "--runs")
    assert f"run {run_id} · manual · killed" in runs.stdout
    logs = run_al("logs", "long", "-p", str(root))
    assert "stop requested" in logs.stdout


def test_a_container_that_cannot_start_is_not_left_behind(
    tmp_path: Any, docker_client: Any, base_image: str
) -> None:
    """The engine makes the container, then cannot start it (a file where the image has the
    /credentials folder): the run fails with the engine's reason and no container stays."""
    import asyncio

    from action_llama.errors import RunError
    from action_llama.runtimes.base import Limits, RunSpec
    from action_llama.runtimes.docker import DockerRuntime

    from support import cleanup_project

    project = tmp_path / "project"
    static = tmp_path / "static"
    static.mkdir(parents=True)
    (project / ".al").mkdir(parents=True)
    not_a_folder = tmp_path / "credentials"
    not_a_folder.write_text("")
    spec = RunSpec(
        run_id="cannotstart",
        agent="broken",
        project=project,
        image=base_image,
        static_dir=static,
        credentials_dir=not_a_folder,
        workspace=str(project / ".al" / "workspaces" / "broken"),
        limits=Limits(memory_bytes=256 * 1024**2, cpus=1),
        timeout=60,
    )
    try:
        with pytest.raises(RunError, match="Could not start the container for agent broken"):
            asyncio.run(DockerRuntime(docker_client).start(spec))
        assert not docker_client.api.containers(all=True, filters={"label": "al.run=cannotstart"})
    finally:
        cleanup_project(docker_client, project)
