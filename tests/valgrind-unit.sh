#!/bin/sh
# Runs every unit-test binary under valgrind's memcheck: invalid reads and
# writes, uses of uninitialised values, and leaks (definite and possible)
# are errors. CK_FORK=no runs a binary's tests in one process, so memcheck
# sees all of it and checks leaks once at its end (check's per-test timeouts
# do not apply). tests/valgrind.supp holds the few suppressions for
# libraries' own behaviour, each with its reason. Two binaries at a time
# (VALGRIND_JOBS); a log per binary in tests/tmp/valgrind/.
#   tests/valgrind-unit.sh BINARY...
set -u
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.." || exit 1

run_one() {
    name=$(basename "$1")
    t0=$(date +%s)
    CK_FORK=no valgrind -q --error-exitcode=99 --leak-check=full --num-callers=40 \
        --suppressions=tests/valgrind.supp "$1" >"$logs/$name.log" 2>&1
    echo "$? $(( $(date +%s) - t0 ))" >"$logs/$name.rc"
}

if [ "${1:-}" = --one ]; then # one binary, for the pool below
    logs=$2
    run_one "$3"
    exit 0
fi
logs=tests/tmp/valgrind
rm -rf "$logs"
mkdir -p "$logs"
started=$(date +%s)
# the slow ones (DuckDB, the GMP reference) first, so the two slots end together
slow='test_store test_engine test_spread_ref'
{
    for s in $slow; do
        for t in "$@"; do [ "$(basename "$t")" = "$s" ] && echo "$t"; done
    done
    for t in "$@"; do
        case " $slow " in *" $(basename "$t") "*) ;; *) echo "$t" ;; esac
    done
} | xargs -P "${VALGRIND_JOBS:-2}" -n 1 "$self" --one "$logs"

passed=0 failed=0
for t in "$@"; do
    name=$(basename "$t")
    rc=1 secs=0
    [ -f "$logs/$name.rc" ] && read -r rc secs <"$logs/$name.rc"
    summary=$(grep -E '^[0-9]+%: Checks: ' "$logs/$name.log" | tail -n 1)
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        echo "valgrind: $name clean in ${secs}s (${summary:-no summary})"
    else
        failed=$((failed + 1))
        why="test failures"
        [ "$rc" -eq 99 ] && why="memcheck errors"
        echo "valgrind: $name FAILED ($why, exit $rc) in ${secs}s; log $logs/$name.log"
        grep -E '^==[0-9]+== [A-Z]' "$logs/$name.log" | sort | uniq -c | sort -rn | head -n 5 |
            sed 's/^/    /'
    fi
done
echo "valgrind: $(( $(date +%s) - started ))s"
echo "valgrind: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
