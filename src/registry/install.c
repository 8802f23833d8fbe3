/* Installs and updates: resolve a name against a registry's index (or the
 * Hub), choose a variant, plan what to download, download and verify, and
 * only then write the manifest that makes the model visible. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "byoai/gguf.h"
#include "byoai/model.h"
#include "registry_internal.h"

/* A file an install or update needs. */
typedef struct planned {
    byoai_store_member m;      /* sha256 may be "" for a Hub file not yet asked */
    const char *urls[17];
    size_t n_urls;
    char url0[2400];           /* owned copy of the first URL */
    bool present;
} planned;

/* indexes loaded during one operation, one per registry URL */
typedef struct loaded {
    byoai_registry_conf reg;
    byoai_index *ix;
    byoai_index_source src;
} loaded;

typedef struct op {
    byoai_store *s;
    const byoai_install_opts *o;
    bool offline, refresh;
    loaded regs[8];
    size_t n_regs;
    byoai_progress_fn progress;
    void *user;
} op;

static void op_free(op *p) {
    for (size_t i = 0; i < p->n_regs; i++) byoai_index_free(p->regs[i].ix);
}

static int op_index(op *p, const byoai_registry_conf *r, loaded **out, byoai_error *err) {
    for (size_t i = 0; i < p->n_regs; i++)
        if (!strcmp(p->regs[i].reg.url, r->url)) {
            *out = &p->regs[i];
            return 0;
        }
    if (p->n_regs == sizeof p->regs / sizeof p->regs[0]) {
        byoai_index_free(p->regs[0].ix);
        memmove(p->regs, p->regs + 1, sizeof p->regs - sizeof p->regs[0]);
        p->n_regs--;
    }
    loaded *l = &p->regs[p->n_regs];
    memset(l, 0, sizeof *l);
    l->reg = *r;
    int rc = byoai_index_load(p->s, r, p->refresh, p->offline, &l->ix, &l->src, err);
    if (rc) return rc;
    if (l->src.note[0]) byoai_log(BYOAI_LOG_WARN, "%s", l->src.note);
    p->n_regs++;
    *out = l;
    return 0;
}

static uint64_t partial_bytes(byoai_store *s, const char *sha) {
    char p[4200];
    struct stat st;
    if (!sha[0] || byoai_store_partial_path(s, sha, p, sizeof p) || stat(p, &st) != 0) return 0;
    return (uint64_t)st.st_size;
}

/* Fill a planned file from an index variant (asks the Hub for sha256 and
 * size when the index leaves them to it). */
static int plan_variant(op *p, const loaded *l, const byoai_index_model *m, const byoai_index_variant *v,
                        const char *role, planned *f, byoai_error *err) {
    memset(f, 0, sizeof *f);
    snprintf(f->m.role, sizeof f->m.role, "%s", role);
    snprintf(f->m.model, sizeof f->m.model, "%s", m->name);
    snprintf(f->m.variant, sizeof f->m.variant, "%s", v->name);
    snprintf(f->m.architecture, sizeof f->m.architecture, "%s", m->architecture);
    snprintf(f->m.origin.registry, sizeof f->m.origin.registry, "%s", l->reg.name);
    snprintf(f->m.origin.url, sizeof f->m.origin.url, "%s", l->reg.url);
    snprintf(f->m.origin.revision, sizeof f->m.origin.revision, "%s", m->revision);
    snprintf(f->m.origin.source, sizeof f->m.origin.source, "%s", v->url);
    snprintf(f->url0, sizeof f->url0, "%s", v->url);
    f->urls[0] = f->url0;
    f->n_urls = 1;
    for (size_t i = 0; i < v->n_mirrors && f->n_urls < 17; i++) f->urls[f->n_urls++] = v->mirrors[i];
    f->m.size = v->size;
    if (v->sha256) {
        snprintf(f->m.sha256, sizeof f->m.sha256, "%s", v->sha256);
    } else {
        /* the Hub knows the sha256 and size; a dry run makes do without */
        uint64_t size = 0;
        byoai_error herr = {0};
        int rc = p->offline ? byoai_error_set(&herr, BYOAI_ENET, "offline") : reg_hub_head(v->url, f->m.sha256, &size,
                                                                                           NULL, 0, &herr);
        if (rc && p->o->dry_run && (rc == BYOAI_ENET || rc == BYOAI_ETIMEOUT)) {
            f->m.sha256[0] = '\0';
            f->m.size = v->approx_size;
            return 0;
        }
        if (rc && p->offline)
            return byoai_error_set(err, BYOAI_ENET, "%s:%s is verified by the Hugging Face Hub, which offline mode "
                                   "cannot ask", m->name, v->name);
        if (rc) {
            *err = herr;
            return rc;
        }
        if (v->size && size && size != v->size)
            return byoai_error_set(err, BYOAI_ECHECKSUM, "the Hub says %s is %llu bytes, the index says %llu", v->url,
                                   (unsigned long long)size, (unsigned long long)v->size);
        f->m.size = size ? size : v->size;
        if (!f->m.size) f->m.size = v->approx_size;
    }
    f->present = byoai_store_has_blob(p->s, f->m.sha256, f->m.size);
    return 0;
}

