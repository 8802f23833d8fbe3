#!/usr/bin/env bash
# make bench: the speed benchmarks, one JSON document on stdout.
#   bench/run.sh BUILD_DIR
# Environment:
#   BENCH_TYPES="Q8_0 Q4_0 Q4_K_M"   model types (default: these three)
#   BENCH_THREADS=N                  compute threads (default: all cores)
#   BENCH_REPS=N                     repetitions inside each run (default 3)
#   BENCH_ROUNDS=N                   rounds of alternating runs (default 3)
#   LLAMA_BENCH=/path/llama-bench    llama.cpp's llama-bench for a side-by-side
#                                    comparison (default: /work/llamacpp/build/
#                                    bin/llama-bench when it exists; "" = none)
#   BENCH_MODELS=DIR                 where the models are (default BUILD_DIR/bench)
#   BENCH_ONLY=engine|server|cluster|ttft one part only (server: bench/bench_server.mjs,
#                                    cluster: bench/cluster_bench.sh, ttft: bench/ttft_bench.py)
#   LLAMA_SERVER=/path/llama-server  llama.cpp's server for the ttft part (default:
#                                    /work/llamacpp/build/bin/llama-server when it exists)
# Models are generated once and cached: a synthetic TinyLlama-1.1B-shaped
# model (random F16 weights written by the project's GGUF writer), quantized
# with `byoai quantize`; llama.cpp reads the same files.
#
# Each round runs, per type, byoai then llama.cpp (64-token prompt, 32
# generated tokens, same threads), so both see the same machine within
# seconds of each other; the report gives per side the median over all
# samples of all rounds, every sample, and the load average around each
# run. Memory read bandwidth (byoai hw) is measured before and after; the
# bandwidth use of generation is weight bytes x tokens/s / bandwidth.
set -euo pipefail
build=$(cd "${1:?usage: bench/run.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
shared=${BYOAI_SHARED:-$here/../../shared}
byoai=$build/byoai
cache=${BENCH_MODELS:-$build/bench}
mkdir -p "$cache"
types=${BENCH_TYPES:-"Q8_0 Q4_0 Q4_K_M"}
threads=${BENCH_THREADS:-$(nproc)}
reps=${BENCH_REPS:-3}
rounds=${BENCH_ROUNDS:-3}
default_llama=/work/llamacpp/build/bin/llama-bench
llama=${LLAMA_BENCH-$default_llama}
[ -n "$llama" ] && [ ! -x "$llama" ] && llama=""

base=$cache/tinyllama-f16.gguf
for t in $types; do
  f=$cache/tinyllama-$t.gguf
  [ -f "$f" ] && continue
  if [ ! -f "$base" ]; then
    echo "bench: generating $base (once)" >&2
    "$build/make_tinyllama" "$base.tmp" "$shared" && mv "$base.tmp" "$base"
  fi
  "$byoai" quantize "$base" "$f" "$t" -q -t "$threads" >&2
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
  if [ ! -f "$q8" ]; then
    [ -f "$base" ] || { "$build/make_tinyllama" "$base.tmp" "$shared" >&2 && mv "$base.tmp" "$base"; }
    "$byoai" quantize "$base" "$q8" Q8_0 -q -t "$threads" >&2
  fi
  bash "$here/cluster_bench.sh" "$build" "$q8"
}
if [ "${BENCH_ONLY:-}" = cluster ]; then cluster_bench; exit 0; fi
# time to first token of 1, 2 and 4 conversations taking turns: byoai (one
# machine and two cluster nodes) against llama-server, TinyLlama-shaped Q4_0
ttft_bench() {
  local q4=$cache/tinyllama-Q4_0.gguf ls=${LLAMA_SERVER-/work/llamacpp/build/bin/llama-server}
  if [ ! -f "$q4" ]; then
    [ -f "$base" ] || { "$build/make_tinyllama" "$base.tmp" "$shared" >&2 && mv "$base.tmp" "$base"; }
    "$byoai" quantize "$base" "$q4" Q4_0 -q -t "$threads" >&2
  fi
  [ -x "$ls" ] || ls=""
  python3 "$here/ttft_bench.py" --byoai "$byoai" --model "$q4" --cluster --threads "$threads" \
    ${ls:+--llama-server "$ls"} --rounds "${BENCH_TTFT_ROUNDS:-3}"
}
if [ "${BENCH_ONLY:-}" = ttft ]; then ttft_bench; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

if [ -z "${BENCH_ONLY:-}" ]; then server_bench > "$work/server.json"; else echo null > "$work/server.json"; fi
if [ -z "${BENCH_ONLY:-}" ]; then cluster_bench > "$work/cluster.json"; else echo null > "$work/cluster.json"; fi
if [ -z "${BENCH_ONLY:-}" ]; then ttft_bench > "$work/ttft.json"; else echo null > "$work/ttft.json"; fi

