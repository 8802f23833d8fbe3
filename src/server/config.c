/*
 * Server configuration: one table of keys, set from text by the config
 * file, the environment and the command line alike, so that the three can
 * never disagree about a name, a range or a meaning.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/chat.h"
#include "byoai/server.h"
#include "server/server_internal.h"

const char *const byoai_server_config_keys[] = {
    "host", "port", "home", "db", "max-body", "max-tokens", "max-messages", "request-timeout", "idle-timeout",
    "max-loaded", "parallel", "ctx", "threads", "queue", "shutdown-grace", "slot-similarity", "cache-ram", "cache-disk",
    "cache-dir", "max-connections", "max-connections-per-ip", "header-timeout", "min-body-rate", "log-requests",
    "log-format", "web", "api-key", "cors-origin", "model",
    "chat-template", "cluster", "cluster-name", "cluster-bind", "cluster-port", "cluster-discovery-port", "cluster-discovery",
    "cluster-peer", "cluster-memory", "cluster-model", "cluster-model-url", "cluster-min-nodes", "cluster-wire",
    "cluster-heartbeat", "cluster-failure-timeout", "cluster-step-timeout", "cluster-test-link-delay-ms", NULL};

void byoai_server_config_defaults(byoai_server_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->host, sizeof c->host, "127.0.0.1");
    c->port = 8080;
    c->max_body = 1u << 20;
    c->max_tokens = 4096;
    c->max_messages = 1024;
    c->request_timeout = 600;
    c->idle_timeout = 300;
    c->max_loaded = 2;
    c->parallel = 4;
    c->ctx = 0;
    c->threads = 0;
    c->queue = 64;
    c->shutdown_grace = 10;
    c->slot_similarity = 0.5;
    c->cache_ram = 512ull << 20;
    c->cache_disk = 4ull << 30;
    c->max_connections = 4096;
    c->max_connections_per_ip = 64;
    c->header_timeout = 10;
    c->min_body_rate = 1024;
    c->log_requests = true;
    snprintf(c->log_format, sizeof c->log_format, "text");
    c->web = true;
    snprintf(c->cluster_bind, sizeof c->cluster_bind, "0.0.0.0");
    c->cluster_port = 47475;
    c->cluster_discovery_port = 47474;
    c->cluster_discovery = true;
    c->cluster_min_nodes = 1;
    snprintf(c->cluster_wire, sizeof c->cluster_wire, "f32");
}

/* seconds (or milliseconds): a decimal number in a range */
static int parse_seconds(const char *key, const char *v, double lo, double hi, double *out, byoai_error *err) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi))
        return byoai_error_set(err, BYOAI_EINVAL, "%s expects a number from %g to %g, got '%s'", key, lo, hi, v);
    *out = x;
    return 0;
}

static int parse_u64(const char *key, const char *v, uint64_t lo, uint64_t hi, uint64_t *out, byoai_error *err) {
    char *end;
    errno = 0;
    if (!v[0] || v[0] == '-') goto bad;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end) goto bad;
    if (x < lo || x > hi)
        return byoai_error_set(err, BYOAI_EINVAL, "%s must be between %llu and %llu (got %llu)", key,
                               (unsigned long long)lo, (unsigned long long)hi, x);
    *out = x;
    return 0;
bad:
    return byoai_error_set(err, BYOAI_EINVAL, "%s expects a whole number, got '%s'", key, v);
}

/* sizes: a number with an optional K/M/G suffix (powers of 1024) */
static int parse_size(const char *key, const char *v, uint64_t lo, uint64_t hi, uint64_t *out, byoai_error *err) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", v);
    size_t n = strlen(buf);
    uint64_t mult = 1;
    if (n && strchr("kKmMgG", buf[n - 1])) {
        char s = (char)tolower((unsigned char)buf[n - 1]);
        mult = s == 'k' ? 1024ull : s == 'm' ? 1024ull * 1024 : 1024ull * 1024 * 1024;
        buf[n - 1] = '\0';
    }
    uint64_t x = 0;
    int rc = parse_u64(key, buf, 0, UINT64_MAX / mult, &x, err);
    if (rc) return rc;
    x *= mult;
    if (x < lo || x > hi)
        return byoai_error_set(err, BYOAI_EINVAL, "%s must be between %llu and %llu bytes (got %llu)", key,
                               (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)x);
    *out = x;
    return 0;
}

