/* Peer messages and announcements: round trips, and the decoder against
 * truncation, trailing bytes, bad counts, bad values and signatures. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"

static void decode_ok(const cl_buf *b, cl_msg *m) {
    byoai_error err = {0};
    int rc = cl_msg_decode(b->data, b->len, m, &err);
    if (rc) fail_msg("decode failed: %s", err.msg);
}

/* every strict prefix fails, and so does one trailing byte */
static void truncations_fail(const cl_buf *b) {
    cl_msg m;
    for (size_t cut = 0; cut < b->len; cut++) assert_int_not_equal(cl_msg_decode(b->data, cut, &m, NULL), 0);
    uint8_t *more = malloc(b->len + 1);
    memcpy(more, b->data, b->len);
    more[b->len] = 0;
    assert_int_not_equal(cl_msg_decode(more, b->len + 1, &m, NULL), 0);
    free(more);
}

static void test_hello_view_ping(void **state) {
    (void)state;
    cl_node_info in = {.port = 4747, .n_addrs = 2, .mem_total = 16ull << 30, .mem_offered = 12ull << 30,
                       .mem_bw = 20000000000ull, .cores = 8, .n_models = 1, .n_deployed = 1};
    snprintf(in.name, sizeof in.name, "box");
    snprintf(in.version, sizeof in.version, "0.1.0");
    snprintf(in.addrs[0], CL_ADDR_MAX, "192.168.1.2");
    snprintf(in.addrs[1], CL_ADDR_MAX, "127.0.0.1");
    snprintf(in.models[0], CL_NAME_MAX, "tinyllama");
    snprintf(in.deployed[0], CL_NAME_MAX, "llama3");
    cl_buf b = {0};
    cl_enc_hello(&b, &in);
    cl_msg m;
    decode_ok(&b, &m);
    assert_int_equal(m.type, CL_MSG_HELLO);
    assert_string_equal(m.u.hello.addrs[0], "192.168.1.2");
    assert_string_equal(m.u.hello.deployed[0], "llama3");
    assert_int_equal(m.u.hello.mem_offered, 12ull << 30);
    truncations_fail(&b);
    /* a control character in a string is refused */
    size_t at = 3; /* inside the name */
    b.data[at] = '\n';
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);

    cl_view_entry e[2] = {{.port = 1}, {.port = 2}};
    e[0].pk[0] = 7;
    snprintf(e[0].addr, CL_ADDR_MAX, "10.0.0.1");
    snprintf(e[1].addr, CL_ADDR_MAX, "10.0.0.2");
    cl_enc_view(&b, e, 2);
    decode_ok(&b, &m);
    assert_int_equal(m.u.view.n, 2);
    assert_int_equal(m.u.view.e[0].pk[0], 7);
    assert_string_equal(m.u.view.e[1].addr, "10.0.0.2");
    truncations_fail(&b);
    /* a count larger than the limit */
    b.data[1] = 0xFF;
    b.data[2] = 0xFF;
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);

    cl_enc_ping(&b, CL_MSG_PING, 42, 1.5);
    decode_ok(&b, &m);
    assert_int_equal(m.u.ping.nonce, 42);
    truncations_fail(&b);
    /* a NaN time */
    double nan = NAN;
    memcpy(b.data + 9, &nan, 8);
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
    /* unknown type, empty message */
    uint8_t junk[3] = {200, 1, 2};
    assert_int_equal(cl_msg_decode(junk, 3, &m, NULL), BYOAI_EFORMAT);
    assert_int_equal(cl_msg_decode(junk, 0, &m, NULL), BYOAI_EFORMAT);
}

static cl_load sample_load(void) {
    cl_load l = {.dep_id = 99, .term = 2, .epoch = 3, .file_size = 123456, .manifest = (const uint8_t *)"{}", .manifest_len = 2,
                 .n_layer = 22, .layer_begin = 8, .layer_end = 15, .n_ctx = 2048, .n_seq = 4, .n_batch = 256,
                 .wire = BYOAI_WIRE_F16, .has_next = true, .stage_index = 1, .n_stages = 3};
    snprintf(l.model, sizeof l.model, "tinyllama");
    snprintf(l.url, sizeof l.url, "http://10.0.0.1:8000/m.gguf");
    l.next_pk[0] = 5;
    l.file_sha[31] = 9;
    return l;
}

