#!/usr/bin/env bash
# Downloads against a real `byoai registry serve`: resume after kill -9, a
# wrong sha256, 404, two concurrent installs, a full disk, offline use from
# the cache, ETag revalidation; and against misbehaving servers
# (fake_hub.py): a stall noticed at BYOAI_STALL_SECONDS, a redirect to
# file:// refused at once.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_registry.sh"

REG_DIR="$T/reg"
"$BYOAI_BIN" registry init "$REG_DIR" >/dev/null 2>&1 || fail "registry init"
SHA=$(sha_of "$STORIES"); SIZE=$(size_of "$STORIES")
cp "$STORIES" "$REG_DIR/blobs/sha256-$SHA"
make_gguf "$T/small.gguf" 3 1024
SSHA=$(sha_of "$T/small.gguf"); SSIZE=$(size_of "$T/small.gguf")
cp "$T/small.gguf" "$REG_DIR/blobs/sha256-$SSHA"
BAD=$(printf 'ab%.0s' $(seq 32))
# a misbehaving server for some variants' URLs
HUB="$T/hub"; mkdir -p "$HUB"
make_gguf "$HUB/stall.gguf" 21 65536
STSHA=$(sha_of "$HUB/stall.gguf"); STSIZE=$(size_of "$HUB/stall.gguf")
make_gguf "$T/never.gguf" 22 1024 # what the file:// redirect stands for
NVSHA=$(sha_of "$T/never.gguf"); NVSIZE=$(size_of "$T/never.gguf")
python3 "$(dirname "$0")/fake_hub.py" "$HUB" "$T/hub.port" "$T/hub.log" 2>"$T/hub.err" &
PIDS+=("$!")
for _ in $(seq 1 100); do [ -s "$T/hub.port" ] && break; sleep 0.05; done
[ -s "$T/hub.port" ] || fail "fake hub did not start: $(cat "$T/hub.err")"
HUB_URL="http://127.0.0.1:$(cat "$T/hub.port")"
variant() { # name sha size url
  printf '{"name":"f32","quantization":"F32","size":%s,"sha256":"%s","url":"%s"}' "$3" "$2" "$4"
}
model() { # name variant-json
  printf '{"name":"%s","description":"test model %s","architecture":"llama","license":"mit","parameters":1,"revision":"1","updated":"2024-01-01","variants":[%s]}' "$1" "$1" "$2"
}
write_index "$REG_DIR" "{\"schema_version\":1,\"models\":[
  $(model stories260k "$(variant f32 "$SHA" "$SIZE" "blobs/sha256-$SHA")"),
  $(model small "$(variant f32 "$SSHA" "$SSIZE" "blobs/sha256-$SSHA")"),
  $(model bertish "$(variant f32 "$SSHA" "$SSIZE" "blobs/sha256-$SSHA")" | sed 's/"architecture":"llama"/"architecture":"nomic-bert"/'),
  $(model badsum "$(variant f32 "$BAD" "$SIZE" "blobs/sha256-$SHA")"),
  $(model badsize "$(variant f32 "$SHA" 1000 "blobs/sha256-$SHA")"),
  $(model missing "$(variant f32 "$BAD" 1000 "blobs/sha256-$BAD")"),
  $(model stalls "$(variant f32 "$STSHA" "$STSIZE" "$HUB_URL/cdn/stall.gguf")"),
  $(model tofile "$(variant f32 "$NVSHA" "$NVSIZE" "$HUB_URL/tofile/x.gguf")")]}"
expect_exit 0 "$BYOAI_BIN" index validate "$REG_DIR/index.json"
start_registry "$REG_DIR"
export BYOAI_REGISTRY="$REG_URL"
no_manifest() { [ ! -e "$BYOAI_HOME/manifests/$1.json" ] || fail "$1 has a manifest"; }

# ETag: the second look at the index is a 304
expect_exit 0 "$BYOAI_BIN" search
expect_exit 0 "$BYOAI_BIN" search
grep -q "index.json not modified (304)" "$REG_LOG" || fail "no conditional request: $(cat "$REG_LOG")"
pass "index revalidated with ETag (304)"

