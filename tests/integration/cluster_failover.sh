#!/usr/bin/env bash
# A node lost mid-generation: killed (kill -9) or frozen (SIGSTOP, a
# partition: no FIN, only silence). The coordinator re-plans on the nodes
# left, rebuilds the KV caches from the token history and the completion
# finishes with exactly the single-machine tokens. When the nodes left
# cannot hold the model, the client gets a clear error quickly, never a hang.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

SYNTH="$T/synth.gguf"
"$BYOAI_BUILD/make_tinyllama" "$SYNTH" "$BYOAI_SHARED" --layers 12 --dim 64 --ff 128 --heads 4 --kv-heads 2 ||
  fail "cannot make the synthetic model"
PROMPT="Once upon a time"
N=200
want=$(single_ids "$SYNTH" "$PROMPT" $N)
[ "$(echo "$want" | wc -w)" = $N ] || fail "reference run too short"
# 10 ms per received frame on every node: a token takes a few hops, so the
# completion lasts long enough to lose a node in the middle of it
DELAY=(--test-link-delay-ms 10)

cl_admin a "${DELAY[@]}"
cl_member b "${DELAY[@]}" --model-file "$SYNTH"
cl_member c "${DELAY[@]}" --model-file "$SYNTH"
cl_wait_alive a 3
cl a deploy synth="$SYNTH" --ctx 512 --min-nodes 3 >/dev/null || fail "deploy"

node_of_stage() { # INDEX: the name (a, b, c, e) of the node running that stage of model synth
  cl_status a
  local id n
  id=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print([x for x in d["deployments"] if x["model"] == "synth"][0]["stages"][int(sys.argv[2])]["node_id"])' "$T/a.status" "$1")
  for n in a b c; do
    [ -f "$T/$n.pid" ] && kill -0 "$(cat "$T/$n.pid")" 2>/dev/null || continue
    cl_status $n
    [ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_id"])' "$T/$n.status")" = "$id" ] && { echo $n; return; }
  done
}

# start a completion in the background; wait until it is well under way
run_bg() {
  cl a run synth -p "$PROMPT" -n $N --temp 0 --json >"$T/bg.out" 2>"$T/bg.err" &
  echo $! >"$T/bg.pid"
  local i
  for i in $(seq 1 200); do
    [ "$(grep -c '"token"' "$T/bg.out" 2>/dev/null || true)" -ge 30 ] && return 0
    sleep 0.05
  done
  fail "the completion did not get going: $(cat "$T/bg.err")"
}

