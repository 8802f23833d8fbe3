/* index.json: parse and validate (hostile input), look up, search, and
 * choose a variant for this machine. The parsed index points into the
 * jansson tree it keeps, plus a few strings it owns (resolved URLs). */
#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "registry_internal.h"

typedef struct owned {
    struct owned *next;
    char s[];
} owned;

typedef struct index_impl {
    json_t *root;
    owned *strings;
} index_impl;

/* ---- validation helpers -------------------------------------------------------- */
typedef struct ctx {
    byoai_error *err;
    char where[256];
    const char *base_url;
    bool base_is_file;
    index_impl *impl;
} ctx;

static int bad(ctx *c, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(ctx *c, const char *field, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return byoai_error_set(c->err, BYOAI_EFORMAT, "index.json: %s%s%s: %s", c->where, c->where[0] && field[0] ? "." : "",
                           field, msg);
}

static const char *own(ctx *c, const char *s) {
    size_t n = strlen(s);
    owned *o = malloc(sizeof *o + n + 1);
    if (!o) return NULL;
    memcpy(o->s, s, n + 1);
    o->next = c->impl->strings;
    c->impl->strings = o;
    return o->s;
}

static bool charset(const char *s, const char *extra, bool upper) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || (upper && ch >= 'A' && ch <= 'Z')) continue;
        if (ch < 0x80 && strchr(extra, ch)) continue;
        return false;
    }
    return true;
}

/* a string field; NULL when absent and optional; sets rc on error */
static const char *str_field(ctx *c, json_t *o, const char *key, bool required, size_t max, int *rc) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) *rc = bad(c, key, "is missing");
        return NULL;
    }
    if (!json_is_string(v)) {
        *rc = bad(c, key, "must be a string");
        return NULL;
    }
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (memchr(s, '\0', n)) {
        *rc = bad(c, key, "contains a NUL character");
        return NULL;
    }
    if (n > max) {
        *rc = bad(c, key, "is longer than %zu bytes", max);
        return NULL;
    }
    if (required && n == 0) {
        *rc = bad(c, key, "is empty");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 && s[i] != '\n' && s[i] != '\t') {
            *rc = bad(c, key, "contains a control character");
            return NULL;
        }
    return s;
}

static uint64_t int_field(ctx *c, json_t *o, const char *key, bool required, uint64_t min, uint64_t max, int *rc) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) *rc = bad(c, key, "is missing");
        return 0;
    }
    if (!json_is_integer(v)) {
        *rc = bad(c, key, "must be a whole number");
        return 0;
    }
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x < min || (uint64_t)x > max) {
        *rc = bad(c, key, "must be between %llu and %llu, got %lld", (unsigned long long)min,
                  (unsigned long long)max, (long long)x);
        return 0;
    }
    return (uint64_t)x;
}

static int check_name_field(ctx *c, const char *field, const char *s, bool allow_colon) {
    byoai_error e = {0};
    if (!allow_colon && strchr(s, ':')) return bad(c, field, "'%s' must not contain ':'", s);
    if (byoai_store_check_name(s, &e)) return bad(c, field, "%s", e.msg);
    return 0;
}

static bool url_chars_ok(const char *u) {
    for (const unsigned char *p = (const unsigned char *)u; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == '\\' || *p == '"' || *p == '<' || *p == '>') return false;
    return true;
}

