#!/bin/bash
# passwd.sh - `uvmq passwd` on real files, read back by the real mosquitto.
#
# In a temp dir: -c -b creates a 0600 file (argon2id by default); a second
# user is appended, an update rewrites one line in place, comments and
# blank lines stay, -D deletes (and fails, naming the file, for a user
# that is not there); each -H type and -I; -U hashes a plaintext file in
# place and keeps its hashed lines; a malformed file, a missing file, bad
# user names and passwords are refused with exit 1, the file untouched and
# no temporary file left; the prompt asks twice through a pty (python3),
# echoes nothing, and refuses two different passwords; --help.
#
# Then Debian's mosquitto 2.0 broker (/usr/sbin/mosquitto; the tests SKIP
# without it) reads a file uvmq passwd wrote: right passwords connect,
# a wrong one is "not authorised". Only -H sha512-pbkdf2 and -H sha512 are
# tried there: mosquitto 2.0 cannot read argon2id (2.1 can), and it reads
# only 12-byte $7$ salts, which is what auth/ writes (PASSWD_PBKDF2_SALT).
# A user that mosquitto_passwd 2.0 made in the same file must keep working.
#
# Last, uvmq itself ($UVMQ_BIN on free 127.0.0.1 ports, a config naming
# the file) reads a file only uvmq passwd wrote (argon2id, sha512-pbkdf2,
# sha512, and the -U lines): mosquitto_pub gets in with each right
# password and is refused ("bad user name or password") with a wrong one;
# after uvmq passwd -D and SIGHUP the deleted user is refused too; SIGTERM
# stops the broker with exit status 0.
#
# Prints TAP. Every command is bounded (timeout, bounded waits); only pids
# this script started are ever signalled.
set -u
cd "$(dirname "$0")/../.." || exit 1
UVMQ_BIN=${UVMQ_BIN:-$PWD/build/uvmq}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
. tests/integration/harness/clients.bash

echo "1..32"

D="$TMP/pw"
mkdir -p "$D"
F="$D/passwd"
OUT="$TMP/out"

# upw ARGS...: uvmq passwd, bounded, stdout and stderr into $OUT.
upw() { timeout 60 "$UVMQ_BIN" passwd "$@" >"$OUT" 2>&1 </dev/null; }

# check NAME COMMAND...: ok when COMMAND succeeds; $OUT and the file shown
# when it does not.
check() {
    local name=$1; shift
    if "$@"; then ok "$name"; else
        { echo "--- $F:"; cat "$F"; } >>"$OUT" 2>/dev/null
        [ -f "$TMP/mosquitto.log" ] && { echo "--- mosquitto:"; tail -15 "$TMP/mosquitto.log"; } >>"$OUT"
        not_ok "$name" "$OUT"
    fi
}

# user_line USER: USER's line of $F.
user_line() { grep "^$1:" "$F"; }

# only_files NAME...: $D holds exactly these files (no temporary left).
only_files() { [ "$(cd "$D" && ls -A | sort | tr '\n' ' ')" = "$(printf '%s\n' "$@" | sort | tr '\n' ' ')" ]; }

# refused EXPECT ARGS...: uvmq passwd ARGS exits 1 with EXPECT in its
# message, and $F is byte for byte what it was.
refused() {
    local expect=$1; shift
    cp "$F" "$TMP/before"
    upw "$@"
    [ $? -eq 1 ] && grep -qF -- "$expect" "$OUT" && cmp -s "$F" "$TMP/before"
}

# A line "USER:<hash>" of each type, as extended regular expressions.
ARGON='\$argon2id\$v=19\$m=47104,t=1,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$'
SHA='\$6\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$'
PBKDF2='\$7\$1000\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$'

# line N: line N of $F.
line() { sed -n "$1p" "$F"; }
lines() { wc -l <"$F"; }

# ---- creating, adding, updating, deleting ----

t_create() { upw -c -b "$F" alice apple && [ "$(lines)" = 1 ] && user_line alice | grep -qE "^alice:$ARGON"; }
check "-c -b creates the file with one argon2id user" t_create
t_mode() { [ "$(stat -c %a "$F")" = 600 ] && only_files passwd; }
check "the file is written with mode 0600, no temporary file left" t_mode

alice1=$(user_line alice)
t_add() { upw -b "$F" bob banana && [ "$(line 1)" = "$alice1" ] && line 2 | grep -qE "^bob:$ARGON" && [ "$(lines)" = 2 ]; }
check "a second user is appended and the first line stays as it was" t_add