static void test_load(void **state) {
    (void)state;
    cl_load l = sample_load();
    cl_buf b = {0};
    cl_enc_load(&b, &l);
    cl_msg m;
    decode_ok(&b, &m);
    assert_int_equal(m.u.load.layer_begin, 8);
    assert_int_equal(m.u.load.layer_end, 15);
    assert_int_equal(m.u.load.wire, BYOAI_WIRE_F16);
    assert_true(m.u.load.has_next);
    assert_int_equal(m.u.load.next_pk[0], 5);
    assert_int_equal(m.u.load.manifest_len, 2);
    assert_int_equal(m.u.load.term, 2);
    assert_string_equal(m.u.load.url, "http://10.0.0.1:8000/m.gguf");
    truncations_fail(&b);
    cl_buf_free(&b);
    /* semantic limits */
    cl_load v[9];
    for (int i = 0; i < 9; i++) v[i] = sample_load();
    v[0].layer_begin = v[0].layer_end;       /* empty range */
    v[1].layer_end = 23;                     /* past the model */
    v[2].n_seq = 0;                          /* no sequences */
    v[3].has_next = false;                   /* a middle stage without a next one */
    v[4].wire = 7;                           /* unknown wire type */
    v[5].stage_index = 3;                    /* index past the stage count */
    v[6].epoch = 0;
    v[7].n_batch = CL_MAX_ROWS + 1;
    v[8].term = 0;                           /* no coordinator term */
    for (int i = 0; i < 9; i++) {
        cl_enc_load(&b, &v[i]);
        assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
        cl_buf_free(&b);
    }
    /* replies */
    cl_load_reply r = {.dep_id = 1, .epoch = 2, .mem_bytes = 3, .load_s = 0.5};
    cl_enc_load_reply(&b, &r);
    decode_ok(&b, &m);
    assert_int_equal(m.type, CL_MSG_LOAD_OK);
    truncations_fail(&b);
    cl_buf_free(&b);
    r.code = BYOAI_ECHECKSUM;
    snprintf(r.msg, sizeof r.msg, "bad bytes");
    cl_enc_load_reply(&b, &r);
    decode_ok(&b, &m);
    assert_int_equal(m.type, CL_MSG_LOAD_ERR);
    assert_string_equal(m.u.load_reply.msg, "bad bytes");
    /* an OK carrying an error code, or an error with code 0, is malformed */
    b.data[0] = CL_MSG_LOAD_OK;
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
}

