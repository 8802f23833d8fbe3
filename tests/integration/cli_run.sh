#!/usr/bin/env bash
# byoai run / info / tokenize as a user runs them.
. "$(dirname "$0")/lib.sh"

# The done-means test of issue 2: the known story, token for token.
expected_story >"$T/want"
expect_exit 0 "$BYOAI_BIN" run "$STORIES" -p "Once upon a time" -n 100 --temp 0
cmp "$T/want" "$T/out" || { diff "$T/want" "$T/out"; fail "story differs"; }
grep -q "generation 100 tokens" "$T/err" || fail "the summary should count the 100 tokens printed: $(cat "$T/err")"
grep -q "load .* s | prompt 5 tokens" "$T/err" || fail "no load/prompt report"
pass "greedy story matches llama2.c"

# same seed, same text; another seed, other text
"$BYOAI_BIN" run "$STORIES" -p "Once" -n 40 --temp 1 --seed 7 >"$T/a" 2>/dev/null
"$BYOAI_BIN" run "$STORIES" -p "Once" -n 40 --temp 1 --seed 7 >"$T/b" 2>/dev/null
"$BYOAI_BIN" run "$STORIES" -p "Once" -n 40 --temp 1 --seed 8 >"$T/c" 2>/dev/null
cmp -s "$T/a" "$T/b" || fail "same seed gave different text"
cmp -s "$T/a" "$T/c" && fail "different seeds gave the same text"
pass "seeded sampling is reproducible"

# logprobs: JSON lines
expect_exit 0 "$BYOAI_BIN" run "$STORIES" -p "Once upon a time" -n 5 --temp 0 --logprobs 3
[ "$(wc -l <"$T/out")" = 5 ] || fail "want 5 JSON lines, got $(wc -l <"$T/out")"
python3 - "$T/out" <<'PY' || fail "logprobs lines malformed"
import json, sys, math
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines[0]["text"] == ",", lines[0]
for l in lines:
    assert set(l) >= {"id", "text", "logprob", "top_logprobs", "bytes"}
    assert len(l["top_logprobs"]) == 3
    assert l["top_logprobs"][0][0] == l["id"]          # greedy: the best is the one taken
    assert abs(l["top_logprobs"][0][1] - l["logprob"]) < 1e-6
    assert l["logprob"] <= 0 and all(a[1] >= b[1] for a, b in zip(l["top_logprobs"], l["top_logprobs"][1:]))
PY
pass "logprobs JSON lines"

# interactive mode reads prompts from stdin
printf 'Once upon a time\n' | "$BYOAI_BIN" run "$STORIES" -n 12 --temp 0 >"$T/out" 2>"$T/err" || fail "interactive run failed"
grep -q ", there was a little girl named Lily" "$T/out" || fail "interactive output: $(cat "$T/out")"
pass "interactive mode"

# usage and runtime errors
expect_exit 0 "$BYOAI_BIN" run --help; grep -q "^usage: byoai run" "$T/out" || fail "run --help"
expect_exit 0 "$BYOAI_BIN" --help; grep -q "Commands:" "$T/out" || fail "--help"
expect_exit 2 "$BYOAI_BIN" run "$STORIES" -p x --temp abc; grep -q -- "--temp expects a number" "$T/err" || fail "bad --temp message"
expect_exit 2 "$BYOAI_BIN" run "$STORIES" -p x -n -5; grep -q -- "-n must be between" "$T/err" || fail "-n range"
expect_exit 2 "$BYOAI_BIN" run "$STORIES" --bogus
expect_exit 2 "$BYOAI_BIN" run
expect_exit 2 "$BYOAI_BIN" nosuchcommand
expect_exit 1 "$BYOAI_BIN" run "$T/missing.gguf" -p x; grep -q "not found" "$T/err" || fail "missing model message"
head -c 1000 /dev/urandom >"$T/junk.gguf"
expect_exit 1 "$BYOAI_BIN" run "$T/junk.gguf" -p x; grep -q "not a GGUF file" "$T/err" || fail "junk message: $(cat "$T/err")"
expect_exit 1 "$BYOAI_BIN" run "$STORIES" -p "$(printf 'Once upon a time %.0s' $(seq 1 60))" -n 5
grep -q "does not fit" "$T/err" || fail "long prompt message: $(cat "$T/err")"
pass "errors and exit codes"