bob1=$(user_line bob)
t_update() {
    upw -b "$F" alice apricot && line 1 | grep -qE "^alice:$ARGON" && [ "$(line 1)" != "$alice1" ] &&
        [ "$(line 2)" = "$bob1" ] && [ "$(lines)" = 2 ]
}
check "an update rewrites only that user's line, in its place" t_update

{ echo "# users of the test broker"; echo; cat "$F"; echo "  # indented comment"; } >"$TMP/c"
cp "$TMP/c" "$F"
t_comments() {
    upw -b "$F" bob blueberry && [ "$(line 1)" = "# users of the test broker" ] && [ -z "$(line 2)" ] &&
        [ "$(line 3)" = "$(sed -n 3p "$TMP/c")" ] && line 4 | grep -qE "^bob:$ARGON" &&
        [ "$(line 4)" != "$bob1" ] && [ "$(line 5)" = "  # indented comment" ] && [ "$(lines)" = 5 ] &&
        [ "$(stat -c %a "$F")" = 600 ]
}
check "comments and blank lines stay where they were; still 0600" t_comments

t_delete() { upw -D "$F" bob && ! user_line bob && [ "$(line 3)" = "$(sed -n 3p "$TMP/c")" ] && [ "$(lines)" = 4 ]; }
check "-D deletes the user and keeps the other lines" t_delete
check "-D of a user not in the file fails naming the file and changes nothing" \
    refused "$F: no user \"bob\" in it" -D "$F" bob

# ---- hash types ----

t_sha512() { upw -H sha512 -b "$F" six pw6 && user_line six | grep -qE "^six:$SHA"; }
check "-H sha512 writes a \$6\$ hash" t_sha512
t_pbkdf2() { upw -H sha512-pbkdf2 -b "$F" seven pw7 && user_line seven | grep -qE "^seven:$PBKDF2"; }
check "-H sha512-pbkdf2 writes a \$7\$ hash of 1000 iterations" t_pbkdf2
t_iter() { upw -H sha512-pbkdf2 -I 2000 -b "$F" iter pw7 && user_line iter | grep -qE '^iter:\$7\$2000\$'; }
check "-I sets the PBKDF2 iterations" t_iter
t_argon() { upw -H argon2id -b "$F" argon pw8 && user_line argon | grep -qE "^argon:$ARGON"; }
check "-H argon2id writes an argon2id hash" t_argon
check "-I without -H sha512-pbkdf2 is refused" refused "-I goes with -H sha512-pbkdf2 only" -I 5 -b "$F" x y
check "an unknown -H is refused" refused '-H: unknown hash "md5"' -H md5 -b "$F" x y

# ---- -U ----

P="$D/plain"
{
    echo "# plaintext, as mosquitto 1.x read it"
    echo "carol:cherry"
    echo
    echo " dave : date with spaces inside "
    echo "erin:$(user_line seven | cut -d: -f2-)"
} >"$P"
t_upgrade() {
    upw -H sha512-pbkdf2 -U "$P" && [ "$(sed -n 1p "$P")" = "# plaintext, as mosquitto 1.x read it" ] &&
        sed -n 2p "$P" | grep -qE "^carol:$PBKDF2" && [ -z "$(sed -n 3p "$P")" ] &&
        sed -n 4p "$P" | grep -qE "^dave:$PBKDF2" && [ "$(sed -n 5p "$P")" = "erin:$(user_line seven | cut -d: -f2-)" ] &&
        [ "$(wc -l <"$P")" = 5 ] && [ "$(stat -c %a "$P")" = 600 ] && ! grep -q cherry "$P"
}
check "-U hashes the plaintext lines, keeps comments, blank and hashed lines" t_upgrade
t_upgrade_again() { cp "$P" "$TMP/p2" && upw -U "$P" && cmp -s "$P" "$TMP/p2"; }
check "-U on a file with nothing left to hash keeps every byte" t_upgrade_again

# ---- refusals ----

