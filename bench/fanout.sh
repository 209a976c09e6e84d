#!/bin/bash
# bench/fanout.sh - side-by-side benchmark of uvmq and mosquitto.
#
# Builds uvmq and build/uvmq-bench, starts a fresh broker per scenario run on
# a free 127.0.0.1 port (pinned to CPU 0; the generator to CPU 1), runs the
# scenarios of bench/scenarios.sh ROUNDS times alternating the brokers, and
# prints the median per scenario and broker as one table. Raw runs and
# medians go to bench/results/<date>-<host>.json, the chart to .png.
# Environment: QUICK ROUNDS DURATION WARMUP F2_RATE SCENARIOS BROKERS
# RESULTS_DIR KEEP_RESULTS SKIP_BUILD UVMQ UVMQ_B UVMQ_BENCH STEAL_MAX
# STEAL_RETRIES (docs/benchmarks.md). BROKERS="uvmq uvmq-b" with UVMQ_B
# naming a second uvmq build (the tree before a change) measures the two
# alternating, for a before/after in one run. The CONNECT scenarios (C7,
# C7w, CA, CAw, C0) run through bench/connect.sh, which writes the password
# files into AUTH_DIR and describes them in AUTH_INFO (JSON).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
# shellcheck source=bench/scenarios.sh
. "$ROOT/bench/scenarios.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    ROUNDS=${ROUNDS:-1}; DURATION=${DURATION:-3}; WARMUP=${WARMUP:-1}
else
    ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10}; WARMUP=${WARMUP:-2}
fi
export F2_RATE=${F2_RATE:-20}
SCENARIOS=${SCENARIOS:-F1 F2 F3q0 F3q1 F4 F5 F6 F7 F3t2}
BROKERS=${BROKERS:-uvmq mosquitto}
RESULTS_DIR=${RESULTS_DIR:-bench/results}
KEEP_RESULTS=${KEEP_RESULTS:-5}
SKIP_BUILD=${SKIP_BUILD:-0}
UVMQ=${UVMQ:-build/uvmq}
UVMQ_B=${UVMQ_B:-}
UVMQ_BENCH=${UVMQ_BENCH:-build/uvmq-bench}
STEAL_MAX=${STEAL_MAX:-5}    # % of the window's CPU time the hypervisor may take
STEAL_RETRIES=${STEAL_RETRIES:-2}
AUTH_DIR=${AUTH_DIR:-}       # password files of the C scenarios (bench/connect.sh)
AUTH_INFO=${AUTH_INFO:-null} # what they hold, for the results (JSON)
STOP_WAIT_TENTHS=50          # SIGTERM -> SIGKILL after 5 s
START_WAIT_TENTHS=100        # a broker must accept within 10 s
GEN_SLACK=90                 # generator limit: warmup + duration + this

TMP=""
PIDS=""                      # brokers started and not yet stopped
STOP_HOW=""                  # set by stop_broker
STOP_RC=0                    # set by stop_broker
GEN_PID=""                   # the running generator (its timeout process)
PIN_BROKER=()
PIN_GEN=()

say() { printf 'fanout: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# --- processes -------------------------------------------------------------

# True while PID exists and is not a zombie.
alive() {
    local state
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ]
}

# SIGTERM, wait up to 5 s, then SIGKILL; reaps PID. Sets STOP_HOW to how
# it ended (term, kill, exited) and STOP_RC to its wait status (128+signal
# when a signal ended it). Must not run in a subshell (wait, PIDS).
stop_broker() {
    local pid=$1 i=0
    STOP_HOW=term
    alive "$pid" || STOP_HOW=exited
    kill -TERM "$pid" 2>/dev/null
    while alive "$pid" && [ "$i" -lt "$STOP_WAIT_TENTHS" ]; do
        sleep 0.1; i=$((i + 1))
    done
    if alive "$pid"; then
        say "broker pid $pid still running 5 s after SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null; STOP_HOW="kill"
    fi
    wait "$pid" 2>/dev/null
    STOP_RC=$?
    PIDS=$(tr ' ' '\n' <<<"$PIDS" | grep -vx -e "$pid" -e '' | tr '\n' ' ')
}

