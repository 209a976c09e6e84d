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
. tests/integration/harness/clients.bash

echo "1..9"

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

stop_broker

[ "$failed" -eq 0 ]
