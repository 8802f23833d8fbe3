#!/usr/bin/env bash
# Installs straight from the Hugging Face Hub (a local stand-in that answers
# like the Hub, X-Linked-Etag and all), and downloads from a server that
# drops the connection or stalls.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_registry.sh"

HUB="$T/hub"; mkdir -p "$HUB"
cp "$STORIES" "$HUB/stories.gguf"
make_gguf "$T/base.gguf" 7 65536
cp "$T/base.gguf" "$HUB/model.gguf"; cp "$T/base.gguf" "$HUB/Other-Model-Q8_0.gguf"
seed=10
for n in nolfs liar drop stall dead; do make_gguf "$HUB/$n.gguf" $seed 65536; seed=$((seed + 1)); done
python3 "$(dirname "$0")/fake_hub.py" "$HUB" "$T/hub.port" "$T/hub.log" 2>"$T/hub.err" &
PIDS+=("$!")
for _ in $(seq 1 100); do [ -s "$T/hub.port" ] && break; sleep 0.05; done
[ -s "$T/hub.port" ] || fail "fake hub did not start: $(cat "$T/hub.err")"
export BYOAI_HF_ENDPOINT="http://127.0.0.1:$(cat "$T/hub.port")"
SHA=$(sha_of "$T/base.gguf")

expect_exit 0 "$BYOAI_BIN" install hf:test/repo/model.gguf
grep -q "installed model (256.3 KiB)" "$T/out" || fail "hf install: $(cat "$T/out") $(cat "$T/err")"
grep -q "^HEAD /test/repo/resolve/main/model.gguf" "$T/hub.log" || fail "no HEAD to the Hub"
[ -f "$BYOAI_HOME/blobs/sha256-$SHA" ] || fail "blob not stored under the Hub's sha256"
expect_exit 0 "$BYOAI_BIN" list --json
json_check "$T/out" 'assert [(m["name"], m["registry"], m["revision"], m["sha256"]) for m in d] == [("model", "hf", "0123456789abcdef0123456789abcdef01234567", "'"$SHA"'")]'
expect_exit 0 "$BYOAI_BIN" install hf:test/repo@v1.0/Other-Model-Q8_0.gguf -q
grep -q "^HEAD /test/repo/resolve/v1.0/Other-Model-Q8_0.gguf" "$T/hub.log" || fail "revision not used"
expect_exit 0 "$BYOAI_BIN" show other-model-q8_0
expect_exit 0 "$BYOAI_BIN" install hf:test/repo/stories.gguf --name tiny-stories -q
expect_exit 0 "$BYOAI_BIN" run tiny-stories -p "Once upon a time" -n 5 --temp 0
pass "hf:OWNER/REPO/FILE installs, verified against X-Linked-Etag"

expect_exit 1 "$BYOAI_BIN" install hf:test/repo/liar.gguf
grep -q "does not match its checksum" "$T/err" || fail "liar: $(cat "$T/err")"
[ ! -e "$BYOAI_HOME/manifests/liar.json" ] || fail "liar installed"
expect_exit 1 "$BYOAI_BIN" install hf:test/repo/nolfs.gguf
grep -q "no X-Linked-Etag" "$T/err" || fail "nolfs: $(cat "$T/err")"
expect_exit 1 "$BYOAI_BIN" install hf:test/repo/missing.gguf
grep -q "the Hub has no file" "$T/err" || fail "missing: $(cat "$T/err")"
for bad in "hf:test/repo/notgguf.bin" "hf:../../etc/passwd.gguf" "hf:test/repo/a/../../b.gguf" "hf:onlyowner"; do
  expect_exit 1 "$BYOAI_BIN" install "$bad"
done
expect_exit 1 "$BYOAI_BIN" install hf:test/repo/model.gguf --name ../evil
ls "$BYOAI_HOME/manifests" | sort | tr '\n' ' ' | grep -qx "model.json other-model-q8_0.json tiny-stories.json " \
  || fail "manifests: $(ls "$BYOAI_HOME/manifests")"
pass "a lying, non-LFS or missing Hub file is refused"

