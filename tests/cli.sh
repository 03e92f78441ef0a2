#!/bin/sh
# Command-line smoke tests of build/duckspread: every --help exits 0,
# mistakes exit 2 with a message, and the demo loads once into a fresh
# data directory and prints its totals.
set -u
bin=${1:-build/duckspread}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 checks=0

check() { # description, expected exit code, command...
    desc=$1 want=$2
    shift 2
    checks=$((checks + 1))
    "$@" >"$tmp/out" 2>&1
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "cli: FAIL $desc: exit $got, want $want"
        sed 's/^/    /' "$tmp/out"
        fails=$((fails + 1))
    fi
}

grep_out() { # description, pattern
    checks=$((checks + 1))
    if ! grep -q -- "$2" "$tmp/out"; then
        echo "cli: FAIL $1: output lacks '$2'"
        sed 's/^/    /' "$tmp/out"
        fails=$((fails + 1))
    fi
}

check "help" 0 "$bin" --help
grep_out "help lists commands" "demo"
check "help command" 0 "$bin" help
check "version" 0 "$bin" version
check "demo --help" 0 "$bin" demo --help
grep_out "demo help names --data" "--data DIR"
check "no command" 2 "$bin"
check "unknown command" 2 "$bin" frobnicate
grep_out "unknown command is named" "unknown command 'frobnicate'"
check "demo without --data" 2 "$bin" demo
check "demo with a bad --scale" 2 "$bin" demo --data "$tmp/d" --scale 12x
check "demo loads" 0 "$bin" demo --data "$tmp/d" --scale 5000
grep_out "demo reports facts" "facts in"
grep_out "demo prints Brand X" "Brand X"
check "demo twice" 0 "$bin" demo --data "$tmp/d"
grep_out "second demo finds the model" "already in"
echo "cli: $checks checks, $fails failures"
[ "$fails" -eq 0 ]
