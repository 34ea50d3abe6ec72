#!/usr/bin/env bash
# tenancy-proxy vs a tokio-postgres baseline running the same SQL (issue 3, "Benchmark").
#   benches/proxy/run.sh
# Needs the demo database (scripts/demo.sh) and wrk (apt-get install wrk).
# Starts its own proxy on BENCH_PROXY_PORT with the env of scripts/proxy.sh,
# rate limits raised out of the way; stops it on exit.
source "$(dirname "$0")/../../scripts/common.sh"
DB="${DEMO_DB:-pg_tenancy_demo}"
PORT="${BENCH_PROXY_PORT:-3100}"
POOL="${BENCH_POOL:-10}"           # PGRST_DB_POOL, and the baseline's pool
CONC="${BENCH_CONNECTIONS:-32}"
SECS="${BENCH_SECONDS:-10}"
ROUNDS="${BENCH_ROUNDS:-5}"
THREADS="${BENCH_THREADS:-0}"      # TENANCY_PROXY_THREADS, and the baseline's runtime (0 = automatic: 1 on <= 2 cores, else per core)
TENANT="${BENCH_TENANT:-acme}"
# wrk's threads: one drives 32 connections at these rates, and every core
# wrk does not take is left to the proxy and PostgreSQL (the baseline has
# no load generator to feed)
WRK_THREADS="${BENCH_WRK_THREADS:-1}"
OUT="$ROOT/target/bench/proxy"
SECRET_FILE="$ROOT/.run/jwt_secret"
mkdir -p "$OUT"
if ! command -v wrk >/dev/null; then
    log "apt-get install wrk"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null || die "wrk not found (apt-get install wrk)"
fi
[ -s "$SECRET_FILE" ] || die "no $SECRET_FILE: run scripts/proxy.sh start once"
SECRET="$(cat "$SECRET_FILE")"

log "cargo build --release (tenancy-proxy + example bench_baseline)"
(cd "$ROOT" && cargo build --release -p tenancy-proxy --bin tenancy-proxy --example bench_baseline --quiet)
BIN="$ROOT/target/release/tenancy-proxy"
BASE="$ROOT/target/release/examples/bench_baseline"

# A tenant token, minted like scripts/proxy.sh does (HS256, role tenancy_member).
TOKEN="$(python3 - "$SECRET" "$TENANT" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret, tenant = sys.argv[1], sys.argv[2]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
c = b64(json.dumps({"role": "tenancy_member", "tenant_id": tenant, "iat": now,
                    "exp": now + 3600}, separators=(",", ":")).encode())
s = hmac.new(secret.encode(), f"{h}.{c}".encode(), hashlib.sha256).digest()
print(f"{h}.{c}.{b64(s)}")
PY
)"

host_part="${SERVER_URL#*://}"; host_part="${host_part#*@}"
# plain TCP to PostgreSQL (TLS would add the same cost to both sides)
DB_URI="postgresql://authenticator@$host_part/$DB?sslmode=disable"
TENANT_SQL="SELECT id FROM tenancy.tenants WHERE slug = '$TENANT'"
PK_ID="$(psql_db "$DB" -Atc "SELECT min(id) FROM esg.data_points WHERE tenant_id = ($TENANT_SQL)")"
METRIC_ID="$(psql_db "$DB" -Atc "SELECT metric_id FROM esg.data_points WHERE tenant_id = ($TENANT_SQL) GROUP BY 1 HAVING count(*) >= 20 ORDER BY 1 LIMIT 1")"
[ -n "$PK_ID" ] && [ -n "$METRIC_ID" ] || die "tenant $TENANT has no data points (load demo/)"

QUERIES=(pk embed)
declare -A QNAME=([pk]="single row by primary key" [embed]="20 rows, filter + order + 1 embed")
declare -A QSTR=(
    [pk]="id=eq.$PK_ID"
    [embed]="select=id,period,value,metrics(code,name)&metric_id=eq.$METRIC_ID&order=period&limit=20"
)

PROXY_PID=""
cleanup() { if [ -n "$PROXY_PID" ]; then kill -TERM "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT
if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/_tenancy/health" 2>/dev/null; then
    die "port $PORT is in use (set BENCH_PROXY_PORT)"
fi
log "starting tenancy-proxy on 127.0.0.1:$PORT (PGRST_DB_POOL=$POOL)"
PGRST_DB_URI="$DB_URI" PGRST_DB_SCHEMAS=esg PGRST_DB_ANON_ROLE=web_anon \
PGRST_JWT_SECRET="$SECRET" PGRST_SERVER_HOST=127.0.0.1 PGRST_SERVER_PORT="$PORT" PGRST_DB_AGGREGATES_ENABLED=true \
PGRST_DB_POOL="$POOL" TENANCY_PROXY_THREADS="$THREADS" TENANCY_ADMIN_DB_URI="$(db_url "$DB")" \
TENANCY_PLAN_RATE_LIMITS="starter=1000000,pro=1000000,enterprise=1000000" \
TENANCY_DEFAULT_RATE_LIMIT=1000000 TENANCY_ANON_RATE_LIMIT=1000000 \
    "$BIN" </dev/null >"$OUT/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 1 150); do
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/_tenancy/ready" 2>/dev/null && break
    kill -0 "$PROXY_PID" 2>/dev/null || { tail -20 "$OUT/proxy.log" >&2; die "proxy exited"; }
    sleep 0.2
done
log "proxy pid $PROXY_PID, idle RSS $(awk '/VmRSS/{print $2" "$3}' "/proc/$PROXY_PID/status")"

cat >"$OUT/auth.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA

# wrk latency "99%   12.34ms" -> milliseconds
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v+0} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v}'; }

