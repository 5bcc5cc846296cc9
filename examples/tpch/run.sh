#!/usr/bin/env bash
# TPC-H on dvault: generate the CSV files with tpchgen-cli, ingest them into the event
# log, load the Data Vault of examples/tpch, then a day-2 delta of ~1% new and changed
# rows; prints the timings and checks the hash keys against AutomateDV's formula.
#
#   examples/tpch/run.sh [SCALE_FACTOR]          # default 1
#   BUNDLE=1 examples/tpch/run.sh 1              # ingest in bundles (dvault ingest --bundle)
#
# Needs: tpchgen-cli (cargo install tpchgen-cli), psql, python3. Uses DATABASE_URL's
# server if set, else dvault's private server; either way a fresh database
# `dvault_tpch` (dropped and created). Data goes to target/tpch/sf<SF> (TPCH_DATA).
set -euo pipefail
cd "$(dirname "$0")/../.."
SF="${1:-1}"
DATA="${TPCH_DATA:-target/tpch/sf$SF}"
EX=examples/tpch

command -v tpchgen-cli >/dev/null || { echo "tpchgen-cli is missing: cargo install tpchgen-cli" >&2; exit 1; }
cargo build --release --quiet
DV=target/release/dvault

if [ ! -f "$DATA/lineitem.csv" ]; then
    mkdir -p "$DATA"
    echo "== generating TPC-H SF$SF CSV files in $DATA"
    tpchgen-cli csv -s "$SF" -o "$DATA" --tables customer,orders,lineitem,part,supplier,nation
fi
if [ ! -f "$DATA/delta/lineitem.csv" ]; then
    python3 "$EX/delta.py" "$DATA" "$DATA/delta" >/dev/null
fi

# the server and a fresh database
if [ -n "${DATABASE_URL:-}" ]; then SERVER_URL="$DATABASE_URL"; else SERVER_URL=$("$DV" local start); fi
with_db() { python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$SERVER_URL" "$1"; }
ADMIN=$(with_db postgres)
export DATABASE_URL=$(with_db dvault_tpch)
psql -X -q "$ADMIN" -c "DROP DATABASE IF EXISTS dvault_tpch" -c "CREATE DATABASE dvault_tpch"
"$DV" migrate >/dev/null
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -f "$EX/schema.sql" -f "$EX/views.sql"
export DVAULT_MAPPINGS="$EX/mappings"

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }
ingest_all() { # dir
    for t in nation supplier part customer orders lineitem; do
        # shellcheck disable=SC2046 # no flag or one word
        [ -f "$1/$t.csv" ] && "$DV" ingest "$1/$t.csv" --type "tpch_$t" --source tpch --batch-size 50000 $([ "${BUNDLE:-0}" = 1 ] && echo --bundle)
    done
}
rows_in() { wc -l "$1"/{nation,supplier,part,customer,orders,lineitem}.csv 2>/dev/null | awk '/total/ {print $1 - 6}'; }

echo "== day 1: SF$SF, $(rows_in "$DATA") rows"
t0=$(now); ingest_all "$DATA"; t1=$(now)
"$DV" load --batch-size "${BATCH:-100000}"; t2=$(now)
echo "== day 2: delta of $(rows_in "$DATA/delta") rows"
ingest_all "$DATA/delta"; t3=$(now)
"$DV" load --batch-size "${BATCH:-100000}"; t4=$(now)

echo "== hash keys against AutomateDV's formula (mismatches must be 0)"
psql -X "$DATABASE_URL" -f "$EX/hash_check.sql"
echo "== TPC-H Q1 from the vault"
t5=$(now); psql -X "$DATABASE_URL" -c "TABLE tpch_mart.pricing_summary"; t6=$(now)
psql -X -At "$DATABASE_URL" -c "SELECT 'vault size: ' || pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tpch_vault' AND c.relkind = 'r'"

cat <<TABLE

| SF$SF | seconds |
| --- | ---: |
| day 1 ingest (CSV -> event log) | $(secs "$t0" "$t1") |
| day 1 load (event log -> vault) | $(secs "$t1" "$t2") |
| **day 1, CSV files to loaded vault** | **$(secs "$t0" "$t2")** |
| day 2 ingest | $(secs "$t2" "$t3") |
| day 2 load | $(secs "$t3" "$t4") |
| **day 2, delta files to loaded vault** | **$(secs "$t2" "$t4")** |
| TPC-H Q1 from the vault | $(secs "$t5" "$t6") |
TABLE
