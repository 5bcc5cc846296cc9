#!/usr/bin/env bash
# A/B of `dvault ingest --bundle` of one CSV file for two or more binaries, alternating,
# a fresh database each run (created and dropped here; DATABASE_URL's server, default the
# local one). Prints wall, user and system seconds of each ingest.
#
#   ROUNDS=3 bench/ab_ingest.sh FILE.csv BIN_A BIN_B [BIN ...]
set -euo pipefail
file=${1:?usage: bench/ab_ingest.sh FILE.csv BIN_A BIN_B [BIN ...]}; shift
server=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
with_db() { python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$server" "$1"; }
for i in $(seq 1 "${ROUNDS:-3}"); do
  for bin in "$@"; do
    db=dvault_exp_ingest_$$_$i
    psql -X -q "$(with_db postgres)" -c "CREATE DATABASE $db"
    DATABASE_URL=$(with_db "$db") "$bin" migrate >/dev/null
    t=$( { DATABASE_URL=$(with_db "$db") /usr/bin/time -f "%e s wall, %U user, %S sys" \
           "$bin" ingest "$file" --type ab_ingest --source ab --bundle >/dev/null; } 2>&1 | tail -1)
    echo "$bin round $i: $t"
    psql -X -q "$(with_db postgres)" -c "DROP DATABASE $db"
  done
done
