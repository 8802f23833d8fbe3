# Shared helpers for integration tests (sourced). Each test runs in its own
# temporary directory, removed on exit.
set -euo pipefail
: "${BYOAI_BIN:?BYOAI_BIN must point at the byoai binary}"
: "${BYOAI_SHARED:?BYOAI_SHARED must point at ../shared}"
STORIES="$BYOAI_SHARED/models/stories260K.gguf"
T=$(mktemp -d "${TMPDIR:-/tmp}/byoai-it-XXXXXX")
cleanup() { local rc=$?; [ -n "${CLEANUP_EXTRA:-}" ] && eval "$CLEANUP_EXTRA"; rm -rf "$T"; exit $rc; }
trap cleanup EXIT
export BYOAI_HOME="$T/home"
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok - $*"; }
# expect_exit CODE CMD...: run, capture stdout/stderr in $T/out, $T/err
expect_exit() {
  local want=$1; shift
  set +e; "$@" >"$T/out" 2>"$T/err"; local got=$?; set -e
  [ "$got" = "$want" ] || { echo "--- stdout"; cat "$T/out"; echo "--- stderr"; cat "$T/err"; fail "exit $got (want $want): $*"; }
}
json_check() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); $2" "$1" || fail "json check '$2' on $1"; }
# The known greedy story from ../shared/models/README.md
expected_story() {
  python3 - "$BYOAI_SHARED/models/README.md" <<'PY'
import sys
t = open(sys.argv[1]).read()
k = t.index("Known greedy output")
a = t.index("```\n", k) + 4
b = t.index("\n```", a)
sys.stdout.write(t[a:b] + "\n")
PY
}
