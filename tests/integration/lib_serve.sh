# Helpers for tests that run `byoai serve` (sourced after lib.sh).
#   start_server ARGS...   start it on a free port of 127.0.0.1; sets URL, PORT, SERVER_PID
#   stop_server            SIGTERM, wait, and check it exited 0 (and ASan found nothing)
#   http METHOD PATH [BODY] [CURL ARGS...]   body to $T/body, status to stdout (BODY: JSON, @FILE
#                          or ""; curl args start with -)
SERVER_PID=""
start_server() {
  local log="$T/server.log"
  rm -f "$T/server.out" # a restarted server must not be found at its old port
  "$BYOAI_BIN" serve "$@" --port 0 >"$T/server.out" 2>"$log" &
  SERVER_PID=$!
  if [ -z "${SERVE_CLEANUP:-}" ]; then # once, after any cleanup set before
    SERVE_CLEANUP=1
    CLEANUP_EXTRA="${CLEANUP_EXTRA:+$CLEANUP_EXTRA; }"'[ -n "$SERVER_PID" ] && kill -9 $SERVER_PID 2>/dev/null; true'
  fi
  for _ in $(seq 1 200); do
    PORT=$(grep -oE 'http://127\.0\.0\.1:[0-9]+/' "$T/server.out" 2>/dev/null | grep -oE '[0-9]+/$' | tr -d / || true)
    [ -n "$PORT" ] && break
    kill -0 $SERVER_PID 2>/dev/null || { cat "$log" >&2; fail "byoai serve exited at start"; }
    sleep 0.05
  done
  [ -n "$PORT" ] || { cat "$log" >&2; fail "byoai serve did not print its address"; }
  URL="http://127.0.0.1:$PORT"
}
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM $SERVER_PID
  local rc=0
  wait $SERVER_PID || rc=$?
  SERVER_PID=""
  if [ $rc != 0 ] || grep -q "ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer" "$T/server.log"; then
    cat "$T/server.log" >&2
    fail "byoai serve exited with $rc or reported a sanitizer error"
  fi
}
http() {
  local method=$1 path=$2; shift 2
  local args=(-s -o "$T/body" -w '%{http_code}' -X "$method" --max-time 60)
  if [ $# -gt 0 ] && [[ "$1" != -* ]]; then args+=(-H 'Content-Type: application/json' --data-binary "$1"); shift; fi
  curl "${args[@]}" "$@" "$URL$path"
}
# expect_status WANT METHOD PATH [BODY] [CURL ARGS]; expect_error STATUS
# PATTERN METHOD PATH ...: also checks OpenAI's error shape and the message
expect_status() {
  local want=$1; shift
  local got; got=$(http "$@")
  [ "$got" = "$want" ] || fail "$1 $2: status $got, want $want: $(head -c 400 "$T/body")"
}
expect_error() {
  local st=$1 pat=$2; shift 2
  expect_status "$st" "$@"
  python3 - "$T/body" "$pat" <<'PY' || fail "$2 $3: error body: $(head -c 400 "$T/body")"
import json, re, sys
d = json.load(open(sys.argv[1]))
e = d["error"]
assert set(e) == {"message", "type", "param", "code"}, e
assert re.search(sys.argv[2], e["message"]), e["message"]
PY
}
# require_node_modules: the npm packages the node tests use (installed by `make test`)
require_node_modules() {
  command -v node >/dev/null || fail "node is not installed: run 'bash scripts/install-deps.sh --e2e' (or 'make test')"
  [ -d "$BYOAI_SOURCE/tests/node/node_modules/openai" ] && [ -d "$BYOAI_SOURCE/tests/node/node_modules/playwright-core" ] ||
    fail "the test npm packages are missing: run 'npm ci --prefix tests/node' (or 'make test')"
}