printf 'ok:%s\nthis line has no colon\n' "$(user_line six | cut -d: -f2-)" >"$D/bad"
t_malformed() {
    cp "$D/bad" "$TMP/bad0"
    upw -b "$D/bad" x y
    [ $? -eq 1 ] && grep -qF "$D/bad:2:" "$OUT" && [ "$(wc -l <"$OUT")" = 1 ] && cmp -s "$D/bad" "$TMP/bad0"
}
check "a malformed file is refused with one FILE:LINE message and left unchanged" t_malformed
t_missing() { upw -b "$D/none" x y; [ $? -eq 1 ] && grep -qF "$D/none: No such file" "$OUT" && [ ! -e "$D/none" ]; }
check "a missing file is refused without -c" t_missing
t_users() {
    refused "the user name holds a ':'" -b "$F" "a:b" pw &&
        refused "the user name holds a control character" -b "$F" "$(printf 'a\tb')" pw &&
        refused "the user name is empty" -b "$F" "" pw &&
        refused "the user name starts with '#'" -b "$F" "#x" pw
}
check "user names with ':', control characters, a leading '#' or none are refused" t_users
check "an empty password is refused" refused "the password is empty" -b "$F" x ""
t_usage() {
    refused "-c and -D cannot be used together" -c -D "$F" x &&
        refused "Usage: uvmq passwd" -b "$F" x && refused "unknown option -Z" -Z "$F" x
}
check "-c with -D, an unknown flag and a wrong argument count are usage errors" t_usage
# A rename over a directory fails after the temporary file is written.
mkdir -p "$D/adir/sub"
t_rename() {
    upw -c -b "$D/adir" x y
    [ $? -eq 1 ] && grep -qF "$D/adir: cannot rename" "$OUT" && [ -d "$D/adir/sub" ]
}
check "a failed rename leaves the old name as it was" t_rename
check "no temporary file is left behind" only_files passwd plain bad adir

# ---- the prompt, through a pty ----

# prompt_run PW1 PW2 ARGS...: uvmq passwd ARGS on a pty, typing PW1 and
# PW2 at its two prompts; what the pty showed goes to $OUT. Fails when a
# password shows on the pty.
prompt_run() {
    PW1=$1 PW2=$2 timeout 60 python3 - "$UVMQ_BIN" passwd "${@:3}" >"$OUT" 2>&1 <<'PY'
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
seen = b""
until = time.time() + 30
def read_some():
    """Adds what the pty has to seen; False at its end."""
    global seen
    if not select.select([fd], [], [], 0.2)[0]:
        return True
    try:
        chunk = os.read(fd, 4096)
    except OSError:  # EIO: the child has closed the pty
        return False
    seen += chunk
    return chunk != b""
def expect(text):
    while text not in seen:
        if time.time() > until or not read_some():
            sys.stdout.write(seen.decode(errors="replace"))
            sys.exit("no %r on the pty" % text)
expect(b"Password: ")
os.write(fd, os.environ["PW1"].encode() + b"\n")
expect(b"Reenter password: ")
os.write(fd, os.environ["PW2"].encode() + b"\n")
while time.time() < until and read_some():
    pass
status = os.waitpid(pid, 0)[1]
sys.stdout.write(seen.decode(errors="replace"))
if os.environ["PW1"].encode() in seen or os.environ["PW2"].encode() in seen:
    sys.exit("a password was echoed")
sys.exit(os.waitstatus_to_exitcode(status))
PY
}

t_prompt() { prompt_run Typed-Secret-1 Typed-Secret-1 "$F" frank && user_line frank | grep -qE "^frank:$ARGON"; }
check "the prompt asks twice without echo and writes the user" t_prompt
t_prompt_differ() {
    cp "$F" "$TMP/before"
    ! prompt_run Typed-Secret-2 Typed-Secret-3 "$F" grace &&
        grep -qF "$F: the passwords do not match" "$OUT" && cmp -s "$F" "$TMP/before"
}
check "two different passwords at the prompt are refused and change nothing" t_prompt_differ

t_help() {
    timeout 10 "$UVMQ_BIN" passwd --help >"$OUT" 2>&1 && grep -q "^Usage: uvmq passwd" "$OUT" &&
        timeout 10 "$UVMQ_BIN" --help 2>&1 | grep -q "uvmq passwd"
}
check "--help prints the usage; uvmq --help names the subcommand" t_help

# ---- Debian's mosquitto 2.0 reads what uvmq passwd wrote ----

MQ_PID=
MQ_PORT=
# start_mosquitto FILE: mosquitto on a free port with FILE as its password
# file; 0 once it accepts (10 s at most, five ports tried).
start_mosquitto() {
    local attempt i
    for attempt in 1 2 3 4 5; do
        MQ_PORT=$(pick_port) || return 1
        {
            echo "listener $MQ_PORT 127.0.0.1"
            echo "allow_anonymous false"
            echo "password_file $1"
            echo "persistence false"
            echo "log_dest stderr"
            # As root mosquitto would drop to the mosquitto user, which
            # cannot read a 0600 file of root's in a 0700 temp dir.
            [ "$(id -u)" = 0 ] && echo "user root"
        } >"$TMP/mosquitto.conf"
        "$MOSQUITTO" -c "$TMP/mosquitto.conf" >>"$TMP/mosquitto.log" 2>&1 &
        MQ_PID=$!
        PIDS+=("$MQ_PID")
        for i in $(seq 1 500); do
            accepts "$MQ_PORT" && return 0
            kill -0 "$MQ_PID" 2>/dev/null || break
            sleep 0.02
        done
        kill -0 "$MQ_PID" 2>/dev/null && kill -KILL "$MQ_PID"
        wait "$MQ_PID" 2>/dev/null
        MQ_PID=
    done
    return 1
}

