//! Harness for the pg_tenancy end-to-end tests (tier 4).
//!
//! Every test gets a fresh database (`e2e_<pid>_<n>_<test>`) with the
//! extension and the demo ESG schema loaded, plus LOGIN roles whose names
//! start with the same `e2e_<pid>_<n>_` prefix (roles are cluster-global).
//! [`TestDb`] drops both when it goes out of scope, also when the test
//! panics; leftovers of killed runs (whose process is gone) are removed by
//! the next run.
//!
//! The server comes from `TENANCY_TEST_URL` (default
//! `postgresql://postgres@127.0.0.1:28815`), which must name a superuser.
//! Set `TENANCY_E2E_KEEP=1` to keep the databases for debugging.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

pub use tokio_postgres::{Client, Config, Error as PgError, NoTls};
pub use uuid::Uuid;

/// Where the tests connect when `TENANCY_TEST_URL` is unset.
pub const DEFAULT_URL: &str = "postgresql://postgres@127.0.0.1:28815";
/// The demo schema: esg.units (reference), organisations, reporting_entities
/// and data_points (hierarchical), metrics (not hierarchical).
pub const DEMO_SCHEMA: &str = include_str!("../../../demo/schema.sql");

/// The demo's tenant tables, parents before children.
pub const TENANT_TABLES: [&str; 4] = [
    "esg.organisations",
    "esg.reporting_entities",
    "esg.metrics",
    "esg.data_points",
];
/// The demo tables enabled with `hierarchical => true`.
pub const HIERARCHICAL_TABLES: [&str; 3] = [
    "esg.organisations",
    "esg.reporting_entities",
    "esg.data_points",
];

/// The tenancy group roles.
pub const MEMBER: &str = "tenancy_member";
pub const VIEWER: &str = "tenancy_viewer";
pub const ANALYST: &str = "tenancy_analyst";
pub const SUPERADMIN: &str = "tenancy_superadmin";

/// Test helper: a tiny seed function (run by the superuser, so it bypasses
/// row level security) that gives one tenant 2 organisations, 2 reporting
/// entities, 2 metrics and 2 x 2 x `periods` data points.
const SEED_FUNCTION: &str = r#"
INSERT INTO esg.units (code, name) VALUES ('tCO2e', 'tonnes of CO2 equivalent'), ('MWh', 'megawatt hours');
CREATE FUNCTION public.e2e_seed(t uuid, label text, periods int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    org bigint;
    sub bigint;
BEGIN
    INSERT INTO esg.organisations (tenant_id, name, country)
         VALUES (t, label || ' HQ', 'US') RETURNING id INTO org;
    INSERT INTO esg.organisations (tenant_id, name, country, parent_org_id)
         VALUES (t, label || ' Operations', 'DE', org) RETURNING id INTO sub;
    INSERT INTO esg.reporting_entities (tenant_id, organisation_id, name, kind)
         VALUES (t, org, label || ' plant', 'plant'), (t, sub, label || ' office', 'office');
    INSERT INTO esg.metrics (tenant_id, code, name, unit)
         VALUES (t, 'scope1', label || ' scope 1', 'tCO2e'), (t, 'energy', label || ' energy', 'MWh');
    INSERT INTO esg.data_points (tenant_id, entity_id, metric_id, period, value)
         SELECT t, e.id, m.id, make_date(2025, p, 1), p * 10
           FROM esg.reporting_entities e, esg.metrics m, generate_series(1, periods) p
          WHERE e.tenant_id = t AND m.tenant_id = t;
END
$$;
"#;

/// The server URL under test.
pub fn server_url() -> String {
    std::env::var("TENANCY_TEST_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_string())
}

/// Connection settings for the server (superuser, maintenance database).
pub fn base_config() -> Config {
    let url = server_url();
    let mut cfg: Config = url.parse().unwrap_or_else(|e| {
        panic!("TENANCY_TEST_URL={url:?} is not a valid connection string: {e}")
    });
    if cfg.get_user().is_none() {
        cfg.user("postgres");
    }
    if cfg.get_dbname().is_none() {
        cfg.dbname("postgres");
    }
    cfg.application_name("tenancy-e2e");
    cfg
}

/// Connect and drive the connection on the current runtime.
pub async fn connect(cfg: &Config) -> Result<Client, PgError> {
    let (client, conn) = cfg.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static STALE_SWEPT: AtomicBool = AtomicBool::new(false);

fn sanitize(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(max);
    out
}

/// Quote an identifier for SQL.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote a literal for SQL.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Remove databases and roles left behind by e2e runs whose process is gone
/// (e.g. killed by a timeout before the guards could run).
async fn sweep_stale(maint: &Client) {
    if STALE_SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let me = std::process::id();
    let stale = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix("e2e_") else {
            return false;
        };
        let Some(pid) = rest.split('_').next().and_then(|p| p.parse::<u32>().ok()) else {
            return false;
        };
        pid != me && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    };
    let dbs = maint
        .query(
            "SELECT datname::text FROM pg_database WHERE datname ~ '^e2e_[0-9]+_'",
            &[],
        )
        .await
        .unwrap_or_default();
    for row in dbs {
        let name: String = row.get(0);
        if stale(&name) {
            let _ = maint
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    ident(&name)
                ))
                .await;
        }
    }
    let roles = maint
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname ~ '^e2e_[0-9]+_'",
            &[],
        )
        .await
        .unwrap_or_default();
    for row in roles {
        let name: String = row.get(0);
        if stale(&name) {
            let _ = maint
                .batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(&name)))
                .await;
        }
    }
}

