/* ed25519 keys and signatures (libsodium): publishers sign uploads, the
 * registry signs index.json. Keys are stored as short text lines. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry_internal.h"

static int sodium_ready(byoai_error *err) {
    if (sodium_init() < 0) return byoai_error_set(err, BYOAI_EIO, "libsodium failed to initialise");
    return 0;
}

int byoai_key_check_name(const char *name, byoai_error *err) {
    size_t n = name ? strlen(name) : 0;
    bool ok = n >= 1 && n <= 63 && ((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9'));
    for (size_t i = 0; ok && i < n; i++)
        ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '_' ||
             name[i] == '-';
    if (!ok)
        return byoai_error_set(err, BYOAI_EINVAL,
                               "invalid publisher name '%s': use 1-63 of a-z, 0-9, '_', '-', starting with a letter "
                               "or digit",
                               name ? name : "");
    return 0;
}

static void to_hex(const uint8_t *b, size_t n, char *out) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static bool from_hex(const char *s, size_t len, uint8_t *out, size_t n) {
    if (len != 2 * n) return false;
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = s[2 * i + j];
            int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (x < 0) return false;
            v = v * 16 + x;
        }
        out[i] = (uint8_t)v;
    }
    return true;
}

int byoai_key_generate(const char *name, byoai_key *out, byoai_error *err) {
    memset(out, 0, sizeof *out);
    int rc = byoai_key_check_name(name, err);
    if (rc || (rc = sodium_ready(err))) return rc;
    crypto_sign_keypair(out->pk, out->sk);
    snprintf(out->name, sizeof out->name, "%s", name);
    return 0;
}

int byoai_key_save_secret(const char *path, const byoai_key *k, byoai_error *err) {
    char hex[129], line[300];
    to_hex(k->sk, 64, hex);
    int n = snprintf(line, sizeof line, "byoai-ed25519-secret %s %s\n", k->name, hex);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return byoai_error_set(err, BYOAI_EIO, "cannot create %s: %s", tmp, strerror(errno));
    bool ok = write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    close(fd);
    sodium_memzero(line, sizeof line);
    sodium_memzero(hex, sizeof hex);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return byoai_error_set(err, BYOAI_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    byoai_fs_sync_parent(path);
    return 0;
}

int byoai_key_load_secret(const char *path, byoai_key *out, byoai_error *err) {
    memset(out, 0, sizeof *out);
    int rc = sodium_ready(err);
    if (rc) return rc;
    struct stat st;
    if (stat(path, &st) != 0)
        return byoai_error_set(err, BYOAI_ENOTFOUND, "no key at %s; create one with `byoai key generate NAME`", path);
    if (st.st_mode & 077)
        return byoai_error_set(err, BYOAI_EAUTH, "%s is readable by other users; run `chmod 600 %s`", path, path);
    char *text;
    size_t len;
    if ((rc = byoai_fs_read_all(path, 4096, &text, &len, err))) return rc;
    char name[80] = "", hex[200] = "";
    int got = sscanf(text, "byoai-ed25519-secret %79s %199s", name, hex);
    sodium_memzero(text, len);
    free(text);
    if (got != 2 || byoai_key_check_name(name, NULL) || !from_hex(hex, strlen(hex), out->sk, 64)) {
        sodium_memzero(hex, sizeof hex);
        return byoai_error_set(err, BYOAI_EFORMAT, "%s is not a byoai secret key", path);
    }
    sodium_memzero(hex, sizeof hex);
    crypto_sign_ed25519_sk_to_pk(out->pk, out->sk);
    snprintf(out->name, sizeof out->name, "%s", name);
    return 0;
}

void byoai_key_public_text(const byoai_key *k, char out[160]) {
    char hex[65];
    to_hex(k->pk, 32, hex);
    snprintf(out, 160, "byoai-ed25519 %s %s", hex, k->name);
}

int byoai_key_parse_public(const char *text, byoai_key *out, byoai_error *err) {
    memset(out, 0, sizeof *out);
    char a[100] = "", b[100] = "", c[80] = "";
    int n = sscanf(text, "%99s %99s %79s", a, b, c);
    const char *hex = NULL, *name = "";
    if (n >= 2 && !strcmp(a, "byoai-ed25519")) {
        hex = b;
        if (n == 3) name = c;
    } else if (n >= 1 && n <= 2) { /* "HEX" or "HEX NAME" */
        hex = a;
        if (n == 2) name = b;
    }
    if (!hex || !from_hex(hex, strlen(hex), out->pk, 32))
        return byoai_error_set(err, BYOAI_EFORMAT,
                               "not a public key: expected \"byoai-ed25519 HEX NAME\" or 64 hex digits");
    if (*name && byoai_key_check_name(name, err)) return BYOAI_EFORMAT;
    snprintf(out->name, sizeof out->name, "%s", name);
    return 0;
}

void byoai_sign(const byoai_key *k, const void *msg, size_t len, char sig_hex[129]) {
    uint8_t sig[64];
    if (sodium_init() < 0) {
        sig_hex[0] = 0;
        return;
    }
    crypto_sign_detached(sig, NULL, msg, len, k->sk);
    to_hex(sig, 64, sig_hex);
}

int byoai_verify(const uint8_t pk[32], const void *msg, size_t len, const char *sig_hex, byoai_error *err) {
    uint8_t sig[64];
    int rc = sodium_ready(err);
    if (rc) return rc;
    if (!sig_hex || !from_hex(sig_hex, strlen(sig_hex), sig, 64))
        return byoai_error_set(err, BYOAI_EAUTH, "malformed signature (expected 128 hex digits)");
    if (crypto_sign_verify_detached(sig, msg, len, pk) != 0)
        return byoai_error_set(err, BYOAI_EAUTH, "the signature does not verify");
    return 0;
}

int byoai_key_default_path(const byoai_store *s, char *path, size_t cap) {
    return (size_t)snprintf(path, cap, "%s/keys/publisher.key", byoai_store_home(s)) >= cap ? BYOAI_EINVAL : 0;
}
