#!/bin/bash
# http-clients.sh - uvmq's HTTP/2 API against the real curl and nghttp.
#
# Starts $UVMQ_BIN on two free 127.0.0.1 ports (MQTT and HTTP/2 h2c) with a
# temp data dir, then: curl --http2-prior-knowledge publishes at QoS 0, 1
# and 2 and with retain, and mosquitto_sub (MQTT 5, -F with properties)
# receives the messages with their properties; nghttp publishes and reads
# /healthz and /v1/stats; a curl event stream (--max-time) receives what
# mosquitto_pub publishes, the retained message first; /v1/retained,
# /metrics and the error answers (404, 400, 405, 413) as curl sees them;
# plain HTTP/1.1 curl gets 505. Last, SIGTERM must stop the broker with
# exit status 0. Prints TAP; every command is bounded (--max-time,
# -W, timeout); only pids this script started are ever signalled.
set -u
cd "$(dirname "$0")/../.." || exit 1
UVMQ_BIN=${UVMQ_BIN:-$PWD/build/uvmq}
WANT_HTTP=1
. tests/integration/harness/clients.bash

echo "1..13"

check() { # check NAME FILE COMMAND...: ok when COMMAND succeeds
    local name=$1 file=$2; shift 2
    if "$@"; then ok "$name"; else not_ok "$name" "$file"; fi
}

URL=
h2curl() { timeout 15 curl -sS --http2-prior-knowledge --max-time 10 "$@"; }

# start_sub OUT ARGS...: a background MQTT 5 mosquitto_sub printing
# "topic payload user-properties content-type", subscribed when this returns 0.
start_sub() {
    local out=$1; shift
    stdbuf -oL mosquitto_sub -h 127.0.0.1 -p "$PORT" -V mqttv5 -d -F '%t %p %P %C' -W 10 \
        "$@" >"$out" 2>&1 &
    SUB_PID=$!
    PIDS+=("$SUB_PID")
    wait_for "$out" "received SUBACK"
}

if ! start_broker; then
    not_ok "broker starts and accepts on its MQTT and HTTP/2 ports" "$TMP/broker.log"
    exit 1
fi
ok "broker starts and accepts on its MQTT and HTTP/2 ports"
URL="http://127.0.0.1:$HPORT"

# 2: curl publishes at QoS 0, 1, 2; mosquitto_sub gets them with properties.
out="$TMP/out.pub"
code="$TMP/code.pub"
if start_sub "$out" -q 2 -C 3 -t 'h/#'; then
    h2curl -o /dev/null -w '%{http_code}\n' -H 'content-type: text/plain' \
        -H 'x-mqtt-user-colour: blue' --data-binary zero "$URL/v1/publish/h/0" >"$code"
    h2curl -o /dev/null -w '%{http_code}\n' --data-binary one "$URL/v1/publish/h/1?qos=1" >>"$code"
    h2curl -o /dev/null -w '%{http_code}\n' --data-binary two "$URL/v1/publish/h/2?qos=2" >>"$code"
    wait_exit "$SUB_PID" 15
fi
cat "$code" >>"$out" 2>/dev/null
check "curl publishes at QoS 0, 1 and 2 (204) and mosquitto_sub gets them with properties" \
    "$out" bash -c "[ \"\$(tr '\n' ' ' <'$code')\" = '204 204 204 ' ] &&
        grep -q '^h/0 zero colour:blue text/plain$' '$out' &&
        grep -q '^h/1 one' '$out' && grep -q '^h/2 two' '$out'"

# 3: retain through curl, read back with GET /v1/retained.
out="$TMP/out.retained"
h2curl -o /dev/null -w '%{http_code}\n' --data-binary kept "$URL/v1/publish/r/x?qos=1&retain=1" >"$out"
h2curl "$URL/v1/retained/r/x" >>"$out"
check "a retained publish is served by GET /v1/retained" "$out" \
    grep -qF '{"topic":"r/x","qos":1,"retain":true,"payload":"kept","encoding":"utf-8","properties":{"content_type":"application/x-www-form-urlencoded"}}' "$out"