# Where the CPU goes, per run (both cores summed, in clock ticks): the proxy
# process (/proc/<pid>/stat), this script's children — wrk, or the baseline
# — (the shell's `times`: user + sys of waited-for children, so the RSS
# `times` marks' own awk calls are in it too), the host's busy, softirq
# (the kernel's loopback TCP work, in no process's account) and idle time
# (/proc/stat). PostgreSQL is the busy time left (the baseline's backends are
# gone when it exits, so it is not read per process); other processes on the
# host land there too.
TCK="$(getconf CLK_TCK)"
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
host_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7, $8, $5 + $6}' /proc/stat; } # busy-but-softirq softirq idle
children_ticks() { # user + sys of waited-for children, in ticks (run in this shell, not in $(…))
    times >"$OUT/times.txt"
    awk -v hz="$TCK" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { v = $i; split(v, a, "m"); sub(/s$/, "", a[2]); t += a[1] * 60 + a[2] }
        printf "%d\n", t * hz + 0.5 }' "$OUT/times.txt"
}
# CPU_MARK="<proxy> <children> <busy> <softirq> <idle>" (ticks)
cpu_mark() { children_ticks >"$OUT/children.txt"; CPU_MARK="$(proc_ticks "$PROXY_PID") $(cat "$OUT/children.txt") $(host_ticks)"; }
# "<ticks> per <requests>" -> microseconds of CPU per request
per_req() { awk -v t="$1" -v n="$2" -v hz="$TCK" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "nan" }'; }

RAW="$OUT/raw.tsv"
printf 'query\tround\tproxy_rps\tproxy_p99_ms\tbase_rps\tbase_p99_ms\tproxy_rss_kb\tproxy_rss_end_kb\tnon2xx\tp_proxy_us\tp_pg_us\tp_wrk_us\tp_softirq_us\tp_idle_us\tb_base_us\tb_pg_us\tb_softirq_us\tb_idle_us\n' >"$RAW"
for q in "${QUERIES[@]}"; do
    url="http://127.0.0.1:$PORT/data_points?${QSTR[$q]}"
    code="$(curl -s -o "$OUT/$q.body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$url")"
    [ "$code" = 200 ] || die "$q: HTTP $code $(cat "$OUT/$q.body")"
    log "$q: GET /data_points?${QSTR[$q]} -> $(wc -c <"$OUT/$q.body") bytes"
    # warm both up (statement caches, pool connections)
    wrk -t"$WRK_THREADS" -c"$CONC" -d2s -s "$OUT/auth.lua" "$url" >/dev/null
    for r in $(seq 1 "$ROUNDS"); do
        # the proxy's peak RSS during this run: reset its high-water mark
        # (clear_refs 5) and read VmHWM after — no sampler process forking
        # next to the proxy while it is measured
        echo 5 >"/proc/$PROXY_PID/clear_refs" 2>/dev/null || log "cannot reset VmHWM: RSS is the peak since start"
        cpu_mark; read -r pp0 ch0 bu0 si0 id0 <<<"$CPU_MARK"
        wrk -t"$WRK_THREADS" -c"$CONC" -d"${SECS}s" --latency -s "$OUT/auth.lua" "$url" >"$OUT/wrk.$q.$r.txt"
        cpu_mark; read -r pp1 ch1 bu1 si1 id1 <<<"$CPU_MARK"
        rss="$(awk '/VmHWM/{print $2}' "/proc/$PROXY_PID/status")"
        rss_end="$(awk '/VmRSS/{print $2}' "/proc/$PROXY_PID/status")"
        p_rps="$(awk '/^Requests\/sec/{print $2}' "$OUT/wrk.$q.$r.txt")"
        p_p99="$(awk '$1=="99%"{print $2}' "$OUT/wrk.$q.$r.txt" | to_ms)"
        non2xx="$(awk '/Non-2xx/{print $NF}' "$OUT/wrk.$q.$r.txt")"; non2xx="${non2xx:-0}"
        # baseline: same SQL, same pool size and concurrency
        cpu_mark; read -r _ bc0 bb0 bs0 bi0 <<<"$CPU_MARK"
        "$BASE" --db-uri "$DB_URI" --pool "$POOL" --threads "$THREADS" --concurrency "$CONC" --duration "$SECS" \
            --table data_points --query "${QSTR[$q]}" --tenant "$TENANT" --token "$TOKEN" >"$OUT/base.$q.$r.txt"
        cpu_mark; read -r _ bc1 bb1 bs1 bi1 <<<"$CPU_MARK"
        b_rps="$(sed -n 's/.*req_s=\([0-9.]*\).*/\1/p' "$OUT/base.$q.$r.txt")"
        b_p99="$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' "$OUT/base.$q.$r.txt")"
        # requests in each CPU window: wrk's; the baseline's 1 s warm-up
        # (not in its count) at its measured rate, its start-up left over
        p_n="$(awk -v r="$p_rps" -v s="$SECS" 'BEGIN { printf "%d", r * s }')"
        b_n="$(awk -v r="$b_rps" -v s="$SECS" 'BEGIN { printf "%d", r * (s + 1) }')"
        pp=$((pp1 - pp0)); ch=$((ch1 - ch0)); bc=$((bc1 - bc0))
        cpu_p="$(per_req $pp "$p_n") $(per_req $((bu1 - bu0 - pp - ch)) "$p_n") $(per_req $ch "$p_n") $(per_req $((si1 - si0)) "$p_n") $(per_req $((id1 - id0)) "$p_n")"
        cpu_b="$(per_req $bc "$b_n") $(per_req $((bb1 - bb0 - bc)) "$b_n") $(per_req $((bs1 - bs0)) "$b_n") $(per_req $((bi1 - bi0)) "$b_n")"
        log "$q round $r: proxy $p_rps req/s p99 ${p_p99} ms (RSS ${rss} kB, non-2xx $non2xx) | baseline $b_rps req/s p99 ${b_p99} ms"
        log "  CPU µs/request: proxy run (proxy postgres wrk softirq idle) $cpu_p | baseline run (baseline postgres softirq idle) $cpu_b"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$q" "$r" "$p_rps" "$p_p99" "$b_rps" "$b_p99" "$rss" "$rss_end" "$non2xx" \
            "$(echo "$cpu_p $cpu_b" | tr ' ' '\t')" >>"$RAW"
    done
