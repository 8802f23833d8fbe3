#!/usr/bin/env bash
# The cluster benchmark: generation speed of one model run by 1, 2 and 3
# local nodes (real processes on 127.0.0.1, encrypted links) against the
# plain engine, bytes on the wire per token and hop (F32 and F16 hidden
# states), and the latency each hop adds, on loopback and with 1 ms and
# 10 ms of added link latency. One JSON document on stdout.
#
#   bench/cluster_bench.sh BUILD_DIR [MODEL.gguf]
#   BENCH_TOKENS=32 BENCH_REPS=3 BENCH_THREADS=2 BENCH_DELAYS="0 1 10"
#
# Link latency is added in user space (--test-link-delay-ms: each node holds
# every received frame that long) because this machine's kernel has no
# sch_netem; docs/performance.md says what that does and does not model.
set -euo pipefail
build=$(cd "${1:?usage: bench/cluster_bench.sh BUILD_DIR [MODEL]}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
shared=${BYOAI_SHARED:-$here/../../shared}
byoai=$build/byoai
model=${2:-$build/bench/tinyllama-Q8_0.gguf}
if [ ! -f "$model" ]; then
  mkdir -p "$build/bench"
  base=$build/bench/tinyllama-f16.gguf
  [ -f "$base" ] || { echo "bench: generating $base (once)" >&2; "$build/make_tinyllama" "$base.tmp" "$shared" && mv "$base.tmp" "$base"; }
  "$byoai" quantize "$base" "$model" Q8_0 -q -t "$(nproc)" >&2
fi
model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
N=${BENCH_TOKENS:-32}
reps=${BENCH_REPS:-3}
threads=${BENCH_THREADS:-$(nproc)}
delays=${BENCH_DELAYS:-"0 1 10"}
prompt="Once upon a time"
work=$(mktemp -d "${TMPDIR:-/tmp}/byoai-cbench-XXXXXX")
pids=""
stop_nodes() {
  local p
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for p in $pids; do wait "$p" 2>/dev/null || true; done
  pids=""
}
trap 'stop_nodes; rm -rf "$work"' EXIT
dport=$((20000 + $$ % 30000))

cl() { local n=$1; shift; BYOAI_HOME="$work/$n" "$byoai" cluster "$@"; }

start_cluster() { # DELAY_MS: admin a, members b and c
  local d=$1 n i
  rm -rf "$work"/a "$work"/b "$work"/c
  cl a create bench >/dev/null
  for n in a b c; do
    if [ $n != a ]; then
      cl $n join "$(cl a invite --address "127.0.0.1:$(cat "$work/a.port")" 2>/dev/null)" >/dev/null
    fi
    rm -f "$work/$n.out"
    BYOAI_HOME="$work/$n" "$byoai" cluster node --bind 127.0.0.1 --port 0 --discovery-port "$dport" --memory 3G \
      -t "$threads" --model-file "$model" --test-link-delay-ms "$d" >"$work/$n.out" 2>"$work/$n.log" &
    pids="$pids $!"
    for i in $(seq 1 200); do grep -q "listening on" "$work/$n.out" 2>/dev/null && break; sleep 0.05; done
    sed -n 's/.*:\([0-9]*\)$/\1/p' "$work/$n.out" | head -1 >"$work/$n.port"
  done
  for i in $(seq 1 200); do
    [ "$(cl a status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["alive"])')" = 3 ] && break
    sleep 0.1
  done
  for n in a b c; do cl $n status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])' >"$work/$n.id"; done
}

links() { # JSON {"from>to": bytes_tx} over every node's links
  local n
  for n in a b c; do cl $n status --json; done | python3 -c '
import json, sys
dec = json.JSONDecoder(); s = sys.stdin.read(); i = 0; out = {}
while i < len(s):
    while i < len(s) and s[i].isspace(): i += 1
    if i >= len(s): break
    d, i = dec.raw_decode(s, i)
    for m in d["members"]:
        if not m["self"]: out[d["node_id"] + ">" + m["node_id"]] = m["link"]["bytes_tx"]
print(json.dumps(out))'
}

run_once() { # NAME TOKENS: prints the final JSON line of a completion
  cl a run "$1" -p "$prompt" -n "$2" --temp 0 --json 2>/dev/null | tail -1
}

deploy() { # NAME NODES WIRE
  local ids
  ids=$(head -c 32 "$work/a.id")
  [ "$2" -ge 2 ] && ids="$ids,$(head -c 32 "$work/b.id")"
  [ "$2" -ge 3 ] && ids="$ids,$(head -c 32 "$work/c.id")"
  cl a deploy "$1=$model" --ctx 256 --seq 1 --wire "$3" --nodes "$ids" >/dev/null
  run_once "$1" 4 >/dev/null # warm the pages and the links
}