"$byoai" hw --json -t "$threads" > "$work/hw_before.json"
echo "bench: read bandwidth $(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["read_bandwidth_gbps"],1))' "$work/hw_before.json") GB/s, load $(loadavg)" >&2
for r in $(seq 1 "$rounds"); do
  for t in $types; do
    f=$cache/tinyllama-$t.gguf
    l0=$(loadavg)
    "$byoai" bench "$f" --json -p 64 -n 32 -t "$threads" -r "$reps" > "$work/byoai_${t}_$r.json"
    printf '{"before": "%s", "after": "%s"}\n' "$l0" "$(loadavg)" > "$work/byoai_${t}_$r.load"
    echo "bench: round $r $t byoai $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("pp %.1f tg %.1f" % (d["prompt_tokens_per_second"], d["gen_tokens_per_second"]))' "$work/byoai_${t}_$r.json") (load $l0)" >&2
    if [ -n "$llama" ]; then
      l0=$(loadavg)
      "$llama" -m "$f" -p 64 -n 32 -t "$threads" -r "$reps" -o json > "$work/llama_${t}_$r.json" 2>/dev/null
      printf '{"before": "%s", "after": "%s"}\n' "$l0" "$(loadavg)" > "$work/llama_${t}_$r.load"
      echo "bench: round $r $t llama.cpp $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join("%s %.1f" % ("pp" if x["n_prompt"] else "tg", x["avg_ts"]) for x in d))' "$work/llama_${t}_$r.json") (load $l0)" >&2
    fi
  done
done
"$byoai" hw --json -t "$threads" > "$work/hw_after.json"

python3 - "$work" "$rounds" "$threads" "$llama" $types <<'PY'
import json, os, statistics, sys, datetime, platform
work, rounds, threads, llama = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
types = sys.argv[5:]
hw = [json.load(open(os.path.join(work, f))) for f in ("hw_before.json", "hw_after.json")]
bw = statistics.median(h["read_bandwidth_gbps"] for h in hw) * 1e9
def load(p):
    return json.load(open(p))
out = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": {"cpu": hw[0]["cpu"], "cores": hw[0]["cores"], "features": hw[0]["features"],
                "kernel": platform.release()},
    "threads": threads, "rounds": rounds,
    "read_bandwidth_gbps": {"before": hw[0]["read_bandwidth_gbps"], "after": hw[1]["read_bandwidth_gbps"],
                            "used": bw / 1e9},
    "models": [],
    "server": json.load(open(os.path.join(work, "server.json"))),
    "cluster": json.load(open(os.path.join(work, "cluster.json"))),
    "ttft": json.load(open(os.path.join(work, "ttft.json"))),
}
commit = None
for t in types:
    m = {"type": t}
    pp, tg, loads, size = [], [], [], None
    for r in range(1, rounds + 1):
        d = load(os.path.join(work, "byoai_%s_%d.json" % (t, r)))
        pp += d["prompt_samples"]
        tg += d["gen_samples"]
        size = d["weight_bytes"]
        loads.append(load(os.path.join(work, "byoai_%s_%d.load" % (t, r))))
        m["file"] = d["model"]
        m["kernels"] = d["kernels"] + (" packed" if d.get("packed") else "")
    m["weight_bytes"] = size
    m["byoai"] = {"prompt_tokens_per_second": statistics.median(pp), "gen_tokens_per_second": statistics.median(tg),
                  "prompt_samples": pp, "gen_samples": tg, "load_average": loads,
                  "bandwidth_use": round(size * statistics.median(tg) / bw, 3)}
    if llama:
        pp, tg, loads = [], [], []
        for r in range(1, rounds + 1):
            for x in load(os.path.join(work, "llama_%s_%d.json" % (t, r))):
                (pp if x["n_prompt"] else tg).extend(x["samples_ts"])
                commit = x.get("build_commit")
            loads.append(load(os.path.join(work, "llama_%s_%d.load" % (t, r))))
        m["llama_cpp"] = {"prompt_tokens_per_second": statistics.median(pp),
                          "gen_tokens_per_second": statistics.median(tg),
                          "prompt_samples": pp, "gen_samples": tg, "load_average": loads,
                          "bandwidth_use": round(size * statistics.median(tg) / bw, 3)}
        m["byoai_over_llama_cpp"] = {
            "prompt": round(m["byoai"]["prompt_tokens_per_second"] / m["llama_cpp"]["prompt_tokens_per_second"], 2),
            "gen": round(m["byoai"]["gen_tokens_per_second"] / m["llama_cpp"]["gen_tokens_per_second"], 2)}
    out["models"].append(m)
if llama:
    out["llama_cpp"] = {"llama_bench": llama, "build_commit": commit}
json.dump(out, sys.stdout, indent=2)
print()
for m in out["models"]:
    b = m["byoai"]
    line = "bench: %-7s byoai pp %6.1f tg %5.1f (bw %.0f%%)" % (m["type"], b["prompt_tokens_per_second"],
                                                             b["gen_tokens_per_second"], 100 * b["bandwidth_use"])
    if "llama_cpp" in m:
        l = m["llama_cpp"]
        line += " | llama.cpp pp %6.1f tg %5.1f | ratio pp %.2f tg %.2f" % (
            l["prompt_tokens_per_second"], l["gen_tokens_per_second"], m["byoai_over_llama_cpp"]["prompt"],
            m["byoai_over_llama_cpp"]["gen"])
    print(line, file=sys.stderr)
PY
