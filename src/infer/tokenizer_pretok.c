/*
 * The GPT-2 style pre-tokenizer: before byte-level BPE, text is cut into
 * pieces (roughly words, numbers, punctuation runs and whitespace runs) by
 * the regexes the model was trained with, and merges never cross a piece
 * boundary. tokenizer.ggml.pre names the regex set.
 *
 * The sets are data, in the table below, written to give the same pieces as
 * llama.cpp (the reference our test vectors come from). Where llama.cpp runs
 * an "adapted" form of a model's regex (because std::regex lacks \p{..} or
 * case-insensitive groups), the table uses the adapted form, e.g. explicit
 * '[sS]' instead of (?i:'s), which under Unicode case folding would also
 * match U+017F.
 *
 * A set is a list: each regex splits every piece the previous one produced;
 * the text between matches becomes pieces of its own, so the pieces always
 * cover the whole input. Regexes run with PCRE2 in UTF + UCP mode (\s, \d
 * and \w are Unicode-aware, as in Python's and Rust's regex engines that
 * the tokenizers were trained with), JIT-compiled when available.
 *
 * Invalid UTF-8 never reaches PCRE2: each maximal run of bytes that do not
 * form valid UTF-8 becomes a piece of its own, so every byte still reaches
 * the byte-level BPE and detokenizes back to itself (llama.cpp instead
 * turns such bytes into U+FFFD).
 */
#include "tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The contraction alternatives, case-insensitive by explicit classes. */
#define CONTRACTIONS_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

/* GPT-2 (OpenAI's original pattern). llama.cpp leaves out the final |\s+,
 * which changes nothing: text no alternative matches becomes a piece anyway. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* Llama 3 (tiktoken cl100k style): digits in groups of up to three. */
#define RE_LLAMA3                                                                                            \
    CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|" \
                    "\\s+(?!\\S)|\\s+"

/* Qwen2: as Llama 3 but every digit is its own piece. */
#define RE_QWEN2                                                                                        \
    CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|" \
                    "\\s+(?!\\S)|\\s+"

/* GPT-4o (o200k): words split before upper-case runs, as llama.cpp adapts
 * it: "a letter that is not a-z" / "a letter that is not A-Z". */
#define RE_LETTER_NOT_LOWER "(?:(?=[\\p{L}])[^a-z])"
#define RE_LETTER_NOT_UPPER "(?:(?=[\\p{L}])[^A-Z])"
#define RE_GPT4O                                                                                              \
    "[^\\r\\n\\p{L}\\p{N}]?" RE_LETTER_NOT_LOWER "*" RE_LETTER_NOT_UPPER "+" CONTRACTIONS_CI                  \
    "?|[^\\r\\n\\p{L}\\p{N}]?" RE_LETTER_NOT_LOWER "+" RE_LETTER_NOT_UPPER "*" CONTRACTIONS_CI                \
    "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Mistral's Tekken: as GPT-4o without contractions, single digits. */
#define RE_TEKKEN                                                                                             \
    "[^\\r\\n\\p{L}\\p{N}]?" RE_LETTER_NOT_LOWER "*" RE_LETTER_NOT_UPPER "+|[^\\r\\n\\p{L}\\p{N}]?"           \
    RE_LETTER_NOT_LOWER "+" RE_LETTER_NOT_UPPER "*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|"      \
    "\\s+(?!\\S)|\\s+"

/* BLOOM and relatives: anything up to a space or sentence punctuation. */
#define RE_BLOOM " ?[^(\\s|.,!?…。，、।۔،)]+"

/* CJK ranges DeepSeek splits out. */
#define RE_DEEPSEEK_CJK "[一-龥ࠀ-一가-퟿]+"

