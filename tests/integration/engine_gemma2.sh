#!/usr/bin/env bash
# Gemma 2 (general.architecture = gemma2): post-block norms, tanh soft-capping
# of attention scores and final logits, sliding-window attention on every
# other layer, GELU, scaled and tied embeddings. A synthetic 26-layer Gemma 2
# (random F16 weights from make_tinyllama) must continue a prompt exactly as
# llama.cpp does: the expected texts below are llama.cpp's greedy output
# (commit c392e5094, llama-cli --temp 0 -n 24) on the same files. The three
# files differ in one feature each (window 6 or 100, caps 0.5/3 or 2/8),
# and each gives a different text, so each feature is checked.
. "$(dirname "$0")/lib.sh"

PROMPT="Once upon a time"
check() { # NAME WANT MAKE-OPTIONS...
  local name=$1 want=$2
  shift 2
  "$BYOAI_BUILD/make_tinyllama" "$T/$name.gguf" "$BYOAI_SHARED" --arch gemma2 --layers 26 --dim 64 --ff 128 \
    --heads 4 --kv-heads 2 --scale 3 "$@" || fail "cannot make $name"
  local got
  got=$("$BYOAI_BIN" run "$T/$name.gguf" -p "$PROMPT" -n 24 --temp 0 -t 2 2>"$T/$name.err") ||
    fail "byoai run $name: $(cat "$T/$name.err")"
  [ "$got" = "$want" ] || fail "$name differs from llama.cpp:
 want: $want
 got:  $got"
}
check swa6-caps-small "Once upon a time WorldCatrecord WorldCatériéri通通ori Turner saying sayingÿSomeSomeSomeSome cur sous해 Our simulationsignment expertage" \
  --swa 6 --attn-cap 0.5 --final-cap 3
check swa100-caps-small "Once upon a time WorldCatrecordrecordrecordrecord possession possession possession WorldCatồ possessionigsCollectionCollectionCollectionCollectionCollectionCollection WorldCatCollection WorldCatварварвар" \
  --swa 100 --attn-cap 0.5 --final-cap 3
check swa6-caps-large "Once upon a time WorldCatrecord WorldCatériéri通通ori Turner saying sayingÿSomeSomeSomeSome curießdostęp endl endl impactapaapa" \
  --swa 6 --attn-cap 2 --final-cap 8
"$BYOAI_BIN" info "$T/swa6-caps-small.gguf" | grep -q "architecture:   gemma2$" || fail "byoai info does not list gemma2 as supported"
pass "Gemma 2: greedy output equals llama.cpp's (sliding window, soft-capping, post-norms)"
