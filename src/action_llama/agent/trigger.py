"""Why a run happens, as text: the last block of a model session's prompt, and `$PROMPT`.

A model session gets this text last in its prompt; script-mode agents (`test-script.sh`)
and every command a run starts get the same text in `PROMPT`, and the trigger itself (JSON)
in the file `AL_TRIGGER_FILE` names, as the original runner's scripts did. Standard library
only: script mode must start without the model session's imports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

# typing.TYPE_CHECKING without importing typing: this module loads in every run's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TRIGGER_FILE = "trigger.json"
PROMPT_FILE = "prompt.txt"

SCHEDULE = "You are running on a schedule. Check for new work and act on anything you find."
MANUAL = "You have been triggered manually. Check for new work and act on anything you find."


def trigger_suffix(trigger: Mapping[str, Any] | None, prompt: str | None = None) -> str:
    """The last part of the prompt, saying why this run happens (reference §6.3).

    `trigger` is trigger.json ({"type", "prompt"?, "context"?, "caller"?}); without one, a
    manual run, with `prompt` (prompt.txt) as its task when given.
    """
    kind = (trigger or {}).get("type", "manual")
    if kind == "schedule":
        return SCHEDULE
    if kind == "webhook":
        event = json.dumps((trigger or {}).get("context"), indent=2, ensure_ascii=False)
        return (
            f"<webhook-trigger>\n{event}\n</webhook-trigger>\n\nA webhook event just fired. "
            "Review the trigger context above and take appropriate action."
        )
    if kind == "agent-call":
        caller = str((trigger or {}).get("caller") or "unknown")
        context = (trigger or {}).get("context")
        call = json.dumps(
            {"caller": caller, "context": context},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return (
            f'<agent-call>\n{call}\n</agent-call>\n\nYou were called by the "{caller}" agent. '
            "Review the call context above, do the requested work, and use `al-return` to send "
            "back your result."
        )
    text = ((trigger or {}).get("prompt") or prompt or "").strip()
    if text:
        return (
            f"<user-prompt>\n{text}\n</user-prompt>\n\n"
            "You have been given a specific task. Complete the task described above."
        )
    return MANUAL


def read_trigger(static: Path) -> dict[str, Any] | None:
    """The run's trigger.json in `static` (None when absent or not a JSON object)."""
    try:
        data = json.loads((static / TRIGGER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def trigger_text(static: Path) -> str:
    """The trigger text of the run whose files are in `static`."""
    try:
        prompt: str | None = (static / PROMPT_FILE).read_text(encoding="utf-8")
    except OSError:
        prompt = None
    return trigger_suffix(read_trigger(static), prompt)
