/*
 * API keys. Keys come from the configuration (api-key, kept in memory as
 * SHA-256 digests) and from the server database (created with `byoai apikey
 * create`, stored only as SHA-256 digests). When any key exists, every API
 * request must carry one as "Authorization: Bearer KEY"; the health and
 * version endpoints and the web app's static files stay open.
 *
 * Keys are 160 random bits, so one SHA-256 (no salt, no stretching) is
 * enough: the digest cannot be reversed and cannot be guessed. Comparisons
 * of digests held in memory are constant-time.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

#define ENABLED_TTL 2.0 /* seconds a "keys exist in the database" answer is reused */

struct srv_auth {
    srv_db *db;
    char digests[BYOAI_SERVER_MAX_KEYS][65];
    uint32_t n_digests;
    pthread_mutex_t mu;
    bool db_has_keys;
    double checked_at;
};

void byoai_server_default_db(const char *home, char *out, size_t cap) {
    if (home && home[0]) {
        snprintf(out, cap, "%s/server.db", home);
        return;
    }
    const char *h = getenv("BYOAI_HOME");
    if (h && h[0]) {
        snprintf(out, cap, "%s/server.db", h);
        return;
    }
    const char *x = getenv("XDG_DATA_HOME");
    if (x && x[0]) {
        snprintf(out, cap, "%s/byoai/server.db", x);
        return;
    }
    const char *u = getenv("HOME");
    snprintf(out, cap, "%s/.local/share/byoai/server.db", u && u[0] ? u : ".");
}

int srv_auth_new(const byoai_server_config *cfg, srv_db *db, srv_auth **out, byoai_error *err) {
    *out = NULL;
    srv_auth *a = calloc(1, sizeof *a);
    if (!a) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    a->db = db;
    for (uint32_t i = 0; i < cfg->n_api_keys; i++)
        byoai_sha256_buf(cfg->api_keys[i], strlen(cfg->api_keys[i]), a->digests[a->n_digests++]);
    pthread_mutex_init(&a->mu, NULL);
    a->checked_at = -1e9;
    *out = a;
    return 0;
}

void srv_auth_free(srv_auth *a) {
    if (!a) return;
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static bool db_has_keys(srv_auth *a) {
    double now = byoai_time_now();
    pthread_mutex_lock(&a->mu);
    if (now - a->checked_at < ENABLED_TTL) {
        bool v = a->db_has_keys;
        pthread_mutex_unlock(&a->mu);
        return v;
    }
    pthread_mutex_unlock(&a->mu);
    bool has = false;
    pthread_mutex_lock(&a->db->mu);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(a->db->db, "SELECT 1 FROM api_keys WHERE revoked = 0 LIMIT 1", -1, &st, NULL) == SQLITE_OK) {
        has = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&a->db->mu);
    pthread_mutex_lock(&a->mu);
    a->db_has_keys = has;
    a->checked_at = now;
    pthread_mutex_unlock(&a->mu);
    return has;
}

bool srv_auth_enabled(srv_auth *a) { return a->n_digests > 0 || (a->db && db_has_keys(a)); }

int srv_auth_check(srv_auth *a, const char *authorization, srv_error *e) {
    if (!srv_auth_enabled(a)) return 0;
    if (!authorization || !authorization[0])
        return srv_err(e, 401, "invalid_request_error", "missing_api_key", NULL,
                       "this server needs an API key: send it as 'Authorization: Bearer KEY'");
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return srv_err(e, 401, "invalid_request_error", "invalid_api_key", NULL,
                       "the Authorization header must be 'Bearer KEY'");
    const char *key = authorization + 7;
    while (*key == ' ') key++;
    char digest[65];
    byoai_sha256_buf(key, strlen(key), digest);
    bool ok = false;
    for (uint32_t i = 0; i < a->n_digests; i++) ok |= sodium_memcmp(digest, a->digests[i], 64) == 0;
    if (!ok && a->db) {
        pthread_mutex_lock(&a->db->mu);
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(a->db->db, "SELECT id, last_used_at FROM api_keys WHERE hash = ? AND revoked = 0", -1,
                               &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, digest, 64, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW) {
                ok = true;
                sqlite3_int64 id = sqlite3_column_int64(st, 0), last = sqlite3_column_int64(st, 1);
                sqlite3_finalize(st);
                uint64_t now = byoai_time_unix();
                if (now > (uint64_t)last + 60 &&
                    sqlite3_prepare_v2(a->db->db, "UPDATE api_keys SET last_used_at = ? WHERE id = ?", -1, &st,
                                       NULL) == SQLITE_OK) {
                    sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
                    sqlite3_bind_int64(st, 2, id);
                    sqlite3_step(st);
                    sqlite3_finalize(st);
                }
            } else {
                sqlite3_finalize(st);
            }
        }
        pthread_mutex_unlock(&a->db->mu);
    }
    if (!ok)
        return srv_err(e, 401, "invalid_request_error", "invalid_api_key", NULL,
                       "the API key is not valid (unknown or revoked)");
    return 0;
}