/* validate and resolve a URL; returns the (possibly owned) absolute URL or NULL with rc set */
static const char *url_field(ctx *c, const char *field, const char *u, int *rc) {
    if (strlen(u) > 2048) {
        *rc = bad(c, field, "is longer than 2048 bytes");
        return NULL;
    }
    if (!url_chars_ok(u)) {
        *rc = bad(c, field, "contains spaces, control characters or quotes");
        return NULL;
    }
    if (!strncmp(u, "hf:", 3)) {
        char url[2400];
        if (!reg_hf_to_url(u, url, sizeof url, NULL, 0)) {
            *rc = bad(c, field, "'%s' is not hf:OWNER/REPO[@REVISION]/FILE", u);
            return NULL;
        }
        const char *o = own(c, url);
        if (!o) *rc = byoai_error_set(c->err, BYOAI_ENOMEM, "out of memory");
        return o;
    }
    const char *colon = strchr(u, ':');
    const char *slash = strchr(u, '/');
    if (colon && (!slash || colon < slash)) {
        bool http = !strncmp(u, "http://", 7), https = !strncmp(u, "https://", 8), file = !strncmp(u, "file://", 7);
        if (!http && !https && !file) {
            *rc = bad(c, field, "'%.40s' uses a scheme other than https, http or file", u);
            return NULL;
        }
        if (file && c->base_url && !c->base_is_file) {
            *rc = bad(c, field, "file:// URLs are only allowed in an index read from a file:// registry");
            return NULL;
        }
        if (http || https) {
            const char *host = u + (https ? 8 : 7);
            size_t hl = strcspn(host, "/?#");
            if (hl == 0) {
                *rc = bad(c, field, "has no host");
                return NULL;
            }
            if (memchr(host, '@', hl)) {
                *rc = bad(c, field, "must not contain credentials (user@host)");
                return NULL;
            }
        } else if (u[7] != '/') {
            *rc = bad(c, field, "file URLs must be file:///absolute/path");
            return NULL;
        }
        return u;
    }
    /* a relative reference: a plain path inside the registry */
    if (u[0] == '/' || !charset(u, "._-/~", true) || strstr(u, "..") || strstr(u, "//") || !*u) {
        *rc = bad(c, field, "'%.60s' is neither an http(s)/file URL nor a plain relative path", u);
        return NULL;
    }
    if (!c->base_url) return u;
    char out[4200];
    if (reg_url_join(c->base_url, u, out, sizeof out)) {
        *rc = bad(c, field, "cannot be resolved against %s", c->base_url);
        return NULL;
    }
    const char *o = own(c, out);
    if (!o) *rc = byoai_error_set(c->err, BYOAI_ENOMEM, "out of memory");
    return o;
}

static int date_field(ctx *c, json_t *o, const char *key, bool required, const char **out) {
    int rc = 0;
    *out = str_field(c, o, key, required, 40, &rc);
    if (rc || !*out) return rc;
    const char *d = *out;
    bool ok = strlen(d) >= 10 && isdigit((unsigned char)d[0]) && isdigit((unsigned char)d[1]) &&
              isdigit((unsigned char)d[2]) && isdigit((unsigned char)d[3]) && d[4] == '-' &&
              isdigit((unsigned char)d[5]) && isdigit((unsigned char)d[6]) && d[7] == '-' &&
              isdigit((unsigned char)d[8]) && isdigit((unsigned char)d[9]) &&
              (d[10] == '\0' || (d[10] == 'T' && charset(d + 11, ":.+-TZ", false)));
    if (!ok) return bad(c, key, "'%s' is not a date (YYYY-MM-DD or RFC 3339)", d);
    return 0;
}

static int tags_field(ctx *c, json_t *o, const char ***tags, size_t *n) {
    *tags = NULL;
    *n = 0;
    json_t *t = json_object_get(o, "tags");
    if (!t) return 0;
    if (!json_is_array(t) || json_array_size(t) > 32) return bad(c, "tags", "must be an array of at most 32 strings");
    if (!json_array_size(t)) return 0;
    *tags = calloc(json_array_size(t), sizeof **tags);
    if (!*tags) return byoai_error_set(c->err, BYOAI_ENOMEM, "out of memory");
    *n = json_array_size(t);
    for (size_t i = 0; i < *n; i++) {
        json_t *v = json_array_get(t, i);
        const char *s = json_string_value(v);
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 32 ||
            strlen(s) != json_string_length(v) || !charset(s, "._+-", false))
            return bad(c, "tags", "tag %zu must be 1-32 of a-z, 0-9, '.', '_', '+', '-'", i);
        (*tags)[i] = s;
    }
    return 0;
}

