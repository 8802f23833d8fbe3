/*
 * Node identity and cluster membership on disk, and member certificates.
 *
 *   $BYOAI_HOME/cluster/node.key      the node's ed25519 seed (hex), 0600
 *   $BYOAI_HOME/cluster/cluster.json  membership: cluster name and public key,
 *                                     this node's certificate, bootstrap peers
 *   $BYOAI_HOME/cluster/cluster.key   the cluster's ed25519 seed (admin only), 0600
 *
 * A certificate is the cluster key's signature over (cluster key, node key,
 * issue and expiry times, node name) with a domain-separation prefix, so a
 * signature made for anything else can never pass as one.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster_internal.h"

#define CERT_MAGIC "BYC1"
#define CERT_DOMAIN "byoai-cert-v1"

/* ---- certificates ------------------------------------------------------------ */

static void cert_body(const cl_cert *c, cl_buf *b) {
    cl_buf_bytes(b, CERT_MAGIC, 4);
    cl_buf_bytes(b, c->cluster_pk, 32);
    cl_buf_bytes(b, c->node_pk, 32);
    cl_buf_u64(b, c->issued);
    cl_buf_u64(b, c->expires);
    cl_buf_str(b, c->name);
}

int cl_cert_encode(const cl_cert *c, uint8_t *out, size_t cap, size_t *len) {
    cl_buf b = {0};
    cert_body(c, &b);
    cl_buf_bytes(&b, c->sig, 64);
    int rc = 0;
    if (b.oom || b.len > cap) rc = BYOAI_ERANGE;
    else {
        memcpy(out, b.data, b.len);
        *len = b.len;
    }
    cl_buf_free(&b);
    return rc;
}

int cl_cert_decode(const uint8_t *in, size_t len, cl_cert *out, byoai_error *err) {
    memset(out, 0, sizeof *out);
    if (len > CL_CERT_MAX) return byoai_error_set(err, BYOAI_EFORMAT, "certificate too long (%zu bytes)", len);
    cl_rd r = {in, len, 0, false};
    const uint8_t *magic = cl_rd_bytes(&r, 4);
    if (!magic || memcmp(magic, CERT_MAGIC, 4))
        return byoai_error_set(err, BYOAI_EFORMAT, "not a byoai member certificate");
    const uint8_t *cpk = cl_rd_bytes(&r, 32), *npk = cl_rd_bytes(&r, 32);
    out->issued = cl_rd_u64(&r);
    out->expires = cl_rd_u64(&r);
    cl_rd_str(&r, out->name, sizeof out->name);
    const uint8_t *sig = cl_rd_bytes(&r, 64);
    if (!cl_rd_done(&r)) return byoai_error_set(err, BYOAI_EFORMAT, "malformed member certificate");
    memcpy(out->cluster_pk, cpk, 32);
    memcpy(out->node_pk, npk, 32);
    memcpy(out->sig, sig, 64);
    return 0;
}

static int cert_signed_message(const cl_cert *c, cl_buf *m) {
    cl_buf_bytes(m, CERT_DOMAIN, strlen(CERT_DOMAIN));
    cert_body(c, m);
    return m->oom ? BYOAI_ENOMEM : 0;
}

void cl_cert_sign(cl_cert *c, const uint8_t cluster_sk[64]) {
    cl_buf m = {0};
    if (cert_signed_message(c, &m) == 0) crypto_sign_detached(c->sig, NULL, m.data, m.len, cluster_sk);
    cl_buf_free(&m);
}