# an index entry without sha256, verified by the Hub
mkdir -p "$T/idx"
cat >"$T/idx/index.json" <<JSON
{"schema_version": 1, "models": [{"name": "hubbed", "description": "verified by the hub", "architecture": "llama",
 "license": "mit", "parameters": 1, "revision": "1", "updated": "2024-01-01",
 "variants": [{"name": "f32", "quantization": "F32", "approx_size": 60000, "url": "hf:test/repo/model.gguf"},
              {"name": "bad", "quantization": "F32", "approx_size": 60000, "url": "$BYOAI_HF_ENDPOINT/test/repo/resolve/main/liar.gguf"}]}]}
JSON
expect_exit 0 "$BYOAI_BIN" index validate "$T/idx/index.json"
expect_exit 0 env BYOAI_REGISTRY="file://$T/idx/" "$BYOAI_BIN" install hubbed:f32 --dry-run
grep -q "download 0 B" "$T/out" || fail "already-present blob not seen: $(cat "$T/out")"
expect_exit 0 env BYOAI_REGISTRY="file://$T/idx/" "$BYOAI_BIN" install hubbed:f32 -q
expect_exit 1 env BYOAI_REGISTRY="file://$T/idx/" "$BYOAI_BIN" install hubbed:bad
grep -q "does not match its checksum" "$T/err" || fail "hubbed bad: $(cat "$T/err")"
pass "an index variant without sha256 is verified by the Hub's X-Linked-Etag"

# update of a Hub install: the Hub's file changed
expect_exit 0 "$BYOAI_BIN" update --check model
grep -q "1 of 1 up to date" "$T/out" || fail "hf update check: $(cat "$T/out")"
make_gguf "$HUB/model.gguf" 8 65536
expect_exit 0 "$BYOAI_BIN" update --check --json model
json_check "$T/out" 'assert d[0]["outdated"] and d[0]["changed_files"] == 1'
expect_exit 0 "$BYOAI_BIN" update model -q
[ -f "$BYOAI_HOME/blobs/sha256-$(sha_of "$HUB/model.gguf")" ] || fail "hf update did not fetch the new file"
pass "update of a Hub install follows the Hub's file"

# a server that drops the connection halfway: retried with Range, verified
export BYOAI_STALL_SECONDS=1
expect_exit 0 "$BYOAI_BIN" install hf:test/repo/drop.gguf
grep -q "connection lost" "$T/err" || fail "no retry message: $(cat "$T/err")"
grep -Eq "^GET /cdn/drop.gguf range=bytes=[1-9][0-9]*-" "$T/hub.log" || fail "drop: no Range retry: $(cat "$T/hub.log")"
D=$(sha_of "$HUB/drop.gguf")
[ "$(sha_of "$BYOAI_HOME/blobs/sha256-$D")" = "$D" ] || fail "drop: result does not verify"
pass "connection dropped mid-download: resumed with Range"

# a server that stalls: the stall is noticed, retried with Range
t0=$(date +%s)
expect_exit 0 "$BYOAI_BIN" install hf:test/repo/stall.gguf -q
grep -Eq "^GET /cdn/stall.gguf range=bytes=[1-9][0-9]*-" "$T/hub.log" || fail "stall: no Range retry"
[ $(( $(date +%s) - t0 )) -lt 20 ] || fail "stall took too long"
pass "stalled download: noticed after BYOAI_STALL_SECONDS, resumed"

# a server that always drops: give up with a clear error, keep the partial file for later, gc removes it
expect_exit 1 "$BYOAI_BIN" install hf:test/repo/dead.gguf --retries 2
grep -q "gave up after 3 attempts" "$T/err" || fail "dead: $(cat "$T/err")"
[ ! -e "$BYOAI_HOME/manifests/dead.json" ] || fail "dead installed"
ls "$BYOAI_HOME/blobs/partial/" | grep -q '\.part$' || fail "partial download not kept for a resume"
expect_exit 0 "$BYOAI_BIN" gc --json
json_check "$T/out" 'assert d["partials_removed"] == 1'
pass "a server that keeps dropping: clear error after the retries; gc reclaims the partial file"
