//! Moving a database: `pg_dump -Fc` and `pg_restore` of a pg_tenancy
//! database into a new database of the same cluster. The registry, role
//! bindings, managed tables and audit chain come through; isolation holds
//! for bound logins; the linter is as clean as on the source; the functions
//! work on the copy. And the way a restore loses bindings — one bound role
//! missing where the dump is restored makes the `COPY` of
//! `tenancy.role_bindings` fail as a whole, so every other bound login
//! could choose any tenant — is reported by the linter, with a fix that
//! binds them again.

use std::process::Command;
use tenancy_e2e::*;
use tokio_postgres::config::Host;

/// A libpq connection string for `db` on the server under test.
fn conninfo(db: &str) -> String {
    let cfg = base_config();
    let mut parts = vec![format!("dbname='{db}'")];
    if let Some(h) = cfg.get_hosts().first() {
        match h {
            Host::Tcp(h) => parts.push(format!("host='{h}'")),
            Host::Unix(p) => parts.push(format!("host='{}'", p.display())),
        }
    }
    if let Some(p) = cfg.get_ports().first() {
        parts.push(format!("port={p}"));
    }
    if let Some(u) = cfg.get_user() {
        parts.push(format!("user='{u}'"));
    }
    parts.join(" ")
}

/// Run a client program; its exit status and stderr.
fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} cannot run (PostgreSQL client programs on PATH?): {e}")
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A database created for the restore, dropped when the test ends.
struct Target {
    name: String,
}

impl Target {
    async fn create(name: String) -> Target {
        let maint = connect(&base_config())
            .await
            .expect("maintenance connection");
        maint
            .batch_execute(&format!("CREATE DATABASE {}", ident(&name)))
            .await
            .expect("create the restore target");
        Target { name }
    }

    async fn admin(&self) -> tokio_postgres::Client {
        let mut cfg = base_config();
        cfg.dbname(&self.name);
        connect(&cfg)
            .await
            .expect("connect to the restored database")
    }

