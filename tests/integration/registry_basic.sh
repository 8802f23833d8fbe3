#!/usr/bin/env bash
# The package-manager cycle against a real `byoai registry serve`: publish,
# search, list, show, install, run, update, remove, gc; keys; name tricks.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_registry.sh"

setup_registry
make_gguf "$T/syn1.gguf" 1 4096
expect_exit 0 "$BYOAI_BIN" publish "$T/syn1.gguf" --name synth-chat --registry "$REG_URL" \
  --description "A synthetic chat model for tests" --tags chat,test
grep -q "published synth-chat:f32 .* as alice, revision 1" "$T/out" || fail "publish output: $(cat "$T/out")"
grep -q "published synth-chat:f32" "$REG_LOG" || fail "server did not log the publish"
pass "publish with a known key"

# an unknown key is refused, and nothing changes
cp "$REG_DIR/index.json" "$T/index.before"
expect_exit 0 env BYOAI_HOME="$T/mallory" "$BYOAI_BIN" key generate mallory
expect_exit 1 env BYOAI_HOME="$T/mallory" "$BYOAI_BIN" publish "$T/syn1.gguf" --name evil --registry "$REG_URL"
grep -q "does not know publisher 'mallory'" "$T/err" || fail "unknown key message: $(cat "$T/err")"
# a known name with someone else's key: the signature does not verify
mkdir -p "$T/mallory2/keys"
expect_exit 0 env BYOAI_HOME="$T/mallory2" "$BYOAI_BIN" key generate alice
expect_exit 1 env BYOAI_HOME="$T/mallory2" "$BYOAI_BIN" publish "$T/syn1.gguf" --name synth-chat --registry "$REG_URL"
grep -q "signature does not verify" "$T/err" || fail "forged key message: $(cat "$T/err")"
cmp -s "$T/index.before" "$REG_DIR/index.json" || fail "a refused publish changed the index"
# a second publisher cannot take alice's name
expect_exit 0 env BYOAI_HOME="$T/bob" "$BYOAI_BIN" key generate bob
"$BYOAI_BIN" registry add-publisher "$REG_DIR" bob "$(env BYOAI_HOME="$T/bob" "$BYOAI_BIN" key show)" >/dev/null
expect_exit 1 env BYOAI_HOME="$T/bob" "$BYOAI_BIN" publish "$T/syn1.gguf" --name synth-chat --registry "$REG_URL"
grep -q "belongs to publisher alice" "$T/err" || fail "ownership message: $(cat "$T/err")"
# no license: refused
make_gguf "$T/nolic.gguf" 5 1024 ""
expect_exit 1 "$BYOAI_BIN" publish "$T/nolic.gguf" --name nolicense --registry "$REG_URL"
grep -q "no license" "$T/err" || fail "license message: $(cat "$T/err")"
# not a GGUF: refused before uploading
head -c 5000 /dev/urandom >"$T/junk.gguf"
expect_exit 1 "$BYOAI_BIN" publish "$T/junk.gguf" --name junk --registry "$REG_URL"
cmp -s "$T/index.before" "$REG_DIR/index.json" || fail "refused publishes changed the index"
pass "publish with an unknown or wrong key, a taken name, no license: refused"

