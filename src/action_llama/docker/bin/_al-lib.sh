# _al-lib.sh: sourced by the al-* helpers, not run. JSON is only ever built by python3's
# json module (any text survives: quotes, backslashes, newlines, unicode); the gateway is
# called with curl (connect timeout 5 s, 10 s in all).
#
# Environment: AL_SIGNAL_DIR (the run's signal files), GATEWAY_URL and SHUTDOWN_SECRET (the
# gateway and this run's secret; both unset when the run has no gateway).
# shellcheck shell=sh

. "$(dirname "$0")/_http-exit"

_al_nl='
'

# al_json [KEY VALUE | --stdin KEY | --secret]...: print a JSON object of strings, in order.
# --stdin KEY takes the value from standard input; --secret adds "secret": $SHUTDOWN_SECRET.
al_json() {
  python3 -c '
import json, os, sys
def text(s): return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
body, args = {}, iter(sys.argv[1:])
for key in args:
    if key == "--secret":
        body["secret"] = text(os.environ.get("SHUTDOWN_SECRET", ""))
    elif key == "--stdin":
        body[next(args)] = sys.stdin.buffer.read().decode("utf-8", "replace")
    else:
        body[key] = text(next(args))
print(json.dumps(body, separators=(",", ":")))
' "$@"
}

# al_urlencode TEXT: TEXT made safe for a URL path segment or query value.
al_urlencode() {
  python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"
}

# al_post PATH JSON [SECONDS] / al_get PATH (with this run's secret): call the gateway, for at most SECONDS (10; the
# connection gets 5 of them). Sets AL_STATUS (the HTTP status, 000 when nothing answered)
# and AL_BODY (the response body).
al_post() {
  _al_out=$(printf '%s' "$2" | curl -s -g --connect-timeout "${3:-5}" --max-time "${3:-10}" \
    -X POST -H 'Content-Type: application/json' --data-binary @- -w '\n%{http_code}' \
    "${GATEWAY_URL%/}$1" 2>/dev/null)
  _al_response
}

# The secret goes in a header read from stdin (printf is a shell builtin): never in an argv,
# where process lists would show it.
al_get() {
  _al_out=$(printf 'X-AL-Secret: %s\n' "${SHUTDOWN_SECRET-}" | curl -s -g --connect-timeout 5 \
    --max-time 10 -H @- -w '\n%{http_code}' "${GATEWAY_URL%/}$1" 2>/dev/null)
  _al_response
}

_al_response() {
  AL_STATUS=${_al_out##*"$_al_nl"}
  AL_BODY=${_al_out%"$_al_nl"*}
  case $AL_STATUS in
    [0-9][0-9][0-9]) ;;
    *) AL_STATUS=000 AL_BODY= ;;  # curl missing or cut short
  esac
}

# al_print_response: print the gateway's answer, or say plainly why there is none.
al_print_response() {
  if [ -n "$AL_BODY" ]; then
    printf '%s\n' "$AL_BODY"
  elif [ "$AL_STATUS" = 000 ]; then
    echo '{"ok":false,"reason":"gateway unreachable"}'
  elif [ "$AL_STATUS" = 200 ]; then
    echo '{"ok":true}'
  else
    printf '{"ok":false,"reason":"HTTP %s"}\n' "$AL_STATUS"  # three digits, checked above
  fi
}

# al_need_gateway: with no GATEWAY_URL, say so and exit 5 (never pretend the call worked).
al_need_gateway() {
  if [ -z "${GATEWAY_URL-}" ]; then
    echo '{"ok":false,"reason":"no gateway"}'
    exit 5
  fi
}

# al_has_secret_gateway: true when both the gateway and this run's secret are known.
al_has_secret_gateway() {
  [ -n "${GATEWAY_URL-}" ] && [ -n "${SHUTDOWN_SECRET-}" ]
}

# al_signal NAME VALUE: write VALUE (as is, no newline added) to $AL_SIGNAL_DIR/NAME.
al_signal() {
  if [ -z "${AL_SIGNAL_DIR-}" ]; then
    al_error "AL_SIGNAL_DIR is not set: al-* commands work inside an agent run"
    exit 9
  fi
  if ! { mkdir -p "$AL_SIGNAL_DIR" && printf '%s' "$2" >"$AL_SIGNAL_DIR/$1"; } 2>/dev/null; then
    al_error "cannot write $AL_SIGNAL_DIR/$1"
    exit 1
  fi
}

# al_error MESSAGE: print {"ok":false,"error":MESSAGE}. al_usage TEXT: "usage: TEXT", exit 9.
al_error() {
  python3 -c 'import json, sys; print(json.dumps({"ok": False, "error": sys.argv[1]}, separators=(",", ":")))' "$1"
}

al_usage() {
  al_error "usage: $1"
  exit 9
}

# al_lock ACTION COMMAND KEY: POST /locks/ACTION {"secret","resourceKey"}; print the answer;
# exit by the _http-exit table.
al_lock() {
  [ -n "${3-}" ] || al_usage "$2 <resource-key>"
  al_need_gateway
  al_post "/locks/$1" "$(al_json --secret resourceKey "$3")"
  al_print_response
  http_exit "$AL_STATUS"
}
