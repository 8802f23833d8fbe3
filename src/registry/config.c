/* Registries by name: $BYOAI_HOME/config.json, the built-in curated index,
 * and the $BYOAI_REGISTRY override. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry_internal.h"

static int config_path(byoai_store *s, char *p, size_t cap) {
    return (size_t)snprintf(p, cap, "%s/config.json", byoai_store_home(s)) >= cap ? BYOAI_EINVAL : 0;
}

/* the config as a JSON object (an empty one when there is no file) */
static int config_load(byoai_store *s, json_t **out, byoai_error *err) {
    char p[4200], *text;
    size_t len;
    *out = NULL;
    if (config_path(s, p, sizeof p)) return byoai_error_set(err, BYOAI_EINVAL, "path too long");
    int rc = byoai_fs_read_all(p, 1 << 20, &text, &len, err);
    if (rc == BYOAI_ENOTFOUND) {
        *out = json_object();
        return *out ? 0 : byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    if (rc) return rc;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!json_is_object(root)) {
        json_decref(root);
        return byoai_error_set(err, BYOAI_EFORMAT, "%s is not a JSON object (%s); fix or remove it", p,
                               root ? "wrong type" : je.text);
    }
    *out = root;
    return 0;
}

static int config_save(byoai_store *s, json_t *root, byoai_error *err) {
    char p[4200];
    if (config_path(s, p, sizeof p)) return byoai_error_set(err, BYOAI_EINVAL, "path too long");
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    size_t n = strlen(text);
    char *t2 = realloc(text, n + 2);
    if (!t2) {
        free(text);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    t2[n] = '\n';
    t2[n + 1] = '\0';
    int rc = byoai_fs_write_atomic(p, t2, n + 1, err);
    free(t2);
    return rc;
}

static bool key_hex_ok(const char *k) {
    if (strlen(k) != 64) return false;
    for (int i = 0; i < 64; i++)
        if (!((k[i] >= '0' && k[i] <= '9') || (k[i] >= 'a' && k[i] <= 'f'))) return false;
    return true;
}

static int check_reg_name(const char *name, byoai_error *err) {
    if (byoai_key_check_name(name, NULL))
        return byoai_error_set(err, BYOAI_EINVAL, "invalid registry name '%s': use 1-63 of a-z, 0-9, '_', '-'", name);
    if (!strcmp(name, "local") || !strcmp(name, "hf"))
        return byoai_error_set(err, BYOAI_EINVAL, "'%s' is reserved (it marks imported and Hub models)", name);
    return 0;
}

int byoai_registry_list(byoai_store *s, byoai_registry_conf **out, size_t *n, byoai_error *err) {
    *out = NULL;
    *n = 0;
    const char *env = getenv("BYOAI_REGISTRY");
    if (env && *env) {
        byoai_registry_conf *r = calloc(1, sizeof *r);
        if (!r) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        snprintf(r->name, sizeof r->name, "default");
        if (env[0] == '/') snprintf(r->url, sizeof r->url, "file://%s", env);
        else snprintf(r->url, sizeof r->url, "%s", env);
        int rc = byoai_registry_check_url(r->url, err);
        const char *k = getenv("BYOAI_REGISTRY_KEY");
        if (!rc && k && *k) {
            if (!key_hex_ok(k)) rc = byoai_error_set(err, BYOAI_EINVAL, "BYOAI_REGISTRY_KEY must be 64 hex digits");
            else snprintf(r->key, sizeof r->key, "%s", k);
        }
        if (rc) {
            free(r);
            return byoai_error_prefix(err, "BYOAI_REGISTRY");
        }
        r->is_default = true;
        *out = r;
        *n = 1;
        return 0;
    }
    json_t *root;
    int rc = config_load(s, &root, err);
    if (rc) return rc;
    json_t *regs = json_object_get(root, "registries");
    size_t nr = json_is_array(regs) ? json_array_size(regs) : 0;
    byoai_registry_conf *list = calloc(nr + 1, sizeof *list);
    if (!list) {
        json_decref(root);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    size_t k = 0;
    bool have_default_name = false;
    for (size_t i = 0; i < nr; i++) {
        json_t *o = json_array_get(regs, i);
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *url = json_string_value(json_object_get(o, "url"));
        const char *key = json_string_value(json_object_get(o, "key"));
        if (!name || !url || check_reg_name(name, NULL) || byoai_registry_check_url(url, NULL) ||
            (key && *key && !key_hex_ok(key))) {
            byoai_log(BYOAI_LOG_WARN, "config.json: registries[%zu] is invalid; ignored", i);
            continue;
        }
        snprintf(list[k].name, sizeof list[k].name, "%s", name);
        snprintf(list[k].url, sizeof list[k].url, "%s", url);
        if (key) snprintf(list[k].key, sizeof list[k].key, "%s", key);
        have_default_name |= !strcmp(name, "default");
        k++;
    }
    if (!have_default_name) {
        snprintf(list[k].name, sizeof list[k].name, "default");
        snprintf(list[k].url, sizeof list[k].url, "builtin:");
        k++;
    }
    const char *def = json_string_value(json_object_get(root, "default_registry"));
    if (!def) def = "default";
    size_t di = 0;
    for (size_t i = 0; i < k; i++)
        if (!strcmp(list[i].name, def)) di = i;
    list[di].is_default = true;
    if (di) { /* default first */
        byoai_registry_conf t = list[di];
        memmove(list + 1, list, di * sizeof *list);
        list[0] = t;
    }
    json_decref(root);
    *out = list;
    *n = k;
    return 0;
}

int byoai_registry_get(byoai_store *s, const char *name_or_url, byoai_registry_conf *out, byoai_error *err) {
    memset(out, 0, sizeof *out);
    byoai_registry_conf *list;
    size_t n;
    int rc = byoai_registry_list(s, &list, &n, err);
    if (rc) return rc;
    rc = BYOAI_ENOTFOUND;
    for (size_t i = 0; i < n; i++) {
        if ((!name_or_url || !*name_or_url) ? list[i].is_default
                                             : !strcmp(list[i].name, name_or_url) || !strcmp(list[i].url, name_or_url)) {
            *out = list[i];
            rc = 0;
            break;
        }
    }
    if (rc && name_or_url && (strstr(name_or_url, "://") || name_or_url[0] == '/')) {
        if (name_or_url[0] == '/') snprintf(out->url, sizeof out->url, "file://%s", name_or_url);
        else snprintf(out->url, sizeof out->url, "%s", name_or_url);
        rc = byoai_registry_check_url(out->url, err);
        if (!rc) {
            /* name it by its host (or "file") for messages and manifests */
            const char *h = strstr(out->url, "://") + 3;
            size_t hl = strcspn(h, "/?#");
            if (!strncmp(out->url, "file:", 5)) snprintf(out->name, sizeof out->name, "file");
            else snprintf(out->name, sizeof out->name, "%.*s", (int)(hl < 63 ? hl : 63), h);
        }
    } else if (rc) {
        char names[512] = "";
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(names);
            snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "", list[i].name);
        }
        rc = byoai_error_set(err, BYOAI_ENOTFOUND,
                             "no registry named '%s' (configured: %s); add it with `byoai registry add NAME URL`",
                             name_or_url, names);
    }
    free(list);
    return rc;
}