static void test_fwd(void **state) {
    (void)state;
    int32_t toks[3] = {1, 403, 31999};
    float hidden[3 * 4];
    for (int i = 0; i < 12; i++) hidden[i] = (float)i * 0.5f;
    cl_fwd f = {.dep_id = 1, .req_id = 2, .epoch = 3, .step = 4, .slot = 1, .pos0 = 0, .n = 3,
                .flags = CL_FWD_RESET | CL_FWD_SAMPLE, .dtype = CL_DT_F32, .n_embd = 4};
    f.s.sp = byoai_sampler_defaults();
    f.s.draws = 17;
    f.s.top_logprobs = 5;
    f.s.json = true;
    f.s.gen_from = 3;
    f.s.gen_end = 100;
    cl_buf b = {0};
    cl_enc_fwd(&b, &f, toks, hidden);
    cl_msg m;
    decode_ok(&b, &m);
    assert_int_equal(m.u.fwd.n, 3);
    assert_int_equal(cl_fwd_token(&m.u.fwd, 2), 31999);
    assert_int_equal(m.u.fwd.s.draws, 17);
    assert_int_equal(m.u.fwd.s.top_logprobs, 5);
    assert_true(m.u.fwd.s.json);
    assert_int_equal(m.u.fwd.s.gen_from, 3);
    assert_int_equal(m.u.fwd.s.gen_end, 100);
    assert_int_equal(m.u.fwd.hidden_len, sizeof hidden);
    assert_memory_equal(m.u.fwd.hidden, hidden, sizeof hidden);
    assert_null(m.u.fwd.s.schema);
    truncations_fail(&b);
    cl_buf_free(&b);
    /* with a JSON Schema for the last stage's sampler */
    cl_fwd fs = f;
    const char *schema = "{\"type\":\"object\",\"required\":[\"a\"]}";
    fs.s.schema = (const uint8_t *)schema;
    fs.s.schema_len = (uint32_t)strlen(schema);
    cl_enc_fwd(&b, &fs, toks, hidden);
    decode_ok(&b, &m);
    assert_int_equal(m.u.fwd.s.schema_len, strlen(schema));
    assert_memory_equal(m.u.fwd.s.schema, schema, strlen(schema));
    assert_memory_equal(m.u.fwd.hidden, hidden, sizeof hidden);
    truncations_fail(&b);
    cl_buf_free(&b);
    fs.s.json = false; /* a schema without JSON mode is not sent */
    cl_enc_fwd(&b, &fs, toks, hidden);
    decode_ok(&b, &m);
    assert_null(m.u.fwd.s.schema);
    cl_buf_free(&b);
    /* the first stage's message: tokens only */
    cl_fwd g = f;
    g.flags = CL_FWD_SAMPLE;
    g.pos0 = 10;
    g.dtype = CL_DT_NONE;
    cl_enc_fwd(&b, &g, toks, NULL);
    decode_ok(&b, &m);
    assert_null(m.u.fwd.hidden);
    truncations_fail(&b);
    cl_buf_free(&b);
    /* a new sequence that keeps 5 cached positions: the digest of their tokens travels */
    cl_fwd keep = f;
    keep.pos0 = 5;
    keep.keep_hash = 0x0123456789abcdefull;
    cl_enc_fwd(&b, &keep, toks, hidden);
    decode_ok(&b, &m);
    assert_int_equal(m.u.fwd.pos0, 5);
    assert_true(m.u.fwd.keep_hash == 0x0123456789abcdefull);
    truncations_fail(&b);
    cl_buf_free(&b);
    int32_t seq[5] = {1, 2, 3, 4, 5}, other[5] = {1, 2, 3, 4, 6};
    assert_true(cl_tokens_hash(seq, 5) == cl_tokens_hash(seq, 5));
    assert_true(cl_tokens_hash(seq, 5) != cl_tokens_hash(other, 5));
    assert_true(cl_tokens_hash(seq, 4) == cl_tokens_hash(other, 4));
    assert_true(cl_tokens_hash(seq, 4) != cl_tokens_hash(seq, 5));
    /* invalid: unknown flags, negative token, zero rows, bad sampler */
    cl_fwd bad = g;
    bad.flags = 0x80;
    cl_enc_fwd(&b, &bad, toks, NULL);
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
    int32_t neg[3] = {1, -5, 2};
    cl_enc_fwd(&b, &g, neg, NULL);
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
    bad = f;
    bad.s.sp.top_p = 7; /* out of range */
    cl_enc_fwd(&b, &bad, toks, hidden);
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
    bad = f;
    bad.s.gen_from = 200; /* the generated part ends before it starts */
    cl_enc_fwd(&b, &bad, toks, hidden);
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
    /* a hidden-state size that does not match rows x n_embd */
    cl_enc_fwd(&b, &f, toks, hidden);
    size_t ne_at = b.len - sizeof hidden - 4;
    b.data[ne_at] = 5; /* n_embd 5: 60 bytes expected, 48 present */
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    b.data[ne_at] = 0; /* n_embd 0 */
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
}

