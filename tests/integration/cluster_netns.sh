#!/usr/bin/env bash
# Three `byoai serve --cluster` processes in their own network namespaces,
# joined by veth pairs to a bridge, with 10 ms of link latency: they find
# each other by broadcast within seconds, run a model together with the
# single-machine output (also through the OpenAI API), and survive kill -9
# of a node mid-generation.
#
# Needs root and iproute2 (CI runs as root). Latency comes from `tc qdisc
# ... netem delay 10ms` on every node's interface; where the kernel lacks
# sch_netem the test says so and adds the same 10 ms in user space instead
# (--test-link-delay-ms: every received frame is held 10 ms), so it still
# runs and still checks everything but the kernel's queueing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

# registered by tests/tests.cmake only when the build runs as root
[ "$(id -u)" = 0 ] || fail "network namespaces need root: run this test as root (CI does)"
command -v ip >/dev/null || fail "iproute2 (ip) is missing: apt-get install iproute2"

S=$$
HUB="bxh$S"
NS=()
CLEANUP_EXTRA='for n in "${NS[@]}" "$HUB"; do ip netns del "$n" 2>/dev/null; done; '"$CLEANUP_EXTRA"
ip netns add "$HUB" || fail "cannot create a network namespace (ip netns add)"
ip -n "$HUB" link add br0 type bridge
ip -n "$HUB" link set br0 up
i=0
for n in a b c; do
  i=$((i + 1))
  ns="bx$n$S"
  ip netns add "$ns"
  NS+=("$ns")
  ip link add eth1 netns "$ns" type veth peer name "p$n$S" netns "$HUB"
  ip -n "$HUB" link set "p$n$S" master br0 up
  ip -n "$ns" addr add "10.77.0.$i/24" brd + dev eth1
  ip -n "$ns" link set eth1 up
  ip -n "$ns" link set lo up
done
DELAY=()
if ip netns exec "bxa$S" tc qdisc add dev eth1 root netem delay 10ms 2>"$T/tc.err"; then
  for n in b c; do ip netns exec "bx$n$S" tc qdisc add dev eth1 root netem delay 10ms; done
  echo "   (link latency: tc netem delay 10ms on every node)"
else
  echo "NOTE: tc netem is unavailable here ($(cat "$T/tc.err")): the kernel lacks sch_netem."
  echo "NOTE: adding the 10 ms of latency in user space instead (--test-link-delay-ms 10 on every node)."
  DELAY=(--test-link-delay-ms 10)
fi

# nodes listen on the default ports inside their namespaces and announce by broadcast
CL_OPTS=(--heartbeat 0.2 --failure-timeout 2 --step-timeout 15 -t 1 --memory 1G "${DELAY[@]}")
ns_start() { # NAME [options]: start NAME's node (byoai serve --cluster by default) inside its namespace
  local n=$1; shift
  rm -f "$T/$n.out" "$T/$n/cluster/run.json"
  if [ "$CL_DAEMON" = serve ]; then
    local args=()
    mapfile -t args < <(serve_args "${CL_OPTS[@]}" "$@")
    BYOAI_HOME="$T/$n" ip netns exec "bx$n$S" "$BYOAI_BIN" serve --port 8080 --cluster "${args[@]}" >"$T/$n.out" 2>"$T/$n.log" &
  else
    BYOAI_HOME="$T/$n" ip netns exec "bx$n$S" "$BYOAI_BIN" cluster node "${CL_OPTS[@]}" "$@" >"$T/$n.out" 2>"$T/$n.log" &
  fi
  echo $! >"$T/$n.pid"
  CL_NODES="$CL_NODES $n"
  local i
  for i in $(seq 1 300); do grep -q "listening on" "$T/$n.out" 2>/dev/null && return 0; sleep 0.05; done
  cat "$T/$n.log" >&2
  fail "node $n did not start"
}

SYNTH="$T/synth.gguf"
"$BYOAI_BUILD/make_tinyllama" "$SYNTH" "$BYOAI_SHARED" --layers 12 --dim 64 --ff 128 --heads 4 --kv-heads 2 ||
  fail "cannot make the synthetic model"