static void plan_totals(op *p, planned *files, size_t n, byoai_install_plan *plan) {
    plan->n_files = n;
    plan->n_present = 0;
    plan->total_bytes = plan->download_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        plan->total_bytes += files[i].m.size;
        if (files[i].present) {
            plan->n_present++;
            continue;
        }
        /* the same blob twice in one bundle downloads once */
        bool dup = false;
        for (size_t j = 0; j < i; j++) dup |= !strcmp(files[j].m.sha256, files[i].m.sha256);
        if (dup) continue;
        uint64_t part = partial_bytes(p->s, files[i].m.sha256);
        plan->download_bytes += files[i].m.size > part ? files[i].m.size - part : 0;
    }
}

static int report(op *p, const char *phase, const char *what) {
    if (!p->progress) return 0;
    byoai_progress pr = {phase, what, 0, 0, 0};
    return p->progress(p->user, &pr);
}

/* Download what is missing, check each file is a GGUF, write the manifest. */
static int fetch_and_commit(op *p, planned *files, size_t n, byoai_manifest *man, const byoai_install_plan *plan,
                            byoai_error *err) {
    int rc = byoai_store_check_space(p->s, plan->download_bytes, man->name, err);
    if (rc) return rc;
    int lock;
    if ((rc = byoai_store_lock(p->s, false, &lock, err))) return rc;
    for (size_t i = 0; i < n && !rc; i++) {
        planned *f = &files[i];
        char what[BYOAI_NAME_MAX + 80];
        snprintf(what, sizeof what, "%s%s%s", f->m.model, f->m.variant[0] ? ":" : "", f->m.variant);
        if (f->n_urls == 0) { /* unchanged: must still be here */
            if (!byoai_store_has_blob(p->s, f->m.sha256, f->m.size))
                rc = byoai_error_set(err, BYOAI_ENOTFOUND, "the file of %s is missing from the store; reinstall "
                                     "it with `byoai install %s`", what, f->m.model);
            continue;
        }
        reg_download_opts o = {.max_rate = p->o->max_rate, .retries = p->o->retries, .what = what};
        uint64_t size = f->m.size;
        rc = reg_download_blob(p->s, f->urls, f->n_urls, f->m.sha256, size, &o, p->progress, p->user, f->m.sha256,
                               &f->m.size, err);
        if (rc) break;
        char path[4200];
        byoai_store_blob_path(p->s, f->m.sha256, path, sizeof path);
        byoai_gguf *g;
        if ((rc = byoai_gguf_open(path, &g, err))) {
            byoai_error_prefix(err, "%s is not a valid GGUF file; nothing was installed (tell the registry's "
                                    "maintainer)", what);
            break;
        }
        if (!f->m.architecture[0]) {
            byoai_model_info info;
            if (byoai_model_describe(g, 0, &info, NULL) == 0)
                snprintf(f->m.architecture, sizeof f->m.architecture, "%s", info.arch);
        }
        byoai_gguf_close(g);
    }
    if (!rc) {
        for (size_t i = 0; i < n; i++) man->members[i] = files[i].m;
        man->installed_at = (uint64_t)time(NULL);
        rc = byoai_store_write_manifest(p->s, man, err);
    }
    byoai_store_unlock(p->s, lock);
    if (!rc) report(p, "done", man->name);
    return rc;
}