/// A fresh database with pg_tenancy and the demo schema; dropped (with the
/// test's roles) on drop.
pub struct TestDb {
    pub name: String,
    prefix: String,
    base: Config,
    roles: Mutex<Vec<String>>,
    /// Superuser connection to the test database (bypasses row level
    /// security: the ground truth for before/after checks).
    pub admin: Client,
}

impl TestDb {
    /// Create the database, the extension, the demo schema and the seed helper.
    pub async fn new(test: &str) -> TestDb {
        let base = base_config();
        let maint = connect(&base).await.unwrap_or_else(|e| {
            panic!(
                "cannot connect to {} (set TENANCY_TEST_URL): {e}",
                server_url()
            )
        });
        sweep_stale(&maint).await;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("e2e_{}_{}_", std::process::id(), n);
        let name = format!("{prefix}{}", sanitize(test, 40));
        maint
            .batch_execute(&format!("CREATE DATABASE {}", ident(&name)))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let mut cfg = base.clone();
        cfg.dbname(&name);
        // From here on the guard owns the database.
        let admin = match connect(&cfg).await {
            Ok(c) => c,
            Err(e) => {
                let _ = maint
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        ident(&name)
                    ))
                    .await;
                panic!("connect to {name}: {e}");
            }
        };
        let db = TestDb {
            name,
            prefix,
            base,
            roles: Mutex::new(Vec::new()),
            admin,
        };
        db.exec("CREATE EXTENSION pg_tenancy").await;
        db.exec(DEMO_SCHEMA).await;
        db.exec(SEED_FUNCTION).await;
        db
    }

    /// Run SQL as the superuser; panics on error.
    pub async fn exec(&self, sql: &str) {
        self.admin
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("superuser SQL failed: {}\n{sql}", describe(&e)));
    }

    /// The full (cluster-unique) name for a test role.
    pub fn role_name(&self, short: &str) -> String {
        format!("{}{}", self.prefix, sanitize(short, 20))
    }

    /// Create a LOGIN role (NOSUPERUSER, NOBYPASSRLS) in the given groups.
    pub async fn login(&self, short: &str, groups: &[&str]) -> String {
        let role = self.role_name(short);
        self.roles.lock().unwrap().push(role.clone());
        let mut sql = format!(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS;",
            ident(&role)
        );
        for g in groups {
            sql.push_str(&format!("GRANT {} TO {};", ident(g), ident(&role)));
        }
        self.exec(&sql).await;
        role
    }

    /// Connection settings for `role` on this database.
    pub fn config_for(&self, role: &str) -> Config {
        let mut cfg = self.base.clone();
        cfg.dbname(&self.name).user(role);
        cfg
    }

    /// Log in as `role` (a real login: session_user is `role`).
    pub async fn connect_as(&self, role: &str) -> Client {
        let c = connect(&self.config_for(role))
            .await
            .unwrap_or_else(|e| panic!("login as {role}: {e}"));
        let who: String = c
            .query_one("SELECT session_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, role, "the connection must be a real login of {role}");
        c
    }

    /// Another superuser connection (e.g. a second session).
    pub async fn connect_admin(&self) -> Client {
        connect(&self.config_for(self.base.get_user().unwrap_or("postgres")))
            .await
            .expect("superuser connection")
    }

    /// tenancy.create_tenant(slug, name, parent).
    pub async fn create_tenant(&self, slug: &str, parent: Option<&str>) -> Uuid {
        self.admin
            .query_one(
                "SELECT tenancy.create_tenant($1, $2, parent => $3)",
                &[&slug, &format!("Tenant {slug}"), &parent],
            )
            .await
            .unwrap_or_else(|e| panic!("create_tenant({slug}): {}", describe(&e)))
            .get(0)
    }

    /// tenancy.bind_role(role, tenant).
    pub async fn bind(&self, role: &str, tenant: Uuid) {
        self.admin
            .execute(
                "SELECT tenancy.bind_role($1::text::regrole, $2::text)",
                &[&role, &tenant.to_string()],
            )
            .await
            .unwrap_or_else(|e| panic!("bind_role({role}): {}", describe(&e)));
    }

    /// Seed one tenant's demo rows (see `e2e_seed`).
    pub async fn seed(&self, tenant: Uuid, label: &str, periods: i32) {
        self.admin
            .execute(
                "SELECT public.e2e_seed($1, $2, $3)",
                &[&tenant, &label, &periods],
            )
            .await
            .unwrap_or_else(|e| panic!("seed {label}: {}", describe(&e)));
    }

    /// Every row of every tenant table, as the superuser sees it.
    pub async fn snapshot(&self) -> Snapshot {
        snapshot(&self.admin).await
    }

    /// A single superuser count.
    pub async fn count(&self, sql: &str) -> i64 {
        count(&self.admin, sql).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var("TENANCY_E2E_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("keeping database {}", self.name);
            return;
        }
        let base = self.base.clone();
        let name = self.name.clone();
        let roles = std::mem::take(&mut *self.roles.lock().unwrap_or_else(|p| p.into_inner()));
        // Drop may run inside a runtime (or while panicking): clean up from a
        // separate thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(c) = connect(&base).await else { return };
                let _ = c
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        ident(&name)
                    ))
                    .await;
                for r in roles {
                    let _ = c
                        .batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(&r)))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Rows of the tenant tables: table -> sorted (tenant, row as JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<String, Vec<(Uuid, String)>>);

