"""Names and places the host side of egress and the proxy share.

Here rather than in `proxy.py` and `broker.py`: what a run's start needs of them is a few
constants, and importing the proxy's server code for them costs every `al run`.
"""

from __future__ import annotations

from pathlib import Path

#: The port the proxy listens on (HTTP proxy, CONNECT, model broker).
PROXY_PORT = 3128
#: Where the proxy container sees the run's model keys (`brokering.keys_dir` on the host).
KEYS_DIR = Path("/keys")
#: Name runs use for the scheduler's gateway (mapped to the proxy's address in the run).
GATEWAY_NAME = "al-gateway"
#: What the proxy writes about itself in the state folder.
STATUS_FILE = "proxy.json"
HEARTBEAT_FILE = "heartbeat"
#: What every placeholder of a brokered token starts with (the proxy looks for it).
PLACEHOLDER_PREFIX = "alph_"
#: The port whose TLS the proxy terminates, for hosts whose placeholders it swaps.
TLS_PORT = 443
#: Path under which the proxy's model broker serves a run's models.
BROKER_PREFIX = "/.al/models/"