/* A model of one file: fetch it, commit its manifest, describe the result. */
static int commit_one(op *p, planned *f, byoai_manifest *man, const byoai_install_plan *plan, byoai_store_model *out,
                      byoai_error *err) {
    man->origin = f->m.origin;
    byoai_store_member mem;
    man->members = &mem;
    man->n_members = 1;
    int rc = fetch_and_commit(p, f, 1, man, plan, err);
    if (!rc && out) byoai_store_model_from_manifest(p->s, man, out);
    return rc;
}

static int install_model(op *p, const loaded *l, const byoai_index_model *m, const char *want, byoai_store_model *out,
                         byoai_error *err) {
    byoai_machine mc;
    byoai_machine_get(&mc);
    if (!want || !*want) byoai_machine_measure(&mc); /* the choice weighs speed too */
    size_t vi;
    byoai_install_plan plan = {0};
    int rc = byoai_index_choose_variant(m, &mc, want, &vi, plan.why, err);
    if (rc) return rc;
    const byoai_index_variant *v = &m->variants[vi];
    planned f;
    if ((rc = plan_variant(p, l, m, v, "model", &f, err))) return rc;
    snprintf(plan.name, sizeof plan.name, "%s", m->name);
    snprintf(plan.variant, sizeof plan.variant, "%s", v->name);
    snprintf(plan.registry, sizeof plan.registry, "%s", l->reg.name);
    snprintf(plan.revision, sizeof plan.revision, "%s", m->revision);
    plan.ram_bytes = byoai_index_variant_ram(v);
    if (m->architecture && *m->architecture && !byoai_arch_supported(m->architecture))
        snprintf(plan.unsupported_arch, sizeof plan.unsupported_arch, "%s", m->architecture);
    plan_totals(p, &f, 1, &plan);
    if (p->o->plan) *p->o->plan = plan;
    if (report(p, "resolved", m->name)) return byoai_error_set(err, BYOAI_ECANCELED, "cancelled");
    if (p->o->dry_run) return 0;
    byoai_manifest man = {0};
    snprintf(man.name, sizeof man.name, "%s", m->name);
    snprintf(man.variant, sizeof man.variant, "%s", v->name);
    snprintf(man.description, sizeof man.description, "%s", m->description);
    snprintf(man.license, sizeof man.license, "%s", m->license);
    return commit_one(p, &f, &man, &plan, out, err);
}

/* the files of an index bundle; keep: an installed manifest whose member
 * variants are kept when the index leaves the choice open */
static int plan_bundle(op *p, const loaded *l, const byoai_index_bundle *b, const byoai_manifest *keep,
                       planned *files, byoai_error *err) {
    byoai_machine mc;
    byoai_machine_get(&mc);
    byoai_machine_measure(&mc);
    for (size_t i = 0; i < b->n_members; i++) {
        const byoai_index_bundle_member *bm = &b->members[i];
        const byoai_index_model *m = byoai_index_find_model(l->ix, bm->model);
        if (!m) return byoai_error_set(err, BYOAI_EFORMAT, "bundle %s names a missing model %s", b->name, bm->model);
        const char *want = bm->variant;
        if (!want && keep)
            for (size_t k = 0; k < keep->n_members; k++)
                if (!strcmp(keep->members[k].role, bm->role) && !strcmp(keep->members[k].model, bm->model))
                    want = keep->members[k].variant;
        size_t vi;
        int rc = byoai_index_choose_variant(m, &mc, want, &vi, NULL, err);
        if (rc && want && !bm->variant) rc = byoai_index_choose_variant(m, &mc, NULL, &vi, NULL, err);
        if (rc || (rc = plan_variant(p, l, m, &m->variants[vi], bm->role, &files[i], err))) return rc;
    }
    return 0;
}