int cl_cert_verify(const cl_cert *c, const uint8_t cluster_pk[32], uint64_t now, byoai_error *err) {
    char fp[BYOAI_CLUSTER_ID_LEN + 1];
    cl_fingerprint(c->node_pk, fp);
    if (sodium_memcmp(c->cluster_pk, cluster_pk, 32) != 0)
        return byoai_error_set(err, BYOAI_EAUTH, "node %.12s belongs to another cluster", fp);
    cl_buf m = {0};
    if (cert_signed_message(c, &m)) {
        cl_buf_free(&m);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    int ok = crypto_sign_verify_detached(c->sig, m.data, m.len, cluster_pk);
    cl_buf_free(&m);
    if (ok != 0)
        return byoai_error_set(err, BYOAI_EAUTH, "the certificate of node %.12s is not signed by this cluster's key", fp);
    if (c->issued > now + 600)
        return byoai_error_set(err, BYOAI_EAUTH, "the certificate of node %.12s is issued in the future (clock skew?)", fp);
    if (c->expires && c->expires < now)
        return byoai_error_set(err, BYOAI_EAUTH, "the certificate of node %.12s has expired; invite the node again", fp);
    return 0;
}

/* ---- files ---------------------------------------------------------------------- */

int cl_home_resolve(const char *home, char *out, size_t cap, byoai_error *err) {
    const char *h = home && *home ? home : getenv("BYOAI_HOME");
    int n;
    if (h && *h) n = snprintf(out, cap, "%s", h);
    else {
        const char *x = getenv("XDG_DATA_HOME");
        if (x && *x) n = snprintf(out, cap, "%s/byoai", x);
        else {
            const char *u = getenv("HOME");
            if (!u || !*u) return byoai_error_set(err, BYOAI_EINVAL, "neither BYOAI_HOME nor HOME is set");
            n = snprintf(out, cap, "%s/.local/share/byoai", u);
        }
    }
    if (n < 0 || (size_t)n >= cap) return byoai_error_set(err, BYOAI_EINVAL, "home directory path is too long");
    return 0;
}

/* write a secret file: 0600 from the start, atomically */
static int write_secret(const char *path, const char *text, byoai_error *err) {
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return byoai_error_set(err, BYOAI_EIO, "cannot create %s: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    bool ok = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return byoai_error_set(err, BYOAI_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    byoai_fs_sync_parent(path);
    return 0;
}

/* read a hex seed file, refusing one that others may read */
static int read_seed(const char *path, uint8_t seed[32], byoai_error *err) {
    struct stat st;
    if (stat(path, &st) != 0) return byoai_error_set(err, BYOAI_ENOTFOUND, "%s does not exist", path);
    if (st.st_mode & 077)
        return byoai_error_set(err, BYOAI_EAUTH, "%s is readable by other users (mode %o); run chmod 600 %s", path,
                               (unsigned)(st.st_mode & 0777), path);
    char *data;
    size_t len;
    int rc = byoai_fs_read_all(path, 4096, &data, &len, err);
    if (rc) return rc;
    while (len && (data[len - 1] == '\n' || data[len - 1] == ' ')) data[--len] = '\0';
    rc = cl_unhex(data, seed, 32);
    sodium_memzero(data, len);
    free(data);
    if (rc) return byoai_error_set(err, BYOAI_EFORMAT, "%s does not hold a 64-character hex key", path);
    return 0;
}

static int write_seed(const char *path, const uint8_t seed[32], byoai_error *err) {
    char hex[66];
    cl_hex(seed, 32, hex);
    strcat(hex, "\n");
    int rc = write_secret(path, hex, err);
    sodium_memzero(hex, sizeof hex);
    return rc;
}

void cl_identity_wipe(cl_identity *id) { sodium_memzero(id, sizeof *id); }

static int load_membership(cl_identity *id, byoai_error *err) {
    char path[4400];
    snprintf(path, sizeof path, "%s/cluster.json", id->dir);
    if (!byoai_fs_exists(path)) return 0;
    char *data;
    size_t len;
    int rc = byoai_fs_read_all(path, 1 << 20, &data, &len, err);
    if (rc) return rc;
    json_error_t je;
    json_t *j = json_loadb(data, len, 0, &je);
    free(data);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return byoai_error_set(err, BYOAI_EFORMAT, "%s is not valid JSON (line %d: %s)", path, je.line, je.text);
    }
    const char *name = json_string_value(json_object_get(j, "cluster_name"));
    const char *pk = json_string_value(json_object_get(j, "cluster_public_key"));
    const char *cert = json_string_value(json_object_get(j, "certificate"));
    const char *nn = json_string_value(json_object_get(j, "node_name"));
    uint8_t certbin[CL_CERT_MAX];
    rc = 0;
    if (!name || !pk || !cert || cl_unhex(pk, id->cluster_pk, 32) || strlen(cert) % 2 ||
        strlen(cert) / 2 > sizeof certbin || cl_unhex(cert, certbin, strlen(cert) / 2))
        rc = byoai_error_set(err, BYOAI_EFORMAT, "%s is missing cluster_name, cluster_public_key or certificate", path);
    if (!rc) rc = cl_cert_decode(certbin, strlen(cert) / 2, &id->cert, err);
    if (!rc && (memcmp(id->cert.node_pk, id->node_pk, 32) || memcmp(id->cert.cluster_pk, id->cluster_pk, 32)))
        rc = byoai_error_set(err, BYOAI_EFORMAT, "%s: the certificate is for another node or cluster", path);
    if (!rc) {
        snprintf(id->cluster_name, sizeof id->cluster_name, "%s", name);
        if (nn) snprintf(id->node_name, sizeof id->node_name, "%s", nn);
        cl_fingerprint(id->cluster_pk, id->cluster_id);
        json_t *peers = json_object_get(j, "peers"), *keys = json_object_get(j, "peer_keys");
        size_t i;
        json_t *v;
        json_array_foreach(peers, i, v) {
            if (id->n_peers < 16 && json_is_string(v) && strlen(json_string_value(v)) < sizeof id->peers[0]) {
                snprintf(id->peers[id->n_peers], sizeof id->peers[0], "%s", json_string_value(v));
                const char *k = json_string_value(json_array_get(keys, i)); /* "" or absent: not known */
                id->peer_has_pk[id->n_peers] = k && strlen(k) == 64 && cl_unhex(k, id->peer_pk[id->n_peers], 32) == 0;
                id->n_peers++;
            }
        }
        id->member = true;
    }
    json_decref(j);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/cluster.key", id->dir);
    if (byoai_fs_exists(path)) {
        uint8_t seed[32], pk2[32];
        if ((rc = read_seed(path, seed, err))) return rc;
        crypto_sign_seed_keypair(pk2, id->cluster_sk, seed);
        sodium_memzero(seed, sizeof seed);
        if (memcmp(pk2, id->cluster_pk, 32))
            return byoai_error_set(err, BYOAI_EFORMAT, "%s does not match the cluster's public key", path);
        id->admin = true;
    }
    return 0;
}

/* ---- node names ----------------------------------------------------------------------- */

bool cl_valid_node_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > BYOAI_CLUSTER_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(c == '-' || c == '_' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z')))
            return false;
    }
    return true;
}