cleanup() {
    local pid
    if [ -n "$GEN_PID" ]; then
        kill -TERM "$GEN_PID" 2>/dev/null
        wait "$GEN_PID" 2>/dev/null
    fi
    for pid in $PIDS; do stop_broker "$pid"; done
    [ -n "$TMP" ] && rm -rf "$TMP"
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints a port nobody listens on, below the ephemeral range.
free_port() {
    local p i
    for i in $(seq 1 100); do
        p=$((20000 + RANDOM % 12000))
        if ! port_open "$p"; then echo "$p"; return 0; fi
    done
    return 1
}

# Waits (bounded) until PID accepts on PORT; fails if PID exits first.
wait_port() {
    local pid=$1 port=$2 i=0
    while [ "$i" -lt "$START_WAIT_TENTHS" ]; do
        alive "$pid" || return 1
        port_open "$port" && return 0
        sleep 0.1; i=$((i + 1))
    done
    return 1
}

# --- brokers ---------------------------------------------------------------

# Writes mosquitto.conf $1 for port $2 and scenario $3.
write_mosquitto_conf() {
    local extra
    extra=$(scenario_mosquitto_lines "$3")
    cat >"$1" <<EOF
listener $2 127.0.0.1
$(grep -q '^allow_anonymous' <<<"$extra" || echo 'allow_anonymous true')
${extra}
max_queued_messages 100000
persistence false
set_tcp_nodelay true
log_dest stderr
log_type error
EOF
}

# Writes uvmq's config file $1 for scenario $2: the common queue limit
# and the scenario's own keys (password file, ACL file, cache).
write_uvmq_json() {
    local keys
    keys=$(scenario_uvmq_keys "$2")
    echo "{\"max_queued_messages\": 100000${keys:+, $keys}}" >"$1"
}

# Launches BROKER (uvmq|uvmq-b|mosquitto) in VARIANT (pinned|t2|t2pin) on
# PORT for scenario SC in the background; BROKER_PID is its pid. Must not
# run in a subshell.
launch_broker() {
    local broker=$1 variant=$2 port=$3 tag=$4 sc=$5
    local log="$TMP/$tag.broker.log" bin=$UVMQ cfg="$TMP/$tag.uvmq.json"
    local -a pin=("${PIN_BROKER[@]}")
    local threads=1
    [ "$broker" = uvmq-b ] && bin=$UVMQ_B
    [ "$variant" = t2 ] && pin=()
    [ "$variant" = t2 ] || [ "$variant" = t2pin ] && threads=2
    if [ "$broker" = mosquitto ]; then
        write_mosquitto_conf "$TMP/$tag.mosquitto.conf" "$port" "$sc"
        "${PIN_BROKER[@]}" mosquitto -c "$TMP/$tag.mosquitto.conf" >"$log" 2>&1 &
    else
        mkdir -p "$TMP/$tag.data"
        write_uvmq_json "$cfg" "$sc"
        "${pin[@]}" "$bin" -p "$port" --http-port 0 --data-dir "$TMP/$tag.data" \
            --threads "$threads" -c "$cfg" >"$log" 2>&1 &
    fi
    BROKER_PID=$!
    PIDS="$PIDS $BROKER_PID"
}

# Starts a fresh broker on a free port (3 tries); sets BROKER_PID and
# BROKER_PORT. Returns 1 when it never accepted connections.
start_broker() {
    local broker=$1 variant=$2 tag=$3 sc=$4 try port
    for try in 1 2 3; do
        port=$(free_port) || return 1
        launch_broker "$broker" "$variant" "$port" "$tag" "$sc"
        if wait_port "$BROKER_PID" "$port"; then
            BROKER_PORT=$port
            return 0
        fi
        stop_broker "$BROKER_PID"
        say "$broker did not accept on port $port (try $try):"
        tail -n 5 "$TMP/$tag.broker.log" | sed 's/^/    /' >&2
    done
    return 1
}

# --- one run ---------------------------------------------------------------

# Appends one run record (JSON line) to $TMP/runs.jsonl.
record_run() {
    local sc=$1 broker=$2 round=$3 status=$4 reason=$5 rc=$6 result=$7 tail_log=$8
    jq -c -n --arg sc "$sc" --arg broker "$broker" --argjson round "$round" \
        --arg status "$status" --arg reason "$reason" --argjson rc "$rc" \
        --argjson result "$result" --arg log "$tail_log" \
        '{scenario: $sc, broker: $broker, round: $round, status: $status,
          reason: (if $reason == "" then null else $reason end),
          exit: $rc, result: $result,
          log_tail: (if $log == "" then null else $log end)}' >>"$TMP/runs.jsonl"
}

