/* The signed list of removed members (revoke.c): signing, tampering,
 * decoding hostile bytes, files, and the REVOKED peer message. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"

static void admin(const char *dir, cl_identity *id) {
    byoai_error err;
    byoai_cluster_identity pub;
    if (byoai_cluster_create(dir, "family", &pub, &err)) fail_msg("%s", err.msg);
    if (cl_identity_load(dir, id, &err)) fail_msg("%s", err.msg);
    assert_true(id->admin);
}

static void test_sign_verify_tamper(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    cl_identity *id = malloc(sizeof *id);
    admin(dir, id);
    cl_revoked *r = calloc(1, sizeof *r);
    byoai_error err;
    uint8_t pk[32], id16[16];
    memset(pk, 7, 32);
    cl_node_id16(pk, id16);
    assert_false(cl_revoked_has(r, pk));
    assert_int_equal(cl_revoked_add(id, r, id16, &err), 0);
    assert_int_equal(r->serial, 1);
    assert_true(cl_revoked_has(r, pk));
    assert_int_equal(cl_revoked_verify(r, id->cluster_pk, &err), 0);
    /* the id is the fingerprint's bytes */
    char hex[33], fp[33];
    cl_hex(id16, 16, hex);
    cl_fingerprint(pk, fp);
    assert_string_equal(hex, fp);
    /* adding it again changes nothing; a second one raises the serial */
    assert_int_equal(cl_revoked_add(id, r, id16, &err), 0);
    assert_int_equal(r->serial, 1);
    uint8_t id2[16] = {1};
    assert_int_equal(cl_revoked_add(id, r, id2, &err), 0);
    assert_int_equal(r->serial, 2);
    assert_int_equal(r->n, 2);
    /* any change breaks the signature, and another cluster's key does not verify it */
    cl_revoked t = *r;
    t.serial++;
    assert_int_equal(cl_revoked_verify(&t, id->cluster_pk, &err), BYOAI_EAUTH);
    t = *r;
    t.n = 1;
    assert_int_equal(cl_revoked_verify(&t, id->cluster_pk, &err), BYOAI_EAUTH);
    uint8_t other[32];
    memcpy(other, id->cluster_pk, 32);
    other[0] ^= 1;
    assert_int_equal(cl_revoked_verify(r, other, &err), BYOAI_EAUTH);
    /* re-admitting removes one id under a newer serial */
    assert_int_equal(cl_revoked_readmit(id, r, id16, &err), 0);
    assert_false(cl_revoked_has(r, pk));
    assert_int_equal(r->serial, 3);
    assert_int_equal(cl_revoked_verify(r, id->cluster_pk, &err), 0);
    /* the file holds the newest list */
    cl_revoked *back = calloc(1, sizeof *back);
    assert_int_equal(cl_revoked_load(id, back, &err), 0);
    assert_int_equal(back->serial, 3);
    assert_int_equal(back->n, 1);
    /* a member (no cluster key) cannot make a list */
    id->admin = false;
    assert_int_equal(cl_revoked_add(id, r, id16, &err), BYOAI_EAUTH);
    id->admin = true;
    /* a corrupt file is an error that says what to do, and loads as empty */
    char path[4500];
    snprintf(path, sizeof path, "%s/revoked.bin", id->dir);
    FILE *f = fopen(path, "r+b");
    fseek(f, 10, SEEK_SET);
    fputc(0x55, f);
    fclose(f);
    assert_int_not_equal(cl_revoked_load(id, back, &err), 0);
    assert_non_null(strstr(err.msg, "delete it"));
    assert_int_equal(back->serial, 0);
    free(back);
    free(r);
    cl_identity_wipe(id);
    free(id);
    tu_rmtree(dir);
}

static void test_decode_hostile(void **state) {
    (void)state;
    cl_revoked *r = calloc(1, sizeof *r), *out = calloc(1, sizeof *out);
    r->serial = 9;
    r->n = 3;
    cl_buf b = {0};
    cl_revoked_encode(r, &b);
    byoai_error err;
    assert_int_equal(cl_revoked_decode(b.data, b.len, out, &err), 0);
    assert_int_equal(out->serial, 9);
    assert_int_equal(out->n, 3);
    for (size_t cut = 0; cut < b.len; cut++) assert_int_not_equal(cl_revoked_decode(b.data, cut, out, &err), 0);
    /* a count beyond the maximum is refused before anything is read */
    b.data[12] = 0xff;
    b.data[13] = 0xff;
    assert_int_equal(cl_revoked_decode(b.data, b.len, out, &err), BYOAI_EFORMAT);
    assert_non_null(strstr(err.msg, "entries"));
    cl_buf_free(&b);
    /* the peer message: the list round-trips; junk inside does not decode */
    r->n = 1;
    cl_enc_revoked(&b, r);
    cl_msg m;
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, &err), 0);
    assert_int_equal(m.type, CL_MSG_REVOKED);
    assert_int_equal(cl_revoked_decode(m.u.revoked.data, m.u.revoked.len, out, &err), 0);
    assert_int_equal(out->n, 1);
    b.data[5] = 'X'; /* the inner magic */
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
    free(r);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify_tamper),
        cmocka_unit_test(test_decode_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
