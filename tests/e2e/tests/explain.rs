//! EXPLAIN check: on a managed table with 20,000 rows over 50 tenants (and
//! ANALYZE run), tenant-scoped queries by a bound member use an index on the
//! tenant column (or the primary key, with the tenant as filter, for a point
//! lookup), and the context function runs once per query, as an InitPlan
//! with loops = 1, never per row.

use serde_json::Value;
use std::collections::BTreeSet;
use tenancy_e2e::*;

const TENANTS: i64 = 50;
const PER_TENANT: i64 = 400;

/// Every plan node, depth first.
fn nodes(plan: &Value, out: &mut Vec<Value>) {
    out.push(plan.clone());
    if let Some(children) = plan.get("Plans").and_then(Value::as_array) {
        for c in children {
            nodes(c, out);
        }
    }
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

struct Explained {
    all: Vec<Value>,
    rows: i64,
}

async fn explain(c: &Client, sql: &str) -> Explained {
    let row = c
        .query_one(
            &format!("EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) {sql}"),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {}", describe(&e)));
    let v: Value = row.get(0);
    let plan = &v[0]["Plan"];
    let mut all = vec![];
    nodes(plan, &mut all);
    Explained {
        all,
        rows: plan["Actual Rows"].as_i64().unwrap(),
    }
}

impl Explained {
    /// The scan node(s) reading `table`.
    fn scans(&self, table: &str) -> Vec<&Value> {
        self.all
            .iter()
            .filter(|n| text(n, "Relation Name") == table)
            .collect()
    }

    /// Assert the context is an InitPlan that ran once, calling `func`.
    fn context_once(&self, func: &str, sql: &str) {
        let inits: Vec<&Value> = self
            .all
            .iter()
            .filter(|n| text(n, "Parent Relationship") == "InitPlan")
            .collect();
        let ctx: Vec<&&Value> = inits
            .iter()
            .filter(|n| text(n, "Output").contains(func))
            .collect();
        assert_eq!(
            ctx.len(),
            1,
            "{sql}: one InitPlan computing {func}: {:#?}",
            self.all
        );
        assert_eq!(
            ctx[0]["Actual Loops"].as_i64(),
            Some(1),
            "{sql}: the InitPlan ran once"
        );
        // Nothing else calls the context function (no per-row evaluation).
        for n in &self.all {
            if text(n, "Parent Relationship") == "InitPlan" {
                continue;
            }
            for key in ["Filter", "Index Cond", "Recheck Cond", "Output"] {
                let t = text(n, key);
                assert!(
                    !t.contains("current_tenant") && !t.contains("visible_tenants"),
                    "{sql}: {} evaluates the context in {key}: {t}",
                    text(n, "Node Type")
                );
            }
        }
    }
}

#[tokio::test]
async fn tenant_scoped_queries_use_the_tenant_index_and_evaluate_the_context_once() {
    let db = TestDb::new("explain").await;
    db.exec(&format!(
        "SELECT tenancy.create_tenant('t' || g, 'Tenant ' || g) FROM generate_series(1, {TENANTS}) g;
         INSERT INTO esg.organisations (tenant_id, name) SELECT id, slug FROM tenancy.tenants;
         INSERT INTO esg.reporting_entities (tenant_id, organisation_id, name)
              SELECT o.tenant_id, o.id, o.name || ' site ' || k FROM esg.organisations o, generate_series(1, 2) k;
         INSERT INTO esg.metrics (tenant_id, code, name, unit)
              SELECT t.id, 'm' || k, 'metric ' || k, 'MWh' FROM tenancy.tenants t, generate_series(1, {PER_TENANT}) k;
         INSERT INTO esg.data_points (tenant_id, entity_id, metric_id, period, value)
              SELECT e.tenant_id, e.id, m.id, date '2020-01-01' + p, p
                FROM esg.reporting_entities e
                JOIN esg.metrics m ON m.tenant_id = e.tenant_id AND m.code IN ('m1', 'm2')
               CROSS JOIN generate_series(1, {}) p;
         ANALYZE;",
        PER_TENANT / 4
    ))
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM esg.data_points").await,
        TENANTS * PER_TENANT
    );
    assert_eq!(
        db.count("SELECT count(*) FROM esg.metrics").await,
        TENANTS * PER_TENANT
    );
    let tenant: Uuid = db
        .admin
        .query_one("SELECT id FROM tenancy.tenants WHERE slug = 't7'", &[])
        .await
        .unwrap()
        .get(0);
    let role = db.login("member", &[MEMBER]).await;
    db.bind(&role, tenant).await;
    let c = db.connect_as(&role).await;

    // Indexes whose first column is tenant_id, per table.
    let tenant_indexes: BTreeSet<String> = db
        .admin
        .query(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
              WHERE i.indrelid IN ('esg.metrics'::regclass, 'esg.data_points'::regclass)
                AND a.attname = 'tenant_id'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        tenant_indexes.iter().any(|i| i.starts_with("data_points")),
        "{tenant_indexes:?}"
    );

    let uses_tenant_index = |e: &Explained, table: &str, sql: &str| {
        let scans = e.scans(table);
        assert_eq!(scans.len(), 1, "{sql}: one scan of {table}");
        let s = scans[0];
        let node = text(s, "Node Type");
        let index = if node == "Bitmap Heap Scan" {
            // The index is on the bitmap index scan below it.
            let children = s["Plans"].as_array().cloned().unwrap_or_default();
            let child = children
                .iter()
                .find(|p| text(p, "Node Type") == "Bitmap Index Scan")
                .unwrap_or_else(|| {
                    panic!("{sql}: bitmap heap scan without an index scan: {children:#?}")
                });
            (text(child, "Index Name"), text(child, "Index Cond"))
        } else {
            assert!(
                node == "Index Scan" || node == "Index Only Scan",
                "{sql}: {table} is read by {node}, not through the tenant index"
            );
            (text(s, "Index Name"), text(s, "Index Cond"))
        };
        assert!(
            tenant_indexes.contains(&index.0),
            "{sql}: index {} does not lead with tenant_id",
            index.0
        );
        assert!(
            index.1.contains("tenant_id"),
            "{sql}: index condition {} is not on the tenant",
            index.1
        );
    };

    // Non-hierarchical table: tenant_id = (SELECT tenancy.current_tenant()).
    for sql in [
        "SELECT * FROM esg.metrics",
        "SELECT count(*) FROM esg.metrics",
        "SELECT * FROM esg.metrics WHERE code LIKE 'm1%'",
    ] {
        let e = explain(&c, sql).await;
        uses_tenant_index(&e, "metrics", sql);
        e.context_once("current_tenant", sql);
    }
    assert_eq!(
        explain(&c, "SELECT * FROM esg.metrics").await.rows,
        PER_TENANT
    );

    // Hierarchical table: tenant_id = ANY ((SELECT tenancy.visible_tenants())).
    for sql in [
        "SELECT * FROM esg.data_points",
        "SELECT sum(value) FROM esg.data_points",
    ] {
        let e = explain(&c, sql).await;
        uses_tenant_index(&e, "data_points", sql);
        e.context_once("visible_tenants", sql);
    }
    assert_eq!(
        explain(&c, "SELECT * FROM esg.data_points").await.rows,
        PER_TENANT
    );

    // Point lookup: the primary key, with the tenant checked on the one row.
    let own: i64 = db
        .admin
        .query_one(
            "SELECT min(id) FROM esg.data_points WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0);
    let other: i64 = db
        .admin
        .query_one(
            "SELECT min(id) FROM esg.data_points WHERE tenant_id <> $1",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0);
    for (id, expect) in [(own, 1), (other, 0)] {
        let sql = format!("SELECT * FROM esg.data_points WHERE id = {id}");
        let e = explain(&c, &sql).await;
        let scans = e.scans("data_points");
        assert_eq!(scans.len(), 1, "{sql}");
        let s = scans[0];
        assert!(
            text(s, "Node Type").starts_with("Index"),
            "{sql}: {}",
            text(s, "Node Type")
        );
        assert_eq!(text(s, "Index Name"), "data_points_pkey", "{sql}");
        let conds = format!("{} {}", text(s, "Index Cond"), text(s, "Filter"));
        assert!(
            conds.contains("tenant_id"),
            "{sql}: tenant not checked: {conds}"
        );
        assert_eq!(e.rows, expect, "{sql}");
        e.context_once("visible_tenants", &sql);
    }
}
