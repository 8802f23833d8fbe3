#!/usr/bin/env bash
# byoai serve as an operator and a hostile client meet it: bad requests,
# limits, API keys, CORS, native endpoints, model lifecycle, config
# precedence, graceful shutdown.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_serve.sh"

chat() { # chat MAX_TOKENS [EXTRA JSON FIELDS]
  printf '{"model":"stories260k","messages":[{"role":"user","content":"Once upon a time"}],"temperature":0,"max_tokens":%s%s}' "$1" "${2:-}"
}
serving() { expect_status 200 POST /v1/chat/completions "$(chat 3)"; }

start_server "$STORIES" --alias stories260k --max-body 64K --max-messages 2000 --cors-origin http://app.example
grep -q "model stories260k: $STORIES" "$T/server.out" || fail "startup lines: $(cat "$T/server.out")"

# ---- native endpoints
expect_status 200 GET /api/health
json_check "$T/body" 'assert d["status"] == "ok" and d["models_known"] == 1 and d["auth"] is False'
expect_status 200 GET /api/version
json_check "$T/body" 'assert d["name"] == "byoai" and d["version"]'
expect_status 200 GET /
grep -q '<title>byoai</title>' "$T/body" || fail "web app index"
expect_status 200 GET /app.js
expect_status 404 GET /nope.js
expect_status 405 POST /api/health '{}'
pass "health, version, web app"

# ---- bad requests: each a 4xx with a clear message, and the server keeps serving
expect_error 400 "not valid JSON" POST /v1/chat/completions '{"model": "stories260k", "messages": ['
serving
expect_error 400 "must be a JSON object" POST /v1/chat/completions '[1, 2]'
expect_error 400 "empty" POST /v1/chat/completions ''
expect_error 400 "'model' must be a string" POST /v1/chat/completions '{"model": 7, "messages": []}'
expect_error 400 "'messages' must be an array" POST /v1/chat/completions '{"model": "stories260k", "messages": "hi"}'
expect_error 400 "'temperature' must be a number" POST /v1/chat/completions \
  '{"model":"stories260k","messages":[{"role":"user","content":"Once upon a time"}],"temperature":"hot"}'
expect_error 400 "'temperature' must be between 0 and 2" POST /v1/chat/completions \
  '{"model":"stories260k","messages":[{"role":"user","content":"Once upon a time"}],"temperature":7}'
expect_error 400 "'max_tokens' must be an integer" POST /v1/chat/completions "$(chat '"ten"')"
expect_error 400 "'stream' must be true or false" POST /v1/chat/completions "$(chat 5 ',"stream":"yes"')"
expect_error 400 "'messages\[0\].content' must be a string" POST /v1/chat/completions '{"model":"stories260k","messages":[{"role":"user","content":5}]}'
expect_error 400 "expected \"system\"" POST /v1/chat/completions '{"model":"stories260k","messages":[{"role":"function","content":"x"}]}'
expect_error 400 "at most 4 stop strings" POST /v1/chat/completions "$(chat 5 ',"stop":["a","b","c","d","e"]')"
expect_error 400 "'response_format.json_schema' must be an object" POST /v1/chat/completions "$(chat 5 ',"response_format":{"type":"json_schema"}')"
expect_error 400 "'pattern' is not supported" POST /v1/chat/completions "$(chat 5 ',"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","pattern":"a+"}}}')"
expect_error 400 "'tool_choice' names 'nope'" POST /v1/chat/completions "$(chat 5 ',"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"nope"}}')"
expect_error 400 "'n' must be 1" POST /v1/chat/completions "$(chat 5 ',"n":3')"
expect_error 400 "'presence_penalty' must be between -2 and 2" POST /v1/chat/completions "$(chat 5 ',"presence_penalty":3')"
serving
pass "malformed JSON and wrong types"

