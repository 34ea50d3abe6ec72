#!/usr/bin/env bash
# Install what building and testing pg_tenancy needs; skip what is present.
source "$(dirname "$0")/common.sh"

need_pkgs=()
for p in postgresql-15 postgresql-server-dev-15 libclang-dev clang postgresql-15-pgtap \
         libtap-parser-sourcehandler-pgtap-perl sudo pkg-config libssl-dev python3-venv openssl \
         postgresql-15-postgis-3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "apt-get install ${need_pkgs[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    die "cargo not found: install Rust 1.95+ (rustup) first"
fi
if ! cargo pgrx --version 2>/dev/null | grep -q '0\.18\.0'; then
    log "cargo install cargo-pgrx 0.18.0 (about 6 minutes, once)"
    cargo install cargo-pgrx --version 0.18.0 --locked
fi
if ! grep -qs 'pg15' "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    log "cargo pgrx init --pg15 $PG_CONFIG"
    cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi
