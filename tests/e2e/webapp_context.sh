#!/usr/bin/env bash
# The web app with a conversation longer than the model's context (128
# tokens): every turn gets an answer (the server drops the oldest turns and
# the app says so once), an error shows as a notice, never an empty bubble.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../integration/lib.sh"
. "$here/../integration/lib_serve.sh"
require_node_modules
[ -x /usr/bin/chromium ] || fail "chromium is not installed: run 'bash scripts/install-deps.sh --e2e' (or 'make test')"
start_server "$STORIES" --alias tiny --ctx 128
mkdir -p "$BYOAI_BUILD/e2e"
BYOAI_URL=$URL SHOTS="$BYOAI_BUILD/e2e" CHROME_PROFILE="$T/chrome" \
  node "$here/webapp_context.mjs" || fail "web app context test failed (screenshots in $BYOAI_BUILD/e2e)"
stop_server
pass "web app: a conversation longer than the context"
