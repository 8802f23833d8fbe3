#!/usr/bin/env bash
# Interactive `byoai run` through a pseudo-terminal, as a person uses it:
# commands (/?, /show, /set, /clear, /bye), multi-line messages, a chat and
# a plain text that both outgrow the context and keep going (said once), a
# message too long for the context refused without ending the session, and
# a model that is not installed offered for install.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_registry.sh"
HERE=$(dirname "$0")
python3 "$HERE/gguf_chatml.py" "$STORIES" "$T/chat.gguf"
session() { # session SCRIPT ARGS...: run byoai on a pty with the script
  local script=$1; shift
  python3 "$HERE/pty_session.py" --log "$T/pty.log" "$script" -- "$BYOAI_BIN" "$@" ||
    { cat "$T/pty.log" >&2; fail "interactive session: $*"; }
}

# commands and multi-line input
cat >"$T/s1" <<'S'
expect type a message, /\? for help
expect >>> 
send /?
expect /set parameter NAME VALUE.*>>> 
send /show info
expect architecture +llama.*context length +128 in use.*>>> 
send /set parameter temperature 0
expect Set parameter 'temperature' to '0'.*>>> 
send /set parameter top_k lots
expect 'top_k' needs a whole number from 0 to 16777216, not 'lots'.*>>> 
send /show parameters
expect temperature +0\r?\n.*>>> 
send /nope
expect Unknown command '/nope'.*>>> 
send """
expect \.\.\. 
send Once upon
send a time
send """
expect , there was.*>>> 
send /clear
expect Cleared the conversation.*>>> 
send /bye
exit 0
S
session "$T/s1" run "$STORIES" -n 12
pass "commands, multi-line input, /bye"

# a chat that outgrows its 128-token context keeps answering, says so once
{
  echo 'expect >>> '
  echo 'send /set parameter temperature 0'
  echo 'expect >>> '
  for i in $(seq 1 8); do
    echo "send Tell me about the dog number $i."
    echo 'expect >>> '
  done
  echo 'send /bye'
  echo 'exit 0'
} >"$T/s2"
session "$T/s2" run "$T/chat.gguf" --ctx 128 -n 24
n=$(grep -c "no longer fits the 128-token context" "$T/pty.log" || true)
[ "$n" = 1 ] || fail "the context note should appear once, saw $n: $(cat "$T/pty.log")"
grep -q "context is full\|error" "$T/pty.log" && fail "a turn failed: $(cat "$T/pty.log")"
[ "$(grep -c '>>> ' "$T/pty.log")" -ge 10 ] || fail "the session did not reach every prompt"
pass "a chat past its context: oldest turns dropped, said once, every turn answered"

# plain text past the context: generation goes on (shifting), said once
# -n 300 in a 128-token context: the summary counts all 300 tokens
cat >"$T/s3" <<'S'
expect >>> 
send Once upon a time
expect >>> 
send /bye
expect generation 300 tokens
exit 0
S
session "$T/s3" run "$STORIES" --ctx 128 -n 300 --temp 0
[ "$(grep -c "no longer fits" "$T/pty.log")" = 1 ] || fail "plain text: the note should appear once: $(cat "$T/pty.log")"
pass "plain text generates 300 tokens in a 128-token context"

# a message longer than the whole context is refused; the session goes on
long=$(python3 -c 'print("the dog ran and ran " * 60)')
cat >"$T/s4" <<S
expect >>> 
send $long
expect this message is [0-9]+ tokens.*the context holds 128: send a shorter one.*>>> 
send Once upon a time
expect >>> 
send /bye
exit 0
S
session "$T/s4" run "$T/chat.gguf" --ctx 128 -n 8
# the same in plain text
sed -i 's/this message is \[0-9\]+ tokens.*the context holds 128: send a shorter one/the message .[0-9]+ tokens. does not fit the 128-token context/' "$T/s4"
session "$T/s4" run "$STORIES" --ctx 128 -n 8
pass "a message too long for the context is refused, the session goes on"

# a model that is not installed: offered on a terminal, refused with a hint elsewhere
setup_registry
cat >"$T/s5" <<'S'
expect 'stories260k' is not installed\. Install it now\? \[Y/n\] 
send y
expect installed.*>>> 
send /show info
expect architecture +llama
send /bye
exit 0
S
session "$T/s5" run stories260k -n 4
"$BYOAI_BIN" list | grep -q stories260k || fail "not installed after the offer"
"$BYOAI_BIN" remove stories260k >/dev/null || fail "remove"
cat >"$T/s6" <<'S'
expect Install it now\? \[Y/n\] 
send n
expect not installed; `byoai install stories260k` installs it
exit 1
S
session "$T/s6" run stories260k
expect_exit 1 "$BYOAI_BIN" run stories260k -p hi </dev/null
grep -q "not installed; install it with \`byoai install stories260k\` (or pass --yes" "$T/err" || fail "hint: $(cat "$T/err")"
expect_exit 0 "$BYOAI_BIN" run stories260k --yes -p "Once upon a time" -n 4 --temp 0 </dev/null
grep -q "^Once upon a time, there was a" "$T/out" || fail "--yes install and run: $(cat "$T/out")"
pass "a missing model is offered for install (asked on a terminal, --yes, a hint otherwise)"