static void test_tokens_errors_gen(void **state) {
    (void)state;
    cl_token_msg t = {.dep_id = 1, .req_id = 2, .epoch = 3, .step = 4, .slot = 0, .pos = 9};
    t.t.id = 11;
    t.t.logprob = -0.5f;
    t.t.n_top = 2;
    t.t.top_ids[0] = 11, t.t.top_ids[1] = 12;
    t.t.top_logprobs[0] = -0.5f, t.t.top_logprobs[1] = -1.5f;
    cl_buf b = {0};
    cl_enc_token(&b, CL_MSG_TOKEN, &t);
    cl_msg m;
    decode_ok(&b, &m);
    assert_int_equal(m.u.token.t.id, 11);
    assert_int_equal(m.u.token.t.n_top, 2);
    assert_int_equal(m.u.token.t.top_ids[1], 12);
    truncations_fail(&b);
    cl_buf_free(&b);
    t.t.n_top = BYOAI_CLUSTER_MAX_TOP;
    cl_enc_token(&b, CL_MSG_GEN_TOKEN, &t);
    b.data[b.len - 8 * BYOAI_CLUSTER_MAX_TOP - 1] = BYOAI_CLUSTER_MAX_TOP + 1; /* more alternatives than allowed */
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);

    cl_stage_err e = {.dep_id = 1, .req_id = 2, .kind = CL_ERR_NEXT_UNREACHABLE, .code = BYOAI_ENET, .has_culprit = true};
    e.culprit[3] = 3;
    snprintf(e.msg, sizeof e.msg, "cannot reach");
    cl_enc_stage_err(&b, &e);
    decode_ok(&b, &m);
    assert_int_equal(m.u.stage_err.culprit[3], 3);
    truncations_fail(&b);
    cl_buf_free(&b);
    e.kind = 99;
    cl_enc_stage_err(&b, &e);
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);

    int32_t toks[2] = {1, 2};
    cl_gen g = {.req_id = 5, .sp = byoai_sampler_defaults(), .n_predict = 10, .top_logprobs = -1, .n = 2,
                .n_prompt = 2, .json_object = true};
    snprintf(g.model, sizeof g.model, "m");
    cl_enc_gen(&b, &g, toks);
    decode_ok(&b, &m);
    assert_int_equal(m.u.gen.n, 2);
    assert_true(m.u.gen.json_object);
    assert_false(m.u.gen.ignore_eog);
    truncations_fail(&b);
    cl_buf_free(&b);
    /* a continuation: one prompt token, one generated; no prompt at all is not a request */
    g.n_prompt = 1;
    cl_enc_gen(&b, &g, toks);
    decode_ok(&b, &m);
    assert_int_equal(m.u.gen.n_prompt, 1);
    cl_buf_free(&b);
    g.n_prompt = 0;
    cl_enc_gen(&b, &g, toks);
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
    g.n_prompt = 3;
    cl_enc_gen(&b, &g, toks);
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
    g.n_prompt = 2;
    /* a JSON Schema travels with a JSON-mode request, and only with one */
    const char *schema = "{\"type\":\"object\"}";
    g.schema = (const uint8_t *)schema;
    g.schema_len = (uint32_t)strlen(schema);
    cl_enc_gen(&b, &g, toks);
    decode_ok(&b, &m);
    assert_int_equal(m.u.gen.schema_len, strlen(schema));
    assert_memory_equal(m.u.gen.schema, schema, strlen(schema));
    truncations_fail(&b);
    b.data[b.len - strlen(schema) - 4] = 0xff; /* a length past the cap */
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
    g.json_object = false; /* not encoded without JSON mode */
    cl_enc_gen(&b, &g, toks);
    decode_ok(&b, &m);
    assert_null(m.u.gen.schema);
    cl_buf_free(&b);
    g.json_object = true;
    g.schema = NULL;
    g.schema_len = 0;
    /* embeddings: the vector round-trips; a NaN or an empty vector does not decode */
    float vec[3] = {0.6f, -0.8f, 0.0f};
    cl_embedding_msg em = {.dep_id = 9, .req_id = 5, .epoch = 2, .step = 7, .n_embd = 3};
    cl_enc_embedding(&b, &em, vec);
    decode_ok(&b, &m);
    assert_int_equal(m.u.embedding.n_embd, 3);
    assert_int_equal(m.u.embedding.step, 7);
    for (uint32_t i = 0; i < 3; i++) assert_true(cl_embedding_at(&m.u.embedding, i) == vec[i]);
    truncations_fail(&b);
    cl_buf_free(&b);
    vec[2] = NAN;
    cl_enc_embedding(&b, &em, vec);
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
    em.n_embd = 0;
    cl_enc_embedding(&b, &em, vec);
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
    g.json_object = false;
    g.embed = true;
    cl_enc_gen(&b, &g, toks);
    decode_ok(&b, &m);
    assert_true(m.u.gen.embed);
    cl_buf_free(&b);
    g.json_object = true; /* an embedding with JSON mode is not a request */
    cl_enc_gen(&b, &g, toks);
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);

    cl_gen_end ge = {.req_id = 5, .code = 0, .n_generated = 3, .n_cached = 7, .moved = true};
    snprintf(ge.finish, sizeof ge.finish, "length");
    cl_enc_gen_end(&b, &ge);
    decode_ok(&b, &m);
    assert_string_equal(m.u.gen_end.finish, "length");
    assert_int_equal(m.u.gen_end.n_cached, 7);
    assert_true(m.u.gen_end.moved);
    truncations_fail(&b);
    cl_buf_free(&b);
    cl_enc_header(&b, "m", 0, "{}", 2, "GGUF", 4);
    decode_ok(&b, &m);
    assert_int_equal(m.u.header.header_len, 4);
    truncations_fail(&b);
    cl_buf_free(&b);
    cl_enc_header_req(&b, "");
    assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
    cl_buf_free(&b);
}

