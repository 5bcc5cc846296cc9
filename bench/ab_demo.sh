#!/usr/bin/env bash
# A/B of `dvault demo --no-serve` for two binaries, alternating, fresh database each run.
set -euo pipefail
for i in 1 2; do
  for bin in "$@"; do
    db=dvault_exp_ab_$$_${i}_$(basename $bin | tr -c 'a-z0-9\n' _)
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
    start=$(date +%s.%N)
    out=$(DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db $bin demo --no-serve 2>&1 | grep -E "Ingested|Generated")
    end=$(date +%s.%N)
    echo "$bin run $i: total $(echo "$end - $start" | bc) s | $(echo "$out" | tr '\n' ' ')"
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $db"
  done
done
