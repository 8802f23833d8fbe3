#!/usr/bin/env bash
# Membership and security with real processes (byoai serve --cluster; the
# CLI's own node daemon with CL_DAEMON=node): create, invite (single use),
# join, discovery within seconds by signed announcements, nodes of another
# cluster and nodes with the wrong key refused, a tampered frame detected and
# the link dropped, leave.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

# ---- the CLI without a running node --------------------------------------------------------
cl_expect a 0 "$BYOAI_BIN" cluster status
grep -q "not in a cluster" "$T/out" || fail "status of a new node: $(cat "$T/out")"
cl_expect a 2 "$BYOAI_BIN" cluster create "bad name"
cl_expect a 2 "$BYOAI_BIN" cluster bogus
cl_expect a 2 "$BYOAI_BIN" cluster join not-a-code
cl_expect a 1 "$BYOAI_BIN" cluster invite --address 127.0.0.1:1
grep -q "not in a cluster" "$T/err" || fail "invite outside a cluster: $(cat "$T/err")"
cl_expect a 1 "$BYOAI_BIN" cluster leave
# an invite needs the running node's address, or one given
cl q create it-q >/dev/null || fail "create q"
cl_expect q 1 "$BYOAI_BIN" cluster invite
grep -q "no cluster node is running" "$T/err" && grep -q -- "--address" "$T/err" || fail "invite without a node: $(cat "$T/err")"
cl_expect q 0 "$BYOAI_BIN" cluster invite --address 127.0.0.1:1
grep -q "^bx1-" "$T/out" && grep -q "no cluster node is running here now" "$T/err" || fail "invite --address without a node: $(cat "$T/err")"
# node names: the host name and the id's first characters by default, --name otherwise
qid=$(cl q status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["node_id"][:4], d["name"])')
python3 -c 'import sys; i, n = sys.argv[1:3]; sys.exit(0 if n.endswith("-" + i) else 1)' $qid || fail "default node name: $qid"
cl_expect q 2 "$BYOAI_BIN" cluster create x --name "bad name"
for sub in create invite join leave status plan deploy run node; do
  cl_expect a 0 "$BYOAI_BIN" cluster $sub --help
  grep -q "usage: byoai cluster $sub" "$T/out" || fail "cluster $sub --help"
done
pass "cluster CLI: help, usage errors (exit 2) and runtime errors (exit 1)"

# ---- discovery: members find each other by announcements alone --------------------------------
cl_admin a
start=$(date +%s.%N)
for n in b c; do
  code=$(cl a invite --address "127.0.0.1:$(cat "$T/a.port")" 2>/dev/null)
  cl $n join "$code" >/dev/null || fail "join $n"
  # forget the bootstrap address the join left: only discovery remains
  python3 - "$T/$n/cluster/cluster.json" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["peers"] = []; json.dump(d, open(p, "w"))
PY
done
# the code was for one use
used=$(cl a invite --address "127.0.0.1:$(cat "$T/a.port")" 2>/dev/null)
cl x1 join "$used" >/dev/null || fail "join x1"
cl_expect x2 1 "$BYOAI_BIN" cluster join "$used"
grep -q "already used" "$T/err" || grep -q "unknown, already used or expired" "$T/err" || fail "reused code: $(cat "$T/err")"
pass "an invite code works once"
start=$(date +%s.%N)
cl_start b --name laptop
cl_start c
cl_wait_alive a 3 10
cl_wait_alive b 3 10
cl_wait_alive c 3 10
secs=$(python3 -c "import time,sys; print('%.1f' % (time.time() - float(sys.argv[1])))" "$start")
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 6 else 1)" "$secs" || fail "discovery took ${secs}s"
grep -q "discovered node" <(cl a status) || fail "no discovery event"
cl_status a
json_check "$T/a.status" 'assert [m for m in d["members"] if m["name"] == "laptop" and m["state"] == "alive"], [m["name"] for m in d["members"]]'
grep -q "laptop" "$T/b/cluster/name" || fail "the name is not kept"
pass "discovery finds peers within seconds (${secs}s for 3 nodes)"

# ---- another cluster: its announcements are ignored, its connections refused --------------------
BYOAI_HOME="$T/z" "$BYOAI_BIN" cluster create other >/dev/null
cl_start z --peer "127.0.0.1:$(cat "$T/a.port")"
sleep 2
cl_status a
json_check "$T/a.status" '
z = [m for m in d["members"] if m["name"] and m["state"] == "alive"]
assert d["alive"] == 3, d["alive"]
assert d["handshake_failures"] >= 1, d["handshake_failures"]'
grep -q "does not authenticate" "$T/a.status" || fail "no refusal event: $(grep text "$T/a.status")"
cl_status z
json_check "$T/z.status" 'assert d["alive"] == 1, d["alive"]'
cl_kill z
pass "a node of another cluster is refused (and its announcements ignored)"

