#!/usr/bin/env bash
# No single point of failure: kill -9 of a model's coordinator under a stream
# that entered through another member. The first live node of the plan takes
# the deployment over (every member agrees), re-plans (a member without the
# file fetches its new layers from the URL in the deployment's record), and
# the stream completes with the single-machine greedy text. `cluster status`
# never shows a stage on a dead node as ready. The restarted coordinator
# knows the deployment as its successor's; a deployment nobody could take
# over is resumed by its restarted coordinator.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

SYNTH="$T/synth.gguf"
"$BYOAI_BUILD/make_tinyllama" "$SYNTH" "$BYOAI_SHARED" --layers 12 --dim 64 --ff 128 --heads 4 --kv-heads 2 ||
  fail "cannot make the synthetic model"
PROMPT="Once upon a time"
N=200
DELAY=(--test-link-delay-ms 10)
mkdir -p "$T/www"
cp "$SYNTH" "$T/www/"
python3 -u "$(dirname "$0")/range_server.py" "$T/www" "$T/ranges.log" >"$T/srv.out" 2>&1 &
srv=$!
CLEANUP_EXTRA='[ -n "${srv:-}" ] && { kill $srv; wait $srv; } 2>/dev/null || true; '"$CLEANUP_EXTRA"
for i in $(seq 1 100); do grep -q "^port" "$T/srv.out" 2>/dev/null && break; sleep 0.05; done
url="http://127.0.0.1:$(sed -n 's/^port //p' "$T/srv.out")/synth.gguf"

node_id() { cl "$1" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])'; }
cl_admin a "${DELAY[@]}"
cl_member b "${DELAY[@]}" --model-file "$SYNTH"
cl_member c "${DELAY[@]}"   # no copy: fetches its layers from the URL
cl_wait_alive a 3
ida=$(node_id a); idb=$(node_id b); idc=$(node_id c)
cl a deploy synth="$SYNTH" --ctx 512 --url "$url" --min-nodes 3 >"$T/deploy.out" || fail "deploy"
grep -q "deployed synth on 3 node(s)" "$T/deploy.out" || fail "deploy output: $(cat "$T/deploy.out")"
cl_status a
order=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join(s["node_id"] for s in [x for x in d["deployments"] if x["model"] == "synth"][0]["stages"]))' "$T/a.status")
[ "${order%% *}" = "$ida" ] || fail "the coordinator does not run the first stage: $order"
succ_id=$(echo "$order" | cut -d' ' -f2)
succ=b; [ "$succ_id" = "$idc" ] && succ=c
for n in b c; do # the record reached the members, and is kept on disk where a stage runs
  for i in $(seq 1 50); do ls "$T/$n/cluster/deployments/"*.rec >/dev/null 2>&1 && break; sleep 0.1; done
  ls "$T/$n/cluster/deployments/"*.rec >/dev/null 2>&1 || fail "$n keeps no record of the deployment"
done
"$BYOAI_BIN" run "$SYNTH" -p "$PROMPT" -n $N --temp 0 -t 1 >"$T/single.txt" 2>/dev/null
api_wait_model b synth
fetched_before=$(wc -l <"$T/ranges.log")

# the watcher: every status b gives while a is lost must hold up
python3 -u - "$BYOAI_BIN" "$T/b" "$ida" >"$T/watch.out" 2>&1 <<'PY' &
import json, os, subprocess, sys, time
bin, home, dead = sys.argv[1:4]
env = dict(os.environ, BYOAI_HOME=home)
seen, end = 0, time.time() + 60
def killed_before(t):  # a was killed before t, with time for its link to close (a reset: milliseconds)
    try:
        return float(open(home + "/../a.killed").read()) + 0.5 < t
    except (OSError, ValueError):
        return False
while time.time() < end and not os.path.exists(home + "/../watch.stop"):
    t_ask = time.time()
    try:
        d = json.loads(subprocess.run([bin, "cluster", "status", "--json"], env=env, capture_output=True, timeout=10).stdout)
    except Exception:
        continue
    dead_known = killed_before(t_ask)
    for dep in d.get("deployments", []):
        if dep["model"] != "synth": continue
        seen += 1
        on_dead = [s for s in dep["stages"] if s["node_id"] == dead]
        missing = [s for s in dep["stages"] if s["state"] != "ready"]
        if on_dead and dead_known:
            print("VIOLATION: layers listed on the dead node:", dep["stages"], flush=True)
        if dep["ready"] and (missing or on_dead and dead_known):
            print("VIOLATION: ready with a missing stage:", dep, flush=True)
    time.sleep(0.05)
print("watched", seen, flush=True)
PY
watch=$!

curl -sSN --max-time 120 "http://127.0.0.1:$(cat "$T/b.http")/v1/completions" -H 'Content-Type: application/json' \
  -d "{\"model\": \"synth\", \"prompt\": \"$PROMPT\", \"max_tokens\": $N, \"temperature\": 0, \"stream\": true}" >"$T/sse.txt" &
