#!/usr/bin/env bash
# Shared settings for the pg_tenancy scripts. Source it; do not run it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_BIN=/usr/lib/postgresql/15/bin
PG_CONFIG=/usr/bin/pg_config
export PGPORT="${PGPORT:-28815}"
export PGHOST="${PGHOST:-127.0.0.1}"
# The local cluster offers TLS (scripts/cluster.sh); psql, pgbench and
# pg_prove talk to it over loopback in plain text, as before, so timings stay
# comparable. Set PGSSLMODE to use TLS.
export PGSSLMODE="${PGSSLMODE:-disable}"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly when we are root, else through sudo.
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# The OS user that owns the cluster: initdb refuses root, so root uses postgres.
if [ "$(id -u)" -eq 0 ]; then CLUSTER_USER=postgres; else CLUSTER_USER="$(id -un)"; fi
as_cluster_user() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Data directory: project-local .pgdata when the cluster user can write
# there, else a per-checkout directory under /tmp (e.g. a clone in a 0700 dir).
pick_pgdata() {
    if [ -n "${TENANCY_PGDATA:-}" ]; then echo "$TENANCY_PGDATA"; return; fi
    local local_dir="$ROOT/.pgdata"
    if [ "$(id -u)" -ne 0 ]; then echo "$local_dir"; return; fi
    mkdir -p "$local_dir" && chown postgres "$local_dir" 2>/dev/null || true
    if runuser -u postgres -- test -w "$local_dir" 2>/dev/null; then
        echo "$local_dir"
    else
        rmdir "$local_dir" 2>/dev/null || true
        local tmp_dir="/tmp/pg_tenancy-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
        mkdir -p "$tmp_dir" && chmod 755 "$tmp_dir"
        echo "$tmp_dir/data"
    fi
}

# Connection settings for clients (psql, tests, benches).
if [ -n "${DATABASE_URL:-}" ]; then
    EXTERNAL_DB=1
    # Base URL without the database name, to reach other databases on that server.
    SERVER_URL="${DATABASE_URL%/*}"
else
    EXTERNAL_DB=0
    export PGUSER="${PGUSER:-$CLUSTER_USER}"
    SERVER_URL="postgresql://${PGUSER}@${PGHOST}:${PGPORT}"
fi
db_url() { echo "${SERVER_URL}/$1"; }
psql_db() { local db="$1"; shift; psql -X -v ON_ERROR_STOP=1 -q "$(db_url "$db")" "$@"; }
