#!/usr/bin/env python3
"""A stand-in for the Hugging Face Hub in tests (stdlib only).

GET/HEAD /OWNER/REPO/resolve/REV/FILE answers like the Hub does for LFS
files: 302 to /cdn/FILE with X-Linked-Etag (the sha256), X-Linked-Size and
X-Repo-Commit. Files are read from DIR; misbehaviour is chosen by name:
  *nolfs*   a plain git file: 200 with a git-sha1 ETag, no X-Linked-Etag
  *liar*    X-Linked-Etag is the sha256 of something else
  *drop*    the first download sends half the file and closes the connection
  *stall*   the first download sends half the file and stops sending
  *dead*    every download drops after half
  *tofile*  the resolve answer redirects to file:///etc/passwd instead of /cdn/
Other misbehaving servers, for registries (any index, any blob):
  GET /tofile/ANY         302 to file:///etc/passwd
  GET /stall/FILE         the headers and half of DIR/FILE, then nothing for 30 s
  GET /silent/ANY         accepts the request and never answers (30 s)
Usage: fake_hub.py DIR PORTFILE LOGFILE
"""
import hashlib, http.server, os, sys, threading, time

ROOT, PORTFILE, LOGFILE = sys.argv[1], sys.argv[2], sys.argv[3]
lock = threading.Lock()
counts = {}

def log(line):
    with lock:
        with open(LOGFILE, "a") as f:
            f.write(line + "\n")

class Hub(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self.handle_req(head=True)

    def do_GET(self):
        self.handle_req(head=False)

    def handle_req(self, head):
        log("%s %s range=%s" % (self.command, self.path, self.headers.get("Range", "-")))
        parts = self.path.split("/")
        if len(parts) >= 6 and parts[3] == "resolve":
            name = parts[-1]
            path = os.path.join(ROOT, name)
            if not os.path.isfile(path):
                return self.send_error(404)
            data = open(path, "rb").read()
            sha = hashlib.sha256(data).hexdigest()
            if "nolfs" in name:
                self.send_response(200)
                self.send_header("ETag", '"%s"' % hashlib.sha1(data).hexdigest())
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)
                return
            if "liar" in name:
                sha = hashlib.sha256(b"something else").hexdigest()
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd" if "tofile" in name else "/cdn/" + name)
            self.send_header("X-Linked-Etag", '"%s"' % sha)
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
            self.send_header("ETag", '"%s"' % sha)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if parts[1] == "tofile":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if parts[1] == "silent":
            time.sleep(30)
            return
        if parts[1] == "stall" and len(parts) == 3:
            path = os.path.join(ROOT, parts[2])
            if not os.path.isfile(path):
                return self.send_error(404)
            data = open(path, "rb").read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            time.sleep(30)
            self.close_connection = True
            return
        if parts[1] == "cdn" and len(parts) == 3:
            path = os.path.join(ROOT, parts[2])
            if not os.path.isfile(path):
                return self.send_error(404)
            return self.send_cdn(parts[2], open(path, "rb").read(), head)
        self.send_error(404)

    def send_cdn(self, name, data, head):
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
        if start >= len(data) and data:
            self.send_response(416)
            self.send_header("Content-Range", "bytes */%d" % len(data))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        with lock:
            n = counts.get(name, 0)
            counts[name] = n + 1
        misbehave = ("dead" in name) or (n == 0 and ("drop" in name or "stall" in name))
        if not misbehave:
            self.wfile.write(body)
            return
        half = len(body) // 2
        self.wfile.write(body[:half])
        self.wfile.flush()
        if "stall" in name:
            time.sleep(30)
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
srv.daemon_threads = True
with open(PORTFILE + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(PORTFILE + ".tmp", PORTFILE)
srv.serve_forever()
