# Helpers for the registry integration tests (sourced after lib.sh).
export BYOAI_INDEX_TTL=0          # always revalidate (ETag), so tests see changes at once
export BYOAI_RETRY_DELAY_MS=100   # fast retries
export BYOAI_LOG=error
PIDS=()
CLEANUP_EXTRA='for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done'

# make_gguf PATH SEED [FLOATS] [LICENSE]: a small valid GGUF (llama metadata,
# one 2-D F32 tensor of FLOATS values filled from SEED).
make_gguf() {
  python3 - "$1" "$2" "${3:-4096}" "${4-mit}" <<'PY'
import struct, sys, random
path, seed, n, lic = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def s(x): b = x.encode(); return struct.pack("<Q", len(b)) + b
kv = [("general.architecture", 8, s("llama")), ("general.name", 8, s("synthetic-%d" % seed)),
      ("llama.context_length", 4, struct.pack("<I", 256)), ("llama.embedding_length", 4, struct.pack("<I", 64)),
      ("llama.block_count", 4, struct.pack("<I", 1)), ("llama.attention.head_count", 4, struct.pack("<I", 4))]
if lic: kv.append(("general.license", 8, s(lic)))
cols = 64; rows = n // cols
out = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kv))
for k, t, v in kv: out += s(k) + struct.pack("<I", t) + v
out += s("weight") + struct.pack("<I", 2) + struct.pack("<QQ", cols, rows) + struct.pack("<I", 0) + struct.pack("<Q", 0)
out += b"\0" * ((32 - len(out) % 32) % 32)
r = random.Random(seed)
out += struct.pack("<%df" % (rows * cols), *[r.uniform(-1, 1) for _ in range(rows * cols)])
open(path, "wb").write(out)
PY
}

sha_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# start_registry DIR: serve DIR on a free port; sets REG_URL, REG_PID, REG_LOG
N_STARTS=0
start_registry() {
  local dir=$1
  N_STARTS=$((N_STARTS + 1))
  REG_LOG="$T/serve-$(basename "$dir")-$N_STARTS.log"
  rm -f "$REG_LOG.out"
  "$BYOAI_BIN" registry serve "$dir" --port 0 >"$REG_LOG.out" 2>"$REG_LOG" &
  REG_PID=$!
  PIDS+=("$REG_PID")
  for _ in $(seq 1 100); do
    REG_URL=$(sed -n 's/^listening on //p' "$REG_LOG.out" 2>/dev/null || true)
    [ -n "$REG_URL" ] && return 0
    sleep 0.05
  done
  cat "$REG_LOG" >&2
  fail "registry serve did not start"
}
stop_registry() { kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; }

# count_gets PATTERN: lines of the registry log matching GET PATTERN
count_gets() { grep -c "^GET $1" "$REG_LOG" || true; }

# a registry with one publisher (key in $BYOAI_HOME) and stories260k published
setup_registry() {
  REG_DIR="$T/reg"
  "$BYOAI_BIN" registry init "$REG_DIR" >"$T/regpub" 2>/dev/null || fail "registry init"
  "$BYOAI_BIN" key generate alice >"$T/alice.pub" 2>/dev/null || fail "key generate"
  "$BYOAI_BIN" registry add-publisher "$REG_DIR" alice "$(cat "$T/alice.pub")" >/dev/null || fail "add-publisher"
  start_registry "$REG_DIR"
  "$BYOAI_BIN" publish "$STORIES" --name stories260k --registry "$REG_URL" --license mit \
    --description "A 260K-parameter Llama model trained on TinyStories" --tags story,tiny,llama -q \
    || fail "publish stories260k"
  REG_KEY=$(cut -d' ' -f2 "$T/regpub")
  export BYOAI_REGISTRY="$REG_URL" BYOAI_REGISTRY_KEY="$REG_KEY"
}

# write_index DIR JSON: put an index.json (not signed) into a registry directory
write_index() { printf '%s\n' "$2" >"$1/index.json"; }
