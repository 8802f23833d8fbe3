#!/usr/bin/env bash
# The index cache against a real `byoai registry serve`: --refresh, a
# publish invalidating the publisher's own cached copy, "not found" saying
# how old the cached index is, `update --check` when the registry is gone;
# and what the store and `show` look like afterwards (no lock files left,
# parameters, bundle sizes, Q4_K_M variants).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_registry.sh"
export BYOAI_INDEX_TTL=3600   # a cached index is used as is for an hour

setup_registry
idx_gets() { count_gets "/index.json "; }   # not /index.json.sig

# --refresh asks the registry even though the cached index is fresh
expect_exit 0 "$BYOAI_BIN" search story
n=$(idx_gets)
expect_exit 0 "$BYOAI_BIN" search story
[ "$(idx_gets)" = "$n" ] || fail "a fresh cached index was fetched again"
expect_exit 0 "$BYOAI_BIN" search story --refresh
[ "$(idx_gets)" = $((n + 1)) ] || fail "search --refresh did not fetch the index"
expect_exit 0 "$BYOAI_BIN" show stories260k --refresh
[ "$(idx_gets)" = $((n + 2)) ] || fail "show --refresh did not fetch the index"
expect_exit 0 "$BYOAI_BIN" install stories260k --dry-run --refresh
[ "$(idx_gets)" = $((n + 3)) ] || fail "install --refresh did not fetch the index"
expect_exit 0 "$BYOAI_BIN" list --available --refresh
[ "$(idx_gets)" = $((n + 4)) ] || fail "list --available --refresh did not fetch the index"
expect_exit 2 "$BYOAI_BIN" search story --refresh --offline
grep -q -- "--refresh needs the network" "$T/err" || fail "--refresh --offline: $(cat "$T/err")"
pass "--refresh on search, show, install and list --available"

# another user caches the index (12 minutes ago, still within the TTL)...
OTHER="$T/other"
expect_exit 0 env BYOAI_HOME="$OTHER" "$BYOAI_BIN" search story
python3 - "$OTHER/cache/registries" <<'PY'
import json, os, sys, time
for d in os.listdir(sys.argv[1]):
    p = os.path.join(sys.argv[1], d, "meta.json")
    m = json.load(open(p)); m["fetched_at"] = int(time.time()) - 720; json.dump(m, open(p, "w"))
PY
# ...then the publisher publishes: their own cached copy is stale at once
make_gguf "$T/fresh.gguf" 3 4096
expect_exit 0 "$BYOAI_BIN" publish "$T/fresh.gguf" --name fresh-model --registry "$REG_URL" -q
n=$(idx_gets)
expect_exit 0 "$BYOAI_BIN" search fresh --json
json_check "$T/out" 'assert [m["name"] for m in d] == ["fresh-model"], d'
[ "$(idx_gets)" = $((n + 1)) ] || fail "the publisher's search did not fetch the new index"
expect_exit 0 "$BYOAI_BIN" search fresh
[ "$(idx_gets)" = $((n + 1)) ] || fail "the refetched index is not cached again"
pass "a publish makes the publisher's cached index stale"

# the other user's cache does not know it yet: the error says how old it is
expect_exit 1 env BYOAI_HOME="$OTHER" "$BYOAI_BIN" install fresh-model
grep -q "has no model or bundle named 'fresh-model' in its index cached 12 minutes ago; \`byoai install --refresh fresh-model\` fetches the index again" "$T/err" \
  || fail "install not-found message: $(cat "$T/err")"
expect_exit 1 env BYOAI_HOME="$OTHER" "$BYOAI_BIN" show fresh-model
grep -q "neither installed nor in registry default (in its index cached 12 minutes ago; \`--refresh\` fetches it again)" "$T/err" \
  || fail "show not-found message: $(cat "$T/err")"
expect_exit 1 env BYOAI_HOME="$OTHER" "$BYOAI_BIN" install fresh-model --offline
grep -q "in its index cached 12 minutes ago (offline)" "$T/err" || fail "offline not-found message: $(cat "$T/err")"
expect_exit 0 env BYOAI_HOME="$OTHER" "$BYOAI_BIN" install fresh-model --refresh -q
expect_exit 1 "$BYOAI_BIN" install no-such-model --refresh
grep -q "has no model or bundle named 'no-such-model'; try" "$T/err" || fail "fresh not-found message: $(cat "$T/err")"
pass "not found: says how old the cached index is and how to refresh it"