/* the host name (what a name may hold of it) and the first four characters of the node id */
static void default_node_name(cl_identity *id) {
    char host[CL_NAME_MAX] = "";
    if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    host[sizeof host - 1] = '\0';
    size_t n = 0;
    for (size_t i = 0; host[i] && n < BYOAI_CLUSTER_NAME_MAX - 5; i++) {
        unsigned char ch = (unsigned char)host[i];
        if (ch == '.') break; /* the short host name */
        host[n++] = (char)(isalnum(ch) || ch == '-' || ch == '_' ? ch : '-');
    }
    host[n] = '\0';
    snprintf(id->node_name, sizeof id->node_name, "%s-%.4s", n ? host : "node", id->node_id);
}

/* cluster/name: the name this node was given (--name), kept across memberships */
static int load_node_name(cl_identity *id, byoai_error *err) {
    char path[4400];
    snprintf(path, sizeof path, "%s/name", id->dir);
    if (!byoai_fs_exists(path)) return 0;
    char *data;
    size_t len;
    int rc = byoai_fs_read_all(path, 256, &data, &len, err);
    if (rc) return rc;
    while (len && (data[len - 1] == '\n' || data[len - 1] == ' ')) data[--len] = '\0';
    if (cl_valid_node_name(data)) snprintf(id->node_name, sizeof id->node_name, "%s", data);
    else byoai_log(BYOAI_LOG_WARN, "%s does not hold a valid node name; using %s", path, id->node_name);
    free(data);
    return 0;
}

int cl_identity_set_name(cl_identity *id, const char *name, byoai_error *err) {
    if (!name || !cl_valid_node_name(name))
        return byoai_error_set(err, BYOAI_EINVAL, "a node name is 1..%d letters, digits, '-', '_' or '.', got '%s'",
                               BYOAI_CLUSTER_NAME_MAX, name ? name : "");
    char path[4400], text[CL_NAME_MAX + 2];
    snprintf(path, sizeof path, "%s/name", id->dir);
    snprintf(text, sizeof text, "%s\n", name);
    int rc = byoai_fs_write_atomic(path, text, strlen(text), err);
    if (rc) return rc;
    snprintf(id->node_name, sizeof id->node_name, "%s", name);
    return id->member ? cl_identity_save_membership(id, err) : 0;
}

