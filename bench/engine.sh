#!/usr/bin/env bash
# make bench-engine: the in-memory engine over the demo (bench_engine),
# once per size in ENGINE_FACTS: at 1M facts every figure; at 10M the load
# (bytes per fact and RSS) and the 1000 x 12 grid against DuckDB's GROUP
# BY (BENCH_ONLY=grid: a spread of 10M leaves is not a row of the table).
# bench_engine's lines carry no size but the spread's, so each line is
# labelled with its run's size here:
#   engine load 1M: facts=.. load_ms=.. bytes_per_fact=.. cube_mb=.. rss_mb=.. (rss grew .. MB)
#   engine spread 1M: engine_ms=.. update_ms=.. ratio=.. (leaves=.., median of 11)
#   engine leaf writes 1M: per_s=.. us_each=.. (...)
#   engine grid 1000x12 1M: engine_ms=.. duckdb_ms=.. ratio=..
#   engine load 10M: ...
#   engine grid 1000x12 10M: ...
# A size whose demo would not fit in the memory available now (about
# 400 bytes a fact: DuckDB loading the demo, then the engine beside it) is
# skipped and said so:
#   engine 10M: skipped (needs about .. MiB, .. MiB available)
# Usage: bench/engine.sh [BUILD]; environment: ENGINE_FACTS
# ("1000000 10000000"), BENCH_RESULTS.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bench_target=bench-engine
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need "$build"/bench/bench_engine

label() { # label FACTS: 1M, 10M, 250k, ...
    awk -v f="$1" 'BEGIN {
        if (f >= 1000000 && f % 1000000 == 0) printf "%dM", f / 1000000
        else if (f >= 1000 && f % 1000 == 0) printf "%dk", f / 1000
        else printf "%d", f }'
}

for facts in ${ENGINE_FACTS:-1000000 10000000}; do
    size=$(label "$facts")
    need=$((facts * 400 / 1048576))
    avail=$(awk '/^MemAvailable:/ { printf "%d", $2 / 1024 }' /proc/meminfo)
    if ((need > avail)); then
        emit "engine $size: skipped (needs about $need MiB, $avail MiB available)"
        continue
    fi
    only=
    ((facts > 1000000)) && only=grid
    echo "engine: $facts facts${only:+ (BENCH_ONLY=$only)}, about $need MiB of $avail MiB available"
    # "engine X: ..." -> "engine X SIZE: ..." unless X already names it
    env ${only:+BENCH_ONLY=$only} ./"$build"/bench/bench_engine "$facts" |
        sed -u -E "/^engine [^:]* $size:/! s/^(engine [^:]*):/\\1 $size:/" |
        while IFS= read -r line; do emit "$line"; done
done