static void bundle_manifest(const loaded *l, const byoai_index_bundle *b, byoai_manifest *man) {
    memset(man, 0, sizeof *man);
    man->is_bundle = true;
    snprintf(man->name, sizeof man->name, "%s", b->name);
    snprintf(man->description, sizeof man->description, "%s", b->description);
    snprintf(man->system_prompt, sizeof man->system_prompt, "%s", b->system ? b->system : "");
    snprintf(man->params_json, sizeof man->params_json, "%s", b->params_json);
    snprintf(man->origin.registry, sizeof man->origin.registry, "%s", l->reg.name);
    snprintf(man->origin.url, sizeof man->origin.url, "%s", l->reg.url);
    snprintf(man->origin.revision, sizeof man->origin.revision, "%s", b->revision);
}

static int install_bundle(op *p, const loaded *l, const byoai_index_bundle *b, byoai_store_model *out,
                          byoai_error *err) {
    planned files[16];
    byoai_store_member mem[16];
    int rc = plan_bundle(p, l, b, NULL, files, err);
    if (rc) return rc;
    byoai_install_plan plan = {0};
    snprintf(plan.name, sizeof plan.name, "%s", b->name);
    snprintf(plan.registry, sizeof plan.registry, "%s", l->reg.name);
    snprintf(plan.revision, sizeof plan.revision, "%s", b->revision);
    snprintf(plan.why, sizeof plan.why, "a bundle of %zu models", b->n_members);
    plan.is_bundle = true;
    plan_totals(p, files, b->n_members, &plan);
    for (size_t i = 0; i < b->n_members; i++) {
        const byoai_index_model *m = byoai_index_find_model(l->ix, files[i].m.model);
        for (size_t k = 0; m && k < m->n_variants; k++)
            if (!strcmp(m->variants[k].name, files[i].m.variant) && byoai_index_variant_ram(&m->variants[k]) > 0)
                plan.ram_bytes += byoai_index_variant_ram(&m->variants[k]);
    }
    if (p->o->plan) *p->o->plan = plan;
    if (report(p, "resolved", b->name)) return byoai_error_set(err, BYOAI_ECANCELED, "cancelled");
    if (p->o->dry_run) return 0;
    byoai_manifest man;
    bundle_manifest(l, b, &man);
    man.members = mem;
    man.n_members = b->n_members;
    rc = fetch_and_commit(p, files, b->n_members, &man, &plan, err);
    if (!rc && out) byoai_store_model_from_manifest(p->s, &man, out);
    return rc;
}