int byoai_cluster_set_node_name(const char *home, const char *name, byoai_error *err) {
    cl_identity *id = malloc(sizeof *id);
    if (!id) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    int rc = cl_identity_load(home, id, err);
    if (!rc) rc = cl_identity_set_name(id, name, err);
    cl_identity_wipe(id);
    free(id);
    return rc;
}

int cl_identity_load(const char *home, cl_identity *id, byoai_error *err) {
    memset(id, 0, sizeof *id);
    if (sodium_init() < 0) return byoai_error_set(err, BYOAI_EIO, "libsodium failed to initialise");
    int rc = cl_home_resolve(home, id->home, sizeof id->home, err);
    if (rc) return rc;
    snprintf(id->dir, sizeof id->dir, "%s/cluster", id->home);
    if ((rc = byoai_fs_mkdirs(id->dir, 0700, err))) return rc;
    chmod(id->dir, 0700);
    char path[4400];
    snprintf(path, sizeof path, "%s/node.key", id->dir);
    uint8_t seed[32];
    if (!byoai_fs_exists(path)) {
        randombytes_buf(seed, sizeof seed);
        if ((rc = write_seed(path, seed, err))) return rc;
        byoai_log(BYOAI_LOG_INFO, "made a new node key in %s", path);
    } else if ((rc = read_seed(path, seed, err))) {
        return rc;
    }
    crypto_sign_seed_keypair(id->node_pk, id->node_sk, seed);
    sodium_memzero(seed, sizeof seed);
    cl_fingerprint(id->node_pk, id->node_id);
    default_node_name(id);
    rc = load_membership(id, err);
    if (!rc) rc = load_node_name(id, err);
    if (rc) cl_identity_wipe(id);
    else cl_identity_derive(id);
    return rc;
}

void cl_identity_derive(cl_identity *id) {
    /* a key made by crypto_sign always converts; a failure leaves zeros, which no handshake accepts */
    if (crypto_sign_ed25519_pk_to_curve25519(id->node_xpk, id->node_pk) != 0) memset(id->node_xpk, 0, 32);
    if (crypto_sign_ed25519_sk_to_curve25519(id->node_xsk, id->node_sk) != 0) memset(id->node_xsk, 0, 32);
    crypto_generichash_state s;
    crypto_generichash_init(&s, NULL, 0, 32);
    crypto_generichash_update(&s, (const uint8_t *)"byoai-link-v2 cluster", 21);
    crypto_generichash_update(&s, id->cluster_pk, 32);
    crypto_generichash_final(&s, id->cluster_link_key, 32);
}

int cl_identity_save_membership(const cl_identity *id, byoai_error *err) {
    char path[4400], pk[65], certhex[2 * CL_CERT_MAX + 1];
    uint8_t cert[CL_CERT_MAX];
    size_t clen;
    if (cl_cert_encode(&id->cert, cert, sizeof cert, &clen))
        return byoai_error_set(err, BYOAI_EINVAL, "certificate too large");
    cl_hex(cert, clen, certhex);
    cl_hex(id->cluster_pk, 32, pk);
    json_t *peers = json_array(), *keys = json_array();
    for (int i = 0; i < id->n_peers; i++) {
        char kh[65] = "";
        if (id->peer_has_pk[i]) cl_hex(id->peer_pk[i], 32, kh);
        json_array_append_new(peers, json_string(id->peers[i]));
        json_array_append_new(keys, json_string(kh));
    }
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o}", "cluster_name", id->cluster_name, "cluster_id",
                          id->cluster_id, "cluster_public_key", pk, "certificate", certhex, "node_name", id->node_name,
                          "peers", peers, "peer_keys", keys);
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (!text) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    int rc = 0;
    if (id->admin) {
        snprintf(path, sizeof path, "%s/cluster.key", id->dir);
        uint8_t seed[32];
        crypto_sign_ed25519_sk_to_seed(seed, id->cluster_sk);
        rc = write_seed(path, seed, err);
        sodium_memzero(seed, sizeof seed);
    }
    if (!rc) {
        snprintf(path, sizeof path, "%s/cluster.json", id->dir);
        size_t n = strlen(text);
        char *t2 = realloc(text, n + 2);
        if (t2) {
            text = t2;
            strcpy(text + n, "\n");
        }
        rc = byoai_fs_write_atomic(path, text, strlen(text), err);
    }
    free(text);
    return rc;
}

