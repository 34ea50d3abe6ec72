//! The audit hash chain under concurrency: 8 super-admin sessions create
//! tenants at the same time (some in multi-statement transactions, some of
//! which roll back). The chain must not fork: sequence numbers contiguous,
//! every prev_hash used once and equal to the previous entry's hash, every
//! hash recomputable from the documented encoding, and
//! tenancy.verify_audit() ok.

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use tenancy_e2e::*;

/// The chain's first prev_hash.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The entry hash as specified (tenancy_core::audit::digest), recomputed
/// independently: SHA-256 over a tag, the field count, and each field
/// length-prefixed (NULL marked with a 0 byte).
fn digest(fields: &[Option<&str>]) -> String {
    let mut h = Sha256::new();
    h.update(b"pg_tenancy.audit.v1");
    h.update((fields.len() as u64).to_be_bytes());
    for f in fields {
        match f {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

const SESSIONS: usize = 8;
const PER_SESSION: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_create_tenant_keeps_one_chain() {
    let db = TestDb::new("audit_chain").await;
    let before: i64 = db.count("SELECT count(*) FROM tenancy.audit_log").await;
    let role = db.login("sa", &[SUPERADMIN]).await;
    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let mut c = db.connect_as(&role).await;
        tasks.push(tokio::spawn(async move {
            let mut committed = 0usize;
            let mut i = 0usize;
            while i < PER_SESSION {
                // Odd sessions batch 3 creations per transaction; every 4th
                // batch of session 1 rolls back.
                if s % 2 == 1 {
                    let tx = c.transaction().await?;
                    for k in 0..3 {
                        let slug = format!("s{s}-t{}", i + k);
                        tx.execute("SELECT tenancy.create_tenant($1, $1)", &[&slug])
                            .await?;
                    }
                    if s == 1 && (i / 3) % 4 == 3 {
                        tx.rollback().await?;
                    } else {
                        tx.commit().await?;
                        committed += 3;
                    }
                    i += 3;
                } else {
                    let slug = format!("s{s}-t{i}");
                    c.execute("SELECT tenancy.create_tenant($1, $1)", &[&slug])
                        .await?;
                    committed += 1;
                    i += 1;
                }
            }
            Ok::<usize, PgError>(committed)
        }));
    }
    let mut committed = 0;
    for t in tasks {
        committed += t
            .await
            .expect("task")
            .unwrap_or_else(|e| panic!("create_tenant: {}", describe(&e)));
    }
    assert!(
        committed < SESSIONS * PER_SESSION,
        "some transactions rolled back"
    );
    let tenants = db.count("SELECT count(*) FROM tenancy.tenants").await;
    assert_eq!(tenants as usize, committed);

    let rows = db
        .admin
        .query(
            "SELECT seq, (EXTRACT(epoch FROM at) * 1000000)::bigint::text, actor::text, role::text,
                    tenant_id::text, action, target, details::text, prev_hash, hash
               FROM tenancy.audit_log ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len() as i64,
        before + committed as i64,
        "one entry per committed create_tenant"
    );
    let creates = rows
        .iter()
        .filter(|r| r.get::<_, String>(5) == "create_tenant")
        .count();
    assert_eq!(creates, committed);
    let mut prev = GENESIS.to_string();
    let mut seen_prev = BTreeSet::new();
    for (i, r) in rows.iter().enumerate() {
        let seq: i64 = r.get(0);
        assert_eq!(seq, i as i64 + 1, "sequence numbers are contiguous");
        let prev_hash: String = r.get(8);
        assert!(
            seen_prev.insert(prev_hash.clone()),
            "entry {seq}: prev_hash used twice (a fork)"
        );
        assert_eq!(prev_hash, prev, "entry {seq} links to entry {}", seq - 1);
        let seq_text = seq.to_string();
        let fields: Vec<Option<String>> = (1..=7).map(|k| r.get::<_, Option<String>>(k)).collect();
        let mut all: Vec<Option<&str>> = vec![Some(&seq_text)];
        all.extend(fields.iter().map(|f| f.as_deref()));
        all.push(Some(&prev_hash));
        let hash: String = r.get(9);
        assert_eq!(digest(&all), hash, "entry {seq}: recomputed hash");
        prev = hash;
    }
    let dup: i64 = db
        .count("SELECT count(*) FROM (SELECT prev_hash FROM tenancy.audit_log GROUP BY 1 HAVING count(*) > 1) d")
        .await;
    assert_eq!(dup, 0, "no two entries share a prev_hash");
    let v = db
        .admin
        .query_one(
            "SELECT ok, entries, first_broken_seq, problem FROM tenancy.verify_audit()",
            &[],
        )
        .await
        .unwrap();
    assert!(
        v.get::<_, bool>(0),
        "verify_audit: {:?}",
        v.get::<_, Option<String>>(3)
    );
    assert_eq!(v.get::<_, i64>(1), rows.len() as i64);
    assert_eq!(v.get::<_, Option<i64>>(2), None);
    // The actor of each create is the super-admin login.
    let actors: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.get::<_, String>(5) == "create_tenant")
        .map(|r| r.get(2))
        .collect();
    assert_eq!(actors, BTreeSet::from([role.clone()]));
}

/// A super admin's access entry says what happened: a direct call of
/// `tenancy.superadmin_access`, or a policy on another table that names a
/// managed one (any table owner can plant one; it runs as every super admin
/// who reads that table), cannot file "DELETE on esg.data_points" — the
/// statement must hold the table in the command's lock mode. The real access
/// is audited as before.
#[tokio::test]
async fn a_super_admin_access_entry_needs_the_access() {
    let w = World::new("audit_truth").await;
    let sa = w.db.login("sa_truth", &[SUPERADMIN]).await;
    w.db.exec(
        "CREATE TABLE public.plant (id int);
         INSERT INTO public.plant VALUES (1);
         ALTER TABLE public.plant ENABLE ROW LEVEL SECURITY;
         CREATE POLICY frame ON public.plant FOR SELECT TO tenancy_superadmin
             USING (tenancy.superadmin_access('esg.data_points'::regclass, 'DELETE'));
         GRANT SELECT ON public.plant TO tenancy_superadmin;",
    )
    .await;
    let c = w.db.connect_as(&sa).await;
    let entries = "SELECT count(*) FROM tenancy.audit_log WHERE action = 'superadmin_access'";
    assert_eq!(w.db.count(entries).await, 0);

    let direct = c
        .query_one(
            "SELECT tenancy.superadmin_access('esg.data_points'::regclass, 'DELETE')",
            &[],
        )
        .await;
    expect_sqlstate(direct, "42501", "a direct call, no access");
    let planted = c.query("SELECT * FROM public.plant", &[]).await;
    expect_sqlstate(
        planted,
        "42501",
        "a policy on another table naming data_points",
    );
    // reading the table takes AccessShareLock: a DELETE is still not filed
    c.batch_execute("BEGIN; SELECT count(*) FROM esg.data_points")
        .await
        .unwrap();
    let stronger = c
        .query_one(
            "SELECT tenancy.superadmin_access('esg.data_points'::regclass, 'DELETE')",
            &[],
        )
        .await;
    expect_sqlstate(stronger, "42501", "a DELETE entry after only a read");
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(w.db.count(entries).await, 0, "no entry was filed");

    // the real read, in its own transaction: audited, naming the table
    let n: i64 = c
        .query_one("SELECT count(*) FROM esg.data_points", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, w.db.snapshot().await.total("esg.data_points"));
    let row = w
        .db
        .admin
        .query_one(
            "SELECT target, details->>'command' FROM tenancy.audit_log WHERE action = 'superadmin_access'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "esg.data_points");
    assert_eq!(row.get::<_, String>(1), "SELECT");
}
