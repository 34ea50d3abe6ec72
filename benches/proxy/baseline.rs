//! Baseline for `benches/proxy/run.sh`: the database work tenancy-proxy does
//! per GET request, minus HTTP, JWT and rate limiting. It calls the proxy's
//! own `tenancy_proxy::db::run` (same deadpool of `--pool` connections as the
//! proxy's login, same pipeline: BEGIN + `set_config` of role, claims,
//! request settings, search_path and `tenancy.tenant_id` + the statement +
//! COMMIT, one round trip once the statement is prepared on the connection) with the statement the proxy generates for the same
//! query string (tenancy_core's PostgREST SQL builder over the same schema
//! cache), from `--concurrency` tasks for `--duration` seconds — so the ratio
//! against the proxy measures the HTTP layer alone.
//! Prints one line: `req_s=… p50_ms=… p99_ms=… requests=… errors=…`.
//!
//! cargo run --release -p tenancy-proxy --example bench_baseline -- \
//!   --db-uri postgresql://authenticator@127.0.0.1:28815/pg_tenancy_demo \
//!   --table data_points --query 'id=eq.1' --tenant acme

use clap::Parser;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenancy_core::postgrest::{parse::parse_query, sql};
use tenancy_proxy::auth::Identity;
use tenancy_proxy::db::{self, Exec};
use tenancy_proxy::{AppState, Config};

/// The proxy's allocator (proxy/src/main.rs), so the two differ only by HTTP.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Runtime worker threads, as the proxy reads TENANCY_PROXY_THREADS (0 = automatic).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// PGRST_DB_AGGREGATES_ENABLED.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    aggregates: bool,
}

struct Work {
    statement: sql::Statement,
    identity: Identity,
    path: String,
    headers: String,
    schema: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn one(state: &Arc<AppState>, w: &Work) -> Result<usize, BoxError> {
    let exec = Exec {
        identity: w.identity.clone(),
        method: "GET".to_string(),
        path: w.path.clone(),
        headers_json: w.headers.clone(),
        cookies_json: "{}".to_string(),
        schema: w.schema.clone(),
        read_only: true,
        rollback: false,
        statement: w.statement.clone(),
        singular: false,
        settings: Vec::new(),
        isolation: None,
        plan: None,
        max_affected: None,
        limit_cap: None,
        explain: None,
    };
    // the client never goes away here; the proxy's handler holds the same
    // channel (see db::run)
    let (_alive, abandoned) = tokio::sync::oneshot::channel::<()>();
    let out = db::run(state.clone(), exec, abandoned)
        .await
        .map_err(|e| format!("{} {}", e.code, e.message))?;
    Ok(out.body.map_or(0, |b| b.len()))
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    // the same runtime choice as the proxy (see Config::threads)
    tenancy_proxy::config::runtime_builder(args.threads)
        .build()?
        .block_on(bench(args))
}

async fn bench(args: Args) -> Result<(), BoxError> {
    let config = Config::try_parse_from([
        "bench_baseline".to_string(),
        format!("--db-uri={}", args.db_uri),
        format!("--db-schemas={}", args.schema),
        format!("--db-pool={}", args.pool),
    ])?;
    let state = tenancy_proxy::state(config)?;
    // The same statement the proxy builds for GET /<table>?<query>.
    let schema = {
        let client = state.pool.get().await?;
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
        ..Default::default()
    };
    let stmt = sql::read(&schema, &table, &query, &opts, false).map_err(|e| format!("{e:?}"))?;
    let claims = serde_json::json!({"role": args.role, "tenant_id": args.tenant});
    let mut headers = serde_json::Map::new();
    headers.insert("host".into(), "127.0.0.1".into());
    if !args.token.is_empty() {
        headers.insert(
            "authorization".into(),
            format!("Bearer {}", args.token).into(),
        );
    }
    let work = Arc::new(Work {
        statement: stmt,
        identity: Identity::new(&args.role, claims, Some(args.tenant.clone()), true),
        path: format!("/{}", args.table),
        headers: serde_json::Value::Object(headers).to_string(),
        schema: args.schema.clone(),
    });
    let bytes = one(&state, &work).await?;
    if bytes <= 2 {
        return Err(format!("the query returned no rows (body {bytes} bytes)").into());
    }

    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (state, work) = (state.clone(), work.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat_us: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let ok = one(&state, &work).await.is_ok();
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
