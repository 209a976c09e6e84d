#!/bin/bash
# bench/h2.sh - the HTTP/2 API under h2load, next to h2o in the same run.
#
# For each transport (h2c with prior knowledge, then h2 over TLS) and each
# body size (3 B, 16 KiB, 64 KiB): h2load -c100 -m32 POSTs that body to
# uvmq's POST /v1/publish/bench/x (QoS 0, no subscriber: the request, the
# routing and the 204), then GETs a static file of the same size from h2o
# (the Debian package, a temp config on free loopback ports). Over TLS
# both servers have the same certificate (EC P-256, made with the openssl
# CLI, bench/certs.bash); h2load negotiates h2 by ALPN and offers only
# the TLS 1.3 suite TLS13_SUITE, so both servers do the same cipher work
# (left alone, uvmq prefers AES-256-GCM and h2o follows the client's
# AES-128-GCM); the table notes what each negotiated.
# Both servers run one worker thread pinned to CPU 0, h2load runs one
# thread pinned to CPU 1. Prints a table per transport: req/s of both and
# uvmq / h2o.
#
# Environment: DURATION (seconds measured per run, 5), WARMUP (1), SIZES
# ("3 16384 65536"), TRANSPORTS ("h2c tls"), TLS13_SUITE
# (TLS_AES_128_GCM_SHA256), CLIENTS (100), STREAMS (32), UVMQ, SKIP_BUILD,
# UVMQ_B and ROUNDS. With UVMQ_B naming a second uvmq build (the tree
# before a change), both run side by side and each body size is measured
# ROUNDS times (default 5) alternating the two; the table then shows the
# medians and their ratio as well. Installs h2o, nghttp2-client (h2load)
# and openssl if missing (scripts/install-deps.sh --bench).
set -u
cd "$(dirname "$0")/.." || exit 1
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SIZES=${SIZES:-"3 16384 65536"}
TRANSPORTS=${TRANSPORTS:-"h2c tls"}
TLS13_SUITE=${TLS13_SUITE:-TLS_AES_128_GCM_SHA256}
CLIENTS=${CLIENTS:-100}
STREAMS=${STREAMS:-32}
UVMQ=${UVMQ:-build/uvmq}
UVMQ_B=${UVMQ_B:-}
ROUNDS=${ROUNDS:-5}
TMP=$(mktemp -d /tmp/uvmq-h2bench-XXXXXX)
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.2
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
say() { echo "h2.sh: $*" >&2; }

