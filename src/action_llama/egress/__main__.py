"""`python -m action_llama.egress --state DIR`: the egress proxy (the proxy container's command)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from action_llama.egress.names import KEYS_DIR, PROXY_PORT
from action_llama.egress.proxy import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="action_llama.egress")
    parser.add_argument("--state", type=Path, required=True, help="the egress state folder")
    parser.add_argument("--port", type=int, default=PROXY_PORT)
    parser.add_argument("--dns-port", type=int, default=53, help="0: no resolver")
    parser.add_argument("--keys", type=Path, default=KEYS_DIR, help="the runs' model keys")
    args = parser.parse_args()
    asyncio.run(serve(args.state, args.port, args.dns_port or None, args.keys))


if __name__ == "__main__":
    main()
