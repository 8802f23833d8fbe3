#!/usr/bin/env bash
# The web app in headless Chromium (Debian's chromium driven by npm's
# playwright-core): chat with streamed output, conversations kept across a
# reload, safe rendering, installing a model, a phone-sized layout. Screenshots go to
# $BYOAI_BUILD/e2e/.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../integration/lib.sh"
. "$here/../integration/lib_registry.sh"
. "$here/../integration/lib_serve.sh"
require_node_modules
[ -x /usr/bin/chromium ] || fail "chromium is not installed: run 'bash scripts/install-deps.sh --e2e' (or 'make test')"
setup_registry   # a local registry with stories260k, for installing from the app
start_server "$STORIES" --alias tiny --parallel 2 --ctx 2048
mkdir -p "$BYOAI_BUILD/e2e"
rm -f "$BYOAI_BUILD/e2e/webapp-failure.png"
BYOAI_URL=$URL SHOTS="$BYOAI_BUILD/e2e" CHROME_PROFILE="$T/chrome" \
  node "$here/webapp.mjs" || fail "web app test failed (screenshots in $BYOAI_BUILD/e2e)"
stop_server
pass "web app end to end"
