//! tenancy-proxy: a PostgREST-compatible HTTP API in front of pg_tenancy.
//!
//! Each request: verify the JWT, rate-limit by tenant, parse the query string
//! (tenancy_core::postgrest), build one parameterised statement, and run it
//! in one transaction after `set_config` of the role, the request settings,
//! the search_path and `tenancy.tenant_id` (all local to the transaction).

pub mod auth;
pub mod body;
pub mod config;
pub mod db;
pub mod db_config;
pub mod handler;
pub mod jobs;
pub mod lenient;
pub mod limits;
pub mod openapi;
pub mod pg;
pub mod schema_cache;
pub mod serve;
pub mod statements;

use axum::routing::get;
use axum::Router;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use tenancy_core::postgrest::schema::Schema;

pub use config::Config;

/// Shared state of one proxy.
pub struct AppState {
    /// The settings as the proxy started with them (before the database's
    /// `pgrst.*` settings): what cannot change while it runs (`db-uri`,
    /// the pool, listeners) is read here; the rest from [`AppState::live`].
    pub config: Config,
    /// `db-uri` parsed, with its TLS connector ([`pg`]).
    pub db: pg::Target,
    pub pool: Pool,
    pub schema: RwLock<Arc<Schema>>,
    pub loaded: AtomicBool,
    /// The settings in force ([`Live`]), replaced on `reload config`.
    live: RwLock<Arc<Live>>,
    pub limits: limits::Limits,
    pub metrics: PrometheusHandle,
    /// Asynchronous calls (`Prefer: respond-async`).
    pub jobs: Arc<jobs::Jobs>,
    /// Built read statements ([`statements`]).
    pub statements: statements::Statements,
    /// Request body bytes held at once ([`body`]).
    pub bodies: body::Budget,
}

/// The settings a running proxy re-reads on `NOTIFY pgrst, 'reload
/// config'` (or SIGUSR2): the config file and environment, then the
/// database's `pgrst.*` settings (`db-config`), with what is built from them.
pub struct Live {
    pub config: Config,
    pub schemas: Vec<String>,
    pub jwt: auth::Jwt,
    cors: Arc<tower_http::cors::CorsLayer>,
    /// `server-cors-allowed-origins` (empty: any origin).
    origins: Arc<[axum::http::HeaderValue]>,
    /// Settings of the roles requests switch to (`ALTER ROLE … SET`), read
    /// with the in-database configuration.
    pub roles: Arc<HashMap<String, db_config::RoleSettings>>,
    /// `db-hoisted-tx-settings`, lowercase.
    pub hoisted: Arc<[String]>,
}

impl Live {
    pub fn new(config: Config) -> Result<Live, String> {
        config.validate()?;
        if let Some(o) = config
            .cors_origins()
            .into_iter()
            .find(|o| axum::http::HeaderValue::from_str(o).is_err())
        {
            return Err(format!("server-cors-allowed-origins: invalid origin {o:?}"));
        }
        let jwt = auth::Jwt::new(
            config.jwt_secret.as_deref(),
            config.jwt_secret_is_base64,
            config.jwt_aud.as_deref(),
            &config.jwt_role_claim_key,
            config.db_anon_role.as_deref(),
            config.jwt_cache_max_lifetime,
        )?;
        for k in jwt.skipped_keys() {
            tracing::warn!("jwt-secret: {k}: not used");
        }
        let origins: Arc<[axum::http::HeaderValue]> = config
            .cors_origins()
            .iter()
            .filter_map(|o| axum::http::HeaderValue::from_str(o).ok())
            .collect();
        Ok(Live {
            roles: Arc::new(HashMap::new()),
            hoisted: config.hoisted_settings().into(),
            schemas: config.schemas(),
            cors: Arc::new(cors(&origins)),
            origins,
            jwt,
            config,
        })
    }
}

impl AppState {
    pub fn schema(&self) -> Arc<Schema> {
        self.schema.read().expect("schema lock").clone()
    }

