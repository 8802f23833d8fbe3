#!/usr/bin/env python3
"""Drive conversations that take turns against `byoai serve` and print one
JSON line per turn: {"conv", "turn", "prompt", "cached", "text"}.

Usage: conversations.py URL MODEL N_CONVERSATIONS TURNS [--max-tokens N]
       [--system-repeat R] [--prefix P] [--only K] [--history FILE]

Each conversation has its own long system message (so conversations differ
from their first tokens on) and short user turns; greedy sampling. With
--history FILE the conversations' messages are saved to / continued from
FILE, so a later run (e.g. against a restarted server) continues them.
--only K runs conversation K only."""
import argparse, json, os, time, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("url"); ap.add_argument("model")
ap.add_argument("n", type=int); ap.add_argument("turns", type=int)
ap.add_argument("--max-tokens", type=int, default=16)
ap.add_argument("--system-repeat", type=int, default=20)
ap.add_argument("--prefix", default="")
ap.add_argument("--only", type=int, default=-1)
ap.add_argument("--history")
ap.add_argument("--settle", action="store_true", help="before each turn, wait until every conversation the "
                "prompt cache saved is on disk (so that restores come from the disk)")
a = ap.parse_args()

def settle():
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = {}
        for line in urllib.request.urlopen(a.url + "/metrics", timeout=10).read().decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                m[k] = float(v)
        if m.get("byoai_prompt_cache_spills_total", 0) >= m.get("byoai_prompt_cache_saves_total", 0):
            return
        time.sleep(0.02)
    raise SystemExit("the prompt cache did not write its conversations to disk within 20 s")

def chat(msgs):
    if a.settle:
        settle()
    body = json.dumps({"model": a.model, "messages": msgs, "max_tokens": a.max_tokens, "temperature": 0}).encode()
    req = urllib.request.Request(a.url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=120) as r:
        d = json.load(r)
    return d["choices"][0]["message"]["content"], d["usage"], time.monotonic() - t0

convs = None
if a.history and os.path.exists(a.history):
    convs = json.load(open(a.history))
if not convs:
    story = "Lily and Tom went to the park to play with a big red ball. "
    convs = [[{"role": "system", "content": "%sConversation %d. %s" % (a.prefix, k, story * a.system_repeat)}]
             for k in range(a.n)]
start = sum(1 for m in convs[0] if m["role"] == "user")
for turn in range(start, start + a.turns):
    for k in range(a.n):
        if a.only >= 0 and k != a.only:
            continue
        convs[k].append({"role": "user", "content": "Tell me about turn %d of story %d." % (turn, k)})
        text, u, secs = chat(convs[k])
        convs[k].append({"role": "assistant", "content": text})
        print(json.dumps({"conv": k, "turn": turn, "prompt": u["prompt_tokens"],
                          "cached": u["prompt_tokens_details"]["cached_tokens"], "text": text, "seconds": secs}),
              flush=True)
if a.history:
    json.dump(convs, open(a.history, "w"))
