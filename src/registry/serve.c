/* `byoai registry serve DIR`: a registry directory over HTTP. GET/HEAD of
 * the static files (index.json, its signature, the registry's public key,
 * blobs with Range and ETag), and PUT /api/v1/publish/NAME, where signed
 * uploads from known publishers become index entries. Built on the HTTP
 * layer in include/byoai/http.h.
 *
 * DIR/index.json            the index (schema: docs/index-format.md)
 * DIR/index.json.sig        ed25519 signature of index.json (hex)
 * DIR/registry.pub          the registry's public key (for clients to configure)
 * DIR/blobs/sha256-<hex>    model files
 * DIR/publishers/NAME.pub   publishers allowed to publish (never served)
 * DIR/keys/registry.key     the registry's secret key (never served)
 * DIR/tmp/                  uploads in progress (never served)
 * DIR/state/nonces          recent publish nonces, against replays (never served)
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "byoai/gguf.h"
#include "byoai/http.h"
#include "byoai/model.h"
#include "publish_proto.h"
#include "registry_internal.h"

typedef struct nonce_entry {
    char nonce[33];
    uint64_t ts;
} nonce_entry;

struct byoai_registry_server {
    char dir[3000];
    byoai_http *http;
    byoai_serve_opts o;
    pthread_mutex_t mu;        /* index.json and its signature */
    pthread_mutex_t nonce_mu;  /* nonces (taken on the HTTP event thread too: held briefly) */
    nonce_entry *nonces;
    size_t n_nonces, cap_nonces;
};

static int dir_path(const char *dir, const char *rel, char *out, size_t cap) {
    return (size_t)snprintf(out, cap, "%s/%s", dir, rel) >= cap ? BYOAI_EINVAL : 0;
}

/* ---- administration ------------------------------------------------------- */
static int load_registry_key(const char *dir, byoai_key *k, byoai_error *err) {
    char p[3100];
    dir_path(dir, "keys/registry.key", p, sizeof p);
    int rc = byoai_key_load_secret(p, k, err);
    if (rc) byoai_error_prefix(err, "%s is not an initialised registry (run `byoai registry init %s`)", dir, dir);
    return rc;
}

static int sign_text(const char *dir, const byoai_key *k, const char *text, size_t len, byoai_error *err) {
    char sig[129], line[131], p[3100];
    byoai_sign(k, text, len, sig);
    snprintf(line, sizeof line, "%s\n", sig);
    dir_path(dir, "index.json.sig", p, sizeof p);
    return byoai_fs_write_atomic(p, line, strlen(line), err);
}

int byoai_registry_init(const char *dir, char pub[160], byoai_error *err) {
    char p[3100];
    const char *subs[] = {"blobs", "publishers", "keys", "tmp", "state"};
    for (size_t i = 0; i < 5; i++) {
        if (dir_path(dir, subs[i], p, sizeof p)) return byoai_error_set(err, BYOAI_EINVAL, "path too long");
        int rc = byoai_fs_mkdirs(p, i == 2 || i == 4 ? 0700 : 0755, err);
        if (rc) return rc;
    }
    byoai_key k;
    dir_path(dir, "keys/registry.key", p, sizeof p);
    int rc;
    if (!byoai_fs_exists(p)) {
        if ((rc = byoai_key_generate("registry", &k, err)) || (rc = byoai_key_save_secret(p, &k, err))) return rc;
    } else if ((rc = byoai_key_load_secret(p, &k, err))) {
        return rc;
    }
    char text[160];
    byoai_key_public_text(&k, text);
    if (pub) snprintf(pub, 160, "%s", text);
    dir_path(dir, "registry.pub", p, sizeof p);
    char line[170];
    snprintf(line, sizeof line, "%s\n", text);
    if ((rc = byoai_fs_write_atomic(p, line, strlen(line), err))) return rc;
    dir_path(dir, "index.json", p, sizeof p);
    if (!byoai_fs_exists(p)) {
        const char *empty = "{\n  \"schema_version\": 1,\n  \"models\": [],\n  \"bundles\": []\n}\n";
        if ((rc = byoai_fs_write_atomic(p, empty, strlen(empty), err))) return rc;
    }
    return byoai_registry_sign(dir, err);
}