# info and tokenize
expect_exit 0 "$BYOAI_BIN" info "$STORIES" --json
json_check "$T/out" 'assert d["architecture"]=="llama" and d["supported"] and d["layers"]==5 and d["vocab_size"]==512 and d["parameters"]==292800 and d["types"]["F32"]["tensors"]==48'
expect_exit 0 "$BYOAI_BIN" info "$STORIES"; grep -q "memory: .* at 128 context" "$T/out" || fail "info memory line"
expect_exit 1 "$BYOAI_BIN" info "$T/junk.gguf"
expect_exit 0 "$BYOAI_BIN" tokenize "$STORIES" "Once upon a time" --ids
[ "$(cat "$T/out")" = "[1, 403, 407, 261, 378]" ] || fail "tokenize ids: $(cat "$T/out")"
expect_exit 0 "$BYOAI_BIN" tokenize "$STORIES" "Hello" --json
json_check "$T/out" 'assert d[0]["id"]==1'
pass "info and tokenize"

# chat mode: a ChatML variant of stories260K (two tokens renamed to control tokens)
python3 "$(dirname "$0")/gguf_chatml.py" "$STORIES" "$T/chat.gguf"
render() { python3 -c 'import sys; sys.stdout.write("".join("<|im_start|>%s\n%s<|im_end|>\n" % (r, c) for r, c in zip(sys.argv[1::2], sys.argv[2::2])) + "<|im_start|>assistant\n")' "$@"; }
n_tokens() { "$BYOAI_BIN" tokenize "$T/chat.gguf" "$1" --special --ids | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
want1=$(n_tokens "$(render user "Once upon a time"; echo x)"); want1=$((want1 - 1))   # keep the final newline
printf 'Once upon a time\n' | "$BYOAI_BIN" run "$T/chat.gguf" -n 8 --temp 0 >"$T/out" 2>"$T/err" || fail "chat run: $(cat "$T/err")"
grep -q "prompt $want1 tokens" "$T/err" || fail "chat prompt is not the ChatML rendering ($want1 tokens): $(cat "$T/err")"
grep -q "im_start\|im_end" "$T/out" && fail "control tokens printed: $(cat "$T/out")"
grep -q "Once upon a time" "$T/out" && fail "chat mode echoed the user's line"
# with a system message and --chat -p, the same rendering rule
wants=$(n_tokens "$(render system "Be kind" user "Once upon a time"; echo x)"); wants=$((wants - 1))
expect_exit 0 "$BYOAI_BIN" run "$T/chat.gguf" --chat --system "Be kind" -p "Once upon a time" -n 4 --temp 0
grep -q "prompt $wants tokens" "$T/err" || fail "--system not rendered as a system turn: $(cat "$T/err")"
# a second turn evaluates only what the context does not hold yet
printf 'Once upon a time\nThe cat\n' | "$BYOAI_BIN" run "$T/chat.gguf" -n 8 --temp 0 >"$T/out" 2>"$T/err" || fail "two turns"
total=$(sed -n 's/.*prompt \([0-9]*\) tokens.*/\1/p' "$T/err")
reply1=$(printf 'Once upon a time\n' | "$BYOAI_BIN" run "$T/chat.gguf" -n 8 --temp 0 2>/dev/null | head -1)
full2=$(n_tokens "$(render user "Once upon a time" assistant "$reply1" user "The cat"; echo x)"); full2=$((full2 - 1))
[ "$total" -lt $((want1 + full2)) ] || fail "second turn re-evaluated the conversation ($total >= $want1 + $full2)"
# --no-chat: plain continuation even with a template
printf 'Once upon a time\n' | "$BYOAI_BIN" run "$T/chat.gguf" --no-chat -n 6 --temp 0 2>/dev/null | grep -q "^, there was a little" || fail "--no-chat"
pass "chat mode: template rendering, system message, cached turns, --no-chat"
