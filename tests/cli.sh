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
# keys: create prints the key alone on the last line; list never shows it
check "keys --help" 0 "$bin" keys --help
grep_out "keys help names the roles" "viewer|editor|admin"
check "keys without a subcommand" 2 "$bin" keys
check "keys create without --data" 2 "$bin" keys create --user a --role admin
check "keys create with a bad role" 2 "$bin" keys create --data "$tmp/k" --user a --role root
grep_out "bad role is named" "viewer, editor or admin"
check "keys create with a bad user" 2 "$bin" keys create --data "$tmp/k" --user "a b" --role admin
check "keys create with a bad scope" 2 "$bin" keys create --data "$tmp/k" --user a --role editor --scope product
check "keys create" 0 "$bin" keys create --data "$tmp/k" --user ann --role editor --scope product=S01
key=$(tail -n 1 "$tmp/out")
checks=$((checks + 1))
case $key in dsk_*) ;; *) echo "cli: FAIL keys create: last line '$key' is not a key"; fails=$((fails + 1)) ;; esac
check "keys list" 0 "$bin" keys list --data "$tmp/k"
grep_out "keys list shows the user" "ann"
checks=$((checks + 1))
if grep -q -- "$key" "$tmp/out" "$tmp/k/keys"; then
    echo "cli: FAIL keys list or DIR/keys shows the key"
    fails=$((fails + 1))
fi
check "keys revoke needs --id or --user" 2 "$bin" keys revoke --data "$tmp/k"
check "keys revoke" 0 "$bin" keys revoke --data "$tmp/k" --user ann
check "keys revoke again" 1 "$bin" keys revoke --data "$tmp/k" --user ann
grep_out "revoking nothing says so" "no active key"
# serve, as `make run` does: a relative data directory, the private
# redis-server, ready, then SIGTERM drains and exits 0; a second server on
# the same directory is refused while the first runs.
check "serve --help" 0 "$bin" serve --help
grep_out "serve help names --listen" "--listen HOST:PORT"
for limit in --body-max --json-depth --string-max --writes-max --cells-max --subscribers-max \
    --request-timeout --idle-timeout; do
    check "serve --help" 0 "$bin" serve --help
    grep_out "serve help names the limit $limit" "  $limit "
    check "serve $limit 0 is refused" 2 "$bin" serve --data "$tmp/never" "$limit" 0
done
check "serve without --data" 2 "$bin" serve
check "backup --help" 0 "$bin" backup --help
grep_out "backup help names --data" "--data DIR"
check "restore --help" 0 "$bin" restore --help
grep_out "restore help names --force" "--force"
check "backup without --url or --data" 2 "$bin" backup
check "backup with a bad name" 2 "$bin" backup --url http://127.0.0.1:1 --name .x
check "restore without --data" 2 "$bin" restore --from x.duckdb
for v in 0 90s 30m 1h; do
    check "serve --backup-every $v is taken" 0 "$bin" serve --backup-every "$v" --help
done
for v in 10 1d -1s 1h2 s; do
    check "serve --backup-every $v is refused" 2 "$bin" serve --data "$tmp/never" --backup-every "$v"
done
check "serve --backup-keep 0 is refused" 2 "$bin" serve --data "$tmp/never" --backup-keep 0
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})' 2>/dev/null || echo 28231)
case $bin in /*) abs=$bin ;; *) abs=$(pwd)/$bin ;; esac
mkdir -p "$tmp/run"
(cd "$tmp/run" && exec "$abs" serve --data data --listen "127.0.0.1:$port" --demo --scale 2000) \
    >"$tmp/serve.log" 2>&1 &
spid=$!
ready=1
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && { ready=0; break; }
    sleep 0.1
done
checks=$((checks + 1))
if [ "$ready" -ne 0 ]; then
    echo "cli: FAIL serve with a relative --data is not ready"
    sed 's/^/    /' "$tmp/serve.log"
    fails=$((fails + 1))
fi
check "a second server on the same directory" 1 "$bin" serve --data "$tmp/run/data" \
    --listen "127.0.0.1:$((port + 1))"
grep_out "the second server says why" "another duckspread is serving"
kill -TERM "$spid"
wait "$spid"
code=$?
checks=$((checks + 1))
if [ "$code" -ne 0 ]; then
    echo "cli: FAIL serve exits $code after SIGTERM, want 0"
    sed 's/^/    /' "$tmp/serve.log"
    fails=$((fails + 1))
fi

echo "cli: $checks checks, $fails failures"
[ "$fails" -eq 0 ]