static int parse_bool(const char *key, const char *v, bool *out, byoai_error *err) {
    if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on")) *out = true;
    else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off")) *out = false;
    else return byoai_error_set(err, BYOAI_EINVAL, "%s expects true or false, got '%s'", key, v);
    return 0;
}

static int copy_str(const char *key, const char *v, char *dst, size_t cap, byoai_error *err) {
    if (strlen(v) >= cap) return byoai_error_set(err, BYOAI_EINVAL, "%s is too long (at most %zu bytes)", key, cap - 1);
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

/* lower-case file name without directories and .gguf */
static void name_from_path(const char *path, char *out, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && !strcasecmp(b + n - 5, ".gguf")) n -= 5;
    if (n >= cap) n = cap - 1;
    for (size_t i = 0; i < n; i++) out[i] = (char)tolower((unsigned char)b[i]);
    out[n] = '\0';
}

static int check_model_name(const char *name, byoai_error *err) {
    size_t n = strlen(name);
    if (n == 0 || n > 128) return byoai_error_set(err, BYOAI_EINVAL, "model name '%s' must be 1 to 128 bytes", name);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':'))
            return byoai_error_set(err, BYOAI_EINVAL, "model name '%s' may hold only letters, digits, '.', '-', '_' "
                                   "and ':'", name);
    }
    return 0;
}

int byoai_server_config_add_model(byoai_server_config *c, const char *path, const char *alias, byoai_error *err) {
    if (c->n_models >= BYOAI_SERVER_MAX_MODELS)
        return byoai_error_set(err, BYOAI_EINVAL, "at most %d models can be configured", BYOAI_SERVER_MAX_MODELS);
    byoai_server_model_spec sp = {0};
    if (alias && alias[0]) {
        if (strlen(alias) >= sizeof sp.name) return byoai_error_set(err, BYOAI_EINVAL, "model name is too long");
        snprintf(sp.name, sizeof sp.name, "%s", alias);
    } else {
        name_from_path(path, sp.name, sizeof sp.name);
    }
    int rc = check_model_name(sp.name, err);
    if (rc) return rc;
    if (strlen(path) >= sizeof sp.path) return byoai_error_set(err, BYOAI_EINVAL, "model path is too long");
    snprintf(sp.path, sizeof sp.path, "%s", path);
    for (uint32_t i = 0; i < c->n_models; i++)
        if (!strcmp(c->models[i].name, sp.name)) { /* a later setting replaces an earlier one */
            c->models[i] = sp;
            return 0;
        }
    c->models[c->n_models++] = sp;
    return 0;
}

