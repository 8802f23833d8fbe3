#!/bin/sh
# Cross-build the quant unit test (tests/unit/test_quant.c) for aarch64 and
# run it under qemu-user, twice: with the dotprod extension (SDOT) and for
# plain ARMv8.0 (the widening-multiply fallback). Needs Debian's
#   gcc-aarch64-linux-gnu qemu-user libcmocka-dev:arm64
# (dpkg --add-architecture arm64 && apt-get update first). Only the quant,
# gguf type and base sources are linked, so no other arm64 libraries are
# needed. Usage: scripts/test-neon-qemu.sh [build-dir]
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/build/neon}
mkdir -p "$out"
cc=${CC_AARCH64:-aarch64-linux-gnu-gcc}
for tool in "$cc" qemu-aarch64; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "FAIL: $tool is missing: run 'bash scripts/install-deps.sh --arm' (or 'make test')" >&2; exit 1; }
done
[ -f /usr/lib/aarch64-linux-gnu/libcmocka.so ] || {
  echo "FAIL: libcmocka-dev:arm64 is missing: run 'bash scripts/install-deps.sh --arm' (or 'make test')" >&2; exit 1; }
files="$src/tests/unit/test_quant.c $src/tests/unit/testutil.c $src/src/infer/quant.c $src/src/infer/quant_float.c
  $src/src/infer/quant_legacy.c $src/src/infer/quant_kquants.c $src/src/infer/simd/neon.c $src/src/gguf/types.c
  $src/src/base/error.c $src/src/base/fs.c $src/src/base/log.c"
for arch in armv8.2-a+dotprod armv8-a; do
  exe="$out/test_quant-$(echo "$arch" | tr '+.' '__')"
  # shellcheck disable=SC2086
  $cc -std=gnu11 -O2 -g -march="$arch" -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation -fno-strict-aliasing -Werror -D_GNU_SOURCE \
    -I"$src/include" -I"$src/src" -I"$src/tests/unit" $files -o "$exe" -lcmocka -lm -lpthread
  echo "== $arch"
  qemu-aarch64 -L /usr/aarch64-linux-gnu "$exe"
done
