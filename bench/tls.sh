#!/bin/bash
# bench/tls.sh - MQTT over TLS next to plain TCP, in the same run.
#
# Makes a CA and a server certificate for 127.0.0.1 with the openssl CLI,
# then for each round and each transport (plain, tls; alternating) starts
# a fresh uvmq (--threads 1, pinned to CPU 0) with its plain port and one
# TLS listener, and runs build/uvmq-bench (pinned to CPU 1) against one
# of the two ports:
#   F1    fanout 1 publisher -> 1,000 subscribers, QoS 0, SIZE-byte
#         payloads, max rate (bench/scenarios.sh F1)
#   idle  IDLE_CONNS idle connections: broker RSS per connection
# Prints the medians per scenario and transport as a table, with the
# TLS / plain ratio. Environment: ROUNDS (3), DURATION (5), WARMUP (2),
# SIZE (64), IDLE_CONNS (2000), SCENARIOS ("F1 idle"), QUICK=1 (1 round
# of 2 s), UVMQ, UVMQ_BENCH, SKIP_BUILD. Needs openssl, jq, taskset.
set -u
cd "$(dirname "$0")/.." || exit 1
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    ROUNDS=${ROUNDS:-1}; DURATION=${DURATION:-2}; WARMUP=${WARMUP:-1}
else
    ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-5}; WARMUP=${WARMUP:-2}
fi
SIZE=${SIZE:-64}
IDLE_CONNS=${IDLE_CONNS:-2000}
SCENARIOS=${SCENARIOS:-F1 idle}
UVMQ=${UVMQ:-build/uvmq}
UVMQ_BENCH=${UVMQ_BENCH:-build/uvmq-bench}
TMP=$(mktemp -d /tmp/uvmq-tls-bench-XXXXXX)
BPID=""

say() { printf 'tls: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

cleanup() {
    if [ -n "$BPID" ]; then
        kill -TERM "$BPID" 2>/dev/null
        sleep 0.5
        kill -KILL "$BPID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

[ "${SKIP_BUILD:-0}" = 1 ] || make -s "$UVMQ" "$UVMQ_BENCH" >&2 || exit 1
./scripts/install-deps.sh --bench >&2 || say "install-deps.sh --bench failed; going on"
for tool in openssl jq; do
    command -v "$tool" >/dev/null || die "needs $tool"
done
PIN_BROKER=(); PIN_GEN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_BROKER=(taskset -c 0); PIN_GEN=(taskset -c 1)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null

# make_certs DIR: a CA and a server certificate for 127.0.0.1.
. bench/certs.bash

# True while PID exists and is not a zombie (kill -0 says yes to those).
alive() {
    local state
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ]
}

# A free loopback port (bounded tries).
free_port() {
    local p i
    for i in $(seq 1 50); do
        p=$((20000 + RANDOM % 30000))
        (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }
    done
    echo 0
}

# Starts a fresh broker with its plain port PLAIN and TLS port TLS_PORT
# (fresh ports, 3 tries); sets BPID. Returns 1 if it never accepts.
start_broker() {
    local dir=$1 i try
    mkdir -p "$dir/data"
    for try in 1 2 3; do
        PLAIN=$(free_port); TLS_PORT=$(free_port)
        [ "$PLAIN" = "$TLS_PORT" ] && continue
        printf '{"listeners": [{"port": %s, "tls": {"cert": "%s", "key": "%s"}}]}\n' \
            "$TLS_PORT" "$TMP/server.crt" "$TMP/server.key" >"$dir/cfg.json"
        "${PIN_BROKER[@]}" "$UVMQ" -p "$PLAIN" --http-port 0 --threads 1 \
            --data-dir "$dir/data" -c "$dir/cfg.json" >>"$dir/log" 2>&1 &
        BPID=$!
        for i in $(seq 1 100); do
            alive "$BPID" || break
            (echo >/dev/tcp/127.0.0.1/"$PLAIN") 2>/dev/null && return 0
            sleep 0.1
        done
        stop_broker
    done
    say "broker did not start:"; tail -n 5 "$dir/log" >&2
    return 1
}

stop_broker() {
    local i
    kill -TERM "$BPID" 2>/dev/null
    for i in $(seq 1 50); do alive "$BPID" || break; sleep 0.1; done
    kill -KILL "$BPID" 2>/dev/null
    wait "$BPID" 2>/dev/null
    BPID=""
}

# run SCENARIO TRANSPORT ROUND: one measured run, its JSON line appended
# to $TMP/runs.jsonl (with "transport" added).
run() {
    local sc=$1 tr=$2 round=$3 dir=$TMP/$1-$2-$3 port json
    local -a gen tls=()
    start_broker "$dir" || return
    port=$PLAIN
    if [ "$tr" = tls ]; then port=$TLS_PORT; tls=(--cafile "$TMP/ca.crt"); fi
    case $sc in
    F1) gen=(-m fanout -P 1 -s 1000 -q 0 -S "$SIZE" -r 0 -W 64 -d "$DURATION" -w "$WARMUP") ;;
    idle) gen=(-m idle -c "$IDLE_CONNS" -d 1 -w 0) ;;
    *) die "unknown scenario $sc" ;;
    esac
    json=$(timeout -k 5 $((DURATION + WARMUP + 90)) "${PIN_GEN[@]}" "$UVMQ_BENCH" -H 127.0.0.1 \
        -p "$port" "${tls[@]}" "${gen[@]}" --broker-pid "$BPID" --json-only \
        --label "$sc/$tr/r$round" 2>"$dir/gen.err" | tail -n 1)
    stop_broker
    if ! jq -e 'type == "object"' >/dev/null 2>&1 <<<"$json"; then
        say "$sc $tr round $round: no result"; tail -n 3 "$dir/gen.err" >&2
        return
    fi
    jq -c --arg sc "$sc" --arg tr "$tr" '. + {scenario: $sc, transport: $tr}' \
        <<<"$json" >>"$TMP/runs.jsonl"
    jq -r '"tls: \(.scenario) \(.transport): " + (if .mode == "idle"
        then "\(.rss_per_conn_b) B/conn" else "\(.deliveries_per_s | floor) deliveries/s, p99 " +
        "\(.latency_us.p99) us, lost \(.lost)" end)' <<<"$(tail -n 1 "$TMP/runs.jsonl")" >&2
}

