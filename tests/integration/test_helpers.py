"""The helper commands in /app/bin, run for real by a script-mode agent.

One run per runtime (a container, and a host-user run) calls every command and prints what
it saw: outputs, exit codes, signal files. The gateway the commands talk to is a small HTTP
server of this module that records each request and answers as told by the request itself
(`status://NNN` keys, `status-NNN` agents, call ids `done`, `slow`, `stuck`, `missing`).
Containers reach it as http://host.docker.internal:<port>, host-user runs on 127.0.0.1.

Signal files are checked as files here: what the entry does with them is tested with it.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from support import cleanup_project, json_records, run_al, script_agent, write_files

pytestmark = [pytest.mark.docker]

#: Text that string-built JSON or shell quoting would break: quotes, a backslash, newlines,
#: a tab, non-ASCII, shell and printf syntax.
TRICKY = 'say "hi" \\ it\'s\nsecond line\ttab ünïcødé ☃ 🦙 $HOME `id` %s {}'
SECRET = "se\"cr'et\\ ü&x=1"
#: Status codes the gateway helpers map, and the exit code each gives (_http-exit).
EXIT_CODES = {
    200: 0, 409: 1, 404: 2, 403: 3, 400: 4, 503: 5, 502: 10, 504: 11, 500: 12, 418: 7, 201: 7,
}  # fmt: skip


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    #: The X-AL-Secret header (as UTF-8), or None.
    secret: str | None = None


@dataclass
class FakeGateway:
    """An HTTP server standing in for the gateway; `requests` is what it received, in order."""

    requests: list[Request] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path.startswith("/locks/"):
            found = re.fullmatch(r"status://(\d+)", body.get("resourceKey", ""))
            code = int(found[1]) if found else 200
            return code, {"ok": code == 200, "resourceKey": body.get("resourceKey")}
        if path == "/calls":
            found = re.fullmatch(r"status-(\d+)", body.get("targetAgent", ""))
            if found:
                return int(found[1]), {"ok": False, "reason": "as asked"}
            return 200, {"ok": True, "callId": "call-1"}
        if method == "GET" and path.startswith("/calls/"):
            call = unquote(path.removeprefix("/calls/"))
            self.polls[call] = self.polls.get(call, 0) + 1
            if call == "missing":
                return 404, {"error": "call not found"}
            if call == "stuck" or (call == "slow" and self.polls[call] == 1):
                return 200, {"status": "running"}
            return 200, {"status": "completed", "returnValue": f"from {call}"}
        if path == "/shutdown":
            return 200, {"killed": True, "container": "fake"}
        return 200, {"ok": True}

    def serve(self) -> tuple[ThreadingHTTPServer, int]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                url = urlsplit(self.path)
                header = self.headers.get("X-AL-Secret")
                secret = header.encode("latin-1").decode("utf-8") if header else None
                gateway.requests.append(
                    Request(self.command, url.path, parse_qs(url.query), body, secret)
                )
                code, reply = gateway.answer(self.command, url.path, body or {})
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, server.server_address[1]

    def bodies(self, path: str) -> list[Any]:
        return [r.body for r in self.requests if r.path == path]


SCRIPT = r"""
TRICKY=$(cat <<'TRICKY_EOF'
@TRICKY@
TRICKY_EOF
)
SECRET=$(cat <<'SECRET_EOF'
@SECRET@
SECRET_EOF
)
export TRICKY
unset GATEWAY_URL SHUTDOWN_SECRET
BIN=${AL_BIN_DIR:-/app/bin}
GW=@GATEWAY@
DEAD=http://127.0.0.1:1
json() { python3 -c 'import json, sys; print(json.dumps(sys.stdin.read()))'; }
# step NAME COMMAND...: run COMMAND; print NAME.rc and NAME.out (its stdout, as JSON)
step() {
name=$1; shift
out=$("$@"); rc=$?
echo "$name.rc=$rc"
printf '%s' "$out" | { printf '%s.out=' "$name"; json; }
}
# file NAME PATH: print NAME=<the file's text as JSON, or null when there is none>
file() {
printf '%s=' "$1"
python3 -c 'import json, os, sys; p = sys.argv[1]; print(json.dumps(open(p, encoding="utf-8").read() if os.path.exists(p) else None))' "$2"
}
S=$AL_SIGNAL_DIR

