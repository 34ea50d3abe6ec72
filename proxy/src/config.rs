//! Configuration: flags, PostgREST's environment names, and PostgREST's
//! config file format (`key = "value"` lines) as a positional argument.

use clap::{ArgAction, Parser};
use std::collections::HashMap;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "tenancy-proxy",
    version,
    about = "PostgREST-compatible HTTP API for pg_tenancy"
)]
pub struct Config {
    /// A PostgREST-style config file (`db-uri = "..."`); flags and env win.
    pub config_file: Option<String>,
    #[arg(
        long,
        env = "PGRST_DB_URI",
        hide_env_values = true,
        default_value = "postgresql://authenticator@127.0.0.1:5432/postgres"
    )]
    pub db_uri: String,
    /// Exposed schemas, comma-separated; the first is the default.
    #[arg(
        long,
        env = "PGRST_DB_SCHEMAS",
        alias = "db-schema",
        default_value = "public"
    )]
    pub db_schemas: String,
    #[arg(long, env = "PGRST_DB_ANON_ROLE")]
    pub db_anon_role: Option<String>,
    /// An HS256 secret (at least 32 characters), a JSON Web Key, or a JWK
    /// set (`{"keys": [...]}`); `@path` reads it from a file.
    #[arg(long, env = "PGRST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The secret is base64 (URL-safe characters accepted).
    #[arg(long, env = "PGRST_JWT_SECRET_IS_BASE64", alias = "secret-is-base64", default_value = "false", action = ArgAction::Set, value_parser = pgrst_bool)]
    pub jwt_secret_is_base64: bool,
    /// The audience a token must name in `aud` (when it has one).
    #[arg(long, env = "PGRST_JWT_AUD")]
    pub jwt_aud: Option<String>,
    /// Where the role is in the claims: `.role`, `.app_metadata.role`,
    /// `."https://example.com/claims".role`, `.roles[0]`.
    #[arg(
        long,
        env = "PGRST_JWT_ROLE_CLAIM_KEY",
        alias = "role-claim-key",
        default_value = ".role"
    )]
    pub jwt_role_claim_key: String,
    /// Seconds a verified token is kept (re-checked against exp/nbf on
    /// every use); 0 verifies every request.
    #[arg(long, env = "PGRST_JWT_CACHE_MAX_LIFETIME", default_value_t = 3600)]
    pub jwt_cache_max_lifetime: u64,
    /// A function called after the request settings, before the statement.
    #[arg(long, env = "PGRST_DB_PRE_REQUEST", alias = "pre-request")]
    pub db_pre_request: Option<String>,
    /// commit | commit-allow-override | rollback | rollback-allow-override
    #[arg(long, env = "PGRST_DB_TX_END", default_value = "commit",
          value_parser = ["commit", "commit-allow-override", "rollback", "rollback-allow-override"])]
    pub db_tx_end: String,
    /// Address to listen on: an IP, a host name, or PostgREST's `!4`/`*4`
    /// (any IPv4, the default, as in PostgREST), `!6`/`*6` (any IPv6), `*`.
    #[arg(long, env = "PGRST_SERVER_HOST", default_value = "!4")]
    pub server_host: String,
    #[arg(long, env = "PGRST_SERVER_PORT", default_value_t = 3000)]
    pub server_port: u16,
    /// Origins allowed to make CORS requests, comma-separated
    /// (`http://a.example, https://b.example`); unset or empty: any origin.
    /// A request from another origin is served without CORS headers (the
    /// browser then refuses the response), as PostgREST does.
    #[arg(long, env = "PGRST_SERVER_CORS_ALLOWED_ORIGINS")]
    pub server_cors_allowed_origins: Option<String>,
    /// Answer `Accept: application/vnd.pgrst.plan` with the statement's
    /// EXPLAIN (off by default: plans reveal table sizes and indexes).
    #[arg(long, env = "PGRST_DB_PLAN_ENABLED", default_value = "false", action = ArgAction::Set, value_parser = pgrst_bool)]
    pub db_plan_enabled: bool,
    #[arg(long, env = "PGRST_DB_MAX_ROWS", alias = "max-rows")]
    pub db_max_rows: Option<u64>,
    #[arg(long, env = "PGRST_DB_AGGREGATES_ENABLED", default_value = "false", action = ArgAction::Set, value_parser = pgrst_bool)]
    pub db_aggregates_enabled: bool,
    #[arg(long, env = "PGRST_DB_POOL", default_value_t = 10)]
    pub db_pool: usize,
    /// Extra schemas on the search_path after the request's schema.
    #[arg(long, env = "PGRST_DB_EXTRA_SEARCH_PATH", default_value = "public")]
    pub db_extra_search_path: String,
    /// Function settings (`CREATE FUNCTION … SET name = value`) applied to
    /// the whole transaction of an RPC call, as PostgREST's
    /// `db-hoisted-tx-settings` (names, comma-separated).
    #[arg(
        long,
        env = "PGRST_DB_HOISTED_TX_SETTINGS",
        default_value = "statement_timeout,plan_filter.statement_cost_limit,default_transaction_isolation"
    )]
    pub db_hoisted_tx_settings: String,
    /// What `GET /` describes: `follow-privileges` (what the request's role
    /// may use), `ignore-privileges` (everything exposed) or `disabled`
    /// (404 `PGRST126`).
    #[arg(long, env = "PGRST_OPENAPI_MODE", default_value = "follow-privileges")]
    pub openapi_mode: String,
    /// Add `security` and `securityDefinitions` (a bearer JWT) to the
    /// OpenAPI document.
    #[arg(long, env = "PGRST_OPENAPI_SECURITY_ACTIVE", default_value = "false", action = ArgAction::Set, value_parser = pgrst_bool)]
    pub openapi_security_active: bool,
    /// The public URI the API is reached at behind a reverse proxy
    /// (`https://api.example.com/v1`): the document's `host`, `basePath`
    /// and `schemes`.
    #[arg(long, env = "PGRST_OPENAPI_SERVER_PROXY_URI")]
    pub openapi_server_proxy_uri: Option<String>,
    /// A function (`root` or `schema.root`) whose result answers `GET /`
    /// instead of the OpenAPI document.
    #[arg(long, env = "PGRST_DB_ROOT_SPEC", alias = "root-spec")]
    pub db_root_spec: Option<String>,
    /// A request header (`X-Request-Id`) copied onto the response.
    #[arg(long, env = "PGRST_SERVER_TRACE_HEADER")]
    pub server_trace_header: Option<String>,
    /// Send `Server-Timing` (jwt, parse, plan, transaction, response in ms).
    #[arg(long, env = "PGRST_SERVER_TIMING_ENABLED", default_value = "false", action = ArgAction::Set, value_parser = pgrst_bool)]
    pub server_timing_enabled: bool,
    /// Listen on this unix socket instead of `server-host:server-port`.
    #[arg(long, env = "PGRST_SERVER_UNIX_SOCKET")]
    pub server_unix_socket: Option<String>,
    /// The unix socket's permissions, octal 600 to 777.
    #[arg(long, env = "PGRST_SERVER_UNIX_SOCKET_MODE", default_value = "660")]
    pub server_unix_socket_mode: String,
    /// A second port with `/live`, `/ready` and `/metrics` only (for
    /// health checks that must not pass through the API).
    #[arg(long, env = "PGRST_ADMIN_SERVER_PORT")]
    pub admin_server_port: Option<u16>,
    /// `crit`, `error`, `warn`, `info` (default here) or `debug`;
    /// `RUST_LOG`, when set, wins.
    #[arg(long, env = "PGRST_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// The channel listened on for `NOTIFY <channel>, 'reload schema'`.
    #[arg(long, env = "PGRST_DB_CHANNEL", default_value = "pgrst")]
    pub db_channel: String,
    /// Listen on `db-channel` (off behind PgBouncer transaction pooling;
    /// SIGUSR1 still reloads).
    #[arg(long, env = "PGRST_DB_CHANNEL_ENABLED", default_value = "true", action = ArgAction::Set, value_parser = pgrst_bool)]
    pub db_channel_enabled: bool,
    /// Seconds a request waits for a pooled connection before 504 `PGRST003`.
    #[arg(long, env = "PGRST_DB_POOL_ACQUISITION_TIMEOUT", default_value_t = 10)]
    pub db_pool_acquisition_timeout: u64,
    /// Seconds a pooled connection lives before it is replaced (when idle).
    #[arg(long, env = "PGRST_DB_POOL_MAX_LIFETIME", default_value_t = 1800)]
    pub db_pool_max_lifetime: u64,
    /// Seconds an unused pooled connection stays open.
    #[arg(
        long,
        env = "PGRST_DB_POOL_MAX_IDLETIME",
        alias = "db-pool-timeout",
        default_value_t = 30
    )]
    pub db_pool_max_idletime: u64,
    /// When the database cannot be reached at start, keep retrying (1 s,
    /// doubling up to 32 s) and answer 503 `PGRST002` meanwhile; `false`:
    /// exit instead.
    #[arg(long, env = "PGRST_DB_POOL_AUTOMATIC_RECOVERY", default_value = "true", action = ArgAction::Set, value_parser = pgrst_bool)]
    pub db_pool_automatic_recovery: bool,
    /// Keep statements prepared on each connection; `false` sends every
    /// statement unnamed (for PgBouncer in transaction pooling mode).
    #[arg(long, env = "PGRST_DB_PREPARED_STATEMENTS", default_value = "true", action = ArgAction::Set, value_parser = pgrst_bool)]
    pub db_prepared_statements: bool,
    /// A connection that may read every tenant's plan (e.g. a tenancy_superadmin login);
    /// without it every tenant gets the default limit.
    #[arg(long, env = "TENANCY_ADMIN_DB_URI", hide_env_values = true)]
    pub admin_db_uri: Option<String>,
    /// Requests per second per tenant, by plan: `starter=20,pro=100,enterprise=500`.
    #[arg(
        long,
        env = "TENANCY_PLAN_RATE_LIMITS",
        default_value = "starter=20,pro=100,enterprise=500"
    )]
    pub plan_rate_limits: String,
    /// Requests per second for a tenant without a known plan (0 = unlimited).
    #[arg(long, env = "TENANCY_DEFAULT_RATE_LIMIT", default_value_t = 50)]
    pub default_rate_limit: u32,
    /// Requests per second for requests without a tenant (anonymous, or a
    /// token without `tenant_id`), one bucket per role (0 = unlimited).
    #[arg(long, env = "TENANCY_ANON_RATE_LIMIT", default_value_t = 50)]
    pub anon_rate_limit: u32,
    /// How often tenant plans are re-read.
    #[arg(long, env = "TENANCY_LIMITS_REFRESH_SECS", default_value_t = 30)]
    pub limits_refresh_secs: u64,
    /// Asynchronous calls (`Prefer: respond-async`) running at once; each
    /// holds its own database connection, outside the pool (0 = none allowed).
    #[arg(long, env = "TENANCY_MAX_JOBS", default_value_t = 4)]
    pub max_jobs: usize,
    /// Of those, how many one tenant (the token's `tenant_id`; tokens
    /// without one form one group) may run at once, so a tenant cannot take
    /// every slot (0 = no per-tenant cap).
    #[arg(long, env = "TENANCY_MAX_JOBS_PER_TENANT", default_value_t = 2)]
    pub max_jobs_per_tenant: usize,
    /// How long a finished job's status and result stay readable.
    #[arg(long, env = "TENANCY_JOBS_TTL_SECS", default_value_t = 3600)]
    pub jobs_ttl_secs: u64,
    /// The largest request body accepted (bulk inserts, CSV); larger ones
    /// get 413 with a JSON error.
    #[arg(long, env = "TENANCY_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Request body bytes held by all requests at once; a body that does
    /// not fit waits up to `db-pool-acquisition-timeout` seconds, then gets
    /// 503 (see [`crate::body`]). 0 = no budget.
    #[arg(long, env = "TENANCY_BODY_BUDGET_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub body_budget_bytes: usize,
    /// Milliseconds a client has to send a request's line and headers,
    /// counted from the end of the previous response on a kept-alive
    /// connection; past it the connection is closed (slow clients cannot
    /// hold connections open by trickling headers). 0 = no limit.
    #[arg(long, env = "TENANCY_HEADER_READ_TIMEOUT_MS", default_value_t = 30_000)]
    pub header_read_timeout_ms: u64,
    /// Client connections served at once, per listener; further clients
    /// wait in the kernel's listen backlog until one closes. 0 = the
    /// process's open-file limit less 256 (pool, jobs, files).
    #[arg(long, env = "TENANCY_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,
    /// Bytes of built read statements kept for reuse by requests with the
    /// same resource, query string and headers that shape the statement
    /// (0 = build every statement).
    #[arg(long, env = "TENANCY_STATEMENT_CACHE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub statement_cache_bytes: u64,
    /// Statements kept prepared on each pooled connection (client and
    /// backend memory); past it the connection's are closed and prepared
    /// again as needed. 0 = no bound.
    #[arg(long, env = "TENANCY_PREPARED_STATEMENTS", default_value_t = 512)]
    pub prepared_statements_per_connection: usize,
    /// Log format: text or json.
    #[arg(long, env = "TENANCY_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Worker threads of the async runtime (0 = automatic: a
    /// single-threaded runtime on a host with one or two cores, one worker
    /// per core otherwise; 1 = single-threaded; see [`runtime_threads`]).
    #[arg(long, env = "TENANCY_PROXY_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Read settings from the database too (`pgrst.*`, see
    /// [`crate::db_config`]); they win over flags, environment and file.
    #[arg(long, env = "PGRST_DB_CONFIG", default_value = "true", action = ArgAction::Set, value_parser = pgrst_bool)]
    pub db_config: bool,
    /// A function (`schema.name`) that sets `pgrst.*` settings with
    /// `set_config(…, true)`; read with the role settings.
    #[arg(long, env = "PGRST_DB_PRE_CONFIG")]
    pub db_pre_config: Option<String>,
    /// Set by [`Config::load`]: a reload re-reads the command line, the
    /// environment and the config file.
    #[arg(skip)]
    pub from_command_line: bool,
    /// PostgREST's `app.settings.*`: set (transaction-local) on every
    /// request's transaction, for SQL to read with `current_setting`. From
    /// the config file (`app.settings.jwt_exp = "3600"`) and the environment
    /// (`PGRST_APP_SETTINGS_JWT_EXP=3600`, which wins).
    #[arg(skip)]
    pub app_settings: Vec<(String, String)>,
}

