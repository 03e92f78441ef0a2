#!/usr/bin/env bash
# make bench-replica: a writer over the 1M-fact demo, a backup of it taken
# online, a read replica and a standby started from backups. Lines:
#
#   replica lag 2000: post_to_replica_event_p50_ms=.. p99_ms=.. lag_seqs_p50=..
#       lag_seqs_p99=.. lag_seqs_max=.. achieved=.. events=..
#       publish_to_apply_mean_ms=.. writer_publish_ms_per_batch=..
#     (open loop at 2,000 writes/s to the writer; a WebSocket subscriber of
#     the replica's change feed times POST -> event there; the replica's
#     /ready lag in seqs sampled every 100 ms; where the time goes: the
#     replica's mean from the writer's publish to its apply, and the
#     writer's publish script per batch)
#   backup under load: ms=.. mb=.. answer_p99_ms_without=.. answer_p99_ms_with=..
#     (open loop at 1,000 writes/s, one window without a backup, one with a
#     backup taken during it; the writers' answer latency)
#   failover: runs=10 lease_ms=5000 kill_to_first_200_ms_p50=.. min=.. max=..
#     (a standby: kill -9 of the writer -> the first 200 the standby gives a
#     write tried every 10 ms; the killed one comes back as the standby)
#
# Environment: REPLICA_FACTS (1000000), REPLICA_SECONDS (20), REPLICA_RATE
# (2000), REPLICA_FAILOVERS (10), REPLICA_LEASE_MS (5000), BENCH_RESULTS (a
# file the lines are appended to). One external redis-server (appendfsync
# always) under the scratch directory serves them all.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/duckspread
bench_target=bench-replica
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need "$bin" "$build"/bench/bench_load "$build"/bench/bench_wssub
facts=${REPLICA_FACTS:-1000000}
secs=${REPLICA_SECONDS:-20}
rate=${REPLICA_RATE:-2000}
parts=" ${REPLICA_PARTS:-lag backup failover} "
has_part() { [[ $parts == *" $1 "* ]]; }
load=./$build/bench/bench_load
wssub=./$build/bench/bench_wssub
bench_work replica

echo "replica: $(nproc) cores, demo of $facts facts, ${secs}s windows"
# one external redis-server (appendfsync always) for everyone: a writer's
# private one dies with it, and a standby needs it to live on
redis-server --port 0 --unixsocket "$work/redis.sock" --dir "$work" --save "" \
    --appendonly yes --appendfsync always --daemonize yes --pidfile "$work/redis.pid" >/dev/null
for _ in $(seq 1 50); do [[ -S $work/redis.sock ]] && break; sleep 0.1; done
redis_stop() { # waited for: it writes to $work until it exits
    local p
    p=$(cat "$work/redis.pid" 2>/dev/null) || return 0
    kill "$p" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
}
trap 'redis_stop; bench_cleanup' EXIT
redis=unix://$work/redis.sock
lease=${REPLICA_LEASE_MS:-5000}
server_start writer --redis "$redis" --lease-ms "$lease"
wurl=$url wpid=$pid
echo "replica: writer ready (pid $wpid)"

# backup BODY: POST /v1/backups to the writer; prints the file
backup() {
    curl -sf -XPOST -H 'Content-Type: application/json' -d "$1" "$wurl/v1/backups" \
        >"$work/backup.json"
    node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).backup.file)' \
        "$work/backup.json"
}

# process NAME PORT ARGS...: duckspread ARGS on DIR $work/NAME, 127.0.0.1:PORT
# and the Redis; waits for /ready; sets furl and fpid
process() {
    local name=$1 port=$2
    shift 2
    "$bin" "$@" --data "$work/$name" --listen "127.0.0.1:$port" --redis "$redis" \
        >>"$work/$name.log" 2>&1 &
    fpid=$!
    bench_pids+=("$fpid")
    furl=http://127.0.0.1:$port
    for _ in $(seq 1 3000); do
        curl -sf "$furl/ready" >/dev/null 2>&1 && return 0
        kill -0 "$fpid" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "bench: $name did not become ready in 300 s" >&2
    exit 1
}

