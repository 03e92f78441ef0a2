#!/usr/bin/env bash
# make bench-soak: the persister's lag under a sustained load. One server
# over the 1M-fact demo (its private redis-server, appendfsync always)
# takes single-cell writes offered at SOAK_RATE (5,000/s) open loop from
# 256 connections for SOAK_S seconds (600); every 10 s the script samples
# /metrics (duckspread_persist_lag: commands applied and not yet committed
# to DuckDB; duckspread_persist_lag_seconds; duckspread_backpressure) and
# the resident memory of the server and of its redis-server
# (/proc/PID/status VmRSS), into $work/soak.samples, echoed to stderr as it
# goes. One line:
#   e2e persister lag: seconds=600 rate=5000 achieved=.. lag_max=.. lag_end=.. rss_start_mb=..
#     rss_end_mb=.. lag_first_half_max=.. lag_second_half_max=.. lag_s_max=..
#     backpressure_samples=.. redis_rss_start_mb=.. redis_rss_end_mb=.. samples=..   (one line)
# achieved is what the server answered 200 per second over the window,
# whether or not that is the rate offered; lag_end is the last sample in
# the window. Reports, never fails on a figure (bench/gates.sh judges it).
# Usage: bench/soak.sh [BUILD]; environment: E2E_FACTS (1000000), SOAK_S
# (or E2E_SOAK_S; 600), SOAK_RATE (5000), BENCH_RESULTS.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/duckspread
bench_target=bench-soak
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need "$bin" "$build"/bench/bench_load
facts=${E2E_FACTS:-1000000}
secs=${SOAK_S:-${E2E_SOAK_S:-600}}
rate=${SOAK_RATE:-5000}
bench_work soak

server_start soak
rpid=$(pgrep -P "$pid" redis-server | head -1 || true)
echo "soak: $(nproc) cores, demo of $facts facts, $rate writes/s offered for ${secs}s"
samples=$work/soak.samples
sample() { # sample T: one line "t lag lag_s backpressure rss redis_rss"
    local m
    m=$(curl -s "$url/metrics")
    printf '%s %s %s %s %s %s\n' "$1" \
        "$(awk '$1 == "duckspread_persist_lag" { print $2 }' <<<"$m")" \
        "$(awk '$1 == "duckspread_persist_lag_seconds" { print $2 }' <<<"$m")" \
        "$(awk '$1 == "duckspread_backpressure" { print $2 }' <<<"$m")" \
        "$(rss_mb "$pid")" "$([[ -n $rpid ]] && rss_mb "$rpid" || echo 0)"
}

./"$build"/bench/bench_load --url "$url" --clients 256 --rate "$rate" --duration-s "$secs" \
    --warmup-s 0 --drain-s 30 >"$work/soak.load" 2>"$work/soak.err" &
load=$!
bench_pids+=("$load")
t0=$(date +%s)
echo "# t lag lag_s backpressure rss_mb redis_rss_mb" >"$samples"
sample 0 | tee -a "$samples" >&2
for ((t = 10; t <= secs; t += 10)); do
    sleep $((t0 + t - $(date +%s))) 2>/dev/null || true
    kill -0 "$load" 2>/dev/null || break
    sample "$t" | tee -a "$samples" >&2
done
wait "$load" || true
server_stop

emit "$(awk -v secs="$secs" -v rate="$rate" -v ach="$(val edits_per_s "$work/soak.load")" '
    BEGIN { n = 0 }
    /^#/ { next }
    { t[n] = $1; lag[n] = $2; ls[n] = $3; bp[n] = $4; rss[n] = $5; rrss[n] = $6; n++ }
    END {
        for (i = 0; i < n; i++) {
            if (lag[i] > max) max = lag[i]
            if (ls[i] > lsmax) lsmax = ls[i]
            if (t[i] <= secs / 2 && lag[i] > h1) h1 = lag[i]
            if (t[i] > secs / 2 && lag[i] > h2) h2 = lag[i]
            bps += bp[i]
        }
        printf "e2e persister lag: seconds=%d rate=%d achieved=%s lag_max=%d lag_end=%d " \
            "rss_start_mb=%d rss_end_mb=%d lag_first_half_max=%d lag_second_half_max=%d " \
            "lag_s_max=%.3f backpressure_samples=%d redis_rss_start_mb=%d redis_rss_end_mb=%d " \
            "samples=%d", t[n - 1], rate, ach, max, lag[n - 1], rss[0], rss[n - 1], h1, h2,
            lsmax, bps, rrss[0], rrss[n - 1], n
    }' "$samples")"
