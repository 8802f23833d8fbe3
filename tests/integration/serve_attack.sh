#!/usr/bin/env bash
# Hostile clients against `byoai serve` (slow_clients.py): thousands of
# connections from one address that trickle header lines or send nothing
# must neither lock others out nor keep the server from stopping.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_serve.sh"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge 6000 ] || fail "this test needs 6000 open files (ulimit -n is $(ulimit -n); raise the hard limit)"
SLOW="$BYOAI_SOURCE/tests/integration/slow_clients.py"
APIDS=()
CLEANUP_EXTRA='for p in "${APIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done'

wait_file() { # FILE SECONDS
  local i
  for i in $(seq 1 $(($2 * 20))); do [ -f "$1" ] && return 0; sleep 0.05; done
  fail "$1 did not appear within $2 s"
}

# 1. 2000 trickling and 300 silent connections from 127.0.0.2, all kept
#    (no per-address limit, a long header deadline): idle sockets cost no
#    thread, /api/health answers from 127.0.0.1 in under 100 ms, and SIGTERM
#    ends the server in under 1 s while they are still connected.
start_server "$STORIES" --max-connections-per-ip 0 --header-timeout 60 --no-log-requests
python3 "$SLOW" "$PORT" 127.0.0.2 2000 300 6 "$T/ready1" 15 "$T/a1.json" & APIDS+=($!)
wait_file "$T/ready1" 60
cat "$T/a1.json"; echo
json_check "$T/a1.json" 'assert d["connected"] == 2300 and d["open"] == 2300, d'
json_check "$T/a1.json" 'assert d["lines_sent"] >= 2000, d'
json_check "$T/a1.json" 'assert d["probes"] >= 15 and d["probes_ok"] == d["probes"], d'
json_check "$T/a1.json" 'assert d["probe_ms_max"] < 100, d'
pass "2300 slow connections from one address held: /api/health in $(python3 -c 'import json,sys; print("%.1f" % json.load(open(sys.argv[1]))["probe_ms_max"])' "$T/a1.json") ms at most"
t0=$(date +%s%N)
stop_server
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$ms" -lt 1000 ] || fail "SIGTERM took $ms ms with the slow connections open"
pass "SIGTERM with 2300 slow connections open: stopped in $ms ms"
kill "${APIDS[0]}" 2>/dev/null || true

# 2. The defaults: one address holds 64 connections, the rest are refused
#    at once; the held ones are cut at the header deadline (2 s here) even
#    though they keep sending lines; others are served throughout.
start_server "$STORIES" --header-timeout 2
python3 "$SLOW" "$PORT" 127.0.0.2 500 100 5 "$T/ready2" 0 "$T/a2.json" & APIDS+=($!)
wait_file "$T/ready2" 60
cat "$T/a2.json"; echo
json_check "$T/a2.json" 'assert d["connected"] + (d["made"] - d["connected"]) == 600, d'
json_check "$T/a2.json" 'assert d["closed_within_1s"] >= 600 - 64, d'
json_check "$T/a2.json" 'assert d["open"] == 0, d'
json_check "$T/a2.json" 'assert d["probes_ok"] == d["probes"] and d["probe_ms_max"] < 100, d'
pass "per-address limit (64) and header deadline: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["closed_within_1s"])' "$T/a2.json") refused at once, the rest cut after 2 s"
grep -q " GET /api/health 200 " "$T/server.log" || fail "no log line for /api/health: $(head -5 "$T/server.log")"
stop_server
