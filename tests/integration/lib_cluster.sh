# Helpers for the cluster integration tests (sourced after lib.sh): start an
# admin node and members as real processes on 127.0.0.1, each with its own
# BYOAI_HOME, wait for them to see each other, stop them and check their
# logs for sanitizer reports.
#
#   cl_admin NAME [node options]       create the cluster in $T/NAME and start its node
#   cl_member NAME [node options]      invite, join and start a member in $T/NAME
#   cl_wait_alive NAME COUNT [SECS]    until NAME's node sees COUNT alive members
#   cl_status NAME                     `byoai cluster status --json` of NAME, in $T/NAME.status
#   cl_kill NAME [SIGNAL]              stop a node (TERM by default, waits for it)
#   cl <NAME> ARGS...                  run `byoai cluster ARGS` with NAME's home
#   api NAME PATH [JSON]               an HTTP request to NAME's byoai serve (POST when JSON is given)

CL_DPORT=${CL_DPORT:-$((20000 + ($$ * 7 + RANDOM) % 30000))}
CL_NODES=""
CL_OPTS=(--bind 127.0.0.1 --port 0 --discovery-port "$CL_DPORT" --heartbeat 0.2 --failure-timeout 2 --step-timeout 15 -t 1 --memory 1G)

cl() { local n=$1; shift; BYOAI_HOME="$T/$n" "$BYOAI_BIN" cluster "$@"; }

# Nodes run inside `byoai serve --cluster` (CL_DAEMON=serve, the default: the
# API server hosts the node and answers OpenAI requests for cluster models)
# or as `byoai cluster node` (CL_DAEMON=node). Options are given in the
# node's spelling and translated for serve.
CL_DAEMON=${CL_DAEMON:-serve}
serve_args() { # node options -> serve options, on stdout one per line
  while [ $# -gt 0 ]; do
    case "$1" in
      --bind) echo --cluster-bind; echo "$2"; shift ;;
      --port) echo --cluster-port; echo "$2"; shift ;;
      --discovery-port) echo --cluster-discovery-port; echo "$2"; shift ;;
      --heartbeat) echo --cluster-heartbeat; echo "$2"; shift ;;
      --failure-timeout) echo --cluster-failure-timeout; echo "$2"; shift ;;
      --step-timeout) echo --cluster-step-timeout; echo "$2"; shift ;;
      --memory) echo --cluster-memory; echo "$2"; shift ;;
      --peer) echo --cluster-peer; echo "$2"; shift ;;
      --name) echo --cluster-name; echo "$2"; shift ;;
      --test-link-delay-ms) echo --cluster-test-link-delay-ms; echo "$2"; shift ;;
      --no-discovery) echo --no-cluster-discovery ;;
      --model-file) # served locally as file-NAME; its layers serve the cluster too
        local b; b=$(basename "$2" .gguf | tr 'A-Z' 'a-z'); echo --model; echo "file-$b=$2"; shift ;;
      *) echo "$1" ;;
    esac
    shift
  done
}

cl_start() { # NAME [options]: start the node of an existing home
  local n=$1; shift
  rm -f "$T/$n.out" "$T/$n.port" "$T/$n.http" "$T/$n/cluster/run.json" # a restarted node must not find its old port
  if [ "$CL_DAEMON" = serve ]; then
    local args=()
    mapfile -t args < <(serve_args "${CL_OPTS[@]}" "$@")
    BYOAI_HOME="$T/$n" "$BYOAI_BIN" serve --port 0 --cluster "${args[@]}" >"$T/$n.out" 2>"$T/$n.log" &
  else
    BYOAI_HOME="$T/$n" "$BYOAI_BIN" cluster node "${CL_OPTS[@]}" "$@" >"$T/$n.out" 2>"$T/$n.log" &
  fi
  echo $! >"$T/$n.pid"
  CL_NODES="$CL_NODES $n"
  local i
  for i in $(seq 1 300); do
    if grep -q "listening on" "$T/$n.out" 2>/dev/null && [ -f "$T/$n/cluster/run.json" ]; then
      python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$T/$n/cluster/run.json" >"$T/$n.port"
      sed -n 's|.*listening on http://[^:]*:\([0-9]*\)/.*|\1|p' "$T/$n.out" | head -1 >"$T/$n.http"
      return 0
    fi
    kill -0 "$(cat "$T/$n.pid")" 2>/dev/null || { cat "$T/$n.log" >&2; fail "node $n exited at start"; }
    sleep 0.05
  done
  cat "$T/$n.log" >&2
  fail "node $n did not start"
}

