/*
 * Tokenizer: loading tokenizer.ggml.* metadata, the public accessors, the
 * tokenize driver and detokenization. The merge algorithms live in
 * tokenizer_spm.c and tokenizer_bpe.c.
 *
 * Tokenizing is two steps, as in llama.cpp:
 *  1. Partition: special-token strings found in the text are cut out as
 *     single tokens, longest special first, each one at all its
 *     non-overlapping occurrences left to right in what is still raw text.
 *     User-defined tokens are always cut out (they are "added tokens" the
 *     original tokenizer never splits); control and unknown tokens only when
 *     the caller asks for parse_special.
 *  2. Each remaining raw fragment goes through the model's algorithm. SPM
 *     prefixes a space to a fragment at the start or after a special token.
 */
#include "tokenizer_internal.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Texts of control tokens that end generation besides EOS/EOT/EOM. */
static const char *const EOG_TEXTS[] = {"<|im_end|>", "<|eot_id|>",   "<|end|>",         "<end_of_turn>",
                                        "<|endoftext|>", "</s>", "<|end_of_text|>", NULL};

/* ---- loading ------------------------------------------------------------------ */

static bool is_integer_type(uint32_t t) {
    return t == BYOAI_GGUF_UINT8 || t == BYOAI_GGUF_INT8 || t == BYOAI_GGUF_UINT16 || t == BYOAI_GGUF_INT16 ||
           t == BYOAI_GGUF_UINT32 || t == BYOAI_GGUF_INT32 || t == BYOAI_GGUF_UINT64 || t == BYOAI_GGUF_INT64;
}

/* An optional per-token array: absent is fine, anything else must be an
 * array of numbers with exactly one entry per token. */
static int get_token_array(const byoai_gguf *g, const char *key, bool integers_only, int32_t n_vocab,
                           const byoai_gguf_value **out, byoai_error *err) {
    *out = NULL;
    int rc = byoai_gguf_get_arr(g, key, -1, out, err);
    if (rc == BYOAI_ENOTFOUND) return 0;
    if (rc) return rc;
    uint32_t et = (*out)->v.arr.elem_type;
    bool ok = integers_only ? is_integer_type(et)
                            : (is_integer_type(et) || et == BYOAI_GGUF_FLOAT32 || et == BYOAI_GGUF_FLOAT64);
    if (!ok)
        return byoai_error_set(err, BYOAI_EFORMAT, "metadata '%s' is an array of %s, expected an array of %s", key,
                               byoai_gguf_vtype_name(et), integers_only ? "integers" : "numbers");
    if ((*out)->v.arr.count != (uint64_t)n_vocab)
        return byoai_error_set(err, BYOAI_EFORMAT,
                               "metadata '%s' has %llu entries but tokenizer.ggml.tokens has %d: every token needs "
                               "exactly one",
                               key, (unsigned long long)(*out)->v.arr.count, n_vocab);
    return 0;
}

/* A special token id: absent gives def (dropped when out of range, as a
 * default is only a guess); present must be an integer in range. A negative
 * value means "none". */
static int get_token_id(const byoai_gguf *g, const char *key, int32_t n_vocab, int32_t def, int32_t *out,
                        byoai_error *err) {
    *out = def >= 0 && def < n_vocab ? def : -1;
    const byoai_gguf_kv *kv = byoai_gguf_find(g, key);
    if (!kv) return 0;
    if (!is_integer_type(kv->value.type))
        return byoai_error_set(err, BYOAI_EFORMAT, "metadata '%s' is %s, expected a token id (an integer)", key,
                               byoai_gguf_vtype_name(kv->value.type));
    int64_t v;
    uint32_t ty = kv->value.type;
    if (ty == BYOAI_GGUF_UINT8 || ty == BYOAI_GGUF_UINT16 || ty == BYOAI_GGUF_UINT32 || ty == BYOAI_GGUF_UINT64)
        v = kv->value.v.u64 > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)kv->value.v.u64;
    else
        v = kv->value.v.i64;
    if (v < 0) {
        *out = -1;
        return 0;
    }
    if (v >= n_vocab)
        return byoai_error_set(err, BYOAI_EFORMAT,
                               "metadata '%s' = %lld is not a token id: the vocabulary has %d tokens (0..%d)", key,
                               (long long)v, n_vocab, n_vocab - 1);
    *out = (int32_t)v;
    return 0;
}

