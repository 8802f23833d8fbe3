#!/usr/bin/env bash
# byoai serve with installed models: POST /api/models/install with progress
# as server-sent events from a real `byoai registry serve`, the model in
# /v1/models and usable by name, bundles' system prompts, DELETE
# /api/models/NAME, and the errors on the way.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_registry.sh"
. "$(dirname "$0")/lib_serve.sh"

setup_registry
start_server

expect_status 200 GET /v1/models
json_check "$T/body" 'assert d["data"] == []'
expect_status 404 POST /v1/chat/completions '{"model":"stories260k","messages":[{"role":"user","content":"x"}]}'
grep -q "byoai install NAME" "$T/body" || fail "404 should say how to install: $(cat "$T/body")"

# install with progress events
curl -sN --max-time 120 -H 'Content-Type: application/json' -d '{"model":"stories260k"}' \
  "$URL/api/models/install" >"$T/install.sse" || fail "install request"
python3 - "$T/install.sse" <<'PY' || fail "install events: $(head -c 1500 "$T/install.sse")"
import json, sys
events = [e[6:] for e in open(sys.argv[1]).read().split("\n\n") if e.startswith("data: ")]
assert events[-1] == "[DONE]", events[-3:]
ev = [json.loads(e) for e in events[:-1]]
phases = [e["status"] for e in ev]
assert "downloading" in phases, phases
dl = [e for e in ev if e["status"] == "downloading"]
assert dl[0]["total"] == 1185376 and all(a["completed"] <= b["completed"] for a, b in zip(dl, dl[1:])), dl
ver = [e for e in ev if e["status"] == "verifying"]
assert ver[-1]["completed"] == ver[-1]["total"] == 1185376, ver
assert ev[-1]["status"] == "success" and ev[-1]["model"]["id"] == "stories260k", ev[-1]
PY
pass "install streams progress to success"

expect_status 200 GET /v1/models
json_check "$T/body" 'm = d["data"][0]; assert m["id"] == "stories260k" and m["byoai"]["source"] == "installed" and m["byoai"]["size"] == 1185376 and not m["byoai"]["loaded"]'
expect_status 200 POST /v1/chat/completions '{"model":"stories260k","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8,"temperature":0}'
json_check "$T/body" 'assert d["choices"][0]["message"]["content"] == ", there was a little girl", d'
pass "the installed model answers by name"

# not streamed; a dry run; errors
expect_status 200 POST /api/models/install '{"model":"stories260k","stream":false}'
json_check "$T/body" 'assert d["status"] == "success" and d["model"]["id"] == "stories260k"'
expect_status 200 POST /api/models/install '{"model":"stories260k","stream":false,"dry_run":true}'
json_check "$T/body" 'assert d["status"].startswith("dry run")'
expect_status 404 POST /api/models/install '{"model":"no-such-model","stream":false}'
json_check "$T/body" 'assert "no-such-model" in d["error"]["message"] and d["error"]["param"] == "model"'
expect_status 400 POST /api/models/install '{"model":"Bad/Name","stream":false}'
expect_status 400 POST /api/models/install '{"model":7}'
expect_status 400 POST /api/models/install '{"model":"x","stream":"yes"}'
expect_status 405 GET /api/models/install
curl -sN --max-time 60 -H 'Content-Type: application/json' -d '{"model":"no-such-model"}' "$URL/api/models/install" >"$T/bad.sse"
grep -q '"error"' "$T/bad.sse" && grep -q 'data: \[DONE\]' "$T/bad.sse" || fail "streamed install error: $(cat "$T/bad.sse")"
pass "install: not streamed, dry run, errors"

# a bundle's system prompt reaches the prompt (usage shows the longer prompt)
# (and its parameters, in byoai run's names, are the defaults)
expect_exit 0 "$BYOAI_BIN" bundle storyteller stories260k --system "Once upon a time there was a cat" \
  --param temp=0 --param n_predict=4
expect_status 200 POST /v1/chat/completions '{"model":"storyteller","messages":[{"role":"user","content":"Once upon a time"}]}'
json_check "$T/body" 'assert d["usage"]["prompt_tokens"] > 9 and d["usage"]["completion_tokens"] == 4, d["usage"]'
cp "$T/body" "$T/first"
expect_status 200 POST /v1/chat/completions '{"model":"storyteller","messages":[{"role":"user","content":"Once upon a time"}]}'
python3 -c 'import json,sys; a,b=(json.load(open(f))["choices"][0]["message"]["content"] for f in sys.argv[1:]); assert a==b' \
  "$T/first" "$T/body" || fail "bundle temp=0 not applied"
expect_status 200 POST /v1/chat/completions '{"model":"storyteller","max_tokens":2,"messages":[{"role":"system","content":"x"},{"role":"user","content":"Once upon a time"}]}'
python3 -c 'import json,sys; a,b=(json.load(open(f))["usage"] for f in sys.argv[1:]); assert b["completion_tokens"]==2 and b["prompt_tokens"] < a["prompt_tokens"], (a, b)' \
  "$T/first" "$T/body" || fail "a request's own system message and max_tokens win over the bundle's"
expect_status 200 GET /v1/models
json_check "$T/body" 'b = {m["id"]: m["byoai"]["bundle"] for m in d["data"]}; assert b == {"storyteller": True, "stories260k": False}, b'
pass "bundles"

# an installed name on the command line: served under its name; a typo fails at start
stop_server
start_server stories260k
grep -q "model stories260k" "$T/server.out" && fail "an installed name is not a file model: $(cat "$T/server.out")"
expect_status 200 GET /v1/models
json_check "$T/body" 'assert sorted(m["id"] for m in d["data"]) == ["stories260k", "storyteller"], d'
stop_server
expect_exit 1 "$BYOAI_BIN" serve stories260q --port 0
grep -q "stories260q" "$T/err" || fail "unknown installed name: $(cat "$T/err")"
start_server

# remove
expect_status 200 DELETE /api/models/storyteller
expect_status 200 DELETE /api/models/stories260k
json_check "$T/body" 'assert d == {"id": "stories260k", "object": "model", "deleted": True}'
expect_status 404 DELETE /api/models/stories260k
expect_status 404 DELETE "/api/models/..%2fetc"
expect_status 200 GET /v1/models
json_check "$T/body" 'assert d["data"] == []'
expect_status 404 POST /v1/chat/completions '{"model":"stories260k","messages":[{"role":"user","content":"x"}]}'
pass "remove"
stop_server