# presence and frequency penalties are applied: greedy text changes
expect_status 200 POST /v1/chat/completions "$(chat 40)"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["message"]["content"])' "$T/body" >"$T/plain"
expect_status 200 POST /v1/chat/completions "$(chat 40 ',"presence_penalty":2')"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["message"]["content"])' "$T/body" >"$T/pres"
expect_status 200 POST /v1/chat/completions "$(chat 40 ',"frequency_penalty":2')"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["message"]["content"])' "$T/body" >"$T/freq"
cmp -s "$T/plain" "$T/pres" && fail "presence_penalty changed nothing: $(cat "$T/plain")"
cmp -s "$T/plain" "$T/freq" && fail "frequency_penalty changed nothing"
pass "presence and frequency penalties"

# the tokenizer over HTTP: the same ids as `byoai tokenize`, a round trip, clear errors
want_ids=$("$BYOAI_BIN" tokenize "$BYOAI_SHARED/models/stories260K.gguf" "Once upon a time" --ids)
expect_status 200 POST /api/tokenize '{"model": "stories260k", "content": "Once upon a time", "with_pieces": true}'
python3 - "$T/body" "$want_ids" <<'PY' || fail "tokenize: $(cat "$T/body")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["tokens"] == json.loads(sys.argv[2]) and d["count"] == len(d["tokens"]), (d, sys.argv[2])
assert "".join(d["pieces"][1:]).replace("\u2581", " ").strip() == "Once upon a time", d["pieces"]
PY
expect_status 200 POST /api/tokenize '{"model": "stories260k", "content": "Once upon a time", "add_special": false}'
json_check "$T/body" 'assert d["tokens"] == '"$want_ids"'[1:], d'
expect_status 200 POST /api/detokenize '{"model": "stories260k", "tokens": '"$want_ids"'}'
json_check "$T/body" 'assert d["content"] == "Once upon a time", d'
expect_error 400 "'content' must be the text" POST /api/tokenize '{"model": "stories260k", "content": 5}'
expect_error 400 "'model' is required" POST /api/tokenize '{"content": "x"}'
expect_error 404 "does not exist" POST /api/tokenize '{"model": "nosuch", "content": "x"}'
expect_error 400 "'add_special' must be true or false" POST /api/tokenize '{"model": "stories260k", "content": "x", "add_special": 1}'
expect_error 400 "tokens\[1\] is not a token id of model 'stories260k' \(0 to 511\)" POST /api/detokenize '{"model": "stories260k", "tokens": [1, 512]}'
expect_error 400 "'tokens' must be an array" POST /api/detokenize '{"model": "stories260k", "tokens": "1 2"}'
expect_status 405 GET /api/tokenize
expect_error 404 "runs no cluster node; start it with --cluster" GET /api/cluster
pass "POST /api/tokenize and /api/detokenize"

expect_error 400 "'max_tokens' must be at least 1 \(got -1\)" POST /v1/chat/completions "$(chat -1)"
expect_error 400 "at most 4096 tokens" POST /v1/chat/completions "$(chat 100000)"
expect_error 404 "the model 'gpt-4' does not exist.*stories260k" POST /v1/chat/completions '{"model":"gpt-4","messages":[{"role":"user","content":"x"}]}'
json_check "$T/body" 'assert d["error"]["code"] == "model_not_found" and d["error"]["param"] == "model"'
expect_error 404 "does not exist" GET /v1/models/gpt-4
printf '{"model":"stories260k","messages":[{"role":"user","content":"caf\xe9 \xff"}]}' >"$T/bad-utf8.json"
expect_error 400 "not valid UTF-8" POST /v1/chat/completions "@$T/bad-utf8.json"
head -c 70000 /dev/zero | tr '\0' 'x' >"$T/big.json"
expect_error 413 "larger than the 65536 bytes allowed" POST /v1/chat/completions "@$T/big.json"
serving
pass "limits: max_tokens, unknown model, invalid UTF-8, oversized body"

