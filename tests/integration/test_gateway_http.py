"""The real gateway over real HTTP, called by the helper commands inside a real container.

The app runs on uvicorn, bound as the daemon binds it (loopback plus the Docker bridge
address, not every interface), with two runs registered in its state. A script-mode agent
reaches it at http://host.docker.internal:<port> and plays both runs by switching
SHUTDOWN_SECRET: the first takes a lock, the second is refused it (exit 1), a wrong secret is
refused (exit 3), a call is made and read back, and al-shutdown reaches the backend's kill
switch and ends the run.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from action_llama.credentials.store import CredentialStore
from action_llama.gateway import GatewaySettings, create_app
from action_llama.gateway.server import GatewayServer, open_server
from action_llama.gateway.testing import RecordingBackend
from action_llama.state import State

from support import json_records, run_al, script_agent

pytestmark = [pytest.mark.docker]

SECRET_A = "secret-of-run-a"
SECRET_B = "secret-of-run-b"

SCRIPT = r"""
GW=@URL@
KEY=github://octo/app/issues/7
# step NAME COMMAND...: run COMMAND; print NAME.rc and NAME.out (its stdout, as JSON)
step() {
name=$1; shift
out=$("$@"); rc=$?
echo "$name.rc=$rc"
printf '%s' "$out" | { printf '%s.out=' "$name"; python3 -c 'import json, sys; print(json.dumps(sys.stdin.read()))'; }
}
export GATEWAY_URL=$GW
step health curl -s -m 5 "$GW/health"
step lock_a env SHUTDOWN_SECRET=@A@ rlock "$KEY"
step lock_b env SHUTDOWN_SECRET=@B@ rlock "$KEY"
step lock_bad env SHUTDOWN_SECRET=wrong rlock "$KEY"
step beat_a env SHUTDOWN_SECRET=@A@ rlock-heartbeat "$KEY"
step call env SHUTDOWN_SECRET=@A@ sh -c 'printf "%s" "review \"this\"" | al-subagent reviewer'
call_id=$(printf '%s' "$out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["callId"])')
step check env SHUTDOWN_SECRET=@A@ al-subagent-check "$call_id"
step check_b env SHUTDOWN_SECRET=@B@ al-subagent-check "$call_id"
step unlock_a env SHUTDOWN_SECRET=@A@ runlock "$KEY"
step lock_b_again env SHUTDOWN_SECRET=@B@ rlock "$KEY"
export SHUTDOWN_SECRET=@A@
al-shutdown "all done here" >/dev/null
sleep 60
echo "still.running=1"
"""


class ServerThread:
    """A GatewayServer in its own event loop on a thread (the test itself blocks on `al run`)."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(server.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert started.wait(10), "the gateway did not start"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[ServerThread, RecordingBackend]]:
    state = State.open(tmp_path / "gateway-state")
    state.active_runs.add("run-a", "gw", runtime="docker", secret=SECRET_A, trigger={})
    state.active_runs.add("run-b", "other", runtime="docker", secret=SECRET_B, trigger={})
    backend = RecordingBackend(agents={"gw", "other", "reviewer"})
    settings = GatewaySettings(
        agents={"gw": (), "other": (), "reviewer": ()},
        credentials=CredentialStore(tmp_path / "credentials"),
    )
    served = ServerThread(open_server(create_app(state, backend, settings), port=0))
    try:
        yield served, backend
    finally:
        served.stop()
        state.close()


def facts(stdout: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for record in json_records(stdout):
        if record.get("source") != "script" or "=" not in record.get("msg", ""):
            continue
        key, value = record["msg"].split("=", 1)
        found[key] = int(value) if key.endswith(".rc") else value
        if key.endswith(".out"):
            found[key] = json.loads(value)
    return found


def test_helper_commands_in_a_container_use_the_real_gateway(
    gateway: tuple[ServerThread, RecordingBackend],
    make_project: Any,
    base_image: str,
) -> None:
    """Locks contend across two runs' secrets (0 then 1), a wrong secret is exit 3, a call is
    recorded and readable only by its caller (2 for the other run), and al-shutdown reaches
    backend.shutdown_run and ends the run well before its script would have."""
    served, backend = gateway
    hosts = [address for address, _ in served.server.addresses]
    assert "0.0.0.0" not in hosts
    assert hosts[0] == "127.0.0.1"
    script = (
        SCRIPT.replace("@URL@", f"http://host.docker.internal:{served.server.port}")
        .replace("@A@", SECRET_A)
        .replace("@B@", SECRET_B)
    )
    # The gateway here is the test's, reached directly on the host: no egress proxy to relay it.
    root = make_project(script_agent("gw", script), config='[network]\nmode = "open"\n')
    started = time.monotonic()
    result = run_al("run", "gw", "-p", str(root), "--json", "-q", timeout=240)
    elapsed = time.monotonic() - started
    found = facts(result.stdout)
    assert found.get("health.rc") == 0, (hosts, result.stdout[-3000:], result.stderr)
    assert json.loads(found["health.out"]) == {"ok": True, "status": "ok"}

    assert found["lock_a.rc"] == 0
    assert json.loads(found["lock_a.out"])["holder"] == "run-a"
    assert found["lock_b.rc"] == 1
    refused = json.loads(found["lock_b.out"])
    assert (refused["reason"], refused["holder"], refused["holderAgent"]) == (
        "conflict",
        "run-a",
        "gw",
    )
    assert found["lock_bad.rc"] == 3
    assert found["beat_a.rc"] == 0
    assert found["unlock_a.rc"] == 0
    assert found["lock_b_again.rc"] == 0

    assert found["call.rc"] == 0
    call_id = json.loads(found["call.out"])["callId"]
    [(call,)] = backend.named("start_call")
    assert (call.call_id, call.caller_run, call.context) == (call_id, "run-a", 'review "this"')
    assert found["check.rc"] == 0
    assert json.loads(found["check.out"])["status"] == "pending"
    assert found["check_b.rc"] == 2

    assert backend.named("shutdown_run") == [("run-a", "all done here")]
    assert "still.running" not in found
    assert elapsed < 50, elapsed
