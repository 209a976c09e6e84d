#!/bin/bash
# bench/connect.sh - CONNECT storms with passwords (issue 14): what uvmq's
# access control costs per CONNECT, with and without its cache.
#
# Builds (unless SKIP_BUILD=1), writes the password files into a temp dir
# (PBKDF2-SHA512 "$7$" and argon2id, CONNECT_USERS users u0.. with one
# password), then runs the C scenarios of bench/scenarios.sh through
# bench/fanout.sh: a fresh broker per run (uvmq --threads 2 with its thread
# pool pinned to CPU 0, the generator on CPU 1), ROUNDS rounds alternating
# the brokers, medians printed and written to bench/results/.
#   C7   $7$ users, auth_cache_size 0: every CONNECT is hashed
#   C7w  one $7$ user, cache on: a reconnect storm of known credentials
#   CA   argon2id users (mosquitto 2.1's t=1, 46 MiB, p=1), cache off
#   CAw  one argon2id user, cache on
#   C0   no password file: the anonymous baseline
# mosquitto runs C7 and C0 (it reads $7$ and hashes on its one thread).
# Environment: everything bench/fanout.sh reads (ROUNDS, DURATION, WARMUP
# (5 s here), BROKERS, UVMQ, UVMQ_B, ...), plus SCENARIOS (C7 C7w CA CAw C0),
# CONNECT_USERS (100), CONNECT_CONNS (50 CONNECTs in flight),
# CONNECT_PASSWORD, PBKDF2_ITERATIONS (uvmq passwd's default when empty;
# mosquitto_passwd always writes 101). docs/benchmarks.md, "CONNECTs with
# passwords".
set -u
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=bench/scenarios.sh
. bench/scenarios.sh

export SCENARIOS=${SCENARIOS:-C7 C7w CA CAw C0}
export BROKERS=${BROKERS:-uvmq mosquitto}
export CONNECT_USERS=${CONNECT_USERS:-100}
export CONNECT_CONNS=${CONNECT_CONNS:-50}
export CONNECT_PASSWORD=${CONNECT_PASSWORD:-bench-secret}
# The warm-up covers the first CONNECTs of CAw, which miss the empty cache
# together (the broker hashes them once per worker loop since it merges
# checks of the same credentials; before, 50 argon2id hashes took 3.5 s).
export WARMUP=${WARMUP:-5}
PBKDF2_ITERATIONS=${PBKDF2_ITERATIONS:-}
SKIP_BUILD=${SKIP_BUILD:-0}
UVMQ=${UVMQ:-build/uvmq}
ARGON2_SALT=64               # mosquitto 2.1's argon2id: salt and hash bytes,
ARGON2_KIB=47104             # memory (46 MiB), one pass, one lane

AUTH_DIR=""