static int get_flag(const byoai_gguf *g, const char *key, bool def, bool *out, byoai_error *err) {
    *out = def;
    int rc = byoai_gguf_get_bool(g, key, out, err);
    if (rc == BYOAI_ENOTFOUND) {
        *out = def;
        return 0;
    }
    return rc;
}

static void mark_eog(byoai_tokenizer *t) {
    if (t->eos >= 0) t->tokens[t->eos].flags |= TK_FLAG_EOG;
    if (t->eot >= 0) t->tokens[t->eot].flags |= TK_FLAG_EOG;
    if (t->eom >= 0) t->tokens[t->eom].flags |= TK_FLAG_EOG;
    for (const char *const *s = EOG_TEXTS; *s; s++) {
        int32_t id = tk_vocab_find(t, *s, strlen(*s));
        if (id >= 0 && t->tokens[id].type == BYOAI_TOKEN_CONTROL) t->tokens[id].flags |= TK_FLAG_EOG;
    }
}

static void find_byte_tokens(byoai_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int32_t id = tk_vocab_find(t, name, 6);
        /* SentencePiece vocabularies without byte tokens may still have the
         * byte itself as a piece (llama.cpp's fallback too) */
        if (id < 0 && t->kind == BYOAI_TOKENIZER_SPM) {
            char c = (char)b;
            id = tk_vocab_find(t, &c, 1);
        }
        if (id < 0) id = t->unk;
        t->byte_token[b] = id;

        t->byte_char_token[b] = -1;
        if (t->kind == BYOAI_TOKENIZER_BPE) {
            char enc[4];
            int n = byoai_utf8_encode(tk_gpt2_byte_to_cp((uint8_t)b), enc);
            t->byte_char_token[b] = tk_vocab_find(t, enc, (size_t)n);
        }
    }
}

static int load_tokens(byoai_tokenizer *t, const byoai_gguf *g, byoai_error *err) {
    const byoai_gguf_value *arr;
    int rc = byoai_gguf_get_arr(g, "tokenizer.ggml.tokens", BYOAI_GGUF_STRING, &arr, err);
    if (rc == BYOAI_ENOTFOUND)
        return byoai_error_set(err, BYOAI_EFORMAT,
                               "metadata 'tokenizer.ggml.tokens' is missing: the model names a tokenizer but has no "
                               "vocabulary");
    if (rc) return rc;
    uint64_t n = arr->v.arr.count;
    if (n == 0) return byoai_error_set(err, BYOAI_EFORMAT, "metadata 'tokenizer.ggml.tokens' is an empty array");
    if (n >= INT32_MAX)
        return byoai_error_set(err, BYOAI_EFORMAT, "metadata 'tokenizer.ggml.tokens' has %llu tokens (at most %d)",
                               (unsigned long long)n, INT32_MAX - 1);
    t->n_vocab = (int32_t)n;
    t->tokens = calloc((size_t)n, sizeof *t->tokens);
    if (!t->tokens) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for %llu tokens", (unsigned long long)n);

    const byoai_gguf_value *scores, *types;
    if ((rc = get_token_array(g, "tokenizer.ggml.scores", false, t->n_vocab, &scores, err))) return rc;
    if ((rc = get_token_array(g, "tokenizer.ggml.token_type", true, t->n_vocab, &types, err))) return rc;

    for (uint64_t i = 0; i < n; i++) {
        const byoai_gguf_str *s = &arr->v.arr.items[i].v.str;
        if (s->len > INT32_MAX)
            return byoai_error_set(err, BYOAI_EFORMAT, "tokenizer.ggml.tokens[%llu] is %llu bytes long",
                                   (unsigned long long)i, (unsigned long long)s->len);
        tk_token *tok = &t->tokens[i];
        tok->text = s->ptr;
        tok->len = (uint32_t)s->len;
        tok->type = BYOAI_TOKEN_NORMAL; /* llama.cpp's choice when there are no types */
        if (types) {
            int64_t ty = byoai_gguf_arr_i64(types, i);
            if (ty < BYOAI_TOKEN_UNDEFINED || ty > BYOAI_TOKEN_BYTE)
                return byoai_error_set(err, BYOAI_EFORMAT,
                                       "tokenizer.ggml.token_type[%llu] = %lld is not a token type (0..6)",
                                       (unsigned long long)i, (long long)ty);
            tok->type = (uint8_t)ty;
        }
        if (scores) {
            double sc = byoai_gguf_arr_f64(scores, i);
            if (isnan(sc))
                return byoai_error_set(err, BYOAI_EFORMAT, "tokenizer.ggml.scores[%llu] is not a number",
                                       (unsigned long long)i);
            /* scores are float32; a float64 (or int64) past its range has no
             * float32 value (the infinities are kept: they still order) */
            if (isfinite(sc) && fabs(sc) > FLT_MAX)
                return byoai_error_set(err, BYOAI_EFORMAT,
                                       "tokenizer.ggml.scores[%llu] = %g is out of the range of a 32-bit float",
                                       (unsigned long long)i, sc);
            tok->score = (float)sc;
        }
    }
    return tk_vocab_index(t, err);
}

