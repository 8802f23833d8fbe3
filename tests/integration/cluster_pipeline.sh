#!/usr/bin/env bash
# Two and three `byoai serve --cluster` processes on 127.0.0.1 run a model
# together; the greedy output equals a single machine's token for token
# (stories260K and a synthetic 12-layer Q8_0 model), seeded sampling too, and any
# member's OpenAI API answers for a model another member coordinates.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

# The synthetic model is Q8_0, so each node runs its layer range with the
# packed (load-time re-laid) weights of its own tensors only.
SYNTH="$T/synth.gguf"
"$BYOAI_BUILD/make_tinyllama" "$T/synth-f16.gguf" "$BYOAI_SHARED" --layers 12 --dim 64 --ff 128 --heads 4 --kv-heads 2 ||
  fail "cannot make the synthetic model"
"$BYOAI_BIN" quantize "$T/synth-f16.gguf" "$SYNTH" Q8_0 -q >/dev/null || fail "cannot quantize the synthetic model"
PROMPT="Once upon a time"

# ---- two nodes ---------------------------------------------------------------------------
cl_admin a
cl_member b --model-file "$STORIES" --model-file "$SYNTH"
cl_wait_alive a 2
cl_wait_alive b 2

expect_exit 0 "$BYOAI_BIN" cluster --help
grep -q "usage: byoai cluster" "$T/out" || fail "cluster --help"
cl_expect a 0 "$BYOAI_BIN" cluster plan "$STORIES" --json
json_check "$T/out" 'assert len(d["stages"])==2 and d["stages"][0]["layer_begin"]==0 and d["stages"][-1]["layer_end"]==5 and d["layers"]==5'
cl_expect a 0 "$BYOAI_BIN" cluster plan "$STORIES"
grep -q "5 layers on 2 node(s)" "$T/out" || fail "plan table: $(cat "$T/out")"
pass "plan shows the layers and memory of each node before anything runs"

cl a deploy stories="$STORIES" --ctx 128 --batch 4 >/dev/null || fail "deploy stories"
cl a deploy synth="$SYNTH" --ctx 256 >/dev/null || fail "deploy synth"
cl_status a
json_check "$T/a.status" '
deps={x["model"]:x for x in d["deployments"]}
assert deps["stories"]["ready"] and len(deps["stories"]["stages"])==2, deps
assert len(deps["synth"]["stages"])==2'

want=$(single_ids "$STORIES" "$PROMPT" 80)
got=$(cluster_ids a stories "$PROMPT" 80) || fail "cluster run: $(cat "$T/run.err")"
[ -n "$want" ] && [ "$want" = "$got" ] || fail "stories on 2 nodes differs:
 want $want
 got  $got"
# the text too, as a user sees it
"$BYOAI_BIN" run "$STORIES" -p "$PROMPT" -n 80 --temp 0 -t 1 >"$T/single.txt" 2>/dev/null
cl a run stories -p "$PROMPT" -n 80 --temp 0 >"$T/dist.txt" 2>"$T/run.err" || fail "cluster run text"
cmp "$T/single.txt" "$T/dist.txt" || fail "text differs: $(diff "$T/single.txt" "$T/dist.txt")"
grep -q "generation 80 tokens" "$T/run.err" || fail "speed line: $(cat "$T/run.err")"
want=$(single_ids "$SYNTH" "$PROMPT" 100)
got=$(cluster_ids a synth "$PROMPT" 100) || fail "cluster run synth: $(cat "$T/run.err")"
[ "$want" = "$got" ] || fail "synthetic model on 2 nodes differs:
 want $want
 got  $got"
pass "2 nodes: greedy output equals one machine token for token (stories260K, 12-layer synthetic)"

# seeded sampling: the last stage samples exactly like byoai run
"$BYOAI_BIN" run "$STORIES" -p "$PROMPT" -n 60 --temp 0.9 --seed 7 -t 1 >"$T/s1" 2>/dev/null
cl a run stories -p "$PROMPT" -n 60 --temp 0.9 --seed 7 >"$T/s2" 2>/dev/null || fail "seeded cluster run"
cmp "$T/s1" "$T/s2" || fail "seeded output differs: $(diff "$T/s1" "$T/s2")"
pass "seeded sampling equals one machine"

