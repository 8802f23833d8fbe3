#!/usr/bin/env python3
"""A tiny HTTP server with single-range Range support, for the cluster tests
(python3 -m http.server ignores Range). Serves DIR; logs one line per request
("GET /path START END") to LOG; --corrupt OFFSET flips one bit of that byte
of every file it serves. Prints "port N" when ready."""
import argparse
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("log")
ap.add_argument("--corrupt", type=int, default=-1)
args = ap.parse_args()
lock = threading.Lock()


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        path = os.path.join(args.dir, os.path.basename(self.path))
        if not os.path.isfile(path):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = os.path.getsize(path)
        start, end, status = 0, size - 1, 200
        m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else size - 1
            if start >= size or end < start:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end = min(end, size - 1)
            status = 206
        with lock:
            with open(args.log, "a") as f:
                f.write("GET %s %d %d\n" % (self.path, start, end + 1))
        with open(path, "rb") as f:
            f.seek(start)
            data = bytearray(f.read(end - start + 1))
        if start <= args.corrupt <= end:
            data[args.corrupt - start] ^= 0x10
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
print("port", srv.server_address[1], flush=True)
srv.serve_forever()