int byoai_tokenizer_load(const byoai_gguf *g, byoai_tokenizer **out, byoai_error *err) {
    if (!g || !out) return byoai_error_set(err, BYOAI_EINVAL, "byoai_tokenizer_load: NULL argument");
    *out = NULL;
    byoai_gguf_str model;
    int rc = byoai_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (rc == BYOAI_ENOTFOUND)
        return byoai_error_set(err, BYOAI_ENOTFOUND,
                               "this GGUF has no tokenizer: metadata 'tokenizer.ggml.model' is missing");
    if (rc) return rc;

    byoai_tokenizer_kind kind;
    if (model.len == 5 && !memcmp(model.ptr, "llama", 5)) kind = BYOAI_TOKENIZER_SPM;
    else if (model.len == 4 && !memcmp(model.ptr, "gpt2", 4)) kind = BYOAI_TOKENIZER_BPE;
    else if (model.len == 4 && !memcmp(model.ptr, "bert", 4)) kind = BYOAI_TOKENIZER_WPM;
    else
        return byoai_error_set(err, BYOAI_EUNSUPPORTED,
                               "tokenizer '%.*s' (tokenizer.ggml.model) is not supported; supported: 'llama' "
                               "(SentencePiece BPE), 'gpt2' (byte-level BPE) and 'bert' (WordPiece)",
                               (int)(model.len < 64 ? model.len : 64), model.ptr);

    byoai_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for the tokenizer");
    t->kind = kind;
    bool spm = kind == BYOAI_TOKENIZER_SPM, wpm = kind == BYOAI_TOKENIZER_WPM;

    if ((rc = load_tokens(t, g, err))) goto fail;
    if (spm && (rc = tk_spm_pairs_index(t, err))) goto fail;

    /* Special ids. Defaults are llama.cpp's for SentencePiece (<unk> <s>
     * </s> = 0 1 2); for GPT-2 vocabularies there is no sensible guess.
     * Other ids some converters write (padding, cls, mask, and
     * tokenizer.ggml.seperator_token_id, misspelled) are not used here and
     * not read, so any value there is accepted. */
    /* WordPiece: [CLS] text [SEP], as BERT's own tokenizer frames an input */
    int32_t cls = -1, sep = -1;
    if (wpm && ((rc = get_token_id(g, "tokenizer.ggml.cls_token_id", t->n_vocab, -1, &cls, err)) ||
                (rc = get_token_id(g, "tokenizer.ggml.seperator_token_id", t->n_vocab, -1, &sep, err))))
        goto fail;
    if ((rc = get_token_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, spm ? 1 : cls, &t->bos, err)) ||
        (rc = get_token_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, spm ? 2 : sep, &t->eos, err)) ||
        (rc = get_token_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, -1, &t->eot, err)) ||
        (rc = get_token_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab, -1, &t->eom, err)) ||
        (rc = get_token_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, spm ? 0 : -1, &t->unk, err)))
        goto fail;

    if (kind == BYOAI_TOKENIZER_BPE) {
        const byoai_gguf_value *merges;
        rc = byoai_gguf_get_arr(g, "tokenizer.ggml.merges", BYOAI_GGUF_STRING, &merges, err);
        if (rc == BYOAI_ENOTFOUND)
            rc = byoai_error_set(err, BYOAI_EFORMAT,
                                 "metadata 'tokenizer.ggml.merges' is missing: a 'gpt2' tokenizer needs its merges");
        if (rc || (rc = tk_merges_index(t, merges, err))) goto fail;
        byoai_gguf_str pre;
        rc = byoai_gguf_get_str(g, "tokenizer.ggml.pre", &pre, err);
        if (rc && rc != BYOAI_ENOTFOUND) goto fail;
        if ((rc = tk_pretok_init(t, rc ? NULL : pre.ptr, rc ? 0 : (size_t)pre.len, err))) goto fail;
    }

    /* add_bos defaults on for SentencePiece and for the pre-tokenizers
     * llama.cpp turns it on for (Llama 3 ...); a default only applies when
     * there is a BOS token, but metadata asking for a missing one is broken */
    bool bos_default = (spm || wpm || t->pretok->add_bos) && t->bos >= 0;
    if ((rc = get_flag(g, "tokenizer.ggml.add_space_prefix", spm, &t->add_space_prefix, err)) ||
        (rc = get_flag(g, "tokenizer.ggml.add_bos_token", bos_default, &t->add_bos, err)) ||
        (rc = get_flag(g, "tokenizer.ggml.add_eos_token", wpm && t->eos >= 0, &t->add_eos, err)))
        goto fail;
    if (t->add_bos && t->bos < 0) {
        rc = byoai_error_set(err, BYOAI_EFORMAT,
                             "tokenizer.ggml.add_bos_token is true but the model has no BOS token "
                             "(tokenizer.ggml.bos_token_id)");
        goto fail;
    }
    if (t->add_eos && t->eos < 0) {
        rc = byoai_error_set(err, BYOAI_EFORMAT,
                             "tokenizer.ggml.add_eos_token is true but the model has no EOS token "
                             "(tokenizer.ggml.eos_token_id)");
        goto fail;
    }

    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->tokens[i].len > t->max_token_len) t->max_token_len = t->tokens[i].len;
    if (wpm && (rc = tk_wpm_index(t, err))) goto fail;
    find_byte_tokens(t);
    mark_eog(t);
    if ((rc = tk_specials_index(t, err))) goto fail;
    *out = t;
    return 0;