# -- signal files, no gateway --
step rerun al-rerun
file rerun.file "$S/rerun"
step status al-status "$TRICKY"
file status.file "$S/status"
step status_usage al-status
step return_args al-return one "two  three" "$TRICKY"
file return_args.file "$S/return"
step return_stdin sh -c 'printf "%s\n\n" "$TRICKY" | al-return'
file return_stdin.file "$S/return"
step exit_default al-exit
file exit_default.file "$S/exit"
step exit_reason al-exit 3 "$TRICKY"
file exit_reason.file "$S/exit"
step exit_42 al-exit 42
file exit_42.file "$S/exit"
for bad in 256 -1 abc 1.5 ''; do step "exit_bad[$bad]" al-exit "$bad"; done
file exit_after_bad.file "$S/exit"
sleep 30 & sleeper=$!
started=$(date +%s)
step shutdown env AL_ENTRY_PID=$sleeper al-shutdown "$TRICKY"
wait $sleeper; echo "shutdown.sleeper=$? $(($(date +%s) - started))"
file shutdown.file "$S/shutdown"
step shutdown_default env AL_ENTRY_PID= al-shutdown
file shutdown_default.file "$S/shutdown"
sleep 30 & sleeper=$!
started=$(date +%s)
step shutdown_hung env GATEWAY_URL=@HUNG@ AL_ENTRY_PID=$sleeper al-shutdown
wait $sleeper; echo "shutdown_hung.sleeper=$? $(($(date +%s) - started))"

# -- gateway commands without a gateway, or with one that does not answer --
for cmd in rlock runlock rlock-heartbeat; do
step "$cmd.none" $cmd github://o/r/issues/1
step "$cmd.usage" $cmd
step "$cmd.dead" env GATEWAY_URL=$DEAD SHUTDOWN_SECRET=x $cmd github://o/r/issues/1
done
step subagent.none sh -c 'echo ctx | al-subagent other'
step subagent.usage al-subagent
step check.none al-subagent-check call-1
step check.usage al-subagent-check
step wait.none al-subagent-wait call-1
step wait.usage al-subagent-wait --timeout 3
step wait.bad_timeout al-subagent-wait call-1 --timeout soon
step wait.dead env GATEWAY_URL=$DEAD al-subagent-wait lost --timeout 0
for code in 200 409 404 403 400 503 000 502 504 500 418 201; do
step "http_exit[$code]" sh -c '. "$1"; http_exit "$2"' sh "$BIN/_http-exit" "$code"
done

# -- with a gateway --
export GATEWAY_URL=$GW SHUTDOWN_SECRET=$SECRET
step g.rerun al-rerun
step g.status al-status "$TRICKY"
step g.return sh -c 'printf "%s" "$TRICKY" | al-return'
sleep 30 & sleeper=$!
step g.shutdown env AL_ENTRY_PID=$sleeper al-shutdown "$TRICKY"
wait $sleeper; echo "g.shutdown.sleeper=$?"
for code in @CODES@; do step "lock[$code]" rlock "status://$code"; done
step runlock runlock "$TRICKY"
step heartbeat rlock-heartbeat "$TRICKY"
step subagent sh -c 'printf "%s" "$TRICKY" | al-subagent reviewer'
step subagent.409 sh -c 'echo ctx | al-subagent status-409'
step check al-subagent-check done
step check.missing al-subagent-check missing
step check.odd al-subagent-check "a/b c?&#"
step wait al-subagent-wait done --timeout 30 slow
step wait.timeout al-subagent-wait stuck --timeout=1