void cl_identity_public(const cl_identity *id, byoai_cluster_identity *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->node_id, sizeof out->node_id, "%s", id->node_id);
    snprintf(out->node_name, sizeof out->node_name, "%s", id->node_name);
    out->member = id->member;
    if (id->member) {
        snprintf(out->cluster_id, sizeof out->cluster_id, "%s", id->cluster_id);
        snprintf(out->cluster_name, sizeof out->cluster_name, "%s", id->cluster_name);
        out->cert_expires = id->cert.expires;
    }
    out->admin = id->admin;
}

/* ---- public membership functions ----------------------------------------------------- */

int byoai_cluster_identity_get(const char *home, byoai_cluster_identity *out, byoai_error *err) {
    cl_identity *id = malloc(sizeof *id);
    if (!id) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    int rc = cl_identity_load(home, id, err);
    if (!rc) cl_identity_public(id, out);
    cl_identity_wipe(id);
    free(id);
    return rc;
}

static bool valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > BYOAI_CLUSTER_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(c == '-' || c == '_' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z')))
            return false;
    }
    return true;
}

int byoai_cluster_create(const char *home, const char *name, byoai_cluster_identity *out, byoai_error *err) {
    if (!name || !valid_name(name))
        return byoai_error_set(err, BYOAI_EINVAL, "cluster name must be 1..%d letters, digits, '-', '_' or '.'",
                               BYOAI_CLUSTER_NAME_MAX);
    cl_identity *id = malloc(sizeof *id);
    if (!id) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    int rc = cl_identity_load(home, id, err);
    if (!rc && id->member)
        rc = byoai_error_set(err, BYOAI_EEXIST, "this node already belongs to cluster '%s' (%.12s); run `byoai "
                             "cluster leave` first", id->cluster_name, id->cluster_id);
    if (!rc) {
        crypto_sign_keypair(id->cluster_pk, id->cluster_sk);
        cl_fingerprint(id->cluster_pk, id->cluster_id);
        snprintf(id->cluster_name, sizeof id->cluster_name, "%s", name);
        id->admin = true;
        id->member = true;
        memset(&id->cert, 0, sizeof id->cert);
        memcpy(id->cert.cluster_pk, id->cluster_pk, 32);
        memcpy(id->cert.node_pk, id->node_pk, 32);
        id->cert.issued = byoai_time_unix();
        snprintf(id->cert.name, sizeof id->cert.name, "%s", id->node_name);
        cl_cert_sign(&id->cert, id->cluster_sk);
        rc = cl_identity_save_membership(id, err);
        if (!rc && out) cl_identity_public(id, out);
    }
    cl_identity_wipe(id);
    free(id);
    return rc;
}

int byoai_cluster_leave(const char *home, bool force, byoai_error *err) {
    cl_identity *id = malloc(sizeof *id);
    if (!id) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    int rc = cl_identity_load(home, id, err);
    if (!rc && !id->member) rc = byoai_error_set(err, BYOAI_ENOTFOUND, "this node is not in a cluster");
    if (!rc && id->admin && !force)
        rc = byoai_error_set(err, BYOAI_EBUSY, "this node holds the key of cluster '%s': leaving deletes it and "
                             "nobody can invite new members any more; pass --force to leave anyway",
                             id->cluster_name);
    if (!rc) {
        char path[4400];
        const char *files[] = {"cluster.json", "cluster.key", "invites.json", "revoked.bin"};
        for (size_t i = 0; i < 4; i++) {
            snprintf(path, sizeof path, "%s/%s", id->dir, files[i]);
            if (unlink(path) != 0 && errno != ENOENT) {
                rc = byoai_error_set(err, BYOAI_EIO, "cannot remove %s: %s", path, strerror(errno));
                break;
            }
        }
        byoai_fs_sync_parent(path);
    }
    cl_identity_wipe(id);
    free(id);
    return rc;
}