# an architecture this build cannot run: said before the download, in show, in --json
expect_exit 0 "$BYOAI_BIN" install bertish --dry-run
grep -q "cannot run architecture 'nomic-bert' yet" "$T/err" "$T/out" || fail "no note for an unsupported architecture: $(cat "$T/out" "$T/err")"
expect_exit 0 "$BYOAI_BIN" show bertish
grep -q "architecture nomic-bert (this build cannot run it yet)" "$T/out" || fail "show: $(cat "$T/out")"
expect_exit 0 "$BYOAI_BIN" show bertish --json
json_check "$T/out" 'assert d["index"]["architecture_supported"] is False, d'
expect_exit 0 "$BYOAI_BIN" show small --json
json_check "$T/out" 'assert d["index"]["architecture_supported"] is True, d'
pass "an architecture this build cannot run is pointed out (install plan, show)"

# kill -9 in the middle of a download, then resume with Range
"$BYOAI_BIN" install stories260k --max-rate 100K -q >/dev/null 2>"$T/kill.err" &
pid=$!
PIDS+=("$pid")
part="$BYOAI_HOME/blobs/partial/sha256-$SHA.part"
for _ in $(seq 1 200); do
  [ -f "$part" ] && [ "$(size_of "$part")" -gt 200000 ] && break
  sleep 0.05
done
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
got=$(size_of "$part")
[ "$got" -gt 200000 ] && [ "$got" -lt "$SIZE" ] || fail "partial size $got"
no_manifest stories260k
[ ! -e "$BYOAI_HOME/blobs/sha256-$SHA" ] || fail "an unverified blob got its name"
expect_exit 0 "$BYOAI_BIN" install stories260k -q
grep -Eq "^GET /blobs/sha256-$SHA range=bytes=([0-9]+)-" "$REG_LOG" || fail "no Range request: $(cat "$REG_LOG")"
start=$(sed -n "s/^GET \/blobs\/sha256-$SHA range=bytes=\([0-9]*\)-.*/\1/p" "$REG_LOG" | tail -1)
[ "$start" -ge "$got" ] || fail "resumed at $start, had $got"
[ "$(sha_of "$BYOAI_HOME/blobs/sha256-$SHA")" = "$SHA" ] || fail "resumed file does not verify"
[ ! -e "$part" ] || fail "partial file left behind"
expect_exit 0 "$BYOAI_BIN" run stories260k -p "Once upon a time" -n 5 --temp 0
pass "install resumed with Range after kill -9 (from byte $start of $SIZE) and verified"

# a wrong sha256 never becomes an installed model
expect_exit 1 "$BYOAI_BIN" install badsum
grep -q "does not match its checksum" "$T/err" || fail "checksum message: $(cat "$T/err")"
grep -q "nothing was installed" "$T/err" || fail "checksum message: $(cat "$T/err")"
no_manifest badsum
[ ! -e "$BYOAI_HOME/blobs/sha256-$BAD" ] && [ ! -e "$BYOAI_HOME/blobs/partial/sha256-$BAD.part" ] || fail "bad file kept"
expect_exit 1 "$BYOAI_BIN" run badsum -p x
expect_exit 1 "$BYOAI_BIN" install badsize
grep -q "more than the 1000 B the index declares" "$T/err" || fail "size message: $(cat "$T/err")"
no_manifest badsize
pass "a wrong sha256 or size never becomes an installed model"

# 404: a clear error, no retries, nothing installed
n0=$(count_gets "/blobs/sha256-$BAD")
expect_exit 1 "$BYOAI_BIN" install missing
grep -q "HTTP 404" "$T/err" && grep -q "does not have this file" "$T/err" || fail "404 message: $(cat "$T/err")"
[ "$(count_gets "/blobs/sha256-$BAD")" = "$((n0 + 1))" ] || fail "404 was retried"
no_manifest missing
expect_exit 1 "$BYOAI_BIN" install no-such-model
grep -q "has no model or bundle named 'no-such-model'" "$T/err" || fail "unknown model: $(cat "$T/err")"
pass "404 and unknown names"

