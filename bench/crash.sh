#!/usr/bin/env bash
# Crash safety: load a generated log, remember every vault table's checksum, then
# rebuild the vault from the same log while killing the loader with SIGKILL at random
# moments (and, with RESTART=1, restarting PostgreSQL mid-load with a fast shutdown),
# restarting it each time; at the end every table must equal the uninterrupted load.
#
#   bench/crash.sh                      # 20 kills on the 3x log (~0.9M events)
#   KILLS=3 SIZE=1 bench/crash.sh       # quick
#   RESTART=3 bench/crash.sh            # also 3 server restarts (fast shutdown)
#   BUNDLE=1 bench/crash.sh             # the flat files in bundles (ingest --bundle), the
#                                       # ingest of the largest one killed 3 times first
#                                       # (and, on the private server, the server crashed
#                                       # under it once)
#   KEY_MEMORY=100000 bench/crash.sh    # rebuilds remember at most 100,000 keys: tables are
#                                       # forgotten, and some bulk runs start over
#
# The interrupted runs load in batches of BATCH events (default 10,000, the reference
# load uses the default 50,000): the vault must not depend on how the log was cut.
#
# Run it under `flock -o LOCKFILE`, not `flock LOCKFILE`: a server restarted by this
# script would inherit the lock's descriptor and hold the lock until it stops.
#
# Uses DATABASE_URL's server (database dvault_crash, dropped and created), else the
# private server. Restarts need the private server or a local pg_ctlcluster cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-20}; SIZE=${SIZE:-3}; RESTART=${RESTART:-0}; BATCH=${BATCH:-10000}; BUNDLE=${BUNDLE:-0}
if [ -n "${KEY_MEMORY:-}" ]; then export DVAULT_LOAD_KEY_MEMORY=$KEY_MEMORY; fi
cargo build --release --quiet
bin=target/release/dvault
work=${BENCH_DIR:-/tmp/dvault-bench}/crash-x$SIZE
if [ -n "${DATABASE_URL:-}" ]; then base=$DATABASE_URL; private=0; else base=$("$bin" local start); private=1; fi
with_db() { python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$base" "$1"; }
admin=$(with_db postgres)
export DATABASE_URL=$(with_db dvault_crash)

[ -f "$work/events.ndjson" ] || "$bin" gen --out "$work" --seed 7 --end 2026-11-22 \
    --customers $((10000 * SIZE)) --products $((5000 * SIZE)) --orders $((40000 * SIZE)) >/dev/null
psql -X -q "$admin" -c "DROP DATABASE IF EXISTS dvault_crash" -c "CREATE DATABASE dvault_crash"
"$bin" migrate >/dev/null
# the flat files: customers, products (business time: the first day), order lines
flat() { # ingest FILE [FLAGS...]
    local f=$1; shift
    case $f in
        customers) "$bin" ingest "$work/$f.csv" --type customer_registered --source crm --time-field signup_date "$@" ;;
        products) "$bin" ingest "$work/$f.csv" --type product_listed --source catalog --time 2025-11-01 "$@" ;;
        transactions) "$bin" ingest "$work/$f.csv" --type order_line_recorded --source pos --time-field transaction_date "$@" ;;
    esac
}
# the bundles of the log, by content: each once, whatever the seqs killed runs burnt
bundles() { psql -X -At "$DATABASE_URL" -c "SELECT md5(string_agg(event_id || ':' || bundle_size, ',' ORDER BY event_id)) || ' ' || sum(bundle_size) FROM event_log.events"; }
log_rows() { psql -X -At "$DATABASE_URL" -c "SELECT count(*) FROM event_log.events"; }
# wait until the ingest PID has stored a bundle more than the log held before it (the
# file takes well under a second: a fixed pause would find it finished), or has ended;
# then a random moment more
mid_ingest() { # pid rows-before
    while kill -0 "$1" 2>/dev/null && [ "$(log_rows)" -le "$2" ]; do sleep 0.005; done
    sleep "$(python3 -c "import random; print(round(random.uniform(0, 0.05), 3))")"
}
if [ "$BUNDLE" = 1 ]; then
    # the reference log: the files ingested without interruption
    for f in customers products transactions; do flat $f --bundle >/dev/null; done
    reference_log=$(bundles)
    psql -X -q "$admin" -c "DROP DATABASE dvault_crash" -c "CREATE DATABASE dvault_crash"
    "$bin" migrate >/dev/null
    for f in customers products; do flat $f --bundle >/dev/null; done
    crashes=0
    if [ "$private" = 1 ]; then
        # the server crashes mid-ingest (SIGQUIT to the postmaster: an immediate stop,
        # no checkpoint): the batches' commits that were not on disk yet are lost
        # (they do not wait for it: docs/events.md), and the same ingest stores them again
        data=$(psql -X -At "$admin" -c "SHOW data_directory")
        before=$(log_rows)
        flat transactions --bundle >/dev/null 2>&1 & pid=$!
        mid_ingest "$pid" "$before"
        pm=$(head -1 "$data/postmaster.pid"); kill -QUIT "$pm"
        while kill -0 "$pm" 2>/dev/null; do sleep 0.1; done
        rc=0; wait "$pid" 2>/dev/null || rc=$?
        "$bin" local start >/dev/null
        crashes=1
        echo "server crashed mid-ingest (the ingest exited with $rc): $(psql -X -At "$DATABASE_URL" -c "SELECT count(*) || ' bundles, ' || coalesce(sum(bundle_size), 0) || ' events'  FROM event_log.events") after recovery"
    fi
    for k in 1 2 3; do # kill the largest file's ingest mid-run, then run it again
        before=$(log_rows)
        flat transactions --bundle >/dev/null 2>&1 & pid=$!
        mid_ingest "$pid" "$before"
        kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
        echo "ingest $k killed: $(psql -X -At "$DATABASE_URL" -c "SELECT count(*) || ' bundles, ' || coalesce(sum(bundle_size), 0) || ' events'  FROM event_log.events")"
    done
    flat transactions --bundle >/dev/null
    [ "$(bundles)" = "$reference_log" ] || { echo "MISMATCH: the interrupted ingests left another log than one uninterrupted ingest: $(bundles) against $reference_log"; exit 1; }
    echo "the log after 3 killed ingests and $crashes server crash(es) mid-ingest holds exactly the bundles of one uninterrupted ingest"
