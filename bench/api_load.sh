#!/usr/bin/env bash
# The API under load with the daemon: 64 connections for 60 s of a read mix
# (bench/mixed.lua) while `dvault daemon --follow` loads events that arrive meanwhile
# (ten generated NDJSON chunks ingested 5 s apart, plus one POST /events a second).
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres bench/api_load.sh
#   BASELINE=1 ... bench/api_load.sh     # the same reads, no daemon and no writers
#   LUA=bench/random_ids.lua ...          # only GET /customers/{id}, random ids
#
# Needs wrk and a PostgreSQL server (DATABASE_URL names any database on it; a fresh
# database api_load_$$ is made and dropped). Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?set DATABASE_URL to a server the script may create a database on}"
ADMIN=$DATABASE_URL
DB=api_load_$$
URL=$(printf '%s' "$ADMIN" | sed -E "s#^(postgres(ql)?://[^/]*)/[^?]*#\1/$DB#")
BIN=target/release/dvault
WORK=$(mktemp -d /tmp/dvault-load.XXXXXX)
PORT=${PORT:-18181}
DURATION=${DURATION:-60}
PIDS=()
INGEST_PID=""
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release --quiet
psql "$ADMIN" -qc "CREATE DATABASE $DB"
DATABASE_URL=$URL $BIN demo --no-serve >"$WORK/demo.log" 2>&1
psql "$URL" -Atc "select customer_id from raw_vault.hub_customer" >/tmp/ids.txt
# events that arrive during the run: another generated data set, in ten chunks
$BIN gen --out "$WORK/more" --seed 7 --customers 5000 --products 500 --orders 20000 >/dev/null
split -n l/10 -d --additional-suffix=.ndjson "$WORK/more/events.ndjson" "$WORK/chunk-"
EVENTS=$(cat "$WORK"/chunk-*.ndjson | wc -l)

: >"$WORK/posts.log"; : >"$WORK/ingest.log"
TOKEN=load-$RANDOM$RANDOM
DIGEST=$(printf %s "$TOKEN" | sha256sum | cut -c1-64)
if [ -z "${BASELINE:-}" ]; then
    DATABASE_URL=$URL $BIN daemon --follow --log info >"$WORK/daemon.log" 2>&1 &
    PIDS+=($!)
fi
DATABASE_URL=$URL $BIN serve --listen 127.0.0.1:$PORT --api-key "read:$(printf %s "$TOKEN-r" | sha256sum | cut -c1-64)" \
    --api-key "write:$DIGEST" --log warn >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
until curl -fs "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.2; done
BEFORE=$(psql "$URL" -Atc "select count(*) from event_log.events")

# writers: chunks every 5 s, a POST a second
[ -n "${BASELINE:-}" ] || (
    for f in "$WORK"/chunk-*.ndjson; do
        DATABASE_URL=$URL $BIN ingest "$f" >>"$WORK/ingest.log" 2>&1
        sleep 5
    done
) &
INGEST_PID=$!
PIDS+=($!)
[ -n "${BASELINE:-}" ] || (
    i=0
    while true; do
        i=$((i + 1))
        curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $TOKEN" \
            -H 'content-type: application/cloudevents+json' \
            --data "{\"specversion\":\"1.0\",\"type\":\"customer_registered\",\"source\":\"load\",\"id\":\"load-$i\",\"time\":\"2026-01-01T00:00:00Z\",\"data\":{\"customer_id\":\"L$i\",\"first_name\":\"Load\",\"country\":\"Italy\"}}" \
            "http://127.0.0.1:$PORT/events" >>"$WORK/posts.log"
        sleep 1
    done
) &
PIDS+=($!)

echo "== uptime before: $(uptime)"
wrk -t2 -c64 -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" -s "${LUA:-bench/mixed.lua}" "http://127.0.0.1:$PORT" | tee "$WORK/wrk.txt"
echo "== uptime after: $(uptime)"
# the last chunks, then let the daemon catch up, then count
[ -n "${BASELINE:-}" ] || wait "$INGEST_PID" || true
for _ in $(seq 1 120); do
    lag=$(psql "$URL" -Atc "select count(*) from event_log.events e where (e.xid, e.seq) > coalesce((select (c.xid, c.seq) from ops.checkpoints c where c.consumer = 'vault_loader'), ('0'::xid8, 0::bigint))")
    [ "$lag" = 0 ] && break
    sleep 1
done
AFTER=$(psql "$URL" -Atc "select count(*) from event_log.events")
POSTS=$(wc -l <"$WORK/posts.log")
POSTS_OK=$(grep -c '^202$' "$WORK/posts.log" || true)
echo "== events appended during the run: $((AFTER - BEFORE)) (ingested chunks of $EVENTS generated events, $POSTS_OK/$POSTS POSTs 202)"
echo "== loader lag after the run: $lag events"
[ -n "${BASELINE:-}" ] || { echo "== ingest:"; grep -h "ingested\|skipped\|already" "$WORK/ingest.log" | sed 's/^/   /'; }
echo "== daemon runs:"; DATABASE_URL=$URL $BIN runs >"$WORK/runs.txt"; head -8 "$WORK/runs.txt"
echo "== errors in the server log: $(grep -ci "error" "$WORK/serve.log" || true)"
