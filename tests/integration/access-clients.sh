#!/bin/bash
# access-clients.sh - users and the ACL as Debian's mosquitto_pub,
# mosquitto_sub and curl see them.
#
# One password file, written by two tools: Debian's mosquitto_passwd -b
# makes alice ($7$) and bob (-H sha512, $6$), then `uvmq passwd -b` adds
# carol (argon2id, its default) and dave (-H sha512-pbkdf2). The ACL:
# alice reads and writes a/# and reads $SYS/#; bob reads a/# but not
# a/secret; carol writes a/# and uses c/#; dave reads c/#. The broker
# ($UVMQ_BIN, free 127.0.0.1 ports for MQTT and h2c, temp dir) takes no
# anonymous clients.
#
# MQTT: every user gets in with its password; a wrong password (3.1.1
# "bad user name or password", v5 "Bad User Name or Password") and an
# anonymous client ("not authorised" / "Not authorized") are refused;
# what carol publishes reaches bob and dave; bob's v5 publish is refused
# (PUBACK 0x87) and his subscription to c/# too (SUBACK 0x87); bob never
# gets a/secret. HTTP/2 (curl --http2-prior-knowledge): /healthz is open;
# each other endpoint answers 401 with www-authenticate without (or with
# wrong) credentials, 403 to a user the ACL does not let, and 2xx to one
# it does: POST /v1/publish, GET /v1/subscribe (an event stream read with
# a bounded curl -m, which never carries a/secret), GET /v1/retained,
# GET /v1/stats and GET /metrics ($SYS read needed). Last, SIGTERM must
# stop the broker with exit status 0. Prints TAP; every command is
# bounded (timeout, -W, --max-time); only pids this script started are
# ever signalled.
set -u
cd "$(dirname "$0")/../.." || exit 1
UVMQ_BIN=${UVMQ_BIN:-$PWD/build/uvmq}
WANT_HTTP=1
. tests/integration/harness/clients.bash

echo "1..17"

OUT="$TMP/out"

# check NAME FILE COMMAND...: ok when COMMAND succeeds; FILE shown when not.
check() {
    local name=$1 file=$2; shift 2
    if "$@"; then ok "$name"; else not_ok "$name" "$file"; fi
}

# ---- the files ----

PW="$TMP/passwd"
ACL="$TMP/acl"
CONFIG="$TMP/uvmq.json"
: >"$OUT"
{
    timeout 30 mosquitto_passwd -c -b "$PW" alice alice-pw &&
        timeout 30 mosquitto_passwd -H sha512 -b "$PW" bob bob-pw &&
        timeout 60 "$UVMQ_BIN" passwd -b "$PW" carol carol-pw &&
        timeout 60 "$UVMQ_BIN" passwd -H sha512-pbkdf2 -b "$PW" dave dave-pw
} >>"$OUT" 2>&1
cat >"$ACL" <<'EOF'
user alice
topic readwrite a/#
topic read $SYS/#

user bob
topic read a/#
topic deny a/secret

user carol
topic write a/#
topic readwrite c/#

user dave
topic read c/#
EOF
printf '{"password_file": "%s", "acl_file": "%s"}\n' "$PW" "$ACL" >"$CONFIG"

t_files() {
    grep -qE '^alice:\$7\$' "$PW" && grep -qE '^bob:\$6\$' "$PW" &&
        grep -qE '^carol:\$argon2id\$' "$PW" && grep -qE '^dave:\$7\$' "$PW"
}
if t_files && start_broker; then
    ok "the broker starts with a password file of mosquitto_passwd and uvmq passwd, and an ACL"
else
    { cat "$PW"; cat "$TMP/broker.log"; } >>"$OUT" 2>/dev/null
    not_ok "the broker starts with a password file of mosquitto_passwd and uvmq passwd, and an ACL" "$OUT"
    exit 1
fi
URL="http://127.0.0.1:$HPORT"

# ---- MQTT ----

# mpub ARGS...: mosquitto_pub to the broker, bounded, output appended to $OUT.
mpub() { timeout 10 mosquitto_pub -h 127.0.0.1 -p "$PORT" "$@" >>"$OUT" 2>&1; }

# start_sub OUT ARGS...: a background mosquitto_sub (debug output, 10 s
# limit) that has its SUBACK when this returns 0.
start_sub() {
    local out=$1; shift
    stdbuf -oL mosquitto_sub -h 127.0.0.1 -p "$PORT" -d -v -W 10 "$@" >"$out" 2>&1 &
    SUB_PID=$!
    PIDS+=("$SUB_PID")
    wait_for "$out" "received SUBACK"
}

