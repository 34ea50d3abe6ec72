#!/usr/bin/env bash
# Build pg_tenancy (release) and install it into the local PostgreSQL 15.
source "$(dirname "$0")/common.sh"
cd "$ROOT/extension"
log "cargo pgrx install --release"
if [ "$(id -u)" -eq 0 ]; then
    cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null
else
    cargo pgrx install --release --sudo --pg-config "$PG_CONFIG" >/dev/null
fi
