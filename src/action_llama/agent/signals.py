"""The signal files the helper commands leave in $AL_SIGNAL_DIR, read once the agent is done.

    exit     `al-exit [code [reason]]`: the run ends with that code (first word; reason after)
    rerun    `al-rerun`: the run ends with 42, which asks the scheduler for another run
    return   `al-return <value>`: the value is reported (`signal-result`), the run ends with 0
    status   `al-status <text>`: progress only, not part of the decision

Reference §4.2 step 11: a failure of the session (or script) wins; then exit, rerun, return.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from action_llama.agent.logproto import Logger

EXIT_RERUN = 42
#: `al-exit` without a readable code: "unrecoverable".
EXIT_DEFAULT = 15
MAX_RETURN_VALUE = 1000
FILES = ("exit", "rerun", "return", "status", "shutdown")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _exit_code(text: str, log: Logger) -> tuple[int, str]:
    word, _, reason = text.strip().partition(" ")
    try:
        code = int(word)
    except ValueError:
        log.warn(f"unreadable exit signal {text.strip()[:100]!r}; using {EXIT_DEFAULT}")
        return EXIT_DEFAULT, text.strip()
    if not 0 <= code <= 255:
        log.warn(f"exit signal {code} is out of range; using {EXIT_DEFAULT}")
        return EXIT_DEFAULT, reason.strip()
    return code, reason.strip()


def decide(code: int, signal_dir: Path, log: Logger) -> int:
    """The run's exit code, given the agent's own `code` and the signal files; logs
    `signal-result` lines and removes the files."""
    try:
        if code != 0:
            return code
        exit_text = _read(signal_dir / "exit")
        if exit_text is not None:
            exit_code, reason = _exit_code(exit_text, log)
            log.info("agent terminated with exit signal", exitCode=exit_code, reason=reason)
            log.info("signal-result", type="exit", exitCode=exit_code, reason=reason)
            return exit_code
        if (signal_dir / "rerun").exists():
            log.info("signal-result", type="rerun")
            return EXIT_RERUN
        value = _read(signal_dir / "return")
        if value is not None:
            value = value.rstrip("\n")
            log.info("signal-result", type="return", value=value[:MAX_RETURN_VALUE])
        return 0
    finally:
        for name in FILES:
            with contextlib.suppress(OSError):
                (signal_dir / name).unlink()