finish_bg() { # max seconds: the completion must end by then, correctly
  local secs=$1 i pid
  pid=$(cat "$T/bg.pid")
  for i in $(seq 1 $((secs * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fail "the completion hung (more than ${secs}s)"; fi
  wait "$pid" || fail "the completion failed: $(cat "$T/bg.err"; tail -3 "$T/bg.out")"
  python3 - "$T/bg.out" "$want" <<'PY' || fail "wrong tokens after failover"
import json, sys
ids, done = [], None
for l in open(sys.argv[1]):
    d = json.loads(l)
    if "token" in d: ids.append(str(d["token"]))
    if d.get("done"): done = d
want = sys.argv[2].split()
assert done and done["ok"], done
assert done["failovers"] >= 1, done
assert ids == want, "first difference at %d" % next(i for i, (a, b) in enumerate(zip(ids + ["-"], want)) if a != b)
print("   (%d failover(s), %.2f s stall, %.2f s total)" % (done["failovers"], done["stall_seconds"], done["gen_seconds"]))
PY
}

# ---- kill -9 the middle stage's node ------------------------------------------------------
mid=$(node_of_stage 1)
[ -n "$mid" ] && [ "$mid" != a ] || fail "no middle stage found"
run_bg
cl_kill "$mid" KILL
finish_bg 60
cl_status a
json_check "$T/a.status" 'dep=[x for x in d["deployments"] if x["model"]=="synth"][0]; assert dep["failovers"]>=1 and len(dep["stages"])==2, dep'
grep -q "re-planned on 2 node(s)" "$T/a.status" || fail "no re-plan event"
pass "kill -9 of a node mid-generation: the completion finishes with the same tokens"

# ---- a partition: the last other node freezes (no FIN, only silence) ---------------------------
other=$(node_of_stage 1)
[ -n "$other" ] && [ "$other" != a ] || fail "no second stage found"
run_bg
kill -STOP "$(cat "$T/$other.pid")"
t0=$(date +%s)
finish_bg 60
t1=$(date +%s)
echo "   (frozen node detected and replaced within $((t1 - t0)) s)"
kill -CONT "$(cat "$T/$other.pid")" 2>/dev/null || true
cl_kill "$other" KILL
pass "a frozen node (partition) is bounded by the failure timeout; the completion finishes"

# and alone, the coordinator keeps serving
got=$(cluster_ids a synth "$PROMPT" 50) || fail "run alone: $(cat "$T/run.err")"
[ "$got" = "$(echo "$want" | cut -d' ' -f1-50)" ] || fail "coordinator alone differs"
cl_kill a

# kill_mid_stream PID FILE NODE: once the stream PID writes to FILE has 30
# events, kill -9 NODE; the stream must then end by itself, successfully
kill_mid_stream() {
  local pid=$1 file=$2 node=$3 i
  for i in $(seq 1 200); do [ "$(grep -c '^data: {' "$file" 2>/dev/null || true)" -ge 30 ] && break; sleep 0.05; done
  cl_kill "$node" KILL
  for i in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; fail "the stream hung after kill -9 of $node"; }
  wait "$pid" || fail "the stream failed after kill -9 of $node"
}

# last_stage_node MODEL NODES...: the name of the running node that runs
# MODEL's last stage, in f's view
last_stage_node() {
  local model=$1 victim n
  shift
  cl_status f
  victim=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print([x for x in d["deployments"] if x["model"] == sys.argv[2]][0]["stages"][-1]["node_id"])' "$T/f.status" "$model")
  for n in "$@"; do
    kill -0 "$(cat "$T/$n.pid")" 2>/dev/null || continue
    [ "$(cl $n status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])')" = "$victim" ] && { echo $n; return; }
  done
}

# ---- the same through the OpenAI API of byoai serve: a stream survives kill -9 -----------------------
if [ "$CL_DAEMON" = serve ]; then
  cl_admin f "${DELAY[@]}"
  cl_member g "${DELAY[@]}" --model-file "$SYNTH"
  cl_member h "${DELAY[@]}" --model-file "$SYNTH"
  cl_wait_alive f 3
  cl f deploy synth2="$SYNTH" --ctx 512 --min-nodes 3 >/dev/null || fail "deploy synth2"
  vname=$(last_stage_node synth2 g h)
  [ -n "$vname" ] || fail "no last stage found for synth2"
  "$BYOAI_BIN" run "$SYNTH" -p "$PROMPT" -n $N --temp 0 -t 1 >"$T/single.txt" 2>/dev/null
  curl -sSN --max-time 120 "http://127.0.0.1:$(cat "$T/f.http")/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"model\": \"synth2\", \"prompt\": \"$PROMPT\", \"max_tokens\": $N, \"temperature\": 0, \"stream\": true}" >"$T/sse.txt" &
  kill_mid_stream $! "$T/sse.txt" "$vname"
  python3 - "$T/sse.txt" "$T/single.txt" <<'PY' || fail "the streamed answer after kill -9 differs from one machine"
import json, sys
text, done, errors = "", False, []
for line in open(sys.argv[1]):
    if not line.startswith("data: "): continue
    if line.strip() == "data: [DONE]": done = True; continue
    d = json.loads(line[6:])
    if "error" in d: errors.append(d)
    elif d["choices"]: text += d["choices"][0]["text"]
assert done and not errors, errors
assert "Once upon a time" + text + "\n" == open(sys.argv[2]).read()
PY
  pass "kill -9 of the last stage while byoai serve streams: no client-visible error, the same text"

  # JSON mode: the last stage samples under the JSON filter; the stage that
  # takes over rebuilds the filter from the generated tokens, so the answer
  # after kill -9 equals the answer without a failure, and is one object
  cl_member i "${DELAY[@]}" --model-file "$STORIES"
  cl_member j "${DELAY[@]}" --model-file "$STORIES"
  cl f deploy stj="$STORIES" --ctx 128 --min-nodes 3 >/dev/null || fail "deploy stj"
  json_req() { # STREAM
    curl -sSN --max-time 120 "http://127.0.0.1:$(cat "$T/f.http")/v1/chat/completions" -H 'Content-Type: application/json' \
      -d '{"model": "stj", "messages": [{"role": "user", "content": "Tell me about Lily as JSON"}], "max_tokens": 200,
           "temperature": 0, "response_format": {"type": "json_object"}, "stream": '"$1"'}'
  }
  json_req false >"$T/json-ref.json"
  json_check "$T/json-ref.json" 'c=d["choices"][0]["message"]["content"]; assert isinstance(json.loads(c), dict) and d["usage"]["completion_tokens"] >= 60, d'
  vname=$(last_stage_node stj g h i j)
  [ -n "$vname" ] || fail "no last stage found for stj"
  json_req true >"$T/json-sse.txt" &
  kill_mid_stream $! "$T/json-sse.txt" "$vname"
  python3 - "$T/json-sse.txt" "$T/json-ref.json" <<'PY' || fail "the JSON answer after kill -9 differs from the one without a failure"
import json, sys
text, done, errors = "", False, []
for line in open(sys.argv[1]):
    if not line.startswith("data: "): continue
    if line.strip() == "data: [DONE]": done = True; continue
    d = json.loads(line[6:])
    if "error" in d: errors.append(d)
    elif d["choices"]: text += d["choices"][0]["delta"].get("content") or ""
assert done and not errors, errors
ref = json.load(open(sys.argv[2]))["choices"][0]["message"]["content"]
assert text == ref, (text, ref)
assert isinstance(json.loads(text), dict)
PY
  cl_status f
  json_check "$T/f.status" 'dep=[x for x in d["deployments"] if x["model"]=="stj"][0]; assert dep["failovers"]>=1, dep'
  pass "JSON mode survives kill -9 of the last stage: the same object as without a failure"

  # an embedding whose last stage is lost while it pools: one row per step
  # (--batch 1) with 10 ms per hop makes the prompt take a while
  cl f deploy ste="$STORIES" --ctx 128 --batch 1 --min-nodes 3 >/dev/null || fail "deploy ste"
  emb_body='{"model": "ste", "input": "'"$(python3 -c 'print(" ".join(["the little dog ran to the park"] * 10))')"'"}'
  t0=$(date +%s.%N)
  curl -sS --max-time 120 "http://127.0.0.1:$(cat "$T/f.http")/v1/embeddings" -H 'Content-Type: application/json' \
    -d "$emb_body" >"$T/emb-ref.json"
  ref_s=$(python3 -c "import time,sys; print('%.2f' % (time.time() - float(sys.argv[1])))" "$t0")
  echo "   (the embedding takes ${ref_s} s without a failure; the last stage is killed after a third of that)"
  json_check "$T/emb-ref.json" 'assert len(d["data"][0]["embedding"]) == 64 and d["usage"]["prompt_tokens"] > 60, d.get("usage")'
  vname=$(last_stage_node ste g h i j)
  [ -n "$vname" ] || fail "no last stage found for ste"
  curl -sS --max-time 120 "http://127.0.0.1:$(cat "$T/f.http")/v1/embeddings" -H 'Content-Type: application/json' \
    -d "$emb_body" >"$T/emb-fo.json" &
  emb=$!
  sleep "$(python3 -c "print(float('$ref_s') / 3)")"
  cl_kill "$vname" KILL
  wait $emb || fail "the embedding request failed after kill -9"
  python3 - "$T/emb-fo.json" "$T/emb-ref.json" <<'PY' || fail "the embedding after kill -9 differs: $(head -c 300 "$T/emb-fo.json")"
import json, sys
got, want = (json.load(open(f)) for f in sys.argv[1:3])
a, b = got["data"][0]["embedding"], want["data"][0]["embedding"]
assert len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < 1e-5
PY
  cl_status f
  json_check "$T/f.status" 'dep=[x for x in d["deployments"] if x["model"]=="ste"][0]; assert dep["failovers"]>=1, ("no failover: the kill came too late", dep)'
  pass "an embedding survives kill -9 of its last stage: the same vector"
  for n in g h i j f; do kill -0 "$(cat "$T/$n.pid")" 2>/dev/null && cl_kill $n; done
fi

# ---- no room left: a clear error, not a hang ---------------------------------------------------
# two nodes offering 9 MiB each; the model with its KV cache needs about 13
CL_OPTS+=(--memory 9M)
rm -rf "$T/a"
cl_admin a "${DELAY[@]}"
cl_member d "${DELAY[@]}" --model-file "$SYNTH"
cl_wait_alive a 2
cl a deploy synth="$SYNTH" --ctx 512 --min-nodes 2 >/dev/null || fail "deploy on two small nodes"
cl_status a
json_check "$T/a.status" 'assert len(d["deployments"][0]["stages"])==2'
cl a run synth -p "$PROMPT" -n $N --temp 0 --json >"$T/bg.out" 2>"$T/bg.err" &
bg=$!
for i in $(seq 1 200); do [ "$(grep -c '"token"' "$T/bg.out" 2>/dev/null || true)" -ge 20 ] && break; sleep 0.05; done
t0=$(date +%s)
cl_kill d KILL
for i in $(seq 1 300); do kill -0 $bg 2>/dev/null || break; sleep 0.1; done
kill -0 $bg 2>/dev/null && { kill -9 $bg; fail "the completion hung after the node was lost"; }
set +e; wait $bg; st=$?; set -e
t1=$(date +%s)
[ $st = 1 ] || fail "want exit 1 when the model cannot continue, got $st"
grep -q "cannot continue on the nodes left" "$T/bg.err" || fail "unclear error: $(cat "$T/bg.err")"
grep -q "does not fit\|offer" "$T/bg.err" || fail "the error does not say why: $(cat "$T/bg.err")"
echo "   ($(head -c 300 "$T/bg.err") after $((t1 - t0)) s)"
pass "when the nodes left cannot hold the model, the client gets a clear error, not a hang"
cl_kill a