    /// The settings in force.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().expect("settings lock").clone()
    }

    /// Settings from the database (`db-config`), then the schema cache.
    pub async fn load(&self) -> Result<(), String> {
        if self.config.db_config {
            self.reload_config().await?;
        }
        self.reload_schema().await
    }

    /// Re-read the settings: the config file and the environment again
    /// (when the proxy was started from them), then the database's
    /// `pgrst.*` settings unless `db-config` is off. A value that is not
    /// valid keeps the settings as they were.
    pub async fn reload_config(&self) -> Result<(), String> {
        let mut c = match &self.config.config_file {
            Some(_) if self.config.from_command_line => Config::load()?,
            _ => self.config.clone(),
        };
        let mut roles = None;
        if c.db_config {
            let client = self.pool.get().await.map_err(|e| pg::error_chain(&e))?;
            let pairs = db_config::read(&client, c.db_pre_config.as_deref()).await?;
            db_config::apply(&mut c, &pairs)?;
            roles = Some(db_config::role_settings(&client).await?);
        }
        let mut live = Live::new(c)?;
        if let Some(r) = roles {
            live.roles = Arc::new(r);
        }
        *self.live.write().expect("settings lock") = Arc::new(live);
        tracing::info!(target: "startup", "configuration loaded");
        Ok(())
    }

    /// Re-read the schema cache.
    pub async fn reload_schema(&self) -> Result<(), String> {
        let client = self.pool.get().await.map_err(|e| pg::error_chain(&e))?;
        // one snapshot of the catalog; and every statement prepared and
        // closed inside the transaction (PgBouncer's transaction pooling)
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| e.to_string())?;
        let schemas = self.live().schemas.clone();
        let loaded = schema_cache::load(&client, &schemas).await;
        let end = client
            .batch_execute(if loaded.is_ok() { "COMMIT" } else { "ROLLBACK" })
            .await;
        let mut s = loaded.map_err(|e| pg::error_chain(&e))?;
        end.map_err(|e| pg::error_chain(&e))?;
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        s.generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        *self.schema.write().expect("schema lock") = Arc::new(s);
        self.loaded.store(true, Ordering::SeqCst);
        tracing::info!(target: "startup", ?schemas, "schema cache loaded");
        Ok(())
    }

    /// Re-read every tenant's plan for the rate limits.
    pub async fn reload_limits(&self) {
        let Some(uri) = &self.config.admin_db_uri else {
            return;
        };
        let res = async {
            let client = pg::connect(uri).await?;
            client
                .query(
                    "SELECT id::text, slug, plan, nullif(settings->>'rate_limit_rps', '')::int FROM tenancy.tenants",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match res {
            Ok(rows) => {
                let rows = rows
                    .iter()
                    .map(|r| {
                        (
                            r.get::<_, String>(0),
                            r.get::<_, String>(1),
                            r.get::<_, Option<String>>(2),
                            r.get::<_, Option<i32>>(3).map(|v| v.max(0) as u32),
                        )
                    })
                    .collect();
                self.limits.set_tenants(rows);
            }
            Err(e) => tracing::warn!(error = %e, "could not read tenant plans for rate limits"),
        }
    }
}

fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .expect("buckets")
                .build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Build the state: pool, JWT key, limits. The schema cache loads in `start`.
pub fn state(mut config: Config) -> Result<Arc<AppState>, String> {
    // `db-uri = "@path"`: the connection string is in that file (PostgREST)
    if let Some(path) = config.db_uri.strip_prefix('@') {
        config.db_uri = std::fs::read_to_string(path)
            .map_err(|e| format!("db-uri: cannot read {path}: {e}"))?
            .trim()
            .to_string();
    }
    let live = Live::new(config.clone())?;
    let db = pg::target(&config.db_uri).map_err(|e| format!("db-uri: {e}"))?;
    if let Some(admin) = &config.admin_db_uri {
        pg::target(admin).map_err(|e| format!("admin-db-uri: {e}"))?;
    }
    let mgr = Manager::from_config(
        db.config.clone(),
        db.tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(mgr)
        .max_size(config.db_pool.max(1))
        .wait_timeout(Some(std::time::Duration::from_secs(
            config.db_pool_acquisition_timeout,
        )))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| e.to_string())?;
    let limits = limits::Limits::new(config.default_rate_limit, config.plan_limits());
    let jobs = Arc::new(jobs::Jobs::new(
        config.max_jobs,
        config.max_jobs_per_tenant,
        config.jobs_ttl_secs,
        db.tls.clone(),
    ));
    let metrics = metrics_handle();
    let statements = statements::Statements::new(config.statement_cache_bytes);
    let bodies = body::Budget::new(
        config.body_budget_bytes,
        std::time::Duration::from_secs(config.db_pool_acquisition_timeout),
    );
    Ok(Arc::new(AppState {
        db,
        config,
        pool,
        schema: RwLock::new(Arc::new(Schema::default())),
        loaded: AtomicBool::new(false),
        live: RwLock::new(Arc::new(live)),
        limits,
        metrics,
        jobs,
        statements,
        bodies,
    }))
}

/// The HTTP service: `/_tenancy/…` (health, readiness, metrics, jobs)
/// through an axum router; everything else straight to the PostgREST API
/// ([`handler::api`]) — no per-request router or middleware stack on the
/// hot path. CORS as PostgREST's wai-cors does it: only requests with an
/// `Origin` get CORS headers (every response carries `Vary: Origin`); an
/// `OPTIONS` without `Access-Control-Request-Method` is not a preflight and
/// goes to the API, which answers with `Allow`.
#[derive(Clone)]
pub struct App {
    state: Arc<AppState>,
    ops: Router,
}

type AppFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<axum::response::Response, Infallible>> + Send>,
>;

impl App {
    pub fn new(state: Arc<AppState>) -> App {
        let api = |axum::extract::State(st): axum::extract::State<Arc<AppState>>,
                   req: axum::extract::Request| handler::api(st, req);
        let ops = Router::new()
            .route("/_tenancy/health", get(handler::health))
            .route("/_tenancy/ready", get(handler::ready))
            .route("/_tenancy/metrics", get(handler::metrics))
            .route(
                "/_tenancy/jobs/{id}",
                get(jobs::status).delete(jobs::cancel),
            )
            .fallback(api)
            .with_state(state.clone());
        App { state, ops }
    }

    /// Without CORS.
    fn route(&self, req: axum::extract::Request) -> AppFuture {
        if req.uri().path().starts_with("/_tenancy/") {
            Box::pin(tower::ServiceExt::oneshot(self.ops.clone(), req))
        } else {
            let st = self.state.clone();
            Box::pin(async move { Ok(handler::api(st, req).await) })
        }
    }
}

impl tower::Service<axum::extract::Request> for App {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = AppFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: axum::extract::Request) -> AppFuture {
        use axum::http::{header, HeaderValue, Method};
        strip_supabase_prefix(&mut req);
        let h = req.headers();
        // an origin that is not allowed gets no CORS headers at all (wai-cors
        // with corsIgnoreFailures, as PostgREST configures it)
        let allowed = match h.get(header::ORIGIN) {
            None => false,
            Some(o) => {
                let live = self.state.live();
                live.origins.is_empty() || live.origins.contains(o)
            }
        };
        let cors = allowed
            && (req.method() != Method::OPTIONS
                || h.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD));
        if cors {
            let requested = h.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
            let app = self.clone();
            let layer = self.state.live().cors.clone();
            let svc = tower::Layer::layer(&*layer, tower::service_fn(move |req| app.route(req)));
            let fut = tower::ServiceExt::oneshot(svc, req);
            return Box::pin(async move {
                let mut r = fut.await?;
                cors_as_postgrest(r.headers_mut(), requested.as_ref());
                Ok(r)
            });
        }
        let fut = self.route(req);
        Box::pin(async move {
            let mut r = fut.await?;
            r.headers_mut()
                .append(header::VARY, HeaderValue::from_static("Origin"));
            Ok(r)
        })
    }
}

