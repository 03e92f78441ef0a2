#!/usr/bin/env bash
# make bench (at its end) and make bench-gates: one `gate:` line for every
# performance target (docs/architecture.md, Performance notes), from
# the fixed lines the bench parts appended to FILE, the last of each kind:
#   gate: <figure> <target>: ok (<figures>)
#   gate: <figure> <target>: MISSED (<figures>[; floor: <what this machine gives at best>])
#   gate: <figure> <target>: not measured (<the part that prints it>)
# and the engine's memory and the floor as `figure:` lines. It judges,
# it never fails: a missed gate is reported, the exit status is 0.
# Usage: bench/gates.sh FILE
set -euo pipefail
file=${1:?usage: bench/gates.sh FILE}
[[ -f $file ]] || { echo "gates: no results in $file (run make bench or a part first)" >&2; exit 1; }

# get PREFIX FIELD: FIELD's value in the last line that starts with "PREFIX:"
get() {
    awk -v p="$1:" -v f="$2" 'index($0, p) == 1 {
        v = ""
        for (i = 1; i <= NF; i++) if (index($i, f "=") == 1) v = substr($i, length(f) + 2)
        last = v } END { print last }' "$file"
}
has() { grep -q "^$1:" "$file"; }
# judge NAME EXPR FIGURES [FLOOR]: EXPR is an awk condition over the
# variables given as -v pairs in $vars; prints the gate line.
judge() {
    local name=$1 cond=$2 figs=$3 floor=${4:-}
    local r
    # shellcheck disable=SC2086
    r=$(awk $vars "BEGIN { print (($cond) ? \"ok\" : \"MISSED\") }")
    if [[ $r == MISSED && -n $floor ]]; then figs="$figs; floor: $floor"; fi
    echo "gate: $name: $r ($figs)"
}
missing() { echo "gate: $1: not measured ($2)"; }

floor_of() { # floor_of C: the XADD floor at C clients, as text
    has "floor xadd $1" && echo "XADD alone $(get "floor xadd $1" per_s)/s at $1 client(s)"
}

echo "gates (docs/architecture.md, Performance notes) from $file:"

# 1. the 1M-leaf spread through the store vs a plain UPDATE
if has "spread 1M"; then
    r=$(get "spread 1M" ratio) rl=$(get "spread 1M" ratio_with_log)
    vars="-v r=$r -v rl=$rl"
    judge "spread 1M through the store vs UPDATE <= 3x, <= 5x with the change log" \
        "r <= 3 && rl <= 5" "ratio=$r ratio_with_log=$rl"
else
    missing "spread 1M through the store vs UPDATE <= 3x, <= 5x with the change log" "make bench-spread"
fi

# 2. the same spread answered by the engine
if has "engine spread 1M"; then
    r=$(get "engine spread 1M" ratio)
    vars="-v r=$r"
    judge "spread 1M answered by the engine vs UPDATE <= 0.5x (orientation <= 0.2x)" "r <= 0.5" \
        "ratio=$r engine_ms=$(get "engine spread 1M" engine_ms) update_ms=$(get "engine spread 1M" update_ms)"
else
    missing "spread 1M answered by the engine vs UPDATE <= 0.5x" "make bench-engine"
fi

# 3. 256 closed-loop clients, and the ratio to the seed-literal baseline
if has "e2e closed 256"; then
    e=$(get "e2e closed 256" edits_per_s)
    vars="-v e=$e"
    judge "256 clients >= 8,000 edits/s (no less than 5,000; orientation 20,000)" "e >= 8000" \
        "edits_per_s=$e p99_ms=$(get "e2e closed 256" p99_ms)" "$(floor_of 256)"
else
    missing "256 clients >= 8,000 edits/s" "make bench-e2e"
fi
if has "e2e ratio"; then
    r=$(get "e2e ratio" ratio)
    vars="-v r=$r"
    judge "256 clients >= 100x the seed-literal baseline" "r >= 100" \
        "ratio=$r baseline_edits_per_s=$(get "e2e ratio" baseline_edits_per_s)"
else
    missing "256 clients >= 100x the seed-literal baseline" "make bench-e2e"
fi

