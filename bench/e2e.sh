#!/usr/bin/env bash
# make bench-e2e: HTTP -> Redis -> writer -> subscribers over the 1M-fact
# demo, on this machine, each server with its private redis-server
# (appendfsync always) in a temporary directory. One server runs 1-3:
#   1. closed loop: C clients, each waiting for its outcome before the next
#      write, for C in 1, 8, 64, 256;
#        e2e closed 8: edits_per_s=.. p50_ms=.. p99_ms=.. errors=..
#      and what the writer did meanwhile (mean batch, ms per batch):
#        e2e writer: batches=.. mean_batch=.. apply_ms_per_batch=.. publish_ms_per_batch=..
#   2. open loop at R writes/s offered (R = 200, 1,000, 2,000), a WebSocket
#      subscriber on the change feed timing POST -> event (from the time
#      each request was due), then the disk's fsync latency in the server's
#      data directory right after, in the same run:
#        e2e open 2000: p50_ms=.. p99_ms=.. late=.. fsync_p50_ms=.. fsync_p99_ms=..
#          achieved=.. answer_p50_ms=.. answer_p99_ms=.. events=..   (one line)
#   3. 1,000 WebSocket grid subscribers over 50 distinct 20 x 12 grids
#      (bench/grids.mjs: each holds the grand total, so every write patches
#      every grid) at 200 writes/s offered: every patch delivered in seq
#      order without a gap, each copy equal to a fresh snapshot at the end,
#      POST -> patch latency (bench_wssub --grids --contiguous);
#        e2e grid subscribers: subscribers=1000 grids=50 patches=.. missed=0 p50_ms=.. p99_ms=..
#          mismatched=.. unchecked=.. resnapshots=.. disorder=.. errors=.. closed=.. failed=..
#          rate=.. achieved=..
#   4. 256 closed-loop clients against `serve --bench-baseline` (one
#      transaction per request, the summary view recomputed into a table
#      after each), counted by what its writer applies, and the ratio to
#      the 256-client figure of 1:
#        e2e baseline: clients=256 edits_per_s=.. applied=.. seconds=..
#        e2e ratio: duckspread_edits_per_s=.. baseline_edits_per_s=.. ratio=..
# Reports, never fails on a figure (bench/gates.sh judges them).
# Usage: bench/e2e.sh [BUILD]; environment: E2E_FACTS (1000000),
# E2E_SECONDS (20, each window), E2E_CLOSED ("1 8 64 256"), E2E_RATES
# ("200 1000 2000"), E2E_CLIENTS (256: open-loop connections and the
# baseline's), E2E_GRID_SUBSCRIBERS (1000), E2E_GRIDS (50), E2E_GRID_RATE
# (200), E2E_PARTS ("closed open grid baseline"), BENCH_RESULTS (a file the
# lines are appended to).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/duckspread
bench_target=bench-e2e
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need "$bin" "$build"/bench/bench_load "$build"/bench/bench_wssub "$build"/bench/bench_fsync
facts=${E2E_FACTS:-1000000}
secs=${E2E_SECONDS:-20}
clients=${E2E_CLIENTS:-256}
closed_counts=${E2E_CLOSED:-1 8 64 256}
rates=${E2E_RATES:-200 1000 2000}
grid_subs=${E2E_GRID_SUBSCRIBERS:-1000}
grid_count=${E2E_GRIDS:-50}
grid_rate=${E2E_GRID_RATE:-200}
parts=" ${E2E_PARTS:-closed open grid baseline} "
load=./$build/bench/bench_load
wssub=./$build/bench/bench_wssub
bench_work e2e

has_part() { [[ $parts == *" $1 "* ]]; }

closed_loop() {
    local c
    for c in $closed_counts; do
        "$load" --url "$url" --clients "$c" --duration-s "$secs" --warmup-s 3 \
            >"$work/closed$c.out" 2>"$work/closed$c.err" || true
        emit "e2e closed $c: edits_per_s=$(val edits_per_s "$work/closed$c.out")" \
            "p50_ms=$(val p50_ms "$work/closed$c.out") p99_ms=$(val p99_ms "$work/closed$c.out")" \
            "errors=$(val errors "$work/closed$c.out")"
    done
    local bs bc as ps
    bs=$(metric duckspread_batch_size_sum) bc=$(metric duckspread_batch_size_count)
    as=$(metric duckspread_apply_seconds_sum) ps=$(metric duckspread_publish_seconds_sum)
    [[ ${bc:-0} != 0 ]] || return 0
    emit "$(awk -v bs="$bs" -v bc="$bc" -v as="$as" -v ps="$ps" 'BEGIN {
        printf "e2e writer: batches=%d mean_batch=%.1f apply_ms_per_batch=%.2f publish_ms_per_batch=%.2f",
            bc, bs / bc, 1000 * as / bc, 1000 * ps / bc }')"
}

