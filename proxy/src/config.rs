//! Configuration: flags, PostgREST's environment names, and PostgREST's
//! config file format (`key = "value"` lines) as a positional argument.

use clap::{ArgAction, Parser};
use std::collections::HashMap;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "tenancy-proxy",
    about = "PostgREST-compatible HTTP API for pg_tenancy"
)]
pub struct Config {
    /// A PostgREST-style config file (`db-uri = "..."`); flags and env win.
    pub config_file: Option<String>,
    #[arg(
        long,
        env = "PGRST_DB_URI",
        default_value = "postgresql://authenticator@127.0.0.1:5432/postgres"
    )]
    pub db_uri: String,
    /// Exposed schemas, comma-separated; the first is the default.
    #[arg(long, env = "PGRST_DB_SCHEMAS", default_value = "public")]
    pub db_schemas: String,
    #[arg(long, env = "PGRST_DB_ANON_ROLE")]
    pub db_anon_role: Option<String>,
    /// HS256 secret, at least 32 characters.
    #[arg(long, env = "PGRST_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// A function called after the request settings, before the statement.
    #[arg(long, env = "PGRST_DB_PRE_REQUEST")]
    pub db_pre_request: Option<String>,
    /// commit | commit-allow-override | rollback | rollback-allow-override
    #[arg(long, env = "PGRST_DB_TX_END", default_value = "commit")]
    pub db_tx_end: String,
    #[arg(long, env = "PGRST_SERVER_HOST", default_value = "127.0.0.1")]
    pub server_host: String,
    #[arg(long, env = "PGRST_SERVER_PORT", default_value_t = 3000)]
    pub server_port: u16,
    #[arg(long, env = "PGRST_DB_MAX_ROWS")]
    pub db_max_rows: Option<u64>,
    #[arg(long, env = "PGRST_DB_AGGREGATES_ENABLED", default_value = "false", action = ArgAction::Set)]
    pub db_aggregates_enabled: bool,
    #[arg(long, env = "PGRST_DB_POOL", default_value_t = 10)]
    pub db_pool: usize,
    /// Extra schemas on the search_path after the request's schema.
    #[arg(long, env = "PGRST_DB_EXTRA_SEARCH_PATH", default_value = "public")]
    pub db_extra_search_path: String,
    /// A connection that may read every tenant's plan (e.g. a tenancy_superadmin login);
    /// without it every tenant gets the default limit.
    #[arg(long, env = "TENANCY_ADMIN_DB_URI")]
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
    /// Log format: text or json.
    #[arg(long, env = "TENANCY_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Worker threads of the async runtime (0 = one per CPU core). On a
    /// small machine shared with PostgreSQL, 1 avoids cross-thread wake-ups.
    #[arg(long, env = "TENANCY_PROXY_THREADS", default_value_t = 0)]
    pub threads: usize,
}

impl Config {
    pub fn schemas(&self) -> Vec<String> {
        self.db_schemas
            .split(',')
            .map(|s| s.trim().to_string())
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
    pub fn load() -> Config {
        let first = Config::parse();
        if let Some(path) = &first.config_file {
            if let Ok(text) = std::fs::read_to_string(path) {
                let mut args: Vec<String> = std::env::args().collect();
                for (k, v) in parse_config_file(&text) {
                    let env = format!("PGRST_{}", k.to_uppercase().replace('-', "_"));
                    let flag = format!("--{k}");
                    if std::env::var_os(&env).is_none()
                        && !args
                            .iter()
                            .any(|a| a == &flag || a.starts_with(&format!("{flag}=")))
                    {
                        args.push(format!("{flag}={v}"));
                    }
                }
                return Config::parse_from(args);
            }
        }
        first
    }
}

/// `key = "value"` / `key = 123` lines; `#` comments.
pub fn parse_config_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') || l.is_empty() {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_lines() {
        let kv = parse_config_file("# c\ndb-uri = \"postgres://x\"\ndb-max-rows = 10\n");
        assert_eq!(
            kv,
            vec![
                ("db-uri".into(), "postgres://x".into()),
                ("db-max-rows".into(), "10".into())
            ]
        );
    }

    #[test]
    fn plan_limits_parse() {
        let c = Config::for_uri("postgres://x", "a,b");
        assert_eq!(c.schemas(), vec!["a", "b"]);
        assert_eq!(c.plan_limits().get("pro"), Some(&100));
    }
}