# ---- the wrong key: a node whose key does not match its certificate ------------------------------
cp -r "$T/c" "$T/w" 2>/dev/null || true
rm "$T/w/cluster/node.key" "$T/w/cluster/control.sock" 2>/dev/null || true
if [ "$CL_DAEMON" = serve ]; then
  mapfile -t sargs < <(serve_args "${CL_OPTS[@]}")
  cl_expect w 1 "$BYOAI_BIN" serve --port 0 --cluster "${sargs[@]}"
else
  cl_expect w 1 "$BYOAI_BIN" cluster node "${CL_OPTS[@]}"
fi
grep -q "certificate is for another node" "$T/err" || fail "wrong key: $(cat "$T/err")"
# and an ordinary process (no key at all) that speaks garbage is refused
python3 - "$(cat "$T/a.port")" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
s.settimeout(5)
try:
    assert s.recv(100) == b""
except ConnectionResetError:
    pass
PY
pass "a node with the wrong key, and a client without one, are refused"

# ---- a tampered frame: detected, the link dropped ----------------------------------------------
# d reaches a only through a relay that flips one bit of the first frame
# after the handshake (d -> a direction)
code=$(cl a invite --address "127.0.0.1:$(cat "$T/a.port")" 2>/dev/null)
cl d join "$code" >/dev/null || fail "join d"
python3 - "$T/d/cluster/cluster.json" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["peers"] = []; json.dump(d, open(p, "w"))
PY
python3 -u - "$(cat "$T/a.port")" >"$T/relay.out" 2>&1 <<'PY' &
import socket, struct, sys, threading
target = int(sys.argv[1])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0)); ls.listen(8)
print("port", ls.getsockname()[1], flush=True)
done = [False]
def pump(src, dst, tamper):
    buf = b""
    stage = 0  # 0: the first message, 1: the stream header and the confirmation frame, 2: frames
    try:
        while True:
            data = src.recv(65536)
            if not data: break
            if not tamper or done[0]:
                dst.sendall(data); continue
            buf += data
            out = b""
            while True:
                if stage == 0 and len(buf) >= 43:
                    n = 43 + (buf[41] << 8 | buf[42])
                    if len(buf) < n: break
                    out += buf[:n]; buf = buf[n:]; stage = 1
                elif stage == 1 and len(buf) >= 24 + 4:
                    n = 24 + 4 + struct.unpack(">I", buf[24:28])[0]
                    if len(buf) < n: break
                    out += buf[:n]; buf = buf[n:]; stage = 2
                elif stage == 2 and len(buf) >= 4:
                    n = 4 + struct.unpack(">I", buf[:4])[0]
                    if len(buf) < n: break
                    f = bytearray(buf[:n]); f[4 + (n - 4) // 2] ^= 0x20
                    out += bytes(f); buf = buf[n:]; done[0] = True
                    print("tampered a frame of", n, "bytes", flush=True)
                    out += buf; buf = b""
                    break
                else:
                    break
            dst.sendall(out)
    except OSError:
        pass
    for s in (src, dst):
        try: s.shutdown(socket.SHUT_RDWR)
        except OSError: pass
while True:
    c, _ = ls.accept()
    u = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pump, args=(c, u, True), daemon=True).start()
    threading.Thread(target=pump, args=(u, c, False), daemon=True).start()
PY
relay=$!
CLEANUP_EXTRA='[ -n "${relay:-}" ] && { kill $relay; wait $relay; } 2>/dev/null; '"$CLEANUP_EXTRA"
for i in $(seq 1 100); do grep -q "^port" "$T/relay.out" && break; sleep 0.05; done
rport=$(sed -n 's/^port //p' "$T/relay.out")
[ -n "$rport" ] || fail "relay did not start"
cl_start d --no-discovery --peer "127.0.0.1:$rport"
for i in $(seq 1 100); do grep -q "tampered" "$T/relay.out" && break; sleep 0.1; done
grep -q "tampered" "$T/relay.out" || fail "the relay saw no frame: $(cat "$T/relay.out")"
for i in $(seq 1 50); do
  cl_status a
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["auth_failures"] >= 1 else 1)' "$T/a.status" && break
  sleep 0.1
done
json_check "$T/a.status" 'assert d["auth_failures"] >= 1, d["auth_failures"]'
grep -q "failed authentication" "$T/a.status" || fail "no event for the tampered frame"
# the relay tampers once: the nodes link up again afterwards
cl_wait_alive a 4 15
pass "a tampered frame is detected and the link dropped (then re-established)"
kill $relay 2>/dev/null || true
wait $relay 2>/dev/null || true
relay=""

# ---- leave: the others see the node go -------------------------------------------------------------
cl c leave >/dev/null || fail "leave"
if [ "$CL_DAEMON" = serve ]; then
  # byoai serve keeps serving its own models; its node talks to nobody any more
  sleep 1.5
  kill -0 "$(cat "$T/c.pid")" 2>/dev/null || fail "byoai serve stopped after leave"
  cl_kill c