# a member that does not coordinate the model asks the coordinator
got=$(cluster_ids b stories "$PROMPT" 80) || fail "run from b: $(cat "$T/run.err")"
[ "$got" = "$(single_ids "$STORIES" "$PROMPT" 80)" ] || fail "run through b differs"
cl_expect b 1 "$BYOAI_BIN" cluster run nosuchmodel -p x -n 3
grep -q "no node of the cluster runs model 'nosuchmodel'" "$T/err" || fail "unknown model message: $(cat "$T/err")"
cl b run stories -p "$PROMPT" -n 30 --temp 0 --json-object >"$T/jo.txt" 2>"$T/jo.err" || fail "run --json-object: $(cat "$T/jo.err")"
python3 - "$T/jo.txt" "$PROMPT" <<'PY' || fail "cluster run --json-object is not one JSON object: $(cat "$T/jo.txt")"
import json, sys
out = open(sys.argv[1]).read()
assert out.startswith(sys.argv[2]) and out.endswith("\n"), out
assert isinstance(json.loads(out[len(sys.argv[2]):-1]), dict), out
PY
pass "any member runs completions for a model the cluster runs (--json-object too)"

# ---- the OpenAI API of byoai serve, on the coordinator and on the other member ------------------
if [ "$CL_DAEMON" = serve ]; then
  api_wait_model b stories
  for n in a b; do
    api $n /v1/completions '{"model": "stories", "prompt": "Once upon a time", "max_tokens": 80, "temperature": 0}' >"$T/api.json"
    python3 - "$T/api.json" "$T/single.txt" <<'PY' || fail "/v1/completions on $n differs from one machine: $(cat "$T/api.json")"
import json, sys
d = json.load(open(sys.argv[1]))
want = open(sys.argv[2]).read()
got = "Once upon a time" + d["choices"][0]["text"] + "\n"
assert got == want, (got, want)
assert d["usage"]["completion_tokens"] == 80 and d["choices"][0]["finish_reason"] == "length", d
PY
  done
  # streamed, through the member that does not coordinate the model
  curl -sSN --max-time 60 "http://127.0.0.1:$(cat "$T/b.http")/v1/completions" -H 'Content-Type: application/json' \
    -d '{"model": "stories", "prompt": "Once upon a time", "max_tokens": 80, "temperature": 0, "stream": true}' >"$T/sse.txt"
  python3 - "$T/sse.txt" "$T/single.txt" <<'PY' || fail "streamed completion differs"
import json, sys
text, done = "", False
for line in open(sys.argv[1]):
    if not line.startswith("data: "): continue
    if line.strip() == "data: [DONE]": done = True; continue
    d = json.loads(line[6:])
    text += d["choices"][0]["text"] if d["choices"] else ""
assert done
assert "Once upon a time" + text + "\n" == open(sys.argv[2]).read()
PY
  # JSON mode: the last stage samples under the JSON filter; the answer equals
  # one machine's (a's own serve running its local copy) and is an object,
  # closed within max_tokens even when that is small
  BYOAI_HOME="$T/a" "$BYOAI_BIN" import "$STORIES" --name solo >/dev/null 2>&1 || fail "import into a's store"
  api_wait_model a solo
  for mt in 40 12; do
    body='{"model": "MODEL", "messages": [{"role": "user", "content": "Tell me about Lily as JSON"}], "max_tokens": '$mt',
           "temperature": 0, "response_format": {"type": "json_object"}}'
    api a /v1/chat/completions "${body/MODEL/solo}" >"$T/json-solo.json"
    for n in a b; do
      api $n /v1/chat/completions "${body/MODEL/stories}" >"$T/json-$n.json"
      python3 - "$T/json-$n.json" "$T/json-solo.json" <<'PY' || fail "JSON mode through $n (max_tokens $mt): $(cat "$T/json-$n.json")"
