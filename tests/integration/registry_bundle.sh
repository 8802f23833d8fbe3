#!/usr/bin/env bash
# Bundles: create, run, show, export, import (offline, verified), bundles
# listed in an index: install, update (only changed files), remove.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_registry.sh"

setup_registry
make_gguf "$T/embed1.gguf" 21 4096
expect_exit 0 "$BYOAI_BIN" publish "$T/embed1.gguf" --name synth-embed --registry "$REG_URL" --tags embedding -q
expect_exit 0 "$BYOAI_BIN" install stories260k synth-embed -q

# create and run
expect_exit 0 "$BYOAI_BIN" bundle kit stories260k --role embed=synth-embed --param temp=0 --param n_predict=20 --param mood=calm
grep -q "bundle kit: embed=synth-embed chat=stories260k" "$T/out" || fail "bundle create: $(cat "$T/out")"
expect_exit 0 "$BYOAI_BIN" run kit -p "Once upon a time"
expected_story >"$T/want"
python3 -c 'import sys; s=open(sys.argv[1]).read().rstrip("\n"); w=open(sys.argv[2]).read(); assert len(s) > 60 and w.startswith(s), s' \
  "$T/out" "$T/want" || fail "bundle run (temp 0 from its parameters): $(cat "$T/out")"
grep -q "generation 20 tokens" "$T/err" || fail "n_predict from the bundle not used: $(cat "$T/err")"
expect_exit 0 "$BYOAI_BIN" run kit -p "Once upon a time" -n 3
grep -q "generation 3 tokens" "$T/err" || fail "-n on the command line must win: $(cat "$T/err")"
expect_exit 0 "$BYOAI_BIN" bundle kit2 stories260k --system "Once upon a time, there was a cat." --param temp=0 --param n_predict=8
expect_exit 0 "$BYOAI_BIN" run kit2 -p "The"
with_system=$(sed -n 's/.*| prompt \([0-9]*\) tokens.*/\1/p' "$T/err")
expect_exit 0 "$BYOAI_BIN" run stories260k -p "The" -n 1
without=$(sed -n 's/.*| prompt \([0-9]*\) tokens.*/\1/p' "$T/err")
[ "$with_system" -gt "$without" ] || fail "system prompt not fed ($with_system vs $without tokens)"
expect_exit 0 "$BYOAI_BIN" show kit --json
json_check "$T/out" 'i=d["installed"]; assert i["kind"]=="bundle" and sorted(f["role"] for f in i["files"])==["chat","embed"] and i["params"]=={"mood":"calm","n_predict":20,"temp":0}'
expect_exit 0 "$BYOAI_BIN" list --json
json_check "$T/out" 'k={m["name"]:m for m in d}; assert k["kit"]["kind"]=="bundle" and k["kit"]["size"]==1185376 + '"$(size_of "$T/embed1.gguf")"' == k["stories260k"]["size"] + k["synth-embed"]["size"]'  # a bundle is all its files
expect_exit 1 "$BYOAI_BIN" bundle stories260k synth-embed
grep -q "is an installed model" "$T/err" || fail "bundle over a model: $(cat "$T/err")"
expect_exit 1 "$BYOAI_BIN" bundle bad kit
grep -q "is a bundle" "$T/err" || fail "bundle of a bundle: $(cat "$T/err")"
expect_exit 1 "$BYOAI_BIN" bundle bad not-installed
expect_exit 1 "$BYOAI_BIN" bundle bad --role "Bad Role=stories260k"
expect_exit 1 "$BYOAI_BIN" bundle bad --role chat=stories260k --role chat=synth-embed
pass "bundle create and run (its parameters as defaults, its system prompt fed first)"

# a bundle keeps its files when its models are removed
expect_exit 0 "$BYOAI_BIN" remove stories260k synth-embed
expect_exit 0 "$BYOAI_BIN" gc --json
json_check "$T/out" 'assert d["blobs_removed"] == 0'
expect_exit 0 "$BYOAI_BIN" run kit -p "Once" -n 3
pass "a bundle's files survive removing its models and gc"

# export, then import on a machine without network
expect_exit 0 "$BYOAI_BIN" bundle export kit -o "$T/kit.byoai"
tar tf "$T/kit.byoai" >"$T/list" || fail "the archive is not a tar file"
[ "$(head -1 "$T/list")" = manifest.json ] && [ "$(grep -c '^blobs/sha256-' "$T/list")" = 2 ] || fail "archive: $(cat "$T/list")"
stop_registry
export BYOAI_HOME="$T/offline" BYOAI_OFFLINE=1
expect_exit 0 "$BYOAI_BIN" bundle import "$T/kit.byoai"
grep -q "imported kit \[bundle\]" "$T/out" || fail "import: $(cat "$T/out")"
expect_exit 0 "$BYOAI_BIN" run kit -p "Once upon a time"
python3 -c 'import sys; s=open(sys.argv[1]).read().rstrip("\n"); w=open(sys.argv[2]).read(); assert len(s) > 60 and w.startswith(s), s' \
  "$T/out" "$T/want" || fail "imported bundle run: $(cat "$T/out")"
expect_exit 0 "$BYOAI_BIN" bundle import "$T/kit.byoai" --name kit-copy
expect_exit 0 "$BYOAI_BIN" list --json
json_check "$T/out" 'assert sorted(m["name"] for m in d) == ["kit", "kit-copy"]'
pass "bundle export, and import offline"

