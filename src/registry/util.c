/* Small helpers of the registry module: environment, machine facts, URLs,
 * quantization names. */
#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sysinfo.h>

#include "byoai/gguf.h"
#include "byoai/hw.h"
#include "byoai/quant.h"
#include "registry_internal.h"

bool reg_env_true(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") && strcasecmp(v, "false") && strcasecmp(v, "no");
}

uint64_t reg_env_u64(const char *name, uint64_t def) {
    const char *v = getenv(name);
    uint64_t x;
    if (v && *v && byoai_parse_bytes(v, &x) == 0) return x;
    return def;
}

void reg_stall_start(reg_stall *s) {
    s->limit_s = (double)reg_env_u64("BYOAI_STALL_SECONDS", 30);
    if (s->limit_s < 1) s->limit_s = 1;
    s->last_change = byoai_time_now();
    s->last_bytes = 0;
    s->stalled = false;
}

bool reg_stall_check(reg_stall *s, uint64_t bytes_moved) {
    double now = byoai_time_now();
    if (bytes_moved != s->last_bytes) {
        s->last_bytes = bytes_moved;
        s->last_change = now;
        return false;
    }
    if (now - s->last_change >= s->limit_s) s->stalled = true;
    return s->stalled;
}

bool reg_header_location(const char *line, size_t len, char *dst, size_t cap) {
    if (len < 9 || strncasecmp(line, "location:", 9)) return false;
    const char *v = line + 9;
    size_t n = len - 9;
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ')) n--;
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
    return true;
}

bool reg_redirect_refused(const char *location) {
    /* a scheme is letters, digits, + - . before the first ':' (RFC 3986);
     * a relative reference has none */
    size_t i = 0;
    while (isalnum((unsigned char)location[i]) || location[i] == '+' || location[i] == '-' || location[i] == '.') i++;
    if (i == 0 || location[i] != ':') return false;
    return !((i == 4 && !strncasecmp(location, "http", 4)) || (i == 5 && !strncasecmp(location, "https", 5)));
}

void byoai_machine_get(byoai_machine *m) {
    memset(m, 0, sizeof *m);
    struct sysinfo si;
    if (sysinfo(&si) == 0) m->ram_bytes = (uint64_t)si.totalram * si.mem_unit;
    m->ram_bytes = reg_env_u64("BYOAI_RAM_BYTES", m->ram_bytes);
    m->cpus = byoai_cpu_count();
    const byoai_kernels *k = byoai_kernels_best();
    switch (k ? k->level : BYOAI_SIMD_SCALAR) {
    case BYOAI_SIMD_AVX512: m->simd = "avx512"; break;
    case BYOAI_SIMD_AVX2: m->simd = "avx2"; break;
    case BYOAI_SIMD_NEON: m->simd = "neon"; break;
    default: m->simd = "scalar";
    }
}

void byoai_machine_measure(byoai_machine *m) {
    uint64_t env = reg_env_u64("BYOAI_READ_BW", 0);
    if (env) {
        m->read_bw = (double)env;
        return;
    }
    m->read_bw = byoai_hw_read_bandwidth(m->cpus > 0 ? m->cpus : 1, 64u << 20, 2);
}

bool reg_quant_runnable(const char *quant, bool *is_float) {
    char q[32];
    snprintf(q, sizeof q, "%s", quant);
    int t = byoai_type_from_name(q);
    if (t < 0) {
        /* Q4_K_M, Q5_K_S, Q3_K_L, Q2_K_XL: the mix suffix names how layers are mixed */
        char *u = strrchr(q, '_');
        if (u && (!strcasecmp(u, "_M") || !strcasecmp(u, "_S") || !strcasecmp(u, "_L") || !strcasecmp(u, "_XL"))) {
            *u = '\0';
            t = byoai_type_from_name(q);
        }
    }
    if (is_float) *is_float = t == BYOAI_TYPE_F32 || t == BYOAI_TYPE_F16 || t == BYOAI_TYPE_BF16;
    return t >= 0 && byoai_type_can_compute((byoai_type)t);
}