# a server that stops sending halfway: noticed at BYOAI_STALL_SECONDS (not
# several times later), resumed with Range
t0=$(date +%s%N)
expect_exit 0 env BYOAI_LOG=warn BYOAI_STALL_SECONDS=2 "$BYOAI_BIN" install stalls -q
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q "stalled at .*no data for 2 s" "$T/err" || fail "stall message: $(cat "$T/err")"
grep -Eq "^GET /cdn/stall.gguf range=bytes=[1-9][0-9]*-" "$T/hub.log" || fail "stall: no Range retry: $(cat "$T/hub.log")"
[ "$ms" -ge 2000 ] && [ "$ms" -lt 4500 ] || fail "a 2 s stall took $ms ms to notice and resume"
[ "$(sha_of "$BYOAI_HOME/blobs/sha256-$STSHA")" = "$STSHA" ] || fail "stall: result does not verify"
pass "a stalled download noticed after BYOAI_STALL_SECONDS=2 and resumed ($ms ms in all)"

# an index request that gets no answer at all: the stall limit applies too
t0=$(date +%s%N)
expect_exit 1 env BYOAI_STALL_SECONDS=2 BYOAI_HOME="$T/home-silent" BYOAI_REGISTRY="$HUB_URL/silent/" "$BYOAI_BIN" search
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q "no data for 2 s" "$T/err" || fail "silent index: $(cat "$T/err")"
[ "$ms" -lt 4500 ] || fail "a silent index server held the client $ms ms"
pass "an index server that never answers: given up after BYOAI_STALL_SECONDS ($ms ms)"

# a redirect to file:// is refused at once: a clear error, no retries
expect_exit 1 "$BYOAI_BIN" install tofile
grep -q "redirected the download of .* to file:///etc/passwd" "$T/err" && grep -q "only to http:// and https://" "$T/err" \
  || fail "file:// redirect message: $(cat "$T/err")"
[ "$(grep -c "^GET /tofile/" "$T/hub.log")" = 1 ] || fail "the file:// redirect was retried: $(grep /tofile/ "$T/hub.log")"
! grep -q "retrying" "$T/err" || fail "retried: $(cat "$T/err")"
no_manifest tofile
expect_exit 1 env BYOAI_HOME="$T/home-tofile" BYOAI_REGISTRY="$HUB_URL/tofile/" "$BYOAI_BIN" search
grep -q "redirected to file:///etc/passwd" "$T/err" || fail "index file:// redirect: $(cat "$T/err")"
pass "a redirect to file:// is a permanent error, not retried"

# two concurrent installs of one model share one download
export BYOAI_HOME="$T/home2"
n0=$(count_gets "/blobs/sha256-$SHA")
"$BYOAI_BIN" install stories260k --max-rate 600K -q >"$T/c1.out" 2>"$T/c1.err" & p1=$!
"$BYOAI_BIN" install stories260k --max-rate 600K -q >"$T/c2.out" 2>"$T/c2.err" & p2=$!
PIDS+=("$p1" "$p2")
wait "$p1" || fail "first concurrent install: $(cat "$T/c1.err")"
wait "$p2" || fail "second concurrent install: $(cat "$T/c2.err")"
[ "$(count_gets "/blobs/sha256-$SHA")" = "$((n0 + 1))" ] || fail "downloaded $(( $(count_gets "/blobs/sha256-$SHA") - n0 )) times"
[ "$(sha_of "$BYOAI_HOME/blobs/sha256-$SHA")" = "$SHA" ] || fail "concurrent result does not verify"
expect_exit 0 "$BYOAI_BIN" list --json
json_check "$T/out" 'assert [m["name"] for m in d] == ["stories260k"]'
pass "two concurrent installs, one download"

# on a terminal: a progress bar with bytes, rate and ETA; --quiet: nothing
export BYOAI_HOME="$T/home-tty"
script -qec "$BYOAI_BIN install stories260k --max-rate 1M" /dev/null >"$T/tty.out" 2>&1 || fail "tty install: $(cat "$T/tty.out")"
grep -q $'\r'"downloading stories260k:f32 .*\[=*>* *\] .*%.*/s ETA" "$T/tty.out" || fail "no progress bar: $(cat -v "$T/tty.out")"
grep -q "installed stories260k:f32" "$T/tty.out" || fail "tty install output: $(cat -v "$T/tty.out")"
export BYOAI_HOME="$T/home-tty2"
script -qec "$BYOAI_BIN install stories260k --quiet" /dev/null >"$T/tty.out" 2>&1 || fail "tty quiet install"
[ ! -s "$T/tty.out" ] || fail "--quiet printed: $(cat -v "$T/tty.out")"
pass "a progress bar on a terminal, nothing with --quiet"

