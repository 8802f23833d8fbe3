#!/usr/bin/env bash
# Time to the first token per turn of a conversation through a 2-node
# cluster (two `byoai serve --cluster` processes on 127.0.0.1, one thread
# each): the prompt cache makes later turns compute only their new tokens.
# Prints one JSON line per turn. Usage: bench/cluster_turns.sh BYOAI_BIN MODEL.gguf [TURNS]
set -euo pipefail
bin=${1:?usage: cluster_turns.sh BYOAI_BIN MODEL.gguf [TURNS]}
model=${2:?usage: cluster_turns.sh BYOAI_BIN MODEL.gguf [TURNS]}
turns=${3:-3}
T=$(mktemp -d "${TMPDIR:-/tmp}/byoai-bench-XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
dport=$((20000 + RANDOM % 20000))
opts=(--port 0 --cluster --cluster-bind 127.0.0.1 --cluster-port 0 --cluster-discovery-port "$dport" -t 1 --ctx 2048)
start() { # NAME: a node in $T/NAME; its HTTP port in $T/NAME.http
  BYOAI_HOME="$T/$1" "$bin" serve "${opts[@]}" --model "$(basename "$model" .gguf)=$model" >"$T/$1.out" 2>"$T/$1.log" &
  pids+=($!)
  for _ in $(seq 1 600); do
    grep -q "listening on http" "$T/$1.out" 2>/dev/null && [ -f "$T/$1/cluster/run.json" ] && break
    sleep 0.05
  done
  sed -n 's|.*listening on http://[^:]*:\([0-9]*\)/.*|\1|p' "$T/$1.out" | head -1 >"$T/$1.http"
}
BYOAI_HOME="$T/a" "$bin" cluster create bench >/dev/null
start a
port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$T/a/cluster/run.json")
code=$(BYOAI_HOME="$T/a" "$bin" cluster invite --address "127.0.0.1:$port" 2>/dev/null)
BYOAI_HOME="$T/b" "$bin" cluster join "$code" >/dev/null
start b
BYOAI_HOME="$T/a" "$bin" cluster deploy m="$model" --ctx 2048 --min-nodes 2 >/dev/null
for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$(cat "$T/b.http")/v1/models" | grep -q '"id":"m"' && break; sleep 0.1; done
python3 - "$(cat "$T/a.http")" "$turns" <<'PY'
import json, sys, time, urllib.request
port, turns = sys.argv[1], int(sys.argv[2])
story = " ".join(["Once upon a time there was a little girl named Lily who loved to play in the park with her dog."] * 12)
conv = [{"role": "system", "content": story}]
for turn in range(turns):
    conv.append({"role": "user", "content": "What did Lily do on day %d?" % (turn + 1)})
    body = json.dumps({"model": "m", "messages": conv, "max_tokens": 8, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request("http://127.0.0.1:%s/v1/chat/completions" % port, body, {"Content-Type": "application/json"})
    t0, ttft, text, usage = time.time(), None, "", {}
    with urllib.request.urlopen(req, timeout=300) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]": continue
            d = json.loads(line[6:])
            if d.get("usage"): usage = d["usage"]
            for ch in d.get("choices") or []:
                piece = (ch.get("delta") or {}).get("content") or ""
                if piece and ttft is None: ttft = time.time() - t0
                text += piece
    conv.append({"role": "assistant", "content": text})
    print(json.dumps({"turn": turn + 1, "prompt_tokens": usage.get("prompt_tokens"),
                      "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
                      "ttft_s": round(ttft if ttft is not None else time.time() - t0, 3)}))
PY
