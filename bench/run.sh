#!/usr/bin/env bash
# make bench: run the benchmarks against a release build; JSON lines on stdout.
# Usage: bench/run.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: bench/run.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
shared=${BYOAI_SHARED:-$here/../../shared}
"$build/bench_generate" "$shared/models/stories260K.gguf" --prompt 64 --gen 32 --reps 5