# lag: POST to the writer -> event at a subscriber of the replica
lag() {
    t0=$(date +%s%N)
    file=$(backup '{"name":"bench"}')
    echo "replica: backup $file in $((($(date +%s%N) - t0) / 1000000)) ms"
    process replica "$(free_port)" replica --from "$file"
    rurl=$furl
    echo "replica: replica ready ($rurl)"
    o=$work/lag
    rm -f "$o.ready" "$o.sent"
    "$wssub" --url "$rurl" --subscribers 1 --duration-s $((secs + 60)) --idle-s 10 \
        --sent-log "$o.sent" --ready-file "$o.ready" >"$o.sub" 2>"$o.suberr" &
    sub=$!
    bench_pids+=("$sub")
    for _ in $(seq 1 100); do [[ -f $o.ready ]] && break; sleep 0.1; done
    (
        while kill -0 "$sub" 2>/dev/null; do
            { curl -s "$rurl/ready"; echo; } | sed -n 's/.*"lag":\([0-9]*\),"lag_ms".*/\1/p'
            sleep 0.1
        done
    ) >"$o.seqs" &
    sampler=$!
    "$load" --url "$wurl" --clients 256 --rate "$rate" --duration-s "$secs" --warmup-s 2 \
        --sent-log "$o.sent" >"$o.load" 2>"$o.loaderr" || true
    wait "$sub" || true
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    emit "replica lag $rate: post_to_replica_event_p50_ms=$(val p50_ms "$o.sub")" \
        "p99_ms=$(val p99_ms "$o.sub")" \
        "$(sort -n "$o.seqs" | awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "lag_seqs_p50=? lag_seqs_p99=? lag_seqs_max=?"; exit }
            p99 = int(NR * 0.99); if (p99 < 1) p99 = 1
            printf "lag_seqs_p50=%d lag_seqs_p99=%d lag_seqs_max=%d", v[int((NR + 1) / 2)], v[p99],
                v[NR] }')" \
        "achieved=$(val edits_per_s "$o.load") events=$(val n "$o.sub")" \
        "$(curl -s "$rurl/metrics" | awk '
            $1 == "duckspread_replica_lag_seconds_sum" { s = $2 }
            $1 == "duckspread_replica_lag_seconds_count" { n = $2 }
            END { if (n) printf "publish_to_apply_mean_ms=%.2f", 1000 * s / n }')" \
        "$(curl -s "$wurl/metrics" | awk '
            $1 == "duckspread_publish_seconds_sum" { s = $2 }
            $1 == "duckspread_publish_seconds_count" { n = $2 }
            END { if (n) printf "writer_publish_ms_per_batch=%.2f", 1000 * s / n }')"
}

# a backup's effect on the writer's answers
backup_under_load() {
    "$load" --url "$wurl" --clients 64 --rate 1000 --duration-s "$secs" --warmup-s 2 \
        >"$work/nob.load" 2>"$work/nob.err" || true
    "$load" --url "$wurl" --clients 64 --rate 1000 --duration-s "$secs" --warmup-s 2 \
        >"$work/b.load" 2>"$work/b.err" &
    lp=$!
    sleep $((secs / 3 + 2))
    t0=$(date +%s%N)
    curl -sf -XPOST -H 'Content-Type: application/json' -d '{"name":"under-load"}' \
        "$wurl/v1/backups" >"$work/b.json"
    ms=$((($(date +%s%N) - t0) / 1000000))
    wait "$lp" || true
    bytes=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).backup.bytes)' \
        "$work/b.json")
    emit "backup under load: ms=$ms mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')" \
        "answer_p99_ms_without=$(val p99_ms "$work/nob.load")" \
        "answer_p99_ms_with=$(val p99_ms "$work/b.load") facts=$facts rate=1000"
}

# failover: a standby from a fresh backup; ten times, kill -9 the writer and
# time the first 200 the standby answers to a write tried every 10 ms; the
# killed one is started again on its directory and becomes the standby
failover() {
    sfile=$(backup '{"name":"standby"}')
    sport=$(free_port)
    process standby "$sport" serve --standby --from "$sfile" --lease-ms "$lease"
    wport=${wurl##*:}
    names=(writer standby) ports=("$wport" "$sport") pids=("$wpid" "$fpid")
    body='{"table":"sales","column":"quantity","cell":{"product":"P-0001","customer":"C-0001","time":"2025-01"},"delta":1}'
    cur=0
    : >"$work/failover.ms"
    for run in $(seq 1 "${REPLICA_FAILOVERS:-10}"); do
        other=$((1 - cur))
        kill -9 "${pids[$cur]}"
        t0=$(date +%s%N)
        until [[ $(curl -s -o /dev/null -w '%{http_code}' -XPOST -H 'Content-Type: application/json' \
            -d "$body" "http://127.0.0.1:${ports[$other]}/update_cell") == 200 ]]; do
            sleep 0.01
            (($(date +%s%N) - t0 < 120000000000)) || { echo "bench: no takeover in 120 s" >&2; exit 1; }
        done
        echo $((($(date +%s%N) - t0) / 1000000)) >>"$work/failover.ms"
        wait "${pids[$cur]}" 2>/dev/null || true
        process "${names[$cur]}" "${ports[$cur]}" serve --lease-ms "$lease"
        pids[cur]=$fpid
        echo "replica: failover $run: $(tail -1 "$work/failover.ms") ms"
        cur=$other
    done
    emit "failover: runs=$(wc -l <"$work/failover.ms") lease_ms=$lease $(sort -n "$work/failover.ms" |
        awk '{ v[NR] = $1 } END { printf "kill_to_first_200_ms_p50=%d min=%d max=%d",
            v[int((NR + 1) / 2)], v[1], v[NR] }')"
}

if has_part lag; then lag; fi
if has_part backup; then backup_under_load; fi
if has_part failover; then failover; fi