int byoai_registry_add_publisher(const char *dir, const char *name, const char *pubkey_text, byoai_error *err) {
    int rc = byoai_key_check_name(name, err);
    if (rc) return rc;
    byoai_key k;
    if ((rc = byoai_key_parse_public(pubkey_text, &k, err))) return rc;
    if (k.name[0] && strcmp(k.name, name))
        return byoai_error_set(err, BYOAI_EINVAL, "the key names publisher '%s', not '%s'", k.name, name);
    snprintf(k.name, sizeof k.name, "%s", name);
    char p[3100], rel[128], text[160], line[170];
    snprintf(rel, sizeof rel, "publishers/%s.pub", name);
    dir_path(dir, "publishers", p, sizeof p);
    if (!byoai_fs_exists(p))
        return byoai_error_set(err, BYOAI_ENOTFOUND, "%s is not an initialised registry (run `byoai registry init %s`)",
                               dir, dir);
    dir_path(dir, rel, p, sizeof p);
    byoai_key_public_text(&k, text);
    snprintf(line, sizeof line, "%s\n", text);
    return byoai_fs_write_atomic(p, line, strlen(line), err);
}

int byoai_registry_sign(const char *dir, byoai_error *err) {
    byoai_key k;
    int rc = load_registry_key(dir, &k, err);
    if (rc) return rc;
    char p[3100], *text;
    size_t len;
    dir_path(dir, "index.json", p, sizeof p);
    if ((rc = byoai_fs_read_all(p, BYOAI_INDEX_MAX_BYTES, &text, &len, err))) return rc;
    byoai_index *ix;
    if ((rc = byoai_index_parse(text, len, NULL, &ix, err))) {
        free(text);
        return byoai_error_prefix(err, "%s", p);
    }
    byoai_index_free(ix);
    rc = sign_text(dir, &k, text, len, err);
    free(text);
    return rc;
}

/* ---- answering --------------------------------------------------------------- */
static void send_error(byoai_http_req *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void send_error(byoai_http_req *r, int status, const char *type, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:{s:s,s:s}}", "error", "message", msg, "type", type);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text) byoai_http_send(r, status, "application/json", text, strlen(text));
    else byoai_http_send(r, status, "text/plain", msg, strlen(msg));
    free(text);
}

