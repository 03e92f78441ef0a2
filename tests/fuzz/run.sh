#!/bin/sh
# Runs every libFuzzer target of BUILD/fuzz/ for SECONDS each, one after the
# other, from its committed corpus (tests/fuzz/corpus/<target>/) and its
# dictionary (tests/fuzz/<target>.dict). New inputs go to
# tests/tmp/fuzz/<target>/corpus/ (not committed), a crashing input to
# tests/tmp/fuzz/<target>/ with the log beside it. Prints one line per target
# (executions, coverage, crashes) and exits non-zero on any crash.
#   tests/fuzz/run.sh [BUILD] [SECONDS] [TARGET...]
set -u
cd "$(dirname "$0")/../.." || exit 1
build=${1:-build-fuzz}
secs=${2:-40}
if [ $# -gt 2 ]; then shift 2; else set --; fi
targets=${*:-$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c | sed 's/^fuzz_//'; done)}

passed=0 failed=0
for t in $targets; do
    bin=$build/fuzz/fuzz_$t
    out=tests/tmp/fuzz/$t
    mkdir -p "$out/corpus"
    rm -f "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-*
    if [ ! -x "$bin" ]; then
        echo "fuzz: $t: no $bin (make fuzz-build)"
        failed=$((failed + 1))
        continue
    fi
    dict=
    [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$out/" $dict "$out/corpus" "tests/fuzz/corpus/$t" >"$out/log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -n 1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/log" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$out/log" | tail -n 1)
    crash=
    for f in "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-*; do
        [ -e "$f" ] && crash=${crash:-$f}
    done
    if [ "$rc" -eq 0 ] && [ -z "$crash" ]; then
        echo "fuzz: $t: ${execs:-?} execs (${speed:-?}/s) in ${secs}s, ${cov:-no coverage}, no crash"
        passed=$((passed + 1))
    else
        echo "fuzz: $t: FAILED (exit $rc) after ${execs:-?} execs; input ${crash:-none}; log $out/log"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_[a-z]+:)|runtime error' "$out/log" | head -n 5 |
            sed 's/^/    /'
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
