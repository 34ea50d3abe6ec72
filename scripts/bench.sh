#!/usr/bin/env bash
# make bench: the RLS-overhead benchmark (see benches/README.md).
#
# Each query runs (a) through the tenancy.enable policies, as a non-superuser
# member login with the tenant set by PGOPTIONS, and (b) on an identical table
# without RLS with an explicit tenant_id = $1. a and b alternate in the same
# pgbench run (randomly per transaction, BENCH_MODE=mixed) or back to back
# (BENCH_MODE=alternate); each round uses another tenant. Per query it prints
# the median tps of each and the median of the per-round latency ratios a/b
# (= tps_b / tps_a).
#
# Settings (environment):
#   BENCH_DB=pg_tenancy_bench  BENCH_TENANTS=1000  BENCH_ROUNDS=5  BENCH_SECONDS=10
#   BENCH_WARMUP=2 (seconds per script before round 1)  BENCH_CLIENTS=1
#   BENCH_QUERIES="point range agg insert"  BENCH_SEED=1 (which tenants)
#   BENCH_HIERARCHICAL=1  also run (h): the table enabled with hierarchical => true
#   BENCH_REBUILD=1       recreate the data set even when it matches
#   BENCH_SKIP_INSTALL=1  do not build and install the extension first
#   BENCH_ROLE=bench_app  the login used for (a) and (b)
#   BENCH_MODE=mixed      or alternate (see "runs" below)
source "$(dirname "$0")/common.sh"

DB="${BENCH_DB:-pg_tenancy_bench}"
TENANTS="${BENCH_TENANTS:-1000}"
ROUNDS="${BENCH_ROUNDS:-5}"
SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CLIENTS="${BENCH_CLIENTS:-1}"
QUERIES="${BENCH_QUERIES:-point range agg insert}"
SEED="${BENCH_SEED:-1}"
ROLE="${BENCH_ROLE:-bench_app}"
PER_TENANT=2000
BENCH_DIR="$ROOT/benches/rls"
OUT="$ROOT/target/bench"
PGBENCH="$PG_BIN/pgbench"
VARIANTS="a b"
[ "${BENCH_HIERARCHICAL:-0}" = 1 ] && VARIANTS="a b h"

[ "$TENANTS" -ge 1 ] || die "BENCH_TENANTS must be a positive number"
[ "$TENANTS" -ge 1000 ] || log "note: BENCH_TENANTS=$TENANTS is below the 1,000 tenants the benchmark is specified for"

if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
    "$ROOT/scripts/deps.sh"
    "$ROOT/scripts/install.sh"
fi
"$ROOT/scripts/cluster.sh" start
mkdir -p "$OUT"

# The benchmark login's URL: same server, user $ROLE (trust auth locally).
BENCH_URL="$(db_url "$DB")"
BENCH_URL="${BENCH_URL#*://}"
case "$BENCH_URL" in *@*) BENCH_URL="${BENCH_URL#*@}" ;; esac
BENCH_URL="postgresql://${ROLE}@${BENCH_URL}"

# ---------------------------------------------------------------- data set
# Rebuild when the setup, the demo schema or the installed extension script
# changed, or the scale differs; otherwise reuse (loading takes a while).
ext_sql="$(ls "$(pg_config --sharedir 2>/dev/null || echo /nonexistent)"/extension/pg_tenancy--*.sql 2>/dev/null || true)"
VERSION="$(cat "$BENCH_DIR/setup.sql" "$ROOT/demo/schema.sql" $ext_sql | sha256sum | cut -c1-16)"
have="$(psql_db postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB'")"
current=""
if [ "$have" = 1 ]; then
    current="$(psql_db "$DB" -Atc "SELECT tenants || ' ' || per_tenant || ' ' || version FROM bench.meta" 2>/dev/null || true)"
fi
if [ "${BENCH_REBUILD:-0}" = 1 ] || [ "$current" != "$TENANTS $PER_TENANT $VERSION" ]; then
    log "building $DB: $TENANTS tenants, $((TENANTS * PER_TENANT)) data points per table (a few minutes)"
    t0=$(date +%s)
    psql_db postgres -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" -c "CREATE DATABASE \"$DB\""
    (cd "$ROOT" && psql_db "$DB" -v tenants="$TENANTS" -v role="$ROLE" -v version="$VERSION" \
        -v demo_schema="$ROOT/demo/schema.sql" -f "$BENCH_DIR/setup.sql" >"$OUT/setup.log")
    psql_db "$DB" -c "VACUUM (ANALYZE)"
    log "built in $(( $(date +%s) - t0 )) s"
