#!/usr/bin/env bash
# index.json as hostile input: each field wrong in turn gives a clear error
# naming it, and the cached index is kept; `byoai index validate` (and
# --deep); the curated registry/index.json and its JSON Schema.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_registry.sh"

REG_DIR="$T/reg"
"$BYOAI_BIN" registry init "$REG_DIR" >/dev/null 2>&1 || fail "registry init"
SHA=$(sha_of "$STORIES"); SIZE=$(size_of "$STORIES")
cp "$STORIES" "$REG_DIR/blobs/sha256-$SHA"
mkdir -p "$T/cases"
python3 - "$T/cases" "$SHA" "$SIZE" <<'PY'
import json, sys, copy
out, sha, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
good = {"schema_version": 1, "name": "test", "updated": "2024-06-01",
  "models": [{"name": "stories260k", "description": "A tiny story model", "tags": ["story", "tiny"],
              "architecture": "llama", "license": "mit", "parameters": 292800, "context_length": 512,
              "revision": "1", "updated": "2024-06-01",
              "variants": [{"name": "f32", "quantization": "F32", "size": size, "sha256": sha,
                            "url": "blobs/sha256-" + sha, "mirrors": [], "min_ram": 4000000}]}],
  "bundles": [{"name": "story-kit", "description": "stories", "revision": "1", "updated": "2024-06-01",
               "system": "Tell a story.", "params": {"temp": 0},
               "members": [{"role": "chat", "model": "stories260k", "variant": "f32"}]}]}
json.dump(good, open(out + "/good.json", "w"))
cases = []
def case(name, expect, fn=None, raw=None):
    if raw is None:
        d = copy.deepcopy(good); fn(d); raw = json.dumps(d)
    i = len(cases)
    open("%s/%02d.json" % (out, i), "w").write(raw)
    cases.append("%02d\t%s\t%s" % (i, name, expect))