stop_mosquitto() {
    [ -n "$MQ_PID" ] || return 0
    kill -TERM "$MQ_PID" 2>/dev/null
    wait_exit "$MQ_PID" 10 || { kill -KILL "$MQ_PID" 2>/dev/null; wait "$MQ_PID" 2>/dev/null; }
    MQ_PID=
}

# mq_pub USER PASSWORD: one publish to mosquitto, output in $OUT.
mq_pub() { timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQ_PORT" -u "$1" -P "$2" -t t -m x >>"$OUT" 2>&1; }

MQ="$D/mosq"
F=$MQ # what a failed check shows
if [ ! -x "$MOSQUITTO" ]; then
    for i in 1 2 3; do ok "mosquitto 2.0 reads uvmq passwd's file # SKIP $MOSQUITTO is not installed"; done
else
    : >"$OUT"
    if timeout 30 mosquitto_passwd -c -b "$MQ" old-user old-pass >>"$OUT" 2>&1 &&
        upw -H sha512-pbkdf2 -b "$MQ" alice pbkdf2-pass && upw -H sha512 -b "$MQ" bob sha-pass &&
        cat "$P" >>"$MQ" && start_mosquitto "$MQ"; then
        t_mq_in() {
            mq_pub alice pbkdf2-pass && mq_pub bob sha-pass && mq_pub carol cherry &&
                mq_pub dave "date with spaces inside"
        }
        check "mosquitto 2.0 lets in sha512-pbkdf2, sha512 and -U users uvmq passwd wrote" t_mq_in
        t_mq_out() { ! mq_pub alice pbkdf2-wrong && grep -qi "not authori" "$OUT" && ! mq_pub bob pbkdf2-pass; }
        check "mosquitto 2.0 refuses a wrong password (not authorised)" t_mq_out
        check "a user mosquitto_passwd 2.0 wrote still gets in beside them" mq_pub old-user old-pass
    else
        cat "$TMP/mosquitto.log" >>"$OUT" 2>/dev/null
        for i in 1 2 3; do not_ok "mosquitto 2.0 starts with uvmq passwd's file" "$OUT"; done
    fi
    stop_mosquitto
fi

# ---- uvmq reads what uvmq passwd wrote ----

UF="$TMP/uvmq.passwd"
F=$UF # what a failed check shows
CONFIG="$TMP/uvmq.json"
printf '{"password_file": "%s"}\n' "$UF" >"$CONFIG"
# u_pub USER PASSWORD: one publish to uvmq, output in $OUT.
u_pub() { timeout 10 mosquitto_pub -h 127.0.0.1 -p "$PORT" -u "$1" -P "$2" -t t -m x >>"$OUT" 2>&1; }

: >"$OUT"
if upw -c -b "$UF" ann argon-pass && upw -H sha512-pbkdf2 -b "$UF" ben pbkdf2-pass &&
    upw -H sha512 -b "$UF" cid sha-pass && cat "$P" >>"$UF" && start_broker; then
    t_uvmq_in() {
        : >"$OUT"
        u_pub ann argon-pass && u_pub ben pbkdf2-pass && u_pub cid sha-pass && u_pub carol cherry &&
            u_pub dave "date with spaces inside" && u_pub erin pw7
    }
    check "uvmq lets in the argon2id, sha512-pbkdf2, sha512 and -U users uvmq passwd wrote" t_uvmq_in
    t_uvmq_out() {
        : >"$OUT"
        ! u_pub ann argon-pass2 && ! u_pub ben sha-pass &&
            [ "$(grep -c "Connection Refused: bad user name or password" "$OUT")" = 2 ]
    }
    check "uvmq refuses a wrong password (bad user name or password)" t_uvmq_out
    t_uvmq_deleted() {
        : >"$OUT"
        upw -D "$UF" ann && kill -HUP "$BROKER_PID" &&
            wait_for "$TMP/broker.log" "password file $UF reloaded: 5 users" &&
            ! u_pub ann argon-pass && grep -qF "bad user name or password" "$OUT" && u_pub ben pbkdf2-pass
    }
    check "after uvmq passwd -D and SIGHUP uvmq refuses the deleted user" t_uvmq_deleted
    stop_broker
else
    cat "$TMP/broker.log" >>"$OUT" 2>/dev/null
    for i in 1 2 3 4; do not_ok "uvmq starts with a file uvmq passwd wrote" "$OUT"; done
fi

[ "$failed" -eq 0 ]