# Prints a one-line summary of a run record's result to stderr.
report_run() {
    jq -r --arg p "$1" '"fanout: " + $p + ": " +
        (if .status != "ok" then "FAILED (" + (.reason // "?") + ")"
         elif .result.mode == "idle" then
            "\(.result.rss_per_conn_b // "-") B/conn"
         elif .result.mode == "connect" then "\(.result.connects_ok_per_s | floor) connects/s, " +
            "p99 \(.result.latency_us.p99) us, refused \(.result.refused_total), " +
            "errors \(.result.connect_errors)"
         else "\(.result.deliveries_per_s | floor) deliveries/s, p99 " +
            "\(.result.latency_us.p99 // "-") us, lost \(.result.lost)" end) +
        (if (.result.steal_s // 0) >= 0.01 then ", steal \(.result.steal_s) s" else "" end)' \
        <<<"$(tail -n 1 "$TMP/runs.jsonl")" >&2
}

# Runs scenario SC against BROKER once (fresh broker) and records it.
run_one() {
    local sc=$1 broker=$2 round=$3 variant=$4 gargs=$5
    local tag="r$round-$sc-$broker" out err rc line status=ok reason="" log=""
    local limit=$((WARMUP + DURATION + GEN_SLACK))
    local -a args
    out="$TMP/$tag.gen.out"; err="$TMP/$tag.gen.err"
    if ! start_broker "$broker" "$variant" "$tag" "$sc"; then
        record_run "$sc" "$broker" "$round" failed "broker did not start" -1 null \
            "$(tail -n 5 "$TMP/$tag.broker.log" 2>/dev/null)"
        report_run "round $round $sc $broker"; return
    fi
    read -r -a args <<<"$gargs"
    timeout -k 5 "$limit" "${PIN_GEN[@]}" "$UVMQ_BENCH" -H 127.0.0.1 \
        -p "$BROKER_PORT" "${args[@]}" -d "$DURATION" -w "$WARMUP" \
        --broker-pid "$BROKER_PID" --label "$sc/$broker/r$round" >"$out" 2>"$err" &
    GEN_PID=$!
    wait "$GEN_PID"
    rc=$?
    GEN_PID=""
    line=$(tail -n 1 "$out")
    if [ -z "$line" ] || ! jq -e 'type == "object"' >/dev/null 2>&1 <<<"$line"; then
        line=null
    fi
    if ! alive "$BROKER_PID"; then
        status=failed; reason="broker exited during the run"
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        status=failed; reason="generator timed out after ${limit} s"
    elif [ "$rc" -ne 0 ]; then
        status=failed; reason="generator exit $rc"
    elif [ "$line" = null ]; then
        status=failed; reason="no JSON line from the generator"
    fi
    stop_broker "$BROKER_PID"
    if [ "$STOP_HOW" = exited ]; then
        reason="broker exited during the run (status $STOP_RC$( [ "$STOP_RC" -gt 128 ] &&
            echo ": signal $(kill -l $((STOP_RC - 128)))"))"
    fi
    [ "$STOP_HOW" = kill ] && reason="${reason:+$reason; }broker needed SIGKILL"
    if [ "$status" != ok ]; then
        log=$(tail -n 5 "$err"; tail -n 5 "$TMP/$tag.broker.log")
    fi
    record_run "$sc" "$broker" "$round" "$status" "$reason" "$rc" "$line" "$log"
    report_run "round $round $sc $broker"
}

# Percent of the last run's window (seconds x CPUs) that the hypervisor
# took (steal), to one decimal; empty when unknown or the run failed.
last_steal_pct() {
    jq -r --argjson n "$(nproc)" 'select(.status == "ok" and .result.steal_s != null
        and .result.duration_s > 0)
        | 1000 * .result.steal_s / (.result.duration_s * $n) | round / 10' \
        <<<"$(tail -n 1 "$TMP/runs.jsonl")"
}

# Marks the last run record as set aside for steal (status "steal").
set_aside_last() {
    local last
    last=$(tail -n 1 "$TMP/runs.jsonl")
    sed -i '$d' "$TMP/runs.jsonl"
    jq -c --arg r "the host took $1 % of the window's CPU time (steal)" \
        '.status = "steal" | .reason = $r' <<<"$last" >>"$TMP/runs.jsonl"
}

