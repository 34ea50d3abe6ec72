//! Baseline for `benches/proxy/run.sh`: the work tenancy-proxy does per GET
//! request, minus HTTP, JWT and rate limiting. A deadpool of `--pool`
//! connections as the proxy's login; per request one read-only transaction
//! with the proxy's `set_config` statement (role, claims, request settings,
//! search_path, `tenancy.tenant_id`) and the statement the proxy generates for
//! the same query string (tenancy_core's PostgREST SQL builder over the same
//! schema cache), run by `--concurrency` tasks for `--duration` seconds.
//! Prints one line: `req_s=… p50_ms=… p99_ms=… requests=… errors=…`.
//!
//! cargo run --release -p tenancy-proxy --example bench_baseline -- \
//!   --db-uri postgresql://authenticator@127.0.0.1:28815/pg_tenancy_demo \
//!   --table data_points --query 'id=eq.1' --tenant acme

use clap::Parser;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenancy_core::ident::quote_ident;
use tenancy_core::postgrest::{parse::parse_query, sql};
use tenancy_proxy::db::Untyped;
use tokio_postgres::types::ToSql;

#[derive(Parser, Debug)]
struct Args {
    /// The proxy's login (PGRST_DB_URI).
    #[arg(long, env = "PGRST_DB_URI")]
    db_uri: String,
    /// Pool size (match the proxy's PGRST_DB_POOL).
    #[arg(long, default_value_t = 10)]
    pool: usize,
    /// Concurrent tasks (wrk's -c).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up before measuring (not counted).
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Exposed schema.
    #[arg(long, default_value = "esg")]
    schema: String,
    /// Table (the URL path).
    #[arg(long)]
    table: String,
    /// PostgREST query string, e.g. `select=id,metrics(code)&metric_id=eq.3&limit=20`.
    #[arg(long, default_value = "")]
    query: String,
    /// The JWT's role claim.
    #[arg(long, default_value = "tenancy_member")]
    role: String,
    /// The JWT's tenant_id claim (uuid or slug).
    #[arg(long)]
    tenant: String,
    /// Bearer token, only to make request.headers the same size as the proxy's.
    #[arg(long, default_value = "")]
    token: String,
    /// PGRST_DB_AGGREGATES_ENABLED.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    aggregates: bool,
}

const SETUP: &str = "SELECT pg_catalog.set_config('role', $1, true), pg_catalog.set_config('request.jwt.claims', $2, true), \
     pg_catalog.set_config('request.method', $3, true), pg_catalog.set_config('request.path', $4, true), \
     pg_catalog.set_config('request.headers', $5, true), pg_catalog.set_config('search_path', $6, true), \
     pg_catalog.set_config('tenancy.tenant_id', $7, true)";

struct Work {
    sql: String,
    params: Vec<Option<String>>,
    role: String,
    claims: String,
    path: String,
    headers: String,
    search_path: String,
    tenant: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn one(pool: &Pool, w: &Work) -> Result<usize, BoxError> {
    let mut client = pool.get().await?;
    let tx = client.build_transaction().read_only(true).start().await?;
    let setup = tx.prepare_cached(SETUP).await?;
    let method = "GET".to_string();
    tx.query(
        &setup,
        &[
            &w.role,
            &w.claims,
            &method,
            &w.path,
            &w.headers,
            &w.search_path,
            &w.tenant,
        ],
    )
    .await?;
    let stmt = tx.prepare_cached(&w.sql).await?;
    let params: Vec<Untyped> = w.params.iter().cloned().map(Untyped).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let row = tx.query_one(&stmt, &refs).await?;
    let _total: Option<i64> = row.get(0);
    let _page: i64 = row.get(1);
    let body: Option<String> = row.get(2);
    let _headers: Option<String> = row.get(3);
    let _status: Option<String> = row.get(4);
    tx.commit().await?;
    Ok(body.map_or(0, |b| b.len()))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let pg: tokio_postgres::Config = args.db_uri.parse()?;
    let mgr = Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(mgr)
        .max_size(args.pool.max(1))
        .wait_timeout(Some(Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?;

    // The same statement the proxy builds for GET /<table>?<query>.
    let schema = {
        let client = pool.get().await?;
        tenancy_proxy::schema_cache::load(&client, std::slice::from_ref(&args.schema)).await?
    };
    let table = schema
        .table(&args.schema, &args.table)
        .cloned()
        .ok_or_else(|| format!("no table {}.{}", args.schema, args.table))?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(args.query.as_bytes())
        .into_owned()
        .collect();
    let query = parse_query(&pairs).map_err(|e| format!("{e:?}"))?;
    let opts = sql::Options {
        aggregates: args.aggregates,
        max_rows: None,
        csv: false,
    };
    let stmt = sql::read(&schema, &table, &query, &opts, false).map_err(|e| format!("{e:?}"))?;
    let claims = serde_json::json!({"role": args.role, "tenant_id": args.tenant}).to_string();
    let mut headers = serde_json::Map::new();
    headers.insert("host".into(), "127.0.0.1".into());
    if !args.token.is_empty() {
        headers.insert(
            "authorization".into(),
            format!("Bearer {}", args.token).into(),
        );
    }
    let work = Arc::new(Work {
        sql: stmt.sql,
        params: stmt.params,
        role: args.role.clone(),
        claims,
        path: format!("/{}", args.table),
        headers: serde_json::Value::Object(headers).to_string(),
        search_path: quote_ident(&args.schema),
        tenant: args.tenant.clone(),
    });
    let bytes = one(&pool, &work).await?;
    if bytes <= 2 {
        return Err(format!("the query returned no rows (body {bytes} bytes)").into());
    }

    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (pool, work) = (pool.clone(), work.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat_us: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let ok = one(&pool, &work).await.is_ok();
                if t0 >= measure_from {
                    if ok {
                        lat_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        errors += 1;
                    }
                }
            }
            (lat_us, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i] as f64 / 1000.0
    };
    println!(
        "req_s={:.1} p50_ms={:.3} p99_ms={:.3} requests={} errors={}",
        all.len() as f64 / args.duration as f64,
        pct(0.50),
        pct(0.99),
        all.len(),
        errors
    );
    Ok(())
}
