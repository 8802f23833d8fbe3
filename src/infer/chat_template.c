/*
 * Chat templates: recognise a model's tokenizer.chat_template as one of the
 * common families and render conversations in that family's format.
 *
 * Each renderer follows the family's published format (the model cards and
 * the reference Jinja templates), written out as C: one function per
 * family, the same shape for each: optional system handling, one line of
 * output per turn, then the generation cue.
 */
#include "byoai/chat.h"
#include "infer/chat_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- a growable string ---------------------------------------------------- */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

/* append, remembering a failure (rendering checks oom once at the end) */
static void put(sbuf *b, const char *s, size_t n) {
    if (b->oom || n == 0) return;
    byoai_buf t = {b->s, b->len, b->cap};
    if (!byoai_buf_append(&t, s, n)) {
        b->oom = true;
        return;
    }
    b->s = t.data, b->len = t.len, b->cap = t.cap;
}
static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* content with leading and trailing white space removed (Jinja's trim) */
static void put_trimmed(sbuf *b, const char *s, size_t n) {
    while (n && is_space(*s)) s++, n--;
    while (n && is_space(s[n - 1])) n--;
    put(b, s, n);
}

/* ---- families ------------------------------------------------------------- */
static const char *const FAMILY_NAMES[BYOAI_CHAT_FAMILY_COUNT] = {
    "fallback", "chatml", "llama2", "llama3", "mistral", "phi3", "gemma", "zephyr"};

const char *byoai_chat_family_name(byoai_chat_family f) {
    return (unsigned)f < BYOAI_CHAT_FAMILY_COUNT ? FAMILY_NAMES[f] : "unknown";
}

int byoai_chat_family_parse(const char *name, byoai_chat_family *out, byoai_error *err) {
    for (int i = 0; i < BYOAI_CHAT_FAMILY_COUNT; i++)
        if (name && !strcmp(name, FAMILY_NAMES[i])) {
            *out = (byoai_chat_family)i;
            return 0;
        }
    return byoai_error_set(err, BYOAI_EINVAL,
                           "unknown chat template '%s' (known: chatml, llama2, llama3, mistral, phi3, gemma, zephyr, "
                           "fallback)", name ? name : "");
}

bool byoai_chat_role_parse(const char *name, byoai_chat_role *out) {
    if (!strcmp(name, "system") || !strcmp(name, "developer")) *out = BYOAI_ROLE_SYSTEM;
    else if (!strcmp(name, "user")) *out = BYOAI_ROLE_USER;
    else if (!strcmp(name, "assistant")) *out = BYOAI_ROLE_ASSISTANT;
    else if (!strcmp(name, "tool")) *out = BYOAI_ROLE_TOOL;
    else return false;
    return true;
}

static bool has(const char *t, size_t n, const char *needle) {
    size_t k = strlen(needle);
    if (k > n) return false;
    for (size_t i = 0; i + k <= n; i++)
        if (t[i] == needle[0] && !memcmp(t + i, needle, k)) return true;
    return false;
}

byoai_chat_family byoai_chat_detect(const char *t, size_t n) {
    if (!t || n == 0) return BYOAI_CHAT_FALLBACK;
    /* most specific markers first: several families share "[INST]" or "<|user|>" */
    if (has(t, n, "<|im_start|>")) return BYOAI_CHAT_CHATML;
    if (has(t, n, "<|start_header_id|>")) return BYOAI_CHAT_LLAMA3;
    if (has(t, n, "<start_of_turn>")) return BYOAI_CHAT_GEMMA;
    if (has(t, n, "<|user|>") && has(t, n, "<|end|>")) return BYOAI_CHAT_PHI3;
    if (has(t, n, "<|user|>")) return BYOAI_CHAT_ZEPHYR;
    if (has(t, n, "[INST]") && has(t, n, "<<SYS>>")) return BYOAI_CHAT_LLAMA2;
    if (has(t, n, "[INST]")) return BYOAI_CHAT_MISTRAL;
    return BYOAI_CHAT_FALLBACK;
}

const char *byoai_chat_stop_text(byoai_chat_family f) {
    switch (f) {
    case BYOAI_CHAT_CHATML: return "<|im_end|>";
    case BYOAI_CHAT_LLAMA3: return "<|eot_id|>";
    case BYOAI_CHAT_PHI3: return "<|end|>";
    case BYOAI_CHAT_GEMMA: return "<end_of_turn>";
    default: return NULL;
    }
}

#define M(i) (&msgs[i])

/* <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n */
static void render_chatml(sbuf *b, const byoai_chat_message *msgs, size_t n, bool gen) {
    static const char *roles[] = {"system", "user", "assistant", "tool"};
    for (size_t i = 0; i < n; i++) {
        puts_(b, "<|im_start|>");
        puts_(b, roles[M(i)->role]);
        puts_(b, "\n");
        put(b, M(i)->content, M(i)->content_len);
        puts_(b, "<|im_end|>\n");
    }
    if (gen) puts_(b, "<|im_start|>assistant\n");
}

/* <|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|> ... */
static void render_llama3(sbuf *b, const byoai_chat_message *msgs, size_t n, bool gen) {
    static const char *roles[] = {"system", "user", "assistant", "ipython"}; /* tool results: ipython */
    for (size_t i = 0; i < n; i++) {
        puts_(b, "<|start_header_id|>");
        puts_(b, roles[M(i)->role]);
        puts_(b, "<|end_header_id|>\n\n");
        put_trimmed(b, M(i)->content, M(i)->content_len);
        puts_(b, "<|eot_id|>");
    }
    if (gen) puts_(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Llama 2 chat: every user turn is "<s>[INST] {user} [/INST]" (the first
 * <s> left to the tokenizer), every answer " {answer} </s>"; system messages
 * go into the first user turn between <<SYS>> markers. */
static void render_llama2(sbuf *b, const byoai_chat_message *msgs, size_t n, const char *bos, const char *eos) {
    sbuf sys = {0};
    for (size_t i = 0; i < n; i++)
        if (M(i)->role == BYOAI_ROLE_SYSTEM) {
            if (sys.len) puts_(&sys, "\n");
            put_trimmed(&sys, M(i)->content, M(i)->content_len);
        }
    bool first_user = true, any = false;
    for (size_t i = 0; i < n; i++) {
        const byoai_chat_message *m = M(i);
        if (m->role == BYOAI_ROLE_SYSTEM) continue;
        if (m->role != BYOAI_ROLE_ASSISTANT) {
            if (any) puts_(b, bos);
            puts_(b, "[INST] ");
            if (first_user && sys.len) {
                puts_(b, "<<SYS>>\n");
                put(b, sys.s, sys.len);
                puts_(b, "\n<</SYS>>\n\n");
            }
            first_user = false;
            put_trimmed(b, m->content, m->content_len);
            puts_(b, " [/INST]");
        } else {
            puts_(b, " ");
            put_trimmed(b, m->content, m->content_len);
            puts_(b, " ");
            puts_(b, eos);
        }
        any = true;
    }
    if (first_user && sys.len) { /* only system messages: a user turn of its own */
        puts_(b, "[INST] <<SYS>>\n");
        put(b, sys.s, sys.len);
        puts_(b, "\n<</SYS>>\n\n [/INST]");
    }
    if (sys.oom) b->oom = true;
    free(sys.s);
}

/* Mistral instruct: "[INST] {user} [/INST] {answer}</s>[INST] ..."; system
 * text is prepended to the first user turn, separated by a blank line.
 * With tools (v3 tokenizer format): "[AVAILABLE_TOOLS] [...][/AVAILABLE_TOOLS]"
 * before the last user turn; tool results (already "[TOOL_RESULTS] ...")
 * and answers that are calls ("[TOOL_CALLS] [...]") are written as they are. */
static void render_mistral(sbuf *b, const byoai_chat_message *msgs, size_t n, const char *eos, const char *tools) {
    sbuf sys = {0};
    size_t last_user = n;
    for (size_t i = 0; i < n; i++) {
        if (M(i)->role == BYOAI_ROLE_USER) last_user = i;
        if (M(i)->role == BYOAI_ROLE_SYSTEM) {
            if (sys.len) puts_(&sys, "\n\n");
            put(&sys, M(i)->content, M(i)->content_len);
        }
    }
    bool first_user = true;
    for (size_t i = 0; i < n; i++) {
        const byoai_chat_message *m = M(i);
        if (m->role == BYOAI_ROLE_SYSTEM) continue;
        if (m->role == BYOAI_ROLE_USER) {
            if (tools && i == last_user) {
                puts_(b, "[AVAILABLE_TOOLS] ");
                puts_(b, tools);
                puts_(b, "[/AVAILABLE_TOOLS]");
            }
            puts_(b, "[INST] ");
            if (first_user && sys.len) {
                put(b, sys.s, sys.len);
                puts_(b, "\n\n");
            }
            first_user = false;
            put(b, m->content, m->content_len);
            puts_(b, " [/INST]");
        } else if (m->role == BYOAI_ROLE_TOOL) {
            put(b, m->content, m->content_len);
        } else {
            if (!(m->content_len >= 12 && !memcmp(m->content, "[TOOL_CALLS]", 12))) puts_(b, " ");
            put(b, m->content, m->content_len);
            puts_(b, eos);
        }
    }
    if (first_user && sys.len) {
        puts_(b, "[INST] ");
        put(b, sys.s, sys.len);
        puts_(b, " [/INST]");
    }
    if (sys.oom) b->oom = true;
    free(sys.s);
}

/* <|{role}|>\n{content}{end}\n ... <|assistant|>\n  (Phi-3: end = <|end|>,
 * Zephyr: end = the EOS text) */
static void render_tagged(sbuf *b, const byoai_chat_message *msgs, size_t n, bool gen, const char *end) {
    static const char *tags[] = {"<|system|>\n", "<|user|>\n", "<|assistant|>\n", "<|user|>\n"};
    for (size_t i = 0; i < n; i++) {
        puts_(b, tags[M(i)->role]);
        put(b, M(i)->content, M(i)->content_len);
        puts_(b, end);
        puts_(b, "\n");
    }
    if (gen) puts_(b, "<|assistant|>\n");
}

/* <start_of_turn>user\n{content|trim}<end_of_turn>\n<start_of_turn>model\n
 * Gemma has no system role: system text opens the first user turn. */
static void render_gemma(sbuf *b, const byoai_chat_message *msgs, size_t n, bool gen) {
    sbuf sys = {0};
    for (size_t i = 0; i < n; i++)
        if (M(i)->role == BYOAI_ROLE_SYSTEM) {
            if (sys.len) puts_(&sys, "\n\n");
            put_trimmed(&sys, M(i)->content, M(i)->content_len);
        }
    bool first_user = true;
    for (size_t i = 0; i < n; i++) {
        const byoai_chat_message *m = M(i);
        if (m->role == BYOAI_ROLE_SYSTEM) continue;
        bool user = m->role != BYOAI_ROLE_ASSISTANT;
        puts_(b, user ? "<start_of_turn>user\n" : "<start_of_turn>model\n");
        if (user && first_user && sys.len) {
            put(b, sys.s, sys.len);
            puts_(b, "\n\n");
        }
        if (user) first_user = false;
        put_trimmed(b, m->content, m->content_len);
        puts_(b, "<end_of_turn>\n");
    }
    if (first_user && sys.len) {
        puts_(b, "<start_of_turn>user\n");
        put(b, sys.s, sys.len);
        puts_(b, "<end_of_turn>\n");
    }
    if (gen) puts_(b, "<start_of_turn>model\n");
    if (sys.oom) b->oom = true;
    free(sys.s);
}

/* Fallback: the messages' contents in order, separated by blank lines, and
 * nothing else: a model without a template continues the text. */
static void render_fallback(sbuf *b, const byoai_chat_message *msgs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (i) puts_(b, "\n\n");
        put(b, M(i)->content, M(i)->content_len);
    }
}

int chat_render_messages(byoai_chat_family f, const byoai_chat_message *msgs, size_t n, bool gen, const char *bos,
                         const char *eos, const char *mistral_tools, char **out, size_t *out_len, byoai_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!msgs || n == 0) return byoai_error_set(err, BYOAI_EINVAL, "a conversation needs at least one message");
    for (size_t i = 0; i < n; i++)
        if ((unsigned)msgs[i].role > BYOAI_ROLE_TOOL || (!msgs[i].content && msgs[i].content_len))
            return byoai_error_set(err, BYOAI_EINVAL, "message %zu is malformed", i);
    if (!bos) bos = "<s>";
    if (!eos) eos = "</s>";
    sbuf b = {0};
    switch (f) {
    case BYOAI_CHAT_CHATML: render_chatml(&b, msgs, n, gen); break;
    case BYOAI_CHAT_LLAMA2: render_llama2(&b, msgs, n, bos, eos); break;
    case BYOAI_CHAT_LLAMA3: render_llama3(&b, msgs, n, gen); break;
    case BYOAI_CHAT_MISTRAL: render_mistral(&b, msgs, n, eos, mistral_tools); break;
    case BYOAI_CHAT_PHI3: render_tagged(&b, msgs, n, gen, "<|end|>"); break;
    case BYOAI_CHAT_GEMMA: render_gemma(&b, msgs, n, gen); break;
    case BYOAI_CHAT_ZEPHYR: render_tagged(&b, msgs, n, gen, eos); break;
    default: render_fallback(&b, msgs, n); break;
    }
    if (!b.s && !b.oom) {
        b.s = calloc(1, 1);
        if (!b.s) b.oom = true;
    }
    if (b.oom) {
        free(b.s);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory rendering the conversation");
    }
    *out = b.s;
    if (out_len) *out_len = b.len;
    return 0;
}

int byoai_chat_render(byoai_chat_family f, const byoai_chat_message *msgs, size_t n, bool gen, const char *bos,
                      const char *eos, char **out, size_t *out_len, byoai_error *err) {
    return byoai_chat_render_tools(f, msgs, NULL, n, NULL, 0, gen, bos, eos, out, out_len, err);
}
