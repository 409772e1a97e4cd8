"""`al doctor` as a service: check a project and this machine, return one result per check.

Nothing here prints; `cli/doctor.py` renders the results. A user's mistake (bad TOML, Docker
down, a missing user) is a failed check, never an exception.
"""

from action_llama.doctor.checks import run_checks
from action_llama.doctor.result import Check, Status

__all__ = ["Check", "Status", "run_checks"]
