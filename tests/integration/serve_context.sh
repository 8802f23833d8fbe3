#!/usr/bin/env bash
# A conversation longer than the context: the API refuses it with a 400 that
# says the history is too long, unless the request opts in with
# "truncation": "auto"; then the oldest turns go (the system message and
# the last message stay), the answer says how many went, and it equals the
# answer to the conversation with those turns left out by hand.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_serve.sh"
start_server "$STORIES" --alias s --ctx 128
# a system message and 12 turns of about 20 tokens each: far more than 128 tokens
python3 - "$T" <<'PY'
import json, sys
t = sys.argv[1]
msgs = [{"role": "system", "content": "Lily is kind."}]
for i in range(12):
    msgs.append({"role": "user", "content": "Tell me about the dog number %d." % i})
    msgs.append({"role": "assistant", "content": "The dog %d was happy and ran in the park." % i})
msgs.append({"role": "user", "content": "And the cat?"})
for name, extra in (("long", {}), ("trunc", {"truncation": "auto"}), ("off", {"truncation": "disabled"}),
                    ("stream", {"truncation": "auto", "stream": True})):
    body = {"model": "s", "messages": msgs, "max_tokens": 16, "temperature": 0}
    body.update(extra)
    json.dump(body, open("%s/%s.json" % (t, name), "w"))
json.dump(dict(json.load(open(t + "/trunc.json")), truncation="nonsense"), open(t + "/bad.json", "w"))
PY
expect_error 400 "history is [0-9]+ tokens.*holds 128.*truncation" POST /v1/chat/completions "@$T/long.json"
json_check "$T/body" 'assert d["error"]["code"] == "context_length_exceeded" and d["error"]["param"] == "messages"'
expect_error 400 "history is" POST /v1/chat/completions "@$T/off.json"
expect_error 400 "'truncation' is \"auto\"" POST /v1/chat/completions "@$T/bad.json"
pass "an over-long conversation is refused: the history is too long"

expect_status 200 POST /v1/chat/completions "@$T/trunc.json" -D "$T/headers"
cp "$T/body" "$T/trunc.out"
dropped=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["byoai"]["truncated_messages"])' "$T/trunc.out")
[ "$dropped" -ge 2 ] || fail "truncated_messages is $dropped"
grep -qi "^x-byoai-truncated-messages: $dropped" "$T/headers" || fail "no X-Byoai-Truncated-Messages header: $(cat "$T/headers")"
json_check "$T/trunc.out" 'u = d["usage"]; assert u["prompt_tokens"] + 16 <= 128, u'
# the same conversation with the oldest $dropped non-system messages left out by hand
python3 - "$T" "$dropped" <<'PY'
import json, sys
t, k = sys.argv[1], int(sys.argv[2])
b = json.load(open(t + "/long.json"))
m = b["messages"]
b["messages"] = [m[0]] + m[1 + k:]
json.dump(b, open(t + "/manual.json", "w"))
PY
expect_status 200 POST /v1/chat/completions "@$T/manual.json"
python3 - "$T/trunc.out" "$T/body" <<'PY' || fail "truncated answer differs from the hand-truncated conversation"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"], (a, b)
assert a["usage"]["prompt_tokens"] == b["usage"]["prompt_tokens"], (a["usage"], b["usage"])
assert "byoai" not in b
PY
# the first turn left is a user turn (an even count of user/assistant messages went)
[ $((dropped % 2)) = 0 ] || fail "dropped $dropped messages: the conversation would start with an answer"
# streamed: the first chunk says it too
expect_status 200 POST /v1/chat/completions "@$T/stream.json"
grep -m1 '^data: ' "$T/body" | grep -q "\"truncated_messages\":$dropped" || fail "stream's first chunk: $(head -c 300 "$T/body")"
pass "\"truncation\": \"auto\" drops the $dropped oldest messages, keeps the system message, says so"

# a last message that alone is too long is refused even with truncation
python3 - "$T" <<'PY'
import json, sys
json.dump({"model": "s", "truncation": "auto", "max_tokens": 8,
           "messages": [{"role": "user", "content": "the dog ran " * 80}]}, open(sys.argv[1] + "/huge.json", "w"))
PY
expect_error 400 "even without its older turns" POST /v1/chat/completions "@$T/huge.json"
stop_server
pass "a last message longer than the context is refused even with truncation"
