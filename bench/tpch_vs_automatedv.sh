#!/usr/bin/env bash
# TPC-H side by side (issue 14): AutomateDV on dbt-postgres, then dvault, on the same
# CSV files, the same day-2 delta and the same server, one after the other. Prints both
# times and the ratios dvault / AutomateDV, dvault's ingest rows/s (overall, per file),
# load events/s, the peak RSS of `dvault ingest` and `dvault load`, and a cross-check
# that both vaults hold the same hub keys, customer-order link keys and order hashdiffs.
#
#   bench/tpch_vs_automatedv.sh SF          # e.g. 0.01 (smoke), 0.3, 1, 3
#
# What is timed:
#   AutomateDV  ../shared/peers/automatedv/run.sh: day 1 = `\copy` of the raw CSV files +
#               VACUUM (ANALYZE) + `dbt run --full-refresh`; day 2 = `\copy` + ANALYZE of
#               the exported day-2 files into empty tables (timed here, after the harness
#               run: the harness builds its day-2 batch with SQL and does not land files)
#               + the incremental `dbt run`.
#   dvault      day 1 = `dvault ingest --bundle` of the six files + `dvault load` (with
#               FOLLOW=1 the load starts after the first file and runs beside the ingest
#               of the rest: "ingest" is then until the last file is in, "load" the rest
#               until the vault is loaded); day 2 =
#               the same with the day-2 files, in a fresh database dvault_tpch_bench
#               (INGEST_FLAGS: the ingest's flags, default --bundle; empty: a row per event).
# The day-2 delta is the peer's own batch (raw_day2.*: full customer and part snapshots,
# order and line item deltas, see the harness README), exported as CSV with tpchgen-cli's
# headers and fed to dvault as they are: the columns are tpchgen-cli's, and unchanged
# snapshot rows carry the same values as day 1, so dvault stores them as nothing new.
#
# Needs (not in this repository; see bench/README.md, "Side by side with AutomateDV"):
#   TPCHGEN      tpchgen-cli (default: $PEERS/venv/bin/tpchgen-cli, else on PATH)
#   DBT          dbt-core 1.10/1.11 with dbt-postgres (default $PEERS/venv/bin/dbt)
#   AUTOMATE_DV_PATH  automate-dv checkout at 0aa71153 (default $PEERS/automate-dv)
#   DBT_UTILS_PATH    dbt-utils checkout at 1.4.1     (default $PEERS/dbt-utils)
#   PEER_DIR     the harness (default ../shared/peers/automatedv)
#   PEERS        where the above live (default ../peers, beside this checkout)
#   psql, python3, /usr/bin/time (Debian package `time`), a release build of dvault
#   (DVAULT, default target/release/dvault; this script does not build it).
# Server: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres). Databases:
# peer_automatedv (PEER_DB; the harness drops and re-creates it) and dvault_tpch_bench,
# both created by this script and dropped at the end (KEEP_DBS=1 keeps them). A database
# of either name that this script did not create makes it stop instead.
# Data: target/tpch-bench/sf<SF> (TPCH_DATA): the CSV files (generated once), day2/ (the
# exported batch), peer/ (the harness's work folder and logs), logs of every dvault step.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