/* hf:OWNER/REPO[@REV]/FILE.gguf */
static int install_hf(op *p, const char *spec, byoai_store_model *out, byoai_error *err) {
    char url[2400], file[256];
    if (!reg_hf_to_url(spec, url, sizeof url, file, sizeof file))
        return byoai_error_set(err, BYOAI_EINVAL, "'%s' is not hf:OWNER/REPO[@REVISION]/FILE.gguf", spec);
    size_t fl = strlen(file);
    if (fl < 6 || strcasecmp(file + fl - 5, ".gguf"))
        return byoai_error_set(err, BYOAI_EINVAL, "'%s' does not name a .gguf file", spec);
    char name[BYOAI_NAME_MAX + 1];
    if (p->o->as_name) {
        snprintf(name, sizeof name, "%s", p->o->as_name);
    } else {
        size_t k = 0;
        for (size_t i = 0; i + 5 < fl && k < BYOAI_NAME_MAX; i++) {
            char c = file[i];
            if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')) c = '-';
            name[k++] = c;
        }
        name[k] = '\0';
    }
    int rc = byoai_store_check_name(name, err);
    if (rc || strchr(name, ':')) {
        if (!rc) byoai_error_set(err, BYOAI_EINVAL, "invalid name '%s'", name);
        return byoai_error_prefix(err, "choose a name with --name");
    }
    if (p->offline) return byoai_error_set(err, BYOAI_ENET, "installing from the Hub needs the network");
    planned f = {0};
    char commit[64] = "";
    if ((rc = reg_hub_head(url, f.m.sha256, &f.m.size, commit, sizeof commit, err))) return rc;
    snprintf(f.m.role, sizeof f.m.role, "model");
    snprintf(f.m.model, sizeof f.m.model, "%s", name);
    snprintf(f.m.origin.registry, sizeof f.m.origin.registry, "hf");
    snprintf(f.m.origin.url, sizeof f.m.origin.url, "%s", reg_hf_endpoint());
    snprintf(f.m.origin.revision, sizeof f.m.origin.revision, "%s", commit);
    snprintf(f.m.origin.source, sizeof f.m.origin.source, "%s", url);
    snprintf(f.url0, sizeof f.url0, "%s", url);
    f.urls[0] = f.url0;
    f.n_urls = 1;
    f.present = byoai_store_has_blob(p->s, f.m.sha256, f.m.size);
    byoai_install_plan plan = {0};
    snprintf(plan.name, sizeof plan.name, "%s", name);
    snprintf(plan.registry, sizeof plan.registry, "hf");
    snprintf(plan.revision, sizeof plan.revision, "%s", commit);
    snprintf(plan.why, sizeof plan.why, "a file on the Hugging Face Hub");
    plan_totals(p, &f, 1, &plan);
    plan.ram_bytes = f.m.size + f.m.size / 5 + (64ull << 20);
    if (p->o->plan) *p->o->plan = plan;
    if (report(p, "resolved", name)) return byoai_error_set(err, BYOAI_ECANCELED, "cancelled");
    if (p->o->dry_run) return 0;
    byoai_manifest man = {0};
    snprintf(man.name, sizeof man.name, "%s", name);
    return commit_one(p, &f, &man, &plan, out, err);
}

int byoai_install(byoai_store *s, const char *spec, const byoai_install_opts *opts, byoai_progress_fn progress,
                  void *user, byoai_store_model *out, byoai_error *err) {
    byoai_install_opts none = {0};
    op p = {.s = s, .o = opts ? opts : &none, .progress = progress, .user = user};
    p.offline = p.o->offline || reg_env_true("BYOAI_OFFLINE");
    p.refresh = p.o->refresh;
    if (!spec || !*spec) return byoai_error_set(err, BYOAI_EINVAL, "nothing to install");
    if (!strncmp(spec, "hf:", 3)) return install_hf(&p, spec, out, err);
    char base[BYOAI_NAME_MAX + 1], variant[64];
    const char *colon = strchr(spec, ':');
    int rc = byoai_store_check_name(spec, err);
    if (rc) return rc;
    size_t bl = colon ? (size_t)(colon - spec) : strlen(spec);
    snprintf(base, sizeof base, "%.*s", (int)bl, spec);
    snprintf(variant, sizeof variant, "%s", colon ? colon + 1 : "");
    if (report(&p, "resolving", spec)) return byoai_error_set(err, BYOAI_ECANCELED, "cancelled");
    byoai_registry_conf reg;
    if ((rc = byoai_registry_get(s, p.o->registry, &reg, err))) return rc;
    loaded *l;
    if ((rc = op_index(&p, &reg, &l, err))) return rc;
    const byoai_index_model *m = byoai_index_find_model(l->ix, base);
    const byoai_index_bundle *b = m ? NULL : byoai_index_find_bundle(l->ix, base);
    if (m) rc = install_model(&p, l, m, variant[0] ? variant : NULL, out, err);
    else if (b && variant[0]) rc = byoai_error_set(err, BYOAI_EINVAL, "%s is a bundle: it has no variants", base);
    else if (b) rc = install_bundle(&p, l, b, out, err);
    else {
        /* the cached index may predate the model: say how old it is */
        char age[48];
        if (byoai_index_age(&l->src, age, sizeof age)[0] && (p.offline || l->src.unreachable))
            rc = byoai_error_set(err, BYOAI_ENOTFOUND, "registry %s has no model or bundle named '%s' in its index "
                                 "cached %s ago (%s); try `byoai search %s`", reg.name, base, age,
                                 p.offline ? "offline" : "the registry is unreachable", base);
        else if (age[0])
            rc = byoai_error_set(err, BYOAI_ENOTFOUND, "registry %s has no model or bundle named '%s' in its index "
                                 "cached %s ago; `byoai install --refresh %s` fetches the index again, or try "
                                 "`byoai search %s`", reg.name, base, age, spec, base);
        else
            rc = byoai_error_set(err, BYOAI_ENOTFOUND, "registry %s has no model or bundle named '%s'; try `byoai search %s`",
                                 reg.name, base, base);
    }
    op_free(&p);
    return rc;
}

