#!/bin/sh
# Black-box tests: the real build/duckspread against real redis-servers, in
# Node.js (node:test), every response validated against web/openapi.json.
#   tests/blackbox.sh [BIN] [node --test args...] [FILE.test.mjs...]
# BIN defaults to build/duckspread (or $DS_BIN). Test files given run alone;
# without any, every tests/blackbox/*.test.mjs runs. Each test file starts its own
# redis-server and server on spare loopback ports and removes its temporary
# directories; server and redis logs stay in tests/tmp/blackbox/.
# Needs: node >= 20, redis-server, `npm ci` (ws, redis, ajv, ajv-formats) and
# build/tests/dbquery (make). Exits non-zero on any failure.
set -u
cd "$(dirname "$0")/.."

if [ $# -gt 0 ] && [ -x "$1" ] && [ ! -d "$1" ]; then
    DS_BIN=$1
    shift
fi
DS_BIN=${DS_BIN:-build/duckspread}
case $DS_BIN in /*) ;; *) DS_BIN=$(pwd)/$DS_BIN ;; esac
export DS_BIN

fail() { echo "blackbox: $*" >&2; echo "0 passed, 1 failed"; exit 1; }
[ -x "$DS_BIN" ] || fail "no binary $DS_BIN (run make)"
command -v node >/dev/null 2>&1 || fail "node is not installed"
command -v redis-server >/dev/null 2>&1 || fail "redis-server is not installed"
export DS_DBQUERY=${DS_DBQUERY:-$(dirname "$DS_BIN")/tests/dbquery}
[ -x "$DS_DBQUERY" ] || fail "no $DS_DBQUERY (run make)"
for m in ws redis ajv ajv-formats; do
    [ -d "node_modules/$m" ] || fail "node_modules/$m is missing (run npm ci)"
done
[ -f web/openapi.json ] || fail "web/openapi.json is missing: responses cannot be validated"

# DS_BLACKBOX_LOGS: another log directory (runs side by side in one tree)
logs=${DS_BLACKBOX_LOGS:-tests/tmp/blackbox}
rm -rf "$logs"
mkdir -p "$logs"
case $logs in /*) ;; *) logs=$(pwd)/$logs ;; esac
export DS_BLACKBOX_LOGS="$logs"

files=
for a in "$@"; do
    case $a in *.test.mjs) files=given ;; esac
done
[ -n "$files" ] || set -- "$@" tests/blackbox/*.test.mjs

# Files run one at a time (--test-concurrency=1): the concurrency and
# latency tests measure the server, and the machine has 2 cores.
out="$logs/results.tap"
started=$(date +%s)
{
    timeout --kill-after=15 "${DS_BLACKBOX_TIMEOUT:-600}" \
        node --test --test-concurrency=1 --test-timeout=180000 --test-reporter=tap "$@" 2>&1
    echo $? >"$logs/node.rc"
} | tee "$out"
rc=$(cat "$logs/node.rc" 2>/dev/null || echo 1)
[ "$rc" -eq 124 ] && echo "blackbox: timed out after ${DS_BLACKBOX_TIMEOUT:-600}s"
elapsed=$(( $(date +%s) - started ))

pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out" | tail -1)
failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$out" | tail -1)
cancelled=$(sed -n 's/^# cancelled \([0-9]*\)$/\1/p' "$out" | tail -1)
skipped=$(sed -n 's/^# skipped \([0-9]*\)$/\1/p' "$out" | tail -1)
pass=${pass:-0}
failed=$(( ${failed:-0} + ${cancelled:-0} ))
[ "$pass" -gt 0 ] || rc=1
[ "$failed" -eq 0 ] || rc=1
if [ "$rc" -ne 0 ]; then
    echo "blackbox: failing tests:"
    grep -E '^ *not ok ' "$out" | sed 's/^/  /'
    echo "blackbox: logs in $logs/"
fi
echo "blackbox: ${elapsed}s"
echo "blackbox: $pass passed, $failed failed, ${skipped:-0} skipped"
exit "$rc"
