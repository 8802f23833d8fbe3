#!/usr/bin/env python3
"""Time to first token of conversations that take turns: byoai serve (one
machine, and two cluster nodes) against llama.cpp's llama-server on the same
model file, in the same run. One JSON document on stdout.

  bench/ttft_bench.py --byoai BIN --model FILE [--llama-server BIN]
                      [--cluster] [--parallel 2] [--convs 1,2,4] [--turns 5]
                      [--rounds 3] [--threads N] [--ctx 2048]

For each server and each number of conversations (1, 2, 4), a fresh server
is started and the conversations take turns: conversation 0 turn 1,
conversation 1 turn 1, ..., then turn 2 of each, and so on. Each turn is
the whole history so far (a long first message, then short questions and
the answers the server gave) sent as one streamed /v1/completions request,
so both servers see exactly the same text whatever their chat templates;
the time to the first generated text is measured by the client. Each
conversation's first message has the same words in an order of its own, so
that conversations share no long run of tokens, as different chats do. The report
gives, per server, conversations and turn, the median over conversations
and rounds, and the cached prompt share byoai reported. Both servers get the
same number of parallel sequences (--parallel) and context per sequence
(llama-server's -c is the total, so it gets parallel x ctx).
"""
import argparse, http.client, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--byoai", required=True)
ap.add_argument("--model", required=True)
ap.add_argument("--llama-server", default="")
ap.add_argument("--cluster", action="store_true", help="also two byoai cluster nodes on 127.0.0.1")
ap.add_argument("--parallel", type=int, default=2)
ap.add_argument("--convs", default="1,2,4")
ap.add_argument("--turns", type=int, default=5)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--ctx", type=int, default=2048)
ap.add_argument("--max-tokens", type=int, default=16)
ap.add_argument("--first-words", type=int, default=300, help="words of each conversation's first message")
ap.add_argument("--only", default="", help="comma-separated server names to run (default: all)")
a = ap.parse_args()
work = tempfile.mkdtemp(prefix="byoai-ttft-")
procs = []

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p

def wait_http(port, path, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            if r.status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("bench: server on port %d did not come up" % port)

def stop_all():
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
    procs.clear()

def start_byoai(home):
    port = free_port()
    env = dict(os.environ, BYOAI_HOME=home)
    log = open(os.path.join(work, "byoai-%d.log" % port), "w")
    procs.append(subprocess.Popen([a.byoai, "serve", a.model, "--alias", "m", "--port", str(port), "--parallel",
                                   str(a.parallel), "--ctx", str(a.ctx), "-t", str(a.threads)], env=env,
                                  stdout=log, stderr=log))
    wait_http(port, "/api/health")
    return port

def start_llama():
    port = free_port()
    log = open(os.path.join(work, "llama-%d.log" % port), "w")
    procs.append(subprocess.Popen([a.llama_server, "-m", a.model, "--host", "127.0.0.1", "--port", str(port),
                                   "-np", str(a.parallel), "-c", str(a.ctx * a.parallel), "-t", str(a.threads),
                                   "-a", "m"], stdout=log, stderr=log))
    wait_http(port, "/health")
    return port

def start_cluster():
    """Two `byoai serve --cluster` nodes; the first coordinates the model, planned over both."""
    env = lambda home: dict(os.environ, BYOAI_HOME=home)
    def cl(home, *args):
        return subprocess.run([a.byoai, "cluster", *args], env=env(home), check=True, capture_output=True,
                              text=True).stdout.strip()
    homes = [os.path.join(work, "node%d-%d" % (i, time.time_ns())) for i in range(2)]
    lports, dport, ports = [free_port(), free_port()], free_port(), []
    cl(homes[0], "create", "bench")
    for i, home in enumerate(homes):
        if i == 1:  # the member joins through the running admin node
            cl(home, "join", cl(homes[0], "invite", "--address", "127.0.0.1:%d" % lports[0]).split()[-1])
        port = free_port()
        args = [a.byoai, "serve", "--port", str(port), "--cluster", "--cluster-bind", "127.0.0.1", "--cluster-port",
                str(lports[i]), "--cluster-discovery-port", str(dport), "--no-cluster-discovery", "--parallel",
                str(a.parallel), "--ctx", str(a.ctx), "-t", str(a.threads), "--cluster-memory", "2G"]
        if i == 1:
            args += ["--cluster-peer", "127.0.0.1:%d" % lports[0]]
        log = open(os.path.join(work, "node%d.log" % i), "w")
        procs.append(subprocess.Popen(args, env=env(home), stdout=log, stderr=log))
        wait_http(port, "/api/health")
        ports.append(port)
    deadline = time.time() + 60
    while json.loads(cl(homes[0], "status", "--json"))["alive"] < 2:
        if time.time() > deadline:
            raise SystemExit("bench: the member never linked")
        time.sleep(0.2)
    cl(homes[0], "deploy", "m=" + a.model, "--ctx", str(a.ctx), "--seq", str(a.parallel), "--min-nodes", "2")
    deadline = time.time() + 300
    while time.time() < deadline:  # ready when the model answers
        try:
            first_token(ports[0], "Hello", 1)
            return ports[0]
        except Exception:
            time.sleep(0.5)
    raise SystemExit("bench: the cluster model never became ready")

def first_token(port, prompt, max_tokens):
    """Stream a completion; return (seconds to the first text, the whole text, usage or None)."""
    body = json.dumps({"model": "m", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}, "cache_prompt": True})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError("status %d: %s" % (r.status, r.read()[:300]))
    ttft, text, usage, buf = None, "", None, b""
    while True:
        chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            for line in ev.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    continue
                d = json.loads(data)
                if d.get("usage"):
                    usage = d["usage"]
                for ch in d.get("choices") or []:
                    t = ch.get("text") or ""
                    if t and ttft is None:
                        ttft = time.perf_counter() - t0
                    text += t
    c.close()
    return (ttft if ttft is not None else time.perf_counter() - t0), text, usage

