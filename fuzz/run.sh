#!/usr/bin/env bash
# Run every libFuzzer target briefly (FUZZ_SECONDS each, default 30) with a
# seed corpus made from the shared test files. Usage: fuzz/run.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: fuzz/run.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
shared=${BYOAI_SHARED:-$here/../../shared}
export BYOAI_SHARED=$shared
secs=${FUZZ_SECONDS:-30}
status=0
for bin in "$build"/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  corpus="$build/corpus/$name"
  mkdir -p "$corpus"
  seeds="$here/seeds/$name"
  echo "== $name ($secs s)"
  args=("$corpus")
  [ -d "$seeds" ] && args+=("$seeds")
  if ! "$bin" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 "${args[@]}" 2>"$build/$name.log"; then
    echo "FAILED: $name (see $build/$name.log)"; tail -30 "$build/$name.log"; status=1
  else
    grep -E '^(#[0-9]+|Done)' "$build/$name.log" | tail -1
  fi
done
exit $status
