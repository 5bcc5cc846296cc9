#!/usr/bin/env bash
# GET /customers/{id} with one API process on the primary, versus two API processes,
# one on the primary and one reading from a streaming standby of it
# (`--read-database-url`), on the same machine (issue 19). Also two API processes both
# on the primary, to tell the replica's share from the second process's.
#
#   flock /tmp/dvault-bench.lock bench/replica.sh
#
# Needs wrk and the PostgreSQL server binaries (as for the private server). Makes its
# own private primary (the demo data set, `dvault demo --no-serve`) and a standby of it
# (pg_basebackup -R) under a temporary directory, on free ports, and removes both at
# the end. DURATION (default 30 s) per run, CONNECTIONS (default 32) in all, split
# evenly over the processes of a run. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/target/release/dvault
DURATION=${DURATION:-30}
CONNECTIONS=${CONNECTIONS:-32}
WORK=$(mktemp -d /tmp/dvault-replica.XXXXXX)
chmod 755 "$WORK"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
# initdb and postgres refuse to run as root: the private server runs as postgres then
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    as_pg "$PG_BIN/pg_ctl" stop -D "$WORK/standby/data" -m fast >/dev/null 2>&1 || true
    env -u DATABASE_URL DVAULT_HOME="$WORK/home" "$BIN" local stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release --quiet
env -u DATABASE_URL DVAULT_HOME="$WORK/home" "$BIN" demo --no-serve >"$WORK/demo.log" 2>&1
PRIMARY=$(env -u DATABASE_URL DVAULT_HOME="$WORK/home" "$BIN" local start --database dvault_demo)
PRIMARY_PORT=$(printf '%s' "$PRIMARY" | sed -E 's#.*:([0-9]+)/.*#\1#')
STANDBY_PORT=$(free_port)
mkdir -p "$WORK/standby"
[ "$(id -u)" != 0 ] || chown postgres: "$WORK/standby"
as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U dvault -D "$WORK/standby/data" -R -X stream -c fast
as_pg "$PG_BIN/pg_ctl" start --wait --silent -D "$WORK/standby/data" -l "$WORK/standby/server.log" \
    -o "-p $STANDBY_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
STANDBY=$(printf '%s' "$PRIMARY" | sed -E "s#:$PRIMARY_PORT/#:$STANDBY_PORT/#")
psql "$STANDBY" -Atc "select 'standby in recovery: ' || pg_is_in_recovery()"
psql "$PRIMARY" -Atc "select customer_id from raw_vault.hub_customer" >"$WORK/ids"
echo "customers: $(wc -l <"$WORK/ids")"

serve() { # port [extra flags...]
    local port=$1
    shift
    DATABASE_URL=$PRIMARY "$BIN" serve --listen "127.0.0.1:$port" --log warn "$@" >>"$WORK/serve.log" 2>&1 &
    PIDS+=($!)
    until curl -fs "http://127.0.0.1:$port/ready" >/dev/null; do sleep 0.2; done
}
A=$(free_port)
serve "$A"
B=$(free_port)
serve "$B" --read-database-url "$STANDBY"
C=$(free_port)
serve "$C"
curl -s "http://127.0.0.1:$B/ready" | python3 -c 'import json,sys; print("replica:", json.load(sys.stdin)["replica"])'

# wrk on each of the given ports at once, CONNECTIONS split evenly; one row
run() { # name ports...
    local name=$1
    shift
    local n=$# i=0
    local c=$((CONNECTIONS / n)) t=$((2 / n > 0 ? 2 / n : 1))
    # warm the pools and the caches
    for port in "$@"; do
        IDS="$WORK/ids" PATH_TEMPLATE=/customers/%s wrk -t1 -c"$c" -d3s -s bench/random_path.lua "http://127.0.0.1:$port" >/dev/null 2>&1
    done
    local load wrks=()
    load=$(cut -d' ' -f1 /proc/loadavg)
    for port in "$@"; do
        IDS="$WORK/ids" PATH_TEMPLATE=/customers/%s wrk -t"$t" -c"$c" -d"${DURATION}s" --latency \
            -s bench/random_path.lua "http://127.0.0.1:$port" >"$WORK/wrk.$i" 2>&1 &
        wrks+=($!)
        i=$((i + 1))
    done
    wait "${wrks[@]}"
    local total=0 rows=""
    for j in $(seq 0 $((n - 1))); do
        rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk.$j")
        p50=$(awk '$1 == "50%" {print $2}' "$WORK/wrk.$j")
        p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.$j")
        non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.$j")
        total=$(python3 -c "print(round($total + ${rps:-0}))")
        rows="$rows ${rps:-?} req/s (p50 ${p50:-?}, p99 ${p99:-?}, non-2xx ${non2xx:-0});"
    done
    echo "| $name | $total | ${rows# } | $load |"
}
echo "| API processes | req/s in all | per process | load average at start |"
echo "| --- | ---: | --- | ---: |"
run "one, on the primary" "$A"
run "two: primary + replica" "$A" "$B"
run "two, both on the primary" "$A" "$C"
run "one, on the replica" "$B"
echo "errors in the servers' log: $(grep -ci error "$WORK/serve.log" || true)"