/* random bytes never crash the decoder (the fuzzer does this at scale) */
static cl_record sample_record(void) {
    static uint8_t man[] = "{\"format\": \"byoai-tensor-manifest/1\"}";
    cl_record r = {.dep_id = 77, .term = 3, .epoch = 5, .file_size = 4096, .man = man, .man_len = sizeof man - 1,
                   .n_ctx = 256, .n_seq = 4, .n_batch = 64, .wire = BYOAI_WIRE_F32, .weighting = BYOAI_WEIGHT_MEMORY,
                   .n_only = 1, .n_layer = 12, .n_stages = 2};
    snprintf(r.name, sizeof r.name, "synth");
    snprintf(r.url, sizeof r.url, "http://127.0.0.1:8000/synth.gguf");
    snprintf(r.only[0], sizeof r.only[0], "3b51");
    r.coord_pk[0] = 1;
    r.stage_pk[0][0] = 1;
    r.stage_pk[1][0] = 2;
    r.stage_begin[0] = 0;
    r.stage_end[0] = 6;
    r.stage_begin[1] = 6;
    r.stage_end[1] = 12;
    return r;
}

static void test_record(void **state) {
    (void)state;
    cl_record r = sample_record();
    cl_buf b = {0};
    cl_enc_record(&b, &r);
    cl_msg m;
    decode_ok(&b, &m);
    const cl_record *d = &m.u.record;
    assert_int_equal(d->term, 3);
    assert_int_equal(d->epoch, 5);
    assert_int_equal(d->n_stages, 2);
    assert_int_equal(d->stage_end[1], 12);
    assert_int_equal(d->stage_pk[1][0], 2);
    assert_string_equal(d->only[0], "3b51");
    assert_int_equal(d->man_len, r.man_len);
    assert_memory_equal(d->man, r.man, r.man_len);
    truncations_fail(&b);
    cl_buf_free(&b);
    /* a tombstone: who removed it and when, nothing else */
    cl_record t = {.dep_id = 77, .term = 4, .removed = true};
    snprintf(t.name, sizeof t.name, "synth");
    cl_enc_record(&b, &t);
    decode_ok(&b, &m);
    assert_true(m.u.record.removed);
    cl_buf_free(&b);
    /* stages that leave a gap, overlap or miss the end; no term; no manifest */
    cl_record v[5];
    for (int i = 0; i < 5; i++) v[i] = sample_record();
    v[0].stage_begin[1] = 7;
    v[1].stage_end[1] = 11;
    v[2].stage_end[0] = 13;
    v[3].term = 0;
    v[4].man_len = 0;
    for (int i = 0; i < 5; i++) {
        cl_enc_record(&b, &v[i]);
        assert_int_equal(cl_msg_decode(b.data, b.len, &m, NULL), BYOAI_EFORMAT);
        cl_buf_free(&b);
    }
    /* which record counts: the higher term (a takeover, a resume), then the
     * later plan, then a tombstone, then the lower coordinator key (two
     * members that took over at once agree without talking) */
    cl_record x = sample_record(), y = sample_record();
    y.term = 4;
    assert_true(cl_record_newer(&y, &x) && !cl_record_newer(&x, &y));
    y = x;
    y.epoch = 6;
    assert_true(cl_record_newer(&y, &x) && !cl_record_newer(&x, &y));
    y = x;
    y.removed = true;
    assert_true(cl_record_newer(&y, &x) && !cl_record_newer(&x, &y));
    y = x;
    y.coord_pk[0] = 0; /* lower */
    assert_true(cl_record_newer(&y, &x) && !cl_record_newer(&x, &y));
    assert_false(cl_record_newer(&x, &x)); /* the same record is not news */
    cl_record copy;
    assert_int_equal(cl_record_copy(&copy, &x), 0);
    assert_ptr_not_equal(copy.man, x.man);
    assert_memory_equal(copy.man, x.man, x.man_len);
    free(copy.man);
}