/* ---- URLs ---------------------------------------------------------------------- */
const char *reg_hf_endpoint(void) {
    static __thread char buf[512];
    const char *e = getenv("BYOAI_HF_ENDPOINT");
    if (!e || !*e) e = getenv("HF_ENDPOINT");
    if (!e || !*e) e = "https://huggingface.co";
    snprintf(buf, sizeof buf, "%s", e);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '/') buf[--n] = '\0';
    return buf;
}

bool reg_is_hub_url(const char *url) {
    const char *ends[2] = {reg_hf_endpoint(), "https://huggingface.co"};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(ends[i]);
        if (!strncmp(url, ends[i], n) && url[n] == '/') {
            /* OWNER/REPO/resolve/... */
            const char *p = url + n + 1;
            const char *s1 = strchr(p, '/');
            if (!s1 || s1 == p) continue;
            const char *s2 = strchr(s1 + 1, '/');
            if (!s2 || s2 == s1 + 1) continue;
            if (!strncmp(s2, "/resolve/", 9)) return true;
        }
    }
    return false;
}

static bool hf_part_ok(const char *s, size_t n) {
    if (n == 0 || n > 200) return false;
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == '.' && s[i + 1] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == '/')) return false;
    }
    return s[0] != '/' && s[0] != '.';
}

bool reg_hf_to_url(const char *spec, char *url, size_t cap, char *file_name, size_t fcap) {
    if (strncmp(spec, "hf:", 3)) return false;
    const char *p = spec + 3;
    const char *s1 = strchr(p, '/');
    if (!s1) return false;
    const char *s2 = strchr(s1 + 1, '/');
    if (!s2) return false;
    const char *path = s2 + 1;
    /* OWNER/REPO[@REV] */
    const char *at = memchr(s1 + 1, '@', (size_t)(s2 - s1 - 1));
    size_t repo_end = at ? (size_t)(at - p) : (size_t)(s2 - p);
    char rev[128] = "main";
    if (at) {
        size_t rl = (size_t)(s2 - at - 1);
        if (rl == 0 || rl >= sizeof rev || !hf_part_ok(at + 1, rl) || memchr(at + 1, '/', rl)) return false;
        memcpy(rev, at + 1, rl);
        rev[rl] = '\0';
    }
    if (!hf_part_ok(p, (size_t)(s1 - p)) || !hf_part_ok(s1 + 1, repo_end - (size_t)(s1 + 1 - p)) ||
        !hf_part_ok(path, strlen(path)) || strstr(path, "//"))
        return false;
    if ((size_t)snprintf(url, cap, "%s/%.*s/resolve/%s/%s", reg_hf_endpoint(), (int)repo_end, p, rev, path) >= cap)
        return false;
    if (file_name) {
        const char *b = strrchr(path, '/');
        snprintf(file_name, fcap, "%s", b ? b + 1 : path);
    }
    return true;
}

int reg_index_url(const char *base, char *out, size_t cap, byoai_error *err) {
    size_t n = strlen(base);
    int w;
    if (n >= 5 && !strcmp(base + n - 5, ".json")) w = snprintf(out, cap, "%s", base);
    else w = snprintf(out, cap, "%s%sindex.json", base, n && base[n - 1] == '/' ? "" : "/");
    if (w < 0 || (size_t)w >= cap) return byoai_error_set(err, BYOAI_EINVAL, "registry URL too long");
    return 0;
}

int reg_url_join(const char *base, const char *rel, char *out, size_t cap) {
    const char *q = strpbrk(base, "?#");
    size_t bl = q ? (size_t)(q - base) : strlen(base);
    /* the directory of base: up to its last '/' after the scheme */
    const char *start = strstr(base, "://");
    start = start ? start + 3 : base;
    const char *last = NULL;
    for (const char *p = start; p < base + bl; p++)
        if (*p == '/') last = p;
    size_t dl = last ? (size_t)(last - base + 1) : bl;
    int w = last ? snprintf(out, cap, "%.*s%s", (int)dl, base, rel) : snprintf(out, cap, "%.*s/%s", (int)dl, base, rel);
    return (w < 0 || (size_t)w >= cap) ? BYOAI_EINVAL : 0;
}

