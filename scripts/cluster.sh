#!/usr/bin/env bash
# Start or stop the project's local PostgreSQL 15 cluster.
#   scripts/cluster.sh start   (idempotent)
#   scripts/cluster.sh stop
#   scripts/cluster.sh status
source "$(dirname "$0")/common.sh"
PGDATA_DIR="$(pick_pgdata)"

start() {
    if [ "$EXTERNAL_DB" = 1 ]; then log "DATABASE_URL is set: using that server"; return; fi
    if [ ! -s "$PGDATA_DIR/PG_VERSION" ]; then
        log "initdb $PGDATA_DIR"
        as_root mkdir -p "$PGDATA_DIR"
        as_root chown "$CLUSTER_USER" "$PGDATA_DIR"
        as_root chmod 700 "$PGDATA_DIR"
        as_cluster_user "$PG_BIN/initdb" -D "$PGDATA_DIR" -U "$CLUSTER_USER" --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >/dev/null
        cat >>"$PGDATA_DIR/postgresql.conf" <<CONF
# pg_tenancy local cluster
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 512MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
CONF
    fi
    ensure_tls
    if as_cluster_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
        # A server started before `apt-get` upgraded PostgreSQL keeps
        # running the old binary, which cannot load the new minor's
        # libraries (plpgsql.so: "undefined symbol"): restart it on the
        # installed one.
        local running installed
        running="$(psql_db postgres -Atc "SHOW server_version" 2>/dev/null || true)"
        installed="$("$PG_BIN/postgres" --version | sed 's/^postgres (PostgreSQL) //')"
        if [ -n "$running" ] && [ "$running" != "$installed" ]; then
            log "the running server is $running, the installed binaries $installed: restarting"
            as_cluster_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null
        else
            if [ "$TLS_CHANGED" = 1 ]; then
                as_cluster_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" reload >/dev/null
            fi
            return 0
        fi
    fi
    log "starting PostgreSQL 15 on $PGHOST:$PGPORT ($PGDATA_DIR)"
    as_cluster_user env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w -t 60 \
        -o "-p $PGPORT -k /tmp" start >/dev/null || { tail -20 "$PGDATA_DIR/server.log" >&2; die "PostgreSQL did not start"; }
}

# TLS: a local CA and a server certificate it signs, for localhost and
# 127.0.0.1, so clients (and the proxy's sslmode tests) can connect with
# sslmode=require, verify-ca or verify-full; plain connections keep working.
# The CA certificate is copied to .run/pg-ca.crt for sslrootcert=.
# Idempotent; turning `ssl` on needs only a reload.
TLS_CHANGED=0
ensure_tls() {
    local ca="$PGDATA_DIR/pg_tenancy_ca.crt"
    if ! as_root test -s "$ca"; then
        command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
        local tmp; tmp="$(mktemp -d)"
        (
            cd "$tmp"
            openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pg_tenancy local CA" \
                -keyout ca.key -out ca.crt
            openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
            printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
                "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >ext.cnf
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
                -extfile ext.cnf -out server.crt
        ) >/dev/null 2>&1 || die "openssl could not make the cluster's certificates"
        as_root install -m 600 -o "$CLUSTER_USER" "$tmp/server.key" "$PGDATA_DIR/server.key"
        as_root install -m 644 -o "$CLUSTER_USER" "$tmp/server.crt" "$PGDATA_DIR/server.crt"
        as_root install -m 644 -o "$CLUSTER_USER" "$tmp/ca.crt" "$ca"
        rm -rf "$tmp"
        TLS_CHANGED=1
    fi
    if ! as_root grep -q "^ssl = on" "$PGDATA_DIR/postgresql.conf"; then
        printf "ssl = on\n" | as_root tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
        TLS_CHANGED=1
    fi
    mkdir -p "$ROOT/.run"
    as_root cat "$ca" >"$ROOT/.run/pg-ca.crt"
}

stop() {
    if [ "$EXTERNAL_DB" = 1 ]; then return; fi
    if [ -s "$PGDATA_DIR/PG_VERSION" ] && as_cluster_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
        log "stopping PostgreSQL ($PGDATA_DIR)"
        as_cluster_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) as_cluster_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status ;;
    *) die "usage: $0 start|stop|status" ;;
esac
