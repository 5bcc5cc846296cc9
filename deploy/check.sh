#!/usr/bin/env bash
# Packaging checks (run by .ci/run): the systemd unit's exposure, the compose file, and
# the files a packager looks for. A tool that is missing is said, not skipped quietly.
#
#   deploy/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
say() { printf '  %s\n' "$*"; }

# the license files and the build context's ignore list
for f in LICENSE-APACHE LICENSE-MIT .dockerignore; do
    [ -s "$f" ] && say "$f present" || { say "MISSING $f"; status=1; }
done
grep -q '^target/' .dockerignore || { say ".dockerignore does not leave out target/"; status=1; }

# systemd: an exposure of at most 3.0 (systemd-analyze counts in tenths: 30)
if command -v systemd-analyze >/dev/null 2>&1; then
    for unit in deploy/dvault-daemon.service deploy/dvault-stream.service; do
        if systemd-analyze security --offline=true --threshold=30 "$unit" >/tmp/dvault-unit.$$ 2>&1; then
            say "systemd unit $unit: $(grep 'Overall exposure' /tmp/dvault-unit.$$ | sed 's/^→ //')"
        else
            cat /tmp/dvault-unit.$$; say "systemd unit $unit: exposure above 3.0"; status=1
        fi
        rm -f /tmp/dvault-unit.$$
    done
else
    say "NOT CHECKED: systemd-analyze is not installed (apt-get install systemd)"
fi

# docker compose: the file is valid with .env.example and a secret in place
compose=""
if docker compose version >/dev/null 2>&1; then
    compose="docker compose"
elif command -v docker-compose >/dev/null 2>&1; then
    compose="docker-compose"
fi
if [ -n "$compose" ]; then
    dir=$(mktemp -d)
    cp docker-compose.yml "$dir/" && cp .env.example "$dir/.env"
    mkdir "$dir/secrets" && printf 'not-a-real-password\n' >"$dir/secrets/db_password"
    if (cd "$dir" && $compose config -q); then
        builds=$(cd "$dir" && $compose config | grep -c '^    build:' || true)
        [ "$builds" -eq 1 ] && say "compose: valid, one image built once" ||
            { say "compose: $builds services build an image (one should)"; status=1; }
        if (cd "$dir" && $compose config) | grep -q 'not-a-real-password'; then
            say "compose: the database password shows in the configuration"; status=1
        fi
    else
        say "compose: invalid"; status=1
    fi
    rm -rf "$dir"
else
    say "NOT CHECKED: docker compose is not installed (apt-get install docker-compose)"
fi
exit "$status"