story = ("Once upon a time there was a little girl named Lily who loved to play in the park with her red ball "
         "and her dog Max. One sunny day they found a big box under an old tree near the river, and inside it was "
         "a tiny bird that could not fly yet. ")
words = story.split()

def first_message(k):
    """Conversation k's long first message: the story's words in an order of its own, so that conversations
    share no long run of tokens (as different chats do)."""
    import random
    r = random.Random(k)
    out = []
    while len(out) < a.first_words:
        w = words[:]
        r.shuffle(w)
        out += w
    return " ".join(out[:a.first_words])

def conversations(port, n):
    hist = []
    for k in range(n):
        hist.append("Story %d. %s\nUser: Tell me a story.\nAssistant:" % (k, first_message(k)))
    rows = []
    for turn in range(1, a.turns + 1):
        for k in range(n):
            secs, text, usage = first_token(port, hist[k], a.max_tokens)
            cached = usage.get("prompt_tokens_details", {}).get("cached_tokens") if usage else None
            rows.append({"conv": k, "turn": turn, "ttft": secs,
                         "prompt_tokens": usage.get("prompt_tokens") if usage else None, "cached": cached})
            hist[k] += text + "\nUser: And then what happened in part %d?\nAssistant:" % turn
    return rows

servers = [("byoai", lambda: start_byoai(os.path.join(work, "home-%d" % time.time_ns())))]
if a.cluster:
    servers.append(("byoai_cluster_2_nodes", start_cluster))
if a.llama_server:
    servers.append(("llama_server", start_llama))
if a.only:
    servers = [x for x in servers if x[0] in a.only.split(",")]
convs = [int(x) for x in a.convs.split(",")]
samples = {}
try:
    for rnd in range(a.rounds):
        for name, start in servers:  # alternate servers within a round: both see the same machine
            for n in convs:
                port = start()
                first_token(port, "Warm up.", 2)
                rows = conversations(port, n)
                stop_all()
                samples.setdefault(name, {}).setdefault(n, []).extend(rows)
                t2 = [r["ttft"] for r in rows if r["turn"] >= 2]
                print("bench: round %d %s %d conversations: ttft turns 2-%d median %.3f s" %
                      (rnd + 1, name, n, a.turns, statistics.median(t2)), file=sys.stderr)
finally:
    stop_all()
    shutil.rmtree(work, ignore_errors=True)

out = {"model": os.path.abspath(a.model), "parallel": a.parallel, "ctx_per_sequence": a.ctx, "threads": a.threads,
       "turns": a.turns, "rounds": a.rounds, "max_tokens": a.max_tokens, "first_message_words": a.first_words,
       "llama_server": a.llama_server or None, "servers": {}}
for name, by_n in samples.items():
    res = {}
    for n, rows in by_n.items():
        per_turn = {}
        for t in range(1, a.turns + 1):
            rs = [r for r in rows if r["turn"] == t]
            share = [r["cached"] / r["prompt_tokens"] for r in rs if r["cached"] is not None and r["prompt_tokens"]]
            per_turn[str(t)] = {"ttft_median_s": round(statistics.median(r["ttft"] for r in rs), 4),
                                "prompt_tokens": rs[0]["prompt_tokens"],
                                "cached_share_median": round(statistics.median(share), 3) if share else None}
        later = [r["ttft"] for r in rows if r["turn"] >= 2]
        res[str(n)] = {"ttft_turns_2_on_median_s": round(statistics.median(later), 4), "turns": per_turn}
    out["servers"][name] = res
if "llama_server" in out["servers"]:
    for name in [s for s in out["servers"] if s != "llama_server"]:
        out["servers"][name]["vs_llama_server"] = {
            n: round(out["servers"]["llama_server"][n]["ttft_turns_2_on_median_s"] /
                     out["servers"][name][n]["ttft_turns_2_on_median_s"], 2)
            for n in out["servers"][name] if n in out["servers"]["llama_server"]}
json.dump(out, sys.stdout, indent=2)
print()