int byoai_registry_config_add(byoai_store *s, const char *name, const char *url, const char *key_hex,
                              bool make_default, byoai_error *err) {
    int rc = check_reg_name(name, err);
    if (rc || (rc = byoai_registry_check_url(url, err))) return rc;
    if (key_hex && *key_hex && !key_hex_ok(key_hex))
        return byoai_error_set(err, BYOAI_EINVAL, "the key must be 64 hex digits (the registry's public key)");
    json_t *root;
    if ((rc = config_load(s, &root, err))) return rc;
    json_t *regs = json_object_get(root, "registries");
    if (!json_is_array(regs)) {
        regs = json_array();
        json_object_set_new(root, "registries", regs);
    }
    json_t *entry = json_pack("{s:s,s:s}", "name", name, "url", url);
    if (key_hex && *key_hex) json_object_set_new(entry, "key", json_string(key_hex));
    bool replaced = false;
    for (size_t i = 0; i < json_array_size(regs); i++) {
        const char *nm = json_string_value(json_object_get(json_array_get(regs, i), "name"));
        if (nm && !strcmp(nm, name)) {
            json_array_set(regs, i, entry);
            replaced = true;
        }
    }
    if (!replaced) json_array_append(regs, entry);
    json_decref(entry);
    if (make_default) json_object_set_new(root, "default_registry", json_string(name));
    rc = config_save(s, root, err);
    json_decref(root);
    return rc;
}

int byoai_registry_config_remove(byoai_store *s, const char *name, byoai_error *err) {
    json_t *root;
    int rc = config_load(s, &root, err);
    if (rc) return rc;
    json_t *regs = json_object_get(root, "registries");
    bool found = false;
    for (size_t i = 0; json_is_array(regs) && i < json_array_size(regs);) {
        const char *nm = json_string_value(json_object_get(json_array_get(regs, i), "name"));
        if (nm && !strcmp(nm, name)) {
            json_array_remove(regs, i);
            found = true;
        } else {
            i++;
        }
    }
    const char *def = json_string_value(json_object_get(root, "default_registry"));
    if (def && !strcmp(def, name)) json_object_del(root, "default_registry");
    if (!found) rc = byoai_error_set(err, BYOAI_ENOTFOUND, "no registry named '%s' in the config", name);
    else rc = config_save(s, root, err);
    json_decref(root);
    return rc;
}
