#!/usr/bin/env bash
# `byoai serve`'s HTTP edges: ambiguous framing and %00 refused, duplicate
# JSON keys refused, the per-request log line (text and JSON), a quick stop
# when idle, and the line it prints while it waits for cluster members.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_serve.sh"

# raw REQUEST (printf format): the status line of the answer
raw() {
  python3 - "$PORT" "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
buf = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    buf += d
print(buf.split(b"\r\n", 1)[0].decode(), buf.split(b"\r\n\r\n", 1)[-1].decode(errors="replace"))
PY
}

start_server "$STORIES"
CHAT='{"model":"stories260k","messages":[{"role":"user","content":"Once"}],"max_tokens":4,"temperature":0}'

# ---- framing ---------------------------------------------------------------------------
out=$(raw 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n{"a":'); echo "$out"
[[ "$out" == "HTTP/1.1 400 "* ]] && grep -q "Content-Length headers" <<<"$out" || fail "two Content-Length: $out"
out=$(raw 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'); echo "$out"
[[ "$out" == "HTTP/1.1 400 "* ]] && grep -q "both Content-Length and Transfer-Encoding" <<<"$out" || fail "CL+TE: $out"
out=$(raw 'GET /api/hea%00lth HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'); echo "$out"
[[ "$out" == "HTTP/1.1 400 "* ]] && grep -q "%00" <<<"$out" || fail "%00 in the path: $out"
out=$(raw 'GET /api/health%00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
[[ "$out" == "HTTP/1.1 400 "* ]] || fail "%00 at the end of the path (would be cut to /api/health): $out"
expect_status 200 GET /api/health
pass "two Content-Length, Content-Length with Transfer-Encoding, %00: 400"

# ---- duplicate keys ------------------------------------------------------------------------
expect_error 400 'the key "model" more than once' POST /v1/chat/completions \
  '{"model":"stories260k","model":"other","messages":[{"role":"user","content":"x"}]}'
expect_error 400 'the key "content" more than once' POST /v1/chat/completions \
  '{"model":"stories260k","messages":[{"role":"user","content":"x","content":"y"}]}'
expect_error 400 'the key "input" more than once' POST /v1/embeddings '{"model":"stories260k","input":"a","input":"b"}'
pass "duplicate JSON keys: 400 naming the key"

# ---- the log line (text) -------------------------------------------------------------------
expect_status 200 POST /v1/chat/completions "$CHAT"
expect_status 200 POST /v1/chat/completions "${CHAT%\}},\"stream\":true}"
expect_status 404 GET '/nope%20x?secret=1'
stop_server
cat "$T/server.log"
grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z 127\.0\.0\.1 POST /v1/chat/completions 200 [0-9.]+s model=stories260k prompt_tokens=[0-9]+ completion_tokens=4 cached_tokens=[0-9]+$' "$T/server.log" || fail "no text log line for a chat completion"
[ "$(grep -Ec ' 127\.0\.0\.1 POST /v1/chat/completions 200 [0-9.]+s model=stories260k prompt_tokens=[0-9]+ completion_tokens=4 cached_tokens=[0-9]+$' "$T/server.log")" = 2 ] || fail "the streamed answer's log line lacks its tokens"
grep -Eq ' GET /api/hea%00lth 400 ' "$T/server.log" || fail "no log line for the %00 request as sent"
grep -Eq ' GET /nope%20x 404 ' "$T/server.log" || fail "no log line for the 404"
! grep -q "secret" "$T/server.log" || fail "the query string was logged"
pass "one text log line per request (method, path as sent, status, duration, model, tokens)"

# ---- the log line (JSON); none with --no-log-requests ----------------------------------------
start_server "$STORIES" --log-format json
expect_status 200 POST /v1/chat/completions "$CHAT"
expect_status 200 GET /api/health
stop_server
python3 - "$T/server.log" <<'PY' || fail "JSON log lines: $(cat "$T/server.log")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
chat = [l for l in lines if l["path"] == "/v1/chat/completions"]
assert len(chat) == 1, lines
c = chat[0]
assert c["method"] == "POST" and c["status"] == 200 and c["remote"] == "127.0.0.1", c
assert c["model"] == "stories260k" and c["completion_tokens"] == 4 and c["prompt_tokens"] > 0, c
assert isinstance(c["duration_ms"], float) and c["time"].endswith("Z"), c
assert any(l["path"] == "/api/health" and l["status"] == 200 for l in lines), lines
PY
start_server "$STORIES" --no-log-requests
expect_status 200 GET /api/health
stop_server
! grep -q "/api/health" "$T/server.log" || fail "--no-log-requests still logs: $(cat "$T/server.log")"
pass "--log-format json: one JSON object per request; --no-log-requests: none"

# ---- an idle server stops at once, even with an idle connection open ---------------------------
start_server "$STORIES"
expect_status 200 GET /api/health
python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
s.recv(4096)
open(sys.argv[2], "w").write("x")
time.sleep(20)' "$PORT" "$T/idle" &
IDLE=$!
CLEANUP_EXTRA="$CLEANUP_EXTRA; kill -9 $IDLE 2>/dev/null || true"
for _ in $(seq 1 100); do [ -f "$T/idle" ] && break; sleep 0.05; done
t0=$(date +%s%N)
stop_server
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
kill $IDLE 2>/dev/null || true
[ "$ms" -lt 500 ] || fail "an idle server took $ms ms to stop"
pass "an idle server stops in $ms ms (a kept-alive connection open)"

# ---- waiting for cluster members before listening --------------------------------------------
export BYOAI_HOME="$T/cl"
"$BYOAI_BIN" cluster create it-wait >/dev/null 2>&1 || fail "cluster create"
"$BYOAI_BIN" serve --port 0 --cluster --cluster-model s="$STORIES" --cluster-min-nodes 3 --no-cluster-discovery \
  --cluster-port 0 >"$T/cl.out" 2>"$T/cl.log" &
CPID=$!
CLEANUP_EXTRA="$CLEANUP_EXTRA; kill -9 $CPID 2>/dev/null || true"
sleep 2.5
grep -q "byoai serve: waiting for 3 cluster members (1 alive) before listening" "$T/cl.log" || fail "no waiting line: $(cat "$T/cl.log")"
n=$(grep -c "waiting for 3 cluster members" "$T/cl.log")
[ "$n" -le 2 ] || fail "the waiting line is not rate-limited ($n lines in 2.5 s)"
! grep -q "listening on" "$T/cl.out" || fail "listening before the members are there"
t0=$(date +%s%N)
kill -TERM $CPID
rc=0; wait $CPID || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ $rc = 0 ] || fail "SIGTERM while waiting: exit $rc: $(cat "$T/cl.log")"
grep -q "SIGTERM received while starting" "$T/cl.log" || fail "no stop message: $(cat "$T/cl.log")"
! grep -q "ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer" "$T/cl.log" || fail "sanitizer: $(cat "$T/cl.log")"
[ "$ms" -lt 2000 ] || fail "SIGTERM while waiting for members took $ms ms"
pass "waiting for cluster members: said (rate-limited), SIGTERM stops it in $ms ms"
