#!/usr/bin/env python3
"""Run a command on a pseudo-terminal and talk to it like a person: a script
of steps, each `expect REGEX` (wait up to 60 s for output matching it),
`send TEXT` (a line; \\n in TEXT is a newline), `raw TEXT` (no newline) or
`exit CODE` (wait for the end and check the exit status). Everything the
program wrote goes to the file given with --log.

Usage: pty_session.py --log FILE SCRIPT -- COMMAND ARGS..."""
import os, pty, re, select, sys, time

args = sys.argv[1:]
log = args[args.index("--log") + 1]
script = open(args[args.index("--log") + 2]).read().splitlines()
cmd = args[args.index("--") + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
out = b""
seen = 0  # expect matches only output after the previous match

def read_for(deadline):
    global out
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return False
            if not data:
                return False
            out += data
            return True
    return True

def save():
    open(log, "wb").write(out)

for line in script:
    if not line.strip() or line.startswith("#"):
        continue
    op, _, arg = line.partition(" ")
    if op == "expect":
        rx = re.compile(arg.encode(), re.S)
        deadline = time.time() + 60
        while True:
            m = rx.search(out, seen)
            if m:
                seen = m.end()
                break
            if not read_for(min(deadline, time.time() + 0.5)) or time.time() > deadline:
                if rx.search(out, seen):
                    continue
                save()
                sys.exit("pty_session: timed out waiting for %r; output so far is in %s" % (arg, log))
    elif op in ("send", "raw"):
        text = arg.replace("\\n", "\n") + ("\n" if op == "send" else "")
        os.write(fd, text.encode())
    elif op == "exit":
        deadline = time.time() + 60
        while read_for(deadline):
            pass
        _, status = os.waitpid(pid, 0)
        save()
        code = os.waitstatus_to_exitcode(status)
        if code != int(arg):
            sys.exit("pty_session: exit status %d, want %s; output in %s" % (code, arg, log))
        sys.exit(0)
    else:
        sys.exit("pty_session: unknown step %r" % line)
save()