static void logf_(byoai_registry_server *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(byoai_registry_server *srv, const char *fmt, ...) {
    if (!srv->o.log) return;
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    srv->o.log(srv->o.log_user, line);
}

static void serve_index(byoai_registry_server *srv, byoai_http_req *r) {
    char p[3100], *text = NULL;
    size_t len = 0;
    struct stat st;
    dir_path(srv->dir, "index.json", p, sizeof p);
    pthread_mutex_lock(&srv->mu);
    byoai_error e = {0};
    int rc = byoai_fs_read_all(p, BYOAI_INDEX_MAX_BYTES, &text, &len, &e);
    if (!rc && stat(p, &st) != 0) st.st_mtime = 0;
    pthread_mutex_unlock(&srv->mu);
    if (rc == BYOAI_ENOTFOUND) {
        send_error(r, 404, "not_found", "this registry has no index.json");
        return;
    }
    if (rc) {
        logf_(srv, "cannot serve index.json: %s", e.msg);
        send_error(r, 500, "server_error", "the registry cannot read its index.json");
        return;
    }
    char hex[65], etag[70], lm[64];
    byoai_sha256_buf(text, len, hex);
    snprintf(etag, sizeof etag, "\"%.32s\"", hex);
    struct tm tm;
    gmtime_r(&st.st_mtime, &tm);
    strftime(lm, sizeof lm, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    byoai_http_add_header(r, "ETag", etag);
    byoai_http_add_header(r, "Last-Modified", lm);
    byoai_http_add_header(r, "Cache-Control", "no-cache");
    const char *inm = byoai_http_header(r, "If-None-Match");
    const char *ims = byoai_http_header(r, "If-Modified-Since");
    if ((inm && strstr(inm, etag)) || (!inm && ims && !strcmp(ims, lm))) {
        free(text);
        logf_(srv, "index.json not modified (304)");
        byoai_http_send(r, 304, NULL, "", 0);
        return;
    }
    byoai_http_send(r, 200, "application/json", text, len);
    free(text);
}

/* ---- publishing -------------------------------------------------------------- */
static bool hex_str(const char *s, size_t n) {
    if (!s || strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static void load_nonces(byoai_registry_server *srv) {
    char p[3100], *text;
    size_t len;
    dir_path(srv->dir, "state/nonces", p, sizeof p);
    if (byoai_fs_read_all(p, 64 << 20, &text, &len, NULL)) return;
    char *save;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char n[40];
        unsigned long long ts;
        if (sscanf(line, "%39s %llu", n, &ts) != 2 || !hex_str(n, 32)) continue;
        if (srv->n_nonces == srv->cap_nonces) {
            size_t nc = srv->cap_nonces ? srv->cap_nonces * 2 : 64;
            nonce_entry *ne = realloc(srv->nonces, nc * sizeof *ne);
            if (!ne) break;
            srv->nonces = ne;
            srv->cap_nonces = nc;
        }
        snprintf(srv->nonces[srv->n_nonces].nonce, 33, "%s", n);
        srv->nonces[srv->n_nonces++].ts = ts;
    }
    free(text);
}

/* Caller holds nonce_mu. */
static bool nonce_seen(byoai_registry_server *srv, const char *nonce) {
    for (size_t i = 0; i < srv->n_nonces; i++)
        if (!strcmp(srv->nonces[i].nonce, nonce)) return true;
    return false;
}

/* true when new (and recorded); false when seen. Caller holds nonce_mu. */
static bool record_nonce(byoai_registry_server *srv, const char *nonce, uint64_t ts, uint64_t now) {
    uint64_t window = 2ull * srv->o.max_skew_s;
    size_t k = 0;
    bool seen = false;
    for (size_t i = 0; i < srv->n_nonces; i++) {
        if (!strcmp(srv->nonces[i].nonce, nonce)) seen = true;
        if (srv->nonces[i].ts + window >= now) srv->nonces[k++] = srv->nonces[i];
    }
    srv->n_nonces = k;
    if (seen) return false;
    if (srv->n_nonces == srv->cap_nonces) {
        size_t nc = srv->cap_nonces ? srv->cap_nonces * 2 : 64;
        nonce_entry *ne = realloc(srv->nonces, nc * sizeof *ne);
        if (!ne) return false;
        srv->nonces = ne;
        srv->cap_nonces = nc;
    }
    snprintf(srv->nonces[srv->n_nonces].nonce, 33, "%s", nonce);
    srv->nonces[srv->n_nonces++].ts = ts;
    /* persist, so a restart does not reopen the window */
    size_t cap = srv->n_nonces * 60 + 1;
    char *text = malloc(cap);
    if (text) {
        size_t off = 0;
        for (size_t i = 0; i < srv->n_nonces; i++)
            off += (size_t)snprintf(text + off, cap - off, "%s %llu\n", srv->nonces[i].nonce,
                                    (unsigned long long)srv->nonces[i].ts);
        char p[3100];
        dir_path(srv->dir, "state/nonces", p, sizeof p);
        byoai_fs_write_atomic(p, text, off, NULL);
        free(text);
    }
    return true;
}

static void gguf_string(const byoai_gguf *g, const char *key, char *dst, size_t cap) {
    byoai_gguf_str v;
    dst[0] = '\0';
    if (byoai_gguf_get_str(g, key, &v, NULL) == 0 && v.len < cap && !memchr(v.ptr, 0, v.len) &&
        byoai_utf8_valid(v.ptr, v.len)) {
        memcpy(dst, v.ptr, v.len);
        dst[v.len] = '\0';
    }
}

int reg_publish_check(const char *name, const reg_publish_headers *h, uint64_t *ts, char *msg, size_t cap) {
    byoai_error e = {0};
    if (!name || strchr(name, ':') || byoai_store_check_name(name, &e)) {
        snprintf(msg, cap, "%s", e.msg[0] ? e.msg : "a model name has no ':'");
        return 400;
    }
    if (!h->publisher || !h->timestamp || !h->nonce || !h->sha256 || !h->meta || !h->signature) {
        snprintf(msg, cap, "a publish needs the X-Byoai-Publisher, -Timestamp, -Nonce, -Sha256, -Meta and -Signature "
                           "headers and the file as the body (use `byoai publish`)");
        return 400;
    }
    if (byoai_key_check_name(h->publisher, NULL) || !hex_str(h->nonce, 32) || !byoai_store_check_sha256(h->sha256) ||
        strlen(h->meta) > 8192 || strlen(h->signature) != 128 ||
        strspn(h->signature, "0123456789abcdefABCDEF") != 128) {
        snprintf(msg, cap, "malformed publish headers");
        return 400;
    }
    /* unix seconds: digits only (strtoull alone takes " 12", "+12" and "-12") */
    size_t n = strlen(h->timestamp);
    bool digits = n >= 1 && n <= 19;
    for (size_t i = 0; digits && i < n; i++) digits = h->timestamp[i] >= '0' && h->timestamp[i] <= '9';
    if (!digits) {
        snprintf(msg, cap, "X-Byoai-Timestamp must be unix seconds");
        return 400;
    }
    *ts = strtoull(h->timestamp, NULL, 10);
    return 0;
}

/* The signed headers of a publish request: who sends it, and does the
 * signature hold for this name and size? Used twice: once when the headers
 * are in (size is the declared Content-Length; nothing of the body is read
 * or written yet), and again on the stored upload. Answers and returns false
 * when the request is refused. */
typedef struct publish_hdrs {
    const char *publisher, *nonce, *sha, *meta_s, *sig;
    unsigned long long ts;
} publish_hdrs;

static bool verify_publish(byoai_registry_server *srv, byoai_http_req *r, const char *name, uint64_t size,
                           publish_hdrs *ph) {
    byoai_error e = {0};
    if (strcmp(byoai_http_method(r), "PUT") && strcmp(byoai_http_method(r), "POST")) {
        send_error(r, 405, "invalid_request_error", "publish with PUT");
        return false;
    }
    reg_publish_headers h = {
        .publisher = byoai_http_header(r, "X-Byoai-Publisher"), .timestamp = byoai_http_header(r, "X-Byoai-Timestamp"),
        .nonce = byoai_http_header(r, "X-Byoai-Nonce"),         .sha256 = byoai_http_header(r, "X-Byoai-Sha256"),
        .meta = byoai_http_header(r, "X-Byoai-Meta"),           .signature = byoai_http_header(r, "X-Byoai-Signature")};
    char cmsg[512];
    uint64_t ts;
    int status = reg_publish_check(name, &h, &ts, cmsg, sizeof cmsg);
    if (status) {
        send_error(r, status, "invalid_request_error", "%s", cmsg);
        return false;
    }
    ph->publisher = h.publisher, ph->nonce = h.nonce, ph->sha = h.sha256, ph->meta_s = h.meta, ph->sig = h.signature;
    ph->ts = ts;
    /* who is it? */
    char p[3100], rel[128], *keytext;
    snprintf(rel, sizeof rel, "publishers/%s.pub", ph->publisher);
    dir_path(srv->dir, rel, p, sizeof p);
    if (byoai_fs_read_all(p, 4096, &keytext, NULL, NULL)) {
        logf_(srv, "publish %s refused: unknown publisher %s", name, ph->publisher);
        send_error(r, 403, "unknown_publisher",
                   "this registry does not know publisher '%s'; send your public key (`byoai key show`) to its "
                   "maintainer, who adds it with `byoai registry add-publisher`",
                   ph->publisher);
        return false;
    }
    byoai_key pk;
    int rc = byoai_key_parse_public(keytext, &pk, &e);
    free(keytext);
    if (rc) {
        send_error(r, 500, "server_error", "the key of publisher %s is unreadable", ph->publisher);
        return false;
    }
    char meta_sha[65], msg[600];
    byoai_sha256_buf(ph->meta_s, strlen(ph->meta_s), meta_sha);
    publish_message(msg, sizeof msg, name, ph->sha, (unsigned long long)size, ph->ts, ph->nonce, meta_sha);
    if (byoai_verify(pk.pk, msg, strlen(msg), ph->sig, &e)) {
        logf_(srv, "publish %s refused: bad signature from %s", name, ph->publisher);
        send_error(r, 401, "bad_signature",
                   "the signature does not verify with publisher %s's key (wrong key, wrong size, or the upload was "
                   "altered)",
                   ph->publisher);
        return false;
    }
    uint64_t now = byoai_time_unix();
    if (ph->ts + srv->o.max_skew_s < now || ph->ts > now + srv->o.max_skew_s) {
        send_error(r, 401, "stale_request",
                   "the request's timestamp is more than %u s from the registry's clock; check your clock",
                   srv->o.max_skew_s);
        return false;
    }
    pthread_mutex_lock(&srv->nonce_mu);
    bool seen = nonce_seen(srv, ph->nonce);
    pthread_mutex_unlock(&srv->nonce_mu);
    if (seen) {
        logf_(srv, "publish %s refused: replayed nonce", name);
        send_error(r, 409, "replayed", "this publish request was already used (replay); sign a new one");
        return false;
    }
    return true;
}

/* check_upload: refuse before a byte of the body is read or written */
static void check_upload(void *user, byoai_http_req *r, uint64_t declared_len) {
    byoai_registry_server *srv = user;
    const char *path = byoai_http_path(r);
    publish_hdrs ph;
    if (!strncmp(path, PUBLISH_PATH, strlen(PUBLISH_PATH)) &&
        !verify_publish(srv, r, path + strlen(PUBLISH_PATH), declared_len, &ph))
        logf_(srv, "%s %s refused before its body (%llu bytes declared) %s", byoai_http_method(r), path,
              (unsigned long long)declared_len, byoai_http_remote(r));
}

static void handle_publish(byoai_registry_server *srv, byoai_http_req *r, const char *name) {
    byoai_error e = {0};
    const char *body = byoai_http_body_file(r);
    struct stat st = {0};
    if (body && stat(body, &st) != 0) {
        send_error(r, 500, "server_error", "the upload vanished");
        return;
    }
    publish_hdrs ph;
    if (!verify_publish(srv, r, name, body ? (uint64_t)st.st_size : 0, &ph)) return;
    if (!body) {
        send_error(r, 400, "invalid_request_error", "a publish needs the file as the body (use `byoai publish`)");
        return;
    }
    const char *publisher = ph.publisher, *sha = ph.sha, *meta_s = ph.meta_s, *nonce = ph.nonce;
    int rc;
    uint64_t now = byoai_time_unix();
    pthread_mutex_lock(&srv->nonce_mu);
    bool fresh = record_nonce(srv, nonce, ph.ts, now);
    pthread_mutex_unlock(&srv->nonce_mu);
    if (!fresh) {
        logf_(srv, "publish %s refused: replayed nonce", name);
        send_error(r, 409, "replayed", "this publish request was already used (replay); sign a new one");
        return;
    }
    /* the content */
    char got[65];
    if (byoai_sha256_file(body, got, &e) || strcmp(got, sha)) {
        send_error(r, 400, "checksum_mismatch", "the upload's sha256 is %s, the signed one is %s", got, sha);
        return;
    }
    json_error_t je;
    json_t *meta = json_loads(meta_s, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(meta)) {
        json_decref(meta);
        send_error(r, 400, "invalid_request_error", "X-Byoai-Meta must be a JSON object");
        return;
    }
    byoai_gguf *g;
    if (byoai_gguf_open(body, &g, &e)) {
        json_decref(meta);
        send_error(r, 422, "invalid_gguf", "the upload is not a valid GGUF file: %s", e.msg);
        return;
    }
    byoai_model_info info;
    char license[128], gdesc[1024], arch[64] = "";
    gguf_string(g, "general.license", license, sizeof license);
    gguf_string(g, "general.description", gdesc, sizeof gdesc);
    gguf_string(g, "general.architecture", arch, sizeof arch);
    rc = byoai_model_describe(g, 0, &info, &e);
    byoai_gguf_close(g);
    const char *mlic = json_string_value(json_object_get(meta, "license"));
    if (mlic && *mlic) snprintf(license, sizeof license, "%s", mlic);
    if (rc || !arch[0]) {
        json_decref(meta);
        send_error(r, 422, "missing_metadata", "the GGUF file has no general.architecture");
        return;
    }
    if (!license[0]) {
        json_decref(meta);
        send_error(r, 422, "missing_license",
                   "no license: pass --license (an SPDX id such as apache-2.0) or set general.license in the file");
        return;
    }
    char variant[64];
    const char *mv = json_string_value(json_object_get(meta, "variant"));
    if (mv) snprintf(variant, sizeof variant, "%s", mv);
    else {
        size_t i = 0;
        for (; info.file_type[i] && i < 63; i++)
            variant[i] = (info.file_type[i] >= 'A' && info.file_type[i] <= 'Z') ? (char)(info.file_type[i] + 32)
                                                                                 : info.file_type[i];
        variant[i] = '\0';
    }
    char vcheck[80];
    snprintf(vcheck, sizeof vcheck, "x:%s", variant);
    if (byoai_store_check_name(vcheck, &e)) {
        json_decref(meta);
        send_error(r, 400, "invalid_request_error", "invalid variant name '%s'", variant);
        return;
    }
    /* the index */
    pthread_mutex_lock(&srv->mu);
    char ip[3100], *itext = NULL;
    size_t ilen;
    dir_path(srv->dir, "index.json", ip, sizeof ip);
    json_t *root = NULL;
    int status = 0;
    char emsg[1024] = "";
    const char *etype = "server_error";
    byoai_index *check = NULL;
    byoai_key rk;
    if (load_registry_key(srv->dir, &rk, &e) || byoai_fs_read_all(ip, BYOAI_INDEX_MAX_BYTES, &itext, &ilen, &e) ||
        byoai_index_parse(itext, ilen, NULL, &check, &e) || !(root = json_loadb(itext, ilen, 0, NULL))) {
        status = 500;
        snprintf(emsg, sizeof emsg, "the registry's own index is broken: %s", e.msg);
        goto done;
    }
    byoai_index_free(check);
    check = NULL;
    json_t *models = json_object_get(root, "models");
    json_t *entry = NULL;
    for (size_t i = 0; i < json_array_size(models); i++) {
        const char *n = json_string_value(json_object_get(json_array_get(models, i), "name"));
        if (n && !strcmp(n, name)) entry = json_array_get(models, i);
    }
    if (json_is_array(json_object_get(root, "bundles")))
        for (size_t i = 0; i < json_array_size(json_object_get(root, "bundles")); i++) {
            const char *n =
                json_string_value(json_object_get(json_array_get(json_object_get(root, "bundles"), i), "name"));
            if (n && !strcmp(n, name)) {
                status = 403;
                etype = "name_taken";
                snprintf(emsg, sizeof emsg, "'%s' is a bundle of this registry", name);
                goto done;
            }
        }
    if (entry) {
        const char *owner = json_string_value(json_object_get(entry, "publisher"));
        if (!owner || strcmp(owner, publisher)) {
            status = 403;
            etype = "name_taken";
            snprintf(emsg, sizeof emsg, "'%s' belongs to %s%s; choose another name", name,
                     owner ? "publisher " : "the registry's maintainer", owner ? owner : "");
            goto done;
        }
    } else {
        entry = json_object();
        json_object_set_new(entry, "name", json_string(name));
        json_object_set_new(entry, "variants", json_array());
        json_array_append_new(models, entry);
    }
    /* the blob, in place before the index names it */
    char bp[3200], brel[80];
    snprintf(brel, sizeof brel, "blobs/sha256-%s", sha);
    dir_path(srv->dir, brel, bp, sizeof bp);
    if (!byoai_fs_exists(bp)) {
        if (rename(body, bp) != 0) {
            status = 500;
            snprintf(emsg, sizeof emsg, "cannot store the upload: %s", strerror(errno));
            goto done;
        }
        chmod(bp, 0444);
        byoai_fs_sync_parent(bp);
    }
    const char *desc = json_string_value(json_object_get(meta, "description"));
    const char *old_desc = json_string_value(json_object_get(entry, "description"));
    char fallback[300];
    snprintf(fallback, sizeof fallback, "%s, published by %s", name, publisher);
    json_object_set_new(entry, "description",
                        json_string(desc && *desc ? desc : old_desc ? old_desc : gdesc[0] ? gdesc : fallback));
    json_object_set_new(entry, "architecture", json_string(arch));
    json_object_set_new(entry, "license", json_string(license));
    json_object_set_new(entry, "parameters", json_integer((json_int_t)info.n_params));
    if (info.n_ctx_train) json_object_set_new(entry, "context_length", json_integer(info.n_ctx_train));
    const char *old_rev = json_string_value(json_object_get(entry, "revision"));
    long long rv = old_rev ? strtoll(old_rev, NULL, 10) : 0;
    char rev[32], date[16];
    snprintf(rev, sizeof rev, "%lld", rv > 0 ? rv + 1 : 1);
    json_object_set_new(entry, "revision", json_string(rev));
    time_t tnow = (time_t)now;
    struct tm tm;
    gmtime_r(&tnow, &tm);
    strftime(date, sizeof date, "%Y-%m-%d", &tm);
    json_object_set_new(entry, "updated", json_string(date));
    json_object_set_new(entry, "publisher", json_string(publisher));
    json_t *tags = json_object_get(meta, "tags");
    if (json_is_array(tags)) json_object_set(entry, "tags", tags);
    json_t *vars = json_object_get(entry, "variants");
    json_t *v = json_pack("{s:s,s:s,s:I,s:s,s:s,s:I}", "name", variant, "quantization", info.file_type, "size",
                          (json_int_t)st.st_size, "sha256", sha, "url", brel, "min_ram",
                          (json_int_t)info.mem_total_bytes);
    bool replaced = false;
    for (size_t i = 0; i < json_array_size(vars); i++) {
        const char *vn = json_string_value(json_object_get(json_array_get(vars, i), "name"));
        if (vn && !strcmp(vn, variant)) {
            json_array_set(vars, i, v);
            replaced = true;
        }
    }
    if (!replaced) json_array_append(vars, v);
    json_decref(v);
    char *out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!out || byoai_index_parse(out, strlen(out), NULL, &check, &e)) {
        status = 400;
        etype = "invalid_request_error";
        snprintf(emsg, sizeof emsg, "the entry would be invalid: %s", e.msg);
        free(out);
        goto done;
    }
    byoai_index_free(check);
    size_t olen = strlen(out);
    out[olen] = '\0';
    if (byoai_fs_write_atomic(ip, out, olen, &e) || sign_text(srv->dir, &rk, out, olen, &e)) {
        status = 500;
        snprintf(emsg, sizeof emsg, "cannot write the index: %s", e.msg);
        free(out);
        goto done;
    }
    free(out);
done:
    pthread_mutex_unlock(&srv->mu);
    free(itext);
    json_decref(root);
    json_decref(meta);
    if (status) {
        logf_(srv, "publish %s by %s refused: %s", name, publisher, emsg);
        send_error(r, status, etype, "%s", emsg);
        return;
    }
    logf_(srv, "published %s:%s (%s, %llu bytes) by %s, revision %s", name, variant, sha,
          (unsigned long long)st.st_size, publisher, rev);
    json_t *res = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s}", "name", name, "variant", variant, "sha256", sha, "size",
                            (json_int_t)st.st_size, "revision", rev, "publisher", publisher);
    char *text = json_dumps(res, JSON_COMPACT);
    json_decref(res);
    byoai_http_send(r, 201, "application/json", text, strlen(text));
    free(text);
}