SF="${1:?usage: bench/tpch_vs_automatedv.sh SCALE_FACTOR (e.g. 0.01, 1)}"
PEERS="${PEERS:-$REPO/../peers}"
AUTOMATE_DV_PATH="${AUTOMATE_DV_PATH:-$PEERS/automate-dv}"
DBT_UTILS_PATH="${DBT_UTILS_PATH:-$PEERS/dbt-utils}"
DBT="${DBT:-$PEERS/venv/bin/dbt}"
PEER_DIR="${PEER_DIR:-$REPO/../shared/peers/automatedv}"
DVAULT="${DVAULT:-target/release/dvault}"
DATA="${TPCH_DATA:-target/tpch-bench/sf$SF}"
SERVER_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PEER_DB="${PEER_DB:-peer_automatedv}"
DV_DB=dvault_tpch_bench
# how dvault ingests the files: in bundles (docs/events.md, "Bundles"); INGEST_FLAGS=
# (empty) for one log row per event
INGEST_FLAGS="${INGEST_FLAGS---bundle}"
# the feeds the peer's day-2 batch sends whole (full snapshots): with bundles, ingested
# as snapshot feeds on both days (--snapshot: only rows that are not a row of the feed's
# last file are stored; docs/events.md, "Snapshot feeds"). SNAPSHOT_FEEDS= (empty):
# ingested like the deltas.
SNAPSHOT_FEEDS="${SNAPSHOT_FEEDS-customer part}"
MARK="created by bench/tpch_vs_automatedv.sh"
FILES="nation supplier part customer orders lineitem"   # dvault's ingest order
PEER_TABLES="customer orders lineitem part"             # what the peer loads

die() { echo "tpch_vs_automatedv.sh: $*" >&2; exit 2; }

# ---- prerequisites, with a clear error for each
if [ -z "${TPCHGEN:-}" ]; then
    if [ -x "$PEERS/venv/bin/tpchgen-cli" ]; then TPCHGEN="$PEERS/venv/bin/tpchgen-cli"
    else TPCHGEN=$(command -v tpchgen-cli || true); fi
fi
[ -n "$TPCHGEN" ] && [ -x "$TPCHGEN" ] || die "tpchgen-cli not found: pip install tpchgen-cli into $PEERS/venv (or set TPCHGEN)"
[ -x "$DBT" ] || die "dbt not found at $DBT: python3 -m venv $PEERS/venv && $PEERS/venv/bin/pip install 'dbt-core>=1.10,<1.12' dbt-postgres (or set DBT)"
[ -f "$AUTOMATE_DV_PATH/dbt_project.yml" ] || die "no automate-dv checkout at $AUTOMATE_DV_PATH (commit 0aa71153; set AUTOMATE_DV_PATH)"
[ -f "$DBT_UTILS_PATH/dbt_project.yml" ] || die "no dbt-utils checkout at $DBT_UTILS_PATH (tag 1.4.1; set DBT_UTILS_PATH)"
[ -x "$PEER_DIR/run.sh" ] || die "no AutomateDV harness at $PEER_DIR (set PEER_DIR)"
[ -x "$DVAULT" ] || die "no dvault binary at $DVAULT: cargo build --release (or set DVAULT)"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing: apt-get install time"
command -v psql >/dev/null || die "psql is missing"
DVAULT=$(cd "$(dirname "$DVAULT")" && pwd)/$(basename "$DVAULT")
PEER_DIR=$(cd "$PEER_DIR" && pwd)
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)

# URL of a database on the same server; the libpq variables the harness reads
with_db() { python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$SERVER_URL" "$1"; }
url_part() { python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.unquote(str(getattr(p, sys.argv[2]) or sys.argv[3])))' "$SERVER_URL" "$1" "$2"; }
ADMIN=$(with_db postgres)
PEER_URL=$(with_db "$PEER_DB")
DV_URL=$(with_db "$DV_DB")
PSQL=(psql -X -q -v ON_ERROR_STOP=1)
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

# ---- databases: ours only. Each one this script creates carries a comment saying so
# (KEEP_DBS=1 leaves them for inspection; the next run drops them).
case "$PEER_DB" in postgres|template0|template1|"$DV_DB") die "refusing to use database $PEER_DB" ;; esac
db_state() { # name -> absent | ours | foreign
    psql -X -At "$ADMIN" -v ON_ERROR_STOP=1 -c "SELECT CASE WHEN shobj_description(oid, 'pg_database') = '$MARK' THEN 'ours' ELSE 'foreign' END FROM pg_database WHERE datname = '$1'" \
        | grep . || echo absent
}
mark_db() { "${PSQL[@]}" "$ADMIN" -c "COMMENT ON DATABASE \"$1\" IS '$MARK'"; }
drop_db() { "${PSQL[@]}" "$ADMIN" -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)"; }
for db in "$PEER_DB" "$DV_DB"; do
    case "$(db_state "$db")" in
        foreign) die "database $db exists and was not created by this script; drop it yourself if it is disposable" ;;
        ours) drop_db "$db" ;;
    esac
