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
    from action_llama.cli.app import main as app_main

    gc.freeze()
    gc.enable()
    code = 0
    try:
        app_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            sys.stderr.write(f"{exc.code}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
