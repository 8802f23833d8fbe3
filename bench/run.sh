#!/usr/bin/env bash
# make bench: the speed benchmarks, one JSON document on stdout.
#   bench/run.sh BUILD_DIR            everything below
#   BENCH_TYPES="Q8_0 Q4_0" ...       only these model types
#   BENCH_ONLY=engine|server|cluster  one part only (cluster: bench/cluster_bench.sh)
# Models are generated once and cached in BUILD_DIR/bench/: a synthetic
# TinyLlama-1.1B-shaped model (random F16 weights written by the project's
# GGUF writer), quantized with `byoai quantize`.
set -euo pipefail
build=$(cd "${1:?usage: bench/run.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
shared=${BYOAI_SHARED:-$here/../../shared}
byoai=$build/byoai
cache=$build/bench
mkdir -p "$cache"
types=${BENCH_TYPES:-"Q8_0 Q4_0 Q4_K_M"}
threads=${BENCH_THREADS:-$(nproc)}
reps=${BENCH_REPS:-3}

base=$cache/tinyllama-f16.gguf
if [ ! -f "$base" ]; then
  echo "bench: generating $base (once)" >&2
  "$build/make_tinyllama" "$base.tmp" "$shared" && mv "$base.tmp" "$base"
fi
for t in $types; do
  f=$cache/tinyllama-$t.gguf
  [ -f "$f" ] || "$byoai" quantize "$base" "$f" "$t" -q -t "$threads" >&2
done

server_bench() {
  # byoai serve: stories260K for the server's own costs, and a 4-layer
  # TinyLlama-shaped Q4_0 model (real widths and vocabulary) for batching
  local small4=$cache/tinyllama-4l-q4_0.gguf
  if [ ! -f "$small4" ]; then
    "$build/make_tinyllama" "$cache/tinyllama-4l-f16.gguf.tmp" "$shared" --layers 4 >&2 &&
      "$byoai" quantize "$cache/tinyllama-4l-f16.gguf.tmp" "$small4" Q4_0 -q -t "$threads" >&2
    rm -f "$cache/tinyllama-4l-f16.gguf.tmp"
  fi
  node "$here/bench_server.mjs" "$byoai" "$shared/models/stories260K.gguf" "$small4"
}
if [ "${BENCH_ONLY:-}" = server ]; then server_bench; exit 0; fi
# the cluster: 1, 2 and 3 local nodes on the Q8_0 model (bench/cluster_bench.sh)
cluster_bench() {
  local q8=$cache/tinyllama-Q8_0.gguf
  [ -f "$q8" ] || "$byoai" quantize "$base" "$q8" Q8_0 -q -t "$threads" >&2
  bash "$here/cluster_bench.sh" "$build" "$q8"
}
if [ "${BENCH_ONLY:-}" = cluster ]; then cluster_bench; exit 0; fi
server_json=""
if [ -z "${BENCH_ONLY:-}" ]; then server_json=$(server_bench); fi

hw=$("$byoai" hw --json -t "$threads")
bw=$(printf '%s' "$hw" | python3 -c 'import json,sys; print(json.load(sys.stdin)["read_bandwidth_gbps"])')
echo "bench: read bandwidth ${bw} GB/s" >&2
{
  printf '{"server": %s, "hw": %s, "models": [' "${server_json:-null}" "$hw"
  sep=""
  for t in $types; do
    r=$("$byoai" bench "$cache/tinyllama-$t.gguf" --json -p 64 -n 32 -t "$threads" -r "$reps")
    printf '%s{"type": "%s", "result": %s}' "$sep" "$t" "$r"
    sep=","
    echo "bench: $t $r" >&2
  done
  printf ']'
  if [ -z "${BENCH_ONLY:-}" ]; then printf ', "cluster": %s' "$(cluster_bench)"; fi
  printf '}\n'
} | python3 -c '
import json, sys
d = json.load(sys.stdin)
bw = d["hw"]["read_bandwidth_gbps"] * 1e9
for m in d["models"]:
    r = m["result"]
    m["bandwidth_use"] = round(r["weight_bytes"] * r["gen_tokens_per_second"] / bw, 3)
json.dump(d, sys.stdout, indent=2)
print()
'