#define MAX_SIZE (1ull << 50)

static int parse_variant(ctx *c, json_t *o, byoai_index_variant *v) {
    int rc = 0;
    if (!json_is_object(o)) return bad(c, "", "must be an object");
    v->name = str_field(c, o, "name", true, 63, &rc);
    if (rc) return rc;
    char tmp[80];
    snprintf(tmp, sizeof tmp, "x:%s", v->name);
    if (byoai_store_check_name(tmp, NULL))
        return bad(c, "name", "'%s' must be 1-63 of a-z, 0-9, '.', '-', '_', starting with a letter or digit", v->name);
    v->quantization = str_field(c, o, "quantization", true, 31, &rc);
    if (rc) return rc;
    if (!charset(v->quantization, "_", true)) return bad(c, "quantization", "'%s' must be like Q4_K_M", v->quantization);
    v->size = int_field(c, o, "size", false, 1, MAX_SIZE, &rc);
    if (rc) return rc;
    v->approx_size = int_field(c, o, "approx_size", false, 1, MAX_SIZE, &rc);
    if (rc) return rc;
    if (v->size) v->approx_size = v->size;
    v->min_ram = int_field(c, o, "min_ram", false, 0, MAX_SIZE, &rc);
    if (rc) return rc;
    const char *url = str_field(c, o, "url", true, 2048, &rc);
    if (rc) return rc;
    if (!(v->url = url_field(c, "url", url, &rc))) return rc;
    v->sha256 = str_field(c, o, "sha256", false, 64, &rc);
    if (rc) return rc;
    if (v->sha256 && !byoai_store_check_sha256(v->sha256))
        return bad(c, "sha256", "must be 64 lowercase hex digits");
    if (!v->sha256 && !reg_is_hub_url(v->url))
        return bad(c, "sha256", "is missing; only files on the Hugging Face Hub (whose sha256 the Hub reports) may "
                                "leave it out");
    if (!v->approx_size) return bad(c, "size", "is missing (give size, or approx_size when verified by the Hub)");
    if (!v->size && v->sha256) return bad(c, "size", "is missing (required with sha256)");
    json_t *m = json_object_get(o, "mirrors");
    if (m) {
        if (!json_is_array(m) || json_array_size(m) > 16) return bad(c, "mirrors", "must be an array of at most 16 URLs");
        if (json_array_size(m)) {
            v->mirrors = calloc(json_array_size(m), sizeof *v->mirrors);
            if (!v->mirrors) return byoai_error_set(c->err, BYOAI_ENOMEM, "out of memory");
        }
        v->n_mirrors = json_array_size(m);
        for (size_t i = 0; i < v->n_mirrors; i++) {
            json_t *u = json_array_get(m, i);
            char f[32];
            snprintf(f, sizeof f, "mirrors[%zu]", i);
            if (!json_is_string(u) || strlen(json_string_value(u)) != json_string_length(u))
                return bad(c, f, "must be a string");
            if (!(v->mirrors[i] = url_field(c, f, json_string_value(u), &rc))) return rc;
        }
    }
    return 0;
}

