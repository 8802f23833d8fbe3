#!/usr/bin/env bash
# A node that lacks the model downloads only the byte ranges of its own
# tensors (HTTP Range against the GGUF's tensor offsets, from a tensor
# manifest the coordinator sends), verifies each, and the output still
# equals a single machine's. Corrupted bytes are refused and the model is
# planned again without that node.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

SYNTH="$T/synth.gguf"
"$BYOAI_BUILD/make_tinyllama" "$SYNTH" "$BYOAI_SHARED" --layers 12 --dim 64 --ff 128 --heads 4 --kv-heads 2 ||
  fail "cannot make the synthetic model"
mkdir -p "$T/www"
cp "$SYNTH" "$STORIES" "$T/www/"
PROMPT="Once upon a time"

start_server() { # LOG [--corrupt N]: a Range server over $T/www, port in $T/srv.port
  local log=$1; shift
  rm -f "$T/srv.out" "$T/srv.port" # (the old file would answer the wait below)
  python3 -u "$(dirname "$0")/range_server.py" "$T/www" "$log" "$@" >"$T/srv.out" 2>&1 &
  echo $! >>"$T/srv.pids"
  local i
  for i in $(seq 1 100); do grep -q "^port" "$T/srv.out" 2>/dev/null && break; sleep 0.05; done
  sed -n 's/^port //p' "$T/srv.out" >"$T/srv.port"
  [ -s "$T/srv.port" ] || fail "range server did not start ($*): $(cat "$T/srv.out")"
}
CLEANUP_EXTRA='[ -f "$T/srv.pids" ] && kill $(cat "$T/srv.pids") 2>/dev/null; '"$CLEANUP_EXTRA"

cl_admin a
cl_member b   # no model files at all
cl_member c
cl_wait_alive a 3
ida=$(cl a status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])')
idb=$(cl b status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])')
idc=$(cl c status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])')

# without a URL, a member that has no copy is left out, and deploy says who and what to pass
nameb=$(cl b status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])')
cl_expect a 0 "$BYOAI_BIN" cluster deploy nofile="$SYNTH" --ctx 256 --nodes "$ida,$idb"
grep -q "deployed nofile on 1 node(s)" "$T/out" || fail "deploy without a URL: $(cat "$T/out")"
grep -q "no copy of the model" "$T/err" && grep -q "$nameb" "$T/err" && grep -q -- "--url URL" "$T/err" &&
  grep -q -- "--model-file PATH" "$T/err" || fail "deploy does not say who lacks the file and what to pass: $(cat "$T/err")"
pass "deploy names the members that lack the file and says what to pass"

start_server "$T/ranges.log"
url="http://127.0.0.1:$(cat "$T/srv.port")/synth.gguf"
cl a deploy synth="$SYNTH" --ctx 256 --url "$url" --nodes "$ida,$idb" >/dev/null || fail "deploy with a URL"
want=$(single_ids "$SYNTH" "$PROMPT" 100)
got=$(cluster_ids a synth "$PROMPT" 100) || fail "run: $(cat "$T/run.err")"
[ "$want" = "$got" ] || fail "output with fetched layers differs:
 want $want
 got  $got"
# what b fetched is exactly its header and tensors: check against the manifest
cl_status a
cl_status b
manifest=$(ls "$T/a/cluster/manifests/"*.json | head -1)
python3 - "$T/a.status" "$T/b.status" "$manifest" "$T/ranges.log" "$T/b/cluster/parts" <<'PY' || fail "b fetched more than its tensors"
import json, os, re, sys
a, b, man, log, parts = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), sys.argv[4], sys.argv[5]
stage = [s for s in a["deployments"][0]["stages"] if s["node_id"] == b["node_id"]][0]
lo, hi, n_layer = stage["layer_begin"], stage["layer_end"], 12
def needed(name):
    m = re.match(r"blk\.(\d+)\.", name)
    if m: return lo <= int(m.group(1)) < hi
    if name == "token_embd.weight": return lo == 0
    if name in ("output.weight", "output_norm.weight"): return hi == n_layer
    return True
want = {(0, man["header"]["size"])} | {(t["offset"], t["offset"] + t["size"]) for t in man["tensors"] if needed(t["name"])}
got = set()
for line in open(log):
    _, path, s, e = line.split()
    got.add((int(s), int(e)))
assert got == want, (sorted(got - want)[:5], sorted(want - got)[:5])
fetched = sum(e - s for s, e in got)
size = man["file"]["size"]
assert b["stages"][0]["fetched_bytes"] == fetched
assert fetched < size * 0.8, (fetched, size)
part = [f for f in os.listdir(parts) if f.endswith(".gguf")][0]
st = os.stat(os.path.join(parts, part))
assert st.st_size == size and st.st_blocks * 512 < size * 0.8, (st.st_size, st.st_blocks)
print("   (b runs layers %d-%d: fetched %d of %d bytes in %d range requests; its file is sparse)" % (lo, hi, fetched, size, len(got)))
PY
pass "a node without the model fetches and verifies only its tensors; output unchanged"

# ---- corrupted bytes are refused ---------------------------------------------------------------
# learn where stories260K's output matrix lives (the last stage always needs it)
cl a deploy probe="$STORIES" --ctx 128 --nodes "$ida" >/dev/null || fail "deploy probe"
off=$(python3 - "$T/a/cluster/manifests" <<'PY'
import json, os, sys
for f in os.listdir(sys.argv[1]):
    m = json.load(open(os.path.join(sys.argv[1], f)))
    for t in m["tensors"]:
        if t["name"] == "output.weight" and m["file"]["size"] < 2000000:
            print(t["offset"] + t["size"] // 2)
PY
)
[ -n "$off" ] || fail "no output.weight in the stories manifest"
start_server "$T/bad.log" --corrupt "$off"
bad="http://127.0.0.1:$(cat "$T/srv.port")/stories260K.gguf"
cl a deploy bad="$STORIES" --ctx 128 --url "$bad" --nodes "$ida,$idc" >/dev/null || fail "deploy with a corrupting server"
cl_status a
json_check "$T/a.status" '
dep = [x for x in d["deployments"] if x["model"] == "bad"][0]
assert [s["node_id"] for s in dep["stages"]] == [d["node_id"]], dep["stages"]'
grep -q "do not match the manifest" "$T/a.status" || fail "no checksum event on the coordinator"
cl_status c
grep -q "do not match the manifest" "$T/c.status" || fail "no checksum event on c"
got=$(cluster_ids a bad "$PROMPT" 60) || fail "run after refusal"
[ "$got" = "$(single_ids "$STORIES" "$PROMPT" 60)" ] || fail "output after refusal differs"
pass "corrupted tensor bytes are refused; the model is planned again without that node"

for n in c b a; do cl_kill $n; done