say() { printf 'connect: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

cleanup() { [ -n "$AUTH_DIR" ] && rm -rf "$AUTH_DIR"; }

# True when $UVMQ has the passwd subcommand (access control merged).
have_uvmq_passwd() { "$UVMQ" passwd -h >/dev/null 2>&1; }

# Writes the plaintext "user:password" lines of every user to $1.
write_plain() {
    local i
    for ((i = 0; i < CONNECT_USERS; i++)); do
        printf 'u%d:%s\n' "$i" "$CONNECT_PASSWORD"
    done >"$1"
}

# $AUTH_DIR/pbkdf2.txt: "$7$" hashes by uvmq passwd, else mosquitto_passwd.
# Prints the tool used.
make_pbkdf2() {
    local f="$AUTH_DIR/pbkdf2.txt"
    write_plain "$f"
    if have_uvmq_passwd; then
        "$UVMQ" passwd -H sha512-pbkdf2 ${PBKDF2_ITERATIONS:+-I "$PBKDF2_ITERATIONS"} -U "$f" >&2 ||
            die "uvmq passwd -U failed"
        echo "uvmq passwd -H sha512-pbkdf2"
    else
        command -v mosquitto_passwd >/dev/null || die "neither uvmq passwd nor mosquitto_passwd"
        [ -z "$PBKDF2_ITERATIONS" ] || say "mosquitto_passwd writes 101 iterations: PBKDF2_ITERATIONS ignored"
        mosquitto_passwd -U "$f" >&2 || die "mosquitto_passwd -U failed"
        echo "mosquitto_passwd"
    fi
}

# $AUTH_DIR/argon2id.txt: uvmq passwd's default hash, else the argon2 CLI
# with mosquitto 2.1's parameters (random 64-byte salt per user). Prints
# the tool used.
make_argon2id() {
    local f="$AUTH_DIR/argon2id.txt" i salt hash
    if have_uvmq_passwd; then
        write_plain "$f"
        "$UVMQ" passwd -U "$f" >&2 || die "uvmq passwd -U failed"
        echo "uvmq passwd"
        return
    fi
    command -v argon2 >/dev/null || die "neither uvmq passwd nor argon2 (apt-get install argon2)"
    : >"$f"
    for ((i = 0; i < CONNECT_USERS; i++)); do
        salt=$(head -c 48 /dev/urandom | base64 -w0)   # 64 characters
        hash=$(printf %s "$CONNECT_PASSWORD" | argon2 "$salt" -id -t 1 -k "$ARGON2_KIB" -p 1 \
            -l "$ARGON2_SALT" -e) || die "argon2 failed"
        printf 'u%d:%s\n' "$i" "$hash" >>"$f"
    done
    echo "argon2 CLI"
}

# What the files hold, as JSON for the results (tool, cost parameters).
auth_info() {
    local t7=$1 ta=$2 it="" ap=""
    [ -f "$AUTH_DIR/pbkdf2.txt" ] && it=$(head -n 1 "$AUTH_DIR/pbkdf2.txt" | cut -d'$' -f3)
    [ -f "$AUTH_DIR/argon2id.txt" ] && ap=$(head -n 1 "$AUTH_DIR/argon2id.txt" | cut -d'$' -f4)
    jq -cn --arg t7 "$t7" --arg it "$it" --arg ta "$ta" --arg ap "$ap" \
        --argjson users "$CONNECT_USERS" --argjson conns "$CONNECT_CONNS" \
        '{users: $users, conns_in_flight: $conns,
          pbkdf2: (if $t7 == "" then null else {tool: $t7, iterations: ($it | tonumber)} end),
          argon2id: (if $ta == "" then null else {tool: $ta, params: $ap} end)}'
}

main() {
    local sc t7="" ta="" need7=0 needa=0
    [[ "$CONNECT_USERS" =~ ^[1-9][0-9]*$ ]] || die "CONNECT_USERS must be a whole number >= 1"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    if [ "$SKIP_BUILD" != 1 ]; then
        make -j2 all || die "make -j2 all failed"
    fi
    for sc in $SCENARIOS; do
        case $sc in C7|C7w) need7=1 ;; CA|CAw) needa=1 ;; esac
    done
    AUTH_DIR=$(mktemp -d /tmp/uvmq-connect.XXXXXX) || die "mktemp failed"
    if [ "$need7" = 1 ]; then t7=$(make_pbkdf2) || exit 1; fi
    if [ "$needa" = 1 ]; then
        say "hashing $CONNECT_USERS argon2id passwords (46 MiB each)..."
        ta=$(make_argon2id) || exit 1
    fi
    # mosquitto, started as root, reads them as user mosquitto
    chmod 755 "$AUTH_DIR" && chmod 644 "$AUTH_DIR"/*.txt 2>/dev/null
    say "password files: ${t7:+\$7\$ by $t7}${t7:+${ta:+, }}${ta:+argon2id by $ta}"
    AUTH_DIR=$AUTH_DIR AUTH_INFO=$(auth_info "$t7" "$ta") SKIP_BUILD=1 ./bench/fanout.sh
}

main "$@"