/* ---- updates ----------------------------------------------------------------- */
/* The registry an installed file came from: by name when still configured,
 * else by its recorded URL. */
static int origin_registry(op *p, const byoai_origin *o, byoai_registry_conf *r, byoai_error *err) {
    if (!strcmp(o->registry, "local") || !strcmp(o->registry, "hf") || !o->registry[0])
        return byoai_error_set(err, BYOAI_EUNSUPPORTED, "%s", !strcmp(o->registry, "hf") ? "hf" : "imported");
    if (byoai_registry_get(p->s, o->registry, r, NULL) == 0) return 0;
    if (o->url[0] && byoai_registry_get(p->s, o->url, r, NULL) == 0) return 0;
    return byoai_error_set(err, BYOAI_ENOTFOUND, "registry '%s' (%s) is no longer configured", o->registry, o->url);
}

/* An index the registry could not confirm (it is unreachable: the cached
 * copy was used) cannot tell whether something changed. */
static bool unreachable_note(const loaded *l, char *note, size_t ncap) {
    if (!l->src.unreachable) return false;
    char why[512];
    snprintf(why, sizeof why, "%s", l->src.note);
    char *cut = strstr(why, "; using its index");
    if (cut) *cut = '\0';
    snprintf(note, ncap, "cannot check: %s", why);
    return true;
}

/* what an update of one member would fetch */
static int plan_member(op *p, const byoai_store_member *cur, planned *f, char *note, size_t ncap, byoai_error *err) {
    memset(f, 0, sizeof *f);
    f->m = *cur;
    f->present = true;
    if (!strcmp(cur->origin.registry, "hf")) {
        if (p->offline) return byoai_error_set(err, BYOAI_ENET, "checking the Hub needs the network");
        char sha[65], commit[64] = "";
        uint64_t size = 0;
        int rc = reg_hub_head(cur->origin.source, sha, &size, commit, sizeof commit, err);
        if (rc) return rc;
        if (strcmp(sha, cur->sha256)) {
            memcpy(f->m.sha256, sha, 65);
            f->m.size = size;
            snprintf(f->m.origin.revision, sizeof f->m.origin.revision, "%s", commit);
            snprintf(f->url0, sizeof f->url0, "%s", cur->origin.source);
            f->urls[0] = f->url0;
            f->n_urls = 1;
            f->present = byoai_store_has_blob(p->s, sha, size);
        }
        return 0;
    }
    byoai_registry_conf r;
    int rc = origin_registry(p, &cur->origin, &r, err);
    if (rc == BYOAI_EUNSUPPORTED) {
        snprintf(note, ncap, "imported from a local file: nothing to update");
        return 0;
    }
    loaded *l;
    if (rc || (rc = op_index(p, &r, &l, err))) return rc;
    if (unreachable_note(l, note, ncap)) return 0;
    const byoai_index_model *m = byoai_index_find_model(l->ix, cur->model);
    if (!m) {
        snprintf(note, ncap, "%s is no longer in registry %s", cur->model, r.name);
        return 0;
    }
    const byoai_index_variant *v = NULL;
    for (size_t i = 0; i < m->n_variants; i++)
        if (!strcmp(m->variants[i].name, cur->variant)) v = &m->variants[i];
    if (!v) {
        snprintf(note, ncap, "variant %s of %s is no longer in registry %s; install another with `byoai install %s:VARIANT`",
                 cur->variant, cur->model, r.name, cur->model);
        return 0;
    }
    if ((rc = plan_variant(p, l, m, v, cur->role, f, err))) return rc;
    if (!strcmp(f->m.sha256, cur->sha256)) f->present = true;
    return 0;
}

