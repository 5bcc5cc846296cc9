#!/usr/bin/env bash
# A 1% delta on a loaded Customer 360 vault (issue 15, section 3): 1% of each event type
# of the log, sampled, sent again as new events of today (new order ids for the orders
# placed, the same keys for status changes, customer and product updates and views),
# ingested and loaded; prints the load's summary and the business vault refresh of each
# batch. The refresh's cost should follow the delta, not the vault: run it on vaults of
# two sizes (e.g. `dvault demo --no-serve` and `dvault gen --customers 100000 ...`).
#
#   DATABASE_URL=postgres://.../loaded DVAULT=target/release/dvault bench/delta.sh
set -euo pipefail
: "${DATABASE_URL:?a loaded Customer 360 database}"
DVAULT=${DVAULT:-target/release/dvault}
OUT=$(mktemp /tmp/dvault-delta.XXXXXX.ndjson)
trap 'rm -f "$OUT"' EXIT
psql "$DATABASE_URL" -Atqc "SELECT setseed(0.15)" -c "
COPY (
  SELECT json_build_object(
           'specversion', '1.0', 'id', 'delta-' || e.seq || '-' || extract(epoch FROM now())::bigint,
           'type', e.event_type, 'source', e.record_source,
           'time', to_char((now() - interval '1 minute' + e.seq * interval '1 microsecond')
                           AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
           'data', CASE WHEN e.event_type = 'order_placed'
                        THEN jsonb_set(e.payload::jsonb, '{order_id}',
                                       to_jsonb('D' || (e.payload->>'order_id') || '-' || extract(epoch FROM now())::bigint))
                        ELSE e.payload::jsonb END)
    FROM event_log.events e
   WHERE random() < 0.01
   ORDER BY e.seq
) TO STDOUT" >"$OUT"
echo "delta: $(grep -c . "$OUT") events"
"$DVAULT" ingest "$OUT" --no-bulk | tail -1
"$DVAULT" load --log dvault::load=debug 2>&1 | grep -E "business vault refreshed|^loaded" | sed -E 's/^.*(business vault refreshed)/\1/'