done
CREATED=()   # dropped on exit, also when a step fails
cleanup() { [ -n "${KEEP_DBS:-}" ] || for db in "${CREATED[@]}"; do drop_db "$db" || true; done; }
trap cleanup EXIT

# ---- the CSV files, once
if [ ! -f "$DATA/lineitem.csv" ]; then
    echo "== generating TPC-H SF$SF CSV files in $DATA"
    "$TPCHGEN" csv -s "$SF" -o "$DATA" --tables customer,orders,lineitem,part,supplier,nation
fi
rows() { echo $(( $(wc -l < "$1") - 1 )); }   # TPC-H fields hold no line breaks
day1_rows=0; for t in $FILES; do day1_rows=$((day1_rows + $(rows "$DATA/$t.csv"))); done
echo "== SF$SF: $day1_rows rows in $FILES; dvault ingest flags: ${INGEST_FLAGS:-(none)} (snapshot feeds: ${SNAPSHOT_FEEDS:-none}); server $(psql -X -At "$ADMIN" -c 'SHOW server_version'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 1. AutomateDV
echo "== AutomateDV ($PEER_DIR/run.sh, database $PEER_DB)"
rm -rf "$DATA/peer" && mkdir -p "$DATA/peer"
# Claim the name (the harness drops and re-creates it; marked again after it ran).
"${PSQL[@]}" "$ADMIN" -c "CREATE DATABASE \"$PEER_DB\"" && CREATED+=("$PEER_DB") && mark_db "$PEER_DB"
( export AUTOMATE_DV_PATH DBT_UTILS_PATH DBT TPCH_DIR="$DATA" PGDATABASE="$PEER_DB" \
         PGHOST="$(url_part hostname 127.0.0.1)" PGPORT="$(url_part port 5432)" \
         PGUSER="$(url_part username postgres)" \
         WORK="$DATA/peer/work" RESULTS_DIR="$DATA/peer/results"
  pw=$(url_part password "") && [ -z "$pw" ] || export PGPASSWORD="$pw"
  "$PEER_DIR/run.sh" ) > "$DATA/peer/run.log" 2>&1 || { tail -40 "$DATA/peer/run.log"; die "the AutomateDV run failed (log: $DATA/peer/run.log)"; }
mark_db "$PEER_DB"
peer() { grep -oP "^$1=\K[0-9.]+" "$DATA/peer/results/summary.txt"; }
p_copy=$(peer raw_copy_s); p_analyze=$(peer raw_vacuum_analyze_s)
p_dbt1=$(peer day1_dbt_run_s); p_dbt2=$(peer day2_dbt_run_s)
echo "   day 1: copy $p_copy s, vacuum analyze $p_analyze s, dbt run $p_dbt1 s; day 2: dbt run $p_dbt2 s"

# The peer's day-2 batch as CSV (tpchgen-cli's header and column order: the raw tables
# are LIKE raw_day1.*, whose columns are tpchgen-cli's).
D2="$DATA/day2"
rm -rf "$D2" && mkdir -p "$D2"
for t in $PEER_TABLES; do
    "${PSQL[@]}" "$PEER_URL" -c "\\copy raw_day2.$t TO '$D2/$t.csv' WITH (FORMAT csv, HEADER true)"
    [ "$(head -1 "$D2/$t.csv")" = "$(head -1 "$DATA/$t.csv")" ] || die "header of the exported $t.csv differs from tpchgen-cli's"
