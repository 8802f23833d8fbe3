#!/usr/bin/env bash
# A node under a flood of silent connections: 500 TCP connections from one
# address that say nothing (and reconnect as soon as the node closes them).
# A restarted member that has to connect to it through the flood still links
# within 2 s, the node never sends a byte to any of them, and SIGTERM ends
# the node within 1 s whatever is connected.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

cl_admin a
cl_member b
cl_wait_alive a 2
cl_kill b

# the attacker: N connections to a's link port, each reopened when a closes it
python3 -u - "$(cat "$T/a.port")" 500 >"$T/flood.out" 2>&1 <<'PY' &
import select, signal, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
stats = {"opened": 0, "closed_by_node": 0, "bytes_from_node": 0}
def one():
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    stats["opened"] += 1
    return s
socks = {}
def add():
    s = one()
    socks[s.fileno()] = s
    poller.register(s, select.POLLIN)
poller = select.poll()
for _ in range(n):
    add()
def bye(*_):
    print("stats %(opened)d %(closed_by_node)d %(bytes_from_node)d" % stats, "open", len(socks), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("ready", len(socks), flush=True)
while True:
    for fd, ev in poller.poll(50):
        s = socks.pop(fd, None)
        if s is None:
            continue
        try:
            d = s.recv(4096)
        except (BlockingIOError, InterruptedError):
            socks[fd] = s
            continue
        except OSError:
            d = b""
        if d:
            stats["bytes_from_node"] += len(d)
            socks[fd] = s
            continue
        poller.unregister(fd)
        s.close()
        stats["closed_by_node"] += 1
        add()
PY
flood=$!
CLEANUP_EXTRA='[ -n "${flood:-}" ] && { kill $flood; wait $flood; } 2>/dev/null || true; '"$CLEANUP_EXTRA"
for i in $(seq 1 100); do grep -q "^ready" "$T/flood.out" 2>/dev/null && break; sleep 0.05; done
grep -q "^ready 500" "$T/flood.out" || fail "the attacker did not start: $(cat "$T/flood.out")"
sleep 1 # the flood is on

# a restarted member links within 2 s of listening; it must connect to a
# itself (a cannot know its new port: b neither announces nor listens on the
# old one), through the flood
cl_start b --no-discovery --peer "127.0.0.1:$(cat "$T/a.port")"
t0=$(date +%s.%N)
for i in $(seq 1 100); do
  [ "$(cl_alive a)" = 2 ] && [ "$(cl_alive b)" = 2 ] && break
  sleep 0.05
done
t1=$(date +%s.%N)
secs=$(python3 -c "print('%.2f' % (float('$t1') - float('$t0')))")
[ "$(cl_alive a)" = 2 ] || fail "b did not link with a under the flood within 5 s"
python3 -c "import sys; sys.exit(0 if float('$secs') < 2 else 1)" || fail "b linked after ${secs} s under the flood (want < 2 s)"
echo "   (under 500 silent connections: b linked with a ${secs} s after it listened)"
cl_status a
json_check "$T/a.status" 'assert d["silent_connections"] >= 200, d["silent_connections"]'
grep -q "without answering" "$T/a.status" || fail "no event for the refused connections"
pass "500 silent connections from one address: a member links within 2 s"

# SIGTERM with the flood still connected
pid=$(cat "$T/a.pid")
t0=$(date +%s.%N)
kill -TERM "$pid"
for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
t1=$(date +%s.%N)
kill -0 "$pid" 2>/dev/null && fail "the node did not stop within 2 s of SIGTERM under the flood"
wait "$pid" 2>/dev/null || true
CL_NODES=$(echo "$CL_NODES" | sed "s/ a\b//")
cl_check_log a
secs=$(python3 -c "print('%.2f' % (float('$t1') - float('$t0')))")
python3 -c "import sys; sys.exit(0 if float('$secs') < 1 else 1)" || fail "SIGTERM took ${secs} s under the flood (want < 1 s)"
echo "   (SIGTERM under the flood: stopped in ${secs} s)"
kill -TERM $flood
wait $flood 2>/dev/null || true
flood=""
read -r _ opened closed bytes _ <<<"$(grep '^stats' "$T/flood.out")"
[ "$bytes" = 0 ] || fail "the node sent $bytes bytes to connections that never authenticated"
[ "$closed" -ge 200 ] || fail "the node closed only $closed of the silent connections"
echo "   (the attacker opened $opened connections; the node closed $closed without a byte)"
pass "SIGTERM ends the node within 1 s under the flood; not one byte went to the attacker"
cl_kill b
