#!/usr/bin/env python3
"""Hostile HTTP clients for tests (stdlib only): many connections from one
source address that trickle a request header line every few seconds, plus
some that send nothing, while a well-behaved client on 127.0.0.1 measures
how fast GET /api/health answers.

Usage: slow_clients.py PORT SRC TRICKLE SILENT SECONDS READYFILE HOLD OUTFILE
  PORT       the server's port on 127.0.0.1
  SRC        source address of the attackers (e.g. 127.0.0.2)
  TRICKLE    connections that send "GET / HTTP/1.1" and then a header line
             every 2 to 4 s, never the blank line
  SILENT     connections that send nothing
  SECONDS    how long to probe /api/health (every 0.25 s) while they stay
  READYFILE  written when the probing is over; the connections are then
             kept HOLD more seconds (the test stops the server meanwhile)
  OUTFILE    JSON: connections made, open at the end of probing, closed by the
             server (and how soon after connecting), the probe latencies
"""
import json, os, random, resource, selectors, socket, sys, time

port, src = int(sys.argv[1]), sys.argv[2]
n_trickle, n_silent, seconds = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
readyfile, hold, outfile = sys.argv[6], float(sys.argv[7]), sys.argv[8]

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

sel = selectors.DefaultSelector()
conns = {}  # fd -> state


def open_conn(kind):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    st = {"sock": s, "kind": kind, "t_open": time.monotonic(), "connected": False, "closed_at": None,
          "next": time.monotonic() + random.uniform(0.1, 1.0), "lines": 0}
    conns[s.fileno()] = st
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, st)


def closed(st):
    if st["closed_at"] is None:
        st["closed_at"] = time.monotonic()
        try:
            sel.unregister(st["sock"])
        except (KeyError, ValueError):
            pass


def pump(timeout):
    for key, ev in sel.select(timeout):
        st = key.data
        s = st["sock"]
        if ev & selectors.EVENT_WRITE and not st["connected"]:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                closed(st)
                continue
            st["connected"] = True
            sel.modify(s, selectors.EVENT_READ, st)
            if st["kind"] == "trickle":
                try:
                    s.send(b"GET / HTTP/1.1\r\n")
                except OSError:
                    closed(st)
            continue
        if ev & selectors.EVENT_READ:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                closed(st)
    now = time.monotonic()
    for st in conns.values():
        if st["kind"] == "trickle" and st["connected"] and st["closed_at"] is None and now >= st["next"]:
            st["next"] = now + random.uniform(2.0, 4.0)
            st["lines"] += 1
            try:
                st["sock"].send(b"X-Trickle-%d: %d\r\n" % (st["lines"], st["lines"]))
            except OSError:
                closed(st)


def probe():
    t0 = time.monotonic()
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        c.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        buf = b""
        while True:
            d = c.recv(4096)
            if not d:
                break
            buf += d
        c.close()
        ok = buf.startswith(b"HTTP/1.1 200")
    except OSError:
        ok = False
    return ok, (time.monotonic() - t0) * 1000.0


# open the connections in steps, so that the listen queue never overflows
kinds = ["trickle"] * n_trickle + ["silent"] * n_silent
random.shuffle(kinds)
for i in range(0, len(kinds), 100):
    for k in kinds[i:i + 100]:
        open_conn(k)
    pump(0.02)
t_end = time.monotonic() + 2.0
while time.monotonic() < t_end and any(not st["connected"] and st["closed_at"] is None for st in conns.values()):
    pump(0.05)

probes = []
t_end = time.monotonic() + seconds
next_probe = time.monotonic()
while time.monotonic() < t_end:
    pump(0.02)
    if time.monotonic() >= next_probe:
        probes.append(probe())
        next_probe = time.monotonic() + 0.25

states = list(conns.values())
early = [st for st in states if st["closed_at"] is not None and st["closed_at"] - st["t_open"] < 1.0]
result = {
    "made": len(states),
    "connected": sum(1 for st in states if st["connected"]),
    "open": sum(1 for st in states if st["closed_at"] is None),
    "open_trickle": sum(1 for st in states if st["closed_at"] is None and st["kind"] == "trickle"),
    "closed": sum(1 for st in states if st["closed_at"] is not None),
    "closed_within_1s": len(early),
    "lines_sent": sum(st["lines"] for st in states),
    "probes": len(probes),
    "probes_ok": sum(1 for ok, _ in probes if ok),
    "probe_ms_max": max((ms for _, ms in probes), default=None),
    "probe_ms_median": sorted(ms for _, ms in probes)[len(probes) // 2] if probes else None,
    "probe_ms": [round(ms, 1) for _, ms in probes],
}
with open(outfile + ".tmp", "w") as f:
    json.dump(result, f)
os.rename(outfile + ".tmp", outfile)
with open(readyfile, "w") as f:
    f.write("ready\n")
t_end = time.monotonic() + hold
while time.monotonic() < t_end:
    pump(0.05)
for st in states:
    st["sock"].close()
