#!/usr/bin/env bash
# The official openai npm client against byoai serve (stories260K): see
# openai_client.mjs (the API) and openai_tools.mjs (tools, json_schema with
# ajv) for what is checked.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_serve.sh"
require_node_modules
KEY=test-key-$RANDOM$RANDOM
start_server "$STORIES" --alias stories260k --parallel 8 --ctx 4096 --api-key "$KEY"
BYOAI_URL=$URL BYOAI_KEY=$KEY node --test --test-reporter=spec "$(dirname "$0")/openai_client.mjs" \
  "$(dirname "$0")/openai_tools.mjs" ||
  fail "openai client tests failed (server log: $(tail -5 "$T/server.log"))"
stop_server
pass "openai client"
