/* byoai show: everything about one model or bundle, installed or offered. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "byoai/model.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai show MODEL [--json] [--registry NAME|URL] [--offline|--refresh]\n"
"\n"
"Describe MODEL (a model or bundle name): what is installed (variant, files,\n"
"sha256, origin, for bundles their roles, system prompt and parameters) and\n"
"what the registry offers (description, license, architecture, parameters,\n"
"context length, every variant with its size, memory need and whether it\n"
"fits this machine).\n"
"\n"
"Options:\n"
"      --json               print one JSON object\n"
"  -r, --registry NAME|URL  registry to look in (default: the default one)\n"
"      --offline            cached index only\n"
"      --refresh            fetch the index even when the cached one is recent\n"
"  -h, --help               show this help\n"
"\n"
"Exit status: 0 success, 1 neither installed nor in the registry, 2 usage error.\n");
}

static json_t *member_json(const byoai_store_member *f) {
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s}", "role", f->role, "model", f->model, "variant",
                     f->variant, "sha256", f->sha256, "size", (json_int_t)f->size, "architecture", f->architecture,
                     "registry", f->origin.registry, "revision", f->origin.revision, "source", f->origin.source);
}

int cli_show(int argc, char **argv) {
    static const struct option opts[] = {{"json", no_argument, 0, 'j'}, {"registry", required_argument, 0, 'r'},
                                         {"offline", no_argument, 0, 'o'}, {"refresh", no_argument, 0, 'R'},
                                         {"help", no_argument, 0, 'h'},    {0, 0, 0, 0}};
    bool json = false, offline = false, refresh = false;
    const char *reg_name = NULL;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":r:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 'r': reg_name = optarg; break;
        case 'o': offline = true; break;
        case 'R': refresh = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("show", c, opts, argv);
        }
    }
    if (refresh && offline) return cli_usage_error("show", "--refresh needs the network; drop --offline");
    if (optind >= argc) return cli_usage_error("show", "missing MODEL");
    if (optind + 1 < argc) return cli_usage_error("show", "unexpected argument '%s'", argv[optind + 1]);
    const char *name = argv[optind];
    byoai_error err = {0};
    if (byoai_store_check_name(name, &err)) return cli_fail("show", &err);
    byoai_store *s = cli_store("show");
    if (!s) return CLI_ERROR;
    char base[BYOAI_NAME_MAX + 1];
    snprintf(base, sizeof base, "%.*s", (int)strcspn(name, ":"), name);
    byoai_manifest man;
    bool installed = byoai_store_read_manifest(s, base, &man, NULL) == 0;
    /* the registry's view */
    byoai_registry_conf reg;
    byoai_index *ix = NULL;
    byoai_index_source src = {0};
    byoai_error ierr = {0};
    if (installed && !reg_name && strcmp(man.origin.registry, "local") && strcmp(man.origin.registry, "hf"))
        reg_name = byoai_registry_get(s, man.origin.registry, &reg, NULL) == 0 ? man.origin.registry : NULL;
    if (byoai_registry_get(s, reg_name, &reg, &ierr) == 0) byoai_index_load(s, &reg, refresh, offline, &ix, &src, &ierr);
    if (ix) cli_note("show", src.note);
    const byoai_index_model *im = byoai_index_find_model(ix, base);
    const byoai_index_bundle *ib = im ? NULL : byoai_index_find_bundle(ix, base);
    int rc = CLI_OK;
    if (!installed && !im && !ib) {
        if (ierr.code) fprintf(stderr, "byoai show: warning: %s\n", ierr.msg);
        char age[48];
        byoai_index_age(&src, age, sizeof age);
        fprintf(stderr, "byoai show: error: '%s' is neither installed nor in registry %s", base,
                reg.name[0] ? reg.name : "default");
        if (ix && age[0])
            fprintf(stderr, " (in its index cached %s ago%s)", age,
                    offline || src.unreachable ? "" : "; `--refresh` fetches it again");
        fprintf(stderr, "; try `byoai search %s`\n", base);
        rc = CLI_ERROR;
        goto out;
    }
    byoai_machine mc;
    byoai_machine_get(&mc);
    char a[32], b[32];
    if (json) {
        json_t *o = json_pack("{s:s}", "name", base);
        if (installed) {
            json_t *files = json_array();
            for (size_t i = 0; i < man.n_members; i++) json_array_append_new(files, member_json(&man.members[i]));
            json_t *params = json_loads(man.params_json, 0, NULL);
            json_t *inst = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:o,s:s,s:o}", "kind",
                                          man.is_bundle ? "bundle" : "model", "variant", man.variant, "registry",
                                          man.origin.registry, "revision", man.origin.revision, "license", man.license,
                                          "installed_at", (json_int_t)man.installed_at, "files", files, "system",
                                          man.system_prompt, "params", params ? params : json_object());
            json_object_set_new(inst, "size", json_integer((json_int_t)byoai_manifest_bytes(&man)));
            json_object_set_new(o, "installed", inst);
        } else {
            json_object_set_new(o, "installed", json_null());
        }
        if (im) {
            json_t *vars = json_array();
            for (size_t i = 0; i < im->n_variants; i++) {
                const byoai_index_variant *v = &im->variants[i];
                json_t *vo = json_pack("{s:s,s:s,s:I,s:b,s:s,s:I,s:b}", "name", v->name, "quantization", v->quantization,
                                       "size", (json_int_t)v->approx_size, "size_exact", v->size != 0, "url", v->url,
                                       "min_ram", (json_int_t)byoai_index_variant_ram(v), "fits",
                                       byoai_index_variant_ram(v) <= mc.ram_bytes);
                json_object_set_new(vo, "sha256", v->sha256 ? json_string(v->sha256) : json_null());
                json_array_append_new(vars, vo);
            }
            json_t *tags = json_array();
            for (size_t i = 0; i < im->n_tags; i++) json_array_append_new(tags, json_string(im->tags[i]));
            size_t best;
            json_t *idx = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:o,s:o}", "kind", "model", "registry",
                                    reg.name, "description", im->description, "architecture", im->architecture,
                                    "license", im->license, "revision", im->revision, "updated", im->updated,
                                    "parameters", (json_int_t)im->parameters, "context_length",
                                    (json_int_t)im->context_length, "tags", tags, "variants", vars);
            if (im->publisher) json_object_set_new(idx, "publisher", json_string(im->publisher));
            json_object_set_new(idx, "architecture_supported", json_boolean(byoai_arch_supported(im->architecture)));
            if (byoai_index_choose_variant(im, &mc, NULL, &best, NULL, NULL) == 0)
                json_object_set_new(idx, "recommended_variant", json_string(im->variants[best].name));
            json_object_set_new(o, "index", idx);
        } else if (ib) {
            json_t *mem = json_array();
            for (size_t i = 0; i < ib->n_members; i++)
                json_array_append_new(mem, json_pack("{s:s,s:s,s:s?}", "role", ib->members[i].role, "model",
                                                     ib->members[i].model, "variant", ib->members[i].variant));
            json_object_set_new(o, "index", json_pack("{s:s,s:s,s:s,s:s,s:I,s:o}", "kind", "bundle", "registry",
                                                      reg.name, "description", ib->description, "revision",
                                                      ib->revision, "size",
                                                      (json_int_t)cli_index_bundle_size(ix, ib, &mc), "members", mem));
        } else {
            json_object_set_new(o, "index", json_null());
        }
        cli_print_json(o);
        goto out;
    }
    printf("%s\n", base);
    if (im) {
        printf("  %s\n", im->description);
        char pc[32] = "", cl[48] = "";
        if (im->parameters) snprintf(pc, sizeof pc, ", %s parameters", cli_count(im->parameters, a, sizeof a));
        if (im->context_length) snprintf(cl, sizeof cl, ", context %llu", (unsigned long long)im->context_length);
        printf("  architecture %s%s%s%s, license %s\n", im->architecture,
               byoai_arch_supported(im->architecture) ? "" : " (this build cannot run it yet)", pc, cl, im->license);
        printf("  registry %s, revision %s (%s)%s%s\n", reg.name, im->revision, im->updated,
               im->publisher ? ", published by " : "", im->publisher ? im->publisher : "");
        if (im->n_tags) {
            printf("  tags:");
            for (size_t i = 0; i < im->n_tags; i++) printf(" %s", im->tags[i]);
            printf("\n");
        }
        size_t best = (size_t)-1;
        byoai_index_choose_variant(im, &mc, NULL, &best, NULL, NULL);
        printf("  variants (this machine has %s of RAM):\n", cli_bytes(mc.ram_bytes, a, sizeof a));
        for (size_t i = 0; i < im->n_variants; i++) {
            const byoai_index_variant *v = &im->variants[i];
            printf("    %-12s %-8s %s%-10s needs %-10s %s%s%s\n", v->name, v->quantization, v->size ? "" : "~",
                   cli_bytes(v->approx_size, a, sizeof a), cli_bytes(byoai_index_variant_ram(v), b, sizeof b),
                   byoai_index_variant_ram(v) <= mc.ram_bytes ? "fits" : "too big",
                   i == best ? "  <- recommended" : "",
                   installed && !man.is_bundle && !strcmp(man.variant, v->name) ? "  [installed]" : "");
        }
    } else if (ib) {
        printf("  %s\n  bundle in registry %s, revision %s, %s here:\n", ib->description, reg.name, ib->revision,
               cli_bytes(cli_index_bundle_size(ix, ib, &mc), a, sizeof a));
        for (size_t i = 0; i < ib->n_members; i++)
            printf("    %-8s %s%s%s\n", ib->members[i].role, ib->members[i].model, ib->members[i].variant ? ":" : "",
                   ib->members[i].variant ? ib->members[i].variant : "");
    }
    if (installed) {
        printf("  installed: %s%s%s from %s%s%s, %s\n", man.is_bundle ? "bundle " : "", man.variant[0] ? "variant " : "",
               man.variant, man.origin.registry, man.origin.revision[0] ? ", revision " : "", man.origin.revision,
               cli_bytes(byoai_manifest_bytes(&man), b, sizeof b));
        if (!im && man.description[0]) printf("  %s\n", man.description);
        if (man.license[0] && !im) printf("  license %s\n", man.license);
        for (size_t i = 0; i < man.n_members; i++) {
            const byoai_store_member *f = &man.members[i];
            char path[4200];
            byoai_store_blob_path(s, f->sha256, path, sizeof path);
            printf("  %s%s%s%s%s: %s, sha256 %s\n    %s\n", man.is_bundle ? f->role : "file",
                   man.is_bundle ? " = " : "", man.is_bundle ? f->model : "", man.is_bundle && f->variant[0] ? ":" : "",
                   man.is_bundle ? f->variant : "", cli_bytes(f->size, a, sizeof a), f->sha256, path);
        }
        if (man.is_bundle) {
            if (man.system_prompt[0]) printf("  system prompt: %s\n", man.system_prompt);
            if (strcmp(man.params_json, "{}")) printf("  parameters: %s\n", man.params_json);
        }
    } else {
        printf("  not installed: `byoai install %s`\n", name);
    }
out:
    if (installed) byoai_manifest_free(&man);
    byoai_index_free(ix);
    byoai_store_close(s);
    return rc;
}
