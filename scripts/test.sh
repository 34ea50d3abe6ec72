#!/usr/bin/env bash
# make test: every test tier, then one summary line.
#   1. lint           cargo fmt --check, cargo clippy -D warnings
#   2. core           cargo test -p tenancy-core (unit + property tests, no database)
#   3. sql            pgTAP suites in tests/sql against a fresh database (pg_prove)
#   4. e2e            cargo test -p tenancy-e2e: real logins, attacks, oracle property test
#   5. proxy          cargo test -p tenancy-proxy: the PostgREST-dialect proxy over real HTTP
#   6. clients        @supabase/postgrest-js (npm) against the running proxy
#   7. clients-py     postgrest-py (PyPI `postgrest`, used by supabase-py) against the running proxy
source "$(dirname "$0")/common.sh"
cd "$ROOT"
"$ROOT/scripts/deps.sh"

passed=0; failed=0; failures=()
record() { # record <tier> <passed> <failed>
    passed=$((passed + $2)); failed=$((failed + $3))
    if [ "$3" -gt 0 ]; then failures+=("$1"); fi
}
# Sum "test result: ok. N passed; M failed" lines of cargo test output.
cargo_counts() { awk '/^test result:/ { for (i=1;i<=NF;i++) { if ($(i)=="passed;") p+=$(i-1); if ($(i)=="failed;") f+=$(i-1) } } END { print p+0, f+0 }' "$1"; }

# Run one cargo test tier and record its counts (a tier that prints no
# "test result" line, e.g. a build failure, counts as one failure).
cargo_tier() { # cargo_tier <tier> <cargo test args...>
    local tier="$1" out p f; shift
    out="$(mktemp)"
    TENANCY_TEST_URL="$SERVER_URL" cargo test "$@" 2>&1 | tee "$out" | grep -E '^test |^test result|FAILED|panicked' || true
    read -r p f < <(cargo_counts "$out")
    if ! grep -q '^test result' "$out"; then f=$((f + 1)); fi
    record "$tier" "$p" "$f"
}

log "tier 1: lint"
if cargo fmt --all --check && cargo clippy --workspace --all-targets --quiet -- -D warnings; then
    record lint 1 0
else
    record lint 0 1
fi

log "tier 2: core unit and property tests"
cargo_tier core -p tenancy-core

"$ROOT/scripts/install.sh"
"$ROOT/scripts/cluster.sh" start

log "tier 3: pgTAP suites (tests/sql)"
TAPDB=pg_tenancy_pgtap
psql_db postgres -c "DROP DATABASE IF EXISTS $TAPDB WITH (FORCE)" -c "CREATE DATABASE $TAPDB"
psql_db "$TAPDB" -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION pg_tenancy"
tap_out="$(mktemp)"
if pg_prove --ext .sql -d "$(db_url "$TAPDB")" "$ROOT"/tests/sql/*.sql 2>&1 | tee "$tap_out"; then :; fi
tp=$(awk '/^Files=/{ for(i=1;i<=NF;i++) if ($(i) ~ /^Tests=/) { gsub(/Tests=|,/, "", $(i)); print $(i) } }' "$tap_out")
if grep -q '^Result: PASS' "$tap_out"; then
    record sql "${tp:-0}" 0
else
    tf=$(grep -Eo 'Failed [0-9]+/' "$tap_out" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print (s>0?s:1)}')
    record sql "$(( ${tp:-0} - ${tf:-1} ))" "${tf:-1}"
fi

log "tier 4: end-to-end tests (tests/e2e)"
cargo_tier e2e -p tenancy-e2e --release --no-fail-fast

log "tier 5: proxy HTTP tests (proxy/tests)"
cargo_tier proxy -p tenancy-proxy --release --no-fail-fast

log "tier 6: real client: @supabase/postgrest-js (tests/clients/postgrest-js)"
js_out="$(mktemp)"
TENANCY_TEST_URL="$SERVER_URL" bash "$ROOT/tests/clients/postgrest-js/run.sh" 2>&1 | tee "$js_out" | grep -E '^# (pass|fail|todo)|^not ok|passed, [0-9]+ failed$' || true
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$js_out" | tail -1)
if [ -n "$line" ]; then
    record clients "$(echo "$line" | awk '{print $1}')" "$(echo "$line" | awk '{print $3}')"
else
    record clients 0 1
fi

log "tier 7: real client: postgrest-py (tests/clients/postgrest-py)"
py_out="$(mktemp)"
TENANCY_TEST_URL="$SERVER_URL" bash "$ROOT/tests/clients/postgrest-py/run.sh" 2>&1 | tee "$py_out" | grep -E '^(FAILED|ERROR|XPASS) |^=+ .* in [0-9.]+s|passed, [0-9]+ failed$' || true
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$py_out" | tail -1)
if [ -n "$line" ]; then
    record clients-py "$(echo "$line" | awk '{print $1}')" "$(echo "$line" | awk '{print $3}')"
else
    record clients-py 0 1
fi
rm -f "$py_out"

echo
if [ "$failed" -gt 0 ]; then
    echo "failing tiers: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
