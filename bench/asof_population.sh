#!/usr/bin/env bash
# The as-of computations behind the first request of a new date (issue 15, section 2),
# timed in each database given, alternating, two rounds: the population of
# `/segments?as_of=` and `/analytics/churn?as_of=` (business_vault.population_computed),
# the RFM boundaries of `/customers/{id}?as_of=` (business_vault.rfm_cuts_at, forgotten
# before each call) and the sales of the `/analytics/*?as_of=` endpoints
# (business_vault.sales_computed). Give copies of one loaded vault with the views to
# compare (`CREATE DATABASE b TEMPLATE a`, then `psql -d b -f views/50_time_travel.sql`).
#
#   bench/asof_population.sh <database before> <database after>
set -euo pipefail
TS=${TS:-2026-09-01}
PSQL=(psql -X -q -h "${PGHOST:-127.0.0.1}" -U "${PGUSER:-postgres}")
queries=(
    "SELECT count(*) FROM business_vault.population_computed('$TS')"
    "SELECT count(*) FROM business_vault.rfm_cuts_at('$TS')"
    "SELECT count(*) FROM business_vault.sales_computed('$TS')"
)
for round in 1 2; do
    for db in "$@"; do
        for q in "${queries[@]}"; do
            "${PSQL[@]}" -d "$db" -c "DELETE FROM business_vault.rfm_cutpoints_as_of" >/dev/null
            start=$(date +%s%N)
            "${PSQL[@]}" -d "$db" -c "$q" >/dev/null
            end=$(date +%s%N)
            printf 'round %d  %-12s %-70s %6d ms\n' "$round" "$db" "$q" $(((end - start) / 1000000))
        done
    done
done