# -- setenv across bash tool calls --
step env.path env -u AL_ENV_FILE bash -c '. al-bash-init.sh && echo "$AL_ENV_FILE"'
echo "env.expected=${AL_SIGNAL_DIR%/*}/.al-env.sh"
step env.set bash -c '. al-bash-init.sh && setenv GREETING "$TRICKY" setenv OTHER "x y"'
step env.get bash -c '. al-bash-init.sh && printf "%s|%s" "$GREETING" "$OTHER"'
step env.one bash -c '. al-bash-init.sh && setenv ONE 1'
step env.usage bash -c '. al-bash-init.sh && setenv ONLY 2>&1'
step env.odd bash -c '. al-bash-init.sh && setenv A 1 B 2>&1'
step env.bad bash -c '. al-bash-init.sh && setenv A 1 9x v 2>&1'
step env.bad_get bash -c '. al-bash-init.sh && echo "${A-unset}"'
step env.standalone sh -c 'setenv LATER "$TRICKY" 2>&1'
step env.later bash -c '. al-bash-init.sh && printf "%s" "$LATER"'
file env.file "$(bash -c '. al-bash-init.sh && echo "$AL_ENV_FILE"')"
rm -f "$S"/*
"""


def _script(gateway_url: str, hung_url: str) -> str:
    return (
        SCRIPT.replace("@TRICKY@", TRICKY)
        .replace("@HUNG@", hung_url)
        .replace("@SECRET@", SECRET)
        .replace("@GATEWAY@", gateway_url)
        .replace("@CODES@", " ".join(map(str, EXIT_CODES)))
    )


def _facts(stdout: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for record in json_records(stdout):
        if record.get("source") != "script" or "=" not in record["msg"]:
            continue
        key, value = record["msg"].split("=", 1)
        found[key] = int(value) if key.endswith(".rc") else value
        if key.endswith((".out", ".file")):
            found[key] = json.loads(value)
    return found


@dataclass
class Outcome:
    kind: str
    facts: dict[str, Any]
    gateway: FakeGateway

    def step(self, name: str) -> tuple[int, str]:
        return self.facts[f"{name}.rc"], self.facts[f"{name}.out"]


@pytest.fixture(scope="module", params=["container", "host-user"])
def outcome(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    """The script run once in a container and once as a host user, each with its gateway."""
    gateway = FakeGateway()
    server, port = gateway.serve()
    # A gateway that takes connections and never answers: listening, never accepting.
    hung = socket.create_server(("0.0.0.0", 0))
    hung_port = hung.getsockname()[1]
    root = tmp_path_factory.mktemp(f"helpers-{request.param}") / "proj"
    env: dict[str, str] = {}
    base = None
    if request.param == "container":
        request.getfixturevalue("base_image")
        # Its fake gateways are services of the host, reached directly: no egress proxy.
        config = '[network]\nmode = "open"\n'
        host = "host.docker.internal"
    else:
        user = request.getfixturevalue("host_users")[0]
        # As above: its fake gateways are host services, reached directly.
        config = f'[runtime]\ntype = "host-user"\nrun_as = "{user}"\n[network]\nmode = "open"\n'
        host = "127.0.0.1"
        base = Path(tempfile.mkdtemp(prefix="al-test-helpers-", dir="/tmp"))
        base.chmod(0o755)
        env = {"AL_RUNS_DIR": str(base / "runs"), "AL_CREDENTIALS_DIR": str(base / "creds")}
    root.mkdir()
    write_files(
        root,
        {
            "config.toml": "",
            **script_agent(
                "helper", _script(f"http://{host}:{port}", f"http://{host}:{hung_port}"), config
            ),
        },
    )
    try:
        result = run_al("run", "helper", "-p", str(root), "--json", "-q", env=env, timeout=180)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        yield Outcome(request.param, _facts(result.stdout), gateway)
    finally:
        server.shutdown()
        server.server_close()
        hung.close()
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)
        if request.param == "container":
            cleanup_project(request.getfixturevalue("docker_client"), root.resolve())


OK = '{"ok":true}'
NO_GATEWAY = '{"ok":false,"reason":"no gateway"}'


def test_signal_commands_write_their_files_and_print_ok(outcome: Outcome) -> None:
    """al-rerun creates rerun; al-status and al-return write the text exactly (arguments
    joined by spaces, or stdin without its trailing newlines); each prints {"ok":true}."""
    f = outcome.facts
    assert outcome.step("rerun") == (0, OK)
    assert f["rerun.file"] == ""
    assert outcome.step("status") == (0, OK)
    assert f["status.file"] == TRICKY
    assert outcome.step("return_args") == (0, OK)
    assert f["return_args.file"] == f"one two  three {TRICKY}"
    assert outcome.step("return_stdin") == (0, OK)
    assert f["return_stdin.file"] == TRICKY


def test_al_status_without_text_is_a_usage_error(outcome: Outcome) -> None:
    """al-status with no text prints the usage as JSON and exits 9."""
    assert outcome.step("status_usage") == (
        9,
        '{"ok":false,"error":"usage: al-status \\"<text>\\""}',
    )


def test_al_exit_writes_the_code_default_15_and_rejects_anything_but_0_to_255(
    outcome: Outcome,
) -> None:
    """al-exit writes 15 by default, or the given code and any reason after it; a code outside
    0-255 or not an integer is a usage error (exit 9) that leaves the file alone."""
    f = outcome.facts
    assert outcome.step("exit_default") == (0, OK)
    assert f["exit_default.file"] == "15"
    assert outcome.step("exit_reason") == (0, OK)
    assert f["exit_reason.file"] == f"3 {TRICKY}"
    assert outcome.step("exit_42") == (0, OK)
    assert f["exit_42.file"] == "42"
    for bad in ("256", "-1", "abc", "1.5", ""):
        rc, out = outcome.step(f"exit_bad[{bad}]")
        assert rc == 9, bad
        assert json.loads(out) == {"ok": False, "error": "usage: al-exit [code 0-255] [reason]"}
    assert f["exit_after_bad.file"] == "42"


def test_al_shutdown_without_a_gateway_signals_the_entry_and_records_the_reason(
    outcome: Outcome,
) -> None:
    """With no gateway al-shutdown still stops the run: the process in AL_ENTRY_PID gets
    SIGTERM at once; the reason (default "agent requested shutdown") is in the shutdown file."""
    f = outcome.facts
    assert outcome.step("shutdown") == (0, OK)
    code, seconds = map(int, f["shutdown.sleeper"].split())
    assert code == 128 + 15
    assert seconds < 5
    assert f["shutdown.file"] == TRICKY
    assert outcome.step("shutdown_default") == (0, OK)
    assert f["shutdown_default.file"] == "agent requested shutdown"


def test_al_shutdown_does_not_wait_long_for_a_gateway_that_does_not_answer(
    outcome: Outcome,
) -> None:
    """A gateway that takes the connection and never answers holds al-shutdown back at most
    about 3 s before the entry gets SIGTERM."""
    assert outcome.step("shutdown_hung") == (0, OK)
    code, seconds = map(int, outcome.facts["shutdown_hung.sleeper"].split())
    assert code == 128 + 15
    assert 2 <= seconds <= 5


def test_gateway_commands_without_a_gateway_do_not_pretend_success(outcome: Outcome) -> None:
    """rlock, runlock, rlock-heartbeat, al-subagent and al-subagent-wait print "no gateway"
    and exit 5 (al-subagent-check keeps its status shape); without an argument, exit 9."""
    for cmd in ("rlock", "runlock", "rlock-heartbeat"):
        assert outcome.step(f"{cmd}.none") == (5, NO_GATEWAY)
        rc, out = outcome.step(f"{cmd}.usage")
        assert (rc, json.loads(out)["error"]) == (9, f"usage: {cmd} <resource-key>")
    assert outcome.step("subagent.none") == (5, NO_GATEWAY)
    assert outcome.step("wait.none") == (5, NO_GATEWAY)
    assert outcome.step("check.none") == (5, '{"status":"error","errorMessage":"no gateway"}')
    for name in ("subagent.usage", "check.usage", "wait.usage", "wait.bad_timeout"):
        rc, out = outcome.step(name)
        assert rc == 9, name
        assert json.loads(out)["error"].startswith("usage: al-subagent"), name


def test_an_unreachable_gateway_exits_6_and_says_so(outcome: Outcome) -> None:
    """When nothing answers at GATEWAY_URL the lock commands exit 6 with a reason, and
    al-subagent-wait gives up at its timeout (exit 8) with no answer for the call."""
    for cmd in ("rlock", "runlock", "rlock-heartbeat"):
        assert outcome.step(f"{cmd}.dead") == (6, '{"ok":false,"reason":"gateway unreachable"}')
    assert outcome.step("wait.dead") == (8, '{"lost":null}')


def test_http_exit_maps_statuses_to_the_documented_codes(outcome: Outcome) -> None:
    """_http-exit, sourced: 200→0 409→1 404→2 403→3 400→4 503→5 000→6 502→10 504→11 500→12,
    anything else 7."""
    for code, expected in {**EXIT_CODES, "000": 6}.items():
        assert outcome.step(f"http_exit[{code}]")[0] == expected, code


def test_signal_commands_post_safe_json_to_the_gateway(outcome: Outcome) -> None:
    """With GATEWAY_URL and SHUTDOWN_SECRET set, al-rerun, al-status, al-return and al-shutdown
    POST exact JSON bodies (quotes, backslashes, newlines, unicode intact)."""
    gw = outcome.gateway
    assert outcome.step("g.rerun") == (0, OK)
    assert gw.bodies("/signals/rerun") == [{"secret": SECRET}]
    assert outcome.step("g.status") == (0, OK)
    assert gw.bodies("/signals/status") == [{"secret": SECRET, "text": TRICKY}]
    assert outcome.step("g.return") == (0, OK)
    assert gw.bodies("/signals/return") == [{"secret": SECRET, "value": TRICKY}]


def test_al_shutdown_with_a_gateway_posts_the_reason_prints_its_answer_and_signals(
    outcome: Outcome,
) -> None:
    """al-shutdown POSTs /shutdown {"secret","reason"}, prints the gateway's JSON and still
    sends SIGTERM to AL_ENTRY_PID."""
    assert outcome.gateway.bodies("/shutdown") == [{"secret": SECRET, "reason": TRICKY}]
    rc, out = outcome.step("g.shutdown")
    assert (rc, json.loads(out)) == (0, {"killed": True, "container": "fake"})
    assert outcome.facts["g.shutdown.sleeper"] == "143"


def test_lock_commands_post_the_key_and_exit_by_the_status(outcome: Outcome) -> None:
    """rlock POSTs /locks/acquire {"secret","resourceKey"}, prints the answer and exits by
    the status (200→0, 409→1, ... other→7); runlock and rlock-heartbeat use release and
    heartbeat."""
    gw = outcome.gateway
    for code, expected in EXIT_CODES.items():
        rc, out = outcome.step(f"lock[{code}]")
        assert rc == expected, code
        assert json.loads(out) == {"ok": code == 200, "resourceKey": f"status://{code}"}
    assert gw.bodies("/locks/acquire") == [
        {"secret": SECRET, "resourceKey": f"status://{code}"} for code in EXIT_CODES
    ]
    assert outcome.step("runlock")[0] == 0
    assert gw.bodies("/locks/release") == [{"secret": SECRET, "resourceKey": TRICKY}]
    assert outcome.step("heartbeat")[0] == 0
    assert gw.bodies("/locks/heartbeat") == [{"secret": SECRET, "resourceKey": TRICKY}]


def test_al_subagent_sends_its_stdin_as_context_exactly(outcome: Outcome) -> None:
    """al-subagent POSTs /calls {"secret","targetAgent","context"} with stdin as the context,
    quotes, backslashes, newlines and unicode intact; prints the call id; 409 exits 1."""
    rc, out = outcome.step("subagent")
    assert (rc, json.loads(out)) == (0, {"ok": True, "callId": "call-1"})
    assert outcome.gateway.bodies("/calls") == [
        {"secret": SECRET, "targetAgent": "reviewer", "context": TRICKY},
        {"secret": SECRET, "targetAgent": "status-409", "context": "ctx\n"},
    ]
    assert outcome.step("subagent.409")[0] == 1


def test_al_subagent_check_gets_the_call_with_the_secret_in_a_header(outcome: Outcome) -> None:
    """al-subagent-check GETs /calls/<id> (the id URL-encoded) with the run's secret in the
    X-AL-Secret header, never in the URL (process lists show URLs); prints the answer; an
    unknown call exits 2."""
    rc, out = outcome.step("check")
    assert (rc, json.loads(out)) == (0, {"status": "completed", "returnValue": "from done"})
    assert outcome.step("check.missing") == (2, '{"error": "call not found"}')
    assert outcome.step("check.odd")[0] == 0
    checks = [r for r in outcome.gateway.requests if r.method == "GET"]
    odd = [r for r in checks if unquote(r.path) == "/calls/a/b c?&#"]
    assert len(odd) == 1
    assert all(r.secret == SECRET for r in checks)
    assert all(r.query == {} for r in checks)


def test_al_subagent_wait_polls_until_done_or_exits_8_at_its_timeout(outcome: Outcome) -> None:
    """al-subagent-wait polls every 5 s until no call is pending or running and prints every
    call's answer; a call still running at --timeout exits 8."""
    rc, out = outcome.step("wait")
    assert rc == 0
    assert json.loads(out) == {
        "done": {"status": "completed", "returnValue": "from done"},
        "slow": {"status": "completed", "returnValue": "from slow"},
    }
    assert outcome.gateway.polls["slow"] == 2
    rc, out = outcome.step("wait.timeout")
    assert (rc, json.loads(out)) == (8, {"stuck": {"status": "running"}})


def test_setenv_persists_variables_between_bash_calls(outcome: Outcome) -> None:
    """setenv in one `bash -c` (after sourcing al-bash-init.sh) is seen by the next; it says
    how many it set; unless AL_ENV_FILE says otherwise the file is .al-env.sh in the run's
    work dir."""
    f = outcome.facts
    assert outcome.step("env.path")[1] == f["env.expected"]
    assert outcome.step("env.set") == (0, "set 2 variables")
    assert outcome.step("env.get") == (0, f"{TRICKY}|x y")
    assert outcome.step("env.one") == (0, "set 1 variable")
    assert f["env.file"].startswith("export GREETING='say \"hi\" \\ it'\\''s\nsecond line")


def test_setenv_rejects_bad_names_and_missing_values(outcome: Outcome) -> None:
    """Fewer than two arguments or a dangling name print the usage on stderr (exit 1); a bad
    name is named, and nothing of that call is set."""
    usage = "usage: setenv NAME value [NAME value ...]"
    assert outcome.step("env.usage") == (1, usage)
    assert outcome.step("env.odd") == (1, usage)
    assert outcome.step("env.bad") == (1, "setenv: invalid variable name: 9x")
    assert outcome.step("env.bad_get") == (0, "unset")


def test_standalone_setenv_explains_itself_and_still_saves_the_variable(
    outcome: Outcome,
) -> None:
    """`setenv` run as a command (not the bash function) says it cannot change its caller's
    environment, but the next bash call sees the variable."""
    rc, out = outcome.step("env.standalone")
    assert rc == 0
    assert out.startswith("set 1 variable\nsetenv: saved to ")
    assert "cannot set variables in the shell that ran it" in out
    assert outcome.step("env.later") == (0, TRICKY)
