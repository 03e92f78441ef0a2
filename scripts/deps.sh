#!/bin/sh
# Installs what duckspread builds and tests with, idempotently:
#   - Debian packages (apt-get, only those missing),
#   - DuckDB's C library and header (docs/architecture.md, Libraries) from the npm
#     registry into .deps/duckdb, unless DUCKDB_DIR points at an unpacked
#     official libduckdb-linux-*.zip.
# Quick when everything is present: it only asks dpkg and looks at a stamp.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
deps="$top/.deps"
duckdb_version=1.4.4

# Debian 12 package names. redis-server is for the tests and the embedded
# default; nginx-light for the balancer test (scripts/nginx.conf.template);
# chromium for the browser test; clang with libclang-rt-14-dev
# (libFuzzer and the sanitizer runtimes of clang 14) for make fuzz;
# clang-format for make format-check.
packages="build-essential pkg-config libjson-c-dev libhiredis-dev
libmicrohttpd-dev libwslay-dev libjemalloc-dev libssl-dev libzstd-dev libgmp-dev libcurl4-openssl-dev
check redis-server nginx-light chromium
openssl valgrind clang libclang-rt-14-dev clang-format"

missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: missing Debian packages:$missing" >&2
        echo "deps: run as root, or: sudo apt-get install$missing" >&2
        exit 1
    fi
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ -n "${DUCKDB_DIR:-}" ]; then
    if [ ! -f "$DUCKDB_DIR/duckdb.h" ] || [ ! -f "$DUCKDB_DIR/libduckdb.so" ]; then
        echo "deps: DUCKDB_DIR=$DUCKDB_DIR must hold duckdb.h and libduckdb.so" >&2
        exit 1
    fi
    exit 0
fi

dest="$deps/duckdb"
stamp="$dest/.version"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$duckdb_version" ] &&
   [ -f "$dest/duckdb.h" ] && [ -f "$dest/libduckdb.so" ]; then
    exit 0
fi

case "$(uname -m)" in
    x86_64)  bindings="@duckdb/node-bindings-linux-x64@$duckdb_version-r.4" ;;
    aarch64) bindings="@duckdb/node-bindings-linux-arm64@$duckdb_version-r.3" ;;
    *) echo "deps: no DuckDB build for $(uname -m); set DUCKDB_DIR" >&2; exit 1 ;;
esac

echo "deps: fetching DuckDB $duckdb_version from the npm registry"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# npm pack downloads the tarballs only; no package scripts run.
(cd "$work" && npm pack --silent "$bindings" "duckdb@$duckdb_version" >/dev/null)
mkdir -p "$work/lib" "$work/hdr"
tar -xzf "$work"/duckdb-node-bindings-*.tgz -C "$work/lib" package/libduckdb.so
tar -xzf "$work"/duckdb-"$duckdb_version".tgz -C "$work/hdr" \
    package/src/duckdb/src/include/duckdb.h
rm -rf "$dest"
mkdir -p "$dest"
mv "$work/lib/package/libduckdb.so" "$dest/"
mv "$work/hdr/package/src/duckdb/src/include/duckdb.h" "$dest/"
echo "$duckdb_version" >"$stamp"
echo "deps: DuckDB $duckdb_version in $dest"
