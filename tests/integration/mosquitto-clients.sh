#!/bin/bash
# mosquitto-clients.sh - uvmq against the real mosquitto_sub / mosquitto_pub.
#
# Starts $UVMQ_BIN on a free 127.0.0.1 port with a temp data dir, then
# checks that what mosquitto_pub sends, mosquitto_sub receives: with the
# default protocol, -V mqttv5, -V mqttv311, -q 1, -q 2; a retained message
# (-r) reaches a later subscriber; a client's will ("bye" on w/t) is
# published when it is killed with SIGKILL. Last, SIGTERM must stop the
# broker with exit status 0. Prints TAP; exits non-zero if any check fails.
# Every command is bounded (-W for mosquitto_sub, `timeout` for the rest);
# only pids this script started are ever signalled. mosquitto_sub runs
# under stdbuf -oL so its "received SUBACK" debug line shows at once.
set -u
cd "$(dirname "$0")/../.." || exit 1
UVMQ_BIN=${UVMQ_BIN:-$PWD/build/uvmq}
TMP=$(mktemp -d /tmp/uvmq-clients-XXXXXX) || exit 1
PORT=
BROKER_PID=
PIDS=()
n=0
failed=0

echo "1..9"

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    done
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -KILL "$BROKER_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# ok NAME / not_ok NAME [FILE]: one TAP line; FILE is shown as comments.
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1)); failed=$((failed + 1))
    echo "not ok $n - $1"
    [ -n "${2:-}" ] && [ -f "$2" ] && sed 's/^/#   /' "$2" | tail -30
    return 0
}

# Prints a port the kernel just handed out on 127.0.0.1.
pick_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for FILE TEXT: waits at most 5 s for TEXT to appear in FILE.
wait_for() {
    local i
    for i in $(seq 1 250); do
        grep -qF "$2" "$1" 2>/dev/null && return 0
        sleep 0.02
    done
    return 1
}

# wait_exit PID SECONDS: waits (bounded) for one of our children to end.
wait_exit() {
    local i
    for i in $(seq 1 $(($2 * 50))); do
        kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return $?; }
        sleep 0.02
    done
    return 124
}

# Starts the broker and waits up to 10 s for its port; retries with a new
# port if it exits early (e.g. the port was taken in between).
start_broker() {
    local attempt i
    mkdir -p "$TMP/data"
    for attempt in 1 2 3 4 5; do
        PORT=$(pick_port) || return 1
        "$UVMQ_BIN" -p "$PORT" --http-port 0 -b 127.0.0.1 --data-dir "$TMP/data" \
            ${UVMQ_TEST_THREADS:+--threads "$UVMQ_TEST_THREADS"} \
            >>"$TMP/broker.log" 2>&1 &
        BROKER_PID=$!
        for i in $(seq 1 500); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
                return 0
            fi
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.02
        done
        kill -0 "$BROKER_PID" 2>/dev/null && { kill -KILL "$BROKER_PID"; wait "$BROKER_PID"; }
        wait "$BROKER_PID" 2>/dev/null
        BROKER_PID=
    done
    return 1
}

# start_sub OUT ARGS...: a background mosquitto_sub (debug output, one
# message, 5 s limit) that is subscribed when this returns 0.
start_sub() {
    local out=$1; shift
    stdbuf -oL mosquitto_sub -h 127.0.0.1 -p "$PORT" -d -v -C 1 -W 5 "$@" >"$out" 2>&1 &
    SUB_PID=$!
    PIDS+=("$SUB_PID")
    wait_for "$out" "received SUBACK"
}

# pubsub NAME EXPECT SUB_ARGS -- PUB_ARGS: subscribe, publish, expect the
# line EXPECT ("topic payload") in the subscriber's output.
pubsub() {
    local name=$1 expect=$2; shift 2
    local sub_args=() out="$TMP/out.$n"
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do sub_args+=("$1"); shift; done
    shift
    if start_sub "$out" "${sub_args[@]}" &&
        timeout 10 mosquitto_pub -h 127.0.0.1 -p "$PORT" "$@" >>"$out" 2>&1 &&
        wait_exit "$SUB_PID" 10 && grep -qxF "$expect" "$out"; then
        ok "$name"
    else
        not_ok "$name" "$out"
    fi
}

if ! start_broker; then
    not_ok "broker starts and accepts on its port" "$TMP/broker.log"
    exit 1
fi
ok "broker starts and accepts on its port"

pubsub "mosquitto_sub receives mosquitto_pub with default protocol" "a/b hi" \
    -t 'a/#' -- -t a/b -m hi
pubsub "mosquitto_sub receives mosquitto_pub over mqttv5" "a/b hi5" \
    -V mqttv5 -t 'a/#' -- -V mqttv5 -t a/b -m hi5
pubsub "mosquitto_sub receives mosquitto_pub over mqttv311" "a/b hi4" \
    -V mqttv311 -t 'a/#' -- -V mqttv311 -t a/b -m hi4
pubsub "mosquitto_sub receives mosquitto_pub at qos 1" "a/b q1" \
    -q 1 -t 'a/#' -- -q 1 -t a/b -m q1
pubsub "mosquitto_sub receives mosquitto_pub at qos 2" "a/b q2" \
    -q 2 -t 'a/#' -- -q 2 -t a/b -m q2

# Retained: published (and acknowledged, -q 1) before anyone subscribes.
out="$TMP/out.retain"
if timeout 10 mosquitto_pub -h 127.0.0.1 -p "$PORT" -q 1 -r -t r/x -m kept >"$out" 2>&1 &&
    timeout 10 mosquitto_sub -h 127.0.0.1 -p "$PORT" -v -C 1 -W 5 -t r/x >>"$out" 2>&1 &&
    grep -qxF "r/x kept" "$out"; then
    ok "a retained message reaches a later mosquitto_sub"
else
    not_ok "a retained message reaches a later mosquitto_sub" "$out"
fi

# Will: a listener on w/t, then a client with a will that is SIGKILLed.
out="$TMP/out.will"
if start_sub "$out" -t w/t; then
    listener=$SUB_PID
    stdbuf -oL mosquitto_sub -h 127.0.0.1 -p "$PORT" -d -W 20 -t x/none \
        --will-topic w/t --will-payload bye >"$TMP/out.willclient" 2>&1 &
    victim=$!
    PIDS+=("$victim")
    if wait_for "$TMP/out.willclient" "received SUBACK"; then
        kill -KILL "$victim"
        wait "$victim" 2>/dev/null
    fi
    if wait_exit "$listener" 10 && grep -qxF "w/t bye" "$out"; then
        ok "the will of a SIGKILLed client reaches another subscriber"
    else
        cat "$TMP/out.willclient" >>"$out"
        not_ok "the will of a SIGKILLed client reaches another subscriber" "$out"
    fi
else
    not_ok "the will of a SIGKILLed client reaches another subscriber" "$out"
fi

# Clean shutdown: SIGTERM -> exit 0 within 15 s.
kill -TERM "$BROKER_PID"
wait_exit "$BROKER_PID" 15
rc=$?
if [ "$rc" -eq 0 ]; then
    BROKER_PID=
    ok "broker exits 0 on SIGTERM"
else
    echo "# broker exit status $rc (124 = still running)"
    not_ok "broker exits 0 on SIGTERM" "$TMP/broker.log"
fi

[ "$failed" -eq 0 ]
