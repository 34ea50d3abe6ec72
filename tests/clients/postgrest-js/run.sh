#!/usr/bin/env bash
# postgrest-js (@supabase/postgrest-js from npm) against tenancy-proxy.
# Creates a fresh database with pg_tenancy + the demo schema/data, starts the
# proxy on a free port, runs `node --test`, and cleans everything up.
# Env: TENANCY_TEST_URL (default postgresql://postgres@127.0.0.1:28815).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
SERVER_URL="${TENANCY_TEST_URL:-postgresql://postgres@127.0.0.1:28815}"
SERVER_URL="${SERVER_URL%/}"

# postgresql://user@host:port[/db] → host:port
rest="${SERVER_URL#*://}"
hostport="${rest##*@}"
hostport="${hostport%%/*}"
url_for() { echo "postgresql://$2@$hostport/$1"; }

SUFFIX="$$"
DB="tpjs_${SUFFIX}"
AUTH="tpjs_auth_${SUFFIX}"
ANON="tpjs_anon_${SUFFIX}"
SECRET="tpjs-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
ADMIN_URL="$(url_for postgres postgres)"
PROXY_PID=""
LOG="$(mktemp -t tpjs-proxy.XXXXXX.log)"

psql_admin() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$@"; }

cleanup() {
    if [[ -n "$PROXY_PID" ]] && kill -0 "$PROXY_PID" 2>/dev/null; then
        kill "$PROXY_PID" 2>/dev/null
        wait "$PROXY_PID" 2>/dev/null
    fi
    psql_admin "$ADMIN_URL" >/dev/null 2>&1 <<SQL
DROP DATABASE IF EXISTS $DB WITH (FORCE);
DROP ROLE IF EXISTS $AUTH;
DROP ROLE IF EXISTS $ANON;
SQL
    [[ "${KEEP_LOG:-}" == 1 ]] || rm -f "$LOG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "run.sh: $*" >&2; exit 2; }

echo "# database $DB on $hostport"
psql_admin "$ADMIN_URL" <<SQL || die "cannot create database/roles"
CREATE DATABASE $DB;
CREATE ROLE $AUTH LOGIN NOINHERIT;
CREATE ROLE $ANON NOLOGIN;
GRANT $ANON, tenancy_member, tenancy_viewer, tenancy_admin, tenancy_analyst TO $AUTH;
SQL
DB_URL="$(url_for "$DB" postgres)"
psql_admin "$DB_URL" -f "$ROOT/demo/schema.sql" >/dev/null || die "demo/schema.sql failed"
psql_admin "$DB_URL" -f "$ROOT/demo/data.sql" >/dev/null || die "demo/data.sql failed"
psql_admin "$DB_URL" -v anon="$ANON" -f "$HERE/setup.sql" >/dev/null || die "setup.sql failed"

echo "# building tenancy-proxy"
(cd "$ROOT" && cargo build --release -q -p tenancy-proxy) || die "cargo build failed"

PORT="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
PGRST_DB_URI="$(url_for "$DB" "$AUTH")" \
PGRST_DB_SCHEMAS="esg,tenancy" \
PGRST_DB_ANON_ROLE="$ANON" \
PGRST_JWT_SECRET="$SECRET" \
PGRST_SERVER_HOST=127.0.0.1 \
PGRST_SERVER_PORT="$PORT" \
PGRST_DB_POOL=4 \
PGRST_DB_PLAN_ENABLED=1 \
TENANCY_DEFAULT_RATE_LIMIT=0 \
TENANCY_ANON_RATE_LIMIT=0 \
TENANCY_PLAN_RATE_LIMITS="starter=0,pro=0,enterprise=0" \
    "$ROOT/target/release/tenancy-proxy" >"$LOG" 2>&1 &
PROXY_PID=$!
BASE="http://127.0.0.1:$PORT"

ready=""
for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$BASE/_tenancy/ready" 2>/dev/null; then ready=1; break; fi
    kill -0 "$PROXY_PID" 2>/dev/null || break
    sleep 0.1
done
[[ -n "$ready" ]] || { cat "$LOG" >&2; die "proxy not ready at $BASE"; }
echo "# proxy ready at $BASE"

cd "$HERE"
if [[ -f package-lock.json ]]; then
    npm ci --no-audit --no-fund --loglevel=error >/dev/null || die "npm ci failed"
else
    npm install --no-audit --no-fund --loglevel=error >/dev/null || die "npm install failed"
fi

OUT="$(mktemp -t tpjs-node.XXXXXX)"
TENANCY_PROXY_URL="$BASE" TENANCY_JWT_SECRET="$SECRET" \
    node --test --test-reporter=tap 2>&1 | tee "$OUT"
rc=${PIPESTATUS[0]}
pass="$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$OUT" | tail -1)"
fail="$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$OUT" | tail -1)"
rm -f "$OUT"
if [[ $rc -ne 0 ]]; then
    KEEP_LOG=1
    echo "# proxy log kept at $LOG"
fi
echo "${pass:-0} passed, ${fail:-0} failed"
exit "$rc"
