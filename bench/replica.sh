#!/usr/bin/env bash
# make bench-replica: a writer over the 1M-fact demo (its private
# redis-server), a backup of it taken online, and a read replica started
# from that backup. Lines:
#
#   replica lag 2000: post_to_replica_event_p50_ms=.. p99_ms=.. lag_seqs_p50=..
#       lag_seqs_p99=.. lag_seqs_max=.. achieved=.. events=..
#     (open loop at 2,000 writes/s to the writer; a WebSocket subscriber of
#     the replica's change feed times POST -> event there; the replica's
#     /ready lag in seqs sampled every 100 ms)
#   backup under load: ms=.. mb=.. answer_p99_ms_without=.. answer_p99_ms_with=..
#     (open loop at 1,000 writes/s, one window without a backup, one with a
#     backup taken during it; the writers' answer latency)
#
# Environment: REPLICA_FACTS (1000000), REPLICA_SECONDS (20), REPLICA_RATE
# (2000), BENCH_RESULTS (a file the lines are appended to).
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
load=./$build/bench/bench_load
wssub=./$build/bench/bench_wssub
bench_work replica

echo "replica: $(nproc) cores, demo of $facts facts, ${secs}s windows"
server_start writer
wurl=$url wpid=$pid
echo "replica: writer ready (pid $wpid)"

# a backup of the running writer, and a replica from it
t0=$(date +%s%N)
curl -sf -XPOST -H 'Content-Type: application/json' -d '{"name":"bench"}' "$wurl/v1/backups" \
    >"$work/backup.json"
file=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).backup.file)' \
    "$work/backup.json")
echo "replica: backup $file in $((($(date +%s%N) - t0) / 1000000)) ms"
rport=$(free_port)
"$bin" replica --data "$work/replica" --from "$file" --listen "127.0.0.1:$rport" \
    --redis "unix://$work/writer/redis/redis.sock" >"$work/replica.log" 2>&1 &
rpid=$!
bench_pids+=("$rpid")
rurl=http://127.0.0.1:$rport
for _ in $(seq 1 3000); do
    curl -sf "$rurl/ready" >/dev/null 2>&1 && break
    kill -0 "$rpid" 2>/dev/null || { cat "$work/replica.log" >&2; exit 1; }
    sleep 0.1
done
echo "replica: replica ready (pid $rpid)"

# lag: POST to the writer -> event at a subscriber of the replica
o=$work/lag
rm -f "$o.ready" "$o.sent"
"$wssub" --url "$rurl" --subscribers 1 --duration-s $((secs + 60)) --idle-s 10 \
    --sent-log "$o.sent" --ready-file "$o.ready" >"$o.sub" 2>"$o.suberr" &
sub=$!
bench_pids+=("$sub")
for _ in $(seq 1 100); do [[ -f $o.ready ]] && break; sleep 0.1; done
(
    while kill -0 "$sub" 2>/dev/null; do
        curl -s "$rurl/ready" | sed -n 's/.*"lag":\([0-9]*\),"lag_ms".*/\1/p'
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
        printf "lag_seqs_p50=%d lag_seqs_p99=%d lag_seqs_max=%d", v[int((NR + 1) / 2)],
            v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1], v[NR] }')" \
    "achieved=$(val edits_per_s "$o.load") events=$(val n "$o.sub")"

# a backup's effect on the writer's answers
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