: >"$OUT"
t_users_in() {
    mpub -u alice -P alice-pw -t a/hello -m 1 && mpub -u bob -P bob-pw -t a/hello -m 2 &&
        mpub -V mqttv5 -u carol -P carol-pw -t a/hello -m 3 &&
        mpub -V mqttv5 -u dave -P dave-pw -t a/hello -m 4
}
check "each user connects with its password (\$7\$, \$6\$, argon2id, uvmq's \$7\$)" "$OUT" t_users_in

: >"$OUT"
t_wrong() {
    ! mpub -u alice -P carol-pw -t a/x -m x && grep -qF "Connection Refused: bad user name or password" "$OUT" &&
        ! mpub -V mqttv5 -u carol -P alice-pw -t a/x -m x && grep -qF "Bad User Name or Password" "$OUT" &&
        ! mpub -u nobody -P nobody-pw -t a/x -m x && [ "$(grep -c "bad user name or password" "$OUT")" = 2 ]
}
check "a wrong password or an unknown user is refused (rc 4, 0x86)" "$OUT" t_wrong

: >"$OUT"
t_anonymous() {
    ! mpub -t a/x -m x && grep -qF "Connection Refused: not authorised" "$OUT" &&
        ! mpub -V mqttv5 -t a/x -m x && grep -qF "Connection error: Not authorized" "$OUT"
}
check "an anonymous client is refused (rc 5, 0x87)" "$OUT" t_anonymous

# bob ($6$) and dave (uvmq passwd's $7$) receive what carol (argon2id) publishes.
out="$TMP/out.bob"
out2="$TMP/out.dave"
: >"$OUT"
if start_sub "$out" -u bob -P bob-pw -C 1 -t 'a/#' && bob=$SUB_PID &&
    start_sub "$out2" -V mqttv5 -u dave -P dave-pw -C 1 -t 'c/#' && dave=$SUB_PID; then
    mpub -q 1 -u carol -P carol-pw -t a/from-carol -m argon
    mpub -q 1 -V mqttv5 -u carol -P carol-pw -t c/from-carol -m argon5
    wait_exit "$bob" 10
    wait_exit "$dave" 10
fi
cat "$out2" >>"$out" 2>/dev/null
check "mosquitto_sub of bob and of dave get what carol publishes" "$out" \
    bash -c "grep -qxF 'a/from-carol argon' '$out' && grep -qxF 'c/from-carol argon5' '$out2'"

: >"$OUT"
t_pub_refused() {
    mpub -V mqttv5 -q 1 -u bob -P bob-pw -t a/x -m no && grep -qF "Publish 1 failed: Not authorized" "$OUT"
}
check "bob's v5 publish to a/x is refused (PUBACK 0x87)" "$OUT" t_pub_refused

out="$TMP/out.bobsub"
t_sub_refused() {
    timeout 10 mosquitto_sub -h 127.0.0.1 -p "$PORT" -V mqttv5 -d -W 2 -u bob -P bob-pw \
        -t 'c/#' >"$out" 2>&1
    grep -qF "Subscribed (mid: 1): 135" "$out"
}
check "bob's v5 subscription to c/# is refused (SUBACK 0x87)" "$out" t_sub_refused

# a/secret (QoS 1, acknowledged) before a/ok: bob's first message is a/ok.
out="$TMP/out.secret"
: >"$OUT"
if start_sub "$out" -u bob -P bob-pw -C 1 -t 'a/#'; then
    mpub -q 1 -u alice -P alice-pw -t a/secret -m hidden
    mpub -q 1 -u alice -P alice-pw -t a/ok -m shown
    wait_exit "$SUB_PID" 10
fi
check "mosquitto_sub of bob on a/# never gets a/secret" "$out" \
    bash -c "grep -qxF 'a/ok shown' '$out' && ! grep -q hidden '$out'"

# ---- HTTP/2 ----

h2curl() { timeout 15 curl -sS --http2-prior-knowledge --max-time 10 "$@"; }

# status OUT CURL-ARGS...: prints the status (000: none); headers into
# OUT.hdr, the body into OUT.body. curl's exit status is not looked at: a
# --max-time that ends an event stream makes it 28 after a 200.
status() {
    local o=$1; shift
    h2curl -D "$o.hdr" -o "$o.body" -w '%{http_code}' "$@" 2>>"$o.err"
    return 0
}

# expect_401 OUT CURL-ARGS...: 401 with the Basic challenge.
expect_401() {
    local o=$1; shift
    [ "$(status "$o" "$@")" = 401 ] &&
        grep -qixF 'www-authenticate: Basic realm="uvmq", charset="UTF-8"' <(tr -d '\r' <"$o.hdr")
}