int byoai_server_config_set(byoai_server_config *c, const char *key, const char *v, byoai_error *err) {
    uint64_t x = 0;
    int rc;
    if (!key || !v) return byoai_error_set(err, BYOAI_EINVAL, "missing key or value");
#define U(name, field, lo, hi)                                                                                         \
    if (!strcmp(key, name)) {                                                                                          \
        if ((rc = parse_u64(name, v, lo, hi, &x, err))) return rc;                                                     \
        c->field = (__typeof__(c->field))x;                                                                            \
        return 0;                                                                                                      \
    }
    if (!strcmp(key, "host")) return copy_str(key, v, c->host, sizeof c->host, err);
    U("port", port, 0, 65535)
    if (!strcmp(key, "home")) return copy_str(key, v, c->home, sizeof c->home, err);
    if (!strcmp(key, "db")) return copy_str(key, v, c->db_path, sizeof c->db_path, err);
    if (!strcmp(key, "max-body")) {
        if ((rc = parse_size(key, v, 1024, 1ull << 30, &x, err))) return rc;
        c->max_body = (size_t)x;
        return 0;
    }
    U("max-tokens", max_tokens, 1, 1u << 20)
    U("max-messages", max_messages, 1, 1u << 20)
    U("request-timeout", request_timeout, 1, 86400 * 7)
    U("idle-timeout", idle_timeout, 0, 86400 * 365)
    U("max-loaded", max_loaded, 1, 64)
    U("parallel", parallel, 1, 256)
    U("ctx", ctx, 0, 1u << 20)
    U("threads", threads, 0, 512)
    U("queue", queue, 1, 100000)
    U("shutdown-grace", shutdown_grace, 0, 3600)
    if (!strcmp(key, "slot-similarity")) return parse_seconds(key, v, 0, 1, &c->slot_similarity, err);
    if (!strcmp(key, "cache-ram")) return parse_size(key, v, 0, 1ull << 50, &c->cache_ram, err);
    if (!strcmp(key, "cache-disk")) return parse_size(key, v, 0, 1ull << 50, &c->cache_disk, err);
    if (!strcmp(key, "cache-dir")) return copy_str(key, v, c->cache_dir, sizeof c->cache_dir, err);
    U("max-connections", max_connections, 16, 1u << 20)
    U("max-connections-per-ip", max_connections_per_ip, 0, 1u << 20)
    U("header-timeout", header_timeout, 1, 3600)
    if (!strcmp(key, "min-body-rate")) return parse_size(key, v, 1, 1ull << 30, &c->min_body_rate, err);
    if (!strcmp(key, "log-requests")) return parse_bool(key, v, &c->log_requests, err);
    if (!strcmp(key, "log-format")) {
        if (strcmp(v, "text") && strcmp(v, "json"))
            return byoai_error_set(err, BYOAI_EINVAL, "log-format is text or json, got '%s'", v);
        return copy_str(key, v, c->log_format, sizeof c->log_format, err);
    }
    if (!strcmp(key, "web")) return parse_bool(key, v, &c->web, err);
    if (!strcmp(key, "api-key")) {
        if (strlen(v) < 8 || strlen(v) >= sizeof c->api_keys[0])
            return byoai_error_set(err, BYOAI_EINVAL, "an api-key must be 8 to %zu characters",
                                   sizeof c->api_keys[0] - 1);
        for (const char *p = v; *p; p++)
            if (*p <= ' ' || *p == 0x7f)
                return byoai_error_set(err, BYOAI_EINVAL, "an api-key must not contain spaces or control characters");
        if (c->n_api_keys >= BYOAI_SERVER_MAX_KEYS)
            return byoai_error_set(err, BYOAI_EINVAL, "at most %d api-key values", BYOAI_SERVER_MAX_KEYS);
        snprintf(c->api_keys[c->n_api_keys++], sizeof c->api_keys[0], "%s", v);
        return 0;
    }
    if (!strcmp(key, "cors-origin")) { /* a comma-separated list; repeatable */
        char buf[4096];
        if (strlen(v) >= sizeof buf) return byoai_error_set(err, BYOAI_EINVAL, "cors-origin is too long");
        snprintf(buf, sizeof buf, "%s", v);
        char *save = NULL;
        for (char *o = strtok_r(buf, ", ", &save); o; o = strtok_r(NULL, ", ", &save)) {
            if (strcmp(o, "*") && strncmp(o, "http://", 7) && strncmp(o, "https://", 8))
                return byoai_error_set(err, BYOAI_EINVAL, "cors-origin '%s' must be '*' or start with http:// or "
                                       "https:// (e.g. http://localhost:3000)", o);
            size_t n = strlen(o);
            if (n > 1 && o[n - 1] == '/') o[n - 1] = '\0';
            if (c->n_cors_origins >= BYOAI_SERVER_MAX_ORIGINS)
                return byoai_error_set(err, BYOAI_EINVAL, "at most %d cors-origin values", BYOAI_SERVER_MAX_ORIGINS);
            if ((rc = copy_str(key, o, c->cors_origins[c->n_cors_origins], sizeof c->cors_origins[0], err))) return rc;
            c->n_cors_origins++;
        }
        return 0;
    }
    if (!strcmp(key, "model")) { /* NAME=PATH */
        const char *eq = strchr(v, '=');
        if (!eq || eq == v || !eq[1])
            return byoai_error_set(err, BYOAI_EINVAL, "model expects NAME=PATH, got '%s'", v);
        char name[129];
        if ((size_t)(eq - v) >= sizeof name) return byoai_error_set(err, BYOAI_EINVAL, "model name is too long");
        memcpy(name, v, (size_t)(eq - v));
        name[eq - v] = '\0';
        return byoai_server_config_add_model(c, eq + 1, name, err);
    }
    if (!strcmp(key, "chat-template")) { /* FAMILY (every model) or NAME=FAMILY */
        const char *eq = strchr(v, '=');
        const char *fam = eq ? eq + 1 : v;
        byoai_chat_family f;
        if ((rc = byoai_chat_family_parse(fam, &f, err))) return rc;
        bool any = false;
        for (uint32_t i = 0; i < c->n_models; i++) {
            if (eq && (strlen(c->models[i].name) != (size_t)(eq - v) || strncmp(c->models[i].name, v, (size_t)(eq - v))))
                continue;
            snprintf(c->models[i].chat_template, sizeof c->models[i].chat_template, "%s", fam);
            any = true;
        }
        if (!any)
            return byoai_error_set(err, BYOAI_EINVAL, "chat-template '%s': no such model (give models first, or use "
                                   "NAME=FAMILY after model NAME=PATH)", v);
        return 0;
    }
    if (!strcmp(key, "cluster")) return parse_bool(key, v, &c->cluster, err);
    if (!strcmp(key, "cluster-bind")) return copy_str(key, v, c->cluster_bind, sizeof c->cluster_bind, err);
    if (!strcmp(key, "cluster-name")) return copy_str(key, v, c->cluster_name, sizeof c->cluster_name, err);
    U("cluster-port", cluster_port, 0, 65535)
    U("cluster-discovery-port", cluster_discovery_port, 1, 65535)
    U("cluster-min-nodes", cluster_min_nodes, 1, 64)
    if (!strcmp(key, "cluster-discovery")) return parse_bool(key, v, &c->cluster_discovery, err);
    if (!strcmp(key, "cluster-peer")) {
        if (!strchr(v, ':')) return byoai_error_set(err, BYOAI_EINVAL, "cluster-peer expects HOST:PORT, got '%s'", v);
        if (c->n_cluster_peers >= 16) return byoai_error_set(err, BYOAI_EINVAL, "at most 16 cluster-peer values");
        if ((rc = copy_str(key, v, c->cluster_peers[c->n_cluster_peers], sizeof c->cluster_peers[0], err))) return rc;
        c->n_cluster_peers++; /* only a value that fit counts */
        return 0;
    }
    if (!strcmp(key, "cluster-memory")) return parse_size(key, v, 0, 1ull << 50, &c->cluster_memory, err);
    if (!strcmp(key, "cluster-model")) { /* NAME=PATH */
        const char *eq = strchr(v, '=');
        if (!eq || eq == v || !eq[1] || (size_t)(eq - v) >= sizeof c->cluster_models[0].name ||
            strlen(eq + 1) >= sizeof c->cluster_models[0].path)
            return byoai_error_set(err, BYOAI_EINVAL, "cluster-model expects NAME=PATH, got '%s'", v);
        if (c->n_cluster_models >= 8) return byoai_error_set(err, BYOAI_EINVAL, "at most 8 cluster-model values");
        byoai_server_model_spec *sp = &c->cluster_models[c->n_cluster_models];
        memset(sp, 0, sizeof *sp);
        memcpy(sp->name, v, (size_t)(eq - v));
        if ((rc = check_model_name(sp->name, err))) return rc;
        snprintf(sp->path, sizeof sp->path, "%s", eq + 1);
        c->n_cluster_models++;
        return 0;
    }
    if (!strcmp(key, "cluster-model-url")) return copy_str(key, v, c->cluster_model_url, sizeof c->cluster_model_url, err);
    if (!strcmp(key, "cluster-wire")) {
        if (strcmp(v, "f32") && strcmp(v, "f16")) return byoai_error_set(err, BYOAI_EINVAL, "cluster-wire is f32 or f16");
        return copy_str(key, v, c->cluster_wire, sizeof c->cluster_wire, err);
    }
    if (!strcmp(key, "cluster-heartbeat")) return parse_seconds(key, v, 0.05, 60, &c->cluster_heartbeat, err);
    if (!strcmp(key, "cluster-failure-timeout")) return parse_seconds(key, v, 0.1, 3600, &c->cluster_failure_timeout, err);
    if (!strcmp(key, "cluster-step-timeout")) return parse_seconds(key, v, 0.1, 3600, &c->cluster_step_timeout, err);
    if (!strcmp(key, "cluster-test-link-delay-ms"))
        return parse_seconds(key, v, 0, 10000, &c->cluster_test_link_delay_ms, err);
#undef U
    return byoai_error_set(err, BYOAI_EINVAL, "unknown setting '%s' (see `byoai serve --help`)", key);
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

int byoai_server_config_load_file(byoai_server_config *c, const char *path, byoai_error *err) {
    char *data;
    size_t len;
    int rc = byoai_fs_read_all(path, 1 << 20, &data, &len, err);
    if (rc) return rc;
    int lineno = 0;
    char *save = NULL;
    /* strtok_r skips empty lines, so count lines by hand */
    char *p = data;
    while (p && *p) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        lineno++;
        char *line = trim(p);
        p = nl ? nl + 1 : NULL;
        if (!line[0] || line[0] == '#') continue;
        char *eq = strchr(line, '=');
        if (!eq) {
            rc = byoai_error_set(err, BYOAI_EINVAL, "%s:%d: expected 'key = value'", path, lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(line), *val = trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && ((val[0] == '"' && val[vl - 1] == '"') || (val[0] == '\'' && val[vl - 1] == '\''))) {
            val[vl - 1] = '\0';
            val++;
        }
        if ((rc = byoai_server_config_set(c, key, val, err))) {
            byoai_error_prefix(err, "%s:%d", path, lineno);
            break;
        }
    }
    (void)save;
    free(data);
    return rc;
}

int byoai_server_config_load_env(byoai_server_config *c, byoai_error *err) {
    for (int i = 0; byoai_server_config_keys[i]; i++) {
        const char *k = byoai_server_config_keys[i];
        if (!strcmp(k, "home")) continue; /* BYOAI_HOME is the home everywhere; read where it is used */
        char env[64] = "BYOAI_";
        size_t n = strlen(env);
        for (const char *p = k; *p && n < sizeof env - 1; p++) env[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        env[n] = '\0';
        const char *v = getenv(env);
        if (!v || !v[0]) continue;
        int rc;
        if (!strcmp(k, "api-key") || !strcmp(k, "model") || !strcmp(k, "cluster-model") || !strcmp(k, "cluster-peer")) {
            /* several values: separated by commas (api keys) or semicolons (models) */
            char buf[8192];
            snprintf(buf, sizeof buf, "%s", v);
            char *save = NULL;
            const char *sep = !strcmp(k, "model") || !strcmp(k, "cluster-model") ? ";" : ",";
            for (char *t = strtok_r(buf, sep, &save); t; t = strtok_r(NULL, sep, &save))
                if ((rc = byoai_server_config_set(c, k, trim(t), err))) return byoai_error_prefix(err, "%s", env);
            continue;
        }
        if ((rc = byoai_server_config_set(c, k, v, err))) return byoai_error_prefix(err, "%s", env);
    }
    return 0;
}

void srv_cache_dir(const byoai_server_config *c, char *out, size_t cap) {
    if (c->cache_dir[0]) {
        snprintf(out, cap, "%s", c->cache_dir);
        return;
    }
    char db[1200];
    byoai_server_default_db(c->home[0] ? c->home : NULL, db, sizeof db);
    char *slash = strrchr(db, '/');
    if (slash) *slash = '\0';
    snprintf(out, cap, "%s/cache", slash ? db : ".");
}
