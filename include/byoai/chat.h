/*
 * byoai/chat.h: turn a conversation into the prompt text a chat model was
 * trained on.
 *
 * Contract
 * - A model's tokenizer.chat_template (a Jinja program in the GGUF) is not
 *   executed: it is recognised as one of the common template families
 *   (byoai_chat_detect) and the family is rendered by C code here. Anything
 *   unrecognised uses the documented fallback (docs/server.md).
 * - The rendered text holds special tokens as text ("<|im_start|>"):
 *   tokenize it with parse_special = true. The leading BOS is NOT rendered
 *   (the tokenizer adds it when the model's metadata says so); BOS/EOS that a
 *   family puts between turns (Llama 2, Mistral, Zephyr) are rendered with
 *   the strings given.
 * - Tools (function calling): byoai_chat_render_tools puts tool definitions
 *   into the prompt the way each family was trained (Qwen/Hermes
 *   <tools> in the system turn, Llama 3.1 JSON instructions in the first user
 *   turn, Mistral [AVAILABLE_TOOLS]), renders assistant tool calls and tool
 *   results (role "tool") in the family's format, and
 *   byoai_chat_parse_tool_calls reads calls back out of a model's answer.
 *   byoai_chat_tool_syntax says how the family writes a call, for the
 *   grammar that constrains it (byoai/grammar.h).
 * - Pure functions: no global state, safe from any thread.
 */
#ifndef BYOAI_CHAT_H
#define BYOAI_CHAT_H

#include "byoai/base.h"
#include "byoai/grammar.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum byoai_chat_family {
    BYOAI_CHAT_FALLBACK = 0, /* no recognisable template: see docs/server.md */
    BYOAI_CHAT_CHATML,       /* <|im_start|>role\n...<|im_end|> (Qwen, Yi, Hermes, SmolLM) */
    BYOAI_CHAT_LLAMA2,       /* <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] */
    BYOAI_CHAT_LLAMA3,       /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    BYOAI_CHAT_MISTRAL,      /* [INST] ... [/INST]answer</s> */
    BYOAI_CHAT_PHI3,         /* <|user|>\n...<|end|>\n<|assistant|>\n */
    BYOAI_CHAT_GEMMA,        /* <start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n */
    BYOAI_CHAT_ZEPHYR,       /* <|user|>\n...</s>\n<|assistant|>\n */
    BYOAI_CHAT_FAMILY_COUNT
} byoai_chat_family;

typedef enum byoai_chat_role {
    BYOAI_ROLE_SYSTEM = 0, /* "system" and "developer" */
    BYOAI_ROLE_USER,
    BYOAI_ROLE_ASSISTANT,
    BYOAI_ROLE_TOOL,       /* a tool's result */
} byoai_chat_role;

/* A call an assistant made (in the conversation's history). */
typedef struct byoai_chat_tool_call {
    const char *id;        /* may be NULL */
    const char *name;
    const char *arguments; /* JSON text (an object), as OpenAI clients send it */
} byoai_chat_tool_call;

/* One message. content need not be NUL-terminated. */
typedef struct byoai_chat_message {
    byoai_chat_role role;
    const char *content;
    size_t content_len;
} byoai_chat_message;

/* What a message says about tools, beside it (byoai_chat_render_tools). */
typedef struct byoai_chat_message_tools {
    const byoai_chat_tool_call *tool_calls; /* assistant: calls it made */
    size_t n_tool_calls;
    const char *tool_call_id; /* tool: the call this answers (may be NULL) */
    const char *name;         /* tool: the tool's name (may be NULL) */
} byoai_chat_message_tools;

/* Recognise a tokenizer.chat_template (may be NULL / len 0: fallback). */
byoai_chat_family byoai_chat_detect(const char *tmpl, size_t len);
/* "chatml", "llama2", ... "fallback". */
const char *byoai_chat_family_name(byoai_chat_family f);
/* Parse a family name (as byoai_chat_family_name prints it); BYOAI_EINVAL
 * with the list of names otherwise. */
int byoai_chat_family_parse(const char *name, byoai_chat_family *out, byoai_error *err);
/* Parse a role ("system", "developer", "user", "assistant", "tool"); false otherwise. */
bool byoai_chat_role_parse(const char *name, byoai_chat_role *out);

/* Render messages[0..n) of family f, ending with the cue for the assistant's
 * next turn when add_generation_prompt. bos/eos: the model's BOS/EOS token
 * texts (NULL: "<s>" / "</s>"). *out is malloc'd and NUL-terminated; the
 * caller frees it. Fails with BYOAI_EINVAL when there are no messages. */
int byoai_chat_render(byoai_chat_family f, const byoai_chat_message *messages, size_t n, bool add_generation_prompt,
                      const char *bos, const char *eos, char **out, size_t *out_len, byoai_error *err);

/* byoai_chat_render with tools: extra (NULL, or one entry per message) holds
 * the messages' tool calls and result ids; tools[0..n_tools) are JSON texts
 * of {"type": "function", "function": {"name", "description", "parameters"}}
 * (n_tools may be 0; calls and results in the history are rendered either
 * way). */
int byoai_chat_render_tools(byoai_chat_family f, const byoai_chat_message *messages,
                            const byoai_chat_message_tools *extra, size_t n,
                            const char *const *tools, size_t n_tools, bool add_generation_prompt, const char *bos,
                            const char *eos, char **out, size_t *out_len, byoai_error *err);

/* How family f writes tool calls (Hermes-style <tool_call> for the families
 * without a format of their own). */
const byoai_tool_syntax *byoai_chat_tool_syntax(byoai_chat_family f);

/* Tool calls read from an answer: content is the text outside the calls. */
typedef struct byoai_chat_parsed_call {
    char *name;
    char *arguments; /* compact JSON text of an object */
} byoai_chat_parsed_call;

typedef struct byoai_chat_parsed {
    char *content;
    size_t content_len;
    byoai_chat_parsed_call *calls;
    size_t n_calls;
} byoai_chat_parsed;

/* Read the calls in text[0..len) written in family f's syntax. Text that
 * holds no well-formed call is all content (n_calls 0). Fills *out
 * (malloc'd; free with byoai_chat_parsed_free); fails only for memory. */
int byoai_chat_parse_tool_calls(byoai_chat_family f, const char *text, size_t len, byoai_chat_parsed *out,
                                byoai_error *err);
void byoai_chat_parsed_free(byoai_chat_parsed *p);

/* Text that ends an assistant turn in family f (e.g. "<|im_end|>"), or NULL:
 * generation stops when it appears, even if the model's tokenizer does not
 * mark its token as end-of-generation. */
const char *byoai_chat_stop_text(byoai_chat_family f);

#ifdef __cplusplus
}
#endif
#endif
