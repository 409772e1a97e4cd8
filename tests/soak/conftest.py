"""The soak's engine lives in bench/chaos_soak.py (the full soak is a benchmark run by hand);
this suite imports it from there."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
