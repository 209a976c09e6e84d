#!/bin/bash
# check-layers.sh - tests scripts/check-layers.sh on small fixture trees.
#
# One tree follows every rule (the target layout: tls/, http/, ws/, auth/
# and cluster/ in folders of their own, http/ reaching broker/ through its
# public headers, libraries where they belong, tests/ and bench/ reaching
# internals, an include inside a comment); the script must pass it with one
# summary line. Then each test copies that tree, adds one file breaking one
# rule at a known line, and checks that the script exits 1 and names the
# file, the line, the include and the rule. Last, --dot draws the folder
# graph. Prints TAP; the trees live in a temp dir removed on exit.
set -u
cd "$(dirname "$0")/../../.." || exit 1
CHECK="$PWD/scripts/check-layers.sh"

TMP=$(mktemp -d /tmp/uvmq-layers-XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT
# shellcheck source=tests/tap.bash
. tests/tap.bash

# put FILE: writes its standard input to FILE, making the folders.
put() { mkdir -p "$(dirname "$1")" && cat >"$1"; }

# The conforming tree.
B="$TMP/base"
put "$B/common/err.h" <<'EOF'
/* Error codes. */
EOF
put "$B/common/log.h" <<'EOF'
#include "err.h"
EOF
put "$B/common/log.c" <<'EOF'
#include "log.h"
#include <stdio.h>
#include "common/err.h"
EOF
put "$B/packets/pkt.h" <<'EOF'
#include "../common/err.h"
EOF
put "$B/packets/packets_int.h" <<'EOF'
#include "pkt.h"
EOF
put "$B/packets/pkt.c" <<'EOF'
#include "pkt.h"
/* A comment that mentions an include counts for nothing:
#include "../broker/broker.h"
 */
// #include <uv.h>
#include <string.h>
#include "packets_int.h"
static const char *s = "/* not a comment";
#include "common/log.h"
EOF
put "$B/router/router.h" <<'EOF'
#include "../common/err.h"
EOF
put "$B/router/router_int.h" <<'EOF'
#include "router.h"
EOF
put "$B/router/router.c" <<'EOF'
#include "router.h"
#include "router_int.h"
EOF
put "$B/queue/queue.h" <<'EOF'
#include "../packets/pkt.h"
EOF
put "$B/queue/queue.c" <<'EOF'
#include "queue.h"
#include "../common/log.h"
EOF
put "$B/storage/store.h" <<'EOF'
#include "../common/err.h"
EOF
put "$B/storage/store_int.h" <<'EOF'
#include <sqlite3.h>
#include "store.h"
EOF
put "$B/storage/store.c" <<'EOF'
#include "store_int.h"
EOF
put "$B/tls/tls.h" <<'EOF'
#include "../common/err.h"
EOF
put "$B/tls/tls.c" <<'EOF'
#include "tls.h"
#include <openssl/ssl.h>
#include <uv.h>
EOF
put "$B/auth/auth.h" <<'EOF'
#include "../common/err.h"
EOF
put "$B/auth/auth.c" <<'EOF'
#include "auth.h"
#include <argon2.h>
#include <openssl/evp.h>
EOF
put "$B/broker/broker.h" <<'EOF'
#include "../common/err.h"
EOF
put "$B/broker/transport.h" <<'EOF'
#include "broker.h"
EOF
put "$B/broker/sink.h" <<'EOF'
#include "broker.h"
EOF
put "$B/broker/listener.h" <<'EOF'
#include "broker.h"
EOF
put "$B/broker/broker_int.h" <<'EOF'
#include <uv.h>
#include "broker.h"
#include "transport.h"
#include "../auth/auth.h"
#include "../queue/queue.h"
#include "../router/router.h"
#include "../storage/store.h"
#include "../tls/tls.h"
EOF
put "$B/broker/conn_int.h" <<'EOF'
#include "broker_int.h"
EOF
put "$B/broker/conn.c" <<'EOF'
#include "conn_int.h"
#include "broker/listener.h"
#include <cJSON.h>
#include "packets/pkt.h"
EOF
put "$B/http/http.h" <<'EOF'
#include "broker/transport.h"
EOF
put "$B/http/http_int.h" <<'EOF'
#include "http.h"
EOF
put "$B/http/http.c" <<'EOF'
#include "http_int.h"
#include <nghttp2/nghttp2.h>
#include <uv.h>
#include "../broker/broker.h"
#include "../broker/sink.h"
#include "../tls/tls.h"
#include "../router/router.h"
EOF
put "$B/ws/ws.h" <<'EOF'
#include "../broker/transport.h"
EOF
put "$B/ws/ws.c" <<'EOF'
#include "ws.h"
#include <wslay/wslay.h>
EOF
put "$B/cluster/cluster.h" <<'EOF'
#include "broker/sink.h"
EOF
put "$B/cluster/cluster.c" <<'EOF'
#include "cluster.h"
#include <nats/nats.h>
#include "queue/queue.h"
EOF
put "$B/cli/uvmq.c" <<'EOF'
#include "broker/broker.h"
#include "cluster/cluster.h"
#include "http/http.h"
#include "ws/ws.h"
#include <common/log.h>
#include <cJSON.h>
#include <stdio.h>
EOF
put "$B/tests/unit/conn.c" <<'EOF'
#include "broker/conn_int.h"
#include "router/router_int.h"
EOF
put "$B/bench/micro/pass.c" <<'EOF'
#include "../../broker/conn_int.h"
#include <openssl/ssl.h>
EOF
put "$B/docs/notes.md" <<'EOF'
Not a source.
EOF

out="$TMP/out"
"$CHECK" --root "$B" >"$out" 2>&1
rc=$?
if [ "$rc" -eq 0 ] && [ "$(wc -l <"$out")" -eq 1 ] &&
    grep -q '^check-layers: the layering holds' "$out"; then
    ok "a tree that follows every rule passes with one summary line"
else
    echo "# exit $rc" >>"$out"
    not_ok "a tree that follows every rule passes with one summary line" "$out"
fi

# violates NAME FILE LINE INCLUDE RULE_WORDS: the file FILE (from the
# tree's root), written on standard input, breaks a rule at LINE; the
# script must exit 1 and print "FILE:LINE: INCLUDE breaks rule: ..." with
# RULE_WORDS in the rule. Each case gets a fresh copy of the base tree.
t=0
violates() {
    local name=$1 file=$2 line=$3 inc=$4 words=$5
    t=$((t + 1))
    local tree="$TMP/t$t"
    cp -R "$B" "$tree"
    put "$tree/$file"
    expect_in "$name" "$tree" 1 "$file:$line: $inc breaks rule: " "$words"
}

# expect_in NAME TREE RC PREFIX WORDS: the script on TREE exits RC and
# prints a line starting with PREFIX that contains WORDS.
expect_in() {
    local name=$1 tree=$2 want=$3 prefix=$4 words=$5
    local out="$tree.out" rc
    "$CHECK" --root "$tree" >"$out" 2>&1
    rc=$?
    if [ "$rc" -eq "$want" ] &&
        grep -F -- "$prefix" "$out" | grep -qF -- "$words"; then
        ok "$name"
    else
        {
            echo "exit $rc (want $want); want a line starting: $prefix"
            echo "and containing: $words"
        } >>"$out"
        not_ok "$name" "$out"
    fi
}

violates "packets/ including broker/ is caught" packets/bad.c 2 '"../broker/broker.h"' \
    'packets/ includes only common/' <<'EOF'
#include "pkt.h"
#include "../broker/broker.h"
EOF
# That include also closes a loop packets -> broker -> packets; it is
# reported once, and the allowed broker -> packets edge is not blamed.
out="$TMP/t$t.out"
if [ "$(grep -c 'breaks rule' "$out")" -eq 1 ]; then
    ok "a forbidden include that closes a loop is the one violation reported"
else
    not_ok "a forbidden include that closes a loop is the one violation reported" "$out"
fi

violates "queue/ including router/ is caught" queue/bad.c 3 '"router/router.h"' \
    'queue/ includes only packets/ and common/' <<'EOF'
#include "queue.h"
#include "../packets/pkt.h"
#include "router/router.h"
EOF

violates "tls/ including broker/ is caught" tls/bad.c 2 '"../broker/broker.h"' \
    'tls/ includes only common/' <<'EOF'
#include "tls.h"
#include "../broker/broker.h"
EOF

violates "common/ including a folder above it is caught" common/bad.c 1 '"../packets/pkt.h"' \
    'common/ includes nothing of ours outside common/' <<'EOF'
#include "../packets/pkt.h"
EOF

violates "common/ including <uv.h> is caught" common/bad.c 3 '<uv.h>' \
    'libuv (uv.h, <uv/...>) is kept out of common/' <<'EOF'
#include "log.h"

#include <uv.h>
EOF

violates "packets/ including <uv.h> is caught" packets/bad.c 1 '<uv.h>' \
    'is kept out of common/, packets/, router/ and auth/' <<'EOF'
#include <uv.h>
EOF

violates "sqlite3.h outside storage/ is caught" queue/bad.c 2 '<sqlite3.h>' \
    'SQLite (sqlite3.h, sqlite3ext.h) is included only in storage/' <<'EOF'
#include "queue.h"
#include <sqlite3.h>
EOF

violates "a quoted \"sqlite3.h\" outside storage/ is caught" broker/bad.c 1 '"sqlite3.h"' \
    'SQLite (sqlite3.h, sqlite3ext.h) is included only in storage/' <<'EOF'
#include "sqlite3.h"
EOF

violates "OpenSSL outside tls/ and auth/ is caught" broker/bad.c 2 '<openssl/ssl.h>' \
    'OpenSSL (<openssl/...>) is included only in tls/ and auth/' <<'EOF'
#include "broker_int.h"
#include <openssl/ssl.h>
EOF

violates "nghttp2 outside http/ is caught" broker/bad.c 4 '<nghttp2/nghttp2.h>' \
    'nghttp2 (<nghttp2/...>) is included only in http/' <<'EOF'
/*
 * A file header.
 */
#include <nghttp2/nghttp2.h>
EOF

violates "wslay outside ws/ is caught" http/bad.c 1 '<wslay/wslay.h>' \
    'wslay (<wslay/...>) is included only in ws/' <<'EOF'
#include <wslay/wslay.h>
EOF

violates "argon2 outside auth/ is caught" broker/bad.c 1 '<argon2.h>' \
    'argon2 (argon2.h) is included only in auth/' <<'EOF'
#include <argon2.h>
EOF

violates "libnats outside cluster/ is caught" broker/bad.c 1 '<nats/nats.h>' \
    'libnats (nats.h, <nats/...>) is included only in cluster/' <<'EOF'
#include <nats/nats.h>
EOF

violates "an *_int.h included from another folder is caught" broker/bad.c 2 '"../router/router_int.h"' \
    "a module's internal header (*_int.h) is included only by files in its own folder (router/)" <<'EOF'
#include "broker_int.h"
#include "../router/router_int.h"
EOF

violates "http/ including broker/conn_int.h is caught" http/bad.c 2 '"../broker/conn_int.h"' \
    "a module's internal header (*_int.h) is included only by files in its own folder (broker/)" <<'EOF'
#include "http_int.h"
#include "../broker/conn_int.h"
EOF

violates "http/ including a broker/ header that is not public is caught" http/bad.c 1 \
    '"broker/listener.h"' \
    'outside broker/, only its public headers broker/broker.h, broker/transport.h and broker/sink.h' <<'EOF'
#include "broker/listener.h"
EOF

violates "cli/ including broker/transport.h is caught" cli/bad.c 1 '"broker/transport.h"' \
    'cli/ reaches broker/ only through broker/broker.h' <<'EOF'
#include "broker/transport.h"
EOF

violates "an angle include of our own header is checked like a quoted one" packets/bad.c 1 \
    '<broker/broker.h>' \
    'packets/ includes only common/' <<'EOF'
#include <broker/broker.h>
EOF

violates "a folder cycle is caught at the include that closes it" broker/bad.c 2 '"http/http.h"' \
    'no include cycle between folders (broker -> http -> broker' <<'EOF'
#include "broker_int.h"
#include "http/http.h"
EOF
# The same tree: the other edge of the cycle is named at its first include.
expect_in "a folder cycle is caught at the include on its other edge" "$TMP/t$t" 1 \
    'http/http.c:4: "../broker/broker.h" breaks rule: ' \
    'no include cycle between folders (http -> broker -> http'

violates "a typo'd include that resolves to no file is caught" cli/bad.c 2 '"common/lgo.h"' \
    'an include names a file that exists' <<'EOF'
#include "broker/broker.h"
#include "common/lgo.h"
EOF

violates "an include that leaves the repository is caught" router/bad.c 1 '"../../outside.h"' \
    'includes stay inside the repository' <<'EOF'
#include "../../outside.h"
EOF

violates "a macro include is caught" broker/bad.c 2 'HEADER' \
    'an include names its file literally' <<'EOF'
#define HEADER "broker.h"
#include HEADER
EOF

t=$((t + 1))
cp -R "$B" "$TMP/t$t"
put "$TMP/t$t/plugins/x.c" <<'EOF'
#include "../broker/broker_int.h"
EOF
expect_in "a folder of sources with no row in the table is caught" "$TMP/t$t" 1 \
    'plugins/: breaks rule: ' 'every folder of product sources has a row in the folder table'

# The drawing.
dotout="$TMP/base.dot"
"$CHECK" --root "$B" --dot >"$dotout" 2>&1
rc=$?
if [ "$rc" -eq 0 ] && head -1 "$dotout" | grep -q '^digraph' &&
    grep -qF '"cli" -> "broker";' "$dotout" && grep -qF '"http" -> "broker";' "$dotout" &&
    grep -qF '"queue" -> "packets";' "$dotout" && grep -qF '"http" -> "lib:nghttp2"' "$dotout" &&
    ! grep -q '#c62828' "$dotout" && [ "$(grep -cF '"broker" -> "common"' "$dotout")" -eq 1 ]; then
    ok "--dot draws one edge per folder pair and each library a folder includes"
else
    not_ok "--dot draws one edge per folder pair and each library a folder includes" "$dotout"
fi

# The cycle tree: its two edges are drawn red.
cyc=$(grep -l 'http/http.h' "$TMP"/t*/broker/bad.c | head -1)
"$CHECK" --root "${cyc%/broker/bad.c}" --dot >"$dotout" 2>&1
rc=$?
if [ "$rc" -eq 0 ] && grep -qF '"broker" -> "http" [color="#c62828"' "$dotout" &&
    grep -qF '"http" -> "broker" [color="#c62828"' "$dotout"; then
    ok "--dot draws the edges that break the layering in red and still exits 0"
else
    not_ok "--dot draws the edges that break the layering in red and still exits 0" "$dotout"
fi

if command -v dot >/dev/null 2>&1; then
    "$CHECK" --root "$B" --dot | dot -Tsvg >"$TMP/base.svg" 2>"$TMP/dot.err"
    if [ -s "$TMP/base.svg" ] && [ ! -s "$TMP/dot.err" ]; then
        ok "graphviz reads the drawing without a warning"
    else
        not_ok "graphviz reads the drawing without a warning" "$TMP/dot.err"
    fi
else
    ok "graphviz reads the drawing without a warning # SKIP dot is not installed (make docs installs it)"
fi

"$CHECK" --bogus >"$out" 2>&1
rc=$?
if [ "$rc" -eq 2 ] && grep -q '^usage:' "$out"; then
    ok "an unknown option exits 2 with the usage line"
else
    not_ok "an unknown option exits 2 with the usage line" "$out"
fi

echo "1..$n"
[ "$failed" -eq 0 ]
