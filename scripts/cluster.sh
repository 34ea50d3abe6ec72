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
    if as_cluster_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
        return
    fi
    log "starting PostgreSQL 15 on $PGHOST:$PGPORT ($PGDATA_DIR)"
    as_cluster_user env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w -t 60 \
        -o "-p $PGPORT -k /tmp" start >/dev/null || { tail -20 "$PGDATA_DIR/server.log" >&2; die "PostgreSQL did not start"; }
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