static int parse_model(ctx *c, json_t *o, byoai_index_model *m) {
    int rc = 0;
    if (!json_is_object(o)) return bad(c, "", "must be an object");
    m->name = str_field(c, o, "name", true, BYOAI_NAME_MAX, &rc);
    if (rc || (rc = check_name_field(c, "name", m->name, false))) return rc;
    char w[256];
    snprintf(w, sizeof w, "%s (\"%s\")", c->where, m->name);
    snprintf(c->where, sizeof c->where, "%s", w);
    m->description = str_field(c, o, "description", true, 4096, &rc);
    if (rc) return rc;
    m->architecture = str_field(c, o, "architecture", true, 63, &rc);
    if (rc) return rc;
    if (!charset(m->architecture, "._-", false))
        return bad(c, "architecture", "'%s' must be lowercase letters, digits, '.', '_', '-'", m->architecture);
    m->license = str_field(c, o, "license", true, 127, &rc);
    if (rc) return rc;
    m->revision = str_field(c, o, "revision", true, 63, &rc);
    if (rc) return rc;
    if (!charset(m->revision, "._-", true)) return bad(c, "revision", "must be letters, digits, '.', '_', '-'");
    if ((rc = date_field(c, o, "updated", true, &m->updated))) return rc;
    m->publisher = str_field(c, o, "publisher", false, 63, &rc);
    if (rc) return rc;
    if (m->publisher && byoai_key_check_name(m->publisher, NULL)) return bad(c, "publisher", "is not a publisher name");
    m->homepage = str_field(c, o, "homepage", false, 2048, &rc);
    if (rc) return rc;
    if (m->homepage && ((strncmp(m->homepage, "https://", 8) && strncmp(m->homepage, "http://", 7)) ||
                        !url_chars_ok(m->homepage)))
        return bad(c, "homepage", "must be an http(s) URL");
    if ((rc = tags_field(c, o, &m->tags, &m->n_tags))) return rc;
    m->parameters = int_field(c, o, "parameters", true, 0, 100000000000000ull, &rc);
    if (rc) return rc;
    m->context_length = int_field(c, o, "context_length", false, 1, 1u << 30, &rc);
    if (rc) return rc;
    json_t *vs = json_object_get(o, "variants");
    if (!json_is_array(vs) || json_array_size(vs) == 0 || json_array_size(vs) > 64)
        return bad(c, "variants", "must be an array of 1 to 64 variants");
    m->variants = calloc(json_array_size(vs), sizeof *m->variants);
    if (!m->variants) return byoai_error_set(c->err, BYOAI_ENOMEM, "out of memory");
    m->n_variants = json_array_size(vs);
    size_t wl = strlen(c->where);
    for (size_t i = 0; i < m->n_variants; i++) {
        snprintf(c->where + wl, sizeof c->where - wl, ".variants[%zu]", i);
        if ((rc = parse_variant(c, json_array_get(vs, i), &m->variants[i]))) return rc;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(m->variants[j].name, m->variants[i].name))
                return bad(c, "name", "variant '%s' appears twice", m->variants[i].name);
    }
    c->where[wl] = '\0';
    return 0;
}

