# clients.bash - what the client-tool scripts (tests/integration/*.sh)
# share: TAP lines, a temp dir and cleanup of only our own pids, free
# ports, bounded waits, and starting the broker. Sourced, not run (it lives
# under harness/ so tests/run.sh does not take it for a test).
#
# The sourcing script sets UVMQ_BIN and, for an HTTP/2 port too,
# WANT_HTTP=1 before start_broker (and CONFIG, to pass a config file with
# -c: the flags win over its port, bind and data_dir); it reads PORT (MQTT), HPORT (HTTP/2),
# BROKER_PID and TMP (holding data/ and broker.log), and appends the pids
# it starts to PIDS so that cleanup kills them.

TMP=$(mktemp -d /tmp/uvmq-clients-XXXXXX) || exit 1
PORT=
HPORT=
BROKER_PID=
PIDS=()
# shellcheck source=tests/tap.bash
. tests/tap.bash

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


# Prints a port the kernel just handed out on 127.0.0.1.
pick_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for FILE TEXT: waits at most 10 s for TEXT to appear in FILE.
wait_for() {
    local i
    for i in $(seq 1 500); do
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

# accepts PORT: a TCP connect to 127.0.0.1:PORT succeeds.
accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Starts the broker and waits up to 10 s for its port(s); retries with new
# ports if it exits early (e.g. a port was taken in between).
start_broker() {
    local attempt i
    mkdir -p "$TMP/data"
    for attempt in 1 2 3 4 5; do
        PORT=$(pick_port) || return 1
        HPORT=0
        [ "${WANT_HTTP:-0}" = 1 ] && { HPORT=$(pick_port) || return 1; }
        [ "$PORT" = "$HPORT" ] && continue
        "$UVMQ_BIN" -p "$PORT" --http-port "$HPORT" -b 127.0.0.1 --data-dir "$TMP/data" \
            ${UVMQ_TEST_THREADS:+--threads "$UVMQ_TEST_THREADS"} ${CONFIG:+-c "$CONFIG"} \
            >>"$TMP/broker.log" 2>&1 &
        BROKER_PID=$!
        for i in $(seq 1 500); do
            accepts "$PORT" && { [ "$HPORT" = 0 ] || accepts "$HPORT"; } && return 0
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.02
        done
        kill -0 "$BROKER_PID" 2>/dev/null && { kill -KILL "$BROKER_PID"; wait "$BROKER_PID"; }
        wait "$BROKER_PID" 2>/dev/null
        BROKER_PID=
    done
    return 1
}

# stop_broker: SIGTERM, then one TAP line: it must exit 0 within 15 s.
stop_broker() {
    local rc
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
}
