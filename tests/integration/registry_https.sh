#!/usr/bin/env bash
# A registry over https (a static file server with TLS, as any web host or
# CDN is): the server's certificate must be trusted; BYOAI_CA_BUNDLE adds a
# certificate authority of one's own; an untrusted file URL fails at once
# with a hint (no retries) and the next mirror is used.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_registry.sh"

# two self-signed certificates for 127.0.0.1: "good" (we will trust it) and "rogue"
for n in good rogue; do
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=byoai test $n" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$T/$n.key" -out "$T/$n.pem" >/dev/null 2>&1 ||
    fail "openssl cannot make a test certificate"
done

REG_DIR="$T/reg"
"$BYOAI_BIN" registry init "$REG_DIR" >/dev/null 2>&1 || fail "registry init"
SHA=$(sha_of "$STORIES"); SIZE=$(size_of "$STORIES")
cp "$STORIES" "$REG_DIR/blobs/sha256-$SHA"
# two other files (content-addressed: a blob already in the store is not downloaded again)
for i in 1 2; do
  make_gguf "$T/small$i.gguf" $((40 + i)) 2048
  cp "$T/small$i.gguf" "$REG_DIR/blobs/sha256-$(sha_of "$T/small$i.gguf")"
done
S1=$(sha_of "$T/small1.gguf"); S2=$(sha_of "$T/small2.gguf"); SMALL=$(size_of "$T/small1.gguf")

# https_server NAME DIR: serve DIR with NAME's certificate; sets PORT_<NAME>
https_server() {
  python3 - "$2" "$T/$1.pem" "$T/$1.key" >"$T/$1.port" 2>"$T/$1.log" <<'PY' &
import functools, http.server, ssl, sys
root, cert, key = sys.argv[1:4]
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): sys.stderr.write("%s\n" % (a[1] if len(a) > 1 else a))
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=root))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
PY
  PIDS+=($!)
  local i
  for i in $(seq 1 100); do [ -s "$T/$1.port" ] && break; sleep 0.05; done
  [ -s "$T/$1.port" ] || fail "the https server $1 did not start: $(cat "$T/$1.log")"
}
https_server good "$REG_DIR"
https_server rogue "$REG_DIR"
GOOD="https://127.0.0.1:$(cat "$T/good.port")"
ROGUE="https://127.0.0.1:$(cat "$T/rogue.port")"

variant() { # size sha url [mirror]
  printf '{"name":"f32","quantization":"F32","size":%s,"sha256":"%s","url":"%s"%s}' "$1" "$2" "$3" \
    "${4:+,\"mirrors\":[\"$4\"]}"
}
model() { # name variant-json
  printf '{"name":"%s","description":"test model %s","architecture":"llama","license":"mit","parameters":1,"revision":"1","updated":"2024-01-01","variants":[%s]}' "$1" "$1" "$2"
}
write_index "$REG_DIR" "{\"schema_version\":1,\"models\":[
  $(model stories260k "$(variant "$SIZE" "$SHA" "blobs/sha256-$SHA")"),
  $(model rogue "$(variant "$SMALL" "$S1" "$ROGUE/blobs/sha256-$S1")"),
  $(model mirrored "$(variant "$SMALL" "$S2" "$ROGUE/blobs/sha256-$S2" "$GOOD/blobs/sha256-$S2")")]}"
export BYOAI_REGISTRY="$GOOD"

# not trusted: a clear error that says what to do, nothing installed
unset SSL_CERT_FILE CURL_CA_BUNDLE BYOAI_CA_BUNDLE
expect_exit 1 "$BYOAI_BIN" search story
grep -q "not trusted" "$T/err" && grep -q "BYOAI_CA_BUNDLE" "$T/err" || fail "untrusted registry message: $(cat "$T/err")"
expect_exit 1 "$BYOAI_BIN" install stories260k -q
[ ! -e "$BYOAI_HOME/manifests/stories260k.json" ] || fail "installed from an untrusted server"
export BYOAI_CA_BUNDLE="$T/nonexistent.pem"
expect_exit 1 "$BYOAI_BIN" search story
grep -q "CA bundle" "$T/err" || fail "bad bundle message: $(cat "$T/err")"
pass "an https registry whose certificate is not trusted is refused with a hint"

# trusted with BYOAI_CA_BUNDLE: search, install (verified), run
export BYOAI_CA_BUNDLE="$T/good.pem"
expect_exit 0 "$BYOAI_BIN" search stories
grep -q "stories260k" "$T/out" || fail "search over https: $(cat "$T/out")"
expect_exit 0 "$BYOAI_BIN" install stories260k -q
"$BYOAI_BIN" run stories260k -p "Once upon a time" -n 20 --temp 0 2>/dev/null >"$T/story" || fail "run after an https install"
grep -q "Lily" "$T/story" || fail "the story: $(cat "$T/story")"
pass "with BYOAI_CA_BUNDLE the same registry works: search, install, run"

# a file on an untrusted server: fails at once (no retry loop) with the hint;
# with a trusted mirror, the mirror is used
t0=$(date +%s)
expect_exit 1 "$BYOAI_BIN" install rogue -q
t1=$(date +%s)
grep -q "not trusted" "$T/err" || fail "untrusted download message: $(cat "$T/err")"
[ $((t1 - t0)) -lt 10 ] || fail "an untrusted download was retried for $((t1 - t0)) s"
[ ! -e "$BYOAI_HOME/manifests/rogue.json" ] || fail "installed from an untrusted file server"
expect_exit 0 "$BYOAI_BIN" install mirrored -q
grep -q "sha256-$S2" "$T/good.log" || fail "the mirror was not used"
pass "an untrusted file URL fails at once; the next mirror is used"