/// Supabase's URL layout: its clients (`createClient(url, key)` of
/// supabase-js, supabase-py, …) put the PostgREST API under `/rest/v1`,
/// which Supabase's gateway strips before PostgREST sees the request. The
/// proxy strips it too, so those clients work pointed straight at it. No
/// PostgREST request is shadowed: a path of more than one segment other
/// than `/rpc/fn` is never valid there (404 PGRST125).
fn strip_supabase_prefix(req: &mut axum::extract::Request) {
    const PREFIX: &str = "/rest/v1";
    let uri = req.uri();
    let Some(rest) = uri.path().strip_prefix(PREFIX) else {
        return;
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return;
    }
    let path = if rest.is_empty() { "/" } else { rest };
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    match path_and_query.parse() {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return,
    }
    if let Ok(u) = axum::http::Uri::from_parts(parts) {
        *req.uri_mut() = u;
    }
}

/// The service `axum::serve` runs: [`App`] under tower-http's request
/// trace layer (spans and events at DEBUG, failures at ERROR).
pub fn service(
    state: Arc<AppState>,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let traced = tower::Layer::layer(
        &tower_http::trace::TraceLayer::new_for_http(),
        App::new(state),
    );
    tower::ServiceExt::map_response(traced, |r: axum::http::Response<_>| {
        r.map(axum::body::Body::new)
    })
}

