//! Test harness: a fresh database with the demo schema and data, roles for
//! the proxy (unique per run, dropped at the end), a proxy on port 0, JWTs.

#![allow(dead_code)]

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use std::net::SocketAddr;
use tenancy_proxy::{Config, Running};
use tokio_postgres::NoTls;

pub const SECRET: &str = "a-test-secret-that-is-at-least-32-chars-long";

pub fn server_url() -> String {
    std::env::var("TENANCY_TEST_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:28815".to_string())
}

pub fn db_url(db: &str, user: &str) -> String {
    let base = server_url();
    let base = base.trim_end_matches('/');
    // postgresql://user@host:port[/db] → swap user and database
    let rest = base.split_once("://").map(|(_, r)| r).unwrap_or(base);
    let hostport = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let hostport = hostport.split('/').next().unwrap_or(hostport);
    format!("postgresql://{user}@{hostport}/{db}")
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    c
}

/// A test database and its roles.
pub struct TestDb {
    pub name: String,
    pub auth_role: String,
    pub anon_role: String,
}

impl TestDb {
    pub async fn create(tag: &str) -> TestDb {
        let suffix = format!("{}_{}", tag, std::process::id());
        let t = TestDb {
            name: format!("tp_{suffix}"),
            auth_role: format!("tp_auth_{suffix}"),
            anon_role: format!("tp_anon_{suffix}"),
        };
        let admin = connect(&db_url("postgres", "postgres")).await;
        t.drop_with(&admin).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", t.name))
            .await
            .expect("create db");
        admin
            .batch_execute(&format!(
                "CREATE ROLE {a} LOGIN NOINHERIT; CREATE ROLE {n} NOLOGIN;
                 GRANT {n}, tenancy_member, tenancy_viewer, tenancy_admin, tenancy_analyst TO {a};",
                a = t.auth_role,
                n = t.anon_role
            ))
            .await
            .expect("roles");
        let db = connect(&db_url(&t.name, "postgres")).await;
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        for f in ["demo/schema.sql", "demo/data.sql"] {
            let sql = std::fs::read_to_string(format!("{root}/{f}")).expect("demo sql");
            db.batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{f}: {e:?}"));
        }
        db.batch_execute(&format!(
            r#"
            GRANT USAGE ON SCHEMA esg TO {n}, tenancy_member, tenancy_viewer, tenancy_admin;
            GRANT SELECT ON esg.units TO {n};
            GRANT USAGE ON ALL SEQUENCES IN SCHEMA esg TO tenancy_member, tenancy_admin;
            CREATE FUNCTION esg.add(a int, b int DEFAULT 2) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT a + b';
            CREATE FUNCTION esg.metric_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM esg.metrics';
            CREATE FUNCTION esg.entities_of(k text) RETURNS SETOF esg.reporting_entities LANGUAGE sql STABLE
                AS 'SELECT * FROM esg.reporting_entities WHERE kind = k';
            CREATE FUNCTION esg.codes() RETURNS SETOF text LANGUAGE sql STABLE AS 'SELECT code FROM esg.metrics ORDER BY code';
            CREATE FUNCTION esg.totals(OUT n bigint, OUT s numeric) LANGUAGE sql STABLE
                AS 'SELECT count(*), coalesce(sum(value), 0) FROM esg.data_points';
            CREATE FUNCTION esg.new_metric(code text, name text) RETURNS esg.metrics LANGUAGE sql VOLATILE
                AS 'INSERT INTO esg.metrics (code, name, unit) VALUES (code, name, ''t'') RETURNING *';
            CREATE FUNCTION esg.noop() RETURNS void LANGUAGE sql VOLATILE AS '';
            CREATE FUNCTION esg.whoami() RETURNS json LANGUAGE sql STABLE AS
                $$ SELECT json_build_object('role', current_user, 'tenant', tenancy.current_tenant(),
                   'method', current_setting('request.method', true), 'claims', current_setting('request.jwt.claims', true)::json) $$;
            CREATE FUNCTION esg.fail(code text) RETURNS void LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'failed on purpose' USING ERRCODE = code, HINT = 'a hint'; END $$;
            CREATE FUNCTION esg.teapot() RETURNS json LANGUAGE plpgsql STABLE AS $$
                BEGIN PERFORM set_config('response.status', '418', true);
                      PERFORM set_config('response.headers', '[{{"X-Test": "yes"}}]', true);
                      RETURN '{{"ok": true}}'; END $$;
            GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO PUBLIC;
            "#,
            n = t.anon_role
        ))
        .await
        .expect("test functions");
        t
    }