M = lambda d: d["models"][0]
V = lambda d: d["models"][0]["variants"][0]
B = lambda d: d["bundles"][0]
case("not JSON", "not valid JSON", raw="{\"schema_version\": 1,")
case("top level array", "the top level must be an object", raw="[]")
case("schema_version missing", "schema_version: is missing", lambda d: d.pop("schema_version"))
case("schema_version string", "schema_version: must be a whole number", lambda d: d.update(schema_version="1"))
case("schema_version future", "newer than this byoai understands", lambda d: d.update(schema_version=99))
case("models not array", "models: must be an array", lambda d: d.update(models={}))
case("model not object", "models[0]: must be an object", lambda d: d.update(models=[[[["deep"]]]]))
case("model name ../", "models[0].name: invalid name '../evil'", lambda d: M(d).update(name="../evil"))
case("model name slash", "names cannot contain '/'", lambda d: M(d).update(name="a/b"))
case("model name upper", "use lowercase letters", lambda d: M(d).update(name="Stories"))
case("model name variant", "must not contain ':'", lambda d: M(d).update(name="a:b"))
case("model name twice", "the name 'stories260k' appears twice", lambda d: d["models"].append(copy.deepcopy(M(d))))
case("description missing", "description: is missing", lambda d: M(d).pop("description"))
case("description number", "description: must be a string", lambda d: M(d).update(description=5))
case("description huge", "description: is longer than 4096", lambda d: M(d).update(description="x" * 5000))
case("description NUL", "is not allowed without JSON_ALLOW_NUL", lambda d: M(d).update(description="a\u0000b"))
case("architecture bad", "architecture: 'Llama!'", lambda d: M(d).update(architecture="Llama!"))
case("license missing", "license: is missing", lambda d: M(d).pop("license"))
case("parameters negative", "parameters: must be between", lambda d: M(d).update(parameters=-1))
case("parameters float", "parameters: must be a whole number", lambda d: M(d).update(parameters=1.5))
case("context_length string", "context_length: must be a whole number", lambda d: M(d).update(context_length="512"))
case("revision spaces", "revision: must be letters", lambda d: M(d).update(revision="1 2"))
case("updated not a date", "updated: 'yesterday' is not a date", lambda d: M(d).update(updated="yesterday"))
case("tags string", "tags: must be an array", lambda d: M(d).update(tags="story"))
case("tag bad", "tags: tag 0 must be", lambda d: M(d).update(tags=["Bad Tag"]))
case("variants empty", "variants: must be an array of 1 to 64", lambda d: M(d).update(variants=[]))
case("variant name ../", ".variants[0].name: '../x'", lambda d: V(d).update(name="../x"))
case("variant twice", "variant 'f32' appears twice", lambda d: M(d)["variants"].append(copy.deepcopy(V(d))))
case("quantization missing", "quantization: is missing", lambda d: V(d).pop("quantization"))
case("size zero", "size: must be between 1", lambda d: V(d).update(size=0))
case("size huge", "size: must be between 1", lambda d: V(d).update(size=2**60))
case("size string", "size: must be a whole number", lambda d: V(d).update(size=str(size)))
case("sha256 short", "sha256: must be 64 lowercase hex digits", lambda d: V(d).update(sha256="abc"))
case("sha256 upper", "sha256: must be 64 lowercase hex digits", lambda d: V(d).update(sha256=sha.upper()))
case("sha256 missing", "sha256: is missing; only files on the Hugging Face Hub", lambda d: V(d).pop("sha256"))
case("url ftp", "uses a scheme other than https, http or file", lambda d: V(d).update(url="ftp://host/x"))
case("url javascript", "uses a scheme other than", lambda d: V(d).update(url="javascript:alert(1)"))
case("url file from http", "file:// URLs are only allowed", lambda d: V(d).update(url="file:///etc/passwd"))
case("url ..", "neither an http(s)/file URL nor a plain relative path", lambda d: V(d).update(url="../../etc/passwd"))
case("url absolute path", "neither an http(s)/file URL", lambda d: V(d).update(url="/etc/passwd"))
case("url credentials", "must not contain credentials", lambda d: V(d).update(url="https://u:p@host/x"))
case("url space", "contains spaces", lambda d: V(d).update(url="https://host/a b"))
case("url missing", "url: is missing", lambda d: V(d).pop("url"))
case("mirrors string", "mirrors: must be an array", lambda d: V(d).update(mirrors="https://x/y"))
case("mirror ftp", "mirrors[0]: 'ftp://x/y' uses a scheme", lambda d: V(d).update(mirrors=["ftp://x/y"]))
case("min_ram negative", "min_ram: must be between", lambda d: V(d).update(min_ram=-5))
case("bundle member unknown", "'nope' is not a model of this index", lambda d: B(d)["members"][0].update(model="nope"))
case("bundle variant unknown", "'q9' is not a variant of stories260k", lambda d: B(d)["members"][0].update(variant="q9"))
case("bundle params nested", "params: 'x' must be a number", lambda d: B(d).update(params={"x": {"y": 1}}))
case("bundle name = model", "is also a model's name", lambda d: B(d).update(name="stories260k"))
case("bundle role twice", "'chat' appears twice", lambda d: B(d)["members"].append(copy.deepcopy(B(d)["members"][0])))
case("duplicate key", "duplicate object key", raw=json.dumps(good)[:-1] + ', "models": []}')
open(out + "/cases.tsv", "w").write("\n".join(cases) + "\n")
PY
cp "$T/cases/good.json" "$REG_DIR/index.json"
expect_exit 0 "$BYOAI_BIN" index validate "$REG_DIR/index.json"
start_registry "$REG_DIR"
export BYOAI_REGISTRY="$REG_URL"
expect_exit 0 "$BYOAI_BIN" search stories --json
cache=$(ls -d "$BYOAI_HOME"/cache/registries/*)
cp "$cache/index.json" "$T/cached.good"
n=0
while IFS=$'\t' read -r id name expect; do
  cp "$T/cases/$id.json" "$REG_DIR/index.json"
  expect_exit 1 "$BYOAI_BIN" search stories
  grep -qF -- "$expect" "$T/err" || fail "$name: want '$expect' in: $(cat "$T/err")"
  grep -q "registry default sent a bad index\|newer than this byoai" "$T/err" || fail "$name: unclear error: $(cat "$T/err")"
  grep -q "is kept" "$T/err" || fail "$name: does not say the cache is kept: $(cat "$T/err")"
  cmp -s "$cache/index.json" "$T/cached.good" || fail "$name: the cached index was replaced"
  if [ "$name" != "url file from http" ]; then # a local file may name local files
    expect_exit 1 "$BYOAI_BIN" index validate "$T/cases/$id.json"
    grep -qF -- "$expect" "$T/err" || fail "validate $name: $(cat "$T/err")"
  fi
  n=$((n + 1))
done <"$T/cases/cases.tsv"
expect_exit 0 "$BYOAI_BIN" search stories --offline --json
json_check "$T/out" 'assert d[0]["name"] == "stories260k"'
expect_exit 0 "$BYOAI_BIN" install stories260k --offline -q
pass "$n malformed indexes: each a clear error naming the field, the cache kept"

# a 17 MiB index is refused before it is parsed (a file:// registry this time)
mkdir -p "$T/big"
python3 -c 'import sys; sys.stdout.write("{\"schema_version\":1,\"models\":[],\"pad\":\"" + "x" * (17 << 20) + "\"}")' >"$T/big/index.json"
expect_exit 1 env BYOAI_REGISTRY="file://$T/big/" "$BYOAI_BIN" search stories
grep -q "more than the 16777216 allowed" "$T/err" || fail "huge index: $(cat "$T/err")"
cp "$T/cases/good.json" "$REG_DIR/index.json"
expect_exit 0 "$BYOAI_BIN" search stories
pass "an oversized index is refused"

# --deep downloads and verifies every file (relative URLs resolve against the file)
expect_exit 0 "$BYOAI_BIN" index validate "$REG_DIR/index.json" --deep
grep -q "every file downloaded and verified" "$T/out" || fail "deep: $(cat "$T/out")"
python3 - "$REG_DIR/index.json" "$T/deepbad.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
v = d["models"][0]["variants"][0]
v["url"] = "file://" + sys.argv[1].rsplit("/", 1)[0] + "/" + v["url"]
v["sha256"] = "0" * 64
json.dump(d, open(sys.argv[2], "w"))
PY
expect_exit 1 "$BYOAI_BIN" index validate "$T/deepbad.json" --deep
grep -q "does not match its checksum" "$T/err" || fail "deep bad: $(cat "$T/err")"
pass "index validate --deep"

# the curated default index: valid, against our parser and the JSON Schema
CURATED="$BYOAI_SOURCE/registry/index.json"
expect_exit 0 "$BYOAI_BIN" index validate "$CURATED"
python3 - "$CURATED" "$BYOAI_SOURCE/registry/index.schema.json" "$T/cases/good.json" <<'PY' || fail "curated index checks"
import json, sys, re
idx = json.load(open(sys.argv[1])); schema = json.load(open(sys.argv[2]))
names = [m["name"] for m in idx["models"]]
assert len(names) == len(set(names)) and len(names) >= 6, names
for m in idx["models"]:
    for v in m["variants"]:
        assert v["url"].startswith("https://huggingface.co/") and "/resolve/" in v["url"], v["url"]
        assert v.get("size") or v.get("approx_size"), v
        assert "sha256" not in v or re.fullmatch("[0-9a-f]{64}", v["sha256"]), v
kinds = " ".join(m["name"] + " " + " ".join(m.get("tags", [])) for m in idx["models"])
for want in ("llama", "qwen", "smollm", "phi", "gemma", "embedding"):
    assert want in kinds, want
try:
    import jsonschema
except ImportError:
    sys.exit("python3-jsonschema is missing: run scripts/install-deps.sh (or apt-get install python3-jsonschema)")
jsonschema.validate(idx, schema)
jsonschema.validate(json.load(open(sys.argv[3])), schema)
PY
env -u BYOAI_REGISTRY "$BYOAI_BIN" search qwen --json >"$T/out" 2>"$T/err" || fail "built-in search: $(cat "$T/err")"
json_check "$T/out" 'assert d and all(m["registry"] == "default" for m in d) and any("qwen" in m["name"] for m in d)'
pass "the curated index validates (parser and JSON Schema) and is built in"
