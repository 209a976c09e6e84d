#!/bin/sh
# Installs the Debian packages uvmq needs; safe to run again (installs only
# what is missing; through sudo when not root).
#
#   scripts/install-deps.sh          build and test: libraries (libargon2
#                                    among them, for auth/), cmocka,
#                                    mosquitto-clients, libmosquitto, curl,
#                                    nghttp2-client (nghttp, h2load),
#                                    argon2 (the CLI) and mosquitto (for
#                                    mosquitto_passwd): the auth tests make
#                                    password vectors with them and read
#                                    uvmq's files back with the real broker.
#                                    Debian starts the mosquitto service on
#                                    port 1883, uvmq's default, as the
#                                    package installs: this script stops and
#                                    disables it (tests start the binary on
#                                    ports of their own).
#   scripts/install-deps.sh --bench  bench/fanout.sh: mosquitto (the broker
#                                    uvmq is compared with), gnuplot-nox (the
#                                    chart), util-linux (taskset), jq (reads
#                                    the generator's JSON), h2o (the HTTP/2
#                                    server bench/h2.sh compares with);
#                                    bench/tls.sh and bench/h2.sh: openssl
#                                    (the CLI makes their certificates)
#   scripts/install-deps.sh --docs   make docs: graphviz (dot draws
#                                    docs/modules.png)
#
# The Makefile calls the first form when pkg-config cannot find a
# dependency, and the third when make docs finds no dot; bench/fanout.sh
# calls the second.
set -eu

case "${1:-}" in
"")
    WHAT=install-deps
    PKGS="build-essential pkg-config libuv1-dev libssl-dev libsqlite3-dev \
libcjson-dev libnghttp2-dev libargon2-dev libcmocka-dev mosquitto-clients \
libmosquitto-dev curl nghttp2-client argon2 mosquitto"
    ;;
--bench)
    WHAT=install-bench-deps
    PKGS="mosquitto gnuplot-nox util-linux jq h2o nghttp2-client openssl"
    ;;
--docs)
    WHAT=install-docs-deps
    PKGS="graphviz"
    ;;
*)
    echo "usage: $0 [--bench | --docs]" >&2
    exit 2
    ;;
esac

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "$WHAT: apt-get not found; install these packages by hand:$missing" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "$WHAT: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing

# Only the mosquitto binary is wanted; its service would hold 1883, the
# port `make run` starts uvmq on.
case " $missing " in
*" mosquitto "*)
    if command -v systemctl >/dev/null 2>&1 &&
        systemctl is-enabled --quiet mosquitto 2>/dev/null; then
        echo "$WHAT: disabling the mosquitto service (port 1883 is uvmq's default)"
        $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
    fi
    ;;
esac