done
day2_rows=0; for t in $PEER_TABLES; do day2_rows=$((day2_rows + $(rows "$D2/$t.csv"))); done
# The peer's landing of those files (its harness builds raw_day2 with SQL instead): the
# same `\copy` + ANALYZE as its day 1, into empty tables beside the harness's.
"${PSQL[@]}" "$PEER_URL" -c "CREATE SCHEMA bench_day2_landing"
for t in $PEER_TABLES; do "${PSQL[@]}" "$PEER_URL" -c "CREATE TABLE bench_day2_landing.$t (LIKE raw_day1.$t)"; done
t0=$(now)
for t in $PEER_TABLES; do
    "${PSQL[@]}" "$PEER_URL" -c "\\copy bench_day2_landing.$t FROM '$D2/$t.csv' WITH (FORMAT csv, HEADER true)"
done
"${PSQL[@]}" "$PEER_URL" -c "ANALYZE bench_day2_landing.customer, bench_day2_landing.orders, bench_day2_landing.lineitem, bench_day2_landing.part"
t1=$(now); p_land2=$(secs "$t0" "$t1")
echo "   day-2 batch: $day2_rows rows exported to $D2, landing (\\copy + ANALYZE) $p_land2 s"

# ---- 2. dvault
echo "== dvault ($DVAULT, database $DV_DB)"
"${PSQL[@]}" "$ADMIN" -c "CREATE DATABASE $DV_DB" && CREATED+=("$DV_DB") && mark_db "$DV_DB"
export DATABASE_URL="$DV_URL" DVAULT_MAPPINGS="$REPO/examples/tpch/mappings"
"$DVAULT" migrate >/dev/null
"${PSQL[@]}" "$DV_URL" -f examples/tpch/schema.sql -f examples/tpch/views.sql
LOGS="$DATA/dvault"; rm -rf "$LOGS" && mkdir -p "$LOGS"
num() { grep -oP "$1" "$2" | head -1 | tr -d , || true; }   # a number from a log line
rss_mb() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$1"; }
declare -A T0 T1 I_S I_ROWS I_NEW I_DUP I_UNCH I_RSS
ingest() { # day dir file; only the run itself is timed, its figures are read afterwards
    local log="$LOGS/$1.ingest.$3" flags=$INGEST_FLAGS
    case " $SNAPSHOT_FEEDS " in *" $3 "*) [[ " $INGEST_FLAGS " == *" --bundle "* ]] && flags+=" --snapshot" ;; esac
    T0[$1.$3]=$(now)
    # shellcheck disable=SC2086 # flags: words
    /usr/bin/time -v -o "$log.time" "$DVAULT" ingest "$2/$3.csv" --type "tpch_$3" --source tpch --batch-size 50000 $flags > "$log" 2>&1 \
        || { cat "$log"; die "dvault ingest $2/$3.csv failed"; }
    T1[$1.$3]=$(now)
}
ingest_figures() { # day dir file
    local log="$LOGS/$1.ingest.$3"
    ! grep -q rejected "$log" || { cat "$log"; die "dvault rejected rows of $3.csv"; }
    I_S[$1.$3]=$(secs "${T0[$1.$3]}" "${T1[$1.$3]}"); I_ROWS[$1.$3]=$(rows "$2/$3.csv"); I_RSS[$1.$3]=$(rss_mb "$log.time")
    I_NEW[$1.$3]=$(num 'ingested \K[0-9,]+' "$log"); I_DUP[$1.$3]=$(num '\K[0-9,]+(?= already in the log)' "$log")
    I_UNCH[$1.$3]=$(num '\K[0-9,]+(?= unchanged since)' "$log")
}
# `dvault load` takes only events written by transactions older than every transaction
# still running on the server (src/events/mod.rs, READ_AFTER), so on a shared server a
# load started right after the ingest may find nothing yet. Wait (untimed) until no
# transaction that began before the ingest finished is still running anywhere.
W_WAIT=()
wait_for_horizon() {
    local x start=$(now) i=0
    x=$(psql -X -At -v ON_ERROR_STOP=1 "$DV_URL" -c "SELECT pg_current_xact_id()")
    until [ "$(psql -X -At -v ON_ERROR_STOP=1 "$DV_URL" -c "SELECT pg_snapshot_xmin(pg_current_snapshot()) > '$x'::xid8")" = t ]; do
        i=$((i + 1)); [ "$i" -le 3000 ] || die "a transaction older than the ingest has kept running for 10 minutes on the server; dvault load would not see the events"
        sleep 0.2
    done
    W_WAIT+=("$(secs "$start" "$(now)")")
}
load() { # day
    local log="$LOGS/$1.load"
    # BATCH: events per batch; default the loader's own (50,000): 100,000 loaded SF1 as
    # fast and held 200 MB more (bench/README.md, 2026-12-05)
    /usr/bin/time -v -o "$log.time" "$DVAULT" load ${BATCH:+--batch-size "$BATCH"} > "$log" 2>&1 \
        || { cat "$log"; die "dvault load ($1) failed"; }
}