typedef struct upd {
    byoai_manifest cur, next;
    planned files[BYOAI_MANIFEST_MAX_MEMBERS];
    byoai_store_member mem[BYOAI_MANIFEST_MAX_MEMBERS];
    byoai_install_plan plan;
} upd;

static int plan_update(op *p, const char *name, upd *u, byoai_update_item *it, byoai_error *err) {
    memset(it, 0, sizeof *it);
    int rc = byoai_store_read_manifest(p->s, name, &u->cur, err);
    if (rc) return rc;
    snprintf(it->name, sizeof it->name, "%s", u->cur.name);
    it->is_bundle = u->cur.is_bundle;
    snprintf(it->registry, sizeof it->registry, "%s", u->cur.origin.registry);
    snprintf(it->installed_revision, sizeof it->installed_revision, "%s", u->cur.origin.revision);
    snprintf(it->available_revision, sizeof it->available_revision, "%s", u->cur.origin.revision);
    u->next = u->cur;
    u->next.members = u->mem;
    bool done = false;
    if (u->cur.is_bundle && strcmp(u->cur.origin.registry, "local")) {
        /* a bundle from an index: follow the index's definition */
        byoai_registry_conf r;
        loaded *l;
        if ((rc = origin_registry(p, &u->cur.origin, &r, err)) || (rc = op_index(p, &r, &l, err))) return rc;
        if (unreachable_note(l, it->note, sizeof it->note)) {
            it->unchecked = true;
            return 0;
        }
        const byoai_index_bundle *b = byoai_index_find_bundle(l->ix, u->cur.name);
        if (!b) {
            snprintf(it->note, sizeof it->note, "no longer in registry %s", r.name);
            return 0;
        }
        if ((rc = plan_bundle(p, l, b, &u->cur, u->files, err))) return rc;
        bundle_manifest(l, b, &u->next);
        u->next.members = u->mem;
        u->next.n_members = b->n_members;
        snprintf(it->available_revision, sizeof it->available_revision, "%s", b->revision);
        for (size_t i = 0; i < b->n_members; i++) {
            bool same = false;
            for (size_t k = 0; k < u->cur.n_members; k++)
                same |= !strcmp(u->cur.members[k].sha256, u->files[i].m.sha256) &&
                        !strcmp(u->cur.members[k].role, u->files[i].m.role);
            if (!same) it->changed_files++;
        }
        it->outdated = it->changed_files || strcmp(b->revision, u->cur.origin.revision) ||
                       b->n_members != u->cur.n_members;
        done = true;
    }
    if (!done) {
        for (size_t i = 0; i < u->cur.n_members; i++) {
            char note[256] = "";
            if ((rc = plan_member(p, &u->cur.members[i], &u->files[i], note, sizeof note, err))) return rc;
            if (note[0] && !it->note[0]) snprintf(it->note, sizeof it->note, "%s", note);
            if (!strncmp(note, "cannot check", 12)) it->unchecked = true;
            if (strcmp(u->files[i].m.sha256, u->cur.members[i].sha256)) it->changed_files++;
            if (strcmp(u->files[i].m.origin.revision, u->cur.members[i].origin.revision)) it->outdated = true;
        }
        u->next.n_members = u->cur.n_members;
        if (!u->cur.is_bundle) {
            snprintf(it->available_revision, sizeof it->available_revision, "%s", u->files[0].m.origin.revision);
            u->next.origin = u->files[0].m.origin;
        }
        if (it->changed_files) it->outdated = true;
    }
    plan_totals(p, u->files, u->next.n_members, &u->plan);
    it->download_bytes = u->plan.download_bytes;
    snprintf(u->plan.name, sizeof u->plan.name, "%s", u->cur.name);
    return 0;
}