static void handler(void *user, byoai_http_req *r) {
    byoai_registry_server *srv = user;
    const char *path = byoai_http_path(r);
    const char *method = byoai_http_method(r);
    const char *range = byoai_http_header(r, "Range");
    logf_(srv, "%s %s%s%s %s", method, path, range ? " range=" : "", range ? range : "", byoai_http_remote(r));
    if (!strncmp(path, PUBLISH_PATH, strlen(PUBLISH_PATH))) {
        handle_publish(srv, r, path + strlen(PUBLISH_PATH));
        return;
    }
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        send_error(r, 405, "invalid_request_error", "only GET and HEAD (and PUT %sNAME to publish)", PUBLISH_PATH);
        return;
    }
    char p[3200];
    if (!strcmp(path, "/index.json")) {
        serve_index(srv, r);
    } else if (!strcmp(path, "/index.json.sig") || !strcmp(path, "/registry.pub")) {
        dir_path(srv->dir, path + 1, p, sizeof p);
        pthread_mutex_lock(&srv->mu);
        char *text;
        size_t len;
        int rc = byoai_fs_read_all(p, 4096, &text, &len, NULL);
        pthread_mutex_unlock(&srv->mu);
        if (rc) send_error(r, 404, "not_found", "%s not found", path);
        else byoai_http_send(r, 200, "text/plain", text, len);
        if (!rc) free(text);
    } else if (!strncmp(path, "/blobs/sha256-", 14) && byoai_store_check_sha256(path + 14)) {
        dir_path(srv->dir, path + 1, p, sizeof p);
        byoai_http_send_file(r, p, "application/octet-stream", path + 14);
    } else if (!strcmp(path, "/")) {
        const char *t = "byoai registry: GET /index.json, /index.json.sig, /registry.pub, /blobs/sha256-HEX\n";
        byoai_http_send(r, 200, "text/plain", t, strlen(t));
    } else {
        send_error(r, 404, "not_found", "%s not found", path);
    }
}