import json, sys
got, want = (json.load(open(f)) for f in sys.argv[1:3])
g, w = got["choices"][0]["message"]["content"], want["choices"][0]["message"]["content"]
assert isinstance(json.loads(g), dict), g
assert g == w, (g, w)
assert got["usage"]["completion_tokens"] == want["usage"]["completion_tokens"], (got["usage"], want["usage"])
PY
    done
  done
  pass "JSON mode through the cluster: a valid object, equal to one machine's, closed within max_tokens"

  # structured output: the JSON Schema travels to the last stage, whose
  # sampler follows it; the same answer as one machine's, through both nodes
  schema='{"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 1, "maximum": 9}, "pet": {"enum": ["dog", "cat"]}}, "required": ["name", "age", "pet"], "additionalProperties": false}'
  body='{"model": "MODEL", "messages": [{"role": "user", "content": "Tell me about Lily"}], "max_tokens": 60, "temperature": 0,
         "response_format": {"type": "json_schema", "json_schema": {"name": "kid", "strict": true, "schema": '"$schema"'}}}'
  api a /v1/chat/completions "${body/MODEL/solo}" >"$T/schema-solo.json"
  for n in a b; do
    api $n /v1/chat/completions "${body/MODEL/stories}" >"$T/schema-$n.json"
    python3 - "$T/schema-$n.json" "$T/schema-solo.json" <<'PY' || fail "json_schema through $n: $(cat "$T/schema-$n.json")"
import json, sys
got, want = (json.load(open(f)) for f in sys.argv[1:3])
g, w = got["choices"][0]["message"]["content"], want["choices"][0]["message"]["content"]
d = json.loads(g)
assert set(d) == {"name", "age", "pet"}, d
assert isinstance(d["name"], str) and len(d["name"]) <= 12, d
assert type(d["age"]) is int and 1 <= d["age"] <= 9, d
assert d["pet"] in ("dog", "cat"), d
assert g == w, (g, w)
PY
  done
  pass "json_schema through the cluster: the output follows the schema, equal to one machine's"

  # embeddings: pooled on the last stage; the same vector as one machine's
  # (two inputs, one longer than a prefill chunk), on the coordinator and
  # through the member that asks it
  long_input=$(python3 -c 'print(" ".join(["the little dog ran to the park"] * 10))')
  body='{"model": "MODEL", "input": ["Once upon a time", "'"$long_input"'"]}'
  api a /v1/embeddings "${body/MODEL/solo}" >"$T/emb-solo.json"
  for n in a b; do
    api $n /v1/embeddings "${body/MODEL/stories}" >"$T/emb-$n.json"
    python3 - "$T/emb-$n.json" "$T/emb-solo.json" <<'PY' || fail "embeddings through $n differ from one machine: $(head -c 300 "$T/emb-$n.json")"
import json, math, sys
got, want = (json.load(open(f)) for f in sys.argv[1:3])
assert len(got["data"]) == 2 and got["usage"] == want["usage"], (got.get("usage"), want.get("usage"))
for g, w in zip(got["data"], want["data"]):
    a, b = g["embedding"], w["embedding"]
    assert len(a) == len(b) == 64, (len(a), len(b))
    assert abs(math.sqrt(sum(x * x for x in a)) - 1) < 1e-5
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5, max(abs(x - y) for x, y in zip(a, b))
assert got["data"][0]["embedding"] != got["data"][1]["embedding"]
PY
  done
  api b /v1/embeddings '{"model": "stories", "input": [[1, 99999]]}' >"$T/emb-bad.json"
  json_check "$T/emb-bad.json" 'assert d["error"]["type"] == "invalid_request_error" and "99999" in d["error"]["message"], d'
  pass "embeddings through the cluster equal one machine's (on the coordinator and through a member)"
  api b /v1/models | grep -q '"source":"cluster"' || fail "b's /v1/models does not list the cluster's model"
  # the tokenizer endpoints for a model only the cluster runs (b has no local copy)
  api b /api/tokenize '{"model": "stories", "content": "Once upon a time"}' >"$T/tok.json"
  json_check "$T/tok.json" 'assert d["tokens"] == '"$("$BYOAI_BIN" tokenize "$STORIES" "$PROMPT" --ids)"', d'
  api b /api/detokenize '{"model": "stories", "tokens": [403, 407, 261, 378]}' >"$T/detok.json"
  json_check "$T/detok.json" 'assert d["content"] == "Once upon a time", d'
  # the cluster's state over HTTP: what `byoai cluster status --json` shows
  api a /api/cluster >"$T/http-status.json"
  json_check "$T/http-status.json" 'assert d["alive"] == 2 and len(d["members"]) == 2 and any(x["model"] == "stories" for x in d["deployments"]), d'
  api b /v1/completions '{"model": "nosuch", "prompt": "x"}' | grep -q model_not_found || fail "unknown model over the API"
  pass "byoai serve answers OpenAI requests for the cluster's model on any member (whole and streamed)"