# a full disk: the store's size cap
export BYOAI_HOME="$T/home3"
expect_exit 1 env BYOAI_STORE_MAX_BYTES=500K "$BYOAI_BIN" install stories260k
grep -q "not enough disk space" "$T/err" && grep -q "BYOAI_STORE_MAX_BYTES" "$T/err" || fail "cap message: $(cat "$T/err")"
no_manifest stories260k
[ -z "$(ls "$BYOAI_HOME/blobs/partial" | grep -v lock)" ] || fail "partial left: $(ls "$BYOAI_HOME/blobs/partial")"
expect_exit 0 env BYOAI_STORE_MAX_BYTES=2M "$BYOAI_BIN" install small -q
pass "store size cap: clear error, nothing half-installed"

# a really full disk: a small tmpfs (needs mount, i.e. root)
mkdir -p "$T/tiny"
if mount -t tmpfs -o size=2m tmpfs "$T/tiny" 2>/dev/null; then
  CLEANUP_EXTRA="$CLEANUP_EXTRA; umount -l '$T/tiny' 2>/dev/null || true"
  export BYOAI_HOME="$T/tiny/home"
  head -c 1200000 /dev/zero >"$T/tiny/filler1"
  expect_exit 1 "$BYOAI_BIN" install stories260k
  grep -q "not enough disk space" "$T/err" || fail "tmpfs pre-check: $(cat "$T/err")"
  no_manifest stories260k
  rm "$T/tiny/filler1"
  # the disk fills up while downloading
  "$BYOAI_BIN" install stories260k --max-rate 200K -q >/dev/null 2>"$T/full.err" & pid=$!
  PIDS+=("$pid")
  tpart="$BYOAI_HOME/blobs/partial/sha256-$SHA.part"
  for _ in $(seq 1 200); do
    [ -f "$tpart" ] && [ "$(size_of "$tpart")" -gt 100000 ] && break; sleep 0.05
  done
  dd if=/dev/zero of="$T/tiny/filler2" bs=64k 2>/dev/null || true
  if wait "$pid"; then fail "install succeeded on a full disk"; fi
  grep -q "not enough disk space while downloading" "$T/full.err" || fail "ENOSPC message: $(cat "$T/full.err")"
  no_manifest stories260k
  [ ! -e "$tpart" ] || fail "partial kept on a full disk"
  rm -f "$T/tiny/filler2"
  umount -l "$T/tiny"
  pass "full tmpfs: before and during the download"
else
  echo "note: tmpfs check not run (mount not permitted); the size-cap check above covers the full-disk path"
fi

# offline from the cache
export BYOAI_HOME="$T/home"
stop_registry
expect_exit 0 "$BYOAI_BIN" search stories
grep -q "unreachable" "$T/err" || fail "no unreachable note: $(cat "$T/err")"
grep -q "^stories260k" "$T/out" || fail "offline search: $(cat "$T/out")"
expect_exit 0 env BYOAI_OFFLINE=1 "$BYOAI_BIN" list --available --json
json_check "$T/out" 'assert len(d) == 8'
expect_exit 0 "$BYOAI_BIN" show small --offline
expect_exit 0 "$BYOAI_BIN" run stories260k -p "Once" -n 3 --temp 0
expect_exit 0 "$BYOAI_BIN" install stories260k --offline -q
expect_exit 1 "$BYOAI_BIN" install small
grep -q "cannot reach\|interrupted" "$T/err" || fail "offline install message: $(cat "$T/err")"
no_manifest small
expect_exit 1 env BYOAI_HOME="$T/fresh" "$BYOAI_BIN" search stories --offline
grep -q "no cached index" "$T/err" || fail "no cache message: $(cat "$T/err")"
pass "offline: search, list, show, run from the cache; a download fails clearly"