t0=$(now)
if [ "${FOLLOW:-}" = 1 ]; then
    # day 1's load beside the ingest (docs/operations.md, "Beside the ingest of its
    # files"): the first file in, then `dvault load` started while the rest go in,
    # a first load that follows them to the last. Each file is its own `dvault ingest`
    # (for its figures), so a psql session holds the ingest lock over all six, as one
    # `dvault ingest` of the six files would (src/events/ingest.rs, INGEST_LOCK).
    coproc HOLD { psql -X -q -A -t -v ON_ERROR_STOP=1 "$DV_URL"; }
    echo "SELECT 'held' FROM (SELECT pg_advisory_lock_shared(7239080608003260420)) l;" >&"${HOLD[1]}"
    read -r held <&"${HOLD[0]}"; [ "$held" = held ] || die "could not hold the ingest lock"
    first=${FILES%% *}
    ingest day1 "$DATA" "$first"
    wait_for_horizon
    load day1 & LOAD_PID=$!
    for t in ${FILES#* }; do ingest day1 "$DATA" "$t"; done
    t1=$(now)
    eval "exec ${HOLD[1]}>&-"; wait "$HOLD_PID" || true
    wait "$LOAD_PID" || die "dvault load (day1) failed"
else
    for t in $FILES; do ingest day1 "$DATA" "$t"; done
    t1=$(now)
    wait_for_horizon
    t1=$(now)
    load day1
fi
t2=$(now)
for t in $PEER_TABLES; do ingest day2 "$D2" "$t"; done
t3=$(now)
wait_for_horizon
t3=$(now)
load day2
t4=$(now)
for t in $FILES; do ingest_figures day1 "$DATA" "$t"; done
for t in $PEER_TABLES; do ingest_figures day2 "$D2" "$t"; done
d_ing1=$(secs "$t0" "$t1"); d_load1=$(secs "$t1" "$t2"); d_ing2=$(secs "$t2" "$t3"); d_load2=$(secs "$t3" "$t4")
d_ev1=$(num 'loaded \K[0-9,]+' "$LOGS/day1.load"); d_ev2=$(num 'loaded \K[0-9,]+' "$LOGS/day2.load")
echo "   day 1: ingest $d_ing1 s, load $d_load1 s (${d_ev1:-0} events); day 2: ingest $d_ing2 s, load $d_load2 s (${d_ev2:-0} events)"
echo "   untimed waits for older transactions on the server before each load: ${W_WAIT[*]} s"
d1_new=0; for t in $FILES; do d1_new=$((d1_new + ${I_NEW[day1.$t]:-0})); done
d2_new=0; for t in $PEER_TABLES; do d2_new=$((d2_new + ${I_NEW[day2.$t]:-0})); done
[ "${d_ev1:-0}" = "$d1_new" ] && [ "${d_ev2:-0}" = "$d2_new" ] \
    || die "dvault load took ${d_ev1:-0} + ${d_ev2:-0} events of $d1_new + $d2_new ingested (logs: $LOGS)"

# ---- 3. the two vaults hold the same keys (sets of hex strings, compared by digest)
echo "== cross-check: the same keys in both vaults"
digest() { # url query -> "rows md5"
    psql -X -At -v ON_ERROR_STOP=1 "$1" -c "SELECT count(*) || ' ' || md5(coalesce(string_agg(k, ',' ORDER BY k), '')) FROM (SELECT DISTINCT $2) AS s(k)"
}
xcheck_ok=yes
while IFS=';' read -r what pq dq; do
    a=$(digest "$PEER_URL" "$pq"); b=$(digest "$DV_URL" "$dq")
    if [ "$a" = "$b" ]; then printf '   %-34s %10s identical\n' "$what" "${a%% *}"
    else printf '   %-34s DIFFER: AutomateDV %s, dvault %s\n' "$what" "${a%% *}" "${b%% *}"; xcheck_ok=no; fi
done <<'CHECKS'
hub_customer keys;encode(customer_hk, 'hex') FROM vault.hub_customer;encode(hk_customer, 'hex') FROM tpch_vault.hub_customer
hub_order keys;encode(order_hk, 'hex') FROM vault.hub_order;encode(hk_order, 'hex') FROM tpch_vault.hub_order
hub_part keys;encode(part_hk, 'hex') FROM vault.hub_part;encode(hk_part, 'hex') FROM tpch_vault.hub_part
link_customer_order keys;encode(customer_order_hk, 'hex') FROM vault.link_customer_order;encode(hk_customer_order, 'hex') FROM tpch_vault.link_customer_order
order (key, hashdiff) pairs;encode(order_hk || order_hashdiff, 'hex') FROM vault.sat_order_details;encode(hk_order || hashdiff, 'hex') FROM tpch_vault.sat_order
CHECKS

# ---- 4. the table
r() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}' if b else '-')" "$1" "$2"; }
add() { python3 -c "import sys; print(f'{sum(map(float, sys.argv[1:])):.2f}')" "$@"; }
n() { python3 -c "import sys; print(f'{int(sys.argv[1] or 0):,}')" "${1:-0}"; }   # 1234567 -> 1,234,567
rate() { python3 -c "import sys; a, b = float(sys.argv[1] or 0), float(sys.argv[2]); print(f'{a / b:,.0f}' if b else '-')" "$1" "$2"; }
p_raw1=$(add "$p_copy" "$p_analyze"); p_day1=$(add "$p_raw1" "$p_dbt1"); p_day2=$(add "$p_land2" "$p_dbt2")
d_day1=$(add "$d_ing1" "$d_load1"); d_day2=$(add "$d_ing2" "$d_load2")
ing_rss=0; for k in "${!I_RSS[@]}"; do [ "${I_RSS[$k]}" -gt "$ing_rss" ] && ing_rss=${I_RSS[$k]}; done