else
    "$bin" ingest "$work/events.ndjson" >/dev/null
fi
events=$(psql -X -At "$DATABASE_URL" -c "SELECT coalesce(sum(bundle_size), count(*)) FROM event_log.events")

checksums() {
    psql -X -At "$DATABASE_URL" <<'SQL'
SELECT string_agg(format('SELECT %L || '' '' || coalesce(md5(string_agg(t::text, E''\n'' ORDER BY t::text)), ''empty'') FROM %I.%I t', schemaname || '.' || tablename, schemaname, tablename), ' UNION ALL ' ORDER BY schemaname, tablename)
  FROM pg_tables WHERE schemaname IN ('raw_vault', 'business_vault') \gexec
SQL
}

t0=$(date +%s.%N)
"$bin" load >/dev/null
t1=$(date +%s.%N)
full=$(python3 -c "print($t1 - $t0)")
checksums | sort > "$work/reference.txt"
echo "uninterrupted load of $events events: $(printf '%.1f' "$full") s, $(wc -l < "$work/reference.txt") tables"

restart_server() {
    if [ "$private" = 1 ]; then "$bin" local stop >/dev/null; "$bin" local start >/dev/null
    else
        port=$(python3 -c 'import sys,urllib.parse as u; print(u.urlsplit(sys.argv[1]).port or 5432)' "$base")
        cluster=$(pg_lsclusters --no-header | awk -v p="$port" '$3 == p {print $1" "$2; exit}')
        pg_ctlcluster --skip-systemctl-redirect $cluster restart -m fast
    fi
}

checkpoint() { psql -X -At "$DATABASE_URL" -c "SELECT coalesce((SELECT seq FROM ops.checkpoints WHERE consumer = 'vault_loader'), 0)"; }
last=$(checkpoint)
cmd=rebuild   # the first run empties the vault and replays; the later ones continue
runs=$((KILLS + RESTART)); killed=0; finished=0; restarts=0
for i in $(seq 1 "$runs"); do
    # the first quarter may take the bulk path (one transaction, indexes built at the
    # end: kills during the builds), the rest go batch by batch (kills between commits)
    flags=""; [ "$i" -gt $((KILLS / 4)) ] && flags="--no-bulk"
    "$bin" $cmd --batch-size "$BATCH" $flags >/dev/null 2>&1 &
    pid=$!
    if [ "$i" = 1 ]; then # the rebuild's reset must have committed, or nothing is tested
        until [ "$(checkpoint)" -lt "$last" ]; do
            kill -0 "$pid" 2>/dev/null || { echo "the rebuild exited before its reset" >&2; exit 1; }
            sleep 0.05
        done
    fi
    # spread the interruptions over the whole load: on average full/runs seconds each
    # (batch by batch is slower than the bulk reference: up to 3 s, so batches commit
    # between kills)
    most=$(python3 -c "print(max(0.6, 2 * $full / $runs) if '$flags' == '' else 3.0)")
    sleep "$(python3 -c "import random; print(round(random.uniform(0.3, $most), 2))")"
    if [ "$i" -gt "$KILLS" ]; then
        restart_server
        rc=0; wait "$pid" 2>/dev/null || rc=$?
        if [ "$rc" -ne 0 ]; then what="server restarted (fast shutdown), the load failed (exit $rc)"; restarts=$((restarts + 1))
        else what="no restart mid-load: the load had finished"; finished=$((finished + 1)); fi
    else
        kill -9 "$pid" 2>/dev/null || true
        # a process that had already exited is a zombie that takes the signal too:
        # only an exit status of 128 + 9 means the kill cut a running load
        rc=0; wait "$pid" 2>/dev/null || rc=$?
        if [ "$rc" -eq 137 ]; then what="SIGKILL"; killed=$((killed + 1))
        else what="no kill: the load had finished (exit $rc)"; finished=$((finished + 1)); fi
    fi
    cmd=load
    echo "run $i: $what; the checkpoint is at seq $(checkpoint) of $last"
done
"$bin" load --batch-size "$BATCH" >/dev/null
checksums | sort > "$work/after.txt"
if diff "$work/reference.txt" "$work/after.txt" >/dev/null; then
    echo "OK: $killed SIGKILLs and $restarts server restarts mid-load ($finished runs had finished before their interruption); all $(wc -l < "$work/after.txt") vault tables equal the uninterrupted load"
else
    echo "MISMATCH:"; diff "$work/reference.txt" "$work/after.txt" | head -20; exit 1
fi