# hostile archives: nothing is installed
export BYOAI_HOME="$T/victim"
python3 - "$T/kit.byoai" "$T" <<'PY'
import sys, tarfile, io
src, t = sys.argv[1], sys.argv[2]
data = bytearray(open(src, "rb").read())
# 1. a flipped byte inside the first blob's data (header at 512 * k, data after it)
bad = bytearray(data)
with tarfile.open(src) as tf:
    m = [x for x in tf.getmembers() if x.name.startswith("blobs/")][0]
    bad[m.offset_data + 100] ^= 0xff
open(t + "/flipped.byoai", "wb").write(bad)
# 2. truncated
open(t + "/truncated.byoai", "wb").write(data[: len(data) // 2])
# 3. an extra entry that climbs out
with tarfile.open(src) as tf, tarfile.open(t + "/evil.byoai", "w", format=tarfile.USTAR_FORMAT) as out:
    for m in tf.getmembers():
        out.addfile(m, tf.extractfile(m))
        if m.name == "manifest.json":
            e = tarfile.TarInfo("../../evil"); payload = b"owned"; e.size = len(payload)
            out.addfile(e, io.BytesIO(payload))
# 4. a symlink entry
with tarfile.open(src) as tf, tarfile.open(t + "/symlink.byoai", "w", format=tarfile.USTAR_FORMAT) as out:
    for m in tf.getmembers():
        out.addfile(m, tf.extractfile(m))
        if m.name == "manifest.json":
            e = tarfile.TarInfo("blobs/sha256-" + "0" * 64); e.type = tarfile.SYMTYPE; e.linkname = "/etc/passwd"
            out.addfile(e)
# 5. not an archive
open(t + "/junk.byoai", "wb").write(b"\x00junk" * 300)
PY
for a in flipped truncated evil symlink junk; do
  expect_exit 1 "$BYOAI_BIN" bundle import "$T/$a.byoai"
  grep -q "cannot import\|not a byoai bundle" "$T/err" || fail "$a: $(cat "$T/err")"
  [ -z "$(ls "$BYOAI_HOME/manifests")" ] || fail "$a: something was installed"
done
expect_exit 1 "$BYOAI_BIN" bundle import "$T/evil.byoai"
grep -q "unexpected entry '../../evil'" "$T/err" || fail "evil: $(cat "$T/err")"
expect_exit 1 "$BYOAI_BIN" bundle import "$T/symlink.byoai"
grep -q "unexpected entry 'blobs/sha256-0*' (type '2')" "$T/err" || fail "symlink: $(cat "$T/err")"
# (a fresh store: a blob the store already has is not taken from the archive)
expect_exit 1 env BYOAI_HOME="$T/victim2" "$BYOAI_BIN" bundle import "$T/flipped.byoai"
grep -q "does not match its checksum" "$T/err" || fail "flipped: $(cat "$T/err")"
[ ! -e "$T/evil" ] && [ ! -e "$T/../evil" ] || fail "an entry escaped"
pass "corrupt, truncated and path-climbing archives are refused"

# a bundle listed in an index: install, update only what changed, remove
unset BYOAI_OFFLINE
export BYOAI_HOME="$T/home"
start_registry "$REG_DIR"
export BYOAI_REGISTRY="$REG_URL"
python3 - "$REG_DIR/index.json" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p))
d["bundles"] = [{"name": "story-kit", "description": "stories and embeddings", "revision": "1", "updated": "2024-01-01",
                 "system": "", "params": {"temp": 0, "n_predict": 12},
                 "members": [{"role": "chat", "model": "stories260k"}, {"role": "embed", "model": "synth-embed"}]}]
json.dump(d, open(p, "w"), indent=2)
PY
expect_exit 0 "$BYOAI_BIN" registry sign "$REG_DIR"
export BYOAI_HOME="$T/home4"
expect_exit 0 "$BYOAI_BIN" search kit --json
json_check "$T/out" 'assert d[0]["name"] == "story-kit" and d[0]["kind"] == "bundle"'
expect_exit 0 "$BYOAI_BIN" install story-kit --dry-run
grep -q "would install story-kit from default, revision 1" "$T/out" && grep -q "(2 files, 0 already here)" "$T/out" || fail "bundle dry run: $(cat "$T/out")"
expect_exit 0 "$BYOAI_BIN" install story-kit -q
expect_exit 0 "$BYOAI_BIN" run story-kit -p "Once upon a time"
grep -q "generation 12 tokens" "$T/err" || fail "index bundle params: $(cat "$T/err")"
make_gguf "$T/embed2.gguf" 22 4096
expect_exit 0 env BYOAI_HOME="$T/home" "$BYOAI_BIN" publish "$T/embed2.gguf" --name synth-embed --registry "$REG_URL" -q
expect_exit 0 "$BYOAI_BIN" update --check --json
json_check "$T/out" 'assert d[0]["name"] == "story-kit" and d[0]["outdated"] and d[0]["changed_files"] == 1'
before=$(count_gets /blobs/)
expect_exit 0 "$BYOAI_BIN" update story-kit
grep -q "updated story-kit .*1 changed file" "$T/out" || fail "bundle update: $(cat "$T/out")"
[ "$(count_gets /blobs/)" = "$((before + 1))" ] || fail "bundle update fetched $(( $(count_gets /blobs/) - before )) files"
grep -q "^GET /blobs/sha256-$(sha_of "$T/embed2.gguf")" "$REG_LOG" || fail "bundle update fetched the wrong file"
expect_exit 0 "$BYOAI_BIN" run story-kit -p "Once" -n 2
expect_exit 0 "$BYOAI_BIN" remove story-kit
expect_exit 0 "$BYOAI_BIN" gc --json
json_check "$T/out" 'assert d["blobs_removed"] == 3 and d["blobs_kept"] == 0'
pass "an index bundle: install, update only the changed file, remove"