static void test_random_bytes(void **state) {
    (void)state;
    uint64_t s = 1;
    uint8_t buf[512];
    cl_msg m;
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(tu_rand_u64(&s) % sizeof buf);
        for (size_t k = 0; k < n; k++) buf[k] = (uint8_t)tu_rand_u64(&s);
        if (n) buf[0] = (uint8_t)(tu_rand_u64(&s) % 75);
        cl_msg_decode(buf, n, &m, NULL);
    }
}

static void test_announcements(void **state) {
    (void)state;
    const char *da = tu_tmpdir(), *dx = tu_tmpdir();
    byoai_error err;
    byoai_cluster_identity pub;
    assert_int_equal(byoai_cluster_create(da, "home", &pub, &err), 0);
    assert_int_equal(byoai_cluster_create(dx, "away", &pub, &err), 0);
    cl_identity a, x;
    assert_int_equal(cl_identity_load(da, &a, &err), 0);
    assert_int_equal(cl_identity_load(dx, &x, &err), 0);
    cl_node_info info = {.port = 47475, .n_addrs = 1, .mem_offered = 1 << 30, .n_models = CL_MAX_MODELS,
                         .n_deployed = CL_MAX_MODELS};
    snprintf(info.name, sizeof info.name, "a");
    snprintf(info.addrs[0], CL_ADDR_MAX, "192.168.1.5");
    for (int i = 0; i < CL_MAX_MODELS; i++) {
        memset(info.models[i], 'm', CL_NAME_MAX - 1);
        info.models[i][CL_NAME_MAX - 1] = '\0';
        snprintf(info.deployed[i], CL_NAME_MAX, "d%d", i);
    }
    uint8_t dg[CL_DGRAM_MAX];
    size_t len;
    uint64_t now = byoai_time_unix();
    assert_int_equal(cl_announce_encode(&a, &info, now * 1000, dg, sizeof dg, &len), 0);
    assert_true(len <= CL_DGRAM_MAX); /* long model lists are trimmed to fit */
    /* sealed: neither the cluster's key, nor the node's, nor its name is in clear */
    assert_null(memmem(dg, len, a.cluster_pk, 32));
    assert_null(memmem(dg, len, a.node_pk, 32));
    assert_null(memmem(dg, len, "192.168.1.5", 11));
    cl_cert cert;
    cl_node_info got;
    uint64_t ts;
    assert_int_equal(cl_announce_decode(dg, len, a.cluster_pk, now, &cert, &ts, &got, &err), 0);
    assert_memory_equal(cert.node_pk, a.node_pk, 32);
    assert_int_equal(got.port, 47475);
    assert_int_equal(ts, now * 1000);
    /* every flipped bit is refused */
    for (size_t i = 0; i < len; i += 3) {
        dg[i] ^= 0x04;
        assert_int_not_equal(cl_announce_decode(dg, len, a.cluster_pk, now, &cert, &ts, &got, NULL), 0);
        dg[i] ^= 0x04;
    }
    /* another cluster's announcement is ignored */
    assert_int_equal(cl_announce_decode(dg, len, x.cluster_pk, now, &cert, &ts, &got, &err), BYOAI_EAUTH);
    /* stale or from the future */
    assert_int_equal(cl_announce_decode(dg, len, a.cluster_pk, now + 3600, &cert, &ts, &got, &err), BYOAI_EAUTH);
    assert_int_equal(cl_announce_decode(dg, len, a.cluster_pk, now - 3600, &cert, &ts, &got, &err), BYOAI_EAUTH);
    /* signed by a node whose certificate is from another cluster, claiming ours */
    uint8_t dx2[CL_DGRAM_MAX];
    size_t lx;
    assert_int_equal(cl_announce_encode(&x, &info, now * 1000, dx2, sizeof dx2, &lx), 0);
    assert_int_equal(cl_announce_decode(dx2, lx, a.cluster_pk, now, &cert, &ts, &got, &err), BYOAI_EAUTH);
    /* unsigned garbage */
    uint8_t junk[200] = "BYAN";
    assert_int_not_equal(cl_announce_decode(junk, sizeof junk, a.cluster_pk, now, &cert, &ts, &got, NULL), 0);
    cl_identity_wipe(&a);
    cl_identity_wipe(&x);
    tu_rmtree(da);
    tu_rmtree(dx);
}