impl Snapshot {
    /// The rows of one tenant, in every table.
    pub fn of(&self, tenant: Uuid) -> BTreeMap<String, Vec<String>> {
        self.0
            .iter()
            .map(|(t, rows)| {
                (
                    t.clone(),
                    rows.iter()
                        .filter(|(id, _)| *id == tenant)
                        .map(|(_, r)| r.clone())
                        .collect(),
                )
            })
            .collect()
    }

    /// The rows of every tenant except `tenant`.
    pub fn except(&self, tenant: Uuid) -> BTreeMap<String, Vec<(Uuid, String)>> {
        self.0
            .iter()
            .map(|(t, rows)| {
                (
                    t.clone(),
                    rows.iter()
                        .filter(|(id, _)| *id != tenant)
                        .cloned()
                        .collect(),
                )
            })
            .collect()
    }

    /// How many rows `tenant` has in `table`.
    pub fn count(&self, table: &str, tenant: Uuid) -> usize {
        self.0[table].iter().filter(|(id, _)| *id == tenant).count()
    }

    /// Total rows of `table`.
    pub fn total(&self, table: &str) -> usize {
        self.0[table].len()
    }
}

/// Read every tenant table through `client` (use a superuser for the truth).
pub async fn snapshot(client: &Client) -> Snapshot {
    let mut out = BTreeMap::new();
    for t in TENANT_TABLES {
        let rows = client
            .query(
                &format!("SELECT x.tenant_id, row_to_json(x)::text FROM {t} x ORDER BY 2"),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("snapshot of {t}: {}", describe(&e)));
        let mut v: Vec<(Uuid, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        v.sort();
        out.insert(t.to_string(), v);
    }
    Snapshot(out)
}

/// `SELECT count(*) ...` through `client`; panics on error.
pub async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

/// The distinct tenant ids `client` can see in `table`.
pub async fn visible_tenants(client: &Client, table: &str) -> BTreeSet<Uuid> {
    client
        .query(&format!("SELECT DISTINCT tenant_id FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("reading {table}: {}", describe(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// `tenancy.current_tenant()` for this session.
pub async fn current_tenant(client: &Client) -> Option<Uuid> {
    client
        .query_one("SELECT tenancy.current_tenant()", &[])
        .await
        .unwrap_or_else(|e| panic!("current_tenant(): {}", describe(&e)))
        .get(0)
}

/// Rows affected by a statement; panics on error.
pub async fn affected(client: &Client, sql: &str) -> u64 {
    client
        .execute(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
}

/// The SQLSTATE of an error, if the server sent one.
pub fn sqlstate(e: &PgError) -> Option<&str> {
    e.code().map(|c| c.code())
}

/// An error with its SQLSTATE and server message, for assertion output.
pub fn describe(e: &PgError) -> String {
    match e.as_db_error() {
        Some(d) => format!("[{}] {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// Assert that `r` failed with `code`; returns the server's message.
#[track_caller]
pub fn expect_sqlstate<T: Debug>(r: Result<T, PgError>, code: &str, what: &str) -> String {
    match r {
        Ok(v) => panic!("{what}: expected SQLSTATE {code}, but it succeeded with {v:?}"),
        Err(e) => {
            assert_eq!(
                sqlstate(&e),
                Some(code),
                "{what}: wrong error {}",
                describe(&e)
            );
            e.as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default()
        }
    }
}

/// The standard world of the attack tests: tenants A and B, and a hierarchy
/// parent -> child -> grandchild, each with seeded rows.
pub struct World {
    pub db: TestDb,
    pub a: Uuid,
    pub b: Uuid,
    pub parent: Uuid,
    pub child: Uuid,
    pub grandchild: Uuid,
}

/// Data points per seeded tenant: 2 entities x 2 metrics x PERIODS.
pub const PERIODS: i32 = 3;

impl World {
    pub async fn new(test: &str) -> World {
        let db = TestDb::new(test).await;
        let a = db.create_tenant("tenant-a", None).await;
        let b = db.create_tenant("tenant-b", None).await;
        let parent = db.create_tenant("parent-co", None).await;
        let child = db.create_tenant("child-co", Some("parent-co")).await;
        let grandchild = db.create_tenant("grandchild-co", Some("child-co")).await;
        for (t, label) in [
            (a, "A"),
            (b, "B"),
            (parent, "Parent"),
            (child, "Child"),
            (grandchild, "Grandchild"),
        ] {
            db.seed(t, label, PERIODS).await;
        }
        World {
            db,
            a,
            b,
            parent,
            child,
            grandchild,
        }
    }

    /// Every tenant of the world.
    pub fn tenants(&self) -> [Uuid; 5] {
        [self.a, self.b, self.parent, self.child, self.grandchild]
    }

    /// A LOGIN member bound to `tenant`, and its connection.
    pub async fn member_bound(&self, short: &str, tenant: Uuid) -> (String, Client) {
        let role = self.db.login(short, &[MEMBER]).await;
        self.db.bind(&role, tenant).await;
        let c = self.db.connect_as(&role).await;
        assert_eq!(
            current_tenant(&c).await,
            Some(tenant),
            "bound role resolves to its tenant"
        );
        (role, c)
    }

    /// A LOGIN member, unbound, that picked `tenant` with tenancy.set_tenant.
    pub async fn member_set(&self, short: &str, tenant: Uuid) -> (String, Client) {
        let role = self.db.login(short, &[MEMBER]).await;
        let c = self.db.connect_as(&role).await;
        c.execute("SELECT tenancy.set_tenant($1)", &[&tenant.to_string()])
            .await
            .unwrap_or_else(|e| panic!("set_tenant: {}", describe(&e)));
        assert_eq!(
            current_tenant(&c).await,
            Some(tenant),
            "set_tenant sets the context"
        );
        (role, c)
    }

    /// Both ways a member gets tenant A: bound and set.
    pub async fn members_of_a(&self) -> Vec<(&'static str, Client)> {
        let (_, bound) = self.member_bound("mem_bound", self.a).await;
        let (_, set) = self.member_set("mem_set", self.a).await;
        vec![("bound", bound), ("set", set)]
    }
}
