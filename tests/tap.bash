# tests/tap.bash - TAP lines for the bash tests (sourced).
#
# ok NAME / not_ok NAME [FILE]: one TAP line each, numbered in $n; a
# failure counts in $failed and shows FILE's last 30 lines as comments.
# The caller prints the plan ("1..N") and exits non-zero when $failed is.
n=0
failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1)); failed=$((failed + 1))
    echo "not ok $n - $1"
    [ -n "${2:-}" ] && [ -f "$2" ] && sed 's/^/#   /' "$2" | tail -30
    return 0
}