# 4. 1 / 8 / 64 clients
for pair in 1:500 8:1500 64:5000; do
    c=${pair%:*} t=${pair#*:}
    if has "e2e closed $c"; then
        e=$(get "e2e closed $c" edits_per_s)
        vars="-v e=$e -v t=$t"
        judge "$c client(s) >= $t edits/s" "e >= t" \
            "edits_per_s=$e p50_ms=$(get "e2e closed $c" p50_ms)" "$(floor_of "$c")"
    else
        missing "$c client(s) >= $t edits/s" "make bench-e2e"
    fi
done

# 5. POST -> event at 2,000 offered, next to the disk's fsync
if has "e2e open 2000"; then
    p=$(get "e2e open 2000" p99_ms) f=$(get "e2e open 2000" fsync_p99_ms)
    vars="-v p=$p -v f=$f"
    judge "POST -> event p99 < 10 ms at 2,000/s offered" "p < 10" \
        "p99_ms=$p fsync_p99_ms=$f achieved=$(get "e2e open 2000" achieved) late=$(get "e2e open 2000" late)"
    judge "POST -> event p99 < 3x the disk's fsync p99 (orientation)" "p < 3 * f" \
        "p99_ms=$p fsync_p99_ms=$f"
else
    missing "POST -> event p99 < 10 ms at 2,000/s offered" "make bench-e2e"
fi

# 6. the 1000 x 12 grid over 10M facts vs DuckDB's GROUP BY
if has "engine grid 1000x12 10M"; then
    r=$(get "engine grid 1000x12 10M" ratio)
    vars="-v r=$r"
    judge "grid 1000x12 over 10M facts vs GROUP BY <= 1.5x (orientation <= 0.5x from the engine)" \
        "r <= 1.5" "ratio=$r engine_ms=$(get "engine grid 1000x12 10M" engine_ms) duckdb_ms=$(get "engine grid 1000x12 10M" duckdb_ms)"
else
    missing "grid 1000x12 over 10M facts vs GROUP BY <= 1.5x" "make bench-engine with 10M facts"
fi

# 7. 1,000 grid subscribers at 200 edits/s
if has "e2e grid subscribers"; then
    g="e2e grid subscribers"
    vars="-v m=$(get "$g" missed) -v mm=$(get "$g" mismatched) -v rs=$(get "$g" resnapshots)
          -v u=$(get "$g" unchecked)
          -v d=$(get "$g" disorder) -v c=$(get "$g" closed) -v fl=$(get "$g" failed)
          -v p=$(get "$g" p99_ms) -v s=$(get "$g" subscribers)"
    judge "$(get "$g" subscribers) grid subscribers at $(get "$g" rate)/s: every patch delivered" \
        "m == 0 && mm == 0 && u == 0 && rs == 0 && d == 0 && c == 0 && fl == 0" \
        "missed=$(get "$g" missed) mismatched=$(get "$g" mismatched) unchecked=$(get "$g" unchecked) resnapshots=$(get "$g" resnapshots) disorder=$(get "$g" disorder) closed=$(get "$g" closed) failed=$(get "$g" failed)"
    judge "$(get "$g" subscribers) grid subscribers at $(get "$g" rate)/s: p99 < 50 ms" "p < 50" \
        "p99_ms=$(get "$g" p99_ms) p50_ms=$(get "$g" p50_ms) achieved=$(get "$g" achieved) patches=$(get "$g" patches)"
else
    missing "1,000 grid subscribers at 200 edits/s: every patch delivered, p99 < 50 ms" "make bench-e2e"
fi

# 8. the persister's lag at 5,000 edits/s, bounded and flat for 10 minutes
# bounded: never at the server's --persist-lag bound (50,000 commands, when
# the writer stops reading) nor in backpressure; flat: the second half's
# highest sample at most twice the first half's (+1,000 for noise); and
# the rate offered was achieved (95%) for the whole 600 s.
if has "e2e persister lag"; then
    l="e2e persister lag"
    vars="-v s=$(get "$l" seconds) -v r=$(get "$l" rate) -v a=$(get "$l" achieved)
          -v mx=$(get "$l" lag_max) -v h1=$(get "$l" lag_first_half_max)
          -v h2=$(get "$l" lag_second_half_max) -v bp=$(get "$l" backpressure_samples)"
    judge "persister lag at $(get "$l" rate) edits/s sustained: bounded, flat for 10 minutes" \
        "s >= 600 && a >= 0.95 * r && mx < 50000 && bp == 0 && h2 <= 2 * h1 + 1000" \
        "seconds=$(get "$l" seconds) achieved=$(get "$l" achieved) lag_max=$(get "$l" lag_max) lag_end=$(get "$l" lag_end) halves=$(get "$l" lag_first_half_max)/$(get "$l" lag_second_half_max) backpressure_samples=$(get "$l" backpressure_samples) rss_mb=$(get "$l" rss_start_mb)->$(get "$l" rss_end_mb)"
else
    missing "persister lag at 5,000 edits/s sustained: bounded, flat for 10 minutes" "make bench-soak"
fi

# figures without a gate: the engine's memory, the floor
for size in 1M 10M; do
    if has "engine load $size"; then
        echo "figure: engine at $size facts: bytes_per_fact=$(get "engine load $size" bytes_per_fact) cube_mb=$(get "engine load $size" cube_mb) rss_mb=$(get "engine load $size" rss_mb)"
    fi
done
for c in 1 8 64 256; do
    if has "floor xadd $c"; then
        echo "figure: floor XADD alone at $c client(s): per_s=$(get "floor xadd $c" per_s) p50_ms=$(get "floor xadd $c" p50_ms) p99_ms=$(get "floor xadd $c" p99_ms)"
    fi
done
if has "floor http 256"; then
    echo "figure: floor GET /health alone at 256 clients: per_s=$(get "floor http 256" per_s) p99_ms=$(get "floor http 256" p99_ms)"
fi
if has "floor fsync"; then
    echo "figure: floor fsync: p50_ms=$(get "floor fsync" p50_ms) p99_ms=$(get "floor fsync" p99_ms)"
fi
exit 0
