#!/bin/sh
# Browser tests: the grid page at / in Debian's chromium, driven by
# playwright-core, against the real build/duckspread and a real
# redis-server (tests/browser/*.test.mjs; helpers in tests/blackbox/lib.mjs
# and tests/browser/lib.mjs). Screenshots go to build/browser/.
#   tests/browser.sh [BIN] [FILE.test.mjs...]
# Needs: node >= 20, redis-server, chromium (make deps), npm ci
# (playwright-core, axe-core), build/bench/bench_load (the page-performance check).
set -u
cd "$(dirname "$0")/.."

if [ $# -gt 0 ] && [ -x "$1" ] && [ ! -d "$1" ]; then
    DS_BIN=$1
    shift
fi
DS_BIN=${DS_BIN:-build/duckspread}
case $DS_BIN in /*) ;; *) DS_BIN=$(pwd)/$DS_BIN ;; esac
export DS_BIN

fail() { echo "browser: $*" >&2; echo "0 passed, 1 failed"; exit 1; }
[ -x "$DS_BIN" ] || fail "no binary $DS_BIN (run make)"
command -v node >/dev/null 2>&1 || fail "node is not installed"
command -v redis-server >/dev/null 2>&1 || fail "redis-server is not installed"
chromium=${DS_CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || fail "no $chromium (make deps installs Debian's chromium)"
[ -d node_modules/playwright-core ] || fail "node_modules/playwright-core is missing (run npm ci)"
[ -f node_modules/axe-core/axe.min.js ] || fail "node_modules/axe-core is missing (run npm ci)"

logs=${DS_BLACKBOX_LOGS:-tests/tmp/browser}
rm -rf "$logs"
mkdir -p "$logs"
case $logs in /*) ;; *) logs=$(pwd)/$logs ;; esac
export DS_BLACKBOX_LOGS="$logs"

[ $# -gt 0 ] || set -- tests/browser/*.test.mjs
out="$logs/results.tap"
started=$(date +%s)
{
    timeout --kill-after=15 "${DS_BROWSER_TIMEOUT:-300}" \
        node --test --test-concurrency=1 --test-timeout=120000 --test-reporter=tap "$@" 2>&1
    echo $? >"$logs/node.rc"
} | tee "$out"
rc=$(cat "$logs/node.rc" 2>/dev/null || echo 1)
[ "$rc" -eq 124 ] && echo "browser: timed out after ${DS_BROWSER_TIMEOUT:-300}s"
elapsed=$(( $(date +%s) - started ))

pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out" | tail -1)
failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$out" | tail -1)
cancelled=$(sed -n 's/^# cancelled \([0-9]*\)$/\1/p' "$out" | tail -1)
pass=${pass:-0}
failed=$(( ${failed:-0} + ${cancelled:-0} ))
[ "$pass" -gt 0 ] || rc=1
[ "$failed" -eq 0 ] || rc=1
if [ "$rc" -ne 0 ]; then
    echo "browser: failing tests:"
    grep -E '^ *not ok ' "$out" | sed 's/^/  /'
fi
echo "browser: ${elapsed}s; logs in $logs/, screenshots in build/browser/"
echo "browser: $pass passed, $failed failed"
exit "$rc"