stream=$!
for i in $(seq 1 200); do [ "$(grep -c '^data: {' "$T/sse.txt" 2>/dev/null || true)" -ge 30 ] && break; sleep 0.05; done
[ "$(grep -c '^data: {' "$T/sse.txt")" -ge 30 ] || fail "the stream did not get going"
cl_kill a KILL
date +%s.%N >"$T/a.killed"
for i in $(seq 1 900); do kill -0 $stream 2>/dev/null || break; sleep 0.1; done
kill -0 $stream 2>/dev/null && { kill -9 $stream; fail "the stream hung after kill -9 of its coordinator"; }
wait $stream || fail "the stream failed after kill -9 of its coordinator"
python3 - "$T/sse.txt" "$T/single.txt" "$PROMPT" <<'PY' || fail "the stream after kill -9 of its coordinator differs from one machine"
import json, sys
text, done, errors = "", False, []
for line in open(sys.argv[1]):
    if not line.startswith("data: "): continue
    if line.strip() == "data: [DONE]": done = True; continue
    d = json.loads(line[6:])
    if "error" in d: errors.append(d)
    elif d["choices"]: text += d["choices"][0]["text"]
assert done and not errors, errors
assert sys.argv[3] + text + "\n" == open(sys.argv[2]).read(), text[:200]
PY
pass "kill -9 of the coordinator under a stream through another member: the stream completes with the same text"

# the successor coordinates it now, on the nodes left; c fetched its new layers from the recorded URL
for i in $(seq 1 100); do
  cl_status b
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); x=[x for x in d["deployments"] if x["model"]=="synth"][0]; sys.exit(0 if x["ready"] else 1)' "$T/b.status" && break
  sleep 0.1
done
json_check "$T/b.status" '
x = [x for x in d["deployments"] if x["model"] == "synth"][0]
assert x["ready"] and x["term"] == 2 and x["coordinator"]["node_id"] == "'"$succ_id"'", (x["ready"], x["term"], x["coordinator"])
assert len(x["stages"]) == 2 and "'"$ida"'" not in [s["node_id"] for s in x["stages"]], x["stages"]'
grep -q "took synth over from lost node ${ida:0:12}" <(cl $succ status) || fail "no takeover event on $succ"
[ "$(wc -l <"$T/ranges.log")" -gt "$fetched_before" ] || fail "c fetched nothing for its new layers"
pass "the first live node of the plan took the deployment over; c fetched its new layers from the URL in the record"

touch "$T/watch.stop"
wait $watch
grep -q VIOLATION "$T/watch.out" && fail "status showed a lost stage: $(grep VIOLATION "$T/watch.out" | head -3)"
grep -q "^watched" "$T/watch.out" || fail "the watcher did not run: $(cat "$T/watch.out")"
echo "   ($(grep '^watched' "$T/watch.out") statuses of b while a was lost and after)"
pass "cluster status never showed a stage on the dead node as ready"

# the restarted coordinator knows the deployment as its successor's and serves it through it
want=$("$BYOAI_BIN" run "$SYNTH" -p "$PROMPT" -n 60 --temp 0 --logprobs 0 -t 1 2>/dev/null |
  python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["id"]) for l in sys.stdin))')
cl_start a "${DELAY[@]}"
for i in $(seq 1 100); do
  cl_status a
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); x=[x for x in d["deployments"] if x["model"]=="synth"]; sys.exit(0 if x and x[0]["ready"] else 1)' "$T/a.status" && break
  sleep 0.1
done
json_check "$T/a.status" '
x = [x for x in d["deployments"] if x["model"] == "synth"][0]
assert x["ready"] and x["term"] == 2 and not x["coordinator"]["self"], x'
got=$(cluster_ids a synth "$PROMPT" 60) || fail "run on the restarted node: $(cat "$T/run.err")"
[ "$got" = "$want" ] || fail "the restarted node's answer differs"
pass "the restarted coordinator resumes its place: it serves the deployment its successor took over"

# a deployment nobody else could take over: its restarted coordinator resumes it
cl a deploy solo="$SYNTH" --ctx 256 --nodes "$ida" >/dev/null || fail "deploy solo"
for i in $(seq 1 50); do cl_status b; grep -q '"solo"' "$T/b.status" && break; sleep 0.1; done
cl_kill a KILL
for i in $(seq 1 100); do
  cl_status b
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); x=[x for x in d["deployments"] if x["model"]=="solo"]; sys.exit(0 if x and x[0]["state"] == "coordinator lost" else 1)' "$T/b.status" && break
  sleep 0.1
done
json_check "$T/b.status" 'x = [x for x in d["deployments"] if x["model"] == "solo"][0]; assert not x["ready"] and x["state"] == "coordinator lost", x'
t0=$(date +%s)
cl_expect b 1 "$BYOAI_BIN" cluster run solo -p "$PROMPT" -n 5
[ $(( $(date +%s) - t0 )) -lt 10 ] || fail "a completion for a model without a coordinator took long to fail"
grep -q "no node of the cluster runs model 'solo'" "$T/err" || fail "unclear error: $(cat "$T/err")"
cl_start a "${DELAY[@]}"
for i in $(seq 1 150); do
  cl_status b
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); x=[x for x in d["deployments"] if x["model"]=="solo"]; sys.exit(0 if x and x[0]["ready"] else 1)' "$T/b.status" && break
  sleep 0.1
done
cl_status a
grep -q "resumed solo" "$T/a.status" || fail "a did not resume solo: $(grep text "$T/a.status" | tail -12; tail -5 "$T/a.log"; ls -la "$T/a/cluster/deployments"; grep -A3 solo "$T/a.status" | head -20)"
got=$(cluster_ids b solo "$PROMPT" 60) || fail "run solo after the resume: $(cat "$T/run.err")"
[ "$got" = "$want" ] || fail "solo after the resume differs"
pass "a restarted coordinator resumes the deployment nobody could take over"
for n in a b c; do cl_kill $n; done