static void test_wire_helpers(void **state) {
    (void)state;
    byoai_error err;
    char host[64];
    uint16_t port;
    assert_int_equal(cl_parse_hostport("10.0.0.1:47475", host, sizeof host, &port, &err), 0);
    assert_string_equal(host, "10.0.0.1");
    assert_int_equal(port, 47475);
    assert_int_equal(cl_parse_hostport("[::1]:80", host, sizeof host, &port, &err), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(cl_parse_hostport("nohost", host, sizeof host, &port, &err), BYOAI_EINVAL);
    assert_int_equal(cl_parse_hostport("h:0", host, sizeof host, &port, &err), BYOAI_EINVAL);
    assert_int_equal(cl_parse_hostport("h:70000", host, sizeof host, &port, &err), BYOAI_EINVAL);
    uint8_t bin[33], back[40];
    for (int i = 0; i < 33; i++) bin[i] = (uint8_t)(i * 37);
    for (size_t n = 0; n <= 33; n++) {
        char s[64];
        size_t got;
        cl_b64_encode(bin, n, s, sizeof s);
        assert_int_equal(cl_b64_decode(s, back, sizeof back, &got), 0);
        assert_int_equal(got, n);
        if (n) assert_memory_equal(back, bin, n);
    }
    float x[5] = {0, 1.5f, -2.25f, 65504.0f, 1e-3f}, y[5];
    uint16_t h[5];
    cl_f32_to_f16(x, h, 5);
    cl_f16_to_f32((const uint8_t *)h, y, 5);
    for (int i = 0; i < 4; i++) assert_true(x[i] == y[i]);
    assert_true(fabsf(y[4] - x[4]) < 1e-6f);
}

/* real interfaces before container bridges and virtual pairs, loopback last */
static void test_interface_ranking(void **state) {
    (void)state;
    const char *real[] = {"eth0", "enp3s0", "eno1", "wlan0", "wlp2s0", "ib0"};
    const char *virt[] = {"docker0", "br-1a2b3c", "virbr0", "veth12ab", "cni0", "flannel.1", "vboxnet0", "tun0"};
    for (size_t i = 0; i < sizeof real / sizeof real[0]; i++) assert_int_equal(cl_iface_rank(real[i], false), 0);
    for (size_t i = 0; i < sizeof virt / sizeof virt[0]; i++) assert_int_equal(cl_iface_rank(virt[i], false), 2);
    assert_int_equal(cl_iface_rank("tailscale0", false), 1); /* a VPN: usable, after the LAN */
    assert_int_equal(cl_iface_rank("lo", true), 3);
    cl_iface ifs[CL_MAX_ADDRS];
    int n = cl_ifaces(ifs, CL_MAX_ADDRS);
    for (int i = 1; i < n; i++) assert_true(ifs[i - 1].rank <= ifs[i].rank); /* best first */
    for (int i = 0; i < n; i++)
        if (ifs[i].rank == 3) assert_string_equal(ifs[i].bcast, "127.255.255.255");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record), cmocka_unit_test(test_hello_view_ping), cmocka_unit_test(test_load),
        cmocka_unit_test(test_fwd),             cmocka_unit_test(test_tokens_errors_gen),
        cmocka_unit_test(test_random_bytes),    cmocka_unit_test(test_announcements),
        cmocka_unit_test(test_wire_helpers),    cmocka_unit_test(test_interface_ranking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
