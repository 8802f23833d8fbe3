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

# the generation count is the number of tokens printed: at -n, at the end
# of the context, and at an end-of-generation token
gen_count() { sed -n 's/.*generation \([0-9]*\) tokens.*/\1/p' "$T/err"; }
expect_exit 0 "$BYOAI_BIN" run "$STORIES" -p "Once upon a time" -n 7 --temp 0 --logprobs 0
[ "$(wc -l <"$T/out")" = 7 ] && [ "$(gen_count)" = 7 ] || fail "-n 7: $(wc -l <"$T/out") printed, count $(gen_count)"
expect_exit 0 "$BYOAI_BIN" run "$STORIES" -p "Once upon a time" -n -1 --temp 0 --logprobs 0
grep -q "the context is full (128 tokens)" "$T/err" || fail "context full: $(cat "$T/err")"
[ "$(wc -l <"$T/out")" = 123 ] && [ "$(gen_count)" = 123 ] || fail "full context: $(wc -l <"$T/out") printed, count $(gen_count)"
# a copy whose EOS is " little" (id 376), the 5th token of the greedy story
python3 - "$STORIES" "$T/eos.gguf" <<'PY'
import struct, sys
d = bytearray(open(sys.argv[1], "rb").read())
k = b"tokenizer.ggml.eos_token_id"
i = d.index(struct.pack("<Q", len(k)) + k) + 8 + len(k)
assert struct.unpack_from("<I", d, i)[0] == 4  # uint32
struct.pack_into("<I", d, i + 4, 376)
open(sys.argv[2], "wb").write(d)
PY
expect_exit 0 "$BYOAI_BIN" run "$T/eos.gguf" -p "Once upon a time" -n 50 --temp 0
[ "$(cat "$T/out")" = "Once upon a time, there was a" ] || fail "EOS run: $(cat "$T/out")"
[ "$(gen_count)" = 4 ] || fail "EOS: count $(gen_count), 4 tokens printed"
pass "the generation count is the tokens printed (-n, full context, EOS)"

# the context: the trained one by default; more than that warns, once
expect_exit 0 "$BYOAI_BIN" run "$STORIES" -p "Once" -n 2 --temp 0 -c 512
[ "$(grep -c "warning: a context of 512 tokens is more than the 128 the model was trained with" "$T/err")" = 1 ] \
  || fail "-c 512 warning: $(cat "$T/err")"
grep -q "may drift, repeat itself or turn to gibberish" "$T/err" || fail "-c warning says what may happen: $(cat "$T/err")"
expect_exit 0 "$BYOAI_BIN" run "$STORIES" -p "Once" -n 2 --temp 0 -c 128
grep -q "warning" "$T/err" && fail "-c 128 warned: $(cat "$T/err")"
expect_exit 0 "$BYOAI_BIN" run "$STORIES" -p "Once upon a time" -n 200 --temp 0
grep -q "the context is full (128 tokens)" "$T/err" || fail "default context is not the trained 128: $(cat "$T/err")"
grep -q "warning" "$T/err" && fail "the default context warned: $(cat "$T/err")"
pass "the trained context is the default; a larger -c warns"

# mistyped commands and options get "did you mean"
expect_exit 2 "$BYOAI_BIN" instal stories260k
grep -q "unknown command 'instal'; did you mean 'install'?" "$T/err" || fail "instal: $(cat "$T/err")"
expect_exit 2 "$BYOAI_BIN" tokenzie "$STORIES" x
grep -q "did you mean 'tokenize'?" "$T/err" || fail "tokenzie: $(cat "$T/err")"
expect_exit 2 "$BYOAI_BIN" xyzzy
grep -q "did you mean" "$T/err" && fail "xyzzy got a suggestion: $(cat "$T/err")"
grep -q "Commands:" "$T/err" || fail "xyzzy: no command list"
expect_exit 2 "$BYOAI_BIN" info "$STORIES" --jsno
grep -q "unknown option '--jsno'; did you mean '--json'?" "$T/err" || fail "--jsno: $(cat "$T/err")"
expect_exit 2 "$BYOAI_BIN" search --ofline
grep -q "did you mean '--offline'?" "$T/err" || fail "--ofline: $(cat "$T/err")"
expect_exit 2 "$BYOAI_BIN" install --re x
grep -q "option '--re' is ambiguous: it could be --registry, --retries, --refresh" "$T/err" || fail "--re: $(cat "$T/err")"
expect_exit 2 "$BYOAI_BIN" info "$STORIES" --json=yes
grep -q "option '--json' takes no value" "$T/err" || fail "--json=yes: $(cat "$T/err")"
expect_exit 2 "$BYOAI_BIN" registry lsit
grep -q "unknown subcommand 'lsit'; did you mean 'list'?" "$T/err" || fail "registry lsit: $(cat "$T/err")"
pass "did you mean: commands, options, subcommands"

# remove of a missing name does not suggest installing it
expect_exit 0 "$BYOAI_BIN" import "$STORIES" --name stories
expect_exit 1 "$BYOAI_BIN" remove storise
grep -q "'storise' is not installed, so there is nothing to remove" "$T/err" || fail "remove missing: $(cat "$T/err")"
grep -q "did you mean 'stories'?" "$T/err" || fail "remove suggestion: $(cat "$T/err")"
grep -q "byoai install" "$T/err" && fail "remove suggests installing: $(cat "$T/err")"
expect_exit 0 "$BYOAI_BIN" remove stories
pass "remove of a missing name"

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
