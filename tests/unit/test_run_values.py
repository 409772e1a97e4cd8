"""The values that cross the runtime seam and the work queue: their checks and stored forms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from action_llama.runs.trigger import Trigger
from action_llama.runtimes.base import Limits, RunResult, RunSpec

#: An active_runs row's work as `al` wrote it before triggers were dataclasses (every field,
#: None ones too, camelCase).
STORED_BEFORE = {
    "type": "agent-call",
    "prompt": None,
    "context": {"issue": 7, "labels": ["bug"]},
    "caller": "triage",
    "callId": "c-1",
    "depth": 2,
    "summary": "call from triage",
}


def _spec(timeout: int) -> RunSpec:
    return RunSpec(
        run_id="r1",
        agent="dev",
        project=Path("/p"),
        static_dir=Path("/s"),
        credentials_dir=Path("/c"),
        workspace="ws",
        limits=Limits(memory_bytes=1 << 30, cpus=1.0),
        timeout=timeout,
    )


@pytest.mark.parametrize("timeout", [0, -5])
def test_a_run_spec_without_a_positive_timeout_is_refused(timeout: int) -> None:
    """A spec whose timeout is not above 0 cannot be built, and the error names the field."""
    with pytest.raises(ValueError, match=r"timeout must be greater than 0"):
        _spec(timeout)


@pytest.mark.parametrize(("status", "code"), [("oom", 137), ("timeout", 124), ("failed", 1)])
def test_a_failed_run_never_reports_exit_0(status: str, code: int) -> None:
    """A run that failed while its own process exited 0 reports its failure's exit code."""
    assert RunResult(exit_code=0, status=status).exit_code == code  # type: ignore[arg-type]
    assert RunResult(exit_code=3, status=status).exit_code == 3  # type: ignore[arg-type]


def test_a_trigger_stored_by_an_earlier_al_reads_back() -> None:
    """Work an earlier version left in active_runs is read back as the same trigger."""
    trigger = Trigger.from_stored(STORED_BEFORE)
    assert trigger == Trigger(
        type="agent-call",
        context={"issue": 7, "labels": ["bug"]},
        caller="triage",
        call_id="c-1",
        depth=2,
        summary="call from triage",
    )
    assert Trigger.from_stored(trigger.to_stored()) == trigger


@pytest.mark.parametrize(
    "stored", [{"type": "agent-call", "sourceAgent": "x"}, {"type": "cron"}, {"context": {1, 2}}]
)
def test_a_stored_trigger_with_unknown_keys_or_values_is_refused(stored: object) -> None:
    """Unknown keys, types or non-JSON context are errors, not silently dropped."""
    with pytest.raises(ValueError, match="Trigger"):
        Trigger.from_stored(stored)


def test_a_run_is_told_only_its_part_of_the_trigger() -> None:
    """trigger.json holds type, prompt, context and caller (what is set), compact JSON."""
    trigger = Trigger.from_stored(STORED_BEFORE)
    assert trigger.for_run() == (
        '{"type":"agent-call","context":{"issue":7,"labels":["bug"]},"caller":"triage"}'
    )
    assert json.loads(Trigger(prompt="café").for_run()) == {"type": "manual", "prompt": "café"}


def test_the_run_values_import_no_pydantic() -> None:
    """Building a run's spec and trigger loads no pydantic of their own (it costs every run)."""
    code = (
        "import sys, builtins\n"
        "seen = set()\n"
        "real = builtins.__import__\n"
        "def spy(name, globals=None, *args, **kwargs):\n"
        "    who = (globals or {}).get('__name__') or ''\n"
        "    if name.startswith('pydantic') and who.startswith('action_llama'):\n"
        "        seen.add(who)\n"
        "    return real(name, globals, *args, **kwargs)\n"
        "builtins.__import__ = spy\n"
        "import action_llama.runtimes.base, action_llama.runs.trigger\n"
        "import action_llama.runs.service, action_llama.runtimes.docker\n"
        "print('\\n'.join(sorted(seen)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    # Configuration is validated by pydantic where it is loaded (config/, project/).
    mine = [
        m for m in out.split() if not m.startswith(("action_llama.config", "action_llama.project"))
    ]
    assert mine == []