# a publish without a license is refused before anything is uploaded
make_gguf "$T/nolic.gguf" 4 1024 ""
puts=$(grep -c "^PUT " "$REG_LOG" || true)
expect_exit 1 "$BYOAI_BIN" publish "$T/nolic.gguf" --name nolicense --registry "$REG_URL"
grep -q "has no license, and a registry lists a model only with one; pass --license" "$T/err" || fail "license message: $(cat "$T/err")"
grep -q "Nothing was uploaded" "$T/err" || fail "license message: $(cat "$T/err")"
expect_exit 1 "$BYOAI_BIN" publish "$T/nolic.gguf" --name nolicense --registry "$REG_URL" --license "$(printf 'mit\tx')"
grep -q "contains a control character" "$T/err" || fail "control character license: $(cat "$T/err")"
expect_exit 1 "$BYOAI_BIN" publish "$T/nolic.gguf" --name nolicense --registry "$REG_URL" --license "$(printf 'x%.0s' $(seq 200))"
grep -q "at most 127" "$T/err" || fail "long license: $(cat "$T/err")"
[ "$(grep -c "^PUT " "$REG_LOG" || true)" = "$puts" ] || fail "a publish without a license reached the registry"
expect_exit 0 "$BYOAI_BIN" publish "$T/nolic.gguf" --name nolicense --registry "$REG_URL" --license apache-2.0 -q
pass "publish checks the license before uploading"

# a Q4_K_M file is a Q4_K_M variant (general.file_type), in info, publish and import
expect_exit 0 "$BYOAI_BIN" quantize "$STORIES" "$T/q4km.gguf" Q4_K_M
expect_exit 0 "$BYOAI_BIN" info "$T/q4km.gguf"
grep -q "^file type:      Q4_K_M$" "$T/out" || fail "info file type: $(cat "$T/out")"
expect_exit 0 "$BYOAI_BIN" publish "$T/q4km.gguf" --name stories260k --registry "$REG_URL" --license mit -q
expect_exit 0 "$BYOAI_BIN" show stories260k --json
json_check "$T/out" 'v = {x["name"]: x["quantization"] for x in d["index"]["variants"]}; assert v == {"f32": "F32", "q4_k_m": "Q4_K_M"}, v'
expect_exit 0 "$BYOAI_BIN" show stories260k
grep -q "architecture llama, 292.8 K parameters, context 128, license mit" "$T/out" || fail "show parameters: $(cat "$T/out")"
expect_exit 0 "$BYOAI_BIN" import "$T/q4km.gguf" --name mine
expect_exit 0 "$BYOAI_BIN" list --json
json_check "$T/out" 'assert {m["name"]: m["variant"] for m in d}["mine"] == "q4_k_m", d'
pass "Q4_K_M files are named Q4_K_M; show prints 292.8 K parameters"

# a bundle's size is the sum of its members
expect_exit 0 "$BYOAI_BIN" install stories260k:f32 fresh-model -q
expect_exit 0 "$BYOAI_BIN" bundle kit --role chat=stories260k --role embed=fresh-model
want=$(( $(size_of "$STORIES") + $(size_of "$T/fresh.gguf") ))
expect_exit 0 "$BYOAI_BIN" list --json
json_check "$T/out" "assert {m['name']: m['size'] for m in d}['kit'] == $want, d"
expect_exit 0 "$BYOAI_BIN" show kit --json
json_check "$T/out" "assert d['installed']['size'] == $want"
pass "a bundle's size is the sum of its members"

# no lock file stays in the store after installs, imports and gc
expect_exit 0 "$BYOAI_BIN" gc
left=$(find "$BYOAI_HOME" "$OTHER" -name '*.lock')
[ -z "$left" ] || fail "lock files left in the store: $left"
pass "no lock files left in the store"

# update --check with the registry gone: nothing is called up to date
stop_registry
expect_exit 1 "$BYOAI_BIN" update --check
grep -q "^4 of 4 up to date" "$T/out" && fail "update --check claims up to date: $(cat "$T/out")"
grep -q "stories260k .*cannot check: registry default is unreachable" "$T/out" || fail "update --check note: $(cat "$T/out")"
grep -q "^1 of the 1 checked up to date; 3 could not be checked" "$T/out" || fail "update --check summary: $(cat "$T/out")"
expect_exit 1 "$BYOAI_BIN" update --check --json
json_check "$T/out" 'm = {x["name"]: x for x in d}; assert not m["stories260k"]["checked"] and not m["fresh-model"]["checked"] and not m["kit"]["checked"] and m["mine"]["checked"]'
expect_exit 1 env BYOAI_HOME="$OTHER" "$BYOAI_BIN" update --check
grep -q "up to date" "$T/out" && fail "update --check (nothing checkable) claims up to date: $(cat "$T/out")"
grep -q "none of the 1 installed model could be checked" "$T/err" || fail "update --check, nothing checked: $(cat "$T/err")"
expect_exit 1 env BYOAI_HOME="$OTHER" "$BYOAI_BIN" update
grep -q "fresh-model: cannot check" "$T/err" || fail "update, unreachable: $(cat "$T/err")"
pass "update --check with the registry unreachable: says so, exits 1"