fi

# ---- a third node: the plan is made again for new deployments ------------------------------
# c has the model installed in its store (no --model-file): it announces it
# and finds its copy by sha256 when it gets layers
BYOAI_HOME="$T/c" "$BYOAI_BIN" import "$SYNTH" --name synthetic >/dev/null 2>&1 || fail "import into c's store"
cl_member c
cl_wait_alive a 3
for i in $(seq 1 50); do
  cl_status a
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if any(x.startswith("synthetic") for m in d["members"] for x in m.get("info",{}).get("models",[])) else 1)' "$T/a.status" && break
  sleep 0.1
done
json_check "$T/a.status" 'assert any(x.startswith("synthetic") for m in d["members"] for x in m.get("info",{}).get("models",[])), "c does not announce its installed model"' 
cl a deploy synth3="$SYNTH" --ctx 256 --min-nodes 3 >/dev/null || fail "deploy on 3"
cl_status a
json_check "$T/a.status" '
dep=[x for x in d["deployments"] if x["model"]=="synth3"][0]
st=dep["stages"]
assert len(st)==3, st
assert [s["layer_begin"] for s in st]==[0,4,8] and st[-1]["layer_end"]==12, st'
want=$(single_ids "$SYNTH" "$PROMPT" 100)
got=$(cluster_ids a synth3 "$PROMPT" 100) || fail "run on 3: $(cat "$T/run.err")"
[ "$want" = "$got" ] || fail "synthetic model on 3 nodes differs:
 want $want
 got  $got"
cl a deploy stories3="$STORIES" --ctx 128 --min-nodes 3 >/dev/null || fail "deploy stories on 3"
got=$(cluster_ids c stories3 "$PROMPT" 80) || fail "stories on 3: $(cat "$T/run.err")"
[ "$got" = "$(single_ids "$STORIES" "$PROMPT" 80)" ] || fail "stories on 3 nodes differs"
cl_status c
json_check "$T/c.status" 'assert all(s["fetched_bytes"] == 0 for s in d["stages"]) and len(d["stages"]) >= 1'
pass "3 nodes: greedy output equals one machine token for token (c used its installed copy)"

# F16 on the wire: half the bytes; output may drift from F32 (reported, not required equal)
cl a deploy synth16="$SYNTH" --ctx 256 --wire f16 --min-nodes 3 >/dev/null || fail "deploy f16"
got16=$(cluster_ids a synth16 "$PROMPT" 100) || fail "run f16: $(cat "$T/run.err")"
[ -n "$got16" ] || fail "f16 run produced nothing"
same=$(python3 -c 'import sys; a=sys.argv[1].split(); b=sys.argv[2].split(); n=0
for x,y in zip(a,b):
    if x!=y: break
    n+=1
print(n)' "$want" "$got16")
echo "   (f16 wire: first $same of 100 tokens equal the f32 run)"
pass "F16 hidden states on the wire"

# the view: every node lists the same alive members
for n in a b c; do cl_status $n; done
python3 - "$T/a.status" "$T/b.status" "$T/c.status" <<'PY' || fail "views differ"
import json, sys
views = []
for p in sys.argv[1:]:
    d = json.load(open(p))
    views.append(sorted(m["node_id"] for m in d["members"] if m["state"] == "alive" or m["self"]))
assert views[0] == views[1] == views[2] and len(views[0]) == 3, views
PY
pass "one cluster view on every node"

for n in c b a; do cl_kill $n; done
