#!/usr/bin/env bash
# Tool calls end to end in two families' formats, with chat variants of
# stories260K: ChatML (Qwen/Hermes <tool_call> blocks, ended by the
# <|im_end|> control token) and Mistral ([TOOL_CALLS], a control token the
# grammar lets through as text). The calls must come back as tool_calls
# whose arguments match the schema, through both APIs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_serve.sh"
python3 "$(dirname "$0")/gguf_chatml.py" "$STORIES" "$T/chatml.gguf" chatml || fail "make the chatml variant"
python3 "$(dirname "$0")/gguf_chatml.py" "$STORIES" "$T/mistral.gguf" mistral || fail "make the mistral variant"
start_server --model qwenish="$T/chatml.gguf" --model mistralish="$T/mistral.gguf" --ctx 2048
TOOLS='[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":12},"days":{"type":"integer","minimum":1,"maximum":5}},"required":["city","days"],"additionalProperties":false}}},{"type":"function","function":{"name":"noop","parameters":{"type":"object","properties":{}}}}]'
check_calls() { # FILE: an OpenAI answer whose calls are valid
  python3 - "$1" <<'PY' || fail "tool calls: $(head -c 1500 "$1")"
import json, sys
d = json.load(open(sys.argv[1]))
ch = d["choices"][0]
assert ch["finish_reason"] in ("tool_calls", "length"), ch
calls = ch["message"]["tool_calls"]
assert calls, ch
for c in calls:
    assert c["type"] == "function" and c["id"].startswith("call_")
    a = json.loads(c["function"]["arguments"])
    if c["function"]["name"] == "get_weather":
        assert set(a) == {"city", "days"} and isinstance(a["city"], str) and len(a["city"]) <= 12, a
        assert isinstance(a["days"], int) and 1 <= a["days"] <= 5, a
    else:
        assert c["function"]["name"] == "noop" and a == {}, c
PY
}
for model in qwenish mistralish; do
  for seed in 1 2 3; do
    expect_status 200 POST /v1/chat/completions '{"model":"'$model'","messages":[{"role":"user","content":"Weather?"}],"tools":'"$TOOLS"',"tool_choice":"required","seed":'$seed',"max_tokens":300}'
    check_calls "$T/body"
  done
  # a history with a call and its result renders in the family's format
  expect_status 200 POST /v1/chat/completions '{"model":"'$model'","messages":[{"role":"user","content":"Weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"abcDEF123","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\",\"days\":2}"}}]},{"role":"tool","tool_call_id":"abcDEF123","content":"cold"}],"tools":'"$TOOLS"',"tool_choice":{"type":"function","function":{"name":"get_weather"}},"seed":4,"max_tokens":300}'
  check_calls "$T/body"
  json_check "$T/body" 'assert all(c["function"]["name"] == "get_weather" for c in d["choices"][0]["message"]["tool_calls"])'
done
pass "tool calls in ChatML and Mistral formats"
# the Mistral marker is a control token: printed as text, not the end of the answer
expect_status 200 POST /api/chat '{"model":"mistralish","stream":false,"messages":[{"role":"user","content":"Weather?"}],"tools":'"$TOOLS"',"tool_choice":"required","options":{"seed":7,"num_predict":300}}'
json_check "$T/body" 'c = d["message"]["tool_calls"]; assert c and isinstance(c[0]["function"]["arguments"], dict), d'
expect_status 200 POST /api/chat '{"model":"qwenish","stream":true,"messages":[{"role":"user","content":"Weather?"}],"tools":'"$TOOLS"',"tool_choice":"required","options":{"seed":8,"num_predict":300}}'
python3 - "$T/body" <<'PY' || fail "ollama stream with tools: $(head -c 1500 "$T/body")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]).read().split("\n") if l.strip()]
assert lines[-1]["done"] is True and lines[-1]["eval_count"] > 0
calls = [c for l in lines for c in l["message"].get("tool_calls", [])]
assert calls and all(isinstance(c["function"]["arguments"], dict) for c in calls), lines[-3:]
assert "".join(l["message"]["content"] for l in lines) == "", "a call is not content"
PY
pass "tool calls through the Ollama API"
# some answers start with the [TOOL_CALLS] control token itself (its piece is
# empty in logprobs, the special text in the answer), and still parse
n_control=0
for seed in 1 2 3 4 5 6; do
  expect_status 200 POST /v1/chat/completions '{"model":"mistralish","messages":[{"role":"user","content":"x"}],"tools":'"$TOOLS"',"tool_choice":"required","seed":'$seed',"max_tokens":120,"logprobs":true}'
  check_calls "$T/body"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["choices"][0]["logprobs"]["content"][0]["token"] == "" else 1)' "$T/body" && n_control=$((n_control + 1))
done
[ $n_control -ge 1 ] || fail "no answer used the [TOOL_CALLS] control token"
pass "the Mistral control token is text for the grammar"
stop_server