/* ---- the `byoai apikey` operations --------------------------------------------- */
int byoai_api_key_create(const char *db_path, const char *name, char key_out[80], byoai_api_key_info *info,
                         byoai_error *err) {
    if (!name || !name[0] || strlen(name) >= sizeof info->name)
        return byoai_error_set(err, BYOAI_EINVAL, "a key name must be 1 to %zu bytes", sizeof info->name - 1);
    if (!byoai_utf8_valid(name, strlen(name)))
        return byoai_error_set(err, BYOAI_EINVAL, "a key name must be valid UTF-8");
    if (sodium_init() < 0) return byoai_error_set(err, BYOAI_EIO, "cannot initialise the random generator");
    unsigned char rnd[20];
    randombytes_buf(rnd, sizeof rnd);
    char hex[41];
    sodium_bin2hex(hex, sizeof hex, rnd, sizeof rnd);
    snprintf(key_out, 80, "byoai-%s", hex);
    char digest[65];
    byoai_sha256_buf(key_out, strlen(key_out), digest);
    srv_db *d;
    int rc = srv_db_open(db_path, &d, err);
    if (rc) return rc;
    byoai_api_key_info in = {0};
    snprintf(in.name, sizeof in.name, "%s", name);
    snprintf(in.prefix, sizeof in.prefix, "%.14s", key_out);
    in.created_at = byoai_time_unix();
    sqlite3_stmt *st;
    rc = BYOAI_EIO;
    if (sqlite3_prepare_v2(d->db, "INSERT INTO api_keys (name, prefix, hash, created_at) VALUES (?, ?, ?, ?)", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, in.name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, in.prefix, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, digest, 64, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)in.created_at);
        if (sqlite3_step(st) == SQLITE_DONE) {
            rc = 0;
            in.id = sqlite3_last_insert_rowid(d->db);
        }
        sqlite3_finalize(st);
    }
    if (rc) byoai_error_set(err, BYOAI_EIO, "cannot store the key in %s: %s", db_path, sqlite3_errmsg(d->db));
    srv_db_close(d);
    if (!rc && info) *info = in;
    if (rc) memset(key_out, 0, 80);
    return rc;
}

int byoai_api_key_list(const char *db_path, byoai_api_key_info **out, size_t *n, byoai_error *err) {
    *out = NULL;
    *n = 0;
    srv_db *d;
    int rc = srv_db_open(db_path, &d, err);
    if (rc) return rc;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->db, "SELECT id, name, prefix, created_at, last_used_at, revoked FROM api_keys ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = byoai_error_set(err, BYOAI_EIO, "cannot read keys: %s", sqlite3_errmsg(d->db));
        srv_db_close(d);
        return rc;
    }
    size_t cap = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            byoai_api_key_info *p = realloc(*out, cap * sizeof *p);
            if (!p) {
                rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
                break;
            }
            *out = p;
        }
        byoai_api_key_info *k = &(*out)[(*n)++];
        memset(k, 0, sizeof *k);
        k->id = sqlite3_column_int64(st, 0);
        snprintf(k->name, sizeof k->name, "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(k->prefix, sizeof k->prefix, "%s", (const char *)sqlite3_column_text(st, 2));
        k->created_at = (uint64_t)sqlite3_column_int64(st, 3);
        k->last_used_at = (uint64_t)sqlite3_column_int64(st, 4);
        k->revoked = sqlite3_column_int(st, 5) != 0;
    }
    sqlite3_finalize(st);
    srv_db_close(d);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int byoai_api_key_revoke(const char *db_path, const char *id_or_name, byoai_error *err) {
    srv_db *d;
    int rc = srv_db_open(db_path, &d, err);
    if (rc) return rc;
    char *end;
    long long id = strtoll(id_or_name, &end, 10);
    bool by_id = end != id_or_name && *end == '\0';
    sqlite3_stmt *st;
    rc = byoai_error_set(err, BYOAI_EIO, "cannot revoke: %s", sqlite3_errmsg(d->db));
    if (sqlite3_prepare_v2(d->db, by_id ? "UPDATE api_keys SET revoked = 1 WHERE id = ? AND revoked = 0"
                                        : "UPDATE api_keys SET revoked = 1 WHERE name = ? AND revoked = 0",
                           -1, &st, NULL) == SQLITE_OK) {
        if (by_id) sqlite3_bind_int64(st, 1, id);
        else sqlite3_bind_text(st, 1, id_or_name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_DONE) {
            rc = sqlite3_changes(d->db) > 0 ? 0
                                            : byoai_error_set(err, BYOAI_ENOTFOUND, "no active key '%s' (see `byoai "
                                                              "apikey list`)", id_or_name);
        }
        sqlite3_finalize(st);
    }
    if (!rc) byoai_error_clear(err);
    srv_db_close(d);
    return rc;
}
