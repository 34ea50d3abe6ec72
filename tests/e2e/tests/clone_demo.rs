//! Deep clone of a demo tenant (issue 4): the clone holds a copy of every row
//! in every managed table, with keys remapped where they are global, every
//! foreign key pointing inside the clone, the source untouched, and the
//! clone isolated from the source under row level security.

use tenancy_e2e::*;
use uuid::Uuid;

const TABLES: [&str; 4] = [
    "esg.organisations",
    "esg.reporting_entities",
    "esg.metrics",
    "esg.data_points",
];

/// A digest of every row of `tenant` in the demo tables, as the superuser sees it.
async fn digest(db: &TestDb, tenant: Uuid) -> String {
    let mut parts = Vec::new();
    for t in TABLES {
        let row = db
            .admin
            .query_one(
                &format!(
                    "SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') \
                     FROM {t} x WHERE tenant_id = $1"
                ),
                &[&tenant],
            )
            .await
            .unwrap();
        parts.push(row.get::<_, String>(0));
    }
    parts.join(",")
}

/// The tenant's content with global keys replaced by what they identify.
async fn content(db: &TestDb, tenant: Uuid) -> Vec<String> {
    let q = "
        SELECT 'org|' || o.id || '|' || coalesce(o.parent_org_id::text, '-') || '|' || o.name || '|' || o.country
          FROM esg.organisations o WHERE o.tenant_id = $1
        UNION ALL
        SELECT 'entity|' || e.organisation_id || '|' || e.name || '|' || e.kind
          FROM esg.reporting_entities e WHERE e.tenant_id = $1
        UNION ALL
        SELECT 'metric|' || m.id || '|' || m.code || '|' || m.unit
          FROM esg.metrics m WHERE m.tenant_id = $1
        UNION ALL
        SELECT 'point|' || e.name || '|' || m.code || '|' || d.period || '|' || d.value
          FROM esg.data_points d
          JOIN esg.reporting_entities e ON e.id = d.entity_id AND e.tenant_id = d.tenant_id
          JOIN esg.metrics m ON m.id = d.metric_id AND m.tenant_id = d.tenant_id
         WHERE d.tenant_id = $1
        ORDER BY 1";
    db.admin
        .query(q, &[&tenant])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_of_a_demo_tenant_is_complete_remapped_and_isolated() {
    let db = TestDb::new("clone_demo").await;
    let acme = db.create_tenant("acme", None).await;
    let other = db.create_tenant("other", None).await;
    db.seed(acme, "acme", 12).await;
    db.seed(other, "other", 3).await;
    // Rows written through the application as well, not only by the seed.
    let member = db.login("acme_app", &["tenancy_member"]).await;
    db.bind(&member, acme).await;
    let app = db.connect_as(&member).await;
    app.batch_execute(
        "INSERT INTO esg.reporting_entities (organisation_id, name, kind)
             SELECT id, 'app site', 'warehouse' FROM esg.organisations ORDER BY id LIMIT 1",
    )
    .await
    .unwrap();

    let before = digest(&db, acme).await;
    let other_before = digest(&db, other).await;
    let clone: Uuid = db
        .admin
        .query_one(
            "SELECT tenancy.clone_tenant('acme', 'acme-copy', 'Acme copy')",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("clone_tenant: {}", describe(&e)))
        .get(0);

    // Same row count in every managed table.
    for t in TABLES {
        let q = format!("SELECT count(*) FROM {t} WHERE tenant_id = $1");
        let src: i64 = db.admin.query_one(&q, &[&acme]).await.unwrap().get(0);
        let dst: i64 = db.admin.query_one(&q, &[&clone]).await.unwrap().get(0);
        assert!(src > 0, "{t}: the source has rows");
        assert_eq!(src, dst, "{t}: the clone has as many rows as the source");
    }
    // Equal content once global keys are mapped to what they identify.
    assert_eq!(content(&db, acme).await, content(&db, clone).await);
    // Global keys are new: no uuid entity id and no data point id is shared.
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM esg.reporting_entities c JOIN esg.reporting_entities s USING (id)
              WHERE c.tenant_id = {} AND s.tenant_id = {}",
            lit(&clone.to_string()),
            lit(&acme.to_string())
        ))
        .await,
        0
    );
    // Every foreign key of the clone points inside the clone.
    let outside = db
        .count(&format!(
            "SELECT count(*) FROM esg.data_points d
               LEFT JOIN esg.reporting_entities e ON e.id = d.entity_id AND e.tenant_id = d.tenant_id
              WHERE d.tenant_id = {c} AND e.id IS NULL",
            c = lit(&clone.to_string())
        ))
        .await;
    assert_eq!(
        outside, 0,
        "every data point references an entity of the clone"
    );
    // The source and the other tenant are untouched.
    assert_eq!(digest(&db, acme).await, before, "the source is untouched");
    assert_eq!(
        digest(&db, other).await,
        other_before,
        "other tenants are untouched"
    );

    // Isolation: a member of the clone sees exactly the clone; the source's
    // member sees nothing of the clone.
    let copy_member = db.login("copy_app", &["tenancy_member"]).await;
    db.bind(&copy_member, clone).await;
    let copy_app = db.connect_as(&copy_member).await;
    for t in TABLES {
        let seen: Vec<Uuid> = copy_app
            .query(&format!("SELECT DISTINCT tenant_id FROM {t}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            seen,
            vec![clone],
            "{t}: the clone's member sees only the clone"
        );
        let n: i64 = app
            .query_one(
                &format!("SELECT count(*) FROM {t} WHERE tenant_id = $1"),
                &[&clone],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{t}: the source's member sees nothing of the clone");
    }
}
