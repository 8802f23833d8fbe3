#!/usr/bin/env bash
# Installs the Debian packages byoai needs to build and test, when missing.
# Safe to run again: it only calls apt-get when something is absent.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libcmocka-dev libcurl4-openssl-dev libsqlite3-dev libsodium-dev
  libjansson-dev libmicrohttpd-dev libssl-dev libpcre2-dev libicu-dev
  curl iproute2 ca-certificates openssl python3 python3-jsonschema
)
# --e2e: the browser and node tests; --arm: the cross compiler and qemu-user
# that build and run the NEON kernels' tests (scripts/test-neon-qemu.sh)
arm=0
for a in "$@"; do
  case "$a" in
    --e2e) pkgs+=(chromium nodejs npm) ;;
    --arm) arm=1; pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libcmocka-dev:arm64) ;;
    *) echo "usage: scripts/install-deps.sh [--e2e] [--arm]" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  # nodejs/npm may come from elsewhere (the machine's own Node.js): accept a binary on PATH
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm)    command -v npm  >/dev/null 2>&1 && continue ;;
  esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "byoai: installing Debian packages: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "byoai: need root (or sudo) to install: ${missing[*]}" >&2
    echo "       run: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
# arm64 packages (libcmocka-dev:arm64) need the architecture known to dpkg
if [ "$arm" = 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
fi
if ! { $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "byoai: apt-get failed (log above); install by hand: apt-get install ${missing[*]}" >&2
  rm -f "$log"; exit 1
fi
rm -f "$log"
echo "byoai: installed ${missing[*]}" >&2