# triple OUT GOOD BAD CURL-ARGS...: 401 without credentials and with a
# wrong password, 403 for user BAD, 2xx for GOOD ("user:password" each).
triple() {
    local o=$1 good=$2 bad=$3; shift 3
    local code=
    if expect_401 "$o" "$@" && expect_401 "$o" -u "${good%%:*}:Wrong-Pass-X" "$@" &&
        [ "$(status "$o" -u "$bad" "$@")" = 403 ]; then
        code=$(status "$o" -u "$good" "$@")
        [ "${code:0:1}" = 2 ] && return 0
    fi
    { echo "--- last status ${code:-?}:"; cat "$o.hdr" "$o.body" "$o.err"; } >>"$o" 2>/dev/null
    return 1
}

out="$TMP/out.healthz"
check "GET /healthz needs no credentials" "$out" \
    bash -c "[ \"\$(timeout 15 curl -sS --http2-prior-knowledge --max-time 10 -o '$out' -w '%{http_code}' '$URL/healthz')\" = 200 ]"

out="$TMP/out.post"
if start_sub "$TMP/out.postsub" -u bob -P bob-pw -C 1 -t 'a/http'; then
    triple "$out" carol:carol-pw bob:bob-pw --data-binary via-http "$URL/v1/publish/a/http?qos=1"
    rc=$?
    wait_exit "$SUB_PID" 10
else
    rc=1
fi
cat "$TMP/out.postsub" >>"$out" 2>/dev/null
check "POST /v1/publish: 401, 403 for bob, 204 for carol, and bob's mosquitto_sub gets it" "$out" \
    bash -c "[ $rc = 0 ] && grep -qxF 'a/http via-http' '$TMP/out.postsub'"

out="$TMP/out.sub"
t_subscribe() {
    triple "$out" bob:bob-pw dave:dave-pw --max-time 1 "$URL/v1/subscribe?filter=a/%23" &&
        grep -qF 'event: subscribed' "$out.body"
}
check "GET /v1/subscribe: 401, 403 for dave on a/#, 200 and the subscribed event for bob" "$out" t_subscribe

out="$TMP/out.sse"
: >"$OUT"
timeout 20 curl -sN --http2-prior-knowledge --max-time 8 -u bob:bob-pw \
    "$URL/v1/subscribe?filter=a/%23&qos=1" >"$out" 2>&1 &
sse=$!
PIDS+=("$sse")
if wait_for "$out" "event: subscribed"; then
    mpub -q 1 -u alice -P alice-pw -t a/secret -m hidden-from-sse
    mpub -q 1 -u alice -P alice-pw -t a/visible -m shown-in-sse
    wait_for "$out" '"payload":"shown-in-sse"'
fi
kill -TERM "$sse" 2>/dev/null
wait "$sse" 2>/dev/null
check "bob's event stream gets a/visible and never a/secret" "$out" \
    bash -c "grep -qF 'data: {\"topic\":\"a/visible\",\"qos\":1,\"retain\":false,\"payload\":\"shown-in-sse\"' '$out' &&
        ! grep -q 'hidden-from-sse' '$out'"

out="$TMP/out.retained"
: >"$out"
mpub -q 1 -r -u alice -P alice-pw -t a/r -m kept
mpub -q 1 -r -u alice -P alice-pw -t a/secret -m kept-secret
t_retained() {
    triple "$out" bob:bob-pw dave:dave-pw "$URL/v1/retained/a/r" &&
        grep -qF '"payload":"kept"' "$out.body" &&
        [ "$(status "$out" -u bob:bob-pw "$URL/v1/retained/a/secret")" = 403 ] &&
        [ "$(status "$out" -u alice:alice-pw "$URL/v1/retained/a/secret")" = 200 ]
}
check "GET /v1/retained: 401, 403 for dave and for bob on a/secret, 200 for bob" "$out" t_retained

out="$TMP/out.stats"
t_stats() {
    triple "$out" alice:alice-pw bob:bob-pw "$URL/v1/stats" &&
        grep -q '"auth":{"bad_credentials":[1-9]' "$out.body"
}
check "GET /v1/stats: 401, 403 for bob (no \$SYS), 200 for alice" "$out" t_stats

out="$TMP/out.metrics"
t_metrics() {
    triple "$out" alice:alice-pw bob:bob-pw "$URL/metrics" &&
        grep -q '^uvmq_auth_failures_total [1-9]' "$out.body" &&
        grep -q '^uvmq_acl_denied_publish_total [1-9]' "$out.body"
}
check "GET /metrics: 401, 403 for bob, 200 for alice" "$out" t_metrics

out="$TMP/out.log"
t_no_password_logged() {
    cp "$TMP/broker.log" "$out"
    grep -q 'bad user name or password (user "alice")' "$out" && ! grep -qE 'carol-pw|alice-pw|Wrong-Pass-X' "$out"
}
check "refusals are logged without the passwords" "$out" t_no_password_logged

stop_broker

[ "$failed" -eq 0 ]
