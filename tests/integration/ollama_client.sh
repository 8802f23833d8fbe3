#!/usr/bin/env bash
# The official ollama npm client (ollama-js) against byoai serve: list,
# pull through byoai's registries (a real `byoai registry serve`), show, ps,
# chat and generate streamed and not, structured output and tool calls
# checked with ajv, embed, delete and errors. See ollama_client.mjs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_registry.sh"
. "$(dirname "$0")/lib_serve.sh"
require_node_modules
setup_registry
start_server "$STORIES" --alias stories-file --ctx 4096 --parallel 4
BYOAI_URL=$URL node --test --test-reporter=spec "$(dirname "$0")/ollama_client.mjs" ||
  fail "ollama client tests failed (server log: $(tail -5 "$T/server.log"))"
stop_server
pass "ollama client"
