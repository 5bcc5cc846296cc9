#!/usr/bin/env bash
# Benchmarks: ingest, full load, 1% delta load, and a re-run with nothing new, on
# generated Customer 360 data at two sizes. Not part of the test suite.
#
#   bench/run.sh                 # seed size (10K customers, 40K orders) and 10x
#   SIZES="1" bench/run.sh       # seed size only
#
# Uses DATABASE_URL's server (a fresh database per size is created on it), else the
# private server under .dvault/. Prints a table; copy it into bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
bin=target/release/dvault
work=${BENCH_DIR:-/tmp/dvault-bench}
mkdir -p "$work"
sizes=${SIZES:-"1 10"}

if [ -z "${DATABASE_URL:-}" ]; then
    base_url=$("$bin" local start)
else
    base_url=$DATABASE_URL
fi
admin_url="${base_url%/*}/postgres"

secs() { python3 -c "import sys; print(f'{float(sys.argv[1]):.2f}')" "$1"; }
now() { date +%s.%N; }

printf '| size | events | ingest s | ingest ev/s | full load s | load ev/s | vault rows/s | peak MB | 1%% delta s | nothing new s |\n'
printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for x in $sizes; do
    dir="$work/x$x"
    "$bin" gen --out "$dir" --seed 42 --end 2026-11-22 \
        --customers $((10000 * x)) --products $((5000 * x)) --orders $((40000 * x)) >/dev/null
    n=$(wc -l < "$dir/events.ndjson")
    keep=$((n * 99 / 100))
    head -n "$keep" "$dir/events.ndjson" > "$dir/base.ndjson"
    tail -n +"$((keep + 1))" "$dir/events.ndjson" > "$dir/delta.ndjson"

    db="dvault_bench_x$x"
    psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" 2>/dev/null
    export DATABASE_URL="${base_url%/*}/$db"
    "$bin" migrate >/dev/null

    t0=$(now); "$bin" ingest "$dir/base.ndjson" >/dev/null; t1=$(now)
    ingest=$(python3 -c "print($t1 - $t0)")
    /usr/bin/time -f '%M' -o "$work/mem" "$bin" load > "$work/load.out"
    full=$(grep -oP 'in \K[0-9.]+(?= s)' "$work/load.out" | head -1)
    rows=$(grep -oP '\(\K[0-9,]+(?= events/s)' "$work/load.out" | head -1)
    rowsps=$(grep -oP ', \K[0-9,]+(?= vault rows/s)' "$work/load.out" | head -1)
    mem=$(( $(cat "$work/mem") / 1024 ))
    "$bin" ingest "$dir/delta.ndjson" >/dev/null
    t0=$(now); "$bin" load >/dev/null; t1=$(now)
    delta=$(python3 -c "print($t1 - $t0)")
    t0=$(now); "$bin" load >/dev/null; t1=$(now)
    nothing=$(python3 -c "print($t1 - $t0)")
    ingest_rate=$(python3 -c "print(f'{$keep / $ingest:,.0f}')")
    printf '| %sx | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
        "$x" "$(printf "%'d" "$n")" "$(secs "$ingest")" "$ingest_rate" "$full" "$rows" "$rowsps" "$mem" \
        "$(secs "$delta")" "$(secs "$nothing")"
done
