#!/usr/bin/env bash
# API conformance: schemathesis against the OpenAPI document of a running `dvault serve`
# on a loaded database. Zero 5xx, every answer matching the document.
#
#   tests/schemathesis.sh                 # private database on DATABASE_URL's server, or
#                                         # the private server under target/ when unset
#   ST_MAX_TIME=300 ST_MAX_EXAMPLES=200 tests/schemathesis.sh     # a longer run
#
# Builds the debug binary, makes a fresh database, loads a small generated data set
# (ingest + load), serves it with a write key on a free port, runs schemathesis
# (installed with pip when missing), stops the server and drops the database. Before
# schemathesis, the document is checked by openapi-spec-validator, and every example in
# it is asked of the server (tests/schemathesis/examples.py): each must answer 2xx.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_TIME=${ST_MAX_TIME:-60}
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-40}
SEED=${ST_SEED:-1}
log() { printf '\n== schemathesis: %s\n' "$*"; }

# schemathesis and openapi-spec-validator: on PATH, else in a virtualenv under target/
# (works where the system Python refuses pip installs), else pip --user
# pinned: a new schemathesis brings new checks and new generators, found on its own
# schedule; moving the pins is a change of its own, checked like one
TOOLS="schemathesis==4.32.5 hypothesis==6.170.17 openapi-spec-validator==0.9.0"
ST=$(command -v schemathesis || true)
OSV=$(command -v openapi-spec-validator || true)
VENV=target/st-venv
# a venv copied or moved with target/ from another checkout keeps that path in its
# scripts' first line, and they no longer start: build it again
if [ -d "$VENV" ] && ! "$VENV/bin/schemathesis" --version >/dev/null 2>&1; then
    log "rebuilding $VENV (its tools do not start here)"
    rm -rf "$VENV"
fi
if [ -z "$ST" ] || [ -z "$OSV" ]; then
    if [ ! -x "$VENV/bin/schemathesis" ] || [ ! -x "$VENV/bin/openapi-spec-validator" ]; then
        log "installing schemathesis and openapi-spec-validator"
        { { [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"; } &&
            "$VENV/bin/pip" install --quiet $TOOLS; } ||
            python3 -m pip install --quiet --user $TOOLS ||
            python3 -m pip install --quiet --user --break-system-packages $TOOLS || true
    fi
    if [ -x "$VENV/bin/schemathesis" ] && [ -x "$VENV/bin/openapi-spec-validator" ]; then
        ST=$VENV/bin/schemathesis
        OSV=$VENV/bin/openapi-spec-validator
    else
        ST=$(command -v schemathesis || echo "$HOME/.local/bin/schemathesis")
        OSV=$(command -v openapi-spec-validator || echo "$HOME/.local/bin/openapi-spec-validator")
    fi
fi
for tool in "$ST" "$OSV"; do
    if [ ! -x "$tool" ]; then
        echo "$tool could not be installed (python3 with venv or pip is needed)" >&2
        exit 2
    fi
done

log "building"
cargo build --quiet
BIN=target/debug/dvault
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dvault-st.XXXXXX")
SERVER_PID=""
DB="dvault_st_$$_$RANDOM"

PRIVATE=""
if [ -n "${DATABASE_URL:-}" ]; then
    ADMIN_URL="$DATABASE_URL"
else
    PRIVATE=target/schemathesis-pg
    ADMIN_URL=$("$BIN" local start --home "$PRIVATE" | sed 's#/[^/]*$#/postgres#')
fi
db_url() { printf '%s' "$ADMIN_URL" | sed -E "s#^(postgres(ql)?://[^/]*)/[^?]*#\1/$1#"; }
URL=$(db_url "$DB")

cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    [ -z "$PRIVATE" ] || "$BIN" local stop --home "$PRIVATE" >/dev/null 2>&1 || true
}
trap cleanup EXIT

log "database $DB"
psql "$ADMIN_URL" -qc "CREATE DATABASE $DB" >/dev/null
"$BIN" gen --out "$WORK/data" --customers 300 --products 100 --orders 1500 >/dev/null
DATABASE_URL="$URL" "$BIN" ingest "$WORK/data/events.ndjson" >/dev/null
DATABASE_URL="$URL" "$BIN" load >/dev/null

# a free port, then the server with a write key (so POST /events is exercised)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN="st-$RANDOM-$RANDOM"
DIGEST=$(printf %s "$TOKEN" | sha256sum | cut -c1-64)
DATABASE_URL="$URL" DVAULT_LOG=warn "$BIN" serve --listen "127.0.0.1:$PORT" \
    --api-key "write:$DIGEST" --request-timeout 10 >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
    sleep 0.1
done

status=0
# the document itself: a real validator (OpenAPI 3.1 and its JSON Schema dialect)
log "validating /openapi.json with openapi-spec-validator"
curl -fsS "http://127.0.0.1:$PORT/openapi.json" -o "$WORK/openapi.json"
"$OSV" "$WORK/openapi.json" || status=1
# every example in the document answers 2xx on this generated data (the demo's kind)
log "asking every example of the document"
python3 tests/schemathesis/examples.py "http://127.0.0.1:$PORT" "$TOKEN" || status=1

log "running (at most $MAX_EXAMPLES examples per operation, $MAX_TIME s)"
SCHEMATHESIS_HOOKS=tests/schemathesis/hooks.py "$ST" --config-file tests/schemathesis/schemathesis.toml run \
    "http://127.0.0.1:$PORT/openapi.json" \
    --checks all --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" \
    --seed "$SEED" --workers 2 --no-color --generation-database none \
    -H "Authorization: Bearer $TOKEN" || status=$?
if grep -q " 5[0-9][0-9] \|panicked" "$WORK/serve.log"; then
    log "server log has errors:"; grep " 5[0-9][0-9] \|panicked\|ERROR" "$WORK/serve.log" | head -20
    status=1
fi
[ "$status" -eq 0 ] && log "ok" || log "FAILED"
exit "$status"
