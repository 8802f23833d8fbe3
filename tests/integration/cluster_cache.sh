#!/usr/bin/env bash
# The prompt cache through the cluster: each stage keeps the KV of its
# layers per conversation, so two and three conversations alternating on one
# model reuse >= 90% of their prompt after the first turn (cached_tokens in
# the OpenAI usage), through the coordinator's API and through a member's,
# with the same answers as one machine. Prints the time to the first token
# of every turn.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

# a serves stories260K itself too (file-stories260k): the single-machine reference
cl_admin a --ctx 512 --model-file "$STORIES"
cl_member b --ctx 512 --model-file "$STORIES"
cl_wait_alive a 2
cl a deploy st="$STORIES" --ctx 512 --seq 4 --min-nodes 2 >"$T/deploy.out" || fail "deploy"
grep -q "on 2 node(s)" "$T/deploy.out" || fail "not on two nodes: $(cat "$T/deploy.out")"
api_wait_model b st

# CONVERSATIONS TURNS NODE MODEL TAG: alternate the conversations turn by turn (TAG makes them new);
# one JSON line per turn: conversation, turn, prompt and cached tokens, the
# answer, the time to its first token
talk() {
  python3 - "$(cat "$T/$3.http")" "$4" "$1" "$2" "$5" <<'PY'
import json, sys, time, urllib.request
port, model, n_conv, turns, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
story = " ".join(["Once upon a time there was a little girl named Lily who loved to play in the park with her dog."] * 12)
convs = [[{"role": "system", "content": "%s %d. %s" % (tag, k, story)}] for k in range(n_conv)]
for turn in range(turns):
    for k in range(n_conv):
        convs[k].append({"role": "user", "content": "What did Lily do on day %d of story %d?" % (turn + 1, k)})
        body = json.dumps({"model": model, "messages": convs[k], "max_tokens": 8, "temperature": 0, "stream": True,
                           "stream_options": {"include_usage": True}}).encode()
        req = urllib.request.Request("http://127.0.0.1:%s/v1/chat/completions" % port, body,
                                     {"Content-Type": "application/json"})
        t0, ttft, text, usage = time.time(), None, "", None
        with urllib.request.urlopen(req, timeout=120) as r:
            for line in r:
                line = line.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]": continue
                d = json.loads(line[6:])
                if "error" in d: raise SystemExit("error: %s" % d)
                if d.get("usage"): usage = d["usage"]
                for ch in d.get("choices") or []:
                    piece = (ch.get("delta") or {}).get("content") or ""
                    if piece and ttft is None: ttft = time.time() - t0
                    text += piece
        convs[k].append({"role": "assistant", "content": text})
        print(json.dumps({"conv": k, "turn": turn + 1, "prompt": usage["prompt_tokens"],
                          "cached": usage["prompt_tokens_details"]["cached_tokens"], "text": text,
                          "ttft": ttft or time.time() - t0}), flush=True)
PY
}

check_reuse() { # FILE: after the first turn every conversation reuses >= 90% of its prompt
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert rows, "no turns"
for r in rows:
    if r["turn"] == 1: continue
    assert r["cached"] >= 0.9 * r["prompt"], "conversation %d turn %d reused %d of %d prompt tokens" % (r["conv"], r["turn"], r["cached"], r["prompt"])
    assert r["cached"] < r["prompt"], r
print("   (%s)" % ", ".join("c%d t%d: %d/%d cached, first token %.0f ms" % (r["conv"], r["turn"], r["cached"], r["prompt"], 1000 * r["ttft"]) for r in rows))
PY
}

same_answers() { # FILE FILE: the same text turn by turn
  python3 - "$1" "$2" <<'PY'
import json, sys
a = [json.loads(l)["text"] for l in open(sys.argv[1])]
b = [json.loads(l)["text"] for l in open(sys.argv[2])]
assert a == b, list(zip(a, b))
PY
}

talk 1 3 a file-stories260k One >"$T/ref1.jsonl" || fail "the single-machine reference"
talk 2 3 a file-stories260k Two >"$T/ref2.jsonl" || fail "the single-machine reference (2)"
talk 3 3 a file-stories260k Three >"$T/ref3.jsonl" || fail "the single-machine reference (3)"

talk 1 3 a st One >"$T/one.jsonl" || fail "one conversation through the cluster"
check_reuse "$T/one.jsonl" || fail "one conversation did not reuse its prompt"
same_answers "$T/one.jsonl" "$T/ref1.jsonl" || fail "one conversation: the cluster's answers differ from one machine's"
pass "one conversation, three turns through 2 nodes: >= 90% of each later prompt cached, answers as one machine"

talk 2 3 a st Two >"$T/two.jsonl" || fail "two conversations through the cluster"
check_reuse "$T/two.jsonl" || fail "two alternating conversations did not reuse their prompts"
same_answers "$T/two.jsonl" "$T/ref2.jsonl" || fail "two conversations: answers differ from one machine's"
pass "two conversations alternating through 2 nodes: each reuses >= 90% of its prompt after the first turn"

talk 3 3 a st Three >"$T/three.jsonl" || fail "three conversations through the cluster"
check_reuse "$T/three.jsonl" || fail "three alternating conversations did not reuse their prompts"
same_answers "$T/three.jsonl" "$T/ref3.jsonl" || fail "three conversations: answers differ from one machine's"
pass "three conversations alternating through 2 nodes: each reuses >= 90% of its prompt after the first turn"

# through the member that does not coordinate the model: the count comes back with the answer
talk 2 3 b st Two >"$T/via-b.jsonl" || fail "two conversations through b"
check_reuse "$T/via-b.jsonl" || fail "through b: no reuse"
same_answers "$T/via-b.jsonl" "$T/ref2.jsonl" || fail "through b: answers differ from one machine's"
pass "the same through the member that asks the coordinator"
for n in b a; do cl_kill $n; done