# a large upload that will be refused is refused from its headers: the
# client has its answer at once (long before the 300 MB could be sent at
# 20 MB/s), the server never reads the body, nothing lands in the registry
snapshot() { (cd "$REG_DIR" && find . -printf '%p %s %T@\n' | sort); }
snapshot >"$T/reg.before"
truncate -s 300M "$T/big.bin"
big_put() { # PUBLISHER SIGNATURE EXPECT-HEADER: status, seconds, bytes sent
  curl -s -o "$T/big.resp" -w '%{http_code} %{time_total} %{size_upload}\n' --limit-rate 20M -H "$3" \
    -X PUT --data-binary @"$T/big.bin" -H "X-Byoai-Publisher: $1" -H "X-Byoai-Timestamp: $(date +%s)" \
    -H "X-Byoai-Nonce: $(printf 'c%.0s' $(seq 32))" -H "X-Byoai-Sha256: $(printf 'd%.0s' $(seq 64))" \
    -H 'X-Byoai-Meta: {}' -H "X-Byoai-Signature: $2" "$REG_URL/api/v1/publish/big" || true
}
fast() { python3 -c "import sys; assert float(sys.argv[1]) < 2 and int(sys.argv[2]) < 50e6, sys.argv" "$1" "$2"; }
# as byoai publish sends it (Expect: 100-continue): the refusal, no body byte sent
read -r code secs sent < <(big_put mallory "$(printf '0%.0s' $(seq 128))" 'Expect: 100-continue')
[ "$code" = 403 ] && grep -q "does not know publisher 'mallory'" "$T/big.resp" || fail "unknown publisher: $code $(cat "$T/big.resp")"
[ "$sent" = 0 ] && fast "$secs" "$sent" || fail "the refusal came after $secs s and $sent bytes"
read -r code secs2 sent2 < <(big_put alice "$(printf '0%.0s' $(seq 128))" 'Expect: 100-continue')
[ "$code" = 401 ] && grep -q "signature does not verify" "$T/big.resp" || fail "bad signature: $code $(cat "$T/big.resp")"
[ "$sent2" = 0 ] && fast "$secs2" "$sent2" || fail "the refusal came after $secs2 s and $sent2 bytes"
# a client that sends the body at once: refused as fast (it may see a reset
# instead of the answer if the server closes while it is still sending)
read -r code secs3 sent3 < <(big_put mallory "$(printf '0%.0s' $(seq 128))" 'Expect:')
[ "$code" = 403 ] || [ "$code" = 000 ] || fail "unknown publisher without Expect: $code $(cat "$T/big.resp")"
fast "$secs3" "$sent3" || fail "without Expect, the refusal came after $secs3 s and $sent3 bytes"
[ "$(grep -c "refused before its body (314572800 bytes declared)" "$REG_LOG")" = 3 ] || fail "no early refusal in the log: $(cat "$REG_LOG")"
snapshot >"$T/reg.after"
diff "$T/reg.before" "$T/reg.after" || fail "a refused upload changed the registry directory"
[ -z "$(ls -A "$REG_DIR/tmp")" ] || fail "upload files left in tmp: $(ls "$REG_DIR/tmp")"
rm -f "$T/big.bin"
pass "a 300 MB upload from an unknown publisher or with a bad signature: refused in ${secs}s/${secs2}s/${secs3}s, nothing written"

# search, list --available, show (JSON and text)
expect_exit 0 "$BYOAI_BIN" search story --json
json_check "$T/out" 'assert [m["name"] for m in d] == ["stories260k"] and d[0]["size"] == 1185376 and d[0]["fits"] and not d[0]["installed"]'
expect_exit 0 "$BYOAI_BIN" search chat
grep -q "^synth-chat " "$T/out" || fail "search chat: $(cat "$T/out")"
expect_exit 0 "$BYOAI_BIN" search nothing-like-this
grep -q "no match" "$T/out" || fail "empty search"
expect_exit 0 "$BYOAI_BIN" list --available --json
json_check "$T/out" 'assert sorted(m["name"] for m in d) == ["stories260k", "synth-chat"]'
expect_exit 0 "$BYOAI_BIN" show stories260k --json
json_check "$T/out" 'i=d["index"]; assert d["installed"] is None and i["license"]=="mit" and i["publisher"]=="alice" and i["architecture"]=="llama" and i["parameters"]==292800 and i["recommended_variant"]=="f32" and i["variants"][0]["size"]==1185376'
expect_exit 0 "$BYOAI_BIN" show stories260k
grep -q "recommended" "$T/out" && grep -q "not installed" "$T/out" || fail "show text: $(cat "$T/out")"
pass "search, list --available, show"

