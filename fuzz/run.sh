#!/usr/bin/env bash
# Run the libFuzzer targets built in BUILD_DIR (make fuzz builds them there).
#
#   fuzz/run.sh BUILD_DIR [TARGET...]     every fuzz_* target, or the ones named
#
# Environment:
#   FUZZ_SECONDS=N   seconds per target (default 30: a smoke run; 600 is the
#                    real run, see docs/development.md)
#   FUZZ_MERGE=1     afterwards, merge what the run found into the target's
#                    corpus in the repository (fuzz/corpus/TARGET): only inputs
#                    that add coverage, at most FUZZ_MERGE_MAX_LEN bytes each
#                    (default 4096), so the corpus stays small
#   FUZZ_NICE=N      niceness of the fuzzers (default 10: the machine stays usable)
#   BYOAI_SHARED     the shared test data (default ../shared beside the repo)
#
# Each target fuzzes a working corpus in BUILD_DIR/corpus/TARGET, seeded from
# fuzz/corpus/TARGET (the seeds and every earlier finding, which CI replays
# under the sanitizers). A crash, leak, timeout (10 s) or out-of-memory input
# is written to BUILD_DIR/artifacts/TARGET/ and fails the run; the log is
# BUILD_DIR/TARGET.log, and BUILD_DIR/fuzz-summary.txt gets one line per
# target: seconds, executions, executions per second, corpus size, result.
set -euo pipefail
build=$(cd "${1:?usage: fuzz/run.sh BUILD_DIR [TARGET...]}" && pwd)
shift
here=$(cd "$(dirname "$0")" && pwd)
shared=${BYOAI_SHARED:-$here/../../shared}
export BYOAI_SHARED=$shared
secs=${FUZZ_SECONDS:-30}
merge_max=${FUZZ_MERGE_MAX_LEN:-4096}

# The longest input per target: what its parser meets in practice, and no
# longer (longer inputs only make each execution slower). The tokenizers are
# linear (bench/bench_tokenizer.c measures 1 MB of each hard shape), so a
# few KB reach every path.
max_len() {
  case "$1" in
    fuzz_gguf | fuzz_manifest) echo 65536 ;;
    fuzz_tokenizer) echo 8192 ;; # vocabulary seeds are 4-6 KB
    *) echo 16384 ;;
  esac
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for bin in "$build"/fuzz_*; do [ -x "$bin" ] && targets+=("$(basename "$bin")"); done
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz/run.sh: no fuzz_* targets in $build (make fuzz builds them)" >&2; exit 2; }

summary=$build/fuzz-summary.txt
status=0
for name in "${targets[@]}"; do
  bin=$build/$name
  [ -x "$bin" ] || { echo "fuzz/run.sh: $bin is not built" >&2; status=1; continue; }
  work=$build/corpus/$name
  arts=$build/artifacts/$name
  repo=$here/corpus/$name
  mkdir -p "$work" "$arts" "$repo"
  log=$build/$name.log
  echo "== $name ($secs s, inputs up to $(max_len "$name") bytes)"
  t0=$(date +%s)
  rc=0
  nice -n "${FUZZ_NICE:-10}" "$bin" -max_total_time="$secs" -max_len="$(max_len "$name")" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$arts/" "$work" "$repo" >"$log" 2>&1 || rc=$?
  t1=$(date +%s)
  runs=$(grep -Eo '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
  eps=$(grep -Eo '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
  files=$(find "$work" -type f | wc -l)
  if [ $rc -ne 0 ]; then
    result="FAILED (exit $rc; inputs in $arts)"
    status=1
    echo "FAILED: $name (see $log)"
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written|==[0-9]+==' "$log" | head -20 || true
  else
    result=ok
    grep -E '^(#[0-9]+|Done)' "$log" | tail -1 || true
  fi
  printf '%s %s: %ss, %s runs, %s exec/s, corpus %s files, %s\n' "$(date -u +%FT%TZ)" "$name" "$((t1 - t0))" \
    "${runs:-?}" "${eps:-?}" "$files" "$result" | tee -a "$summary"
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    before=$(find "$repo" -type f | wc -l)
    small=$build/merge/$name
    rm -rf "$small" && mkdir -p "$small"
    find "$work" -type f -size -"$((merge_max + 1))"c -exec cp -t "$small" {} +
    nice -n "${FUZZ_NICE:-10}" "$bin" -merge=1 -timeout=10 -rss_limit_mb=2048 "$repo" "$small" \
      >"$build/$name.merge.log" 2>&1 ||
      { echo "fuzz/run.sh: merging $name failed (see $build/$name.merge.log)" >&2; status=1; }
    echo "   merged into $repo: $before -> $(find "$repo" -type f | wc -l) files, $(du -sk "$repo" | cut -f1) KB"
  fi
done
exit $status
