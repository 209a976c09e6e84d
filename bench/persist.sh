#!/bin/bash
# bench/persist.sh - what durability costs end to end: 10 publishers -> 1
# subscriber, QoS 1, 64-byte payloads, through the real broker, with
#   P1  clean sessions (nothing is written: acknowledged from memory)
#   P2  a persistent subscriber, durability full (every message is stored,
#       its PUBACK waits for the group commit's fsync)
#   P3  the same with durability batch (batch_ms 10)
# Each run gets a fresh data dir; the broker is pinned to CPU 0 and the
# generator to CPU 1. Prints one JSON line per run: deliveries/s, p99
# latency, lost, broker CPU-s and commits/s (one fdatasync each, from the
# broker's "storage:" stop line). Environment: ROUNDS (1),
# DURATION (5), WARMUP (1), WINDOW (64), UVMQ, UVMQ_BENCH, SKIP_BUILD.
set -u
cd "$(dirname "$0")/.." || exit 1
ROUNDS=${ROUNDS:-1}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
WINDOW=${WINDOW:-64}
UVMQ=${UVMQ:-build/uvmq}
UVMQ_BENCH=${UVMQ_BENCH:-build/uvmq-bench}
TMP=$(mktemp -d)
BPID=""

cleanup() {
    [ -n "$BPID" ] && kill -9 "$BPID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

[ "${SKIP_BUILD:-0}" = 1 ] || make -s "$UVMQ" "$UVMQ_BENCH" >&2 || exit 1
command -v jq >/dev/null || { echo "persist: needs jq" >&2; exit 1; }

# A free loopback port (bounded tries).
free_port() {
    local p i
    for i in $(seq 1 50); do
        p=$((20000 + RANDOM % 30000))
        (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }
    done
    echo 0
}

# run NAME CLEAN DURABILITY: one measured run.
run() {
    local name=$1 clean=$2 dur=$3 port dir i json commits
    port=$(free_port)
    dir=$TMP/$name
    mkdir -p "$dir"
    printf '{"durability": "%s", "batch_ms": 10}\n' "$dur" >"$dir/cfg.json"
    taskset -c 0 "$UVMQ" -p "$port" --http-port 0 --threads 1 --data-dir "$dir/data" \
        -c "$dir/cfg.json" >"$dir/log" 2>&1 &
    BPID=$!
    for i in $(seq 1 100); do
        (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
        sleep 0.1
    done
    json=$(timeout $((DURATION + WARMUP + 60)) taskset -c 1 "$UVMQ_BENCH" -H 127.0.0.1 \
        -p "$port" -m many -P 10 -s 1 -t 1 -q 1 -S 64 -r 0 -W "$WINDOW" -d "$DURATION" \
        -w "$WARMUP" --clean "$clean" --broker-pid "$BPID" --json-only)
    kill -TERM "$BPID"
    for i in $(seq 1 100); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$BPID" 2>/dev/null
    wait "$BPID" 2>/dev/null
    BPID=""
    commits=$(sed -n 's/.*storage: \([0-9]*\) commits.*/\1/p' "$dir/log")
    echo "$json" | jq -c --arg n "$name" --arg c "${commits:-0}" --argjson d "$((DURATION + WARMUP))" \
        '{run: $n, deliveries_per_s, p99_us: .latency_us.p99, lost, broker_cpu_s,
          commits_per_s: (($c | tonumber) / $d)}'
}

for r in $(seq 1 "$ROUNDS"); do
    run P1-clean 1 full
    run P2-full 0 full
    run P3-batch 0 batch
done
