#!/usr/bin/env bash
# Every read endpoint of the API under `wrk -c32` (issue 15, section 2): one run per
# endpoint, a markdown table row each (req/s, p50, p90, p99, non-2xx, socket errors).
#
#   DATABASE_URL=postgres://.../db BASE=http://127.0.0.1:18190 bench/endpoints.sh
#
# DATABASE_URL names a loaded database (ids are drawn from it); BASE a `dvault serve`
# on it. DURATION (default 15 s) per endpoint, CONNECTIONS (default 32). Run it under
# the bench lock: flock /tmp/dvault-bench.lock bench/endpoints.sh
# ONLY (an extended regex) keeps the endpoints whose path matches it. The first request
# of an `as_of` computes what later ones read back: it is timed once before the runs
# and printed under the table.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?a loaded database}"
: "${BASE:?the served API, e.g. http://127.0.0.1:18190}"
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-32}
WORK=$(mktemp -d /tmp/dvault-endpoints.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
psql "$DATABASE_URL" -Atc "select customer_id from raw_vault.hub_customer order by random() limit 20000" >"$WORK/customers"
psql "$DATABASE_URL" -Atc "select product_id from raw_vault.hub_product order by random() limit 20000" >"$WORK/products"
psql "$DATABASE_URL" -Atc "select order_id from raw_vault.hub_order order by random() limit 20000" >"$WORK/orders"
AS_OF=${AS_OF:-$(date -u -d '30 days ago' +%F)}

# name | ids file ('' for a fixed path) | path (template with %s for the id)
ENDPOINTS=(
    "customer by id|customers|/customers/%s"
    "customer by id, as_of|customers|/customers/%s?as_of=$AS_OF"
    "customer's orders|customers|/customers/%s/orders?limit=10"
    "customer's history|customers|/customers/%s/history"
    "customers, page of 100||/customers?limit=100"
    "customers?segment=Champions||/customers?segment=Champions&limit=20"
    "customers?sort=-last_order_at||/customers?sort=-last_order_at&limit=20"
    "customers?sort=-total_spent||/customers?sort=-total_spent&limit=20"
    "customers?sort=-clv_predicted_12m||/customers?sort=-clv_predicted_12m&limit=20"
    "segments||/segments"
    "segments, as_of||/segments?as_of=$AS_OF"
    "segment members by -clv||/segments/Champions/customers?limit=3&sort=-clv_predicted_12m"
    "product by id|products|/products/%s"
    "products?limit=5||/products?limit=5"
    "products?sort=-revenue||/products?sort=-revenue&limit=20"
    "order by id|orders|/orders/%s"
    "orders||/orders?limit=20"
    "revenue by month||/analytics/revenue?period=month"
    "churn||/analytics/churn"
    "categories||/analytics/categories"
    "customers?search=||/customers?search=ann&limit=20"
    "churn, as_of||/analytics/churn?as_of=$AS_OF"
    "top products||/analytics/top-products?limit=10"
    "revenue by month, as_of||/analytics/revenue?period=month&as_of=$AS_OF"
    "categories, as_of||/analytics/categories?as_of=$AS_OF"
    "top products, as_of||/analytics/top-products?limit=10&as_of=$AS_OF"
)
first=()
for path in "/segments?as_of=$AS_OF" "/analytics/churn?as_of=$AS_OF" \
    "/analytics/revenue?period=month&as_of=$AS_OF" "/analytics/categories?as_of=$AS_OF"; do
    if [ -z "${ONLY:-}" ] || [[ $path =~ $ONLY ]]; then
        first+=("\`$path\`: $(curl -s -o /dev/null -w '%{http_code} in %{time_total} s' "$BASE$path")")
    fi
done
echo "| endpoint | req/s | p50 | p90 | p99 | non-2xx | socket errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
# a slow endpoint's queries outlive its run (until the server's request timeout):
# wait until the database has none running before the next endpoint (at most 60 s)
settle() {
    for _ in $(seq 1 60); do
        busy=$(psql "$DATABASE_URL" -Atc "select count(*) from pg_stat_activity
            where datname = current_database() and state = 'active' and pid <> pg_backend_pid()")
        [ "$busy" = 0 ] && return
        sleep 1
    done
}
for e in "${ENDPOINTS[@]}"; do
    IFS='|' read -r name ids path <<<"$e"
    if [ -n "${ONLY:-}" ] && ! [[ $path =~ $ONLY ]]; then continue; fi
    settle
    if [ -n "$ids" ]; then
        IDS="$WORK/$ids" PATH_TEMPLATE="$path" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s --latency \
            -s bench/random_path.lua "$BASE" >"$WORK/out" 2>&1 || true
        shown=${path//%s/{id\}}
    else
        wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s --latency "$BASE$path" >"$WORK/out" 2>&1 || true
        shown=$path
    fi
    rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/out")
    p50=$(awk '$1 == "50%" {print $2}' "$WORK/out")
    p90=$(awk '$1 == "90%" {print $2}' "$WORK/out")
    p99=$(awk '$1 == "99%" {print $2}' "$WORK/out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/out")
    sock=$(grep -o 'Socket errors:.*' "$WORK/out" | sed 's/Socket errors: //' || true)
    echo "| \`${shown}\` | ${rps:-?} | ${p50:-?} | ${p90:-?} | ${p99:-?} | ${non2xx:-0} | ${sock:-} |"
done
if [ ${#first[@]} -gt 0 ]; then
    echo
    echo "First request of each as_of (computed, then remembered): ${first[*]}"
fi