# 4: nghttp publishes (prior knowledge for http://) and mosquitto_sub gets it.
out="$TMP/out.nghttp"
printf 'via nghttp' >"$TMP/body"
if start_sub "$out" -C 1 -t 'n/#'; then
    timeout 15 nghttp -d "$TMP/body" -H 'x-mqtt-user-k: v' "$URL/v1/publish/n/1?qos=1" >>"$out" 2>&1
    wait_exit "$SUB_PID" 15
fi
check "nghttp publishes and mosquitto_sub gets it" "$out" grep -q '^n/1 via nghttp k:v' "$out"

# 5: nghttp reads /healthz and /v1/stats.
out="$TMP/out.nghttp2"
timeout 15 nghttp "$URL/healthz" >"$out" 2>&1
timeout 15 nghttp "$URL/v1/stats" >>"$out" 2>&1
check "nghttp reads /healthz and /v1/stats" "$out" \
    bash -c "grep -qF '{\"status\":\"ok\"}' '$out' && grep -q '\"messages\":{\"in\":[1-9]' '$out'"

# 6: a curl event stream receives what mosquitto_pub publishes, retained first.
out="$TMP/out.sse"
timeout 20 curl -sN --http2-prior-knowledge --max-time 8 \
    "$URL/v1/subscribe?filter=r/%23&filter=e/%2B&qos=1" >"$out" 2>&1 &
PIDS+=("$!")
sse=$!
if wait_for "$out" "event: subscribed"; then
    timeout 10 mosquitto_pub -h 127.0.0.1 -p "$PORT" -q 1 -t e/live -m 'hello sse'
    wait_for "$out" '"payload":"hello sse"'
fi
kill -TERM "$sse" 2>/dev/null
wait "$sse" 2>/dev/null
check "a curl event stream gets the retained message, then mosquitto_pub's" "$out" \
    bash -c "grep -qF 'data: {\"filters\":[\"r/#\",\"e/+\"],\"qos\":1}' '$out' &&
        grep -qF 'data: {\"topic\":\"r/x\",\"qos\":1,\"retain\":true,\"payload\":\"kept\"' '$out' &&
        grep -qF 'data: {\"topic\":\"e/live\",\"qos\":1,\"retain\":false,\"payload\":\"hello sse\",\"encoding\":\"utf-8\"}' '$out' &&
        [ \$(grep -n 'r/x' '$out' | head -1 | cut -d: -f1) -lt \$(grep -n 'e/live' '$out' | cut -d: -f1) ]"

# 7: /metrics in Prometheus text format with the commit histogram.
out="$TMP/out.metrics"
h2curl "$URL/metrics" >"$out"
check "curl reads /metrics (Prometheus text, commit latency histogram)" "$out" \
    bash -c "grep -q '^uvmq_messages_received_total [1-9]' '$out' &&
        grep -q '^uvmq_store_commit_seconds_bucket{le=\"+Inf\"} [1-9]' '$out' &&
        grep -q '^# TYPE uvmq_store_commit_seconds histogram' '$out'"

# 8-11: errors as curl sees them: status and JSON body.
err() { # err NAME STATUS REASON CURL-ARGS...
    local name=$1 status=$2 reason=$3; shift 3
    local o="$TMP/out.err$n"
    h2curl -w '\n%{http_code}\n' "$@" >"$o" 2>&1
    check "$name" "$o" bash -c "tail -1 '$o' | grep -qx '$status' &&
        grep -q '^{\"error\":\".*\",\"reason_code\":$reason}\$' '$o'"
}
err "an unknown path is 404" 404 128 "$URL/nope"
err "a wildcard topic is 400, reason 0x90" 400 144 --data-binary x "$URL/v1/publish/a/%2B"
err "a bad qos is 400, reason 0x81" 400 129 --data-binary x "$URL/v1/publish/a?qos=7"
err "GET on publish is 405" 405 128 "$URL/v1/publish/a"

# 12: HTTP/1.1 on the h2c port: 505 and a JSON error.
out="$TMP/out.h1"
timeout 15 curl -sS --http1.1 --max-time 10 -w '\n%{http_code}\n' "$URL/healthz" >"$out" 2>&1
check "HTTP/1.1 curl gets 505 with a JSON error" "$out" \
    bash -c "tail -1 '$out' | grep -qx 505 && grep -q '\"reason_code\":132}' '$out'"

stop_broker

[ "$failed" -eq 0 ]
