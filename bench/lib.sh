# shellcheck shell=bash
# bench/lib.sh: what the bench scripts share (sourced, not run): checking
# the programs a script runs before anything starts, a scratch directory
# removed at exit with every server the script started, starting a
# `duckspread serve --demo` on a spare port (its private redis-server,
# appendfsync always, under the scratch directory), reading /metrics and a
# process's RSS, and the fixed lines: `emit` prints a line and appends it
# to $BENCH_RESULTS when set (bench/gates.sh reads that file).
#
# A script sets `bin` (the duckspread binary), `facts` (the demo's size) and
# `bench_target` (the make target that builds its programs), then calls:
#   bench_need PROG...      every program it runs; exits 1 naming a missing one
#   bench_work NAME         $work: a fresh directory under /tmp, removed at exit
#   server_start NAME [serve options...]   $url, $pid of a ready server

# shellcheck disable=SC2154 # bench_target, bin, facts: the script's
bench_need() {
    local p
    for p in "$@"; do
        [[ -x $p ]] || { echo "bench: $p is missing (make $bench_target builds it)" >&2; exit 1; }
    done
    for p in curl node; do
        command -v "$p" >/dev/null || { echo "bench: $p is not installed" >&2; exit 1; }
    done
}

bench_pids=()
bench_work() {
    work=$(mktemp -d "/tmp/ds-$1-XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# Stops what the script started (SIGTERM; SIGKILL after 10 s) and removes
# the scratch directory.
bench_cleanup() {
    local p
    for p in "${bench_pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || continue
        for _ in $(seq 1 100); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [[ -n ${work:-} ]]; then rm -rf "$work"; fi
}

emit() {
    echo "$*"
    if [[ -n ${BENCH_RESULTS:-} ]]; then echo "$*" >>"$BENCH_RESULTS"; fi
}

free_port() {
    node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# server_start NAME [serve options...]: a server over the demo of $facts
# facts in $work/NAME on a spare port, waited for until /ready; sets url
# and pid. Its log is $work/NAME.log.
server_start() {
    local name=$1 port
    shift
    port=$(free_port)
    "$bin" serve --data "$work/$name" --listen "127.0.0.1:$port" --demo --scale "$facts" "$@" \
        >"$work/$name.log" 2>&1 &
    pid=$!
    bench_pids+=("$pid")
    url=http://127.0.0.1:$port
    for _ in $(seq 1 3000); do
        curl -sf "$url/ready" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "bench: $name did not become ready in 300 s" >&2
    exit 1
}

# server_stop: SIGTERM (the server drains), then wait for it.
server_stop() {
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
}

metric() { # metric NAME: its value in the server's /metrics
    curl -s "$url/metrics" | awk -v n="$1" '$1 == n { print $2; exit }'
}

rss_mb() { # rss_mb PID: resident memory in MiB (VmRSS)
    awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0
}

val() { # val FIELD FILE: the number after " FIELD=" in the first line that has one
    sed -n "s/.*[ :]$1=\([0-9.eE+-]*\).*/\1/p" "$2" | head -1
}
