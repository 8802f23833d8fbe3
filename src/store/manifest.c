/* Manifests: the small JSON file that makes a model or bundle installed.
 * They are read back from disk, and carried inside bundle archives from
 * other machines, so the parser treats them as hostile input. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define MANIFEST_VERSION 1

/* ---- parsing ---------------------------------------------------------------- */
/* a string field into dst[cap]; required: absent is an error; absent optional gives "" */
static int get_str(json_t *o, const char *key, char *dst, size_t cap, bool required, const char *where,
                   byoai_error *err) {
    json_t *v = json_object_get(o, key);
    dst[0] = '\0';
    if (!v || json_is_null(v)) {
        if (required) return byoai_error_set(err, BYOAI_EFORMAT, "manifest: %s%s is missing", where, key);
        return 0;
    }
    if (!json_is_string(v)) return byoai_error_set(err, BYOAI_EFORMAT, "manifest: %s%s must be a string", where, key);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n >= cap || memchr(s, '\0', n))
        return byoai_error_set(err, BYOAI_EFORMAT, "manifest: %s%s is longer than %zu bytes or holds a NUL", where,
                               key, cap - 1);
    memcpy(dst, s, n + 1);
    return 0;
}

static int get_u64(json_t *o, const char *key, uint64_t *out, uint64_t min, uint64_t max, bool required,
                   const char *where, byoai_error *err) {
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v) {
        if (required) return byoai_error_set(err, BYOAI_EFORMAT, "manifest: %s%s is missing", where, key);
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < min ||
        (uint64_t)json_integer_value(v) > max)
        return byoai_error_set(err, BYOAI_EFORMAT, "manifest: %s%s must be a whole number from %llu to %llu", where,
                               key, (unsigned long long)min, (unsigned long long)max);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_origin(json_t *o, byoai_origin *out, const char *where, byoai_error *err) {
    memset(out, 0, sizeof *out);
    if (!o) return 0;
    if (!json_is_object(o)) return byoai_error_set(err, BYOAI_EFORMAT, "manifest: %sorigin must be an object", where);
    char w[96];
    snprintf(w, sizeof w, "%sorigin.", where);
    int rc;
    if ((rc = get_str(o, "registry", out->registry, sizeof out->registry, false, w, err))) return rc;
    if ((rc = get_str(o, "url", out->url, sizeof out->url, false, w, err))) return rc;
    if ((rc = get_str(o, "revision", out->revision, sizeof out->revision, false, w, err))) return rc;
    if ((rc = get_str(o, "source", out->source, sizeof out->source, false, w, err))) return rc;
    return 0;
}

bool store_role_ok(const char *r) {
    size_t n = strlen(r);
    if (n == 0 || n > 32) return false;
    for (size_t i = 0; i < n; i++)
        if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '_' || r[i] == '-'))
            return false;
    return true;
}

static int parse_member(json_t *o, size_t i, byoai_store_member *m, byoai_error *err) {
    char w[48];
    snprintf(w, sizeof w, "files[%zu].", i);
    if (!json_is_object(o)) return byoai_error_set(err, BYOAI_EFORMAT, "manifest: files[%zu] must be an object", i);
    int rc;
    if ((rc = get_str(o, "role", m->role, sizeof m->role, true, w, err))) return rc;
    if (!store_role_ok(m->role))
        return byoai_error_set(err, BYOAI_EFORMAT, "manifest: %srole must be 1-32 of a-z, 0-9, '_', '-'", w);
    if ((rc = get_str(o, "model", m->model, sizeof m->model, true, w, err))) return rc;
    if (strchr(m->model, ':') || byoai_store_check_name(m->model, err))
        return byoai_error_set(err, BYOAI_EFORMAT, "manifest: %smodel is not a valid model name", w);
    if ((rc = get_str(o, "variant", m->variant, sizeof m->variant, false, w, err))) return rc;
    if (m->variant[0]) {
        char tmp[BYOAI_NAME_MAX + 70];
        snprintf(tmp, sizeof tmp, "x:%s", m->variant);
        if (byoai_store_check_name(tmp, NULL))
            return byoai_error_set(err, BYOAI_EFORMAT, "manifest: %svariant is not a valid variant name", w);
    }
    if ((rc = get_str(o, "sha256", m->sha256, sizeof m->sha256, true, w, err))) return rc;
    if (!byoai_store_check_sha256(m->sha256))
        return byoai_error_set(err, BYOAI_EFORMAT, "manifest: %ssha256 must be 64 lowercase hex digits", w);
    if ((rc = get_u64(o, "size", &m->size, 1, 1ull << 50, true, w, err))) return rc;
    if ((rc = get_str(o, "architecture", m->architecture, sizeof m->architecture, false, w, err))) return rc;
    return parse_origin(json_object_get(o, "origin"), &m->origin, w, err);
}

