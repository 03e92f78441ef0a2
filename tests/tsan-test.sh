#!/bin/sh
# make tsan-test: the unit tests that start threads and the black-box
# files that drive every thread of the server (HTTP workers, the enqueuer,
# the writer, the publisher, the persister, the live feed, the keys
# watcher) against the ThreadSanitizer
# build, which the Makefile builds in build-tsan/ and whose TSAN_OPTIONS it
# sets (tests/tsan.supp). Fails on a failing test and on any
# "WARNING: ThreadSanitizer" in the unit tests' output or in a server log
# (also of a server that was killed, or whose exit code no test checks).
#   tests/tsan-test.sh BUILD UNIT_BIN...
#
# The black-box files, and why not the others: under TSan the server is 5
# to 15 times slower, and the whole suite with the unit tests comes near
# 10 minutes on two cores. api (drain, long-poll, wait=false), auth (the
# keys watcher closing streams), concurrency (32 clients on the writer's
# batches), crash (crash points and kill -9: recovery while the publisher
# runs), live (WebSocket and SSE fan-out), logfirst (grid subscriptions:
# the writer's patches to the WebSocket thread; the persister trailing),
# publish (the lease lapsing, another writer's lease, Redis killed),
# redis (Redis stopped under load), standby (a replica's follower, its
# takeover, a writer fenced into a standby) and backup (the backup thread
# beside the persister) cover every thread and every hand-over between
# them. Left out: replica and balancer (the follower's paths are the
# standby's), cases (one request at a time), hostile and redis-security
# (parsers, slow clients and start checks: under ASan in make
# sanitize-test, and make fuzz).
set -u
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 BUILD UNIT_BIN..." >&2; exit 2; }
build=$1
shift
case ${TSAN_OPTIONS:-} in
*suppressions=*) ;;
*) echo "tsan-test: TSAN_OPTIONS has no suppressions (run make tsan-test)" >&2; exit 2 ;;
esac

out=tests/tmp/tsan
rm -rf "$out"
mkdir -p "$out"
rc=0

started=$(date +%s)
{ ./tests/run_unit.sh "$build" "$@" 2>&1; echo $? >"$out/unit.rc"; } | tee "$out/unit.log"
[ "$(cat "$out/unit.rc")" -eq 0 ] || rc=1
echo "tsan-test: unit tests in $(( $(date +%s) - started ))s"

set --
for f in api auth concurrency crash live logfirst publish redis standby backup; do
    set -- "$@" "tests/blackbox/$f.test.mjs"
done
# logfirst's big spread at the smallest size that still crosses the
# mid_persist crash point (a group of over 100,000 rows)
DS_BB_BIG_SCALE=${DS_BB_BIG_SCALE:-120000} DS_BLACKBOX_LOGS="$out/blackbox" ./tests/blackbox.sh "$build/duckspread" "$@" || rc=1

reports=$(grep -l 'WARNING: ThreadSanitizer' "$out/unit.log" "$out"/blackbox/*.log 2>/dev/null)
if [ -n "$reports" ]; then
    echo "tsan-test: ThreadSanitizer reports in:"
    printf '  %s\n' $reports
    grep -h '^SUMMARY: ThreadSanitizer' $reports | sort | uniq -c
    rc=1
else
    echo "tsan-test: no ThreadSanitizer report"
fi
exit $rc