# install: dry run first, then for real; the done-means pipeline
expect_exit 0 "$BYOAI_BIN" install stories260k --dry-run
grep -q "would install stories260k:f32 from default, revision 1" "$T/out" || fail "dry run: $(cat "$T/out")"
grep -q "download 1.1 MiB, disk needed 1.1 MiB" "$T/out" || fail "dry run sizes: $(cat "$T/out")"
# the plan says why this variant: RAM and the speed at this machine's (here: given) bandwidth
BYOAI_READ_BW=10G expect_exit 0 "$BYOAI_BIN" install stories260k --dry-run
grep -q "chosen: .*generating about [0-9]* tokens/s at this machine's 10.7 GB/s" "$T/out" || fail "plan reason: $(cat "$T/out")"
[ "$(count_gets /blobs/)" = 0 ] || fail "dry run downloaded"
expect_exit 0 "$BYOAI_BIN" list --json
json_check "$T/out" 'assert d == []'
"$BYOAI_BIN" install stories260k && "$BYOAI_BIN" run stories260k -p "Once upon a time" -n 20 --temp 0 >"$T/story" 2>/dev/null \
  || fail "install && run"
expected_story >"$T/want"
python3 -c 'import sys; s=open(sys.argv[1]).read().rstrip("\n"); w=open(sys.argv[2]).read(); assert len(s) > 60 and w.startswith(s), s' \
  "$T/story" "$T/want" || fail "story differs: $(cat "$T/story")"
pass "byoai install stories260k && byoai run stories260k -p ... -n 20 --temp 0"

expect_exit 0 "$BYOAI_BIN" list --json
json_check "$T/out" 'assert [(m["name"], m["variant"], m["registry"], m["revision"], m["size"]) for m in d] == [("stories260k", "f32", "default", "1", 1185376)]'
[ "$(sha_of "$BYOAI_HOME/blobs/sha256-$(sha_of "$STORIES")")" = "$(sha_of "$STORIES")" ] || fail "blob content"
expect_exit 0 "$BYOAI_BIN" info stories260k --json
json_check "$T/out" 'assert d["layers"] == 5'
expect_exit 0 "$BYOAI_BIN" tokenize stories260k "Once upon a time" --ids
expect_exit 0 "$BYOAI_BIN" install synth-chat:f32 -q
expect_exit 0 "$BYOAI_BIN" show synth-chat
grep -q "installed: variant f32 from default, revision 1" "$T/out" || fail "show installed: $(cat "$T/out")"
pass "installed models: list, info, tokenize, show"

# update: republish synth-chat with new content; --check lists it; update fetches only that file
expect_exit 0 "$BYOAI_BIN" update --check --json
json_check "$T/out" 'assert all(not m["outdated"] for m in d) and len(d) == 2'
make_gguf "$T/syn2.gguf" 2 4096
expect_exit 0 "$BYOAI_BIN" publish "$T/syn2.gguf" --name synth-chat --registry "$REG_URL" -q
before=$(count_gets /blobs/)
expect_exit 0 "$BYOAI_BIN" update --check
grep -q "synth-chat .* 1 -> 2: 1 changed file, download 16.3 KiB" "$T/out" || fail "update --check: $(cat "$T/out")"
[ "$(count_gets /blobs/)" = "$before" ] || fail "update --check downloaded"
expect_exit 0 "$BYOAI_BIN" update -q
[ "$(count_gets /blobs/)" = "$((before + 1))" ] || fail "update fetched $(( $(count_gets /blobs/) - before )) files, want 1"
grep -q "^GET /blobs/sha256-$(sha_of "$T/syn2.gguf")" "$REG_LOG" || fail "update fetched the wrong file"
expect_exit 0 "$BYOAI_BIN" list --json
json_check "$T/out" 'm={x["name"]:x for x in d}; assert m["synth-chat"]["revision"]=="2" and m["stories260k"]["revision"]=="1"'
[ "$(jq -r 2>/dev/null; true)" = "" ]
expect_exit 0 "$BYOAI_BIN" update
grep -q "stories260k: up to date" "$T/out" && grep -q "synth-chat: up to date" "$T/out" || fail "second update: $(cat "$T/out")"
pass "update --check and update (only the changed file)"