done

echo
echo "tenancy-proxy vs tokio-postgres baseline: $CONC connections, pool $POOL, runtime threads $THREADS (0 = automatic: single-threaded on <= 2 cores), wrk threads $WRK_THREADS, ${SECS}s x $ROUNDS rounds (alternating), tenant $TENANT, $(nproc) CPUs shared by wrk, proxy, baseline and PostgreSQL"
echo
python3 - "$RAW" "${QNAME[pk]}" "${QNAME[embed]}" <<'PY'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
names = {"pk": sys.argv[2], "embed": sys.argv[3]}
print("| query | proxy req/s | baseline req/s | throughput ratio (≥ 0.8) | median of per-round ratios | proxy p99 ms | baseline p99 ms | p99 ratio (≤ 2) | proxy RSS under load | per-round throughput ratios |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for q in ("pk", "embed"):
    rs = [r for r in rows if r["query"] == q]
    f = lambda k: [float(r[k]) for r in rs]
    pr, br, pp, bp = st.median(f("proxy_rps")), st.median(f("base_rps")), st.median(f("proxy_p99_ms")), st.median(f("base_p99_ms"))
    rss = max(int(r["proxy_rss_kb"]) for r in rs) / 1024
    ratios = [float(r['proxy_rps'])/float(r['base_rps']) for r in rs]
    per = " ".join(f"{x:.2f}" for x in ratios)
    bad = sum(int(r["non2xx"]) for r in rs)
    print(f"| {names[q]} | {pr:.0f} | {br:.0f} | **{pr/br:.2f}** | {st.median(ratios):.2f} | {pp:.2f} | {bp:.2f} | **{pp/bp:.2f}** | {rss:.1f} MB | {per} |")
    if bad:
        print(f"\n(warning: {bad} non-2xx responses from the proxy for {q})")
print()
print("CPU per request, µs (both cores summed; medians over the rounds; /proc accounting; the baseline's include its start-up):")
print()
print("| query | run | proxy or baseline process | PostgreSQL (+ other) | wrk | kernel network (softirq) | idle | total |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for q in ("pk", "embed"):
    rs = [r for r in rows if r["query"] == q]
    m = lambda k: st.median(float(r[k]) for r in rs)
    p = [m("p_proxy_us"), m("p_pg_us"), m("p_wrk_us"), m("p_softirq_us"), m("p_idle_us")]
    b = [m("b_base_us"), m("b_pg_us"), 0.0, m("b_softirq_us"), m("b_idle_us")]
    print(f"| {names[q]} | proxy | {p[0]:.1f} | {p[1]:.1f} | {p[2]:.1f} | {p[3]:.1f} | {p[4]:.1f} | {sum(p):.1f} |")
    print(f"| {names[q]} | baseline | {b[0]:.1f} | {b[1]:.1f} | – | {b[3]:.1f} | {b[4]:.1f} | {sum(b):.1f} |")
end = int(rows[-1]["proxy_rss_end_kb"]) / 1024
print(f"\nMedians over the rounds; a round is the proxy then the baseline, back to back, so its ratio is paired against the host's drift. Proxy RSS under load: its peak during each wrk run (VmHWM, reset before the run), the largest shown; {end:.1f} MB at the end of the last run.")
PY
