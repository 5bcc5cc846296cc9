#!/usr/bin/env bash
# A/B of dvault binaries on one load: each binary loads a fresh copy of an ingested,
# not yet loaded database, one after the other, timed by /usr/bin/time (wall, user
# CPU, peak RSS). Only the ratio within one run of this script counts (the machine is
# shared and noisy); run it twice with the binaries in the other order.
#
#   TEMPLATE=my_ingested_db MAPPINGS=examples/tpch/mappings bench/ab_load.sh old/dvault new/dvault
#
# The template is a database with the log ingested and the vault empty (for TPC-H:
# `dvault migrate`, examples/tpch/schema.sql and views.sql, then `dvault ingest` of the
# six files). Uses DATABASE_URL's server; the copy is database dvault_ab_load, dropped
# after each run.
set -euo pipefail
: "${TEMPLATE:?TEMPLATE=<ingested database to copy>}"
: "${DATABASE_URL:?DATABASE_URL=<server URL>}"
with_db() { python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$DATABASE_URL" "$1"; }
ADMIN=$(with_db postgres)
COPY=dvault_ab_load
for bin in "$@"; do
    psql -X -q "$ADMIN" -c "DROP DATABASE IF EXISTS $COPY" -c "CREATE DATABASE $COPY TEMPLATE $TEMPLATE"
    psql -X -q "$(with_db $COPY)" -c CHECKPOINT
    echo "$bin (load average $(cut -d' ' -f1 /proc/loadavg))"
    DATABASE_URL=$(with_db $COPY) DVAULT_MAPPINGS=${MAPPINGS:-} /usr/bin/time -f "  %e s wall, %U s user, %M KB peak" \
        "$bin" load --batch-size "${BATCH:-50000}" 2>&1 | sed -n '1p;$p'
    psql -X -q "$ADMIN" -c "DROP DATABASE $COPY"
done
