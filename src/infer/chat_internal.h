/*
 * Shared by chat_template.c (the families' renderers) and chat_tools.c
 * (tools: definitions in the prompt, calls and results in the history,
 * calls read back from answers).
 */
#ifndef BYOAI_CHAT_INTERNAL_H
#define BYOAI_CHAT_INTERNAL_H

#include "byoai/chat.h"

/* Render messages whose tool calls and results chat_tools.c has already
 * turned into text (roles system, user, assistant, and tool for the
 * families that have a tool role: Llama 3's ipython, Mistral's raw
 * [TOOL_RESULTS]). mistral_tools: the [AVAILABLE_TOOLS] array text or NULL. */
int chat_render_messages(byoai_chat_family f, const byoai_chat_message *msgs, size_t n, bool gen, const char *bos,
                         const char *eos, const char *mistral_tools, char **out, size_t *out_len, byoai_error *err);

#endif