# a 10,000-message conversation: over the message limit, and over the context
python3 - "$T/long.json" 10000 <<'PY'
import json, sys
n = int(sys.argv[2])
msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": "hi"} for i in range(n)]
json.dump({"model": "stories260k", "messages": msgs}, open(sys.argv[1], "w"))
PY
[ "$(stat -c %s "$T/long.json")" -gt 65536 ] || fail "test data too small"
expect_status 413 POST /v1/chat/completions "@$T/long.json"
serving
stop_server
start_server "$STORIES" --alias stories260k --max-body 4M
expect_error 400 "10000 messages; this server accepts at most 1024" POST /v1/chat/completions "@$T/long.json"
python3 - "$T/long.json" 1000 <<'PY'
import json, sys
n = int(sys.argv[2])
msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": "Once upon a time"} for i in range(n)]
json.dump({"model": "stories260k", "messages": msgs}, open(sys.argv[1], "w"))
PY
expect_error 400 "its history is [0-9]+ tokens and the context holds 128" POST /v1/chat/completions "@$T/long.json"
json_check "$T/body" 'assert d["error"]["code"] == "context_length_exceeded"'
serving
pass "10,000-message conversation refused clearly"

# a hostile client: 400 mutated bodies (bit flips, cuts, junk, swapped types)
# from 4 threads; every answer is 2xx or 4xx, and the server goes on
python3 - "$URL" <<'PY' || fail "mutated requests"
import json, random, sys, threading, http.client, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
base = {"model": "stories260k", "messages": [{"role": "user", "content": "Once upon a time"}],
        "max_tokens": 4, "temperature": 0.5, "stop": ["x"], "logprobs": True, "top_logprobs": 2,
        "response_format": {"type": "json_object"}, "stream": False}
junk = [None, True, -1, 1e308, "", "x" * 300, [], {}, [1, "a"], {"a": {"b": []}}, 2**63, -2**63]
def mutate(rng):
    d = json.loads(json.dumps(base))
    for _ in range(rng.randint(1, 3)):
        k = rng.choice(list(base) + ["messages0", "extra"])
        if k == "messages0": d["messages"] = [rng.choice(junk)] if rng.random() < .5 else [{"role": rng.choice(["user", "x", None]), "content": rng.choice(junk)}]
        elif k == "extra": d[rng.choice(["n", "seed", "top_k", "min_p", "stream_options"])] = rng.choice(junk)
        else: d[k] = rng.choice(junk)
    b = json.dumps(d).encode()
    r = rng.random()
    if r < .2: b = b[:rng.randint(0, len(b))]
    elif r < .35:
        b = bytearray(b)
        for _ in range(rng.randint(1, 4)): b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        b = bytes(b)
    elif r < .4: b = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    return b