else
    log "reusing $DB ($TENANTS tenants, $((TENANTS * PER_TENANT)) data points per table)"
fi

TABLES="bench.data_points_rls bench.data_points_hier bench.data_points_plain"
BASE_MAX=$((TENANTS * PER_TENANT))
# Remove what the insert runs added, so every run starts from the same rows.
reset_tables() {
    local t sql=""
    for t in $TABLES; do
        sql+="DELETE FROM $t WHERE id > $BASE_MAX; SELECT setval(pg_get_serial_sequence('$t', 'id'), $BASE_MAX);"
    done
    psql_db "$DB" -c "$sql" >/dev/null
    psql_db "$DB" -c "VACUUM (ANALYZE) bench.data_points_rls, bench.data_points_hier, bench.data_points_plain"
}
reset_tables

# ---------------------------------------------------------------- scripts
table_of() { case "$1" in a) echo bench.data_points_rls ;; b) echo bench.data_points_plain ;; h) echo bench.data_points_hier ;; esac; }
script_of() { # variant query
    case "$1" in
        a) echo "$BENCH_DIR/$2_rls.sql" ;;
        b) echo "$BENCH_DIR/$2_plain.sql" ;;
        h) sed 's/bench\.data_points_rls/bench.data_points_hier/g; s/^-- (a)/-- (h)/' "$BENCH_DIR/$2_rls.sql" >"$OUT/$2_hier.sql"
           echo "$OUT/$2_hier.sql" ;;
    esac
}
for q in $QUERIES; do
    [ -f "$BENCH_DIR/${q}_rls.sql" ] && [ -f "$BENCH_DIR/${q}_plain.sql" ] || die "unknown query '$q' (benches/rls/${q}_rls.sql)"
done

# Tenant for round r (1-based; round 0 is the warm-up): spread over the registry.
tenant_k() { echo $(( 1 + (SEED * 7919 + $1 * 389) % TENANTS )); }
tenant_vars() { # k -> "uuid first_id entity_id metric_lo"
    psql_db "$DB" -AtF' ' -c "SELECT tenant_id, first_id, entity_id, metric_lo FROM bench.tenant_map WHERE k = $1"
}

# ---------------------------------------------------------------- sanity
# (a) really goes through RLS: a non-superuser sees exactly its tenant's rows.
read -r tid _ <<<"$(tenant_vars "$(tenant_k 1)")"
check="$(PGOPTIONS="-c tenancy.tenant_id=$tid" psql -X -At "$BENCH_URL" -c "
    SELECT current_setting('is_superuser') = 'off'
       AND NOT (SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user)
       AND tenancy.current_tenant() = '$tid'
       AND (SELECT count(*) FROM bench.data_points_rls) = $PER_TENANT
       AND (SELECT count(*) FROM bench.data_points_hier) = $PER_TENANT
       AND (SELECT count(*) FROM bench.data_points_plain WHERE tenant_id = '$tid') = $PER_TENANT")" \
    || die "cannot connect as $ROLE to $DB"
[ "$check" = t ] || die "sanity check failed: $ROLE must be a non-superuser that sees only its tenant's $PER_TENANT rows"