cl_admin() {
  local n=$1; shift
  cl "$n" create "it-$n" >/dev/null || fail "cluster create"
  cl_start "$n" "$@"
  CL_ADMIN=$n
}

cl_member() {
  local n=$1; shift
  local code
  code=$(cl "$CL_ADMIN" invite --address "127.0.0.1:$(cat "$T/$CL_ADMIN.port")" 2>/dev/null) || fail "invite"
  cl "$n" join "$code" >/dev/null || fail "join for $n"
  cl_start "$n" "$@"
}

cl_status() { cl "$1" status --json >"$T/$1.status" || fail "status of $1"; }

cl_alive() { cl_status "$1"; python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["alive"])' "$T/$1.status"; }

cl_wait_alive() {
  local n=$1 want=$2 secs=${3:-15} i
  for i in $(seq 1 $((secs * 10))); do
    [ "$(cl_alive "$n")" = "$want" ] && return 0
    sleep 0.1
  done
  cat "$T/$n.status" >&2
  fail "node $n sees $(cl_alive "$n") alive members, wanted $want within ${secs}s"
}

cl_kill() {
  local n=$1 sig=${2:-TERM} pid
  pid=$(cat "$T/$n.pid")
  kill -"$sig" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  CL_NODES=$(echo "$CL_NODES" | sed "s/ $n\b//")
  [ "$sig" = KILL ] || cl_check_log "$n"
}

cl_check_log() {
  if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer" "$T/$1.log"; then
    cat "$T/$1.log" >&2
    fail "sanitizer report in the log of node $1"
  fi
}

cl_cleanup() {
  local n
  for n in $CL_NODES; do kill -TERM "$(cat "$T/$n.pid")" 2>/dev/null || true; done
  for n in $CL_NODES; do wait "$(cat "$T/$n.pid")" 2>/dev/null || true; done
  # a test that failed keeps its evidence on stderr (rc: the exit status, from lib.sh's cleanup)
  if [ "${rc:-0}" != 0 ]; then
    for n in $CL_NODES; do echo "--- log of $n"; tail -20 "$T/$n.log"; done >&2
  fi
  for n in $CL_NODES; do
    if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$T/$n.log" 2>/dev/null; then
      cat "$T/$n.log" >&2; echo "FAIL: sanitizer report in the log of node $n" >&2; return 1
    fi
  done
}
CLEANUP_EXTRA='cl_cleanup || rc=1'

# token ids of a greedy single-machine run: byoai run --logprobs 0
single_ids() { # MODEL PROMPT N
  "$BYOAI_BIN" run "$1" -p "$2" -n "$3" --temp 0 --logprobs 0 -t 1 2>/dev/null |
    python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["id"]) for l in sys.stdin))'
}
# token ids of a cluster run: byoai cluster run --json
cluster_ids() { # NODE NAME PROMPT N [more args]
  local n=$1 m=$2 p=$3 k=$4; shift 4
  cl "$n" run "$m" -p "$p" -n "$k" --temp 0 --json "$@" 2>"$T/run.err" |
    python3 -c '
import json,sys
ids=[]; done=None
for l in sys.stdin:
    d=json.loads(l)
    if "token" in d: ids.append(str(d["token"]))
    if d.get("done"): done=d
if not done or not done.get("ok"): sys.exit(1)
print(" ".join(ids))'
}
# expect_exit with NAME's home: cl_expect NAME CODE CMD...
cl_expect() {
  local n=$1 old=$BYOAI_HOME
  shift
  export BYOAI_HOME="$T/$n"
  expect_exit "$@"
  export BYOAI_HOME="$old"
}

# an HTTP request to a node's byoai serve: api NAME PATH [JSON BODY]
api() {
  local n=$1 path=$2
  if [ $# -ge 3 ]; then
    curl -sS --max-time 120 "http://127.0.0.1:$(cat "$T/$n.http")$path" -H 'Content-Type: application/json' -d "$3"
  else
    curl -sS --max-time 30 "http://127.0.0.1:$(cat "$T/$n.http")$path"
  fi
}
# wait until NAME's /v1/models lists MODEL
api_wait_model() {
  local i
  for i in $(seq 1 100); do
    api "$1" /v1/models 2>/dev/null | grep -q "\"id\":\"$2\"" && return 0
    sleep 0.1
  done
  fail "node $1 does not list model $2: $(api "$1" /v1/models); its view: $(cl "$1" status --json | python3 -c 'import json,sys; print([(m["node_id"][:8], m["state"], m.get("info", {}).get("deployed")) for m in json.load(sys.stdin)["members"]])')"
}
