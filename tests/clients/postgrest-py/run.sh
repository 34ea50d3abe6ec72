#!/usr/bin/env bash
# postgrest-py (the `postgrest` package from PyPI, used by supabase-py) against
# tenancy-proxy. Creates a fresh database with pg_tenancy + the demo
# schema/data + the postgrest-js suite's setup.sql + extra.sql (the objects
# only this suite uses), starts the proxy on a free port, runs pytest in a
# virtualenv under target/clients (pinned requirements.txt), and cleans up.
# Env: TENANCY_TEST_URL (default postgresql://postgres@127.0.0.1:28815);
#      PYTEST_ARGS (extra pytest arguments, e.g. "-k rpc -x").
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
SETUP_SQL="$HERE/../postgrest-js/setup.sql"
VENV="$ROOT/target/clients/postgrest-py-venv"
SERVER_URL="${TENANCY_TEST_URL:-postgresql://postgres@127.0.0.1:28815}"
SERVER_URL="${SERVER_URL%/}"

# postgresql://user@host:port[/db] → host:port
rest="${SERVER_URL#*://}"
hostport="${rest##*@}"
hostport="${hostport%%/*}"
url_for() { echo "postgresql://$2@$hostport/$1"; }

SUFFIX="$$"
DB="tppy_${SUFFIX}"
AUTH="tppy_auth_${SUFFIX}"
ANON="tppy_anon_${SUFFIX}"
SECRET="tppy-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
ADMIN_URL="$(url_for postgres postgres)"
PROXY_PID=""
LOG="$(mktemp -t tppy-proxy.XXXXXX.log)"
OUT=""

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
    [[ -n "$OUT" ]] && rm -f "$OUT"
    [[ "${KEEP_LOG:-}" == 1 ]] || rm -f "$LOG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "run.sh: $*" >&2; exit 2; }

# Virtualenv with the pinned client stack; reinstalled only when
# requirements.txt changes.
PY="$VENV/bin/python"
if [[ ! -x "$PY" ]]; then
    echo "# creating virtualenv $VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV" || die "python3 -m venv failed"
fi
REQ_SUM="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
if [[ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$REQ_SUM" ]]; then
    echo "# installing $HERE/requirements.txt"
    "$PY" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt" \
        || die "pip install failed"
    echo "$REQ_SUM" >"$VENV/.requirements.sha256"
fi

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
psql_admin "$DB_URL" -v anon="$ANON" -f "$SETUP_SQL" >/dev/null || die "setup.sql failed"
psql_admin "$DB_URL" -v anon="$ANON" -f "$HERE/extra.sql" >/dev/null || die "extra.sql failed"

echo "# building tenancy-proxy"
(cd "$ROOT" && cargo build --release -q -p tenancy-proxy) || die "cargo build failed"

PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
PGRST_DB_URI="$(url_for "$DB" "$AUTH")" \
PGRST_DB_SCHEMAS="esg,tenancy" \
PGRST_DB_ANON_ROLE="$ANON" \
PGRST_JWT_SECRET="$SECRET" \
PGRST_SERVER_HOST=127.0.0.1 \
PGRST_SERVER_PORT="$PORT" \
PGRST_DB_POOL=4 \
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
OUT="$(mktemp -t tppy-pytest.XXXXXX)"
# shellcheck disable=SC2086
TENANCY_PROXY_URL="$BASE" TENANCY_JWT_SECRET="$SECRET" PYTHONDONTWRITEBYTECODE=1 \
    "$PY" -m pytest -p no:cacheprovider -rfEX ${PYTEST_ARGS:-} tests 2>&1 | tee "$OUT"
rc=${PIPESTATUS[0]}
# pytest's last line, e.g. "==== 2 failed, 90 passed, 3 xfailed in 4.1s ====".
summary="$(grep -E '^=+ .* in [0-9.]+s' "$OUT" | tail -1)"
count() { echo "$summary" | grep -Eo "[0-9]+ $1" | grep -Eo '^[0-9]+' || echo 0; }
pass="$(count passed)"
fail=$(($(count failed) + $(count errors?)))
# No summary at all (collection crash, interpreter error): one failure.
if [[ -z "$summary" || ($rc -ne 0 && $fail -eq 0) ]]; then fail=$((fail + 1)); fi
if [[ $rc -ne 0 ]]; then
    KEEP_LOG=1
    echo "# proxy log kept at $LOG"
fi
echo "${pass:-0} passed, ${fail:-0} failed"
exit "$rc"
