#!/usr/bin/env bash
# The seed-sized load side by side (issue 15, section 3): the old Python Customer 360
# platform's warehouse load (../shared/peers/seed_c360/time_load.sh: its DDL, then its
# DAG's pandas staging and SQL) and dvault on the same three CSV files
# (examples/c360/mappings: migrate, three ingests, load), one after the other, each on
# a fresh database, ROUNDS times alternating. Prints one line per run and the ratios.
#
#   VENV=<the platform's venv> CHECKOUT=<its checkout, with data/> DVAULT=target/release/dvault \
#     flock /tmp/dvault-bench.lock bench/seed_vs_platform.sh
#
# The platform's checkout, venv and data: ../shared/peers/seed_c360/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VENV:?the old platform's venv}"
: "${CHECKOUT:?the old platform's checkout (with data/*.csv)}"
DVAULT=${DVAULT:-target/release/dvault}
PEER=${PEER:-../shared/peers/seed_c360}
ROUNDS=${ROUNDS:-2}
DATA="$CHECKOUT/data"
PG=postgres://postgres@127.0.0.1:5432
now() { date +%s.%N; }

for round in $(seq "$ROUNDS"); do
    peer_db=dvault_bench_platform_$$
    start=$(now)
    VENV="$VENV" bash "$PEER/time_load.sh" "$CHECKOUT" "$peer_db" >/tmp/seed_vs_platform.peer.$$ 2>&1
    peer=$(echo "$(now) - $start" | bc)
    inner=$(grep '^total_s=' /tmp/seed_vs_platform.peer.$$ | cut -d= -f2)
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $peer_db"

    db=dvault_bench_seed_$$
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
    export DATABASE_URL=$PG/$db
    "$DVAULT" migrate --mappings examples/c360/mappings >/dev/null
    start=$(now)
    "$DVAULT" ingest "$DATA/customers.csv" --type c360_customer --source c360 --time-field signup_date >/dev/null
    "$DVAULT" ingest "$DATA/products.csv" --type c360_product --source c360 >/dev/null
    "$DVAULT" ingest "$DATA/transactions.csv" --type c360_transaction --source c360 --time-field order_date >/dev/null
    ingested=$(now)
    loaded=$("$DVAULT" load 2>&1 | grep -E '^loaded' || true)
    end=$(now)
    ours=$(echo "$end - $start" | bc)
    echo "round $round: platform ${peer} s (its DAG ${inner} s) | dvault ${ours} s (ingest $(echo "$ingested - $start" | bc) s, load $(echo "$end - $ingested" | bc) s: $loaded) | dvault / platform DAG $(echo "scale=3; $ours / $inner" | bc)"
    unset DATABASE_URL
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $db"
done
rm -f /tmp/seed_vs_platform.peer.$$
