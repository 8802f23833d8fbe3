#!/usr/bin/env bash
# The prompt cache: conversations that take turns each keep their KV cache
# (slot choice by similarity, then least recently used; evicted
# conversations in memory, then on disk), a restored conversation continues
# exactly as a recomputed one, the disk cache survives a restart, stays in
# its budget, and a damaged file is refused and recomputed.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_serve.sh"
HERE=$(dirname "$0")
python3 "$HERE/gguf_chatml.py" "$STORIES" "$T/chat.gguf"
CONV() { python3 "$HERE/conversations.py" "$URL" chat "$@"; }
metric() { curl -s "$URL/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
# every turn after the first of each conversation reuses >= 90% of its prompt
check_reuse() {
  python3 - "$1" <<'PY' || fail "prompt reuse below 90%: $(cat "$1")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert rows, "no turns"
for r in rows:
    if r["turn"] == 0:
        continue
    share = r["cached"] / r["prompt"]
    assert share >= 0.9, "conversation %d turn %d: %d of %d cached" % (r["conv"], r["turn"], r["cached"], r["prompt"])
PY
}

# two conversations on one slot, three on two: the memory tier
start_server "$T/chat.gguf" --parallel 1 --ctx 2048
CONV 2 4 >"$T/two"
check_reuse "$T/two"
[ "$(metric 'byoai_prompt_cache_restores_total{tier="memory"}')" -ge 3 ] || fail "no restores from memory"
cached=$(metric byoai_prompt_tokens_cached_total)
want=$(python3 -c 'import json,sys; print(sum(json.loads(l)["cached"] for l in open(sys.argv[1])))' "$T/two")
[ "$cached" = "$want" ] || fail "/metrics says $cached cached tokens, the answers' usage says $want"
stop_server
start_server "$T/chat.gguf" --parallel 2 --ctx 2048
CONV 3 4 >"$T/three"
check_reuse "$T/three"
stop_server
pass "2 conversations on 1 slot and 3 on 2 slots reuse >= 90% of their prompts after the first turn"

# a conversation evicted to disk comes back with the same greedy text as recomputing it
export BYOAI_HOME="$T/home"
start_server "$T/chat.gguf" --parallel 1 --ctx 2048 --cache-ram 0
CONV 2 3 --history "$T/hist.json" --settle >"$T/disk"
check_reuse "$T/disk"
[ "$(metric 'byoai_prompt_cache_restores_total{tier="disk"}')" -ge 3 ] || fail "no restores from disk: $(curl -s "$URL/metrics" | grep cache)"
[ "$(metric 'byoai_prompt_cache_restores_total{tier="memory"}')" = 0 ] || fail "cache-ram 0 still restored from memory"
ls "$BYOAI_HOME"/cache/*.kv >/dev/null 2>&1 || fail "no cache file in $BYOAI_HOME/cache"
stop_server
ls "$BYOAI_HOME"/cache/ | grep -q '\.tmp\.' && fail "a temporary cache file was left behind"
# the same conversations against a server without any cache
NOCACHE_HOME="$T/nocache"
BYOAI_HOME="$NOCACHE_HOME" start_server "$T/chat.gguf" --parallel 1 --ctx 2048 --cache-ram 0 --cache-disk 0
recompute() { # the last answer of every conversation in history file $1, recomputed; compare
  python3 - "$URL" "$1" <<'PY'
import json, sys, urllib.request
url, hist = sys.argv[1], json.load(open(sys.argv[2]))
for k, conv in enumerate(hist):
    body = json.dumps({"model": "chat", "messages": conv[:-1], "max_tokens": 16, "temperature": 0}).encode()
    d = json.load(urllib.request.urlopen(urllib.request.Request(url + "/v1/chat/completions", body,
                                         {"Content-Type": "application/json"}), timeout=120))
    got = d["choices"][0]["message"]["content"]
    u = d["usage"]  # no cache: at most the start the conversations share is reused
    assert u["prompt_tokens_details"]["cached_tokens"] < u["prompt_tokens"] // 10, u
    assert got == conv[-1]["content"], "conversation %d: recomputed %r, restored %r" % (k, got, conv[-1]["content"])
PY
}
recompute "$T/hist.json" || fail "a restored conversation continued differently from a recomputed one"
[ ! -d "$NOCACHE_HOME/cache" ] || [ -z "$(ls "$NOCACHE_HOME/cache")" ] || fail "cache-disk 0 wrote files"
stop_server
pass "evicted to disk, restored: the same greedy continuation as a recomputation"

# the disk cache survives a restart
start_server "$T/chat.gguf" --parallel 1 --ctx 2048 --cache-ram 0
CONV 2 1 --history "$T/hist.json" >"$T/restart"
check_reuse "$T/restart"
[ "$(metric 'byoai_prompt_cache_restores_total{tier="disk"}')" -ge 1 ] || fail "nothing restored after a restart"
stop_server
pass "a restarted server restores conversations from its disk cache"

# a damaged file is refused, removed, and the conversation recomputed
for f in "$BYOAI_HOME"/cache/*.kv; do
  python3 - "$f" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 0x5a; open(p, "wb").write(bytes(b))
PY
done
start_server "$T/chat.gguf" --parallel 1 --ctx 2048 --cache-ram 0
CONV 2 1 --history "$T/hist.json" >"$T/damaged"
python3 - "$T/damaged" <<'PY' || fail "a damaged cache file was used: $(cat "$T/damaged")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert any(r["cached"] / r["prompt"] < 0.5 for r in rows), rows
PY
[ "$(metric byoai_prompt_cache_damaged_total)" -ge 1 ] || fail "damaged file not counted"
grep -q "damaged" "$T/server.log" || fail "the damaged file was not reported in the log"
stop_server
BYOAI_HOME="$NOCACHE_HOME" start_server "$T/chat.gguf" --parallel 1 --ctx 2048 --cache-ram 0 --cache-disk 0
recompute "$T/hist.json" || fail "after a damaged cache file the answer differs from a recomputation"
stop_server
pass "a damaged cache file is refused and the conversation recomputed (same text)"

# the disk cache stays within its budget
rm -rf "$BYOAI_HOME/cache" "$T/hist.json"
start_server "$T/chat.gguf" --parallel 1 --ctx 2048 --cache-ram 0 --cache-disk 2M
CONV 3 3 --history "$T/hist.json" >"$T/budget"
stop_server
total=$(du -cb "$BYOAI_HOME"/cache/*.kv 2>/dev/null | tail -1 | cut -f1)
[ -n "$total" ] && [ "$total" -gt $((1024 * 1024)) ] || fail "too little was cached on disk: ${total:-0} bytes"
[ "$total" -le $((2 * 1024 * 1024)) ] || fail "disk cache holds $total bytes, over its 2M budget"
pass "the disk cache stays within cache-disk ($total bytes of 2M)"

# bad settings are refused with a clear message
expect_exit 2 "$BYOAI_BIN" serve "$T/chat.gguf" --slot-similarity 1.5
grep -q "slot-similarity" "$T/err" || fail "bad --slot-similarity message: $(cat "$T/err")"
expect_exit 2 "$BYOAI_BIN" serve "$T/chat.gguf" --cache-disk lots
grep -q "cache-disk" "$T/err" || fail "bad --cache-disk message: $(cat "$T/err")"
pass "bad cache settings refused"