fail:
    byoai_tokenizer_free(t);
    return rc;
}

void byoai_tokenizer_free(byoai_tokenizer *t) {
    if (!t) return;
    tk_pretok_free(t);
    free(t->tokens);
    free(t->tok_table);
    free(t->merge_table);
    free(t->pair_table);
    free(t->wp_token);
    free(t->wp_edges);
    free(t->specials);
    free(t->trie);
    free(t);
}

/* ---- accessors ----------------------------------------------------------------- */

byoai_tokenizer_kind byoai_tokenizer_kind_of(const byoai_tokenizer *t) { return t->kind; }
int32_t byoai_tokenizer_n_vocab(const byoai_tokenizer *t) { return t->n_vocab; }
int32_t byoai_token_bos(const byoai_tokenizer *t) { return t->bos; }
int32_t byoai_token_eos(const byoai_tokenizer *t) { return t->eos; }
bool byoai_tokenizer_adds_bos(const byoai_tokenizer *t) { return t->add_bos; }
bool byoai_tokenizer_adds_eos(const byoai_tokenizer *t) { return t->add_eos; }

bool byoai_token_is_eog(const byoai_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->tokens[id].flags & TK_FLAG_EOG);
}

bool byoai_token_is_control(const byoai_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->tokens[id].type == BYOAI_TOKEN_CONTROL;
}