# Plans of every variant, for the record (EXPLAIN ANALYZE; the insert is rolled back).
{
    read -r tid lo eid mlo <<<"$(tenant_vars "$(tenant_k 1)")"
    for q in $QUERIES; do
        for v in $VARIANTS; do
            t="$(table_of "$v")"; w=""
            [ "$v" = b ] && w="tenant_id = '$tid'"
            case "$q" in
                point) sel="SELECT id, entity_id, metric_id, period, value FROM $t WHERE id = $((lo + 17))${w:+ AND $w}" ;;
                range) sel="SELECT id, entity_id, metric_id, period, value FROM $t WHERE ${w:+$w AND }period BETWEEN '2024-01-01' AND '2024-03-01' ORDER BY period" ;;
                agg) sel="SELECT metric_id, count(*), sum(value), avg(value), min(period), max(period) FROM $t${w:+ WHERE $w} GROUP BY metric_id" ;;
                insert) if [ "$v" = b ]; then
                            sel="INSERT INTO $t (tenant_id, entity_id, metric_id, period, value) VALUES ('$tid', '$eid', $mlo, '2024-01-01', 1.5)"
                        else
                            sel="INSERT INTO $t (entity_id, metric_id, period, value) VALUES ('$eid', $mlo, '2024-01-01', 1.5)"
                        fi ;;
                *) continue ;;
            esac
            echo "=== $q ($v)"
            PGOPTIONS="-c tenancy.tenant_id=$tid" psql -X "$BENCH_URL" -c "BEGIN" \
                -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) $sel" -c "ROLLBACK"
        done
    done
} >"$OUT/plans.txt" 2>&1 || true

# ---------------------------------------------------------------- runs
# One pgbench run per (round, query). In the default mode "mixed" that run
# holds every variant's script at equal weight, so pgbench alternates a and b
# at random, transaction by transaction, in one connection: whatever else
# loads the machine hits both alike. Mode "alternate" runs each variant
# alone for BENCH_SECONDS, one after the other, first a then b or the reverse.
# Either way every transaction's latency is logged (pgbench -l, in us) and
# a variant's tps is clients * 1e6 / its mean latency.
RAW="$OUT/raw.tsv"
printf 'round\tquery\tvariant\ttenant\ttransactions\tmean_us\ttrimmed_mean_us\ttps\n' >"$RAW"
run_pgbench() { # round query seconds variant... -> appends one line per variant to $RAW
    local r=$1 q=$2 secs=$3; shift 3
    local tid lo eid mlo log v i=0 scripts=() map=""
    read -r tid lo eid mlo <<<"$(tenant_vars "$(tenant_k "$r")")"
    for v in "$@"; do scripts+=(-f "$(script_of "$v" "$q")@1"); map+="$i=$v "; i=$((i + 1)); done
    log="$OUT/pgbench-r$r-$q-$(tr -d ' ' <<<"$*").log"
    rm -f "$OUT"/tx.*
    if ! PGOPTIONS="-c tenancy.tenant_id=$tid" "$PGBENCH" -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$secs" \
            --random-seed="$((SEED * 1000 + r))" -l --log-prefix="$OUT/tx" "${scripts[@]}" \
            -D tid="$tid" -D lo="$lo" -D n="$PER_TENANT" -D eid="$eid" -D mlo="$mlo" "$BENCH_URL" >"$log" 2>&1; then
        cat "$log" >&2
        die "pgbench failed ($q, $*, round $r)"
    fi
    grep -q '^number of failed transactions: 0 ' "$log" || { cat "$log" >&2; die "pgbench reported failed transactions ($q, $*)"; }
    # Log line: client transaction latency_us script epoch_s epoch_us. Per
    # script: mean latency, and the mean of its fastest 99 % (drops stalls).
    cat "$OUT"/tx.* | awk '{ print $4, $3 }' | sort -k1,1n -k2,2n >"$OUT/tx.sorted"
    awk -v MAP="$map" -v R="$r" -v Q="$q" -v K="$(tenant_k "$r")" -v C="$CLIENTS" '
        BEGIN { n = split(MAP, m, " "); for (i = 1; i <= n; i++) { split(m[i], kv, "="); name[kv[1]] = kv[2] } }
        NR == FNR { cnt[$1]++; sum[$1] += $2; next }
        { seen[$1]++; if (seen[$1] <= int(cnt[$1] * 0.99)) { tsum[$1] += $2; tcnt[$1]++ } }
        END { for (s in cnt) { mean = sum[s] / cnt[s]; tm = tcnt[s] ? tsum[s] / tcnt[s] : mean
                  printf "%s\t%s\t%s\t%s\t%d\t%.3f\t%.3f\t%.1f\n", R, Q, name[s], K, cnt[s], mean, tm, C * 1e6 / mean } }
    ' "$OUT/tx.sorted" "$OUT/tx.sorted" | tee -a "$RAW"
    rm -f "$OUT"/tx.*
}

