#!/usr/bin/env bash
# make postman-test: serves the demo from a temporary data directory (with
# the server's private redis-server) on a spare loopback port, runs the
# Postman collection with newman against it (tests/postman.sh), then stops
# the server with SIGTERM and requires a clean exit.
#   tests/postman-test.sh [BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/duckspread}
logs=tests/tmp/postman
mkdir -p "$logs"
data=$(mktemp -d /tmp/ds-postman-XXXXXX)
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
pid=
cleanup() {
    [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT

"$bin" serve --data "$data" --listen "127.0.0.1:$port" --demo --scale "${DS_POSTMAN_SCALE:-100000}" \
    >"$logs/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "postman-test: the server exited; see $logs/server.log" >&2; exit 1; }
    sleep 0.1
done
rc=0
DS_BASE_URL="http://127.0.0.1:$port" ./tests/postman.sh || rc=$?
kill -TERM "$pid"
src=0
wait "$pid" || src=$?
pid=
if [[ $src -ne 0 ]]; then
    echo "postman-test: the server exited with $src after SIGTERM; see $logs/server.log" >&2
    rc=1
fi
[[ $rc -eq 0 ]] && echo "postman-test: ok" || echo "postman-test: FAILED (server log: $logs/server.log)"
exit "$rc"