    async fn connect_as(&self, role: &str) -> tokio_postgres::Client {
        let mut cfg = base_config();
        cfg.dbname(&self.name).user(role);
        connect(&cfg)
            .await
            .unwrap_or_else(|e| panic!("login as {role} on the copy: {e}"))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(c) = connect(&base_config()).await {
                    let _ = c
                        .batch_execute(&format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            ident(&name)
                        ))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Dump `db` in custom format into a temporary file; its path.
fn dump(db: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{db}.dump"));
    let (ok, err) = run(
        "pg_dump",
        &["-Fc", "-f", path.to_str().unwrap(), "-d", &conninfo(db)],
    );
    assert!(ok, "pg_dump failed: {err}");
    path
}

/// Rows of `sql` as text, for comparing source and copy.
async fn rows(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    c.query(&format!("SELECT t::text FROM ({sql}) t"), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The linter's findings as "severity object: problem".
async fn findings(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT severity || ' ' || object || ': ' || problem || ' FIX ' || fix FROM tenancy.check_isolation() ORDER BY 1",
        &[],
    )
    .await
    .expect("check_isolation")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

const STATE: [&str; 4] = [
    "SELECT id, slug, name, parent_id, status, plan, settings FROM tenancy.tenants ORDER BY id",
    "SELECT role::text, tenant_id FROM tenancy.role_bindings ORDER BY 1",
    "SELECT relid::text, kind, tenant_column, hierarchical, policies = tenancy._policy_fingerprint(relid) FROM tenancy.managed_tables ORDER BY 1",
    "SELECT seq, action, target, tenant_id, hash FROM tenancy.audit_log ORDER BY seq",
];

#[tokio::test]
async fn a_parallel_restore_of_a_custom_format_dump_keeps_registry_bindings_audit_and_isolation() {
    let w = World::new("dump_restore").await;
    let (role_a, src_a) = w.member_bound("dr_a", w.a).await;
    let (role_b, _) = w.member_bound("dr_b", w.b).await;
    let src_rows_a = count(&src_a, "SELECT count(*) FROM esg.data_points").await;
    assert!(src_rows_a > 0, "the source has rows for tenant A");
    assert!(
        findings(&w.db.admin).await.is_empty(),
        "the source is clean"
    );

    let file = dump(&w.db.name);
    let target = Target::create(format!("{}_copy", w.db.name)).await;
    let (ok, err) = run(
        "pg_restore",
        &[
            "--exit-on-error",
            "-j",
            "4",
            "-d",
            &conninfo(&target.name),
            file.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(&file);
    assert!(ok, "pg_restore failed: {err}");

    let copy = target.admin().await;
    for sql in STATE {
        assert_eq!(
            rows(&copy, sql).await,
            rows(&w.db.admin, sql).await,
            "the same on the copy: {sql}"
        );
    }
    let verified = copy
        .query_one("SELECT ok FROM tenancy.verify_audit()", &[])
        .await
        .unwrap();
    assert!(
        verified.get::<_, bool>(0),
        "the audit chain verifies on the copy"
    );
    assert_eq!(
        findings(&copy).await,
        Vec::<String>::new(),
        "the copy is clean"
    );

    // isolation: the bound logins work in their own tenants only
    let a = target.connect_as(&role_a).await;
    assert_eq!(current_tenant(&a).await, Some(w.a), "still bound to A");
    assert_eq!(
        count(&a, "SELECT count(*) FROM esg.data_points").await,
        src_rows_a,
        "A's rows, as on the source"
    );
    assert_eq!(
        count(
            &a,
            &format!(
                "SELECT count(*) FROM esg.data_points WHERE tenant_id <> '{}'",
                w.a
            )
        )
        .await,
        0,
        "no other tenant's rows"
    );
    let refused = a
        .execute("SELECT tenancy.set_tenant($1)", &[&w.b.to_string()])
        .await;
    expect_sqlstate(
        refused,
        "42501",
        "a bound login switching tenant on the copy",
    );
    let b = target.connect_as(&role_b).await;
    assert_eq!(current_tenant(&b).await, Some(w.b), "still bound to B");

    // the functions work on the copy, and the chain goes on verifying
    copy.batch_execute(
        "SELECT tenancy.create_tenant('after-restore', 'After');
         SELECT tenancy.clone_tenant('tenant-a', 'a-clone', 'A clone');",
    )
    .await
    .unwrap_or_else(|e| panic!("functions on the copy: {}", describe(&e)));
    copy.execute("SELECT tenancy.unbind_role($1::text::regrole)", &[&role_b])
        .await
        .unwrap();
    let verified = copy
        .query_one("SELECT ok, entries FROM tenancy.verify_audit()", &[])
        .await
        .unwrap();
    assert!(
        verified.get::<_, bool>(0),
        "the chain verifies after new entries"
    );
    assert_eq!(findings(&copy).await, Vec::<String>::new(), "still clean");
}

#[tokio::test]
async fn bindings_a_restore_lost_are_reported_and_the_fix_restores_them() {
    let w = World::new("dump_lost_bindings").await;
    let (role_a, _) = w.member_bound("lb_a", w.a).await;
    let (role_b, _) = w.member_bound("lb_b", w.b).await;
    let file = dump(&w.db.name);
    // where the dump is restored, one bound role is missing (here: renamed)
    let gone = format!("{role_b}_x");
    w.db.exec(&format!(
        "ALTER ROLE {} RENAME TO {}",
        ident(&role_b),
        ident(&gone)
    ))
    .await;
    let target = Target::create(format!("{}_copy", w.db.name)).await;
    let (ok, err) = run(
        "pg_restore",
        &["-d", &conninfo(&target.name), file.to_str().unwrap()],
    );
    let _ = std::fs::remove_file(&file);
    assert!(!ok, "pg_restore reports the failed COPY");
    assert!(
        err.contains("role_bindings"),
        "the error is about role_bindings: {err}"
    );
    let copy = target.admin().await;
    assert_eq!(
        count(&copy, "SELECT count(*) FROM tenancy.role_bindings").await,
        0,
        "the COPY lost every binding, also A's whose role exists"
    );
    // fails open without the linter: A's login can choose tenant B
    let a = target.connect_as(&role_a).await;
    a.execute("SELECT tenancy.set_tenant($1)", &[&w.b.to_string()])
        .await
        .expect("an unbound member may choose a tenant");
    drop(a);

    let f = findings(&copy).await;
    let lost: Vec<&String> = f
        .iter()
        .filter(|s| s.contains("has no binding now"))
        .collect();
    assert_eq!(lost.len(), 1, "A's lost binding is reported: {f:#?}");
    assert!(
        lost[0].starts_with(&format!(
            "error role {role_a}: was bound to tenant tenant-a"
        )),
        "{}",
        lost[0]
    );
    let fix: String = copy
        .query_one(
            "SELECT fix FROM tenancy.check_isolation() WHERE problem ~ 'has no binding now'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    copy.batch_execute(&fix)
        .await
        .unwrap_or_else(|e| panic!("the fix {fix}: {}", describe(&e)));
    let a = target.connect_as(&role_a).await;
    assert_eq!(current_tenant(&a).await, Some(w.a), "bound to A again");
    let refused = a
        .execute("SELECT tenancy.set_tenant($1)", &[&w.b.to_string()])
        .await;
    expect_sqlstate(refused, "42501", "after the fix A cannot switch to B");
    assert!(
        !findings(&copy)
            .await
            .iter()
            .any(|s| s.contains("has no binding now")),
        "after the fix the finding is gone"
    );
    w.db.exec(&format!(
        "ALTER ROLE {} RENAME TO {}",
        ident(&gone),
        ident(&role_b)
    ))
    .await;
}

/// pg_tenancy in databases that are not UTF8 (SQL_ASCII, LATIN1): the
/// extension installs, tenants are created, and labels are checked with what
/// the encoding has.
#[tokio::test]
async fn databases_in_other_encodings_work() {
    for enc in ["SQL_ASCII", "LATIN1"] {
        let name = format!("e2e_{}_enc_{}", std::process::id(), enc.to_lowercase());
        let maint = connect(&base_config())
            .await
            .expect("maintenance connection");
        for sql in [
            format!("DROP DATABASE IF EXISTS {}", ident(&name)),
            format!(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING '{enc}' LC_COLLATE 'C' LC_CTYPE 'C'",
                ident(&name)
            ),
        ] {
            maint
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
        }
        let target = Target { name };
        let c = target.admin().await;
        c.batch_execute("CREATE EXTENSION pg_tenancy")
            .await
            .unwrap_or_else(|e| panic!("{enc}: CREATE EXTENSION: {}", describe(&e)));
        let id: uuid::Uuid = c
            .query_one(
                "SELECT tenancy.create_tenant('acme', 'Acme Corporation', plan => 'pro')",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{enc}: create_tenant: {}", describe(&e)))
            .get(0);
        assert_eq!(
            count(
                &c,
                &format!("SELECT count(*) FROM tenancy.tenants WHERE id = '{id}'")
            )
            .await,
            1
        );
        let bad = c
            .query_one("SELECT tenancy.create_tenant('bad', E'Acme\\x1b[2J')", &[])
            .await;
        expect_sqlstate(bad, "22023", "a control character in a name");
        let blank = c
            .query_one("SELECT tenancy.create_tenant('blank', ' ')", &[])
            .await;
        expect_sqlstate(blank, "22023", "a blank name");
    }
}

/// `pg_restore -j` copies the configuration tables in parallel: no binding
/// or template use may depend on the order (they once had foreign keys to
/// `tenancy.tenants`, and a COPY that ran first failed as a whole). Five
/// parallel restores of one dump, each with every binding and template use.
#[tokio::test]
async fn parallel_restores_keep_every_binding_and_template_use() {
    let w = World::new("dump_parallel").await;
    w.member_bound("pr_a", w.a).await;
    w.member_bound("pr_b", w.b).await;
    w.db.exec(
        "SELECT tenancy.create_template('starter', 'tenant-a');
         SELECT tenancy.provision('starter', 'from-starter', 'From starter');",
    )
    .await;
    let file = dump(&w.db.name);
    let want = [
        rows(&w.db.admin, STATE[1]).await,
        rows(
            &w.db.admin,
            "SELECT tenant_id, template_id FROM tenancy.template_uses ORDER BY 1",
        )
        .await,
    ];
    assert_eq!(want[0].len(), 2);
    assert_eq!(want[1].len(), 1);
    for round in 0..5 {
        let target = Target::create(format!("{}_p{round}", w.db.name)).await;
        let (ok, err) = run(
            "pg_restore",
            &[
                "-j",
                "4",
                "-d",
                &conninfo(&target.name),
                file.to_str().unwrap(),
            ],
        );
        assert!(ok, "round {round}: pg_restore -j 4 failed: {err}");
        let copy = target.admin().await;
        assert_eq!(
            rows(&copy, STATE[1]).await,
            want[0],
            "round {round}: bindings"
        );
        assert_eq!(
            rows(
                &copy,
                "SELECT tenant_id, template_id FROM tenancy.template_uses ORDER BY 1"
            )
            .await,
            want[1],
            "round {round}: template uses"
        );
    }
    let _ = std::fs::remove_file(&file);
}
