#!/usr/bin/env bash
# make bench-cluster: duckspread on a Redis Cluster against one Redis, and
# what is lost when the writer and a primary die together. Parts
# (CLUSTER_PARTS, default "throughput loss"):
#
# throughput: a writer over the 1M-fact demo, closed-loop single-cell
#   writes at 64 and 256 clients, first on one redis-server (appendfsync
#   always), then on a local cluster (scripts/redis-cluster.sh: 3 primaries,
#   3 replicas, appendfsync always), then on the cluster with
#   --redis-replicas 1. Lines:
#     cluster redis=single clients=64: edits_per_s=.. p50_ms=.. p99_ms=..
#     cluster redis=cluster clients=64: ...
#     cluster redis=cluster-wait1 clients=64: ... wait_ms_per_batch=..
#     (the same at 256)
# loss: bench/cluster-loss.mjs, CLUSTER_LOSS_RUNS runs (default 10): kill
#   -9 of the writer and of the primary of its model's slot together,
#   under delta writes with request_ids, without --redis-replicas; counts
#   the acknowledged writes missing after the restart. Line:
#     cluster loss runs=10 without-wait: acked=.. lost=.. (per run: ..) ...
#
# Environment: CLUSTER_FACTS (1000000), CLUSTER_SECONDS (20),
# CLUSTER_CLIENTS ("64 256"), BENCH_RESULTS.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/duckspread
bench_target=bench-cluster
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need "$bin" "$build"/bench/bench_load
facts=${CLUSTER_FACTS:-1000000}
secs=${CLUSTER_SECONDS:-20}
counts=${CLUSTER_CLIENTS:-64 256}
parts=${CLUSTER_PARTS:-throughput loss}
load=./$build/bench/bench_load
bench_work cluster
cluster_sh=scripts/redis-cluster.sh

single_pid=
stop_all() {
    if [[ -f $work/cl/nodes ]]; then "$cluster_sh" stop "$work/cl" >/dev/null 2>&1 || true; fi
    if [[ -n $single_pid ]]; then
        kill "$single_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$single_pid" 2>/dev/null || break; sleep 0.1; done
    fi
}
trap 'stop_all; bench_cleanup' EXIT

# run_load KIND [serve options]: the closed loops of $counts on a writer
run_load() {
    local kind=$1 c extra
    shift
    server_start "$kind" "$@"
    for c in $counts; do
        "$load" --url "$url" --clients "$c" --duration-s "$secs" --warmup-s 3 \
            >"$work/$kind-$c.out" 2>"$work/$kind-$c.err" || true
        extra=$(curl -s "$url/metrics" | awk '
            $1 == "duckspread_redis_wait_seconds_sum" { s = $2 }
            $1 == "duckspread_redis_wait_seconds_count" { n = $2 }
            END { if (n) printf " wait_ms_per_batch=%.3f", 1000 * s / n }')
        emit "cluster redis=$kind clients=$c:" \
            "edits_per_s=$(val edits_per_s "$work/$kind-$c.out")" \
            "p50_ms=$(val p50_ms "$work/$kind-$c.out")" \
            "p99_ms=$(val p99_ms "$work/$kind-$c.out")$extra"
    done
    server_stop
}

echo "cluster: $(nproc) cores, demo of $facts facts, ${secs}s windows"
if [[ " $parts " == *" throughput "* ]]; then
    port=$(free_port)
    mkdir -p "$work/single"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$work/single" --save "" \
        --appendonly yes --appendfsync always --daemonize yes \
        --pidfile "$work/single.pid" --logfile "$work/single.log" >/dev/null
    for _ in $(seq 1 100); do
        [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] && break
        sleep 0.1
    done
    single_pid=$(cat "$work/single.pid")
    run_load single --redis "redis://127.0.0.1:$port"
    kill "$single_pid"
    single_pid=
    "$cluster_sh" start "$work/cl" >/dev/null
    curl_url=$(cat "$work/cl/url")
    run_load cluster --redis "$curl_url" --redis-cluster
    # a fresh writer on an emptied cluster, with WAIT
    for p in $("$cluster_sh" status "$work/cl" | awk '/ primary /{ sub(/.*:/, "", $1); print $1 }'); do
        redis-cli -p "$p" FLUSHALL >/dev/null
    done
    run_load cluster-wait1 --redis "$curl_url" --redis-cluster --redis-replicas 1
    "$cluster_sh" stop "$work/cl" --clean >/dev/null
fi
if [[ " $parts " == *" loss "* ]]; then
    DS_BIN=$(pwd)/$bin node bench/cluster-loss.mjs "${CLUSTER_LOSS_RUNS:-10}" | while read -r line; do
        case $line in "cluster loss"*) emit "$line" ;; *) echo "$line" ;; esac
    done
fi