/// PostgREST's `Access-Control-Expose-Headers` (wai-cors as PostgREST
/// configures it), in its spelling.
const CORS_EXPOSED: &str = "Content-Encoding, Content-Location, Content-Range, Content-Type, \
     Date, Location, Server, Transfer-Encoding, Range-Unit";
const CORS_METHODS: &str = "GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD";

/// The CORS headers tower-http set, spelt as PostgREST (wai-cors) spells
/// them, so clients and tests comparing them byte for byte see the same
/// values: methods and exposed headers joined by `", "`, and a preflight's
/// allowed headers `Authorization`, the requested ones, then the simple
/// ones (`Accept`, `Accept-Language`, `Content-Language`), each once.
fn cors_as_postgrest(h: &mut axum::http::HeaderMap, requested: Option<&axum::http::HeaderValue>) {
    use axum::http::{header, HeaderValue};
    if h.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS) {
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(CORS_EXPOSED),
        );
    }
    if !h.contains_key(header::ACCESS_CONTROL_ALLOW_METHODS) {
        return; // not a preflight
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(CORS_METHODS),
    );
    let asked = requested.and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut names: Vec<&str> = Vec::new();
    let listed = std::iter::once("Authorization")
        .chain(asked.split(',').map(str::trim))
        .chain(["Accept", "Accept-Language", "Content-Language"]);
    for n in listed {
        if !n.is_empty() && !names.iter().any(|m| m.eq_ignore_ascii_case(n)) {
            names.push(n);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
}

/// CORS as PostgREST answers it: any origin (or those of
/// `server-cors-allowed-origins`, then with credentials allowed), the
/// request's headers allowed, PostgREST's exposed headers, preflights cached
/// for a day. Browsers can call the API directly (e.g. supabase-js in a web
/// page).
fn cors(origins: &[axum::http::HeaderValue]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, Method};
    use tower_http::cors::{AllowHeaders, AllowOrigin, Any, CorsLayer};
    let layer = if origins.is_empty() {
        CorsLayer::new().allow_origin(Any)
    } else {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_credentials(true)
    };
    layer
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
            Method::HEAD,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(
            [
                "content-encoding",
                "content-location",
                "content-range",
                "content-type",
                "date",
                "location",
                "server",
                "transfer-encoding",
                "range-unit",
            ]
            .map(HeaderName::from_static),
        )
        .max_age(std::time::Duration::from_secs(86_400))
}

