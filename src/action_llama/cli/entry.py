"""The `al` console script: a thin start-up wrapper around `action_llama.cli.app`.

Two start-up costs of a short-lived CLI are worth removing (measured in bench/):
- the cyclic garbage collector runs many times while the imports allocate (60-90 ms), although
  nearly nothing they allocate is garbage; it is paused during imports, and what they loaded is
  frozen out of later collections;
- interpreter teardown of every loaded module (50-75 ms) buys nothing at exit; once output is
  flushed and the command's files are closed (commands close their own), the process ends
  with os._exit.
"""

from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    # Commands import pydantic and docker lazily, after this point, so a higher threshold for
    # the youngest generation (not a disabled collector) keeps collections rare all along.
    gc.set_threshold(50_000, 20, 20)
    gc.disable()
    # `al run` is tried before the option parser (typer: ~0.1 s) loads: through a running
    # scheduler it is a small HTTP client, here it needs no parser either. None: not that case.
    from action_llama.cli.follow import fast_path
    from action_llama.cli.render import reported

    code = reported(lambda: fast_path(sys.argv[1:], settled=_collect))
    if code is None:
        code = _parsed()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _collect() -> None:
    """Collect garbage again from here on, leaving out what the imports loaded."""
    gc.freeze()
    gc.enable()


def _parsed() -> int:
    """The command line through the option parser; its exit code."""
    from action_llama.cli.app import main as app_main

    _collect()
    try:
        app_main()
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            sys.stderr.write(f"{exc.code}\n")
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