cl a create netns >/dev/null
ns_start a
for n in b c; do
  code=$(cl a invite --address 10.77.0.1:47475 2>/dev/null)
  BYOAI_HOME="$T/$n" ip netns exec "bx$n$S" "$BYOAI_BIN" cluster join "$code" >/dev/null || fail "join $n across namespaces"
  python3 - "$T/$n/cluster/cluster.json" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["peers"] = []; json.dump(d, open(p, "w"))
PY
done
t0=$(date +%s.%N)
ns_start b --model-file "$SYNTH"
ns_start c --model-file "$SYNTH"
cl_wait_alive a 3 10
cl_wait_alive b 3 10
cl_wait_alive c 3 10
secs=$(python3 -c "import time,sys; print('%.1f' % (time.time() - float(sys.argv[1])))" "$t0")
cl_status b
grep -q '"address": "10.77.0.1"' "$T/b.status" || fail "b does not reach a by its namespace address"
pass "discovery by broadcast across namespaces within ${secs}s"

cl a deploy synth="$SYNTH" --ctx 512 --min-nodes 3 >/dev/null || fail "deploy across namespaces"
cl_status a
json_check "$T/a.status" 'assert len(d["deployments"][0]["stages"]) == 3'
PROMPT="Once upon a time"
N=150
want=$(single_ids "$SYNTH" "$PROMPT" $N)
got=$(cluster_ids a synth "$PROMPT" $N) || fail "run across namespaces: $(cat "$T/run.err")"
[ "$want" = "$got" ] || fail "output across namespaces differs"
rtt=$(python3 -c 'import json,sys; print("%.1f" % max(m.get("rtt_ms", 0) for m in json.load(open(sys.argv[1]))["members"]))' "$T/a.status")
echo "   ($(grep -o 'generation.*tokens/s' "$T/run.err"); heartbeat round trip up to ${rtt} ms)"
if [ "$CL_DAEMON" = serve ]; then
  "$BYOAI_BIN" run "$SYNTH" -p "$PROMPT" -n 60 --temp 0 -t 1 >"$T/single.txt" 2>/dev/null
  ip netns exec "bxb$S" curl -sS --max-time 60 http://127.0.0.1:8080/v1/completions -H 'Content-Type: application/json' \
    -d "{\"model\": \"synth\", \"prompt\": \"$PROMPT\", \"max_tokens\": 60, \"temperature\": 0}" >"$T/api.json" ||
    fail "the API inside namespace b"
  python3 - "$T/api.json" "$T/single.txt" <<'PY' || fail "the API answer across namespaces differs: $(cat "$T/api.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert "Once upon a time" + d["choices"][0]["text"] + "\n" == open(sys.argv[2]).read()
PY
fi
pass "3 nodes across namespaces with 10 ms links: greedy output equals one machine"

# kill -9 the node of the middle stage while a completion runs
mid_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["deployments"][0]["stages"][1]["node_id"])' "$T/a.status")
mid=""
for n in b c; do
  cl_status $n
  [ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_id"])' "$T/$n.status")" = "$mid_id" ] && mid=$n
done
[ -n "$mid" ] || fail "middle stage not on b or c"
cl a run synth -p "$PROMPT" -n $N --temp 0 --json >"$T/bg.out" 2>"$T/bg.err" &
bg=$!
for i in $(seq 1 200); do [ "$(grep -c '"token"' "$T/bg.out" 2>/dev/null || true)" -ge 30 ] && break; sleep 0.05; done
cl_kill "$mid" KILL
for i in $(seq 1 600); do kill -0 $bg 2>/dev/null || break; sleep 0.1; done
kill -0 $bg 2>/dev/null && { kill -9 $bg; fail "the completion hung"; }
wait $bg || fail "the completion failed after kill -9: $(cat "$T/bg.err")"
python3 - "$T/bg.out" "$want" <<'PY' || fail "wrong tokens after failover across namespaces"
import json, sys
ids, done = [], None
for l in open(sys.argv[1]):
    d = json.loads(l)
    if "token" in d: ids.append(str(d["token"]))
    if d.get("done"): done = d
assert done and done["ok"] and done["failovers"] >= 1, done
assert ids == sys.argv[2].split()
print("   (%d failover(s), stall %.2f s)" % (done["failovers"], done["stall_seconds"]))
PY
pass "kill -9 of a node across namespaces: the completion finishes with the same tokens"
for n in $CL_NODES; do cl_kill $n; done