/// Listen for `NOTIFY pgrst, 'reload schema'` and SIGUSR1; reload the cache.
/// The tasks' handles: [`Running::stop`] ends them.
/// `listening` is told when the first `LISTEN` is in place.
fn spawn_reloaders(
    state: Arc<AppState>,
    listening: tokio::sync::oneshot::Sender<()>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let st = state.clone();
    if st.config.db_channel_enabled {
        tasks.push(tokio::spawn(async move {
            let mut listening = Some(listening);
            let mut lost = false;
            loop {
                if let Err(e) = listen_once(&st, &mut listening, lost).await {
                    tracing::warn!(error = %e, "schema listener lost; retrying");
                }
                lost = true;
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }));
    }
    #[cfg(unix)]
    {
        let st = state.clone();
        tasks.push(tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut s) = signal(SignalKind::user_defined1()) else {
                return;
            };
            while s.recv().await.is_some() {
                let _ = st.reload_schema().await;
                st.reload_limits().await;
            }
        }));
        // SIGUSR2: the configuration (then the schema cache), as PostgREST
        let st = state.clone();
        tasks.push(tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut s) = signal(SignalKind::user_defined2()) else {
                return;
            };
            while s.recv().await.is_some() {
                if let Err(e) = st.reload_config().await {
                    tracing::error!(error = %e, "configuration not reloaded");
                }
                let _ = st.reload_schema().await;
            }
        }));
    }
    // `db-pool-max-idletime` / `db-pool-max-lifetime`: unused connections
    // past either are closed (a busy one is checked when it comes back)
    let st = state.clone();
    tasks.push(tokio::spawn(async move {
        let idle = std::time::Duration::from_secs(st.config.db_pool_max_idletime);
        let life = std::time::Duration::from_secs(st.config.db_pool_max_lifetime);
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            st.pool
                .retain(|_, m| m.last_used() < idle && m.age() < life);
        }
    }));
    // Histograms keep raw samples until drained: drain them periodically so
    // memory stays flat when nobody scrapes /metrics.
    let st = state.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            st.metrics.run_upkeep();
        }
    }));
    let st = state;
    tasks.push(tokio::spawn(async move {
        let every = std::time::Duration::from_secs(st.config.limits_refresh_secs.max(1));
        loop {
            st.reload_limits().await;
            st.limits.shed_idle();
            tokio::time::sleep(every).await;
        }
    }));
    tasks
}

/// One listening connection: `LISTEN`, then reload on each notification.
/// Once listening, `listening` is told (the first time); after a lost
/// connection (`missed`) the configuration and the schema cache are
/// reloaded, since notifications sent meanwhile went nowhere.
async fn listen_once(
    state: &Arc<AppState>,
    listening: &mut Option<tokio::sync::oneshot::Sender<()>>,
    missed: bool,
) -> Result<(), String> {
    use futures_util::StreamExt;
    let (client, mut conn) = state
        .db
        .config
        .connect(state.db.tls.clone())
        .await
        .map_err(|e| e.to_string())?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while let Some(m) = stream.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    let _ = tx.send(n.payload().to_string());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    client
        .batch_execute(&format!(
            "LISTEN {}",
            tenancy_core::ident::quote_ident(&state.config.db_channel)
        ))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(tx) = listening.take() {
        let _ = tx.send(());
    }
    if missed {
        tracing::info!("schema listener back; reloading the configuration and the schema cache");
        if state.config.db_config {
            if let Err(e) = state.reload_config().await {
                tracing::error!(error = %e, "configuration not reloaded");
            }
        }
        let _ = state.reload_schema().await;
        state.reload_limits().await;
    }
    while let Some(payload) = rx.recv().await {
        // PostgREST's payloads: `reload config`, `reload schema`, or none
        // for both; the schema follows a config reload (`db-schemas` may
        // have changed)
        if payload.is_empty() || payload == "reload config" {
            if let Err(e) = state.reload_config().await {
                tracing::error!(error = %e, "configuration not reloaded");
            }
        }
        if payload.is_empty() || payload == "reload schema" || payload == "reload config" {
            let _ = state.reload_schema().await;
            state.reload_limits().await;
        }
    }
    Err("listener connection closed".into())
}

/// A running proxy (for tests and embedding).
pub struct Running {
    /// The API's TCP address (unspecified when it listens on
    /// `server-unix-socket`).
    pub addr: SocketAddr,
    /// `admin-server-port`'s address: `/live`, `/ready`, `/metrics`.
    pub admin_addr: Option<SocketAddr>,
    pub state: Arc<AppState>,
    shutdown: tokio::sync::watch::Sender<bool>,
    join: Vec<tokio::task::JoinHandle<()>>,
    /// Schema and plan reloaders, metrics upkeep.
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        // running jobs are cancelled (their transactions roll back)
        self.state
            .jobs
            .shutdown(std::time::Duration::from_secs(5))
            .await;
        let _ = self.shutdown.send(true);
        // Graceful: in-flight requests finish; idle keep-alive connections
        // do not hold the process past the grace period.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        for j in &mut self.join {
            if tokio::time::timeout_at(deadline, &mut *j).await.is_err() {
                j.abort();
            }
        }
        if let Some(path) = &self.state.config.server_unix_socket {
            let _ = std::fs::remove_file(path);
        }
        // nothing keeps a connection open after stop: the listener's and
        // the pool's (idle ones close now, busy ones when returned)
        for t in &self.background {
            t.abort();
        }
        self.state.pool.close();
    }
}