static const tk_pretok_def PRETOK_DEFS[] = {
    /* llama.cpp's choice when tokenizer.ggml.pre is absent or "default" */
    {.names = {"default"},
     .patterns = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    {.names = {"gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "trillion", "exaone4", "jina-es", "jina-de",
               "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code", "roberta-bpe", "gigachat", "a.x-4.0",
               "mellum", "modern-bert", "granite-docling"},
     .patterns = {RE_GPT2}},
    {.names = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"},
     .patterns = {RE_LLAMA3},
     .ignore_merges = true,
     .add_bos = true},
    {.names = {"dbrx", "smaug-bpe", "glm4", "chatglm-bpe"}, .patterns = {RE_LLAMA3}},
    {.names = {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan", "kormo", "solar-open"},
     .patterns = {RE_QWEN2}},
    {.names = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"},
     .patterns = {"\\p{N}", RE_GPT2}},
    {.names = {"gpt-4o", "llama4", "kanana2", "minimax-m2"}, .patterns = {RE_GPT4O}},
    {.names = {"tekken"}, .patterns = {RE_TEKKEN}, .ignore_merges = true, .add_bos = true},
    {.names = {"falcon"},
     .patterns = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    /* DeepSeek LLM's cased-letter class. Letters with a canonical singleton
     * decomposition (U+1F7D, U+1FBE, U+1FD3, U+1FDB, U+2126, U+212A) are
     * written as \x{..}: an editor or tool that normalises text would
     * otherwise silently swap them for other code points. */
    {.names = {"deepseek-llm"},
     .patterns = {"[\\r\\n]",
                  "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\\x{1F7D}ᾀ-ᾴᾶ-ᾼ\\x{1FBE}ῂ-ῄῆ-ῌῐ-\\x{1FD3}ῖ-\\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\\x{2126}ℨ\\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
                  "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", RE_DEEPSEEK_CJK, "\\p{N}+"}},
    {.names = {"deepseek-coder"},
     .patterns = {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_DEEPSEEK_CJK, "\\p{N}"}},
    {.names = {"deepseek-v3"},
     .patterns = {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
                  "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
                  "?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {.names = {"bloom", "poro-chat", "gpt3-finnish"}, .patterns = {RE_BLOOM}},
    {.names = {"viking"}, .patterns = {RE_BLOOM, "\\p{N}"}},
};

static const tk_pretok_def *find_def(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof PRETOK_DEFS / sizeof PRETOK_DEFS[0]; i++)
        for (const char *const *n = PRETOK_DEFS[i].names; *n; n++)
            if (strlen(*n) == len && !memcmp(*n, name, len)) return &PRETOK_DEFS[i];
    return NULL;
}

int tk_pretok_init(byoai_tokenizer *t, const char *name, size_t name_len, byoai_error *err) {
    const tk_pretok_def *def;
    if (!name) {
        byoai_log(BYOAI_LOG_WARN, "tokenizer: no tokenizer.ggml.pre in this model; using llama.cpp's 'default' "
                                  "pre-tokenizer, which may not be the one the model was trained with");
        def = find_def("default", 7);
        snprintf(t->pre_name, sizeof t->pre_name, "default");
    } else {
        def = find_def(name, name_len);
        snprintf(t->pre_name, sizeof t->pre_name, "%.*s", (int)(name_len < 60 ? name_len : 60), name);
        if (!def) {
            byoai_log(BYOAI_LOG_WARN,
                      "tokenizer: unknown pre-tokenizer '%s' (tokenizer.ggml.pre); falling back to GPT-2's, "
                      "so some texts may tokenize differently from the original model",
                      t->pre_name);
            def = find_def("gpt-2", 5);
        }
    }
    t->pretok = def;
    t->n_regex = 0;
    for (int i = 0; i < TK_MAX_REGEX && def->patterns[i]; i++) {
        int ecode;
        PCRE2_SIZE eoff;
        /* DOLLAR_ENDONLY: '$' means end of piece, as in ECMAScript and Rust,
         * not "before a final newline" */
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)def->patterns[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &ecode, &eoff, NULL);
        if (!re) {
            char msg[256];
            pcre2_get_error_message(ecode, (PCRE2_UCHAR *)msg, sizeof msg);
            return byoai_error_set(err, BYOAI_EUNSUPPORTED,
                                   "pre-tokenizer '%s': regex %d does not compile at offset %zu: %s", t->pre_name,
                                   i, (size_t)eoff, msg);
        }
        /* JIT is an optimisation: without it the interpreter gives the same
         * results, only slower */
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        t->regex[t->n_regex++] = re;
    }
    return 0;
}

void tk_pretok_free(byoai_tokenizer *t) {
    for (int i = 0; i < t->n_regex; i++) pcre2_code_free(t->regex[i]);
    t->n_regex = 0;
}

/* ---- splitting ---------------------------------------------------------------- */

static int push_piece(size_t **v, size_t *n, size_t *cap, size_t off, size_t len) {
    if (*n + 2 > *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        size_t *nv = realloc(*v, nc * sizeof *nv);
        if (!nv) return BYOAI_ENOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = off;
    (*v)[(*n)++] = len;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t valid_seq(const char *s, size_t n) {
    uint32_t cp;
    int l = byoai_utf8_decode(s, n, &cp);
    if (cp == 0xFFFD) {
        const uint8_t *u = (const uint8_t *)s;
        if (!(l == 3 && u[0] == 0xEF && u[1] == 0xBF && u[2] == 0xBD)) return 0;
    }
    return (size_t)l;
}

/* Run the regex list over the valid UTF-8 segment text[off..off+len),
 * appending its pieces to s->pieces. */
static int split_segment(const byoai_tokenizer *t, tk_scratch *s, const char *text, size_t off, size_t len,
                         byoai_error *err) {
    size_t base = s->n_pieces;
    if (push_piece(&s->pieces, &s->n_pieces, &s->pieces_cap, off, len)) goto oom;
    for (int r = 0; r < t->n_regex; r++) {
        /* move this segment's current pieces aside, then re-split them */
        size_t n_in = s->n_pieces - base;
        if (n_in > s->pieces2_cap) {
            size_t *nv = realloc(s->pieces2, n_in * sizeof *nv);
            if (!nv) goto oom;
            s->pieces2 = nv;
            s->pieces2_cap = n_in;
        }
        memcpy(s->pieces2, s->pieces + base, n_in * sizeof *s->pieces2);
        s->n_pieces = base;
        if (!s->md[r]) {
            s->md[r] = pcre2_match_data_create_from_pattern(t->regex[r], NULL);
            if (!s->md[r]) goto oom;
        }
        for (size_t p = 0; p < n_in; p += 2) {
            size_t poff = s->pieces2[p], plen = s->pieces2[p + 1];
            const PCRE2_SPTR subject = (PCRE2_SPTR)(text + poff);
            size_t pos = 0, gap = 0;
            while (pos < plen) {
                int rc = pcre2_match(t->regex[r], subject, plen, pos, PCRE2_NO_UTF_CHECK, s->md[r], NULL);
                if (rc == PCRE2_ERROR_NOMATCH) break;
                if (rc < 0) {
                    char msg[256];
                    pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, sizeof msg);
                    return byoai_error_set(err, BYOAI_EINVAL, "pre-tokenizer '%s', regex %d: %s", t->pre_name, r,
                                           msg);
                }
                const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md[r]);
                size_t ms = ov[0], me = ov[1];
                if (ms > gap && push_piece(&s->pieces, &s->n_pieces, &s->pieces_cap, poff + gap, ms - gap)) goto oom;
                if (me > ms) {
                    if (push_piece(&s->pieces, &s->n_pieces, &s->pieces_cap, poff + ms, me - ms)) goto oom;
                    pos = me;
                } else {
                    /* an empty match is a split point; step over one character */
                    pos = ms + 1;
                    while (pos < plen && ((uint8_t)text[poff + pos] & 0xC0) == 0x80) pos++;
                }
                gap = me > ms ? me : ms;
            }
            if (gap < plen && push_piece(&s->pieces, &s->n_pieces, &s->pieces_cap, poff + gap, plen - gap)) goto oom;
        }
    }
    return 0;
oom:
    return byoai_error_set(err, BYOAI_ENOMEM, "out of memory while pre-tokenizing %zu bytes", len);
}

int tk_pretok_split(const byoai_tokenizer *t, tk_scratch *s, const char *text, size_t len, byoai_error *err) {
    s->n_pieces = 0;
    size_t i = 0;
    while (i < len) {
        /* a maximal valid run, then a maximal invalid run */
        size_t start = i, l;
        while (i < len && (l = valid_seq(text + i, len - i)) > 0) i += l;
        if (i > start) {
            int rc = split_segment(t, s, text, start, i - start, err);
            if (rc) return rc;
        }
        start = i;
        while (i < len && valid_seq(text + i, len - i) == 0) i++;
        if (i > start && push_piece(&s->pieces, &s->n_pieces, &s->pieces_cap, start, i - start))
            return byoai_error_set(err, BYOAI_ENOMEM, "out of memory while pre-tokenizing %zu bytes", len);
    }
    return 0;
}