MODE="${BENCH_MODE:-mixed}"
n_q=$(wc -w <<<"$QUERIES"); n_v=$(wc -w <<<"$VARIANTS")
est=$(( n_q * n_v * (ROUNDS * SECONDS_PER_RUN + WARMUP) ))
log "running ($MODE): ${n_q} queries x ${n_v} variants x $ROUNDS rounds x ${SECONDS_PER_RUN} s, $CLIENTS client(s), -M prepared (about $((est / 60 + 1)) min)"
if [ "$WARMUP" -gt 0 ]; then
    for q in $QUERIES; do for v in $VARIANTS; do run_pgbench 0 "$q" "$WARMUP" "$v" >/dev/null; done; done
    sed -i '2,$d' "$RAW"
    reset_tables
fi
for r in $(seq 1 "$ROUNDS"); do
    qi=0
    for q in $QUERIES; do
        case "$MODE" in
            mixed) out="$(run_pgbench "$r" "$q" $((SECONDS_PER_RUN * n_v)) $VARIANTS)" ;;
            alternate)
                # Alternate which variant goes first, per round and per query.
                order="$VARIANTS"
                [ $(( (r + qi) % 2 )) = 0 ] && order="$(tr ' ' '\n' <<<"$VARIANTS" | tac | tr '\n' ' ')"
                out=""; for v in $order; do out+="$(run_pgbench "$r" "$q" "$SECONDS_PER_RUN" "$v")"$'\n'; done ;;
            *) die "BENCH_MODE must be mixed or alternate" ;;
        esac
        log "round $r/$ROUNDS tenant bench-$(printf '%05d' "$(tenant_k "$r")") $q: $(awk -F'\t' 'NF { printf "%s=%.0f tps (%.1f us)  ", $3, $8, $6 }' <<<"$out")"
        qi=$((qi + 1))
    done
done
reset_tables

# ---------------------------------------------------------------- report
report() { # variant -> markdown table rows for variant vs b
    awk -F'\t' -v V="$1" -v QUERIES="$QUERIES" '
        function median(list,   a, n, i, j, t) {
            n = split(list, a, " ")
            for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        NR > 1 { mean[$2, $1, $3] = $6; trim[$2, $1, $3] = $7; tps[$2, $1, $3] = $8; if ($1 > rounds) rounds = $1 }
        END {
            name["point"] = "point lookup by key"; name["range"] = "one tenant'"'"'s range scan (240 rows)"
            name["agg"] = "one tenant'"'"'s aggregate (2,000 rows)"; name["insert"] = "single-row insert"
            nq = split(QUERIES, qs, " ")
            for (i = 1; i <= nq; i++) {
                q = qs[i]; la = lb = lr = lt = per = ""
                for (r = 1; r <= rounds; r++) {
                    la = la " " tps[q, r, V]; lb = lb " " tps[q, r, "b"]
                    x = mean[q, r, V] / mean[q, r, "b"]; lr = lr " " x; per = per sprintf(" %.3f", x)
                    lt = lt " " trim[q, r, V] / trim[q, r, "b"]
                }
                m = median(lr)
                printf "| %s | %d | %d | **%.3f**%s | %.3f |%s |\n", (q in name ? name[q] : q), median(la) + 0.5, median(lb) + 0.5,
                       m, (m > 1.05 ? " (above 1.05)" : ""), median(lt), per
            }
        }' "$RAW"
}
echo
echo "mode $MODE, $ROUNDS rounds x ${SECONDS_PER_RUN} s per variant, $CLIENTS client(s), -M prepared, $TENANTS tenants, $BASE_MAX rows per table"
for v in $VARIANTS; do
    [ "$v" = b ] && continue
    [ "$v" = a ] && what="RLS policies (a)" || what="hierarchical RLS (h)"
    echo
    echo "| query | median tps, $what | median tps, plain (b) | median latency ratio $v/b | same, fastest 99 % | ratio $v/b per round |"
    echo "|---|---:|---:|---:|---:|---|"
    report "$v"
done
echo
echo "tps = clients x 1e6 / mean latency (us). Ratio = mean latency of the RLS variant / mean latency of b in the same round (= tps_b / tps_a); the table shows the median over rounds."
echo "target: every median ratio <= 1.05 (aim 1.02). Raw numbers: $RAW, pgbench output and plans (plans.txt): $OUT"
