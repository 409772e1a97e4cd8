"""What re-adopting a run after a daemon restart rests on: the stage sweep spares runs that go
on, a stage's secrets can be read back for redaction, a stored log resumes after its last whole
line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.staging import STALE_AFTER, stage, staged_secrets, sweep_stale
from action_llama.credentials.store import CredentialStore
from action_llama.runs.service import complete_lines


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (an `al` killed with SIGKILL, say)."""
    code = "import os; print(os.getpid())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(proc.stdout)


@pytest.fixture
def live_run() -> Iterator[str]:
    """The id of a run whose process still runs (it carries AL_RUN_ID, as every run's do)."""
    run_id = "feedc0de"
    proc = subprocess.Popen(["sleep", "60"], env={**os.environ, "AL_RUN_ID": run_id})
    yield run_id
    proc.kill()
    proc.wait()


def test_sweep_keeps_the_stage_of_a_run_that_goes_on_and_removes_an_ended_ones(
    tmp_path: Path, dead_pid: int, live_run: str
) -> None:
    """Stages of a dead `al` process are swept unless their run is still running (a
    restarted daemon adopts it and removes its stage when it ends); a live `al`'s stay."""
    kept = tmp_path / f"{live_run}-{dead_pid}-abc"
    ended = tmp_path / f"0badf00d-{dead_pid}-def"
    ours = tmp_path / f"0badf00d-{os.getpid()}-ghi"
    young = tmp_path / f"0badf00d-{dead_pid}-jkl"
    aged = time.time() - STALE_AFTER
    for path in (kept, ended, ours, young):
        (path / "credentials").mkdir(parents=True)
        if path != young:
            os.utime(path, (aged, aged))
    sweep_stale(tmp_path)
    # A young stage stays: its container may be starting still, its `al` killed meanwhile.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([kept.name, ours.name, young.name])


def test_staged_secrets_reads_back_what_staging_redacts(tmp_path: Path) -> None:
    """The secrets read back from a stage are those `stage` returned for redaction: secret
    fields long enough to redact, not short ones."""
    store = CredentialStore(tmp_path / "store")
    store.write(CredentialRef("github_token"), {"token": "ghp_a-long-secret-value"})
    store.write(CredentialRef("github_token", "short"), {"token": "abc"})
    refs = [CredentialRef("github_token"), CredentialRef("github_token", "short")]
    (tmp_path / "stage").mkdir()
    staged = stage(store, tmp_path / "stage" / "credentials", refs, [], (os.getuid(), os.getgid()))
    assert staged.secrets == ("ghp_a-long-secret-value",)
    assert staged_secrets(tmp_path / "stage") == staged.secrets


def test_a_stored_log_resumes_after_its_last_whole_line(tmp_path: Path) -> None:
    """A log whose writer was killed mid-line counts its whole lines and loses the partial
    one, so the next record starts on a line of its own."""
    log = tmp_path / "run.jsonl"
    log.write_bytes(b'{"msg": "one"}\n{"msg": "two"}\n{"msg": "thr')
    assert complete_lines(log) == 2
    assert log.read_bytes() == b'{"msg": "one"}\n{"msg": "two"}\n'
    assert complete_lines(tmp_path / "missing.jsonl") == 0