else
  for i in $(seq 1 50); do kill -0 "$(cat "$T/c.pid")" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$(cat "$T/c.pid")" 2>/dev/null && fail "the node did not stop after leave"
  cl_check_log c
  CL_NODES=$(echo "$CL_NODES" | sed "s/ c\b//")
fi
cl_status a
grep -q "left the cluster" "$T/a.status" || fail "a did not see c leave"
python3 - "$T/a.status" "$(cat "$T/c/cluster/node.key" >/dev/null 2>&1; echo)" <<'PY' || fail "c still counted alive after leaving"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["alive"] == 3, d["alive"]  # a, b, d
PY
cl_expect c 0 "$BYOAI_BIN" cluster status
grep -q "not in a cluster" "$T/out" || fail "c still a member"
# the admin needs --force
cl_expect a 1 "$BYOAI_BIN" cluster leave
grep -q -- "--force" "$T/err" || fail "admin leave message"
pass "leave: the node goes, the others see it, the admin must force it"

# ---- remove: the admin removes a member for good ------------------------------------------------------
node_id() { cl "$1" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])'; }
did=$(node_id d)
aid=$(node_id a)
cl_expect b 1 "$BYOAI_BIN" cluster remove "${aid:0:8}"
grep -q "only the cluster's admin" "$T/err" || fail "a member removed another: $(cat "$T/err")"
cl_expect a 1 "$BYOAI_BIN" cluster remove "${aid:0:8}"
grep -q "cannot remove itself" "$T/err" || fail "the admin removed itself: $(cat "$T/err")"
cl_expect a 1 "$BYOAI_BIN" cluster remove xyz
grep -q "not a node id" "$T/err" || fail "bad id message: $(cat "$T/err")"
cl_expect a 2 "$BYOAI_BIN" cluster remove
did_upper=$(echo "${did:0:8}" | tr a-f A-F)  # ids are hex: either case names the node
cl a remove "$did_upper" >"$T/out" || fail "remove d"
grep -q "removed node $did" "$T/out" || fail "remove output: $(cat "$T/out")"
# every member gets the list and drops d; d learns it was removed and stops linking
for n in a b; do
  for i in $(seq 1 100); do
    cl_status $n
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); m=[x for x in d["members"] if x["node_id"]==sys.argv[2]]
sys.exit(0 if sys.argv[2] in d["removed_members"] and m and m[0]["state"]=="removed" and d["alive"]==2 else 1)' "$T/$n.status" "$did" && break
    sleep 0.1
  done
  json_check "$T/$n.status" 'assert "'"$did"'" in d["removed_members"] and d["alive"] == 2, (d["removed_members"], d["alive"])'
  [ -f "$T/$n/cluster/revoked.bin" ] || fail "$n did not keep the list"
done
if [ "$CL_DAEMON" = serve ]; then
  for i in $(seq 1 50); do cl_status d; python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["removed"] else 1)' "$T/d.status" && break; sleep 0.1; done
  json_check "$T/d.status" 'assert d["removed"] is True and d["alive"] == 1, (d["removed"], d["alive"])'
  cl_kill d
else
  for i in $(seq 1 50); do kill -0 "$(cat "$T/d.pid")" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$(cat "$T/d.pid")" 2>/dev/null && fail "the removed node did not stop"
  cl_check_log d
  CL_NODES=$(echo "$CL_NODES" | sed "s/ d\b//")
fi
# d knows: it refuses to start
cl_expect d 1 "$BYOAI_BIN" cluster node --bind 127.0.0.1 --port 0 --no-discovery
grep -q "removed from cluster" "$T/err" || fail "d started although removed: $(cat "$T/err")"
# without its copy of the list, d still cannot link: the members refuse its certificate
rm "$T/d/cluster/revoked.bin"
cl_start d --no-discovery --peer "127.0.0.1:$(cat "$T/a.port")"
sleep 2
for n in a b; do
  cl_status $n
  json_check "$T/$n.status" 'assert d["alive"] == 2, d["alive"]'
done
grep -q "was removed from the cluster by its admin" "$T/a.status" || fail "a's refusal is not in its events"
cl_status d
json_check "$T/d.status" 'assert d["alive"] == 1, d["alive"]'
cl_kill d
pass "remove: a member cannot, the admin can; every member drops the node, which stops and cannot link again"

# a new invite re-admits the machine (same key, new certificate)
cl d leave >/dev/null || fail "d leave"
code=$(cl a invite --address "127.0.0.1:$(cat "$T/a.port")" 2>/dev/null)
cl d join "$code" >/dev/null || fail "d rejoin"
cl_start d --no-discovery --peer "127.0.0.1:$(cat "$T/a.port")"
cl_wait_alive a 3 15
cl_wait_alive b 3 15
cl_status b
json_check "$T/b.status" 'assert "'"$did"'" not in d["removed_members"], d["removed_members"]'
pass "a removed machine comes back only with a new invite"
for n in d b a; do cl_kill $n; done
