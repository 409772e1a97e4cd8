"""The chaos soak, short: steady webhooks, cron and manual runs while `al start` is killed
with SIGKILL and restarted, and the state folder's disk fills up and frees. Nothing may be
lost and nothing left behind (bench/chaos_soak.py; its full version also restarts dockerd,
which this one never does: other test sessions may be using the engine)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from chaos_soak import Plan, Soak

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_kills_and_a_full_disk_lose_no_delivery_or_run_and_leave_nothing(
    base_image: str, tmp_path: Path
) -> None:
    """Every delivery is receipted and every accepted one runs; every run started is
    recorded with its end; no lock, claim, queued item, container, volume, network, staged
    credential folder or process is left."""
    can_fill = os.geteuid() == 0 and bool(shutil.which("mkfs.ext4"))
    plan = Plan(
        seconds=75,
        kills=4,
        dockerd_restarts=0,
        full=12 if can_fill else 0,
        webhook_every=1.5,
        manual_every=8,
        drain=240,
    )
    lines: list[str] = []
    soak = Soak(plan, tmp_path, say=lines.append)
    try:
        soak.setup()
        figures = soak.run()
    finally:
        soak.cleanup()
    report = figures.render() + "\n" + "\n".join(lines)
    assert figures.zero(), report
    assert figures.sent >= 30, report
    assert figures.receipted == figures.sent == figures.expected, report
    assert figures.ran == figures.expected, report  # no dockerd restart interrupts a run
    assert figures.runs_recorded == figures.runs_started, report