# run_one, repeated (at most STEAL_RETRIES times) while the hypervisor took
# more than STEAL_MAX % of the window's CPU time: such a run measures the
# host, not the broker (a shared VM loses whole slices of a CPU to its
# neighbours). Set-aside runs stay in the results with status "steal" and
# are listed under the table; the last try is kept whatever its steal.
run_measured() {
    local sc=$1 broker=$2 round=$3 try pct
    for try in $(seq 0 "$STEAL_RETRIES"); do
        run_one "$@"
        pct=$(last_steal_pct)
        if [ -z "$pct" ] || awk -v p="$pct" -v m="$STEAL_MAX" 'BEGIN { exit !(p <= m) }'; then
            return 0
        fi
        if [ "$try" -eq "$STEAL_RETRIES" ]; then
            say "round $round $sc $broker: steal $pct % again; kept (STEAL_RETRIES=$STEAL_RETRIES used up)"
            return 0
        fi
        set_aside_last "$pct"
        say "round $round $sc $broker: the host took $pct % of the CPU time (steal): set aside, running it again"
    done
}

# --- setup -----------------------------------------------------------------

# Prints the scenario line for NAME, fails if unknown.
scenario_line() { scenario_table | grep "^$1|"; }

check_settings() {
    local v sc
    for v in ROUNDS DURATION WARMUP F2_RATE KEEP_RESULTS STEAL_MAX STEAL_RETRIES; do
        [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
    done
    if [ "$ROUNDS" -lt 1 ] || [ "$DURATION" -lt 1 ]; then
        die "ROUNDS and DURATION must be >= 1"
    fi
    for sc in $SCENARIOS; do
        scenario_line "$sc" >/dev/null || die "unknown scenario '$sc' (see bench/scenarios.sh)"
        if scenario_needs_passwords "$sc" && [ ! -d "$AUTH_DIR" ]; then
            die "scenario $sc needs password files: run it with bench/connect.sh"
        fi
    done
    for v in $BROKERS; do
        [ "$v" = uvmq ] || [ "$v" = uvmq-b ] || [ "$v" = mosquitto ] ||
            die "unknown broker '$v' (uvmq, uvmq-b, mosquitto)"
        [ "$v" != uvmq-b ] || [ -x "$UVMQ_B" ] || die "uvmq-b needs UVMQ_B, a uvmq binary"
    done
}

build_and_deps() {
    ./scripts/install-deps.sh --bench || say "install-deps.sh --bench failed; going on with what is installed"
    command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
    if [ "$SKIP_BUILD" != 1 ]; then
        make -j2 all || die "make -j2 all failed"
    fi
    [ -x "$UVMQ" ] || die "$UVMQ is missing"
    [ -x "$UVMQ_BENCH" ] || die "$UVMQ_BENCH is missing (make build/uvmq-bench)"
    if [[ " $BROKERS " == *" mosquitto "* ]] && ! command -v mosquitto >/dev/null; then
        say "mosquitto is not installed: benchmarking uvmq only"
        BROKERS=uvmq
    fi
}

# Pins brokers to CPU 0 and the generator to CPU 1 when taskset and 2 CPUs exist.
setup_pinning() {
    if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
        PIN_BROKER=(taskset -c 0); PIN_GEN=(taskset -c 1)
    else
        say "taskset missing or fewer than 2 CPUs: nothing is pinned"
    fi
}

# Raises the open-file limit as far as allowed (10,000 connections need
# more than 10,000 fds in the generator and again in the broker).
raise_nofile() {
    local hard
    hard=$(ulimit -Hn)
    if [ "$hard" = unlimited ]; then
        ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null
    else
        ulimit -n "$hard" 2>/dev/null
    fi
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10240 ]; then
        say "open files limited to $(ulimit -n): F5, F6 and F7 may fail (raise ulimit -Hn)"
    fi
}

# Prints the machine description as a JSON object.
machine_json() {
    local cpu mem mosq
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
    mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
    mosq=$( (mosquitto -h 2>&1 || true) | grep -m1 -o 'version [0-9.]*' | cut -d' ' -f2)
    jq -n --arg host "$(hostname)" --arg nproc "$(nproc)" --arg cpu "${cpu:-unknown}" \
        --arg kernel "$(uname -srm)" --arg mem "$mem" --arg mosq "${mosq:-not installed}" \
        --arg uvmq "$(git describe --always --dirty --tags 2>/dev/null || echo unknown)" \
        --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg nofile "$(ulimit -n)" \
        '{date: $date, host: $host, nproc: ($nproc | tonumber), cpu_model: $cpu,
          kernel: $kernel, memory: $mem, mosquitto_version: $mosq,
          uvmq_git_describe: $uvmq, open_files_limit: $nofile}'
}

