#!/usr/bin/env bash
# dvault stream's throughput (issue 21): N plain JSON product views produced to a topic
# with 1 and with 4 partitions on a local tansu broker (memory storage), consumed by
# `dvault stream --exit-at-end` into a fresh database each; then the same records as
# CloudEvents posted to `POST /events` (NDJSON, 5,000 a request, two at a time), and as
# a CSV through `dvault ingest --no-bulk`. Each route is timed into the log and then
# to the loaded vault (`dvault load` after it). Needs tansu on PATH (.ci/run installs
# it), kafka-python (pip install kafka-python) to produce, and curl.
#
#   DVAULT=target/release/dvault flock /tmp/dvault-bench.lock bench/stream.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200000}
DVAULT=${DVAULT:-target/release/dvault}
PORT=${PORT:-19095}
WORK=$(mktemp -d /tmp/dvault-stream-bench.XXXXXX)
tansu broker --listener-url tcp://127.0.0.1:$PORT --advertised-listener-url tcp://127.0.0.1:$PORT \
    --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
BROKER=$!
SERVER=
trap 'kill $BROKER ${SERVER:-} 2>/dev/null; rm -rf "$WORK"' EXIT
sleep 1
python3 - "$PORT" "$N" "$WORK" <<'PY'
import csv, json, sys
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
port, n, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
servers = f"127.0.0.1:{port}"
KafkaAdminClient(bootstrap_servers=servers).create_topics(
    [NewTopic("views1", 1, 1), NewTopic("views4", 4, 1)])
rows = [{"session_id": f"S0-{i // 10}", "customer_id": f"C{i % 10000:06}",
         "product_id": f"P{i % 5000:06}", "viewed_at": "2026-10-05T04:53:59Z"} for i in range(n)]
p = KafkaProducer(bootstrap_servers=servers, linger_ms=20, batch_size=1 << 20)
for topic in ("views1", "views4"):
    for r in rows:
        p.send(topic, json.dumps(r).encode())
p.flush()
with open(f"{work}/views.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
for start in range(0, n, 5000):
    with open(f"{work}/events-{start // 5000:05}.ndjson", "w") as f:
        for i, r in enumerate(rows[start:start + 5000], start):
            f.write(json.dumps({"specversion": "1.0", "id": f"view-{i}", "source": "web",
                                "type": "product_viewed", "time": r["viewed_at"],
                                "data": r}) + "\n")
PY
seconds() { printf "%.2f" "$(echo "$2 - $1" | bc)"; }
run() { # name, then the command that appends the records to the log
    local name=$1; shift
    local db=dvault_bench_stream_$$
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
    "$DVAULT" migrate >/dev/null
    local start logged loaded
    start=$(date +%s.%N)
    "$@" >/dev/null
    logged=$(date +%s.%N)
    "$DVAULT" load >/dev/null
    loaded=$(date +%s.%N)
    local in_log to_vault
    in_log=$(seconds "$start" "$logged")
    to_vault=$(seconds "$start" "$loaded")
    echo "| $name | $in_log s | $(echo "$N / $in_log" | bc) | $to_vault s | $(echo "$N / $to_vault" | bc) |"
    unset DATABASE_URL
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $db"
}
# POST /events: a server on the run's database, the NDJSON files two at a time
post_all() {
    local port=$((PORT + 1)) token digest
    token=$(openssl rand -hex 32)
    digest=$(printf %s "$token" | sha256sum | cut -c1-64)
    "$DVAULT" serve --listen 127.0.0.1:$port --api-key "write:$digest" >"$WORK/serve.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
        sleep 0.1
    done
    find "$WORK" -name 'events-*.ndjson' | sort | xargs -P 2 -I{} \
        curl -sS -f -o /dev/null -H "Content-Type: application/x-ndjson" -H "Authorization: Bearer $token" \
            --data-binary @{} "http://127.0.0.1:$port/events"
    kill "$SERVER"
    wait "$SERVER" || true
    SERVER=
}
echo "| route | into the log | records/s | to the loaded vault | records/s |"
echo "| --- | ---: | ---: | ---: | ---: |"
for p in 1 4; do
    run "\`dvault stream\`, $p partition(s)" "$DVAULT" stream --brokers 127.0.0.1:$PORT --topic views$p \
        --type product_viewed --source web --time-field viewed_at --exit-at-end
done
run "\`POST /events\`, NDJSON of 5,000, 2 at a time" post_all
run "\`dvault ingest --no-bulk\`, the same records as CSV" "$DVAULT" ingest "$WORK/views.csv" \
    --type product_viewed --source web --time-field viewed_at --no-bulk
