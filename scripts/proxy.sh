#!/usr/bin/env bash
# Run tenancy-proxy (the PostgREST-compatible HTTP API) against the demo database.
#   scripts/proxy.sh start   roles, build, (re)start in the background, wait until ready,
#                            print a JWT + curl + postgrest-js example per demo tenant
#   scripts/proxy.sh stop
#   scripts/proxy.sh status
# State lives in .run/ (gitignored): proxy.pid, proxy.log, jwt_secret, tokens.env.
source "$(dirname "$0")/common.sh"
DB="${DEMO_DB:-pg_tenancy_demo}"
PORT="${PROXY_PORT:-3000}"
RUN_DIR="$ROOT/.run"
PID_FILE="$RUN_DIR/proxy.pid"
LOG_FILE="$RUN_DIR/proxy.log"
SECRET_FILE="$RUN_DIR/jwt_secret"
TOKENS_FILE="$RUN_DIR/tokens.env"
BIN="$ROOT/target/release/tenancy-proxy"
TENANTS=(acme acme-europe globex initech)

running_pid() {
    [ -s "$PID_FILE" ] || return 1
    local pid; pid="$(cat "$PID_FILE")"
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q tenancy-proxy; then
        echo "$pid"
    else
        return 1
    fi
}

stop() {
    local pid
    if pid="$(running_pid)"; then
        log "stopping tenancy-proxy (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$PID_FILE"
}

setup_roles() {
    # authenticator: the proxy's login; it can only become the roles granted to it.
    # web_anon: the role of requests without a JWT (reads reference data only).
    psql_db "$DB" >/dev/null <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticator') THEN
        CREATE ROLE authenticator LOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'web_anon') THEN
        CREATE ROLE web_anon NOLOGIN;
    END IF;
END
$$;
GRANT web_anon, tenancy_member, tenancy_viewer, tenancy_admin, tenancy_analyst TO authenticator;
GRANT USAGE ON SCHEMA esg TO web_anon, tenancy_member, tenancy_viewer, tenancy_admin;
GRANT SELECT ON esg.units TO web_anon;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA esg TO tenancy_member, tenancy_admin;
SQL
}

# An HS256 JWT (base64url, no padding) with the standard library only.
mint_jwt() {  # mint_jwt <secret> <tenant slug>
    python3 - "$1" "$2" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret, tenant = sys.argv[1], sys.argv[2]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
claims = b64(json.dumps({"role": "tenancy_member", "tenant_id": tenant, "iat": now,
                         "exp": now + 365 * 24 * 3600}, separators=(",", ":")).encode())
sig = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
print(f"{header}.{claims}.{b64(sig)}")
PY
}

start() {
    mkdir -p "$RUN_DIR"
    stop
    setup_roles
    log "cargo build --release -p tenancy-proxy"
    (cd "$ROOT" && cargo build --release -p tenancy-proxy --quiet) || die "tenancy-proxy did not build"
    if [ ! -s "$SECRET_FILE" ]; then
        (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(48))' >"$SECRET_FILE")
    fi
    local secret; secret="$(cat "$SECRET_FILE")"
    if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/_tenancy/health" 2>/dev/null \
        || ss -ltn "sport = :$PORT" 2>/dev/null | grep -q LISTEN; then
        die "port $PORT is in use by another process (set PROXY_PORT)"
    fi
    # The authenticator connects like the superuser URL, with its own role name.
    local admin_uri; admin_uri="$(db_url "$DB")"
    local host_part="${SERVER_URL#*://}"; host_part="${host_part#*@}"
    local db_uri="${PROXY_DB_URI:-postgresql://authenticator@$host_part/$DB}"
    # TENANCY_PROXY_THREADS=0: single-threaded on <= 2 cores (the demo's
    # PostgreSQL shares them), a worker per core beyond
    log "starting tenancy-proxy on 127.0.0.1:$PORT (log: $LOG_FILE)"
    # setsid: its own session, so it outlives the shell that started it.
    PGRST_DB_URI="$db_uri" \
    PGRST_DB_SCHEMAS=esg \
    PGRST_DB_ANON_ROLE=web_anon \
    PGRST_JWT_SECRET="$secret" \
    PGRST_SERVER_HOST=127.0.0.1 PGRST_SERVER_PORT="$PORT" \
    PGRST_DB_AGGREGATES_ENABLED=true \
    TENANCY_ADMIN_DB_URI="$admin_uri" \
    TENANCY_PROXY_THREADS="${TENANCY_PROXY_THREADS:-0}" \
        setsid "$BIN" </dev/null >>"$LOG_FILE" 2>&1 &
    echo $! >"$PID_FILE"
    local ok=0
    for _ in $(seq 1 150); do
        if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/_tenancy/ready" 2>/dev/null; then ok=1; break; fi
        kill -0 "$(cat "$PID_FILE")" 2>/dev/null || break
        sleep 0.2
    done
    if [ "$ok" != 1 ]; then tail -20 "$LOG_FILE" >&2; stop; die "tenancy-proxy did not become ready"; fi
    log "tenancy-proxy ready (pid $(cat "$PID_FILE"))"
    print_examples "$secret"
}

print_examples() {
    local secret="$1" url="http://127.0.0.1:$PORT" t var tok
    : >"$TOKENS_FILE"; chmod 600 "$TOKENS_FILE"
    cat <<TXT

tenancy-proxy (PostgREST v12 dialect) is serving schema esg at $url
JWTs below: HS256, role=tenancy_member, tenant_id=<slug>, valid one year
(also in .run/tokens.env:  source .run/tokens.env).  No token = role web_anon.
TXT
    for t in "${TENANTS[@]}"; do
        var="TOKEN_$(printf '%s' "$t" | tr 'a-z-' 'A-Z_')"
        tok="$(mint_jwt "$secret" "$t")"
        echo "export $var='$tok'" >>"$TOKENS_FILE"
        cat <<TXT

-- tenant $t
$var='$tok'
curl -H "Authorization: Bearer \$$var" '$url/data_points?select=count()'
curl -H "Authorization: Bearer \$$var" '$url/data_points?select=period,value,metrics(code)&order=period&limit=3'
// postgrest-js:
new PostgrestClient('$url', { headers: { Authorization: 'Bearer ' + process.env.$var } })
  .from('data_points').select('period, value, metrics(code)').order('period').limit(3)
TXT
    done
    cat <<TXT

postgrest-js setup:  npm i @supabase/postgrest-js
  import { PostgrestClient } from '@supabase/postgrest-js'
  const { data, error } = await new PostgrestClient(...).from(...)...   // as above
supabase-js works too (the proxy serves Supabase's /rest/v1 prefix):
  npm i @supabase/supabase-js ws
  import { createClient } from '@supabase/supabase-js'; import ws from 'ws'
  createClient('$url', process.env.TOKEN_ACME, { db: { schema: 'esg' },
    auth: { persistSession: false }, realtime: { transport: ws } }).from('metrics').select('code')
Operational endpoints: $url/_tenancy/health  /_tenancy/ready  /_tenancy/metrics
TXT
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) if pid="$(running_pid)"; then echo "tenancy-proxy running (pid $pid, port $PORT)"; else echo "tenancy-proxy not running"; exit 3; fi ;;
    *) die "usage: $0 start|stop|status" ;;
esac