int byoai_manifest_parse(const char *text, size_t len, byoai_manifest *out, byoai_error *err) {
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return byoai_error_set(err, BYOAI_EFORMAT, "manifest: not valid JSON (line %d: %s)", je.line, je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = byoai_error_set(err, BYOAI_EFORMAT, "manifest: must be a JSON object");
        goto out;
    }
    uint64_t ver;
    if ((rc = get_u64(root, "byoai_manifest", &ver, 1, 1000000, true, "", err))) goto out;
    if (ver != MANIFEST_VERSION) {
        rc = byoai_error_set(err, BYOAI_EUNSUPPORTED,
                             "manifest: version %llu is newer than this byoai understands (%d); upgrade byoai",
                             (unsigned long long)ver, MANIFEST_VERSION);
        goto out;
    }
    char kind[16];
    if ((rc = get_str(root, "kind", kind, sizeof kind, true, "", err))) goto out;
    if (strcmp(kind, "model") && strcmp(kind, "bundle")) {
        rc = byoai_error_set(err, BYOAI_EFORMAT, "manifest: kind must be \"model\" or \"bundle\"");
        goto out;
    }
    out->is_bundle = !strcmp(kind, "bundle");
    if ((rc = get_str(root, "name", out->name, sizeof out->name, true, "", err))) goto out;
    if (strchr(out->name, ':') || byoai_store_check_name(out->name, NULL)) {
        rc = byoai_error_set(err, BYOAI_EFORMAT, "manifest: name is not a valid model name");
        goto out;
    }
    if ((rc = get_str(root, "variant", out->variant, sizeof out->variant, false, "", err))) goto out;
    if (out->variant[0]) {
        char tmp[BYOAI_NAME_MAX + 70];
        snprintf(tmp, sizeof tmp, "x:%s", out->variant);
        if (byoai_store_check_name(tmp, NULL)) {
            rc = byoai_error_set(err, BYOAI_EFORMAT, "manifest: variant is not a valid variant name");
            goto out;
        }
    }
    if ((rc = get_str(root, "description", out->description, sizeof out->description, false, "", err))) goto out;
    if ((rc = get_str(root, "license", out->license, sizeof out->license, false, "", err))) goto out;
    if ((rc = get_u64(root, "installed_at", &out->installed_at, 0, 1ull << 40, false, "", err))) goto out;
    if ((rc = parse_origin(json_object_get(root, "origin"), &out->origin, "", err))) goto out;
    if ((rc = get_str(root, "system", out->system_prompt, sizeof out->system_prompt, false, "", err))) goto out;
    json_t *params = json_object_get(root, "params");
    snprintf(out->params_json, sizeof out->params_json, "{}");
    if (params) {
        if (!json_is_object(params)) {
            rc = byoai_error_set(err, BYOAI_EFORMAT, "manifest: params must be an object");
            goto out;
        }
        char *d = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
        if (!d || strlen(d) >= sizeof out->params_json) {
            free(d);
            rc = byoai_error_set(err, BYOAI_EFORMAT, "manifest: params is larger than %zu bytes",
                                 sizeof out->params_json - 1);
            goto out;
        }
        snprintf(out->params_json, sizeof out->params_json, "%s", d);
        free(d);
    }
    json_t *files = json_object_get(root, "files");
    if (!json_is_array(files) || json_array_size(files) == 0 || json_array_size(files) > BYOAI_MANIFEST_MAX_MEMBERS) {
        rc = byoai_error_set(err, BYOAI_EFORMAT, "manifest: files must be an array of 1 to %d entries",
                             BYOAI_MANIFEST_MAX_MEMBERS);
        goto out;
    }
    if (!out->is_bundle && json_array_size(files) != 1) {
        rc = byoai_error_set(err, BYOAI_EFORMAT, "manifest: a model has exactly one file");
        goto out;
    }
    out->n_members = json_array_size(files);
    out->members = calloc(out->n_members, sizeof *out->members);
    if (!out->members) {
        rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < out->n_members; i++) {
        if ((rc = parse_member(json_array_get(files, i), i, &out->members[i], err))) goto out;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(out->members[j].role, out->members[i].role)) {
                rc = byoai_error_set(err, BYOAI_EFORMAT, "manifest: role '%s' appears twice", out->members[i].role);
                goto out;
            }
    }
out:
    json_decref(root);
    if (rc) byoai_manifest_free(out);
    return rc;
}

void byoai_manifest_free(byoai_manifest *m) {
    if (!m) return;
    free(m->members);
    m->members = NULL;
    m->n_members = 0;
}

const byoai_store_member *byoai_manifest_main(const byoai_manifest *m) {
    if (!m || m->n_members == 0) return NULL;
    for (size_t i = 0; i < m->n_members; i++)
        if (!strcmp(m->members[i].role, "chat")) return &m->members[i];
    return &m->members[0];
}

/* ---- formatting ----------------------------------------------------------- */
static json_t *origin_json(const byoai_origin *o) {
    return json_pack("{s:s,s:s,s:s,s:s}", "registry", o->registry, "url", o->url, "revision", o->revision, "source",
                     o->source);
}

char *byoai_manifest_format(const byoai_manifest *m) {
    json_t *files = json_array();
    for (size_t i = 0; i < m->n_members; i++) {
        const byoai_store_member *f = &m->members[i];
        json_array_append_new(files, json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:o}", "role", f->role, "model", f->model,
                                               "variant", f->variant, "sha256", f->sha256, "size",
                                               (json_int_t)f->size, "architecture", f->architecture, "origin",
                                               origin_json(&f->origin)));
    }
    json_t *o = json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:I,s:o}", "byoai_manifest", MANIFEST_VERSION, "kind",
                          m->is_bundle ? "bundle" : "model", "name", m->name, "variant", m->variant, "description",
                          m->description, "license", m->license, "installed_at", (json_int_t)m->installed_at,
                          "origin", origin_json(&m->origin));
    if (!o) {
        json_decref(files);
        return NULL;
    }
    if (m->is_bundle) {
        json_object_set_new(o, "system", json_string(m->system_prompt));
        json_t *p = json_loads(m->params_json[0] ? m->params_json : "{}", 0, NULL);
        json_object_set_new(o, "params", json_is_object(p) ? p : json_object());
        if (p && !json_is_object(p)) json_decref(p);
    }
    json_object_set_new(o, "files", files);
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}