config_json() {
    jq -n --argjson rounds "$ROUNDS" --argjson dur "$DURATION" --argjson warm "$WARMUP" \
        --argjson f2 "$F2_RATE" --arg quick "$QUICK" --arg sc "$SCENARIOS" \
        --arg brokers "$BROKERS" --arg pin "${PIN_BROKER[*]:-none}|${PIN_GEN[*]:-none}" \
        --arg table "$(scenario_table)" --argjson auth "$AUTH_INFO" \
        --arg keys "$(for sc in $SCENARIOS; do echo "$sc|$(scenario_uvmq_keys "$sc")"; done)" \
        '{quick: ($quick == "1"), rounds: $rounds, duration_s: $dur, warmup_s: $warm,
          passwords: $auth,
          uvmq_scenario_keys: ($keys | split("\n") | map(select(. != "") | split("|")
            | {(.[0]): .[1]}) | add),
          f2_rate: $f2, scenarios: ($sc | split(" ") | map(select(. != ""))),
          brokers: ($brokers | split(" ") | map(select(. != ""))),
          broker_pinning: ($pin | split("|")[0]), generator_pinning: ($pin | split("|")[1]),
          scenario_table: ($table | split("\n") | map(split("|") |
            {name: .[0], brokers: .[1], variant: .[2], generator_args: .[3], what: .[4]}))}'
}

print_machine() {
    jq -r '"Machine: \(.host), \(.nproc) CPUs, \(.cpu_model), \(.memory), \(.kernel)",
           "Brokers: uvmq \(.uvmq_git_describe), mosquitto \(.mosquitto_version)"' <<<"$1"
    jq -r '"Runs:    \(.rounds) round(s) x \(.duration_s) s (+\(.warmup_s) s warm-up), " +
           "F2 rate \(.f2_rate) msg/s, brokers pinned: \(.broker_pinning), " +
           "generator: \(.generator_pinning)"' <<<"$2"
}

# --- results ---------------------------------------------------------------

