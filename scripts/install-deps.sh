#!/bin/sh
# Installs the Debian packages uvmq needs to build, test and benchmark.
# Called by the Makefile when pkg-config cannot find a dependency or a test
# tool is missing; safe to run again (installs only what is missing).
set -eu

PKGS="build-essential pkg-config libuv1-dev libssl-dev libsqlite3-dev \
libcjson-dev libnghttp2-dev libcmocka-dev mosquitto-clients libmosquitto-dev \
curl"

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
    echo "install-deps: apt-get not found; install these packages by hand:$missing" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