bytes_per_hop() { # NAME: the bytes each hop carries per generated token (JSON list)
  local l0 l1 l2
  l0=$(links)
  run_once "$1" 1 >/dev/null
  l1=$(links)
  run_once "$1" "$N" >/dev/null
  l2=$(links)
  cl a status --json >"$work/st.json"
  python3 - "$1" "$N" "$l0" "$l1" "$l2" "$work/st.json" <<'PY'
import json, sys
name, n = sys.argv[1], int(sys.argv[2])
l0, l1, l2 = (json.loads(x) for x in sys.argv[3:6])
st = json.load(open(sys.argv[6]))
dep = [x for x in st["deployments"] if x["model"] == name][0]
chain = [s["node_id"] for s in dep["stages"]]
hops = []
order = chain + [chain[0]] if len(chain) > 1 else []
for a, b in zip(order, order[1:]):
    key = a + ">" + b
    one = l1.get(key, 0) - l0.get(key, 0)   # the prompt and 1 token
    many = l2.get(key, 0) - l1.get(key, 0)  # the prompt and n tokens
    hops.append({"from": a[:12], "to": b[:12], "carries": "hidden states" if b != chain[0] else "the sampled token",
                 "bytes_per_token": round((many - one) / (n - 1), 1)})
print(json.dumps({"layers": [[s["layer_begin"], s["layer_end"]] for s in dep["stages"]], "hops": hops}))
PY
}

engine_tps() { # tokens/s of `byoai run` on one machine (the same decode count as the cluster's)
  "$byoai" run "$model" -p "$prompt" -n "$N" --temp 0 -t "$threads" 2>&1 >/dev/null |
    sed -n 's/.*generation [0-9]* tokens, \([0-9.]*\) tokens\/s.*/\1/p'
}

cluster_tps() { # NAME: tokens/s and the per-token overhead (time no stage computed), as "TPS OVERHEAD_MS"
  run_once "$1" "$N" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print((r["n_generated"] - 1) / r["gen_seconds"], 1000 * r["overhead_seconds"] / (r["n_generated"] - 1))'
}

embd=$("$byoai" info "$model" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["embedding_length"])')
wbytes=$("$byoai" info "$model" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["weight_bytes"])')
# The machine is shared and noisy: every repetition runs the plain engine
# and each configuration back to back, and the result is the median of the
# per-repetition ratios as well as of the speeds. The latency a hop adds is
# measured directly too: each stage reports how long it computed on a step,
# and the coordinator counts the rest of the step's round trip as overhead
# (wire, queues, encryption), which noise in the compute does not blur.
: >"$work/results"
for d in $delays; do
  start_cluster "$d"
  configs=""
  if [ "$d" = 0 ]; then configs="1:f32 2:f32 3:f32 2:f16 3:f16"; else configs="2:f32 3:f32"; fi
  for c in $configs; do
    deploy "m${c%%:*}${c#*:}" "${c%%:*}" "${c#*:}"
    echo "{\"config\": \"$c\", \"delay_ms\": $d, \"wire_use\": $(bytes_per_hop "m${c%%:*}${c#*:}")}" >>"$work/results"
  done
  for r in $(seq 1 "$reps"); do
    e=$(engine_tps)
    echo "{\"engine\": $e, \"delay_ms\": $d}" >>"$work/results"
    for c in $configs; do
      read -r t o < <(cluster_tps "m${c%%:*}${c#*:}")
      echo "{\"config\": \"$c\", \"delay_ms\": $d, \"rep\": $r, \"tps\": $t, \"overhead_ms\": $o, \"engine\": $e}" >>"$work/results"
      echo "bench: delay ${d} ms, $c: $t tokens/s (engine $e)" >&2
    done
  done
  stop_nodes
done
python3 - "$work/results" "$embd" "$wbytes" "$model" "$threads" "$N" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
embd, wbytes, model, threads, n = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
med = lambda xs: round(statistics.median(xs), 3) if xs else None
engine = [r["engine"] for r in rows if "engine" in r and "config" not in r]
runs = []
for key in dict.fromkeys((r["config"], r["delay_ms"]) for r in rows if "config" in r):
    k, wire = key[0].split(":")
    use = [r for r in rows if r.get("config") == key[0] and r["delay_ms"] == key[1] and "wire_use" in r][0]["wire_use"]
    reps = [r for r in rows if r.get("config") == key[0] and r["delay_ms"] == key[1] and "tps" in r]
    tps = [r["tps"] for r in reps]
    ratio = [r["tps"] / r["engine"] for r in reps if r["engine"]]
    eng = [r["engine"] for r in reps]
    hops = len(use["hops"])
    added = [(1000 / r["tps"] - 1000 / r["engine"]) / hops for r in reps if hops and r["engine"] and r["tps"]]
    over = [r["overhead_ms"] for r in reps]
    runs.append({"nodes": int(k), "wire": wire, "delay_ms": key[1], "layers": use["layers"],
                 "tokens_per_second": med(tps), "engine_tokens_per_second": med(eng), "vs_engine": med(ratio),
                 "all_tokens_per_second": [round(x, 3) for x in tps], "hops": use["hops"],
                 "added_ms_per_hop_from_speed": med(added) if hops else None,
                 "overhead_ms_per_token": med(over),
                 "overhead_ms_per_hop": med([x / hops for x in over]) if hops else None})
out = {"model": model, "weight_bytes": wbytes, "threads": threads, "tokens": n, "reps": len(engine),
       "hidden_size": embd, "hidden_bytes_per_token": {"f32": 4 * embd, "f16": 2 * embd},
       "engine_tokens_per_second": med(engine), "runs": runs}
json.dump(out, sys.stdout, indent=2)
print()
PY
