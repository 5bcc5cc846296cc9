#!/usr/bin/env bash
# dvault stream's throughput (issue 21): N plain JSON product views produced to a topic
# with 1 and with 4 partitions on a local tansu broker (memory storage), consumed by
# `dvault stream --exit-at-end` into a fresh database each; then the same records as a
# CSV through `dvault ingest --no-bulk`. Needs tansu on PATH (.ci/run installs it) and
# kafka-python (pip install kafka-python) to produce.
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
trap 'kill $BROKER; rm -rf "$WORK"' EXIT
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
PY
run() { # name, then the dvault command
    local name=$1; shift
    local db=dvault_bench_stream_$$
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
    "$DVAULT" migrate >/dev/null
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    echo "$name: $N records in $(echo "$end - $start" | bc) s, $(echo "$N / ($end - $start)" | bc) records/s"
    unset DATABASE_URL
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $db"
}
for p in 1 4; do
    run "dvault stream, $p partition(s)" "$DVAULT" stream --brokers 127.0.0.1:$PORT --topic views$p \
        --type product_viewed --source web --time-field viewed_at --exit-at-end
done
run "dvault ingest --no-bulk, the same records as CSV" "$DVAULT" ingest "$WORK/views.csv" \
    --type product_viewed --source web --time-field viewed_at --no-bulk