/// The runtime's worker threads for a `threads` setting on a host with
/// `cores` cores: `1` means a single-threaded runtime. `0` is automatic:
/// on one or two cores a single thread (measured on 2 vCPUs shared with
/// PostgreSQL: ~10 % more requests per second, and a p99 of 1.5× the floor
/// where one worker per core had stalls of tens of milliseconds — Tokio's
/// cross-thread wake-ups and work stealing cost more than a second worker
/// gains there; benches/proxy/README.md); one per core beyond.
pub fn runtime_threads(threads: usize, cores: usize) -> usize {
    match threads {
        0 if cores <= 2 => 1,
        0 => cores,
        n => n,
    }
}

/// [`runtime_threads`] on this host.
pub fn host_runtime_threads(threads: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    runtime_threads(threads, cores)
}

/// The Tokio runtime for `threads` ([`host_runtime_threads`]): one thread
/// runs everything on the calling thread, no cross-thread wake-ups; more
/// are that many workers. Shared by the proxy and the benchmark baseline.
pub fn runtime_builder(threads: usize) -> tokio::runtime::Builder {
    let threads = host_runtime_threads(threads);
    let mut rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if threads > 1 {
        rt.worker_threads(threads);
    }
    rt.enable_all();
    rt
}

impl Config {
    /// `server-cors-allowed-origins` as a list (empty: any origin).
    pub fn cors_origins(&self) -> Vec<String> {
        self.server_cors_allowed_origins
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Settings that can be wrong in ways clap cannot see; checked before
    /// anything starts, as PostgREST refuses them at startup.
    pub fn validate(&self) -> Result<(), String> {
        OpenApiMode::parse(&self.openapi_mode)?;
        if let Some(u) = &self.openapi_server_proxy_uri {
            ProxyUri::parse(u)?;
        }
        unix_socket_mode(&self.server_unix_socket_mode)?;
        log_filter(&self.log_level)?;
        if let Some(h) = &self.server_trace_header {
            axum::http::HeaderName::try_from(h.as_str())
                .map_err(|_| format!("server-trace-header: {h:?} is not a header name"))?;
        }
        if self.db_channel.is_empty() {
            return Err("db-channel: empty".into());
        }
        Ok(())
    }

    pub fn openapi(&self) -> OpenApiMode {
        OpenApiMode::parse(&self.openapi_mode).unwrap_or(OpenApiMode::FollowPrivileges)
    }

    pub fn schemas(&self) -> Vec<String> {
        self.db_schemas
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// `db-hoisted-tx-settings` as lowercase names.
    pub fn hoisted_settings(&self) -> Vec<String> {
        self.db_hoisted_tx_settings
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn plan_limits(&self) -> HashMap<String, u32> {
        self.plan_rate_limits
            .split(',')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.trim().to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// A config for tests and embedding, with defaults for everything else.
    pub fn for_uri(db_uri: &str, schemas: &str) -> Config {
        let mut c = Config::parse_from(["tenancy-proxy"]);
        c.db_uri = db_uri.to_string();
        c.db_schemas = schemas.to_string();
        c
    }

    /// Parse flags and environment; values from a config file fill in what is unset.
    /// A PostgREST config file may hold keys this proxy does not know
    /// (`openapi-mode`, `log-level`, ...): those are skipped with a warning
    /// on stderr instead of refusing to start.
    pub fn load() -> Result<Config, String> {
        let env = |n: &str| std::env::var(n).ok();
        let first = Config::parse();
        let Some(path) = &first.config_file else {
            let args = Config::args_with_env_aliases(std::env::args().collect(), env);
            let mut c = Config::try_parse_from(args)
                .map_err(|e| e.to_string())?
                .with_app_settings(Vec::new(), std::env::vars());
            c.from_command_line = true;
            return Ok(c);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {path}: {e}"))?;
        let (args, app) = Config::args_with_file(&text, std::env::args().collect(), env)
            .map_err(|e| format!("config file {path}: {e}"))?;
        let args = Config::args_with_env_aliases(args, env);
        let mut c = Config::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .with_app_settings(app, std::env::vars());
        c.from_command_line = true;
        Ok(c)
    }

    /// The command line with a config file's settings added as flags where
    /// neither a flag nor the environment set them (PostgREST's order: the
    /// environment wins over the file), and the file's `app.settings.*`.
    /// PostgREST's older names (`max-rows`, `pre-request`, `db-schema`,
    /// `role-claim-key`, `secret-is-base64`, `db-pool-timeout`) are
    /// accepted; unknown keys are skipped with a warning.
    pub fn args_with_file(
        text: &str,
        mut args: Vec<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Vec<String>, Settings), String> {
        let mut known: HashMap<String, (String, Option<String>)> = HashMap::new();
        for a in <Config as clap::CommandFactory>::command().get_arguments() {
            let Some(long) = a.get_long() else { continue };
            let var = a.get_env().map(|e| e.to_string_lossy().into_owned());
            for name in std::iter::once(long).chain(a.get_all_aliases().into_iter().flatten()) {
                known.insert(name.to_string(), (long.to_string(), var.clone()));
            }
        }
        let mut app = Vec::new();
        for (k, v) in parse_config_file(text, &env)? {
            if k.starts_with(APP_SETTINGS) {
                app.push((k, v));
                continue;
            }
            let Some((long, var)) = known.get(&k) else {
                eprintln!("tenancy-proxy: config file: ignoring unsupported setting {k}");
                continue;
            };
            let flag = format!("--{long}");
            let given = args
                .iter()
                .any(|a| a == &flag || a.starts_with(&format!("{flag}=")));
            // the environment wins over the file for the same spelling: the
            // setting's own variable, or the old name's (`PGRST_MAX_ROWS`
            // over a file's `max-rows`, added by `args_with_env_aliases`)
            let in_env = var.as_deref().is_some_and(|e| set(env(e)))
                || (k != *long && set(env(&env_name(&k))));
            if !in_env && !given {
                args.push(format!("{flag}={v}"));
            }
        }
        Ok((args, app))
    }

    /// PostgREST's older names read from the environment too, as PostgREST
    /// reads every spelling of a setting from `PGRST_<NAME>`:
    /// `PGRST_DB_SCHEMA`, `PGRST_MAX_ROWS`, `PGRST_PRE_REQUEST`,
    /// `PGRST_ROOT_SPEC`, `PGRST_ROLE_CLAIM_KEY`, `PGRST_SECRET_IS_BASE64`,
    /// `PGRST_DB_POOL_TIMEOUT` — added as the setting's flag when neither the
    /// command line, the setting's own variable nor (called after
    /// [`Config::args_with_file`]) the config file under its current name
    /// set it: PostgREST tries the current name (environment, then file)
    /// before the old one. An empty variable counts as unset, as in
    /// PostgREST.
    pub fn args_with_env_aliases(
        mut args: Vec<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Vec<String> {
        for a in <Config as clap::CommandFactory>::command().get_arguments() {
            let (Some(long), Some(var)) = (a.get_long(), a.get_env()) else {
                continue;
            };
            if !var.to_string_lossy().starts_with("PGRST_") || set(env(&var.to_string_lossy())) {
                continue;
            }
            let flag = format!("--{long}");
            if args
                .iter()
                .any(|a| a == &flag || a.starts_with(&format!("{flag}=")))
            {
                continue;
            }
            let old = a.get_all_aliases().into_iter().flatten();
            if let Some(v) = old
                .filter_map(|name| env(&env_name(name)))
                .find(|v| !v.is_empty())
            {
                args.push(format!("{flag}={v}"));
            }
        }
        args
    }

    /// `app.settings.*` from the config file's pairs and the environment's
    /// `PGRST_APP_SETTINGS_<NAME>` (lower-cased, as PostgREST does); the
    /// environment wins; sorted by name.
    pub fn with_app_settings(
        mut self,
        file: Vec<(String, String)>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Config {
        let mut all: std::collections::BTreeMap<String, String> = file.into_iter().collect();
        for (k, v) in env {
            if let Some(name) = k
                .strip_prefix("PGRST_APP_SETTINGS_")
                .filter(|n| !n.is_empty())
            {
                all.insert(format!("{APP_SETTINGS}{}", name.to_lowercase()), v);
            }
        }
        self.app_settings = all.into_iter().collect();
        self
    }
}

/// The environment variable PostgREST reads a setting from:
/// `db-schema` → `PGRST_DB_SCHEMA`.
fn env_name(setting: &str) -> String {
    format!("PGRST_{}", setting.to_uppercase().replace('-', "_"))
}

/// Whether an environment variable sets its setting (empty means unset, as
/// in PostgREST).
fn set(v: Option<String>) -> bool {
    v.is_some_and(|v| !v.is_empty())
}

/// A boolean setting as PostgREST reads one: `true`/`false` in any case,
/// or an integer (above 0 is true), so `PGRST_DB_PLAN_ENABLED=1` works.
pub fn pgrst_bool(s: &str) -> Result<bool, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if t.eq_ignore_ascii_case("false") {
        Ok(false)
    } else if let Ok(n) = t.parse::<i128>() {
        Ok(n > 0)
    } else {
        Err(format!(
            "{s:?} is not a boolean (true, false, or a number: above 0 is true)"
        ))
    }
}

/// `openapi-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenApiMode {
    FollowPrivileges,
    IgnorePrivileges,
    Disabled,
}

impl OpenApiMode {
    pub fn parse(s: &str) -> Result<OpenApiMode, String> {
        match s {
            "follow-privileges" => Ok(OpenApiMode::FollowPrivileges),
            "ignore-privileges" => Ok(OpenApiMode::IgnorePrivileges),
            "disabled" => Ok(OpenApiMode::Disabled),
            _ => Err(format!(
                "openapi-mode: {s:?} is not one of follow-privileges, ignore-privileges, disabled"
            )),
        }
    }
}

/// `openapi-server-proxy-uri` as the OpenAPI document states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUri {
    pub scheme: String,
    /// `host:port`, the port the scheme's default when not given.
    pub host: String,
    pub base_path: String,
}

impl ProxyUri {
    /// An absolute `http`/`https` URI with a host; anything else is the
    /// startup error PostgREST gives ("Malformed proxy uri").
    pub fn parse(s: &str) -> Result<ProxyUri, String> {
        let bad = || {
            format!("openapi-server-proxy-uri: malformed proxy uri {s:?} (expected http(s)://host[:port][/path])")
        };
        let u = url::Url::parse(s).map_err(|_| bad())?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(bad());
        }
        let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        let port = u.port_or_known_default().ok_or_else(bad)?;
        Ok(ProxyUri {
            scheme: u.scheme().to_string(),
            host: format!("{host}:{port}"),
            base_path: u.path().to_string(),
        })
    }
}

/// `server-unix-socket-mode`: octal, 600 to 777 (the owner must be able to
/// read and write it).
pub fn unix_socket_mode(s: &str) -> Result<u32, String> {
    let bad = || format!("server-unix-socket-mode: {s:?} is not an octal mode from 600 to 777");
    let m = u32::from_str_radix(s.trim(), 8).map_err(|_| bad())?;
    if (0o600..=0o777).contains(&m) {
        Ok(m)
    } else {
        Err(bad())
    }
}

/// `log-level` as a tracing filter. Startup lines (the address, the
/// schema cache) are always logged, as PostgREST does at every level;
/// `crit` is `error` here.
pub fn log_filter(level: &str) -> Result<&'static str, String> {
    match level {
        "crit" | "error" => Ok("error,startup=info"),
        "warn" => Ok("warn,startup=info"),
        "info" => Ok("info,tower_http=info"),
        "debug" => Ok("debug,tokio_postgres=info,hyper=info"),
        _ => Err(format!(
            "log-level: {level:?} is not one of crit, error, warn, info, debug"
        )),
    }
}

const APP_SETTINGS: &str = "app.settings.";

/// `(name, value)` pairs.
pub type Settings = Vec<(String, String)>;

/// PostgREST's config file (configurator-pg syntax, one `key = value` per
/// line): `#` comments, also after a value; double-quoted strings with the
/// escapes `\"` `\\` `\n` `\t` `\r` and `\u` with four hex digits, in which `$(NAME)` is the
/// environment variable NAME and `$$` a `$`; `on`/`off` for `true`/`false`;
/// numbers and other bare words as written.
/// `env` looks a variable up (tests pass their own).
pub fn parse_config_file(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", n + 1);
        let l = line.trim();
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| at("expected `key = value`".into()))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(at("a setting without a name".into()));
        }
        let value = if let Some(body) = v.strip_prefix('"') {
            let (raw, rest) = quoted(body).ok_or_else(|| at("unterminated string".into()))?;
            let rest = rest.trim_start();
            if !(rest.is_empty() || rest.starts_with('#')) {
                return Err(at(format!("unexpected {rest:?} after the string")));
            }
            interpolate(&unescape(raw).map_err(at)?, &env).map_err(at)?
        } else {
            let bare = v.split('#').next().unwrap_or("").trim();
            match bare {
                "on" | "true" => "true".to_string(),
                "off" | "false" => "false".to_string(),
                "" => return Err(at(format!("{k}: no value"))),
                // PostgREST wants strings quoted; a bare word is taken as is
                b => b.to_string(),
            }
        };
        out.push((k.to_string(), value));
    }
    Ok(out)
}

