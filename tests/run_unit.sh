#!/bin/sh
# Runs every unit test binary and prints one summary line CI can read:
#   unit: N suites, C checks, F failures, E errors
# Each binary uses the check framework (fork per test, with a timeout).
set -u
build=$1
shift
suites=0 checks=0 failures=0 errors=0 crashed=0
for t in "$@"; do
    out=$(TMPDIR="${TMPDIR:-/tmp}" "$t" 2>&1)
    rc=$?
    printf '%s\n' "$out" | grep -vE '^Running suite' || true
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: ' | tail -n 1)
    if [ -z "$line" ]; then
        echo "unit: $t printed no summary (exit $rc)"
        crashed=$((crashed + 1))
        continue
    fi
    c=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
    e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
    suites=$((suites + 1)) checks=$((checks + c)) failures=$((failures + f)) errors=$((errors + e))
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && [ "$e" -eq 0 ] && crashed=$((crashed + 1))
done
echo "unit: $suites suites, $checks checks, $failures failures, $((errors + crashed)) errors"
[ $failures -eq 0 ] && [ $errors -eq 0 ] && [ $crashed -eq 0 ]