bad = []
def worker(seed):
    rng = random.Random(seed)
    c = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    for i in range(100):
        path = rng.choice(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
        try:
            c.request("POST", path, body=mutate(rng), headers={"Content-Type": "application/json"})
            r = c.getresponse(); body = r.read()
        except (http.client.HTTPException, OSError) as e:
            c.close(); c = http.client.HTTPConnection(url.hostname, url.port, timeout=60); continue
        if r.status >= 500 or not (200 <= r.status < 500): bad.append((path, r.status, body[:200]))
        elif r.status >= 400 and "message" not in json.loads(body)["error"]: bad.append((path, r.status, body[:200]))
threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
if bad: print(bad[:5]); sys.exit(1)
PY
serving
pass "400 mutated requests: only 2xx and 4xx answers"

# ---- other endpoints
expect_status 200 POST /v1/completions '{"model":"stories260k","prompt":"Once upon a time","max_tokens":5,"temperature":0}'
json_check "$T/body" 'assert d["choices"][0]["text"] == ", there was a little", d'
expect_error 400 "'prompt' is required" POST /v1/completions '{"model":"stories260k"}'
expect_error 400 "token id 99999 is outside" POST /v1/completions '{"model":"stories260k","prompt":[1,99999]}'
expect_status 200 POST /v1/embeddings '{"model":"stories260k","input":"Once upon a time"}'
json_check "$T/body" 'import math; v=d["data"][0]["embedding"]; assert len(v)==64 and abs(math.sqrt(sum(x*x for x in v))-1)<1e-4'
expect_error 400 "'input' is required" POST /v1/embeddings '{"model":"stories260k"}'
python3 -c 'import json; print(json.dumps({"model": "stories260k", "input": ["story %d" % i for i in range(200)]}))' >"$T/many.json"
expect_status 200 POST /v1/embeddings "@$T/many.json"
json_check "$T/body" 'assert len(d["data"]) == 200 and d["data"][199]["index"] == 199'
expect_error 405 "accepts POST" GET /v1/chat/completions
expect_error 404 "unknown endpoint" GET /v1/nothing
expect_error 400 "not an installed model" DELETE /api/models/stories260k
expect_error 400 "'model' must be a string" POST /api/models/install '{"model":5}'
pass "completions, embeddings, unknown routes"

# streaming: SSE framing and the end marker
curl -sN --max-time 30 -H 'Content-Type: application/json' -d "$(chat 8 ',"stream":true')" "$URL/v1/chat/completions" >"$T/sse"
tail -c 14 "$T/sse" | cmp -s - <(printf 'data: [DONE]\n\n') || fail "stream does not end with [DONE]: $(tail -c 100 "$T/sse")"
python3 - "$T/sse" <<'PY' || fail "SSE chunks malformed"
import json, sys
events = [e for e in open(sys.argv[1]).read().split("\n\n") if e]
assert events[-1] == "data: [DONE]"
chunks = [json.loads(e[6:]) for e in events[:-1]]
assert all(c["object"] == "chat.completion.chunk" for c in chunks)
assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
assert chunks[-1]["choices"][0]["finish_reason"] == "length"
text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
assert text == ", there was a little girl", text
PY
pass "SSE stream"

# conversations API
expect_status 201 POST /api/conversations '{"title":"t1","model":"stories260k","messages":[{"role":"user","content":"hi"}]}'
cid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$T/body")
expect_status 200 PUT "/api/conversations/$cid" '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}'
json_check "$T/body" 'assert d["title"] == "t1" and len(d["messages"]) == 2'
expect_status 200 GET /api/conversations
json_check "$T/body" 'assert d["data"][0]["message_count"] == 2'
expect_error 400 "messages\[0\] must be" PUT "/api/conversations/$cid" '{"messages":[{"role":"x"}]}'
expect_status 204 DELETE "/api/conversations/$cid"
expect_status 404 GET "/api/conversations/$cid"
expect_status 404 GET "/api/conversations/..%2f..%2fetc"
pass "conversations API"

# metrics
expect_status 200 GET /metrics
for m in byoai_requests_total byoai_generated_tokens_total byoai_tokens_per_second byoai_queue_depth \
         byoai_loaded_models byoai_resident_memory_bytes byoai_active_sequences; do
  grep -q "^$m" "$T/body" || fail "metric $m missing"
done
grep -q '^byoai_requests_total{route="/v1/chat/completions",status="4xx"}' "$T/body" || fail "4xx not counted"
grep -q '^byoai_loaded_models 1$' "$T/body" || fail "loaded models: $(grep loaded "$T/body")"
pass "metrics"
stop_server

# ---- API keys: flag keys and keys stored hashed in the database
start_server "$STORIES" --alias stories260k --api-key flag-key-1234
expect_error 401 "needs an API key" GET /v1/models
expect_error 401 "not valid" GET /v1/models -H "Authorization: Bearer wrong-key-123"
expect_status 200 GET /v1/models -H "Authorization: Bearer flag-key-1234"
expect_status 200 GET /api/health
json_check "$T/body" 'assert d["auth"] is True'
expect_status 200 GET /
stop_server
expect_exit 0 "$BYOAI_BIN" apikey create laptop
dbkey=$(cat "$T/out")
[[ "$dbkey" =~ ^byoai-[0-9a-f]{40}$ ]] || fail "key format: $dbkey"
grep -q "$dbkey" "$BYOAI_HOME/server.db" && fail "the key is stored in clear"
expect_exit 0 "$BYOAI_BIN" apikey list --json
json_check "$T/out" 'assert d[0]["name"] == "laptop" and not d[0]["revoked"] and d[0]["prefix"] == "'"${dbkey:0:14}"'"'
start_server "$STORIES" --alias stories260k
expect_error 401 "needs an API key" POST /v1/chat/completions "$(chat 2)"
expect_status 200 POST /v1/chat/completions "$(chat 2)" -H "Authorization: Bearer $dbkey"
expect_exit 0 "$BYOAI_BIN" apikey revoke laptop
sleep 2.2 # the server re-reads whether keys exist every 2 s; the key itself is checked every time
expect_status 200 POST /v1/chat/completions "$(chat 2)"
expect_exit 1 "$BYOAI_BIN" apikey revoke laptop; grep -q "no active key" "$T/err" || fail "revoke twice"
expect_exit 2 "$BYOAI_BIN" apikey frobnicate
stop_server
pass "API keys"

# ---- CORS: allow-list, preflight, foreign origins refused
start_server "$STORIES" --alias stories260k --cors-origin http://app.example,https://b.example
expect_status 204 OPTIONS /v1/chat/completions "" -H "Origin: http://app.example" -H "Access-Control-Request-Method: POST" \
  -H "Access-Control-Request-Headers: authorization, content-type" -D "$T/hdr"
grep -qi "^Access-Control-Allow-Origin: http://app.example" "$T/hdr" || fail "preflight: $(cat "$T/hdr")"
grep -qi "^Access-Control-Allow-Headers: authorization, content-type" "$T/hdr" || fail "preflight headers"
expect_status 200 GET /v1/models -H "Origin: https://b.example" -D "$T/hdr"
grep -qi "^Access-Control-Allow-Origin: https://b.example" "$T/hdr" || fail "CORS header"
expect_error 403 "not allowed" POST /v1/chat/completions "$(chat 2)" -H "Origin: http://evil.example"
expect_status 200 POST /v1/chat/completions "$(chat 2)" -H "Origin: $URL" # the web app itself
# DNS rebinding: a page at evil.example resolving to 127.0.0.1 looks same-origin to a browser
expect_error 403 "loopback only" GET /v1/models -H "Host: evil.example:$PORT" -H "Origin: http://evil.example:$PORT"
expect_error 403 "loopback only" GET / -H "Host: evil.example"
expect_status 200 GET /api/version -H "Host: localhost:$PORT"
expect_status 200 GET /api/version -H "Host: 127.0.0.1"
stop_server
pass "CORS"

# ---- lifecycle: idle unload, the cap on loaded models
start_server --model a="$STORIES" --model b="$STORIES" --max-loaded 1 --idle-timeout 1
expect_status 200 POST /v1/chat/completions '{"model":"a","messages":[{"role":"user","content":"x"}],"max_tokens":2}'
expect_status 200 GET /v1/models
json_check "$T/body" 'm={x["id"]: x["byoai"]["loaded"] for x in d["data"]}; assert m == {"a": True, "b": False}, m'
expect_status 200 POST /v1/chat/completions '{"model":"b","messages":[{"role":"user","content":"x"}],"max_tokens":2}'
expect_status 200 GET /v1/models
json_check "$T/body" 'm={x["id"]: x["byoai"]["loaded"] for x in d["data"]}; assert m == {"a": False, "b": True}, m'
for _ in $(seq 1 60); do
  http GET /metrics >/dev/null
  grep -q '^byoai_loaded_models 0$' "$T/body" && break
  sleep 0.1
done
grep -q '^byoai_loaded_models 0$' "$T/body" || fail "idle model not unloaded"
serving_b() { expect_status 200 POST /v1/chat/completions '{"model":"b","messages":[{"role":"user","content":"x"}],"max_tokens":2}'; }
serving_b
stop_server
pass "load on use, cap, idle unload"

# ---- config precedence: file < environment < flags
mkdir -p "$BYOAI_HOME"
cat >"$BYOAI_HOME/server.conf" <<EOF
# test config
model = fromfile=$STORIES
max-tokens = 7
max-messages = "3"
EOF
BYOAI_MAX_TOKENS=9 start_server --max-messages 5
expect_error 400 "at most 9 tokens" POST /v1/chat/completions '{"model":"fromfile","messages":[{"role":"user","content":"x"}],"max_tokens":10}'
expect_error 400 "at most 5 per request" POST /v1/chat/completions '{"model":"fromfile","messages":[{"role":"user","content":"x"},{"role":"user","content":"x"},{"role":"user","content":"x"},{"role":"user","content":"x"},{"role":"user","content":"x"},{"role":"user","content":"x"}]}'
stop_server
echo "bogus-key = 1" >"$T/bad.conf"
expect_exit 1 "$BYOAI_BIN" serve --config "$T/bad.conf"; grep -q "bad.conf:1: unknown setting 'bogus-key'" "$T/err" || fail "bad config message: $(cat "$T/err")"
rm "$BYOAI_HOME/server.conf"
pass "config file, environment, flags"

# ---- usage errors
expect_exit 0 "$BYOAI_BIN" serve --help; grep -q "^usage: byoai serve" "$T/out" || fail "serve --help"
expect_exit 2 "$BYOAI_BIN" serve --port 70000
expect_exit 2 "$BYOAI_BIN" serve --bogus
expect_exit 2 "$BYOAI_BIN" serve --cors-origin "ftp://x"
expect_exit 2 "$BYOAI_BIN" serve "$STORIES" "$STORIES" --alias x
expect_exit 1 "$BYOAI_BIN" serve "$T/missing.gguf"
expect_exit 1 "$BYOAI_BIN" serve --host not-an-ip --port 0; grep -q "not an IP address" "$T/err" || fail "bad host"
pass "usage errors"

# ---- graceful shutdown: a running stream finishes, new requests get 503
start_server "$STORIES" --alias stories260k --ctx 4096 --shutdown-grace 120
# JSON mode cannot end before its token budget: a stream that surely outlasts the signal
curl -sN --max-time 150 -H 'Content-Type: application/json' \
  -d '{"model":"stories260k","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":600,"stream":true,"temperature":1,"seed":1,"response_format":{"type":"json_object"}}' \
  "$URL/v1/chat/completions" >"$T/long-sse" &
reader=$!
for _ in $(seq 1 100); do [ -s "$T/long-sse" ] && break; sleep 0.02; done
kill -TERM $SERVER_PID
at_signal=$(stat -c %s "$T/long-sse")
sleep 0.1
got=$(http POST /v1/chat/completions "$(chat 2)" || true)
[ "$got" = 503 ] || [ "$got" = 000 ] || fail "during shutdown: status $got"
wait $reader || true
tail -c 14 "$T/long-sse" | cmp -s - <(printf 'data: [DONE]\n\n') || fail "the running stream was cut: $(tail -c 200 "$T/long-sse")"
grep -q '"finish_reason":"length"' "$T/long-sse" || fail "the running stream did not finish: $(tail -c 300 "$T/long-sse")"
[ "$(stat -c %s "$T/long-sse")" -gt "$at_signal" ] || fail "the stream had ended before the signal: nothing tested"
rc=0; wait $SERVER_PID || rc=$?
SERVER_PID=""
[ $rc = 0 ] || { cat "$T/server.log"; fail "exit status $rc after SIGTERM"; }
grep -q "SIGTERM received" "$T/server.log" || fail "no shutdown message"
pass "graceful shutdown"