/// The string body up to its closing quote (escapes kept), and what follows.
fn quoted(body: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some((&body[..i], &body[i + 1..])),
            _ => {}
        }
    }
    None
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let ch = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("bad escape \\u{hex}"))?;
                out.push(ch);
            }
            other => {
                return Err(format!(
                    "bad escape \\{} (use \\\\ for a backslash)",
                    other.map(String::from).unwrap_or_default()
                ))
            }
        }
    }
    Ok(out)
}

/// `$(NAME)` → the environment variable, `$$` → `$`; an unset variable or
/// a lone `$` is an error, as in PostgREST.
fn interpolate(s: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            let end = r
                .find(')')
                .filter(|&e| e > 0)
                .ok_or("`$(` without a name and `)` (write `$$` for a `$`)")?;
            let name = &r[..end];
            out.push_str(
                &env(name).ok_or_else(|| format!("$({name}): no such environment variable"))?,
            );
            rest = &r[end + 1..];
        } else {
            return Err("a lone `$` (write `$$` for a `$`, `$(NAME)` for a variable)".into());
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_threads_auto() {
        // automatic: one thread on one or two cores, a worker per core beyond
        assert_eq!(runtime_threads(0, 1), 1);
        assert_eq!(runtime_threads(0, 2), 1);
        assert_eq!(runtime_threads(0, 3), 3);
        assert_eq!(runtime_threads(0, 16), 16);
        // an explicit setting is kept
        assert_eq!(runtime_threads(1, 16), 1);
        assert_eq!(runtime_threads(4, 2), 4);
    }

    #[test]
    fn config_file_lines() {
        let env = |n: &str| (n == "SECRET").then(|| "s3cr$t".to_string());
        let kv = parse_config_file(
            concat!(
                "# c\ndb-uri = \"postgres://x\"\ndb-max-rows = 10 # rows\n",
                "jwt-secret = \"{ \\\"alg\\\":\\\"RS256\\\" } # comment\"\n",
                "db-aggregates-enabled = on\n",
                "app.settings.key = \"$(SECRET)-$$-\\u00e9\\t\\\\\" # trailing\n",
            ),
            env,
        )
        .unwrap();
        assert_eq!(
            kv,
            vec![
                ("db-uri".into(), "postgres://x".into()),
                ("db-max-rows".into(), "10".into()),
                ("jwt-secret".into(), r#"{ "alg":"RS256" } # comment"#.into()),
                ("db-aggregates-enabled".into(), "true".into()),
                ("app.settings.key".into(), "s3cr$t-$-\u{e9}\t\\".into()),
            ]
        );
        for bad in [
            "a = \"open",
            "a = \"x\" y",
            "a = ",
            "a = \"$(NOPE)\"",
            "a = \"$x\"",
            "a = \"$()\"",
            "a = \"\\q\"",
            "no equals sign",
            " = 1",
        ] {
            let e = parse_config_file(bad, env).unwrap_err();
            assert!(e.starts_with("line 1: "), "{bad}: {e}");
        }
    }

    #[test]
    fn booleans_as_postgrest_reads_them() {
        for (v, want) in [
            ("true", true),
            ("TRUE", true),
            ("True", true),
            (" false ", false),
            ("FaLsE", false),
            ("1", true),
            ("2", true),
            ("0", false),
            ("-1", false),
        ] {
            assert_eq!(pgrst_bool(v), Ok(want), "{v}");
        }
        for bad in ["", "yes", "on", "1.5", "truthy"] {
            assert!(pgrst_bool(bad).is_err(), "{bad}");
        }
        // every boolean setting, from flags (env and file go the same way)
        let c = Config::try_parse_from([
            "p",
            "--db-plan-enabled=1",
            "--db-aggregates-enabled=TRUE",
            "--db-prepared-statements=0",
            "--openapi-security-active=True",
            "--db-config=False",
        ])
        .unwrap();
        assert!(c.db_plan_enabled && c.db_aggregates_enabled && c.openapi_security_active);
        assert!(!c.db_prepared_statements && !c.db_config);
        let e = Config::try_parse_from(["p", "--db-plan-enabled=maybe"]).unwrap_err();
        assert!(e.to_string().contains("not a boolean"), "{e}");
    }

    #[test]
    fn app_settings_from_file_and_env() {
        let c = Config::for_uri("postgres://x", "a").with_app_settings(
            vec![
                ("app.settings.jwt_exp".into(), "60".into()),
                ("app.settings.name".into(), "file".into()),
            ],
            [
                ("PGRST_APP_SETTINGS_NAME".to_string(), "env".to_string()),
                (
                    "PGRST_APP_SETTINGS_API_URL".to_string(),
                    "https://x".to_string(),
                ),
                ("PGRST_APP_SETTINGS_".to_string(), "ignored".to_string()),
                ("PGRST_DB_URI".to_string(), "ignored".to_string()),
            ]
            .into_iter(),
        );
        assert_eq!(
            c.app_settings,
            vec![
                ("app.settings.api_url".to_string(), "https://x".to_string()),
                ("app.settings.jwt_exp".to_string(), "60".to_string()),
                ("app.settings.name".to_string(), "env".to_string()),
            ]
        );
    }

    #[test]
    fn plan_limits_parse() {
        let c = Config::for_uri("postgres://x", "a,b");
        assert_eq!(c.schemas(), vec!["a", "b"]);
        assert_eq!(c.plan_limits().get("pro"), Some(&100));
    }

    #[test]
    fn file_settings_by_old_and_new_names() {
        let text = "max-rows = 5\npre-request = \"api.check\"\ndb-pool-timeout = 7\nopenapi-mode = \"disabled\"\nserver-trace-header = \"X-Request-Id\"\nnot-a-setting = 1\napp.settings.x = \"y\"\n";
        let args = vec!["tenancy-proxy".to_string(), "f.conf".to_string()];
        let (args, app) = Config::args_with_file(text, args, |_| None).unwrap();
        let c = Config::try_parse_from(&args).unwrap();
        assert_eq!(c.db_max_rows, Some(5));
        assert_eq!(c.db_pre_request.as_deref(), Some("api.check"));
        assert_eq!(c.db_pool_max_idletime, 7);
        assert_eq!(c.openapi(), OpenApiMode::Disabled);
        assert_eq!(c.server_trace_header.as_deref(), Some("X-Request-Id"));
        assert_eq!(app, vec![("app.settings.x".to_string(), "y".to_string())]);
        // a flag on the command line, or the environment, wins over the file
        let args = vec!["tenancy-proxy".to_string(), "--db-max-rows=9".to_string()];
        let (args, _) = Config::args_with_file(text, args, |_| None).unwrap();
        assert_eq!(Config::try_parse_from(&args).unwrap().db_max_rows, Some(9));
        let (args, _) = Config::args_with_file(text, vec!["tenancy-proxy".to_string()], |n| {
            (n == "PGRST_DB_MAX_ROWS").then(|| "3".to_string())
        })
        .unwrap();
        assert!(
            !args.iter().any(|a| a.starts_with("--db-max-rows")),
            "{args:?}"
        );
    }

    #[test]
    fn old_names_from_the_environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        let parse = |args: Vec<String>| Config::try_parse_from(&args).unwrap();
        let bare = || vec!["tenancy-proxy".to_string()];
        // every old name PostgREST reads from PGRST_<NAME>
        let env = vars(&[
            ("PGRST_DB_SCHEMA", "public, personal"),
            ("PGRST_MAX_ROWS", "4"),
            ("PGRST_PRE_REQUEST", "api.check"),
            ("PGRST_ROOT_SPEC", "api.root"),
            ("PGRST_ROLE_CLAIM_KEY", ".app.role"),
            ("PGRST_SECRET_IS_BASE64", "true"),
            ("PGRST_DB_POOL_TIMEOUT", "7"),
        ]);
        let c = parse(Config::args_with_env_aliases(bare(), env));
        assert_eq!(c.schemas(), vec!["public", "personal"]);
        assert_eq!(c.db_max_rows, Some(4));
        assert_eq!(c.db_pre_request.as_deref(), Some("api.check"));
        assert_eq!(c.db_root_spec.as_deref(), Some("api.root"));
        assert_eq!(c.jwt_role_claim_key, ".app.role");
        assert!(c.jwt_secret_is_base64);
        assert_eq!(c.db_pool_max_idletime, 7);
        // the current name wins: its variable, a flag, the file
        let args = Config::args_with_env_aliases(
            bare(),
            vars(&[("PGRST_DB_SCHEMAS", "api"), ("PGRST_DB_SCHEMA", "old")]),
        );
        assert!(!args.iter().any(|a| a.contains("old")), "{args:?}");
        let flag = vec!["tenancy-proxy".to_string(), "--db-max-rows=9".to_string()];
        let c = parse(Config::args_with_env_aliases(
            flag,
            vars(&[("PGRST_MAX_ROWS", "4")]),
        ));
        assert_eq!(c.db_max_rows, Some(9));
        let env = vars(&[("PGRST_MAX_ROWS", "4")]);
        let (args, _) = Config::args_with_file("db-max-rows = 5\n", bare(), env).unwrap();
        let c = parse(Config::args_with_env_aliases(args, env));
        assert_eq!(c.db_max_rows, Some(5));
        // ... but an old name's variable beats the same old name in the file
        let (args, _) = Config::args_with_file("max-rows = 5\n", bare(), env).unwrap();
        let c = parse(Config::args_with_env_aliases(args, env));
        assert_eq!(c.db_max_rows, Some(4));
        // a misspelt transaction end is refused, not read as `commit`
        let e = Config::try_parse_from(["p", "--db-tx-end=rolback"]).unwrap_err();
        assert!(e.to_string().contains("rollback-allow-override"), "{e}");
        // empty is unset
        let args = Config::args_with_env_aliases(bare(), vars(&[("PGRST_MAX_ROWS", "")]));
        assert_eq!(parse(args).db_max_rows, None);
    }

    #[test]
    fn proxy_uri_socket_mode_openapi_mode_log_level() {
        let u = ProxyUri::parse("https://api.example.com/v1").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.host.as_str(), u.base_path.as_str()),
            ("https", "api.example.com:443", "/v1")
        );
        let u = ProxyUri::parse("http://localhost:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.base_path.as_str()),
            ("localhost:8080", "/")
        );
        for bad in ["ftp://x.example", "api.example.com", "http://", ""] {
            assert!(ProxyUri::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(unix_socket_mode("660"), Ok(0o660));
        assert_eq!(unix_socket_mode("777"), Ok(0o777));
        for bad in ["599", "800", "6a0", "", "1777"] {
            assert!(unix_socket_mode(bad).is_err(), "{bad}");
        }
        assert!(OpenApiMode::parse("follow-privileges").is_ok());
        assert!(OpenApiMode::parse("Disabled").is_err());
        for l in ["crit", "error", "warn", "info", "debug"] {
            assert!(log_filter(l).is_ok());
        }
        assert!(log_filter("verbose").is_err());
        let mut c = Config::for_uri("postgresql://x@localhost/db", "api");
        assert!(c.validate().is_ok());
        c.openapi_mode = "none".into();
        assert!(c.validate().unwrap_err().contains("openapi-mode"));
        c.openapi_mode = "disabled".into();
        c.server_trace_header = Some("bad header".into());
        assert!(c.validate().unwrap_err().contains("server-trace-header"));
    }
}