static int parse_bundle(ctx *c, json_t *o, byoai_index *ix, byoai_index_bundle *b) {
    int rc = 0;
    if (!json_is_object(o)) return bad(c, "", "must be an object");
    b->name = str_field(c, o, "name", true, BYOAI_NAME_MAX, &rc);
    if (rc || (rc = check_name_field(c, "name", b->name, false))) return rc;
    char w[256];
    snprintf(w, sizeof w, "%s (\"%s\")", c->where, b->name);
    snprintf(c->where, sizeof c->where, "%s", w);
    b->description = str_field(c, o, "description", true, 4096, &rc);
    if (rc) return rc;
    b->revision = str_field(c, o, "revision", true, 63, &rc);
    if (rc) return rc;
    if (!charset(b->revision, "._-", true)) return bad(c, "revision", "must be letters, digits, '.', '_', '-'");
    if ((rc = date_field(c, o, "updated", true, &b->updated))) return rc;
    b->system = str_field(c, o, "system", false, 4095, &rc);
    if (rc) return rc;
    if ((rc = tags_field(c, o, &b->tags, &b->n_tags))) return rc;
    json_t *p = json_object_get(o, "params");
    if (p) {
        if (!json_is_object(p)) return bad(c, "params", "must be an object");
        const char *k;
        json_t *v;
        json_object_foreach(p, k, v) {
            if (!json_is_number(v) && !json_is_string(v) && !json_is_boolean(v))
                return bad(c, "params", "'%s' must be a number, string or boolean", k);
        }
        b->params_json = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
        if (!b->params_json || strlen(b->params_json) >= 2048) return bad(c, "params", "is larger than 2047 bytes");
    } else {
        b->params_json = strdup("{}");
        if (!b->params_json) return byoai_error_set(c->err, BYOAI_ENOMEM, "out of memory");
    }
    json_t *ms = json_object_get(o, "members");
    if (!json_is_array(ms) || json_array_size(ms) == 0 || json_array_size(ms) > 16)
        return bad(c, "members", "must be an array of 1 to 16 members");
    b->members = calloc(json_array_size(ms), sizeof *b->members);
    if (!b->members) return byoai_error_set(c->err, BYOAI_ENOMEM, "out of memory");
    b->n_members = json_array_size(ms);
    size_t wl = strlen(c->where);
    for (size_t i = 0; i < b->n_members; i++) {
        snprintf(c->where + wl, sizeof c->where - wl, ".members[%zu]", i);
        json_t *mo = json_array_get(ms, i);
        if (!json_is_object(mo)) return bad(c, "", "must be an object");
        byoai_index_bundle_member *mb = &b->members[i];
        mb->role = str_field(c, mo, "role", true, 32, &rc);
        if (rc) return rc;
        if (!charset(mb->role, "_-", false)) return bad(c, "role", "must be 1-32 of a-z, 0-9, '_', '-'");
        mb->model = str_field(c, mo, "model", true, BYOAI_NAME_MAX, &rc);
        if (rc) return rc;
        mb->variant = str_field(c, mo, "variant", false, 63, &rc);
        if (rc) return rc;
        const byoai_index_model *m = byoai_index_find_model(ix, mb->model);
        if (!m) return bad(c, "model", "'%s' is not a model of this index", mb->model);
        if (mb->variant) {
            bool found = false;
            for (size_t k = 0; k < m->n_variants; k++) found |= !strcmp(m->variants[k].name, mb->variant);
            if (!found) return bad(c, "variant", "'%s' is not a variant of %s", mb->variant, mb->model);
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(b->members[j].role, mb->role)) return bad(c, "role", "'%s' appears twice", mb->role);
    }
    c->where[wl] = '\0';
    return 0;
}

void byoai_index_free(byoai_index *ix) {
    if (!ix) return;
    for (size_t i = 0; i < ix->n_models; i++) {
        byoai_index_model *m = &ix->models[i];
        free(m->tags);
        for (size_t j = 0; j < m->n_variants; j++) free(m->variants[j].mirrors);
        free(m->variants);
    }
    free(ix->models);
    for (size_t i = 0; i < ix->n_bundles; i++) {
        free(ix->bundles[i].tags);
        free(ix->bundles[i].members);
        free(ix->bundles[i].params_json);
    }
    free(ix->bundles);
    index_impl *impl = ix->impl;
    if (impl) {
        json_decref(impl->root);
        for (owned *o = impl->strings; o;) {
            owned *n = o->next;
            free(o);
            o = n;
        }
        free(impl);
    }
    free(ix);
}

static int cmp_model_name(const void *a, const void *b) {
    return strcmp(((const byoai_index_model *)a)->name, ((const byoai_index_model *)b)->name);
}

