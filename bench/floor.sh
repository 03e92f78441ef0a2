#!/usr/bin/env bash
# make bench-floor: what this machine gives at best, for the gates it
# cannot meet (bench/bench_floor.c):
#   - a private redis-server like the server's embedded one (unix socket,
#     appendonly yes, appendfsync always, in a temporary directory on the
#     same disk as the e2e data) taking only XADDs of write-sized entries
#     from C closed-loop clients, C in 1, 8, 64, 256:
#       floor xadd 8: per_s=.. p50_ms=.. p99_ms=.. errors=..
#   - `duckspread serve` answering only GET /health to 256 closed-loop
#     clients (a small demo: /health reads nothing), what HTTP alone costs:
#       floor http 256: per_s=.. p50_ms=.. p99_ms=.. errors=..
#   - the disk's fsync latency in the same directory:
#       floor fsync: p50_ms=.. p99_ms=.. n=..
# Usage: bench/floor.sh [BUILD]; environment: FLOOR_SECONDS (10),
# FLOOR_CLIENTS ("1 8 64 256"), FLOOR_HTTP_CLIENTS ("256"), BENCH_RESULTS.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/duckspread
bench_target=bench-floor
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need "$bin" "$build"/bench/bench_floor "$build"/bench/bench_fsync
command -v redis-server >/dev/null || { echo "floor: redis-server is not installed" >&2; exit 1; }
secs=${FLOOR_SECONDS:-10}
floor=./$build/bench/bench_floor
bench_work floor

mkdir -p "$work/redis"
redis-server --port 0 --unixsocket "$work/redis/redis.sock" --unixsocketperm 700 \
    --dir "$work/redis" --appendonly yes --appendfsync always --save "" \
    --logfile "$work/redis/redis.log" &
bench_pids+=($!)
for _ in $(seq 1 100); do [[ -S $work/redis/redis.sock ]] && break; sleep 0.1; done
echo "floor: $(nproc) cores, ${secs}s windows"
for c in ${FLOOR_CLIENTS:-1 8 64 256}; do
    emit "$("$floor" xadd --unix "$work/redis/redis.sock" --clients "$c" --duration-s "$secs" \
        --warmup-s 2 2>>"$work/floor.err")"
done
emit "$(./"$build"/bench/bench_fsync "$work/redis" 500 | sed 's/^e2e fsync:/floor fsync:/')"

facts=10000
server_start health
for c in ${FLOOR_HTTP_CLIENTS:-256}; do
    emit "$("$floor" http --url "$url" --path /health --clients "$c" --duration-s "$secs" \
        --warmup-s 2 2>>"$work/floor.err")"
done
server_stop
