#!/usr/bin/env bash
# Clone and provisioning benchmark (issue 4).
#
#   benches/clone/run.sh [runs]        (default 5 clone runs, 21 provisionings)
#
# 1. Clone a tenant of ~206,000 rows over 6 FK-linked tables with global keys
#    (bigserial, identity, uuid, a self-referencing tree) with
#    tenancy.clone_tenant, alternating with the baseline: one plain
#    INSERT ... SELECT ... WHERE tenant_id = src per table into an identical
#    unmanaged mirror (same keys, indexes, foreign keys), no remapping.
#    Prints the median of each and the ratio (target <= 2.0, aim <= 1.5).
# 2. Provision one tenant from a typical template (~950 rows) with
#    tenancy.provision: median time (target < 100 ms).
# Uses its own database (pg_tenancy_bench_clone) on the project's cluster
# (or DATABASE_URL's server).
source "$(dirname "$0")/../../scripts/common.sh"
RUNS="${1:-5}"
PROVISIONS="${PROVISIONS:-21}"
DB=pg_tenancy_bench_clone
URL="$(db_url "$DB")"

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# Run SQL statements in one session with \timing; print each statement's milliseconds.
timed() { psql -X -q -v ON_ERROR_STOP=1 "$URL" -c '\timing on' "$@" | awk '/^Time:/ { print $2 }'; }
q() { psql -X -q -v ON_ERROR_STOP=1 -tA "$URL" -c "$1"; }

log "creating $DB"
psql_db postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
psql -X -q -v ON_ERROR_STOP=1 "$URL" -f "$ROOT/benches/clone/schema.sql" >/dev/null
log "seeding: big tenant (~206k rows), typical template tenant (~950 rows)"
q "SELECT tenancy.create_tenant('big', 'Big Co')" >/dev/null
q "SELECT tenancy.create_tenant('typical', 'Typical Co', settings => '{\"locale\": \"en\"}')" >/dev/null
q "SELECT public.bench_seed(tenancy.resolve('big'), 1000, 5000, 20000, 200, 160000, 20000)" >/dev/null
q "SELECT public.bench_seed(tenancy.resolve('typical'), 10, 40, 100, 50, 700, 50)" >/dev/null
psql -X -q "$URL" -c "VACUUM ANALYZE" >/dev/null
ROWS=$(q "SELECT (SELECT count(*) FROM bc.orgs) + (SELECT count(*) FROM bc.sites) + (SELECT count(*) FROM bc.assets) + (SELECT count(*) FROM bc.metrics) + (SELECT count(*) FROM bc.readings) + (SELECT count(*) FROM bc.comments) FROM tenancy.tenants WHERE slug = 'big'")
ROWS=$((ROWS - $(q "SELECT 10 + 40 + 100 + 50 + 700 + 50")))
log "clone: $RUNS runs, alternating baseline and clone of $ROWS rows"

base=(); clone=()
for i in $(seq 1 "$RUNS"); do
    b=$(timed -c "SELECT public.bench_baseline(tenancy.resolve('big'))")
    c=$(timed -c "SELECT tenancy.clone_tenant('big', 'big-copy', 'Big copy')")
    base+=("$b"); clone+=("$c")
    printf '  run %d: baseline %8.1f ms   clone %8.1f ms   ratio %.2f\n' "$i" "$b" "$c" "$(echo "$c / $b" | bc -l)"
    # Reset: empty the mirror, drop the clone, vacuum, so every run starts alike.
    psql -X -q -v ON_ERROR_STOP=1 "$URL" \
        -c "TRUNCATE bb.comments, bb.readings, bb.metrics, bb.assets, bb.sites, bb.orgs" \
        -c "SELECT tenancy.drop_tenant('big-copy', confirm => 'big-copy')" \
        -c "VACUUM ANALYZE bc.orgs, bc.sites, bc.assets, bc.metrics, bc.readings, bc.comments" >/dev/null
done
mb=$(printf '%s\n' "${base[@]}" | median)
mc=$(printf '%s\n' "${clone[@]}" | median)

log "provisioning: template from 'typical', $PROVISIONS provisionings"
q "SELECT tenancy.create_template('typical', 'typical', description => 'benchmark template')" >/dev/null
TROWS=$(q "SELECT rows FROM tenancy.templates WHERE name = 'typical'")
args=()
for i in $(seq 1 "$PROVISIONS"); do args+=(-c "SELECT tenancy.provision('typical', 'prov-$i', 'Provisioned $i')"); done
mp=$(timed "${args[@]}" | median)

echo
echo "clone of $ROWS rows over 6 FK-linked tables (median of $RUNS):"
printf '  baseline INSERT ... SELECT   %9.1f ms\n' "$mb"
printf '  tenancy.clone_tenant         %9.1f ms\n' "$mc"
printf '  ratio clone / baseline       %9.2f   (target <= 2.0, aim <= 1.5)\n' "$(echo "$mc / $mb" | bc -l)"
echo "provisioning one tenant from a $TROWS-row template (median of $PROVISIONS):"
printf '  tenancy.provision            %9.1f ms   (target < 100 ms)\n' "$mp"