static bool wants_file(void *user, const char *method, const char *path) {
    (void)user;
    return (!strcmp(method, "PUT") || !strcmp(method, "POST")) && !strncmp(path, PUBLISH_PATH, strlen(PUBLISH_PATH));
}

int byoai_registry_serve_start(const char *dir, const byoai_serve_opts *o, byoai_registry_server **out,
                               byoai_error *err) {
    *out = NULL;
    byoai_registry_server *srv = calloc(1, sizeof *srv);
    if (!srv) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    if (strlen(dir) >= sizeof srv->dir - 100) {
        free(srv);
        return byoai_error_set(err, BYOAI_EINVAL, "path too long");
    }
    snprintf(srv->dir, sizeof srv->dir, "%s", dir);
    if (o) srv->o = *o;
    if (!srv->o.max_skew_s) srv->o.max_skew_s = 300;
    char p[3100], tmp[3100];
    dir_path(dir, "index.json", p, sizeof p);
    if (!byoai_fs_exists(p)) {
        free(srv);
        return byoai_error_set(err, BYOAI_ENOTFOUND, "%s has no index.json; create a registry with `byoai registry "
                               "init %s`", dir, dir);
    }
    dir_path(dir, "tmp", tmp, sizeof tmp);
    dir_path(dir, "state", p, sizeof p);
    int rc;
    if ((rc = byoai_fs_mkdirs(tmp, 0755, err)) || (rc = byoai_fs_mkdirs(p, 0700, err))) {
        free(srv);
        return rc;
    }
    pthread_mutex_init(&srv->mu, NULL);
    pthread_mutex_init(&srv->nonce_mu, NULL);
    load_nonces(srv);
    byoai_http_config hc = {.bind_addr = srv->o.bind_addr, .port = srv->o.port, .upload_dir = tmp,
                            .max_file_body = srv->o.max_upload, .wants_file = wants_file, .check_upload = check_upload,
                            .timeout_s = 120};
    if ((rc = byoai_http_start(&hc, handler, srv, &srv->http, err))) {
        pthread_mutex_destroy(&srv->nonce_mu);
        pthread_mutex_destroy(&srv->mu);
        free(srv->nonces);
        free(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

uint16_t byoai_registry_serve_port(const byoai_registry_server *srv) { return byoai_http_port(srv->http); }

void byoai_registry_serve_stop(byoai_registry_server *srv) {
    if (!srv) return;
    byoai_http_stop(srv->http);
    pthread_mutex_destroy(&srv->nonce_mu);
    pthread_mutex_destroy(&srv->mu);
    free(srv->nonces);
    free(srv);
}
