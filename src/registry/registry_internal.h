/* Private parts of the registry module shared by its files. */
#ifndef BYOAI_REGISTRY_INTERNAL_H
#define BYOAI_REGISTRY_INTERNAL_H

#include <curl/curl.h>
#include <stdio.h>

#include "byoai/registry.h"

/* ---- URLs ----------------------------------------------------------------- */
/* The Hugging Face endpoint: $BYOAI_HF_ENDPOINT, $HF_ENDPOINT, or https://huggingface.co (no trailing '/'). */
const char *reg_hf_endpoint(void);
/* True when url is a file on the Hub (ENDPOINT/OWNER/REPO/resolve/REV/PATH). */
bool reg_is_hub_url(const char *url);
/* hf:OWNER/REPO[@REV]/PATH into ENDPOINT/OWNER/REPO/resolve/REV/PATH; false when malformed. */
bool reg_hf_to_url(const char *spec, char *url, size_t cap, char *file_name, size_t fcap);
/* The URL of a registry's index.json (base may name a directory or the file). */
int reg_index_url(const char *base, char *out, size_t cap, byoai_error *err);
/* Join a relative reference to the directory of base. */
int reg_url_join(const char *base, const char *rel, char *out, size_t cap);

/* ---- HTTP client (libcurl) ---------------------------------------------- */
typedef struct reg_response {
    long status;            /* HTTP status; 200 for a file:// read */
    char *body;             /* malloc'd, NUL-terminated (GET) */
    size_t len;
    char etag[256];
    char last_modified[64];
    char linked_etag[128];  /* X-Linked-Etag, unquoted */
    uint64_t linked_size;   /* X-Linked-Size */
    char repo_commit[64];   /* X-Repo-Commit */
    uint64_t content_length;
    char location[1024];    /* Location of the last redirect */
} reg_response;

typedef struct reg_request {
    const char *method;     /* "GET" (default), "HEAD", "PUT" */
    const char *if_none_match, *if_modified_since;
    size_t max_body;        /* 0: BYOAI_INDEX_MAX_BYTES */
    bool follow;            /* follow redirects (GET default true; HEAD false) */
    const char *const *headers; /* extra "Name: value" lines, NULL-terminated */
    const char *upload_path;    /* PUT: the file to send */
    uint64_t max_rate;
    byoai_progress_fn progress;
    void *user;
    const char *what;
    long timeout_s;         /* 0: 60 */
} reg_request;

void reg_curl_init(void);
/* Response header lines as libcurl hands them (not NUL-terminated, CRLF at
 * the end), parsed within len. reg_header_line updates r's etag,
 * last_modified, linked_etag, linked_size, repo_commit and content_length
 * (numbers: digits only, else 0); a status line starts a new response. */
void reg_header_line(reg_response *r, const char *line, size_t len);
/* The status of "HTTP/x STATUS ...", 0 when the line is not one. */
long reg_status_line(const char *line, size_t len);
/* The first byte of "Content-Range: bytes FIRST-LAST/SIZE"; false when the
 * line is not that. */
bool reg_content_range_start(const char *line, size_t len, uint64_t *start);
int reg_http(const char *url, const reg_request *rq, reg_response *out, byoai_error *err);
void reg_response_free(reg_response *r);

/* Download url into the store as blob `sha256` (NULL: a Hub file whose
 * sha256 comes from X-Linked-Etag; *resolved_sha gets it). Resumes a
 * partial download with Range, verifies before committing, shares the
 * download with concurrent installs through the blob's lock. */
typedef struct reg_download_opts {
    uint64_t max_rate;
    unsigned retries;       /* 0: 5 */
    const char *what;
} reg_download_opts;
int reg_download_blob(byoai_store *s, const char *const *urls, size_t n_urls, const char *sha256, uint64_t size,
                      const reg_download_opts *o, byoai_progress_fn progress, void *user, char resolved_sha[65],
                      uint64_t *resolved_size, byoai_error *err);
/* Ask the Hub for a file's sha256 and size (HEAD, X-Linked-Etag). */
int reg_hub_head(const char *url, char sha256[65], uint64_t *size, char *commit, size_t ccap, byoai_error *err);

/* ---- the index cache ------------------------------------------------------ */
/* Mark every cached index of the registry at registry_url stale, so the next
 * command fetches it again (after a publish to it). */
void reg_cache_mark_stale(byoai_store *s, const char *registry_url);

/* ---- publishing (serve.c) -------------------------------------------------- */
/* The headers of a publish request (NULL when absent). */
typedef struct reg_publish_headers {
    const char *publisher, *timestamp, *nonce, *sha256, *meta, *signature;
} reg_publish_headers;
/* Check a request to publish model `name` before anything else looks at it:
 * a valid name without ':', every header present and well-formed (a
 * publisher name, unix seconds in digits, a 32-hex-digit nonce, a sha256,
 * meta of at most 8 KiB, a 128-hex-digit signature). 0 with *ts set, or the
 * HTTP status (400) with msg filled. Signature, clock and nonce come later. */
int reg_publish_check(const char *name, const reg_publish_headers *h, uint64_t *ts, char *msg, size_t cap);

/* ---- the built-in index --------------------------------------------------- */
extern const unsigned char byoai_builtin_index[];
extern const unsigned long byoai_builtin_index_len;

/* ---- misc ----------------------------------------------------------------- */
bool reg_env_true(const char *name);
/* Number from the environment, or def. */
uint64_t reg_env_u64(const char *name, uint64_t def);
/* Does the variant's quantization run on this build? Float = F32/F16/BF16. */
bool reg_quant_runnable(const char *quant, bool *is_float);
/* Add "Authorization: Bearer $HF_TOKEN" for a Hub URL (never for other hosts). */
struct curl_slist;
void reg_auth_header(const char *url, struct curl_slist **hdrs);
/* TLS trust for a handle ($BYOAI_CA_BUNDLE, $SSL_CERT_FILE, $CURL_CA_BUNDLE). */
void reg_curl_tls(CURL *c);
/* For a failed transfer: a hint on what to do ("" when not a TLS problem),
 * and whether retrying is pointless (the certificate will not change). */
const char *reg_tls_hint(int curl_code);
bool reg_tls_fatal(int curl_code);
/* Stall detection for transfers: no byte moved for BYOAI_STALL_SECONDS
 * (default 30) ends the transfer. Checked from libcurl's progress callback,
 * which libcurl calls about once a second while nothing moves, so a stall
 * is noticed within a second of the limit. (libcurl's low-speed limit
 * averages the speed over a window of samples and fired several times
 * later than the documented time.) */
typedef struct reg_stall {
    double limit_s, last_change;
    uint64_t last_bytes;
    bool stalled;
} reg_stall;
void reg_stall_start(reg_stall *s);
/* bytes_moved: down plus up so far; true when the transfer must end */
bool reg_stall_check(reg_stall *s, uint64_t bytes_moved);
/* A header line "Location: URL": its value (trimmed) into dst. */
bool reg_header_location(const char *line, size_t len, char *dst, size_t cap);
/* A redirect target with a scheme other than http or https (file://,
 * ftp://, ...): never followed, and not worth retrying. */
bool reg_redirect_refused(const char *location);

/* The cache directory of a registry URL. */
int reg_cache_dir(byoai_store *s, const char *url, char *out, size_t cap);

#endif