/// The admin server (`admin-server-port`): PostgREST's `/live` and
/// `/ready`, and `/metrics`.
fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/live", get(handler::live))
        .route("/ready", get(handler::ready))
        .route("/metrics", get(handler::metrics))
        .with_state(state)
}

/// Load the schema cache, bind `addr` (or `server-unix-socket`) and the
/// admin port, and serve until `stop` is called.
pub async fn start(config: Config, addr: SocketAddr) -> Result<Running, String> {
    let state = state(config)?;
    let mut retry = None;
    if let Err(e) = state.load().await {
        if !state.config.db_pool_automatic_recovery {
            return Err(e);
        }
        // PostgREST's automatic recovery: serve 503 PGRST002 until the
        // schema cache loads
        tracing::error!(target: "startup", error = %e, "could not load the schema cache; retrying");
        let st = state.clone();
        retry = Some(tokio::spawn(async move {
            let mut wait = std::time::Duration::from_secs(1);
            loop {
                tokio::time::sleep(wait).await;
                match st.load().await {
                    Ok(()) => {
                        st.reload_limits().await;
                        return;
                    }
                    Err(e) => {
                        wait = (wait * 2).min(std::time::Duration::from_secs(32));
                        tracing::error!(target: "startup", error = %e, retry_in = ?wait, "could not load the schema cache");
                    }
                }
            }
        }));
    }
    state.reload_limits().await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let app = service(state.clone());
    let conn_limits = serve::ConnLimits::new(
        state.config.max_connections,
        state.config.header_read_timeout_ms,
    );
    let mut join = Vec::new();
    let mut bound = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0);
    if let Some(path) = &state.config.server_unix_socket {
        #[cfg(unix)]
        {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            // a socket left by an earlier run is replaced; any other file is not
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = std::fs::remove_file(path);
            }
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(|e| format!("server-unix-socket {path}: {e}"))?;
            let mode = config::unix_socket_mode(&state.config.server_unix_socket_mode)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("server-unix-socket {path}: {e}"))?;
            join.push(serve::serve(
                lenient::Lenient(listener),
                app,
                conn_limits,
                rx.clone(),
            ));
        }
        #[cfg(not(unix))]
        return Err(format!(
            "server-unix-socket {path}: unix sockets are not supported here"
        ));
    } else {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        bound = listener.local_addr().map_err(|e| e.to_string())?;
        // no Nagle delay on responses; request lines as PostgREST takes them
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        join.push(serve::serve(
            lenient::Lenient(listener),
            app,
            conn_limits,
            rx.clone(),
        ));
    }
    let mut admin_addr = None;
    if let Some(port) = state.config.admin_server_port {
        let at = SocketAddr::new(addr.ip(), port);
        let listener = tokio::net::TcpListener::bind(at)
            .await
            .map_err(|e| format!("admin-server-port: cannot listen on {at}: {e}"))?;
        admin_addr = Some(listener.local_addr().map_err(|e| e.to_string())?);
        join.push(serve::serve(
            listener,
            admin_router(state.clone()),
            conn_limits,
            rx.clone(),
        ));
    }
    let (listening, listen_rx) = tokio::sync::oneshot::channel();
    let mut background = spawn_reloaders(state.clone(), listening);
    background.extend(retry);
    // a NOTIFY sent right after start is not missed: wait (briefly: the
    // database may be down, see automatic recovery) for the LISTEN
    if state.config.db_channel_enabled {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), listen_rx).await;
    }
    Ok(Running {
        addr: bound,
        admin_addr,
        state,
        shutdown: tx,
        join,
        background,
    })
}