cat <<TABLE

TPC-H SF$SF, $(date -u +%Y-%m-%d), $(nproc) cores, PostgreSQL $(psql -X -At "$ADMIN" -c 'SHOW server_version') (shared_buffers $(psql -X -At "$ADMIN" -c 'SHOW shared_buffers'), max_wal_size $(psql -X -At "$ADMIN" -c 'SHOW max_wal_size')), dvault $(git -C "$REPO" rev-parse --short HEAD), AutomateDV $(awk '/^version:/ {print $2}' "$AUTOMATE_DV_PATH/dbt_project.yml") on dbt $("$DBT" --version 2>/dev/null | awk '/installed:/ {print $3; exit}')
day 1: $day1_rows rows in six files (AutomateDV loads four of them: no supplier, nation); day 2: the peer's batch, $day2_rows rows in four files, $d2_new of them new to dvault's log

| SF$SF | AutomateDV | dvault | dvault / AutomateDV |
| --- | ---: | ---: | ---: |
| day 1: raw files into the database | $p_raw1 s (\`\\copy\` $p_copy + VACUUM ANALYZE $p_analyze) | $d_ing1 s (\`dvault ingest\`) | $(r "$d_ing1" "$p_raw1") |
| day 1: into the vault | $p_dbt1 s (\`dbt run\`) | $d_load1 s (\`dvault load\`) | $(r "$d_load1" "$p_dbt1") |
| **day 1, CSV files to loaded vault** | **$p_day1 s** | **$d_day1 s** | **$(r "$d_day1" "$p_day1")** |
| day 2: raw files into the database | $p_land2 s (\`\\copy\` + ANALYZE) | $d_ing2 s | $(r "$d_ing2" "$p_land2") |
| day 2: into the vault | $p_dbt2 s (\`dbt run\`) | $d_load2 s | $(r "$d_load2" "$p_dbt2") |
| **day 2, delta files to loaded vault** | **$p_day2 s** | **$d_day2 s** | **$(r "$d_day2" "$p_day2")** |

dvault rates and memory:

| | rows | stored | seconds | rows/s | peak RSS MB |
| --- | ---: | ---: | ---: | ---: | ---: |
TABLE
for t in $FILES; do
    printf '| day 1 ingest %s | %s | %s | %s | %s | %s |\n' "$t" "$(n "${I_ROWS[day1.$t]}")" "$(n "${I_NEW[day1.$t]}")" "${I_S[day1.$t]}" "$(rate "${I_ROWS[day1.$t]}" "${I_S[day1.$t]}")" "${I_RSS[day1.$t]}"
done
printf '| **day 1 ingest, all files** | %s | | %s | **%s** | %s |\n' "$(n "$day1_rows")" "$d_ing1" "$(rate "$day1_rows" "$d_ing1")" "$ing_rss"
printf '| **day 1 load** | %s events | | %s | **%s events/s** | %s |\n' "$(n "$d_ev1")" "$d_load1" "$(rate "$d_ev1" "$d_load1")" "$(rss_mb "$LOGS/day1.load.time")"
for t in $PEER_TABLES; do
    printf '| day 2 ingest %s | %s | %s (%s already in the log, %s unchanged since the last snapshot) | %s | %s | %s |\n' "$t" "$(n "${I_ROWS[day2.$t]}")" "$(n "${I_NEW[day2.$t]}")" "$(n "${I_DUP[day2.$t]}")" "$(n "${I_UNCH[day2.$t]}")" "${I_S[day2.$t]}" "$(rate "${I_ROWS[day2.$t]}" "${I_S[day2.$t]}")" "${I_RSS[day2.$t]}"
done
printf '| day 2 load | %s events | | %s | %s events/s | %s |\n' "$(n "${d_ev2:-0}")" "$d_load2" "$(rate "${d_ev2:-0}" "$d_load2")" "$(rss_mb "$LOGS/day2.load.time")"
echo
echo "lineitem / orders ingest rate: $(r "$(rate "${I_ROWS[day1.lineitem]}" "${I_S[day1.lineitem]}" | tr -d ,)" "$(rate "${I_ROWS[day1.orders]}" "${I_S[day1.orders]}" | tr -d ,)")"
echo "day 2 as the issue measured it (AutomateDV's dbt run only, no landing): dvault / AutomateDV = $(r "$d_day2" "$p_dbt2")"
echo "cross-check of keys and order hashdiffs: $([ "$xcheck_ok" = yes ] && echo identical || echo DIFFERENT)"
[ "$xcheck_ok" = yes ] || exit 1