make_certs "$TMP" || die "openssl could not make the certificates"
: >"$TMP/runs.jsonl"
for r in $(seq 1 "$ROUNDS"); do
    for sc in $SCENARIOS; do
        # Alternate which transport goes first, round by round.
        if [ $((r % 2)) = 1 ]; then order="plain tls"; else order="tls plain"; fi
        for tr in $order; do run "$sc" "$tr" "$r"; done
    done
done

echo
echo "MQTT over TLS vs plain TCP: medians of $ROUNDS round(s), ${DURATION} s each," \
     "uvmq --threads 1 on CPU 0, generator on CPU 1 ($(date -u +%FT%TZ), $(hostname))"
jq -s -r --arg idle "$IDLE_CONNS" '
  def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
  def fmt: if . == null then "-" else (. * 10 | round / 10 | tostring) end;
  group_by(.scenario) | .[] | . as $runs | $runs[0].scenario as $sc |
  ([$runs[] | select(.transport == "plain")]) as $p |
  ([$runs[] | select(.transport == "tls")]) as $t |
  if $sc == "idle" then
    ([$p[].rss_per_conn_b] | median) as $pb | ([$t[].rss_per_conn_b] | median) as $tb |
    "\n\($sc) (\($idle) idle connections: broker RSS growth per connection)\n" +
    "  transport  bytes/conn\n" +
    "  plain      \($pb | fmt)\n  tls        \($tb | fmt)\n" +
    "  tls - plain: \(if $pb and $tb then ($tb - $pb | fmt) else "-" end) B/conn"
  else
    def row($name; $r): "  \($name)  " +
      "\([$r[].deliveries_per_s] | median | fmt)  " +
      "\([$r[].latency_us.p50] | median | fmt)  \([$r[].latency_us.p99] | median | fmt)  " +
      "\([$r[].deliveries_per_broker_cpu_s] | median | fmt)  \([$r[].lost] | max)";
    ([$p[].deliveries_per_s] | median) as $pd | ([$t[].deliveries_per_s] | median) as $td |
    "\n\($sc) (fanout 1 -> 1000, QoS 0, \($runs[0].size) B)\n" +
    "  transport  deliveries/s  p50 us  p99 us  deliveries/broker-CPU-s  max lost\n" +
    row("plain    "; $p) + "\n" + row("tls      "; $t) + "\n" +
    "  tls / plain deliveries/s: \(if $pd and $td and $pd > 0 then ($td / $pd * 100 | round | tostring) + " %" else "-" end)"
  end' "$TMP/runs.jsonl"