int byoai_index_parse(const char *json, size_t len, const byoai_index_parse_opts *opts, byoai_index **out,
                      byoai_error *err) {
    *out = NULL;
    if (len > BYOAI_INDEX_MAX_BYTES)
        return byoai_error_set(err, BYOAI_EFORMAT, "index.json: %zu bytes is more than the %u allowed", len,
                               BYOAI_INDEX_MAX_BYTES);
    byoai_index *ix = calloc(1, sizeof *ix);
    index_impl *impl = calloc(1, sizeof *impl);
    if (!ix || !impl) {
        free(ix);
        free(impl);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    ix->impl = impl;
    ctx c = {.err = err, .impl = impl};
    if (opts && opts->base_url) {
        c.base_url = opts->base_url;
        c.base_is_file = !strncmp(opts->base_url, "file://", 7);
    }
    json_error_t je;
    impl->root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    int rc = 0;
    if (!impl->root) {
        rc = byoai_error_set(err, BYOAI_EFORMAT, "index.json: not valid JSON: %s (line %d, column %d)", je.text,
                             je.line, je.column);
        goto fail;
    }
    json_t *root = impl->root;
    if (!json_is_object(root)) {
        rc = bad(&c, "", "the top level must be an object");
        goto fail;
    }
    uint64_t ver = int_field(&c, root, "schema_version", true, 1, 1000000, &rc);
    if (rc) goto fail;
    if (ver > BYOAI_INDEX_SCHEMA_VERSION) {
        rc = byoai_error_set(err, BYOAI_EUNSUPPORTED,
                             "index.json: schema_version %llu is newer than this byoai understands (%d); upgrade "
                             "byoai",
                             (unsigned long long)ver, BYOAI_INDEX_SCHEMA_VERSION);
        goto fail;
    }
    ix->schema_version = (int)ver;
    ix->name = str_field(&c, root, "name", false, 128, &rc);
    if (rc) goto fail;
    if ((rc = date_field(&c, root, "updated", false, &ix->updated))) goto fail;
    json_t *models = json_object_get(root, "models");
    if (!json_is_array(models) || json_array_size(models) > 10000) {
        rc = bad(&c, "models", "must be an array of at most 10000 models");
        goto fail;
    }
    ix->n_models = json_array_size(models);
    ix->models = calloc(ix->n_models ? ix->n_models : 1, sizeof *ix->models);
    if (!ix->models) {
        rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < ix->n_models; i++) {
        snprintf(c.where, sizeof c.where, "models[%zu]", i);
        if ((rc = parse_model(&c, json_array_get(models, i), &ix->models[i]))) {
            ix->n_models = i + 1;
            goto fail;
        }
    }
    c.where[0] = '\0';
    qsort(ix->models, ix->n_models, sizeof *ix->models, cmp_model_name);
    for (size_t i = 1; i < ix->n_models; i++)
        if (!strcmp(ix->models[i].name, ix->models[i - 1].name)) {
            rc = bad(&c, "models", "the name '%s' appears twice", ix->models[i].name);
            goto fail;
        }
    json_t *bundles = json_object_get(root, "bundles");
    if (bundles) {
        if (!json_is_array(bundles) || json_array_size(bundles) > 1000) {
            rc = bad(&c, "bundles", "must be an array of at most 1000 bundles");
            goto fail;
        }
        ix->n_bundles = json_array_size(bundles);
        ix->bundles = calloc(ix->n_bundles ? ix->n_bundles : 1, sizeof *ix->bundles);
        if (!ix->bundles) {
            rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < ix->n_bundles; i++) {
            snprintf(c.where, sizeof c.where, "bundles[%zu]", i);
            if ((rc = parse_bundle(&c, json_array_get(bundles, i), ix, &ix->bundles[i]))) {
                ix->n_bundles = i + 1;
                goto fail;
            }
            if (byoai_index_find_model(ix, ix->bundles[i].name)) {
                rc = bad(&c, "name", "'%s' is also a model's name", ix->bundles[i].name);
                ix->n_bundles = i + 1;
                goto fail;
            }
            for (size_t j = 0; j < i; j++)
                if (!strcmp(ix->bundles[j].name, ix->bundles[i].name)) {
                    rc = bad(&c, "name", "the bundle name '%s' appears twice", ix->bundles[i].name);
                    ix->n_bundles = i + 1;
                    goto fail;
                }
        }
    }
    *out = ix;
    return 0;
fail:
    byoai_index_free(ix);
    return rc;
}

const byoai_index_model *byoai_index_find_model(const byoai_index *ix, const char *name) {
    if (!ix || !name) return NULL;
    byoai_index_model key = {.name = name};
    return bsearch(&key, ix->models, ix->n_models, sizeof *ix->models, cmp_model_name);
}

const byoai_index_bundle *byoai_index_find_bundle(const byoai_index *ix, const char *name) {
    if (!ix || !name) return NULL;
    for (size_t i = 0; i < ix->n_bundles; i++)
        if (!strcmp(ix->bundles[i].name, name)) return &ix->bundles[i];
    return NULL;
}

/* ---- variants -------------------------------------------------------------- */
uint64_t byoai_index_variant_ram(const byoai_index_variant *v) {
    if (v->min_ram) return v->min_ram;
    /* weights are mapped whole, plus KV cache and buffers at a few thousand
     * tokens of context: about a fifth more, and a fixed overhead */
    return v->approx_size + v->approx_size / 5 + (64ull << 20);
}

int byoai_index_choose_variant(const byoai_index_model *m, const byoai_machine *mc, const char *want, size_t *idx,
                               char *why, byoai_error *err) {
    char dummy[256];
    if (!why) why = dummy;
    why[0] = '\0';
    char a[32], b[32];
    if (want && *want) {
        for (size_t i = 0; i < m->n_variants; i++)
            if (!strcasecmp(m->variants[i].name, want) || !strcasecmp(m->variants[i].quantization, want)) {
                *idx = i;
                snprintf(why, 256, "variant %s was asked for", m->variants[i].name);
                return 0;
            }
        char list[512] = "";
        for (size_t i = 0; i < m->n_variants; i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", m->variants[i].name);
        }
        return byoai_error_set(err, BYOAI_ENOTFOUND, "%s has no variant '%s'; it has: %s", m->name, want, list);
    }
    uint64_t ram = mc->ram_bytes;
    uint64_t comfy = ram / 10 * 6;
    /* with a known bandwidth, a variant is "fast" when it generates at least
     * the target speed (every weight is read once per token) */
    const double bw = mc->read_bw;
    long best = -1, best_float = -1, smallest = -1, fastest = -1;
    size_t n_runnable = 0;
    for (size_t i = 0; i < m->n_variants; i++) {
        const byoai_index_variant *v = &m->variants[i];
        bool is_float = false;
        if (!reg_quant_runnable(v->quantization, &is_float)) continue;
        n_runnable++;
        uint64_t need = byoai_index_variant_ram(v);
        if (need <= ram && (smallest < 0 || need < byoai_index_variant_ram(&m->variants[smallest]))) smallest = (long)i;
        if (need > comfy) continue;
        if (fastest < 0 || v->approx_size < m->variants[fastest].approx_size) fastest = (long)i;
        if (bw > 0 && v->approx_size && bw / (double)v->approx_size < BYOAI_TARGET_TOKENS_PER_S) continue;
        long *slot = is_float ? &best_float : &best;
        if (*slot < 0 || v->approx_size > m->variants[*slot].approx_size) *slot = (long)i;
    }
    char speed[96] = "";
    long pick = best >= 0 ? best : best_float;
    if (pick >= 0 && bw > 0 && m->variants[pick].approx_size)
        snprintf(speed, sizeof speed, ", generating about %.0f tokens/s at this machine's %.1f GB/s",
                 bw / (double)m->variants[pick].approx_size, bw / 1e9);
    if (best >= 0) {
        *idx = (size_t)best;
        snprintf(why, 256, "the largest quantized variant that fits comfortably in %s of RAM%s",
                 byoai_format_bytes(ram, a, sizeof a), speed);
        return 0;
    }
    if (best_float >= 0) {
        *idx = (size_t)best_float;
        snprintf(why, 256, "the largest variant that fits comfortably in %s of RAM%s", byoai_format_bytes(ram, a, sizeof a),
                 speed);
        return 0;
    }
    if (fastest >= 0) { /* each one that fits is slower than the target: the fastest of them */
        *idx = (size_t)fastest;
        snprintf(why, 256, "the fastest variant that fits in %s of RAM: about %.1f tokens/s at this machine's %.1f GB/s "
                 "(none reaches %.0f)", byoai_format_bytes(ram, a, sizeof a),
                 bw / (double)(m->variants[fastest].approx_size ? m->variants[fastest].approx_size : 1), bw / 1e9,
                 BYOAI_TARGET_TOKENS_PER_S);
        return 0;
    }
    if (smallest >= 0) {
        *idx = (size_t)smallest;
        snprintf(why, 256, "the smallest variant; it needs %s of the %s of RAM, so other programs may be squeezed",
                 byoai_format_bytes(byoai_index_variant_ram(&m->variants[smallest]), a, sizeof a), byoai_format_bytes(ram, b, sizeof b));
        return 0;
    }
    if (n_runnable == 0) {
        char list[512] = "";
        for (size_t i = 0; i < m->n_variants; i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", m->variants[i].quantization);
        }
        return byoai_error_set(err, BYOAI_EUNSUPPORTED,
                               "this build of byoai cannot run any variant of %s (quantizations: %s); name one "
                               "explicitly (%s:VARIANT) to install it anyway",
                               m->name, list, m->name);
    }
    uint64_t min_need = UINT64_MAX;
    for (size_t i = 0; i < m->n_variants; i++)
        if (byoai_index_variant_ram(&m->variants[i]) < min_need) min_need = byoai_index_variant_ram(&m->variants[i]);
    return byoai_error_set(err, BYOAI_ENOMEM,
                           "no variant of %s fits in this machine's %s of RAM (the smallest needs %s); name one "
                           "explicitly (%s:VARIANT) to install it anyway",
                           m->name, byoai_format_bytes(ram, a, sizeof a), byoai_format_bytes(min_need, b, sizeof b), m->name);
}

/* ---- search ----------------------------------------------------------------- */
static bool icontains(const char *hay, const char *needle) { return hay && strcasestr(hay, needle) != NULL; }

static int score_term(const char *term, const char *name, const char *desc, const char *const *tags, size_t n_tags,
                      const char *arch) {
    int best = 0;
    size_t tl = strlen(term);
    if (!strcasecmp(name, term)) best = 100;
    else if (!strncasecmp(name, term, tl)) best = 60;
    else if (icontains(name, term)) best = 40;
    for (size_t i = 0; i < n_tags; i++) {
        if (!strcasecmp(tags[i], term) && best < 30) best = 30;
        else if (icontains(tags[i], term) && best < 15) best = 15;
    }
    if (arch && !strcasecmp(arch, term) && best < 15) best = 15;
    if (icontains(desc, term) && best < 10) best = 10;
    return best;
}

static int cmp_hit(const void *a, const void *b) {
    const byoai_search_hit *x = a, *y = b;
    if (x->score != y->score) return y->score - x->score;
    const char *nx = x->model ? x->model->name : x->bundle->name;
    const char *ny = y->model ? y->model->name : y->bundle->name;
    return strcmp(nx, ny);
}

int byoai_index_search(const byoai_index *ix, const char *query, byoai_search_hit **hits, size_t *n) {
    *hits = NULL;
    *n = 0;
    char q[512];
    snprintf(q, sizeof q, "%s", query ? query : "");
    char *terms[32];
    size_t nt = 0;
    for (char *save, *t = strtok_r(q, " \t\n,", &save); t && nt < 32; t = strtok_r(NULL, " \t\n,", &save))
        terms[nt++] = t;
    size_t total = ix->n_models + ix->n_bundles;
    byoai_search_hit *h = calloc(total ? total : 1, sizeof *h);
    if (!h) return BYOAI_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < total; i++) {
        const byoai_index_model *m = i < ix->n_models ? &ix->models[i] : NULL;
        const byoai_index_bundle *b = m ? NULL : &ix->bundles[i - ix->n_models];
        int score = 0;
        bool all = true;
        for (size_t t = 0; t < nt && all; t++) {
            int s = m ? score_term(terms[t], m->name, m->description, m->tags, m->n_tags, m->architecture)
                      : score_term(terms[t], b->name, b->description, b->tags, b->n_tags, NULL);
            if (!s) all = false;
            score += s;
        }
        if (!all) continue;
        h[k].model = m;
        h[k].bundle = b;
        h[k].score = score;
        k++;
    }
    if (k) qsort(h, k, sizeof *h, cmp_hit);
    *hits = h;
    *n = k;
    return 0;
}