static int names_or_all(byoai_store *s, const char *const *names, size_t n, char (**out)[BYOAI_NAME_MAX + 1],
                        size_t *n_out, byoai_error *err) {
    if (names && n) {
        *out = calloc(n, sizeof **out);
        if (!*out) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) snprintf((*out)[i], sizeof (*out)[i], "%s", names[i]);
        *n_out = n;
        return 0;
    }
    byoai_store_model *list;
    size_t k;
    int rc = byoai_store_list(s, &list, &k, err);
    if (rc) return rc;
    *out = calloc(k ? k : 1, sizeof **out);
    if (!*out) {
        free(list);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < k; i++) snprintf((*out)[i], sizeof (*out)[i], "%s", list[i].name);
    free(list);
    *n_out = k;
    return 0;
}

int byoai_update_check(byoai_store *s, const char *const *names, size_t n_names, const byoai_install_opts *opts,
                       byoai_update_item **items, size_t *n_items, byoai_error *err) {
    *items = NULL;
    *n_items = 0;
    byoai_install_opts none = {0};
    op p = {.s = s, .o = opts ? opts : &none, .refresh = true};
    p.offline = p.o->offline || reg_env_true("BYOAI_OFFLINE");
    char(*list)[BYOAI_NAME_MAX + 1] = NULL;
    size_t n = 0;
    int rc = names_or_all(s, names, n_names, &list, &n, err);
    if (rc) return rc;
    byoai_update_item *out = calloc(n ? n : 1, sizeof *out);
    upd *u = malloc(sizeof *u);
    if (!out || !u) {
        free(out);
        free(u);
        free(list);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n && !rc; i++) {
        memset(u, 0, sizeof *u);
        byoai_error e = {0};
        int r = plan_update(&p, list[i], u, &out[i], &e);
        if (r == BYOAI_ENOTFOUND && names && n_names && !u->cur.name[0]) {
            rc = r;
            *err = e;
        } else if (r) {
            snprintf(out[i].name, sizeof out[i].name, "%s", list[i]);
            snprintf(out[i].note, sizeof out[i].note, "cannot check: %s", e.msg);
            out[i].unchecked = true;
        }
        byoai_manifest_free(&u->cur);
    }
    free(u);
    free(list);
    op_free(&p);
    if (rc) {
        free(out);
        return rc;
    }
    *items = out;
    *n_items = n;
    return 0;
}

int byoai_update(byoai_store *s, const char *name, const byoai_install_opts *opts, byoai_progress_fn progress,
                 void *user, byoai_update_item *item, byoai_error *err) {
    byoai_install_opts none = {0};
    op p = {.s = s, .o = opts ? opts : &none, .refresh = true, .progress = progress, .user = user};
    p.offline = p.o->offline || reg_env_true("BYOAI_OFFLINE");
    upd *u = calloc(1, sizeof *u);
    if (!u) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    byoai_update_item it;
    int rc = plan_update(&p, name, u, &it, err);
    if (!rc && it.outdated && !p.o->dry_run) {
        if (p.o->plan) *p.o->plan = u->plan;
        if (report(&p, "resolved", name)) rc = byoai_error_set(err, BYOAI_ECANCELED, "cancelled");
        else rc = fetch_and_commit(&p, u->files, u->next.n_members, &u->next, &u->plan, err);
    }
    if (item) *item = it;
    byoai_manifest_free(&u->cur);
    free(u);
    op_free(&p);
    return rc;
}