    async fn drop_with(&self, admin: &tokio_postgres::Client) {
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
        for r in [&self.auth_role, &self.anon_role] {
            let _ = admin
                .batch_execute(&format!("DROP ROLE IF EXISTS {r}"))
                .await;
        }
    }

    pub async fn drop(&self) {
        let admin = connect(&db_url("postgres", "postgres")).await;
        self.drop_with(&admin).await;
    }

    /// A superuser connection to the test database.
    pub async fn admin(&self) -> tokio_postgres::Client {
        connect(&db_url(&self.name, "postgres")).await
    }

    pub fn config(&self) -> Config {
        let mut c = Config::for_uri(&db_url(&self.name, &self.auth_role), "esg,tenancy");
        c.db_anon_role = Some(self.anon_role.clone());
        c.jwt_secret = Some(SECRET.to_string());
        c.db_pool = 4;
        c.db_aggregates_enabled = true;
        c.default_rate_limit = 0;
        c.anon_rate_limit = 0;
        c.admin_db_uri = Some(db_url(&self.name, "postgres"));
        // a database that cannot be reached is a start error in tests
        c.db_pool_automatic_recovery = false;
        c
    }

    pub async fn proxy(&self, config: Config) -> Proxy {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let running = tenancy_proxy::start(config, addr)
            .await
            .expect("start proxy");
        let base = format!("http://{}", running.addr);
        Proxy {
            running,
            base,
            http: reqwest::Client::new(),
        }
    }
}

pub struct Proxy {
    pub running: Running,
    pub base: String,
    pub http: reqwest::Client,
}

impl Proxy {
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{}", self.base, path))
    }
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{}", self.base, path))
    }
    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.patch(format!("{}{}", self.base, path))
    }
    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.put(format!("{}{}", self.base, path))
    }
    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(format!("{}{}", self.base, path))
    }
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{}", self.base, path))
    }
    pub fn head(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.head(format!("{}{}", self.base, path))
    }
    pub async fn stop(self) {
        self.running.stop().await;
    }
    /// The Prometheus text of `/_tenancy/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.get("/_tenancy/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn jwt(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A member token for a tenant (slug or uuid).
pub fn member(tenant: &str) -> String {
    jwt(json!({ "role": "tenancy_member", "tenant_id": tenant, "exp": now() + 600 }))
}

pub async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let t = r.text().await.unwrap();
    (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

/// After a [`guarded`] run: stop the proxies, drop the database, then
/// re-raise the run's panic, if any.
pub async fn finish(outcome: std::thread::Result<()>, db: &TestDb, proxies: Vec<Proxy>) {
    for p in proxies {
        p.stop().await;
    }
    db.drop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

/// The error `tenancy_proxy::start` refuses `config` with (panics if it starts).
pub async fn start_error(config: Config) -> String {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    match tenancy_proxy::start(config, addr).await {
        Ok(r) => {
            r.stop().await;
            panic!("the proxy started");
        }
        Err(e) => e,
    }
}

/// Run `f`, catching a panic so the caller can clean up before re-raising.
pub async fn guarded<F: std::future::Future<Output = ()>>(f: F) -> std::thread::Result<()> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(f).catch_unwind().await
}

/// Polls `ok` every 100 ms, up to `tries` times: whether it became true.
pub async fn eventually<F, Fut>(tries: usize, mut ok: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..tries {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if ok().await {
            return true;
        }
    }
    false
}

/// Whether `path` answers 200 (with `token`, if any) within 5 s: a schema
/// reload has reached the proxy.
pub async fn answers_200(p: &Proxy, path: &str, token: Option<&str>) -> bool {
    eventually(50, || async {
        let mut r = p.get(path);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.is_ok_and(|r| r.status() == 200)
    })
    .await
}

/// A response header as text.
pub fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}
