#!/usr/bin/env bash
# byoai tokenize and info on vocabulary-only GGUF files, including
# architectures this build cannot run (gpt2, bert): every test string of the
# reference vectors gives the reference token ids.
. "$(dirname "$0")/lib.sh"
V="$BYOAI_SHARED/vocab"

for name in llama-spm gpt-2 bert-bge; do
  f="$V/ggml-vocab-$name.gguf"
  python3 - "$BYOAI_BIN" "$f" <<'PY' || fail "tokenize $name differs from the reference vectors"
import json, re, subprocess, sys
binary, gguf = sys.argv[1], sys.argv[2]
inp = open(gguf + ".inp", encoding="utf-8").read()
# strings end at lines that read exactly the separator; only the newline
# right before a separator is dropped (a string may be empty or blank)
strings, start = [], 0
for m in re.finditer(r"(?m)^__ggml_vocab_test__$", inp):
    end = m.start()
    if end > start and inp[end - 1] == "\n":
        end -= 1
    strings.append(inp[start:end])
    start = m.end() + 1
want = [l.split() for l in open(gguf + ".out", encoding="utf-8").read().split("\n")][:len(strings)]
assert len(strings) == len(want) and len(strings) > 40, (len(strings), len(want))
bad = 0
for s, w in zip(strings, want):
    r = subprocess.run([binary, "tokenize", gguf, s, "--ids", "--no-bos"], capture_output=True, text=True)
    if r.returncode != 0:
        print("exit %d for %r: %s" % (r.returncode, s, r.stderr), file=sys.stderr); bad += 1; continue
    got = [str(x) for x in json.loads(r.stdout)]
    if got != w:
        print("%r: got %s, want %s" % (s, got, w), file=sys.stderr); bad += 1
print("%s: %d strings" % (gguf.rsplit("/", 1)[-1], len(strings)))
sys.exit(1 if bad else 0)
PY
done
pass "tokenize on vocabulary-only files (llama-spm, gpt-2, bert-bge) matches the reference ids"

# the default adds what the metadata asks for: BOS for SentencePiece, [CLS]/[SEP] for BERT
expect_exit 0 "$BYOAI_BIN" tokenize "$V/ggml-vocab-llama-spm.gguf" "Hello world" --ids
[ "$(cat "$T/out")" = "[1, 15043, 3186]" ] || fail "llama-spm ids: $(cat "$T/out")"
expect_exit 0 "$BYOAI_BIN" tokenize "$V/ggml-vocab-bert-bge.gguf" "Hello world" --ids
[ "$(cat "$T/out")" = "[101, 7592, 2088, 102]" ] || fail "bert ids: $(cat "$T/out")"
expect_exit 0 "$BYOAI_BIN" tokenize "$V/ggml-vocab-gpt-2.gguf" "Hello world" --json
json_check "$T/out" 'assert d == [{"id": 15496, "text": "Hello"}, {"id": 995, "text": " world"}], d'
pass "tokenize --ids / --json with BOS and EOS from the metadata"

# info: what the file holds, without pretending it has weights
expect_exit 0 "$BYOAI_BIN" info "$V/ggml-vocab-gpt-2.gguf" --json
json_check "$T/out" 'assert d["architecture"] == "gpt2" and not d["supported"] and d["vocab_only"] and d["tokenizer"] == "gpt2" and d["vocab_size"] == 50257 and d["tensors"] == 0 and d["context_length"] == 1024'
expect_exit 0 "$BYOAI_BIN" info "$V/ggml-vocab-bert-bge.gguf" --json
json_check "$T/out" 'assert d["architecture"] == "bert" and not d["supported"] and d["vocab_only"] and d["tokenizer"] == "bert" and d["vocab_size"] == 30522'
expect_exit 0 "$BYOAI_BIN" info "$V/ggml-vocab-llama-spm.gguf" --json
json_check "$T/out" 'assert d["architecture"] == "llama" and d["supported"] and d["vocab_only"] and d["tokenizer"] == "llama" and d["vocab_size"] == 32000'
expect_exit 0 "$BYOAI_BIN" info "$V/ggml-vocab-gpt-2.gguf"
grep -q "^architecture:   gpt2 (not supported by this build)" "$T/out" || fail "info arch line: $(cat "$T/out")"
grep -q "^tokenizer:      gpt2, 50257 tokens" "$T/out" || fail "info tokenizer line: $(cat "$T/out")"
grep -q "vocabulary-only file" "$T/out" || fail "info does not say vocabulary-only: $(cat "$T/out")"
grep -q "^memory:\|^parameters:" "$T/out" && fail "info shows weights or memory for a vocabulary-only file: $(cat "$T/out")"
expect_exit 0 "$BYOAI_BIN" info "$STORIES" --json
json_check "$T/out" 'assert not d["vocab_only"] and d["file_type"] == "F32"'
pass "info on vocabulary-only files"

# a vocabulary-only file cannot run: a clear error, not a crash
expect_exit 1 "$BYOAI_BIN" run "$V/ggml-vocab-gpt-2.gguf" -p hi
grep -q "architecture 'gpt2' is not supported" "$T/err" || fail "run gpt2 vocab: $(cat "$T/err")"
expect_exit 1 "$BYOAI_BIN" run "$V/ggml-vocab-llama-spm.gguf" -p hi
grep -q "error:" "$T/err" || fail "run llama vocab-only: $(cat "$T/err")"
# a GGUF without a vocabulary
python3 - "$T/novocab.gguf" <<'PY'
import struct, sys
def s(x): b = x.encode(); return struct.pack("<Q", len(b)) + b
kv = [("general.architecture", 8, s("gpt2"))]
out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
for k, t, v in kv: out += s(k) + struct.pack("<I", t) + v
open(sys.argv[1], "wb").write(out)
PY
expect_exit 1 "$BYOAI_BIN" tokenize "$T/novocab.gguf" "Hello"
grep -q "tokenize: error: .*has no tokenizer" "$T/err" || fail "no-vocabulary message: $(cat "$T/err")"
expect_exit 0 "$BYOAI_BIN" info "$T/novocab.gguf" --json
json_check "$T/out" 'assert not d["vocab_only"] and d["vocab_size"] == 0'
pass "vocabulary-only and vocabulary-less files: clear errors"