# remove and gc
old="$BYOAI_HOME/blobs/sha256-$(sha_of "$T/syn1.gguf")"
[ -f "$old" ] || fail "the old file should stay until gc"
expect_exit 0 "$BYOAI_BIN" remove synth-chat
grep -q "run \`byoai gc\` to reclaim" "$T/out" || fail "remove output: $(cat "$T/out")"
expect_exit 1 "$BYOAI_BIN" run synth-chat -p x
grep -q "is not installed" "$T/err" || fail "run removed: $(cat "$T/err")"
expect_exit 0 "$BYOAI_BIN" gc --dry-run --json
json_check "$T/out" 'assert d["blobs_removed"] == 2 and d["blobs_kept"] == 1'
[ -f "$old" ] || fail "gc --dry-run removed a file"
echo partial >"$BYOAI_HOME/blobs/partial/sha256-$(printf 'a%.0s' $(seq 64)).part"
expect_exit 0 "$BYOAI_BIN" gc --json
json_check "$T/out" 'assert d["blobs_removed"] == 2 and d["partials_removed"] == 1 and d["blobs_kept"] == 1 and d["kept_bytes"] == 1185376'
[ ! -e "$old" ] || fail "gc kept an unused file"
ls "$BYOAI_HOME/blobs/partial" | grep -q . && fail "gc kept partial files"
expect_exit 0 "$BYOAI_BIN" run stories260k -p "Once" -n 3 --temp 0
expect_exit 1 "$BYOAI_BIN" remove synth-chat
grep -q "not installed" "$T/err" || fail "remove twice: $(cat "$T/err")"
pass "remove and gc"

# import: a local file without a second copy (a hard link on the same file system)
cp "$STORIES" "$T/mine.gguf"
expect_exit 0 "$BYOAI_BIN" import "$T/mine.gguf" --name mine:custom
grep -Eq "already in the store|hard-linked|reflinked" "$T/out" || fail "import: $(cat "$T/out")"
make_gguf "$T/other.gguf" 9 2048
expect_exit 0 "$BYOAI_BIN" import "$T/other.gguf" --name other
grep -Eq "hard-linked|reflinked" "$T/out" || fail "import did not link: $(cat "$T/out")"
[ "$(stat -c %i "$T/other.gguf")" = "$(stat -c %i "$BYOAI_HOME/blobs/sha256-$(sha_of "$T/other.gguf")")" ] \
  || grep -q reflinked "$T/out" || fail "not a hard link"
expect_exit 0 "$BYOAI_BIN" run mine -p "Once" -n 3 --temp 0
expect_exit 0 "$BYOAI_BIN" update --check --json
json_check "$T/out" 'm={x["name"]:x for x in d}; assert not m["other"]["outdated"] and "imported" in m["other"]["note"]'
expect_exit 1 "$BYOAI_BIN" import "$T/junk.gguf" --name junk
grep -q "not a GGUF" "$T/err" || fail "import junk: $(cat "$T/err")"
pass "import (linked, not copied), junk refused"

# names with path tricks are refused everywhere
for bad in "../evil" "a/b" "..foo" ".hidden" "UPPER" "a:b:c" "x/../../y" "$(printf 'a\tb')"; do
  expect_exit 1 "$BYOAI_BIN" install "$bad"; grep -q "invalid name" "$T/err" || fail "install '$bad': $(cat "$T/err")"
  expect_exit 2 "$BYOAI_BIN" import "$STORIES" --name "$bad"
  expect_exit 1 "$BYOAI_BIN" publish "$T/syn1.gguf" --name "$bad" --registry "$REG_URL"
  expect_exit 1 "$BYOAI_BIN" bundle "$bad" stories260k
  expect_exit 1 "$BYOAI_BIN" remove "$bad"
