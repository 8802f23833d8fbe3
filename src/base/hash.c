/* SHA-256 through OpenSSL's libcrypto (EVP). */
#include "byoai/base.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int byoai_sha256_init(byoai_sha256 *h) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c) return BYOAI_ENOMEM;
    if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        return BYOAI_EIO;
    }
    h->impl = c;
    return BYOAI_OK;
}

void byoai_sha256_update(byoai_sha256 *h, const void *data, size_t len) {
    if (h->impl && len) EVP_DigestUpdate((EVP_MD_CTX *)h->impl, data, len);
}

void byoai_sha256_final_hex(byoai_sha256 *h, char hex[65]) {
    unsigned char md[32];
    unsigned int n = 0;
    hex[0] = '\0';
    if (!h->impl) return;
    EVP_DigestFinal_ex((EVP_MD_CTX *)h->impl, md, &n);
    for (unsigned i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    byoai_sha256_free(h);
}

void byoai_sha256_free(byoai_sha256 *h) {
    if (h->impl) EVP_MD_CTX_free((EVP_MD_CTX *)h->impl);
    h->impl = NULL;
}

void byoai_sha256_buf(const void *data, size_t len, char hex[65]) {
    byoai_sha256 h;
    if (byoai_sha256_init(&h) != 0) {
        hex[0] = '\0';
        return;
    }
    byoai_sha256_update(&h, data, len);
    byoai_sha256_final_hex(&h, hex);
}

int byoai_sha256_file(const char *path, char hex[65], byoai_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return byoai_error_set(err, BYOAI_EIO, "cannot open %s: %s", path, strerror(errno));
    byoai_sha256 h;
    if (byoai_sha256_init(&h) != 0) {
        close(fd);
        return byoai_error_set(err, BYOAI_ENOMEM, "cannot start sha256");
    }
    static __thread unsigned char buf[1 << 16];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            byoai_sha256_free(&h);
            close(fd);
            return byoai_error_set(err, BYOAI_EIO, "cannot read %s: %s", path, strerror(e));
        }
        if (r == 0) break;
        byoai_sha256_update(&h, buf, (size_t)r);
    }
    close(fd);
    byoai_sha256_final_hex(&h, hex);
    return BYOAI_OK;
}
