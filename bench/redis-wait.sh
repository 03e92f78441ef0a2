#!/usr/bin/env bash
# make bench-redis-wait: what --redis-replicas 1 costs. A redis-server
# primary (appendfsync always) and a replica of it on loopback, a writer over
# the 1M-fact demo on both (redis://primary,replica), closed-loop single-cell
# writes at 64 and 256 clients, first without then with --redis-replicas 1
# (the same data directory, restarted). Lines:
#
#   redis replicas=0 clients=64: edits_per_s=.. p50_ms=.. p99_ms=..
#   redis replicas=1 clients=64: edits_per_s=.. p50_ms=.. p99_ms=.. wait_ms_per_batch=..
#   (the same at 256)
#
# Environment: WAIT_FACTS (1000000), WAIT_SECONDS (20), WAIT_CLIENTS ("64
# 256"), BENCH_RESULTS (a file the lines are appended to).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/duckspread
bench_target=bench-redis-wait
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need "$bin" "$build"/bench/bench_load
facts=${WAIT_FACTS:-1000000}
secs=${WAIT_SECONDS:-20}
counts=${WAIT_CLIENTS:-64 256}
load=./$build/bench/bench_load
bench_work redis-wait

# redis_start NAME PORT [args]: a redis-server on 127.0.0.1:PORT, waited for
redis_start() {
    local name=$1 port=$2
    shift 2
    mkdir -p "$work/$name"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$work/$name" --save "" \
        --appendonly yes --appendfsync always --daemonize yes \
        --pidfile "$work/$name.pid" --logfile "$work/$name.log" "$@" >/dev/null
    for _ in $(seq 1 100); do
        [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] && return 0
        sleep 0.1
    done
    echo "bench: redis-server $name did not start" >&2
    exit 1
}
pport=$(free_port) rport=$(free_port)
redis_start primary "$pport"
redis_start replica "$rport" --replicaof 127.0.0.1 "$pport"
redis_stop() { # both redis-servers, waited for (they write to $work until they exit)
    local n p
    for n in primary replica; do
        p=$(cat "$work/$n.pid" 2>/dev/null) || continue
        kill "$p" 2>/dev/null || continue
        for _ in $(seq 1 100); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
    done
}
trap 'redis_stop; bench_cleanup' EXIT
for _ in $(seq 1 100); do
    redis-cli -p "$rport" info replication | grep -q master_link_status:up && break
    sleep 0.1
done
redis=redis://127.0.0.1:$pport,127.0.0.1:$rport

echo "redis-wait: $(nproc) cores, demo of $facts facts, ${secs}s windows"
for replicas in 0 1; do
    server_start writer --redis "$redis" --redis-replicas "$replicas"
    for c in $counts; do
        "$load" --url "$url" --clients "$c" --duration-s "$secs" --warmup-s 3 \
            >"$work/w$replicas-$c.out" 2>"$work/w$replicas-$c.err" || true
        extra=
        if [[ $replicas != 0 ]]; then
            extra=$(curl -s "$url/metrics" | awk '
                $1 == "duckspread_redis_wait_seconds_sum" { s = $2 }
                $1 == "duckspread_redis_wait_seconds_count" { n = $2 }
                END { if (n) printf " wait_ms_per_batch=%.3f", 1000 * s / n }')
        fi
        emit "redis replicas=$replicas clients=$c:" \
            "edits_per_s=$(val edits_per_s "$work/w$replicas-$c.out")" \
            "p50_ms=$(val p50_ms "$work/w$replicas-$c.out")" \
            "p99_ms=$(val p99_ms "$work/w$replicas-$c.out")$extra"
    done
    server_stop
done