int byoai_registry_check_url(const char *url, byoai_error *err) {
    if (!url || !*url) return byoai_error_set(err, BYOAI_EINVAL, "empty registry URL");
    if (strlen(url) > 2000) return byoai_error_set(err, BYOAI_EINVAL, "registry URL longer than 2000 bytes");
    if (!strcmp(url, "builtin:")) return 0;
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == '\\' || *p == '"')
            return byoai_error_set(err, BYOAI_EINVAL, "registry URL '%s' contains spaces or control characters", url);
    bool http = !strncmp(url, "http://", 7), https = !strncmp(url, "https://", 8), file = !strncmp(url, "file:///", 8);
    if (!http && !https && !file)
        return byoai_error_set(err, BYOAI_EINVAL,
                               "registry URL '%s' must start with https://, http:// or file:/// (absolute path)", url);
    if (http || https) {
        const char *h = url + (https ? 8 : 7);
        size_t hl = strcspn(h, "/?#");
        if (hl == 0) return byoai_error_set(err, BYOAI_EINVAL, "registry URL '%s' has no host", url);
        if (memchr(h, '@', hl))
            return byoai_error_set(err, BYOAI_EINVAL, "registry URL '%s' must not contain credentials", url);
    }
    if (strstr(url, "/../") || (strlen(url) >= 3 && !strcmp(url + strlen(url) - 3, "/..")))
        return byoai_error_set(err, BYOAI_EINVAL, "registry URL '%s' must not contain '..'", url);
    return 0;
}

int reg_cache_dir(byoai_store *s, const char *url, char *out, size_t cap) {
    char h[65];
    byoai_sha256_buf(url, strlen(url), h);
    h[16] = '\0';
    if ((size_t)snprintf(out, cap, "%s/cache/registries/%s", byoai_store_home(s), h) >= cap) return BYOAI_EINVAL;
    return 0;
}

void reg_auth_header(const char *url, struct curl_slist **hdrs) {
    const char *tok = getenv("BYOAI_HF_TOKEN");
    if (!tok || !*tok) tok = getenv("HF_TOKEN");
    if (!tok || !*tok || !reg_is_hub_url(url) || strlen(tok) > 400 || strpbrk(tok, "\r\n")) return;
    char hb[450];
    snprintf(hb, sizeof hb, "Authorization: Bearer %s", tok);
    *hdrs = curl_slist_append(*hdrs, hb);
}

/* Trusted CAs for https: the system's, unless $BYOAI_CA_BUNDLE (or the
 * usual $SSL_CERT_FILE / $CURL_CA_BUNDLE) names a PEM file: a registry with
 * its own CA, or a proxy that re-signs traffic. */
void reg_curl_tls(CURL *c) {
    const char *vars[] = {"BYOAI_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            curl_easy_setopt(c, CURLOPT_CAINFO, v);
            return;
        }
    }
}

const char *reg_tls_hint(int curl_code) {
    switch ((CURLcode)curl_code) {
    case CURLE_PEER_FAILED_VERIFICATION:
        return "; the server's TLS certificate is not trusted here: for a registry with its own certificate authority, "
               "set BYOAI_CA_BUNDLE=/path/to/ca.pem";
    case CURLE_SSL_CACERT_BADFILE:
        return "; the CA bundle cannot be read: check BYOAI_CA_BUNDLE (or SSL_CERT_FILE)";
    case CURLE_SSL_CONNECT_ERROR:
        return "; the TLS handshake failed (is it really an https server on that port?)";
    default:
        return "";
    }
}

bool reg_tls_fatal(int curl_code) {
    return curl_code == CURLE_PEER_FAILED_VERIFICATION || curl_code == CURLE_SSL_CACERT_BADFILE ||
           curl_code == CURLE_SSL_CONNECT_ERROR;
}