[ "${SKIP_BUILD:-0}" = 1 ] || make -s "$UVMQ" >&2 || exit 1
./scripts/install-deps.sh --bench >&2 || say "install-deps.sh --bench failed; going on"
command -v h2load >/dev/null || { say "needs h2load (nghttp2-client)"; exit 1; }
H2O=$(command -v h2o || echo /usr/sbin/h2o)
[ -x "$H2O" ] || { say "needs h2o"; exit 1; }
command -v openssl >/dev/null || { say "needs openssl"; exit 1; }
. bench/certs.bash
make_certs "$TMP" || { say "openssl could not make the certificates"; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT: up to 10 s for it to accept.
wait_port() {
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# h2load_rps ARGS...: runs h2load pinned to CPU 1; prints req/s (or 0 when
# any request failed or h2load did not finish). Over TLS, the first run
# against each server notes its protocol and cipher in $TMP/cipher.*.
h2load_rps() {
    local out="$TMP/h2load.$RANDOM"
    timeout $((DURATION + WARMUP + 60)) taskset -c 1 h2load -t1 -c"$CLIENTS" -m"$STREAMS" \
        -D "$DURATION" --warm-up-time="$WARMUP" "$@" >"$out" 2>&1
    local rps failed server=${*: -1}
    server=${server#https://}
    server=${server%%/*}
    grep -q '^TLS Protocol:' "$out" && [ ! -e "$TMP/cipher.$server" ] &&
        sed -n 's/^TLS Protocol: \(.*\)/\1/p; s/^Cipher: \(.*\)/\1/p' "$out" | tr '\n' ' ' \
            >"$TMP/cipher.$server"
    rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$out")
    failed=$(sed -n 's/^requests: .* \([0-9]*\) failed.*/\1/p' "$out")
    if [ -z "$rps" ] || [ "${failed:-1}" != 0 ]; then
        say "h2load $*: no clean result"
        sed 's/^/    /' "$out" | tail -8 >&2
        echo 0
    else
        echo "$rps"
    fi
}

# start_uvmq BIN NAME: one worker loop on CPU 0; h2c on a free port, h2
# over TLS on another (a listener of type http with tls). Sets HPORT and
# HTPORT.
start_uvmq() {
    local bin=$1 name=$2 mport
    mport=$(free_port)
    HPORT=$(free_port)
    HTPORT=$(free_port)
    mkdir -p "$TMP/$name"
    printf '{"listeners": [{"type": "http", "port": %s, "tls": {"cert": "%s", "key": "%s"}}]}\n' \
        "$HTPORT" "$TMP/server.crt" "$TMP/server.key" >"$TMP/$name.json"
    taskset -c 0 "$bin" -p "$mport" --http-port "$HPORT" --threads 1 --data-dir "$TMP/$name" \
        -c "$TMP/$name.json" >"$TMP/$name.log" 2>&1 &
    PIDS+=("$!")
    # The MQTT port opens last: once it accepts, the others do too.
    wait_port "$mport" || { say "$name did not start"; cat "$TMP/$name.log" >&2; exit 1; }
}
start_uvmq "$UVMQ" uvmq
UH=$HPORT UHT=$HTPORT
if [ -n "$UVMQ_B" ]; then
    [ -x "$UVMQ_B" ] || { say "UVMQ_B=$UVMQ_B is not a program"; exit 1; }
    start_uvmq "$UVMQ_B" uvmq-b
    BH=$HPORT BHT=$HTPORT
fi

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# h2o: a static directory holding one file per size, one thread on CPU 0;
# h2c on OPORT, h2 over TLS on OTPORT.
OPORT=$(free_port)
OTPORT=$(free_port)
mkdir -p "$TMP/www"
for s in $SIZES; do head -c "$s" /dev/urandom >"$TMP/www/body-$s"; done
# As root h2o would switch to "nobody", who cannot read $TMP: stay root.
user_line=""
[ "$(id -u)" = 0 ] && user_line="user: root"
cat >"$TMP/h2o.conf" <<EOF
$user_line
listen:
  host: 127.0.0.1
  port: $OPORT
listen:
  host: 127.0.0.1
  port: $OTPORT
  ssl:
    certificate-file: $TMP/server.crt
    key-file: $TMP/server.key
num-threads: 1
error-log: $TMP/h2o-error.log
hosts:
  default:
    paths:
      /:
        file.dir: $TMP/www
EOF
taskset -c 0 "$H2O" -c "$TMP/h2o.conf" >"$TMP/h2o.out" 2>&1 &
PIDS+=("$!")
for p in "$OPORT" "$OTPORT"; do
    wait_port "$p" || { say "h2o did not start"; cat "$TMP/h2o.out" "$TMP/h2o-error.log" >&2; exit 1; }
done

say "h2load -c$CLIENTS -m$STREAMS, ${DURATION}s per run after ${WARMUP}s warm-up"
for tr in $TRANSPORTS; do
    if [ "$tr" = tls ]; then
        ubase="https://127.0.0.1:$UHT" obase="https://127.0.0.1:$OTPORT"
        bbase="https://127.0.0.1:${BHT:-0}"
        suite=(--tls13-ciphers="$TLS13_SUITE")
    else
        ubase="http://127.0.0.1:$UH" obase="http://127.0.0.1:$OPORT"
        bbase="http://127.0.0.1:${BH:-0}"
        suite=()
    fi
    echo "$tr:"
    if [ -n "$UVMQ_B" ]; then
        printf '%-10s %14s %14s %8s %14s %8s\n' "body" "uvmq req/s" "h2o req/s" "ratio" \
            "uvmq-b req/s" "uvmq/b"
    else
        printf '%-10s %14s %14s %8s\n' "body" "uvmq req/s" "h2o req/s" "ratio"
    fi
    for s in $SIZES; do
        if [ -n "$UVMQ_B" ]; then
            : >"$TMP/u.runs"
            : >"$TMP/b.runs"
            for _ in $(seq 1 "$ROUNDS"); do
                h2load_rps "${suite[@]}" -d "$TMP/www/body-$s" "$ubase/v1/publish/bench/x" >>"$TMP/u.runs"
                h2load_rps "${suite[@]}" -d "$TMP/www/body-$s" "$bbase/v1/publish/bench/x" >>"$TMP/b.runs"
            done
            say "$tr $s B: uvmq $(tr '\n' ' ' <"$TMP/u.runs")/ uvmq-b $(tr '\n' ' ' <"$TMP/b.runs")"
            u=$(median <"$TMP/u.runs")
            b=$(median <"$TMP/b.runs")
        else
            u=$(h2load_rps "${suite[@]}" -d "$TMP/www/body-$s" "$ubase/v1/publish/bench/x")
        fi
        o=$(h2load_rps "${suite[@]}" "$obase/body-$s")
        ratio=$(awk -v u="$u" -v o="$o" 'BEGIN { if (o > 0) printf "%.2f", u / o; else print "-" }')
        if [ -n "$UVMQ_B" ]; then
            ab=$(awk -v u="$u" -v b="$b" 'BEGIN { if (b > 0) printf "%.3f", u / b; else print "-" }')
            printf '%-10s %14.0f %14.0f %8s %14.0f %8s\n' "$s B" "$u" "$o" "$ratio" "$b" "$ab"
        else
            printf '%-10s %14.0f %14.0f %8s\n' "$s B" "$u" "$o" "$ratio"
        fi
    done
    if [ "$tr" = tls ]; then
        echo "  uvmq: $(cat "$TMP/cipher.127.0.0.1:$UHT" 2>/dev/null)"
        echo "  h2o:  $(cat "$TMP/cipher.127.0.0.1:$OTPORT" 2>/dev/null)"
    fi
done