const char *byoai_token_text(const byoai_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->tokens[id].len;
    return t->tokens[id].text;
}

int32_t byoai_token_lookup(const byoai_tokenizer *t, const char *text, size_t len) {
    if (!text) return -1;
    return tk_vocab_find(t, text, len);
}

/* ---- tokenize -------------------------------------------------------------------- */

int byoai_tokenize(const byoai_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                   int32_t **tokens, size_t *n_tokens, byoai_error *err) {
    if (!t || !tokens || !n_tokens || (!text && len))
        return byoai_error_set(err, BYOAI_EINVAL, "byoai_tokenize: NULL argument");
    *tokens = NULL;
    *n_tokens = 0;
    if (len > (size_t)1 << 30)
        return byoai_error_set(err, BYOAI_ERANGE, "text of %zu bytes is too long to tokenize (limit 1 GiB)", len);

    tk_ids ids = {0};
    tk_scratch s = {0};
    tk_frag_list frags = {0};
    int rc = tk_partition(t, text, len, parse_special, &frags);
    if (rc) {
        rc = byoai_error_set(err, rc, "out of memory while looking for special tokens in %zu bytes", len);
        goto fail;
    }
    if (add_special && t->add_bos && (rc = tk_ids_push(&ids, t->bos))) goto oom;

    bool prev_special = true; /* SPM: the start of the text counts as after a special token */
    for (size_t f = 0; f < frags.n; f++) {
        const tk_fragment *fr = &frags.v[f];
        if (fr->token >= 0) {
            if ((rc = tk_ids_push(&ids, fr->token))) goto oom;
            prev_special = true;
            continue;
        }
        if (t->kind == BYOAI_TOKENIZER_SPM)
            rc = tk_spm_tokenize(t, &s, text + fr->off, fr->len, t->add_space_prefix && prev_special, &ids, err);
        else if (t->kind == BYOAI_TOKENIZER_WPM)
            rc = tk_wpm_tokenize(t, &s, text + fr->off, fr->len, &ids, err);
        else
            rc = tk_bpe_tokenize(t, &s, text + fr->off, fr->len, &ids, err);
        if (rc) goto fail;
        prev_special = false;
    }
    if (add_special && t->add_eos && (rc = tk_ids_push(&ids, t->eos))) goto oom;

    free(frags.v);
    tk_scratch_free(&s);
    if (!ids.v) { /* no tokens: still hand back a valid (empty) allocation */
        ids.v = malloc(sizeof *ids.v);
        if (!ids.v) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    *tokens = ids.v;
    *n_tokens = ids.n;
    return 0;
oom:
    rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory while tokenizing %zu bytes", len);
fail:
    free(frags.v);
    tk_scratch_free(&s);
    free(ids.v);
    return rc;
}

/* ---- detokenize -------------------------------------------------------------------- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Copy what fits of src to buf + at (cap bytes in all). */
static void put(char *buf, size_t cap, size_t at, const char *src, size_t n) {
    if (at < cap) memcpy(buf + at, src, n < cap - at ? n : cap - at);
}

int byoai_token_to_piece(const byoai_tokenizer *t, int32_t id, char *buf, size_t cap, bool render_special) {
    if (!t || id < 0 || id >= t->n_vocab || (!buf && cap)) return BYOAI_EINVAL;
    const tk_token *tok = &t->tokens[id];
    switch (tok->type) {
    case BYOAI_TOKEN_CONTROL:
    case BYOAI_TOKEN_UNKNOWN:
        if (!render_special) return 0;
        /* fall through */
    case BYOAI_TOKEN_USER_DEFINED:
        put(buf, cap, 0, tok->text, tok->len);
        return (int)tok->len;
    case BYOAI_TOKEN_BYTE:
        if (tok->len == 6 && !memcmp(tok->text, "<0x", 3) && tok->text[5] == '>' && hexval(tok->text[3]) >= 0 &&
            hexval(tok->text[4]) >= 0) {
            char b = (char)(hexval(tok->text[3]) * 16 + hexval(tok->text[4]));
            put(buf, cap, 0, &b, 1);
            return 1;
        }
        put(buf, cap, 0, tok->text, tok->len); /* a byte token not named <0xXX>: show it as it is */
        return (int)tok->len;
    case BYOAI_TOKEN_NORMAL:
        break;
    default: /* UNDEFINED, UNUSED: never produced by tokenizing; print nothing, as llama.cpp */
        return 0;
    }

    size_t n = 0;
    if (t->kind == BYOAI_TOKENIZER_SPM || t->kind == BYOAI_TOKENIZER_WPM) { /* U+2581 stands for a space */
        for (uint32_t i = 0; i < tok->len;) {
            if (tok->len - i >= 3 && !memcmp(tok->text + i, "\xE2\x96\x81", 3)) {
                put(buf, cap, n++, " ", 1);
                i += 3;
            } else {
                put(buf, cap, n++, tok->text + i, 1);
                i++;
            }
        }
        return (int)n;
    }
    /* GPT-2 alphabet back to bytes; a character outside the alphabet (in
     * added tokens) stands for itself */
    for (uint32_t i = 0; i < tok->len;) {
        uint32_t cp;
        int l = byoai_utf8_decode(tok->text + i, tok->len - i, &cp);
        int b = tk_gpt2_cp_to_byte(cp);
        if (b >= 0) {
            char c = (char)b;
            put(buf, cap, n++, &c, 1);
        } else {
            put(buf, cap, n, tok->text + i, (size_t)l);
            n += (size_t)l;
        }
        i += (uint32_t)l;
    }
    return (int)n;
}

int byoai_detokenize(const byoai_tokenizer *t, const int32_t *tokens, size_t n, bool render_special,
                     bool strip_leading_space, char **out, size_t *out_len, byoai_error *err) {
    if (!t || !out || (!tokens && n)) return byoai_error_set(err, BYOAI_EINVAL, "byoai_detokenize: NULL argument");
    *out = NULL;
    if (out_len) *out_len = 0;
    size_t cap = 64 + n * 4, len = 0;
    char *buf = malloc(cap);
    if (!buf) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    /* Only SentencePiece adds a space before the first word; it sits at the
     * start of the first piece that prints anything. */
    bool strip = strip_leading_space &&
                 ((t->kind == BYOAI_TOKENIZER_SPM && t->add_space_prefix) || t->kind == BYOAI_TOKENIZER_WPM);
    for (size_t i = 0; i < n; i++) {
        int r = byoai_token_to_piece(t, tokens[i], buf + len, cap - len - 1, render_special);
        if (r < 0) {
            free(buf);
            return byoai_error_set(err, BYOAI_EINVAL, "token %zu has id %d, outside the vocabulary (0..%d)", i,
                                   tokens[i], t->n_vocab - 1);
        }
        if ((size_t)r > cap - len - 1) {
            size_t nc = cap * 2 > len + (size_t)r + 1 ? cap * 2 : len + (size_t)r + 1;
            char *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
            }
            buf = nb;
            cap = nc;
            r = byoai_token_to_piece(t, tokens[i], buf + len, cap - len - 1, render_special);
        }
        if (strip && r > 0) {
            strip = false;
            if (buf[len] == ' ') {
                memmove(buf + len, buf + len + 1, (size_t)r - 1);
                r--;
            }
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    *out = buf;
    if (out_len) *out_len = len;
    return 0;
}
