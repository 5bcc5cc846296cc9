#!/usr/bin/env bash
# Crash safety of the one pass (`dvault ingest --load` into an empty vault, issue 14):
# SIGKILL it at a random moment (during the ingest, the load beside it, or the index
# builds and the business vault build at the end), then run the same command again to
# completion, and check that nothing was lost or doubled: the log holds each event of
# the file once, the vault equals a rebuild from that log (every column of every
# table), and its row counts equal those of an uninterrupted run. Each round starts
# from a fresh database (a one pass needs an empty vault).
#
#   bench/crash_one_pass.sh                  # 20 kills on the demo-sized log (~0.3M events)
#   KILLS=3 bench/crash_one_pass.sh          # quick
#
# Uses DATABASE_URL's server (databases dvault_crash1p_ref and dvault_crash1p, dropped and
# created), else the private server.
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-20}; SIZE=${SIZE:-1}
cargo build --release --quiet
bin=target/release/dvault
work=${BENCH_DIR:-/tmp/dvault-bench}/crash-x$SIZE
if [ -n "${DATABASE_URL:-}" ]; then base=$DATABASE_URL; else base=$("$bin" local start); fi
with_db() { python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$base" "$1"; }
admin=$(with_db postgres)

[ -f "$work/events.ndjson" ] || "$bin" gen --out "$work" --seed 7 --end 2026-11-22 \
    --customers $((10000 * SIZE)) --products $((5000 * SIZE)) --orders $((40000 * SIZE)) >/dev/null

fresh() { # db
    psql -X -q "$admin" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
    DATABASE_URL=$(with_db "$1") "$bin" migrate >/dev/null
}
one_pass() { # db: the command under test
    DATABASE_URL=$(with_db "$1") "$bin" ingest --load "$work/events.ndjson"
}
counts() { # db: rows per vault table, and events in the log
    psql -X -At "$(with_db "$1")" <<'SQL'
SELECT string_agg(format('SELECT %L || '' '' || count(*) FROM %I.%I', schemaname || '.' || tablename, schemaname, tablename), ' UNION ALL ' ORDER BY schemaname, tablename)
  FROM pg_tables WHERE schemaname IN ('raw_vault', 'business_vault') \gexec
SELECT 'events ' || count(*) || ' distinct ' || count(DISTINCT (record_source, event_id)) FROM event_log.events;
SQL
}
checksums() { # db: every column of every vault table
    psql -X -At "$(with_db "$1")" <<'SQL'
SELECT string_agg(format('SELECT %L || '' '' || coalesce(md5(string_agg(t::text, E''\n'' ORDER BY t::text)), ''empty'') FROM %I.%I t', schemaname || '.' || tablename, schemaname, tablename), ' UNION ALL ' ORDER BY schemaname, tablename)
  FROM pg_tables WHERE schemaname IN ('raw_vault', 'business_vault') \gexec
SQL
}

fresh dvault_crash1p_ref
t0=$(date +%s.%N)
one_pass dvault_crash1p_ref > "$work/ref.out" 2>&1
t1=$(date +%s.%N)
grep -q "loaded in one pass" "$work/ref.out" || { cat "$work/ref.out"; echo "the one pass was not taken" >&2; exit 1; }
full=$(python3 -c "print($t1 - $t0)")
counts dvault_crash1p_ref | sort > "$work/ref.counts"
echo "uninterrupted one pass: $(printf '%.1f' "$full") s, $(tail -1 "$work/ref.counts")"

killed=0; finished=0
for i in $(seq 1 "$KILLS"); do
    fresh dvault_crash1p
    one_pass dvault_crash1p > "$work/run.out" 2>&1 &
    pid=$!
    sleep "$(python3 -c "import random; print(round(random.uniform(0.2, 1.1 * $full), 2))")"
    kill -9 "$pid" 2>/dev/null || true
    rc=0; wait "$pid" 2>/dev/null || rc=$?
    if [ "$rc" -eq 137 ]; then what="SIGKILL"; killed=$((killed + 1))
    else what="no kill: it had finished (exit $rc)"; finished=$((finished + 1)); fi
    stored=$(psql -X -At "$(with_db dvault_crash1p)" -c "SELECT count(*) FROM event_log.events")
    one_pass dvault_crash1p > "$work/again.out" 2>&1 || { cat "$work/again.out"; exit 1; }
    counts dvault_crash1p | sort > "$work/run.counts"
    checksums dvault_crash1p | sort > "$work/run.sums"
    DATABASE_URL=$(with_db dvault_crash1p) "$bin" rebuild >/dev/null
    checksums dvault_crash1p | sort > "$work/rebuilt.sums"
    if ! diff "$work/ref.counts" "$work/run.counts" >/dev/null; then
        echo "round $i ($what): COUNTS DIFFER from the uninterrupted run:"; diff "$work/ref.counts" "$work/run.counts" | head; exit 1
    fi
    if ! diff "$work/run.sums" "$work/rebuilt.sums" >/dev/null; then
        echo "round $i ($what): the vault DIFFERS from a rebuild of its log:"; diff "$work/run.sums" "$work/rebuilt.sums" | head; exit 1
    fi
    echo "round $i: $what with $stored events in the log; after the second run the vault equals a rebuild and the uninterrupted counts"
done
psql -X -q "$admin" -c "DROP DATABASE dvault_crash1p" -c "DROP DATABASE dvault_crash1p_ref"
echo "OK: $killed SIGKILLs of a one pass ($finished rounds had finished first); every vault equal to a rebuild of its log and to the uninterrupted run's counts"