# open_loop RATE: the change feed's latency at RATE offered, then fsync.
open_loop() {
    local r=$1 sub o=$work/open$1
    rm -f "$o.ready" "$o.sent"
    "$wssub" --url "$url" --subscribers 1 --duration-s $((secs + 60)) --idle-s 10 \
        --sent-log "$o.sent" --ready-file "$o.ready" >"$o.sub" 2>"$o.suberr" &
    sub=$!
    bench_pids+=("$sub")
    for _ in $(seq 1 100); do [[ -f $o.ready ]] && break; sleep 0.1; done
    "$load" --url "$url" --clients "$clients" --rate "$r" --duration-s "$secs" --warmup-s 2 \
        --sent-log "$o.sent" >"$o.load" 2>"$o.loaderr" || true
    wait "$sub" || true
    ./"$build"/bench/bench_fsync "$work/duckspread" 500 >"$o.fsync"
    emit "e2e open $r: p50_ms=$(val p50_ms "$o.sub") p99_ms=$(val p99_ms "$o.sub")" \
        "late=$(val late "$o.load") fsync_p50_ms=$(val p50_ms "$o.fsync")" \
        "fsync_p99_ms=$(val p99_ms "$o.fsync") achieved=$(val edits_per_s "$o.load")" \
        "answer_p50_ms=$(val p50_ms "$o.load") answer_p99_ms=$(val p99_ms "$o.load")" \
        "events=$(val n "$o.sub")"
}

grid_subscribers() {
    local g=$work/grid sub
    node bench/grids.mjs "$url" "$grid_count" >"$g.grids"
    rm -f "$g.ready" "$g.sent"
    "$wssub" --url "$url" --subscribers "$grid_subs" --grids "$g.grids" --contiguous \
        --duration-s $((secs + 120)) --idle-s 5 --connect-s 60 --sent-log "$g.sent" \
        --ready-file "$g.ready" >"$g.sub" 2>"$g.suberr" &
    sub=$!
    bench_pids+=("$sub")
    for _ in $(seq 1 600); do [[ -f $g.ready ]] && break; sleep 0.1; done
    "$load" --url "$url" --clients 64 --rate "$grid_rate" --duration-s "$secs" --warmup-s 2 \
        --sent-log "$g.sent" >"$g.load" 2>"$g.loaderr" || true
    wait "$sub" || true
    if grep -q '^e2e grid subscribers:' "$g.sub"; then
        emit "$(grep '^e2e grid subscribers:' "$g.sub") rate=$grid_rate" \
            "achieved=$(val edits_per_s "$g.load")"
    else
        echo "e2e: the grid subscribers reported nothing:" >&2
        cat "$g.suberr" >&2
    fi
}

# The baseline is far slower than a client's wait: count what its writer
# applies in the window (duckspread_commands_applied_total) instead of answers.
baseline() {
    server_start baseline --bench-baseline
    "$load" --url "$url" --clients "$clients" --duration-s $((secs + 3)) --warmup-s 0 \
        --drain-s 1 >"$work/base.load" 2>"$work/base.err" &
    local lp=$! a0 a1 t0 t1
    bench_pids+=("$lp")
    sleep 3
    a0=$(metric duckspread_commands_applied_total) t0=$(date +%s.%N)
    sleep "$secs"
    a1=$(metric duckspread_commands_applied_total) t1=$(date +%s.%N)
    emit "$(awk -v a0="$a0" -v a1="$a1" -v t0="$t0" -v t1="$t1" -v c="$clients" 'BEGIN {
        printf "e2e baseline: clients=%d edits_per_s=%.1f applied=%d seconds=%.1f",
            c, (a1 - a0) / (t1 - t0), a1 - a0, t1 - t0 }')" | tee "$work/base.out"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    wait "$lp" 2>/dev/null || true
    local ours base
    ours=$(val edits_per_s "$work/closed256.out" 2>/dev/null || true)
    base=$(val edits_per_s "$work/base.out")
    [[ -n $ours ]] || return 0 # no 256-client figure in this run
    emit "$(awk -v o="$ours" -v b="${base:-0}" 'BEGIN {
        printf "e2e ratio: duckspread_edits_per_s=%.1f baseline_edits_per_s=%.1f ratio=%.1f",
            o, b, (b > 0 ? o / b : 0) }')"
}

echo "e2e: $(nproc) cores, demo of $facts facts, ${secs}s windows, parts:$parts"
if has_part closed || has_part open || has_part grid; then
    server_start duckspread
    echo "e2e: server ready (pid $pid, RSS $(rss_mb "$pid") MiB)"
    if has_part closed; then closed_loop; fi
    if has_part open; then for r in $rates; do open_loop "$r"; done; fi
    if has_part grid; then grid_subscribers; fi
    server_stop
fi
if has_part baseline; then baseline; fi