done
expect_exit 1 "$BYOAI_BIN" run "../evil" -p x
expect_exit 1 "$BYOAI_BIN" install -- -rf; grep -q "must start with a letter or digit" "$T/err" || fail "install -rf"
# the server refuses them too, whatever the client does
code=$(curl -s -o "$T/resp" -w '%{http_code}' -X PUT --data-binary @"$T/syn1.gguf" "$REG_URL/api/v1/publish/..%2F..%2Fevil")
[ "$code" = 400 ] || fail "server accepted a bad name: $code $(cat "$T/resp")"
code=$(curl -s -o /dev/null -w '%{http_code}' "$REG_URL/keys/registry.key")
[ "$code" = 404 ] || fail "the registry key is served: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --path-as-is "$REG_URL/blobs/../keys/registry.key")
[ "$code" = 404 ] || fail "path traversal served: $code"
ls "$BYOAI_HOME/manifests" | sort | tr '\n' ' ' | grep -qx "mine.json other.json stories260k.json " \
  || fail "unexpected manifests: $(ls "$BYOAI_HOME/manifests")"
pass "names with ../ and other path tricks refused"

# a registry key: a signed index verifies; a tampered one is refused and the cache kept
expect_exit 0 "$BYOAI_BIN" search story
cp "$REG_DIR/index.json" "$T/good.json"
sed 's/A 260K-parameter/An EVIL/' "$T/good.json" >"$REG_DIR/index.json"
expect_exit 1 "$BYOAI_BIN" search story
grep -q "not signed by its configured key" "$T/err" || fail "tampered index: $(cat "$T/err")"
expect_exit 0 env BYOAI_OFFLINE=1 "$BYOAI_BIN" search story
grep -q "A 260K-parameter" "$T/out" || fail "cache lost: $(cat "$T/out")"
expect_exit 1 env BYOAI_REGISTRY_KEY="$(cut -d' ' -f2 "$T/alice.pub")" "$BYOAI_BIN" search story
cp "$T/good.json" "$REG_DIR/index.json"
expect_exit 0 "$BYOAI_BIN" registry sign "$REG_DIR"
expect_exit 0 "$BYOAI_BIN" search story
pass "index signature verified with the configured key"

# several registries by name: the config file, searched together; the env override replaces them
U=(env -u BYOAI_REGISTRY -u BYOAI_REGISTRY_KEY)
expect_exit 0 "${U[@]}" "$BYOAI_BIN" registry add lan "$REG_URL" --key "$(cat "$T/regpub")"
expect_exit 0 "${U[@]}" "$BYOAI_BIN" registry list --json
json_check "$T/out" 'assert [(r["name"], r["default"], len(r["key"])) for r in d] == [("default", True, 0), ("lan", False, 64)] and d[0]["url"] == "builtin:"'
expect_exit 0 "${U[@]}" "$BYOAI_BIN" search stories260k --json
json_check "$T/out" 'assert sorted(m["registry"] for m in d if m["name"] == "stories260k") == ["default", "lan"]'
expect_exit 0 "${U[@]}" "$BYOAI_BIN" show stories260k --registry lan --json
json_check "$T/out" 'assert d["index"]["publisher"] == "alice"'
expect_exit 0 "${U[@]}" "$BYOAI_BIN" registry add lan "$REG_URL" --default
expect_exit 0 "${U[@]}" "$BYOAI_BIN" install synth-chat --dry-run
grep -q "from lan" "$T/out" || fail "default registry not used: $(cat "$T/out")"
expect_exit 1 "${U[@]}" "$BYOAI_BIN" install synth-chat --registry nowhere
grep -q "no registry named 'nowhere'" "$T/err" || fail "unknown registry: $(cat "$T/err")"
expect_exit 2 "${U[@]}" "$BYOAI_BIN" registry add lan
expect_exit 1 "${U[@]}" "$BYOAI_BIN" registry add evil "ftp://x/"
expect_exit 1 "${U[@]}" "$BYOAI_BIN" registry add local "http://x/"
expect_exit 0 "${U[@]}" "$BYOAI_BIN" registry remove lan
expect_exit 0 "${U[@]}" "$BYOAI_BIN" registry list --json
json_check "$T/out" 'assert [r["name"] for r in d] == ["default"]'
pass "several registries by name: config, default, searched together"
