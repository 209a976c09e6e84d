#!/bin/bash
# Runs every test program and prints one closing line "N passed, N failed".
#
# Each unit and integration binary is a cmocka program run with TAP output;
# each tests/integration/*.sh script, and each test of a script in scripts/
# (tests/unit/scripts/*.sh), prints TAP itself, and scripts/check-layers.sh
# on this repository counts as one test. Every program runs under a time
# limit; a program that dies or prints no TAP lines counts as one failure.
# Environment: BUILD (build dir), SAN / TSAN (1 under sanitizers),
# ONLY (substring filter), TEST_THREADS (the worker-loop counts the
# integration tests run with; default "1 4").
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export UVMQ_BIN="$PWD/$BUILD/uvmq"

export CMOCKA_MESSAGE_OUTPUT=TAP
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp}
LIMIT=${TEST_TIMEOUT:-300}
LOGDIR="$PWD/$BUILD/test-logs"
rm -rf "$LOGDIR"; mkdir -p "$LOGDIR"

passed=0; failed=0
run_one() {
    local name="$1"; shift
    local log="$LOGDIR/$(echo "$name" | tr '/ ()' '____').log"
    timeout -k 5 "$LIMIT" "$@" >"$log" 2>&1
    local rc=$?
    local ok nok
    ok=$(grep -cE '^ok [0-9]+' "$log")
    nok=$(grep -cE '^not ok [0-9]+' "$log")
    if [ "$rc" -ne 0 ] && [ "$nok" -eq 0 ]; then
        nok=1   # crashed, timed out or leaked without a failing test line
    fi
    passed=$((passed + ok)); failed=$((failed + nok))
    if [ "$nok" -ne 0 ]; then
        echo "FAIL $name ($ok passed, $nok failed, exit $rc) - log: $log"
        # cmocka puts a failed assertion on the line before "file:line: error:"
        awk '/^not ok|ERROR|Sanitizer|runtime error|Timeout/ { print; prev = ""; next }
             /: error: / { if (prev ~ /^# /) print prev; print }
             { prev = $0 }' "$log" | head -20 | sed 's/^/    /'
    else
        echo "ok   $name ($ok passed)"
    fi
}

for t in "$BUILD"/tests/unit/*/*; do
    [ -x "$t" ] || continue
    case "$t" in *.d) continue;; esac
    [ -f "tests/unit/${t#"$BUILD"/tests/unit/}.c" ] || continue   # stale: source removed
    [ -n "${ONLY:-}" ] && [[ "$t" != *"$ONLY"* ]] && continue
    run_one "unit/${t#"$BUILD"/tests/unit/}" "$t"
done
# The tests of scripts/ are bash programs (tests/unit/scripts/NAME.sh tests
# scripts/NAME.sh).
for t in tests/unit/scripts/*.sh; do
    [ -f "$t" ] || continue
    [ -n "${ONLY:-}" ] && [[ "$t" != *"$ONLY"* ]] && continue
    run_one "unit/scripts/${t##*/}" bash "$t"
done
# The layering check on this repository, as one TAP test; its violations
# are in the log. ONLY matches it as "scripts/check-layers.sh".
if [ -z "${ONLY:-}" ] || [[ "scripts/check-layers.sh" == *"$ONLY"* ]]; then
    run_one "scripts/check-layers.sh (the layering)" bash -c 'echo "1..1"
        if ./scripts/check-layers.sh; then echo "ok 1 - the layering holds"
        else echo "not ok 1 - the layering holds (scripts/check-layers.sh; rules atop the script)"; fi'
fi
# Integration tests run once per worker-loop count (UVMQ_TEST_THREADS is
# passed to the broker as --threads by the harness and the scripts).
for threads in ${TEST_THREADS:-1 4}; do
    export UVMQ_TEST_THREADS=$threads
    for t in "$BUILD"/tests/integration/*; do
        [ -x "$t" ] && [ -f "$t" ] || continue
        case "$t" in *.d) continue;; esac
        [ -f "tests/integration/${t##*/}.c" ] || continue
        [ -n "${ONLY:-}" ] && [[ "$t" != *"$ONLY"* ]] && continue
        run_one "integration/${t##*/} (threads $threads)" "$t"
    done
    for t in tests/integration/*.sh; do
        [ -f "$t" ] || continue
        [ -n "${ONLY:-}" ] && [[ "$t" != *"$ONLY"* ]] && continue
        run_one "integration/${t##*/} (threads $threads)" bash "$t"
    done
done
unset UVMQ_TEST_THREADS

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