# Prints the medians (JSON array) of the runs in $TMP/runs.jsonl, in
# scenario order, each uvmq row with its ratio to mosquitto.
medians_json() {
    local modes
    modes=$(scenario_table | awk -F'|' '{ m = "fanout"; if (match($4, /-m [a-z]+/)) m = substr($4, RSTART + 3, RLENGTH - 3); print $1 " " m }' |
        jq -R 'split(" ") | {(.[0]): .[1]}' | jq -s add)
    jq -s --arg order "$SCENARIOS" --argjson modes "$modes" -f /dev/stdin "$TMP/runs.jsonl" <<'JQ'
def median: sort | if length == 0 then null
    elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def med(f): [.[] | f | select(. != null)] | median;
def ratio(a; b): if a == null or b == null or b == 0 then null else a / b end;
($order | split(" ") | map(select(. != ""))) as $sc
| map(select(.status != "steal"))
| group_by([.scenario, .broker])
| map((map(select(.status == "ok") | .result)) as $ok
  | {scenario: .[0].scenario, broker: .[0].broker, runs: length, ok: ($ok | length),
     mode: ($modes[.[0].scenario] // $ok[0].mode // null),
     deliveries_per_s: ($ok | med(.deliveries_per_s)),
     deliveries_per_broker_cpu_s: ($ok | med(.deliveries_per_broker_cpu_s)),
     published_per_s: ($ok | med(.published_per_s)),
     p50_us: ($ok | map(select(.received > 0 or (.connects_ok // 0) > 0)) | med(.latency_us.p50)),
     p99_us: ($ok | map(select(.received > 0 or (.connects_ok // 0) > 0)) | med(.latency_us.p99)),
     connects_ok_per_s: ($ok | med(.connects_ok_per_s)),
     connects_per_broker_cpu_s: ($ok | med(.connects_per_broker_cpu_s)),
     refused: ($ok | med(.refused_total)), connect_errors: ($ok | med(.connect_errors)),
     lost: ($ok | med(.lost)),
     lost_pct: ($ok | med(if (.expected // 0) > 0 then 100 * .lost / .expected else null end)),
     duplicates: ($ok | med(.duplicates)), order_violations: ($ok | med(.order_violations)),
     broker_cpu_s: ($ok | med(.broker_cpu_s)), broker_rss_kb: ($ok | med(.broker_rss_kb)),
     rss_per_conn_b: ($ok | med(.rss_per_conn_b)), steal_s: ($ok | med(.steal_s))})
| . as $all
| map(. as $r
  | (if $r.scenario == "F3t2" then "F3q0" else $r.scenario end) as $base
  | ([$all[] | select(.broker == "mosquitto" and .scenario == $base)] | first) as $m
  | ([$all[] | select(.broker == "uvmq-b" and .scenario == $r.scenario)] | first) as $b
  | . + (if $r.broker == "uvmq" and $m != null then
        {vs: ("mosquitto " + $base),
         ratio_deliveries_per_s: ratio($r.deliveries_per_s; $m.deliveries_per_s),
         ratio_per_cpu_s: ratio($r.deliveries_per_broker_cpu_s; $m.deliveries_per_broker_cpu_s)}
        else {} end)
  | . + (if $r.broker == "uvmq" and $b != null then
        {ab_deliveries_per_s: ratio($r.deliveries_per_s; $b.deliveries_per_s),
         ab_per_cpu_s: ratio($r.deliveries_per_broker_cpu_s; $b.deliveries_per_broker_cpu_s),
         ab_rss_per_conn: ratio($r.rss_per_conn_b; $b.rss_per_conn_b)}
        else {} end))
| sort_by((.scenario as $s | $sc | index($s)), (if .broker == "uvmq" then 0 else 1 end))
JQ
}

# Prints the comparison table (markdown) from the medians on stdin; the
# connect scenarios have their own (print_connect_table).
print_table() {
    jq -r '.[] | select(.mode != "connect") | [.scenario, .broker, .ok, .runs, .mode, .deliveries_per_s,
        .deliveries_per_broker_cpu_s, .p50_us, .p99_us, .lost, .lost_pct,
        .order_violations, .broker_rss_kb, .rss_per_conn_b,
        .ratio_deliveries_per_s, .ratio_per_cpu_s]
        | map(if . == null then "-" else tostring end) | @tsv' | awk -F'\t' '
    function commas(x,   s, r) {
        s = sprintf("%.0f", x); r = ""
        while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
        return s r
    }
    function num(x) { return x == "-" ? "-" : commas(x) }
    function rat(x) { return x == "-" ? "-" : sprintf("%.2fx", x) }
    BEGIN { n = 1; split("scenario|broker|deliveries/s|deliveries/broker CPU-s|p50 / p99 us|lost|order viol.|broker RSS|uvmq/mosq deliveries/s|uvmq/mosq per CPU-s", h, "|")
            for (i = 1; i <= 10; i++) cell[1, i] = h[i] }
    {
        n++; cell[n, 1] = $1; cell[n, 2] = ($3 < $4) ? $2 " (" $3 "/" $4 " ok)" : $2
        for (i = 3; i <= 10; i++) cell[n, i] = "-"
        if ($3 == 0) { cell[n, 3] = "FAILED"; next }
        idle = ($5 == "idle")
        if (!idle) {
            cell[n, 3] = num($6); cell[n, 4] = num($7)
            cell[n, 5] = ($8 == "-") ? "-" : sprintf("%.0f / %.0f", $8, $9)
            cell[n, 6] = num($10)
            if ($11 != "-" && $11 >= 0.01) cell[n, 6] = cell[n, 6] sprintf(" (%.2f%%)", $11)
            else if ($11 != "-" && $11 > 0) cell[n, 6] = cell[n, 6] " (<0.01%)"
            cell[n, 7] = num($12)
            cell[n, 9] = rat($15); cell[n, 10] = rat($16)
        }
        if (idle) cell[n, 8] = ($14 == "-") ? "-" : sprintf("%.0f B/conn", $14)
        else cell[n, 8] = ($13 == "-") ? "-" : sprintf("%.1f MiB", $13 / 1024)
    }
    END {
        if (n == 1) exit
        for (i = 1; i <= 10; i++) { w[i] = 0; for (r = 1; r <= n; r++) if (length(cell[r, i]) > w[i]) w[i] = length(cell[r, i]) }
        for (r = 1; r <= n; r++) {
            line = "|"
            for (i = 1; i <= 10; i++) line = line sprintf(i <= 2 ? " %-*s |" : " %*s |", w[i], cell[r, i])
            print line
            if (r == 1) { line = "|"; for (i = 1; i <= 10; i++) { d = ""; for (k = 0; k < w[i]; k++) d = d "-"; line = line (i <= 2 ? " " d " |" : " " substr(d, 2) ": |") }; print line }
        }
    }'
}

# Prints the before/after table (uvmq against uvmq-b, UVMQ_B) from the
# medians on stdin, when the run had both.
print_ab() {
    jq -r --arg b "$UVMQ_B" '. as $all
        | [.[] | select(.broker == "uvmq" and .mode != "connect") | . as $a
           | ([$all[] | select(.broker == "uvmq-b" and .scenario == $a.scenario)] | first) as $o
           | select($o != null) | {a: $a, o: $o}] as $p
        | def r3: if . == null then "-" else (. * 1000 | round / 1000 | tostring) end;
          def n: if . == null then "-" else (floor | tostring) end;
          if ($p | length) == 0 then empty else
          "", "uvmq / uvmq-b (uvmq-b: \($b)), medians:", "",
          "| scenario | uvmq per CPU-s | uvmq-b per CPU-s | ratio | uvmq deliveries/s | uvmq-b deliveries/s | ratio |",
          "|---|---:|---:|---:|---:|---:|---:|",
          ($p[] | if .a.mode == "idle" then
              "| \(.a.scenario) | \(.a.rss_per_conn_b | n) B/conn | \(.o.rss_per_conn_b | n) B/conn | \(.a.ab_rss_per_conn | r3) | - | - | - |"
            else
              "| \(.a.scenario) | \(.a.deliveries_per_broker_cpu_s | n) | \(.o.deliveries_per_broker_cpu_s | n) | \(.a.ab_per_cpu_s | r3) | \(.a.deliveries_per_s | n) | \(.o.deliveries_per_s | n) | \(.a.ab_deliveries_per_s | r3) |"
            end)
          end'
}

# Prints the connect scenarios' table (markdown) from the medians on stdin:
# accepted CONNACKs per second and per broker CPU-second, latency, refusals
# and failures; with uvmq-b in the run, uvmq / uvmq-b of both rates.
print_connect_table() {
    jq -r '[.[] | select(.mode == "connect")] as $c | . as $all
        | def n: if . == null then "-" else (floor | tostring) end;
          def r2: if . == null then "-" else (. * 100 | round / 100 | tostring) end;
          def ratio(a; b): if a == null or b == null or b == 0 then null else a / b end;
          if ($c | length) == 0 then empty else
          "", "CONNECT scenarios (medians; latency CONNECT -> accepted CONNACK):", "",
          "| scenario | broker | connects/s | connects/broker CPU-s | p50 / p99 us | refused | failed | vs uvmq-b (connects/s, per CPU-s) |",
          "|---|---|---:|---:|---:|---:|---:|---:|",
          ($c[] | . as $r
           | ([$all[] | select(.broker == "uvmq-b" and .scenario == $r.scenario)] | first) as $b
           | "| \(.scenario) | \(.broker)\(if .ok < .runs then " (\(.ok)/\(.runs) ok)" else "" end) | " +
             "\(.connects_ok_per_s | n) | \(.connects_per_broker_cpu_s | n) | " +
             "\(.p50_us | n) / \(.p99_us | n) | \(.refused | n) | \(.connect_errors | n) | " +
             (if .broker == "uvmq" and $b != null then
                "\(ratio(.connects_ok_per_s; $b.connects_ok_per_s) | r2), \(ratio(.connects_per_broker_cpu_s; $b.connects_per_broker_cpu_s) | r2)"
              else "-" end) + " |")
          end'
}

# Prints the notes under the table: F3t2's baseline and every failed run.
print_notes() {
    jq -r '(if any(.medians[]; .scenario == "F3t2") then
              "F3t2: uvmq --threads 2, broker unpinned; its ratios compare with mosquitto F3q0."
            else empty end),
           ([.medians[] | select(.scenario == "F1")] as $f
            | .medians[] | select(.scenario == "F1acl") | . as $a
            | ($f[] | select(.broker == $a.broker)) as $b
            | select($a.deliveries_per_s != null and $a.deliveries_per_broker_cpu_s != null
                and $b.deliveries_per_broker_cpu_s > 0 and $b.deliveries_per_s > 0)
            | "F1acl / F1 (\($a.broker)): \($a.deliveries_per_broker_cpu_s / $b.deliveries_per_broker_cpu_s * 1000 | round / 1000) per broker CPU-s, " +
              "\($a.deliveries_per_s / $b.deliveries_per_s * 1000 | round / 1000) deliveries/s"),
           (.runs[] | select(.status == "steal")
            | "Set aside and run again: \(.scenario) \(.broker) round \(.round): \(.reason)"),
           (.machine.nproc as $n | .runs[]
            | select(.status == "ok" and (.result.steal_s // 0) * 100 >
                  $max * .result.duration_s * $n)
            | "Kept with steal over \($max) %: \(.scenario) \(.broker) round \(.round) " +
              "(\(.result.steal_s) s)"),
           (.runs[] | select(.status != "ok" and .status != "steal")
            | "Failed: \(.scenario) \(.broker) round \(.round): \(.reason)")' \
        --argjson max "$STEAL_MAX" "$1"
}

# Draws the PNG from the medians in file $1 into $2 (skips idle scenarios).
draw_chart() {
    local medians=$1 png=$2 title=$3 dat="$TMP/plot.dat"
    command -v gnuplot >/dev/null || { say "gnuplot missing: no chart"; return 0; }
    jq -r '[group_by(.scenario)[] | select(any(.[]; .ok > 0 and .mode != "idle" and .mode != "connect"))]
        | sort_by(.[0].sortkey) | .[]
        | (map(select(.broker == "uvmq")) | first) as $u
        | (map(select(.broker == "mosquitto")) | first) as $m
        | [.[0].scenario, $u.deliveries_per_s, $m.deliveries_per_s, $u.p99_us, $m.p99_us]
        | map(if . == null then "-" else tostring end) | join(" ")' \
        <<<"$(jq --arg order "$SCENARIOS" '($order | split(" ")) as $o
              | map(. + {sortkey: (.scenario as $s | $o | index($s))})' "$medians")" >"$dat"
    if [ ! -s "$dat" ]; then say "nothing to plot"; return 0; fi
    gnuplot -e "datafile='$dat'; outfile='$png'; chart_title='$title'" bench/plot.gp ||
        say "gnuplot failed: no chart"
}

# Keeps the newest KEEP_RESULTS result sets in RESULTS_DIR.
prune_results() {
    local stem
    find "$RESULTS_DIR" -maxdepth 1 -type f -name '[0-9][0-9][0-9][0-9]-*' \
        -printf '%f\n' | sed 's/\.[a-z]*$//' | sort -u | head -n "-$KEEP_RESULTS" |
        while read -r stem; do
            rm -f "$RESULTS_DIR/$stem.json" "$RESULTS_DIR/$stem.png" "$RESULTS_DIR/$stem.txt"
        done
}

# --- main ------------------------------------------------------------------

run_all() {
    local round sc broker line brokers variant gargs
    for round in $(seq 1 "$ROUNDS"); do
        for sc in $SCENARIOS; do
            line=$(scenario_line "$sc")
            IFS='|' read -r _ brokers variant gargs _ <<<"$line"
            for broker in $BROKERS; do
                [ "$brokers" = all ] || [ "$brokers" = "${broker%-b}" ] || continue
                run_measured "$sc" "$broker" "$round" "$variant" "$gargs"
            done
        done
    done
}

main() {
    local machine config stem medians
    check_settings
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    build_and_deps
    setup_pinning
    raise_nofile
    TMP=$(mktemp -d /tmp/uvmq-fanout.XXXXXX) || die "mktemp failed"
    ACL="$TMP/acl.txt"
    write_acl_file "$ACL"
    : >"$TMP/runs.jsonl"
    machine=$(machine_json); config=$(config_json)
    print_machine "$machine" "$config"
    echo
    run_all
    mkdir -p "$RESULTS_DIR"
    stem="$RESULTS_DIR/$(date +%Y-%m-%d-%H%M%S)-$(hostname -s | tr -cd 'A-Za-z0-9_-')"
    medians=$(medians_json) || die "could not compute the medians"
    jq -n --argjson machine "$machine" --argjson config "$config" \
        --slurpfile runs "$TMP/runs.jsonl" --argjson medians "$medians" \
        '{machine: $machine, config: $config, runs: $runs, medians: $medians}' >"$stem.json"
    { print_machine "$machine" "$config"; echo; print_table <<<"$medians"
      print_ab <<<"$medians"; print_connect_table <<<"$medians"
      print_notes "$stem.json"; } >"$stem.txt"
    print_table <<<"$medians"
    print_ab <<<"$medians"
    print_connect_table <<<"$medians"
    print_notes "$stem.json"
    jq '.medians' "$stem.json" >"$TMP/medians.json"
    draw_chart "$TMP/medians.json" "$stem.png" \
        "uvmq $(jq -r .uvmq_git_describe <<<"$machine") vs mosquitto $(jq -r .mosquitto_version <<<"$machine") - $(hostname -s), $(nproc) CPUs"
    prune_results
    echo
    echo "Results: $stem.json, $stem.txt$([ -f "$stem.png" ] && echo ", $stem.png")"
}

main "$@"
