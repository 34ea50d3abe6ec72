//! Isolation attacks: a LOGIN role in tenancy_member, bound or set to tenant
//! A, tries to read and change tenant B's rows. Every test checks with the
//! superuser connection that no row of B (or of any other tenant) leaks or
//! changes, and that A's own rows behave as they should (so "nothing" is
//! never just a broken connection).

use std::collections::BTreeSet;
use tenancy_e2e::*;

/// The ids (as text) of `tenant`'s rows in `table`, read by the superuser.
async fn ids_of(db: &TestDb, table: &str, tenant: Uuid) -> Vec<String> {
    db.admin
        .query(
            &format!("SELECT id::text FROM {table} WHERE tenant_id = $1 ORDER BY 1"),
            &[&tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn set(ids: &[Uuid]) -> BTreeSet<Uuid> {
    ids.iter().copied().collect()
}

#[tokio::test]
async fn read_other_tenant_rows_by_id() {
    let w = World::new("read_by_id").await;
    let before = w.db.snapshot().await;
    for (mode, c) in w.members_of_a().await {
        for table in TENANT_TABLES {
            for id in ids_of(&w.db, table, w.b).await {
                let n = count(
                    &c,
                    &format!("SELECT count(*) FROM {table} WHERE id = {}", lit(&id)),
                )
                .await;
                assert_eq!(n, 0, "{mode}: B's row {id} of {table} is visible by id");
            }
            // The same lookup finds A's own rows, so 0 above is the policy at work.
            for id in ids_of(&w.db, table, w.a).await {
                let n = count(
                    &c,
                    &format!("SELECT count(*) FROM {table} WHERE id = {}", lit(&id)),
                )
                .await;
                assert_eq!(n, 1, "{mode}: A's own row {id} of {table} by id");
            }
        }
    }
    assert_eq!(w.db.snapshot().await, before);
}

#[tokio::test]
async fn read_other_tenant_rows_by_tenant_filter() {
    let w = World::new("read_by_tenant").await;
    let snap = w.db.snapshot().await;
    for (mode, c) in w.members_of_a().await {
        for table in TENANT_TABLES {
            let b = count(
                &c,
                &format!("SELECT count(*) FROM {table} WHERE tenant_id = '{}'", w.b),
            )
            .await;
            assert_eq!(b, 0, "{mode}: {table} filtered on B");
            let ab = count(
                &c,
                &format!(
                    "SELECT count(*) FROM {table} WHERE tenant_id IN ('{}', '{}')",
                    w.a, w.b
                ),
            )
            .await;
            assert_eq!(
                ab as usize,
                snap.count(table, w.a),
                "{mode}: {table} filtered on A or B"
            );
            let all = count(&c, &format!("SELECT count(*) FROM {table}")).await;
            assert_eq!(
                all as usize,
                snap.count(table, w.a),
                "{mode}: {table} unfiltered"
            );
            assert_eq!(
                visible_tenants(&c, table).await,
                set(&[w.a]),
                "{mode}: {table}"
            );
            // Predicates that never mention tenant_id do not widen anything.
            let any = count(
                &c,
                &format!("SELECT count(*) FROM {table} WHERE true OR tenant_id IS NULL"),
            )
            .await;
            assert_eq!(
                any as usize,
                snap.count(table, w.a),
                "{mode}: {table} with OR true"
            );
        }
        // The registry shows A alone, never B's slug.
        let slugs: Vec<String> = c
            .query("SELECT slug FROM tenancy.tenants ORDER BY slug", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            slugs,
            vec!["tenant-a".to_string()],
            "{mode}: tenancy.tenants"
        );
        // Grouping by tenant yields only A.
        let groups = c
            .query(
                "SELECT tenant_id, count(*) FROM esg.data_points GROUP BY tenant_id",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(groups.len(), 1, "{mode}: GROUP BY tenant_id");
        assert_eq!(groups[0].get::<_, Uuid>(0), w.a);
    }
}

#[tokio::test]
async fn read_other_tenant_rows_by_join() {
    let w = World::new("read_by_join").await;
    let snap = w.db.snapshot().await;
    let a_points = snap.count("esg.data_points", w.a) as i64;
    assert!(a_points > 0);
    for (mode, c) in w.members_of_a().await {
        // The full demo join: every row is A's.
        let rows = c
            .query(
                "SELECT DISTINCT d.tenant_id, e.tenant_id, o.tenant_id, m.tenant_id
                   FROM esg.data_points d
                   JOIN esg.reporting_entities e ON e.id = d.entity_id
                   JOIN esg.organisations o ON o.id = e.organisation_id
                   JOIN esg.metrics m ON m.id = d.metric_id
                   JOIN esg.units u ON u.code = m.unit",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{mode}: join yields one tenant combination");
        for i in 0..4 {
            assert_eq!(rows[0].get::<_, Uuid>(i), w.a, "{mode}: join column {i}");
        }
        let joined = count(
            &c,
            "SELECT count(*) FROM esg.data_points d JOIN esg.reporting_entities e ON e.id = d.entity_id",
        )
        .await;
        assert_eq!(joined, a_points, "{mode}: joined data points");
        // Joins and subqueries aimed at B find nothing.
        for sql in [
            format!(
                "SELECT count(*) FROM esg.data_points d JOIN esg.metrics m ON m.id = d.metric_id \
                 WHERE m.tenant_id = '{}'",
                w.b
            ),
            format!(
                "SELECT count(*) FROM esg.data_points WHERE entity_id IN \
                 (SELECT id FROM esg.reporting_entities WHERE tenant_id = '{}')",
                w.b
            ),
            format!(
                "SELECT count(*) FROM esg.organisations o LEFT JOIN esg.reporting_entities e \
                 ON e.organisation_id = o.id WHERE o.tenant_id = '{0}' OR e.tenant_id = '{0}'",
                w.b
            ),
            format!(
                "WITH x AS (SELECT * FROM esg.data_points) SELECT count(*) FROM x WHERE tenant_id = '{}'",
                w.b
            ),
            format!(
                "SELECT count(*) FROM (SELECT tenant_id FROM esg.metrics UNION ALL \
                 SELECT tenant_id FROM esg.organisations) u WHERE tenant_id = '{}'",
                w.b
            ),
        ] {
            assert_eq!(count(&c, &sql).await, 0, "{mode}: {sql}");
        }
        // A lateral join on B's entity ids (known to the attacker) finds nothing.
        let b_entities = ids_of(&w.db, "esg.reporting_entities", w.b).await;
        let list = b_entities
            .iter()
            .map(|i| lit(i))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT count(*) FROM unnest(ARRAY[{list}]::uuid[]) AS k(id) \
             CROSS JOIN LATERAL (SELECT * FROM esg.data_points d WHERE d.entity_id = k.id) p"
        );
        assert_eq!(
            count(&c, &sql).await,
            0,
            "{mode}: lateral join on B's entity ids"
        );
    }
}

#[tokio::test]
async fn update_other_tenant_rows() {
    let w = World::new("update_other").await;
    let before = w.db.snapshot().await;
    for (mode, c) in w.members_of_a().await {
        for table in TENANT_TABLES {
            for id in ids_of(&w.db, table, w.b).await {
                let sql = if table == "esg.data_points" {
                    format!("UPDATE {table} SET value = -1 WHERE id = {}", lit(&id))
                } else {
                    format!("UPDATE {table} SET name = 'pwned' WHERE id = {}", lit(&id))
                };
                assert_eq!(affected(&c, &sql).await, 0, "{mode}: {sql}");
            }
            let sql = format!(
                "UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = '{}'",
                w.b
            );
            assert_eq!(affected(&c, &sql).await, 0, "{mode}: {sql}");
            // RETURNING does not expose B's rows either.
            let rows = c
                .query(
                    &format!("UPDATE {table} SET tenant_id = tenant_id RETURNING tenant_id"),
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(
                rows.len(),
                before.count(table, w.a),
                "{mode}: {table} unfiltered update"
            );
            assert!(
                rows.iter().all(|r| r.get::<_, Uuid>(0) == w.a),
                "{mode}: {table} RETURNING"
            );
        }
        // Joined update aimed at B's metrics.
        let sql = format!(
            "UPDATE esg.data_points d SET value = -1 FROM esg.metrics m \
             WHERE m.id = d.metric_id AND m.tenant_id = '{}'",
            w.b
        );
        assert_eq!(affected(&c, &sql).await, 0, "{mode}: {sql}");
        // Moving A's own rows into B is refused by the WITH CHECK.
        let msg = expect_sqlstate(
            c.execute(
                &format!("UPDATE esg.metrics SET tenant_id = '{}'", w.b),
                &[],
            )
            .await,
            "42501",
            "moving A's metrics into B",
        );
        assert!(msg.contains("row-level security"), "{msg}");
    }
    // Every update above was a no-op on data (tenant_id = tenant_id) or refused.
    assert_eq!(w.db.snapshot().await, before);
    // An update without WHERE changes exactly A's rows.
    let (_, c) = w.member_bound("mem_upd", w.a).await;
    let n = affected(&c, "UPDATE esg.data_points SET value = value + 1").await;
    assert_eq!(n as usize, before.count("esg.data_points", w.a));
    let after = w.db.snapshot().await;
    assert_eq!(
        after.except(w.a),
        before.except(w.a),
        "only A's rows changed"
    );
    assert_ne!(after.of(w.a), before.of(w.a), "A's rows did change");
}

#[tokio::test]
async fn delete_other_tenant_rows() {
    let w = World::new("delete_other").await;
    let before = w.db.snapshot().await;
    for (mode, c) in w.members_of_a().await {
        for table in TENANT_TABLES.iter().rev() {
            for id in ids_of(&w.db, table, w.b).await {
                let sql = format!("DELETE FROM {table} WHERE id = {}", lit(&id));
                assert_eq!(affected(&c, &sql).await, 0, "{mode}: {sql}");
            }
            let sql = format!("DELETE FROM {table} WHERE tenant_id = '{}'", w.b);
            assert_eq!(affected(&c, &sql).await, 0, "{mode}: {sql}");
            let rows = c
                .query(
                    &format!(
                        "DELETE FROM {table} WHERE tenant_id <> '{}' RETURNING id",
                        w.a
                    ),
                    &[],
                )
                .await
                .unwrap();
            assert!(
                rows.is_empty(),
                "{mode}: {table} delete of everything but A"
            );
        }
        let sql = format!(
            "DELETE FROM esg.data_points d USING esg.reporting_entities e \
             WHERE e.id = d.entity_id AND e.tenant_id = '{}'",
            w.b
        );
        assert_eq!(affected(&c, &sql).await, 0, "{mode}: {sql}");
    }
    assert_eq!(w.db.snapshot().await, before);
    // DELETE without WHERE removes exactly A's data points.
    let (_, c) = w.member_bound("mem_del", w.a).await;
    let n = affected(&c, "DELETE FROM esg.data_points").await;
    assert_eq!(n as usize, before.count("esg.data_points", w.a));
    let after = w.db.snapshot().await;
    assert_eq!(
        after.except(w.a),
        before.except(w.a),
        "only A's rows deleted"
    );
    assert_eq!(after.count("esg.data_points", w.a), 0);
}

#[tokio::test]
async fn insert_with_other_tenant_id_is_rejected() {
    let w = World::new("insert_other").await;
    let before = w.db.snapshot().await;
    let b_entity = ids_of(&w.db, "esg.reporting_entities", w.b).await[0].clone();
    let b_metric = ids_of(&w.db, "esg.metrics", w.b).await[0].clone();
    let b_org = ids_of(&w.db, "esg.organisations", w.b).await[0].clone();
    for (mode, c) in w.members_of_a().await {
        let b = w.b;
        for sql in [
            format!("INSERT INTO esg.organisations (tenant_id, name) VALUES ('{b}', 'evil org')"),
            format!(
                "INSERT INTO esg.reporting_entities (tenant_id, organisation_id, name) VALUES ('{b}', {b_org}, 'evil')"
            ),
            format!("INSERT INTO esg.metrics (tenant_id, code, name, unit) VALUES ('{b}', 'evil', 'evil', 'MWh')"),
            format!(
                "INSERT INTO esg.data_points (tenant_id, entity_id, metric_id, period, value) \
                 VALUES ('{b}', '{b_entity}', {b_metric}, '2025-01-01', 1)"
            ),
            // Bulk: INSERT ... SELECT with B's id.
            format!(
                "INSERT INTO esg.metrics (tenant_id, code, name, unit) \
                 SELECT '{b}', 'bulk' || g, 'bulk', 'MWh' FROM generate_series(1, 3) g"
            ),
            // Upsert onto B's existing metric key.
            format!(
                "INSERT INTO esg.metrics (tenant_id, code, name, unit) VALUES ('{b}', 'scope1', 'pwned', 'MWh') \
                 ON CONFLICT (tenant_id, code) DO UPDATE SET name = 'pwned'"
            ),
        ] {
            let msg = expect_sqlstate(c.execute(&sql, &[]).await, "42501", &format!("{mode}: {sql}"));
            assert!(msg.contains("new row violates row-level security"), "{mode}: {msg}");
        }
        // COPY FROM cannot be used to slip rows in either.
        let copy = c
            .copy_in::<_, std::io::Cursor<Vec<u8>>>(
                "COPY esg.metrics (tenant_id, code, name, unit) FROM STDIN",
            )
            .await;
        match copy {
            Err(e) => {
                assert_eq!(
                    sqlstate(&e),
                    Some("0A000"),
                    "{mode}: COPY FROM: {}",
                    describe(&e)
                );
            }
            Ok(sink) => {
                use futures_util::SinkExt;
                let mut sink = Box::pin(sink);
                let line = format!("{b}\tcopied\tcopied\tMWh\n").into_bytes();
                let r = async {
                    sink.send(std::io::Cursor::new(line)).await?;
                    sink.as_mut().finish().await
                }
                .await;
                assert!(r.is_err(), "{mode}: COPY FROM with B's tenant_id succeeded");
            }
        }
    }
    assert_eq!(w.db.snapshot().await, before, "no row was added anywhere");
    // The default tenant column puts a member's rows into its own tenant.
    let (_, c) = w.member_bound("mem_ins", w.a).await;
    let t: Uuid = c
        .query_one(
            "INSERT INTO esg.metrics (code, name, unit) VALUES ('own', 'own', 'MWh') RETURNING tenant_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(t, w.a);
    let after = w.db.snapshot().await;
    assert_eq!(after.except(w.a), before.except(w.a));
    assert_eq!(
        after.count("esg.metrics", w.a),
        before.count("esg.metrics", w.a) + 1
    );
}

#[tokio::test]
async fn changing_the_guc_while_bound_has_no_effect() {
    let w = World::new("guc_bound").await;
    let snap = w.db.snapshot().await;
    let a_points = snap.count("esg.data_points", w.a) as i64;
    let (_, c) = w.member_bound("mem_bound", w.a).await;
    let check = |what: &'static str| {
        let c = &c;
        let a = w.a;
        async move {
            assert_eq!(current_tenant(c).await, Some(a), "{what}: current_tenant");
            assert_eq!(
                count(c, "SELECT count(*) FROM esg.data_points").await,
                a_points,
                "{what}"
            );
            for table in TENANT_TABLES {
                assert_eq!(
                    visible_tenants(c, table).await,
                    set(&[a]),
                    "{what}: {table}"
                );
            }
        }
    };
    c.batch_execute(&format!("SET tenancy.tenant_id = '{}'", w.b))
        .await
        .unwrap();
    check("SET tenancy.tenant_id = B").await;
    c.batch_execute("SET tenancy.tenant_id = 'tenant-b'")
        .await
        .unwrap();
    check("SET tenancy.tenant_id = B's slug").await;
    c.execute(
        "SELECT set_config('tenancy.tenant_id', $1, false)",
        &[&w.b.to_string()],
    )
    .await
    .unwrap();
    check("set_config(B)").await;
    c.batch_execute(&format!("BEGIN; SET LOCAL tenancy.tenant_id = '{}'", w.b))
        .await
        .unwrap();
    check("SET LOCAL inside a transaction").await;
    c.batch_execute("COMMIT").await.unwrap();
    let msg = expect_sqlstate(
        c.execute("SELECT tenancy.set_tenant($1)", &[&w.b.to_string()])
            .await,
        "42501",
        "set_tenant(B) when bound to A",
    );
    assert!(msg.contains("bound"), "{msg}");
    expect_sqlstate(
        c.execute("SELECT tenancy.set_tenant('tenant-b', true)", &[])
            .await,
        "42501",
        "set_tenant(B's slug, local) when bound to A",
    );
    check("after the refused set_tenant").await;
    // Switching to the group role does not escape the binding either.
    c.batch_execute(&format!(
        "SET ROLE tenancy_member; SET tenancy.tenant_id = '{}'",
        w.b
    ))
    .await
    .unwrap();
    check("SET ROLE tenancy_member").await;
    c.batch_execute("RESET ROLE; RESET tenancy.tenant_id")
        .await
        .unwrap();
    check("after RESET").await;
    // Writes follow the binding, not the setting.
    c.batch_execute(&format!("SET tenancy.tenant_id = '{}'", w.b))
        .await
        .unwrap();
    let t: Uuid = c
        .query_one(
            "INSERT INTO esg.metrics (code, name, unit) VALUES ('guc', 'guc', 'MWh') RETURNING tenant_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        t, w.a,
        "a row inserted with the GUC on B still belongs to A"
    );
    assert_eq!(w.db.snapshot().await.except(w.a), snap.except(w.a));
}

#[tokio::test]
async fn no_context_sees_nothing_and_cannot_insert() {
    let w = World::new("no_context").await;
    let before = w.db.snapshot().await;
    let role = w.db.login("mem_none", &[MEMBER]).await;
    let c = w.db.connect_as(&role).await;
    // Reference data stays readable: the session works, it just has no tenant.
    assert_eq!(count(&c, "SELECT count(*) FROM esg.units").await, 2);
    for setup in ["RESET tenancy.tenant_id", "SET tenancy.tenant_id = ''"] {
        c.batch_execute(setup).await.unwrap();
        assert_eq!(current_tenant(&c).await, None, "{setup}");
        let visible: Vec<Uuid> = c
            .query("SELECT tenancy.visible_tenants()", &[])
            .await
            .unwrap()[0]
            .get::<_, Vec<Uuid>>(0);
        assert!(visible.is_empty(), "{setup}: visible_tenants");
        for table in TENANT_TABLES {
            assert_eq!(
                count(&c, &format!("SELECT count(*) FROM {table}")).await,
                0,
                "{setup}: {table}"
            );
            assert_eq!(
                affected(&c, &format!("UPDATE {table} SET tenant_id = tenant_id")).await,
                0,
                "{setup}: update {table}"
            );
        }
        assert_eq!(
            affected(&c, "DELETE FROM esg.data_points").await,
            0,
            "{setup}: delete"
        );
        assert_eq!(
            count(&c, "SELECT count(*) FROM tenancy.tenants").await,
            0,
            "{setup}: registry"
        );
        // Without a tenant the default is NULL: the insert check refuses it.
        expect_sqlstate(
            c.execute(
                "INSERT INTO esg.metrics (code, name, unit) VALUES ('x', 'x', 'MWh')",
                &[],
            )
            .await,
            "42501",
            &format!("{setup}: insert with the default tenant"),
        );
        for t in [w.a, w.b] {
            expect_sqlstate(
                c.execute(
                    &format!("INSERT INTO esg.metrics (tenant_id, code, name, unit) VALUES ('{t}', 'x', 'x', 'MWh')"),
                    &[],
                )
                .await,
                "42501",
                &format!("{setup}: insert with an explicit tenant"),
            );
        }
    }
    // An unknown tenant in the setting fails closed (an error, not rows).
    c.execute(
        "SELECT set_config('tenancy.tenant_id', $1, false)",
        &[&Uuid::new_v4().to_string()],
    )
    .await
    .unwrap();
    match c.query("SELECT tenant_id FROM esg.data_points", &[]).await {
        Ok(rows) => assert!(rows.is_empty(), "unknown tenant sees rows"),
        Err(e) => assert_eq!(
            sqlstate(&e),
            Some("P0002"),
            "unknown tenant: {}",
            describe(&e)
        ),
    }
    assert_eq!(w.db.snapshot().await, before);
}

#[tokio::test]
async fn suspended_tenant_sees_nothing_and_cannot_write() {
    let w = World::new("suspended").await;
    let before = w.db.snapshot().await;
    let a_metrics = before.count("esg.metrics", w.a) as i64;
    let members = w.members_of_a().await;
    let admin2 = w.db.connect_admin().await;
    for (mode, c) in &members {
        assert_eq!(
            count(c, "SELECT count(*) FROM esg.metrics").await,
            a_metrics,
            "{mode}: before"
        );
    }
    admin2
        .execute("SELECT tenancy.suspend_tenant('tenant-a')", &[])
        .await
        .unwrap();
    for (mode, c) in &members {
        assert_eq!(current_tenant(c).await, None, "{mode}: suspended context");
        for table in TENANT_TABLES {
            assert_eq!(
                count(c, &format!("SELECT count(*) FROM {table}")).await,
                0,
                "{mode}: {table}"
            );
            assert_eq!(
                affected(c, &format!("UPDATE {table} SET tenant_id = tenant_id")).await,
                0,
                "{mode}: update {table}"
            );
        }
        assert_eq!(
            affected(c, "DELETE FROM esg.data_points").await,
            0,
            "{mode}: delete"
        );
        expect_sqlstate(
            c.execute(
                "INSERT INTO esg.metrics (code, name, unit) VALUES ('s', 's', 'MWh')",
                &[],
            )
            .await,
            "42501",
            &format!("{mode}: insert while suspended"),
        );
        expect_sqlstate(
            c.execute(
                &format!("INSERT INTO esg.metrics (tenant_id, code, name, unit) VALUES ('{}', 's', 's', 'MWh')", w.a),
                &[],
            )
            .await,
            "42501",
            &format!("{mode}: insert with A's id while suspended"),
        );
        expect_sqlstate(
            c.execute("SELECT tenancy.set_tenant('tenant-a')", &[])
                .await,
            "55000",
            &format!("{mode}: set_tenant of a suspended tenant"),
        );
    }
    assert_eq!(
        w.db.snapshot().await,
        before,
        "nothing changed while suspended"
    );
    admin2
        .execute("SELECT tenancy.resume_tenant('tenant-a')", &[])
        .await
        .unwrap();
    for (mode, c) in &members {
        assert_eq!(current_tenant(c).await, Some(w.a), "{mode}: resumed");
        assert_eq!(
            count(c, "SELECT count(*) FROM esg.metrics").await,
            a_metrics,
            "{mode}: after resume"
        );
    }
    for (mode, c) in &members {
        let t: Uuid = c
            .query_one(
                &format!("INSERT INTO esg.metrics (code, name, unit) VALUES ('r-{mode}', 'r', 'MWh') RETURNING tenant_id"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(t, w.a, "{mode}: writes again after resume");
    }
    assert_eq!(w.db.snapshot().await.except(w.a), before.except(w.a));
}

/// The session has no tenant: no context, no rows of a tenant table.
async fn assert_no_tenant(c: &Client, what: &str) {
    assert_eq!(current_tenant(c).await, None, "{what}: context");
    assert_eq!(
        count(c, "SELECT count(*) FROM esg.metrics").await,
        0,
        "{what}: rows"
    );
}

async fn resume_a(admin: &Client) {
    admin
        .execute("SELECT tenancy.resume_tenant('tenant-a')", &[])
        .await
        .unwrap();
}

/// A suspension committed while a member's REPEATABLE READ transaction is
/// open: that transaction may keep its snapshot's view, but every later
/// transaction of the same session must see the suspension. (The context
/// computed under the old snapshot after the invalidation arrived used to
/// be cached for the session's life: it kept reading and writing.) The
/// same for a binding made meanwhile.
#[tokio::test]
async fn a_suspension_during_an_open_transaction_reaches_the_next_one() {
    let w = World::new("suspend_rr").await;
    let admin2 = w.db.connect_admin().await;
    for (mode, c) in &w.members_of_a().await {
        c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
            .await
            .unwrap();
        admin2
            .execute("SELECT tenancy.suspend_tenant('tenant-a')", &[])
            .await
            .unwrap();
        // inside the old snapshot: whatever it says, it must not be cached
        let _ = current_tenant(c).await;
        let _ = count(c, "SELECT count(*) FROM esg.metrics").await;
        c.batch_execute("COMMIT").await.unwrap();
        assert_no_tenant(c, &format!("{mode}: next transaction")).await;
        resume_a(&admin2).await;
        assert_eq!(current_tenant(c).await, Some(w.a), "{mode}: resumed");
    }
    // a role bound to B while its session has a transaction open
    let login = w.db.login("late_bound", &["tenancy_member"]).await;
    let c = w.db.connect_as(&login).await;
    c.batch_execute("SELECT tenancy.set_tenant('tenant-a')")
        .await
        .unwrap();
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .await
        .unwrap();
    w.db.bind(&login, w.b).await;
    let _ = current_tenant(&c).await;
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(current_tenant(&c).await, Some(w.b), "the binding applies");
}

/// The same through an imported snapshot: a transaction that starts after
/// the suspension but runs on a snapshot exported before it (`SET
/// TRANSACTION SNAPSHOT`) still sees the tenant active — only for itself.
#[tokio::test]
async fn an_imported_old_snapshot_does_not_bring_a_suspended_tenant_back() {
    let w = World::new("suspend_snap").await;
    let exporter = w.db.connect_admin().await;
    let admin2 = w.db.connect_admin().await;
    for (mode, c) in &w.members_of_a().await {
        exporter
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .await
            .unwrap();
        let snap: String = exporter
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .unwrap()
            .get(0);
        admin2
            .execute("SELECT tenancy.suspend_tenant('tenant-a')", &[])
            .await
            .unwrap();
        // the session has seen the suspension (in a transaction of its own),
        // then asks under a setting text it has not used yet (a cache miss)
        assert_eq!(current_tenant(c).await, None, "{mode}: suspended");
        c.batch_execute(&format!(
            "SET tenancy.tenant_id = '{}'",
            w.a.to_string().to_uppercase()
        ))
        .await
        .unwrap();
        c.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{snap}'"
        ))
        .await
        .unwrap();
        let _ = current_tenant(c).await;
        c.batch_execute("COMMIT").await.unwrap();
        exporter.batch_execute("COMMIT").await.unwrap();
        assert_no_tenant(c, &format!("{mode}: after the import")).await;
        resume_a(&admin2).await;
    }
}

/// `set_tenant(x, is_local => true)` as a statement of its own outside a
/// transaction block ends with that statement (as `SET LOCAL`); a tenant
/// set earlier for the session — on a pooled connection perhaps by another
/// client — must not apply to the next statement instead: it is cleared.
/// Inside `BEGIN … COMMIT` the local tenant lasts until `COMMIT`, and the
/// session's own tenant is untouched.
#[tokio::test]
async fn a_local_tenant_outside_a_transaction_leaves_no_earlier_tenant_behind() {
    let w = World::new("local_autocommit").await;
    let login = w.db.login("ctx_local", &["tenancy_member"]).await;
    let c = w.db.connect_as(&login).await;
    // "client 1" left a session tenant on the connection
    c.batch_execute("SELECT tenancy.set_tenant('tenant-b')")
        .await
        .unwrap();
    assert_eq!(current_tenant(&c).await, Some(w.b));
    // a failed local switch changes nothing
    assert!(c
        .batch_execute("SELECT tenancy.set_tenant('nobody', true)")
        .await
        .is_err());
    assert_eq!(current_tenant(&c).await, Some(w.b), "after a failed switch");
    // "client 2" asks for A, transaction-locally, in autocommit
    c.batch_execute("SELECT tenancy.set_tenant('tenant-a', true)")
        .await
        .unwrap();
    assert_eq!(
        current_tenant(&c).await,
        None,
        "no tenant after the statement"
    );
    assert_eq!(count(&c, "SELECT count(*) FROM esg.metrics").await, 0);
    // in a transaction block: A until COMMIT, then the session's own tenant
    c.batch_execute("SELECT tenancy.set_tenant('tenant-b')")
        .await
        .unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("SELECT tenancy.set_tenant('tenant-a', true)")
        .await
        .unwrap();
    assert_eq!(current_tenant(&c).await, Some(w.a), "inside the block");
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        current_tenant(&c).await,
        Some(w.b),
        "the session's tenant after COMMIT"
    );
    // clear_tenant(true) in autocommit clears the session's tenant too
    c.batch_execute("SELECT tenancy.clear_tenant(true)")
        .await
        .unwrap();
    assert_eq!(current_tenant(&c).await, None, "after clear_tenant(true)");
}

async fn copy_lines(c: &Client, sql: &str) -> Vec<Vec<String>> {
    use futures_util::TryStreamExt;
    let stream = c
        .copy_out(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    let chunks: Vec<_> = stream
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    let bytes: Vec<u8> = chunks.iter().flat_map(|b| b.iter().copied()).collect();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn copy_to_stdout_returns_only_own_rows() {
    let w = World::new("copy_out").await;
    let snap = w.db.snapshot().await;
    let a = w.a.to_string();
    for (mode, c) in w.members_of_a().await {
        // (sql, index of the tenant column, table)
        for (sql, col, table) in [
            (
                "COPY (SELECT tenant_id, id FROM esg.data_points) TO STDOUT",
                0,
                "esg.data_points",
            ),
            ("COPY esg.data_points TO STDOUT", 1, "esg.data_points"),
            ("COPY esg.organisations TO STDOUT", 0, "esg.organisations"),
            (
                "COPY esg.reporting_entities (tenant_id, name) TO STDOUT",
                0,
                "esg.reporting_entities",
            ),
            (
                "COPY esg.metrics TO STDOUT (FORMAT csv, HEADER false, DELIMITER E'\\t')",
                0,
                "esg.metrics",
            ),
        ] {
            let lines = copy_lines(&c, sql).await;
            assert_eq!(lines.len(), snap.count(table, w.a), "{mode}: {sql}");
            assert!(
                lines.iter().all(|l| l[col] == a),
                "{mode}: {sql} returned another tenant's row"
            );
        }
        let sql = format!(
            "COPY (SELECT * FROM esg.data_points WHERE tenant_id = '{}') TO STDOUT",
            w.b
        );
        assert!(copy_lines(&c, &sql).await.is_empty(), "{mode}: {sql}");
    }
}

#[tokio::test]
async fn view_without_security_invoker_by_table_owner_is_confined() {
    let w = World::new("owner_view").await;
    let owner = w.db.login("owner", &[]).await;
    w.db.exec(&format!(
        "GRANT USAGE, CREATE ON SCHEMA esg TO {}",
        ident(&owner)
    ))
    .await;
    let oc = w.db.connect_as(&owner).await;
    oc.batch_execute(
        "CREATE TABLE esg.notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id uuid NOT NULL, body text NOT NULL)",
    )
    .await
    .unwrap();
    w.db.exec("SELECT tenancy.enable('esg.notes')").await;
    w.db.exec(&format!(
        "INSERT INTO esg.notes (tenant_id, body) VALUES ('{0}', 'a1'), ('{0}', 'a2'), ('{1}', 'b1'), ('{1}', 'b2'), ('{1}', 'b3')",
        w.a, w.b
    ))
    .await;
    // The owner makes a plain view (security_invoker off) and shares it.
    oc.batch_execute(
        "CREATE VIEW esg.notes_v AS SELECT tenant_id, body FROM esg.notes; \
         GRANT SELECT ON esg.notes_v TO tenancy_member",
    )
    .await
    .unwrap();
    // FORCE row level security: the owner itself, with no tenant, sees nothing.
    assert_eq!(
        count(&oc, "SELECT count(*) FROM esg.notes").await,
        0,
        "owner without context"
    );
    assert_eq!(
        count(&oc, "SELECT count(*) FROM esg.notes_v").await,
        0,
        "owner's view without context"
    );
    let members = w.members_of_a().await;
    for (mode, c) in &members {
        let rows = c
            .query("SELECT tenant_id, body FROM esg.notes_v ORDER BY body", &[])
            .await
            .unwrap();
        let bodies: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
        assert_eq!(
            bodies,
            vec!["a1", "a2"],
            "{mode}: view over the owner's table"
        );
        assert!(rows.iter().all(|r| r.get::<_, Uuid>(0) == w.a), "{mode}");
        let b = count(
            c,
            &format!(
                "SELECT count(*) FROM esg.notes_v WHERE tenant_id = '{}'",
                w.b
            ),
        )
        .await;
        assert_eq!(b, 0, "{mode}: B through the view");
    }
    // The same holds for a view over a demo table made by a non-superuser.
    w.db.exec(&format!(
        "GRANT SELECT ON esg.data_points TO {}",
        ident(&owner)
    ))
    .await;
    oc.batch_execute(
        "CREATE VIEW esg.points_v AS SELECT tenant_id, value FROM esg.data_points; \
         GRANT SELECT ON esg.points_v TO tenancy_member",
    )
    .await
    .unwrap();
    let snap = w.db.snapshot().await;
    for (mode, c) in &members {
        assert_eq!(
            visible_tenants(c, "esg.points_v").await,
            set(&[w.a]),
            "{mode}: points_v"
        );
        assert_eq!(
            count(c, "SELECT count(*) FROM esg.points_v").await as usize,
            snap.count("esg.data_points", w.a),
            "{mode}: points_v rows"
        );
    }
}

#[tokio::test]
async fn superuser_owned_view_is_flagged_by_check_isolation() {
    let w = World::new("su_view").await;
    let findings = |c: &'static str| {
        let db = &w.db;
        async move {
            db.admin
                .query(
                    "SELECT severity, problem, fix FROM tenancy.check_isolation() WHERE object = $1",
                    &[&c],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, String>(2)))
                .collect::<Vec<_>>()
        }
    };
    assert!(findings("esg.all_points").await.is_empty());
    w.db.exec(
        "CREATE VIEW esg.all_points AS SELECT tenant_id, value FROM esg.data_points; \
         GRANT SELECT ON esg.all_points TO tenancy_member",
    )
    .await;
    let f = findings("esg.all_points").await;
    assert_eq!(f.len(), 1, "{f:?}");
    let (severity, problem, fix) = &f[0];
    assert_eq!(severity, "error");
    assert!(problem.contains("security_invoker"), "{problem}");
    // The finding is real: the superuser-owned view bypasses the policies.
    let (_, c) = w.member_bound("mem_a", w.a).await;
    let leaked = visible_tenants(&c, "esg.all_points").await;
    assert!(
        leaked.contains(&w.b),
        "the flagged view does leak (that is why it is an error)"
    );
    // Running the suggested fix confines the view and clears the finding.
    w.db.exec(fix).await;
    assert!(
        findings("esg.all_points").await.is_empty(),
        "fix clears the finding"
    );
    assert_eq!(
        visible_tenants(&c, "esg.all_points").await,
        set(&[w.a]),
        "fixed view"
    );
}

#[tokio::test]
async fn viewer_cannot_write_even_with_mistaken_grants() {
    let w = World::new("viewer_write").await;
    let before = w.db.snapshot().await;
    let role = w.db.login("viewer", &[VIEWER]).await;
    w.db.bind(&role, w.a).await;
    let c = w.db.connect_as(&role).await;
    // The viewer reads its own tenant.
    for table in TENANT_TABLES {
        assert_eq!(
            count(&c, &format!("SELECT count(*) FROM {table}")).await as usize,
            before.count(table, w.a),
            "viewer reads {table}"
        );
    }
    let a = w.a;
    let writes = |table: &str| -> Vec<String> {
        vec![
            format!("UPDATE {table} SET tenant_id = tenant_id"),
            format!("UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = '{a}'"),
            format!("DELETE FROM {table} WHERE tenant_id = '{a}'"),
            format!("DELETE FROM {table}"),
        ]
    };
    let insert = format!(
        "INSERT INTO esg.metrics (tenant_id, code, name, unit) VALUES ('{a}', 'v', 'v', 'MWh')"
    );
    let insert_default =
        "INSERT INTO esg.metrics (code, name, unit) VALUES ('v', 'v', 'MWh')".to_string();
    // Without the grants: permission denied.
    for table in TENANT_TABLES {
        for sql in writes(table) {
            expect_sqlstate(c.execute(&sql, &[]).await, "42501", &sql);
        }
    }
    for sql in [&insert, &insert_default] {
        expect_sqlstate(c.execute(sql.as_str(), &[]).await, "42501", sql);
    }
    // A DBA grants writes by mistake: the restrictive policies still hold.
    w.db.exec(
        "GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA esg TO tenancy_viewer; \
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA esg TO tenancy_viewer",
    )
    .await;
    for table in TENANT_TABLES {
        for sql in writes(table) {
            assert_eq!(affected(&c, &sql).await, 0, "with mistaken grants: {sql}");
        }
    }
    for sql in [&insert, &insert_default] {
        let msg = expect_sqlstate(c.execute(sql.as_str(), &[]).await, "42501", sql);
        assert!(msg.contains("row-level security"), "{msg}");
    }
    assert_eq!(w.db.snapshot().await, before, "the viewer changed nothing");
}

#[tokio::test]
async fn analyst_reads_no_raw_rows_even_with_mistaken_grant() {
    let w = World::new("analyst_read").await;
    let before = w.db.snapshot().await;
    let role = w.db.login("analyst", &[ANALYST]).await;
    w.db.bind(&role, w.a).await;
    let bound = w.db.connect_as(&role).await;
    let role2 = w.db.login("analyst_set", &[ANALYST]).await;
    let set_ = w.db.connect_as(&role2).await;
    set_.execute("SELECT tenancy.set_tenant('tenant-a')", &[])
        .await
        .unwrap();
    for (mode, c) in [("bound", &bound), ("set", &set_)] {
        assert_eq!(current_tenant(c).await, Some(w.a), "{mode}");
        for table in TENANT_TABLES {
            expect_sqlstate(
                c.query(&format!("SELECT * FROM {table}"), &[]).await,
                "42501",
                &format!("{mode}: analyst reads {table}"),
            );
        }
    }
    w.db.exec(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA esg TO tenancy_analyst",
    )
    .await;
    for (mode, c) in [("bound", &bound), ("set", &set_)] {
        for table in TENANT_TABLES {
            assert_eq!(
                count(c, &format!("SELECT count(*) FROM {table}")).await,
                0,
                "{mode}: {table} with a mistaken GRANT SELECT"
            );
            let n = count(
                c,
                &format!("SELECT count(*) FROM {table} WHERE tenant_id = '{}'", w.a),
            )
            .await;
            assert_eq!(n, 0, "{mode}: {table} filtered on its own tenant");
            assert_eq!(
                affected(c, &format!("UPDATE {table} SET tenant_id = tenant_id")).await,
                0,
                "{mode}: update {table}"
            );
        }
        let lines = copy_lines(c, "COPY esg.organisations TO STDOUT").await;
        assert!(lines.is_empty(), "{mode}: COPY as analyst");
        expect_sqlstate(
            c.execute(
                "INSERT INTO esg.metrics (code, name, unit) VALUES ('an', 'an', 'MWh')",
                &[],
            )
            .await,
            "42501",
            &format!("{mode}: analyst insert"),
        );
    }
    assert_eq!(w.db.snapshot().await, before);
}

#[tokio::test]
async fn parent_reads_descendants_but_cannot_write_them() {
    let w = World::new("parent_reads").await;
    let before = w.db.snapshot().await;
    let (_, c) = w.member_bound("parent", w.parent).await;
    let family = set(&[w.parent, w.child, w.grandchild]);
    for table in HIERARCHICAL_TABLES {
        assert_eq!(
            visible_tenants(&c, table).await,
            family,
            "parent reads its subtree in {table}"
        );
        let expected: usize = [w.parent, w.child, w.grandchild]
            .iter()
            .map(|t| before.count(table, *t))
            .sum();
        assert_eq!(
            count(&c, &format!("SELECT count(*) FROM {table}")).await as usize,
            expected,
            "{table}"
        );
    }
    assert_eq!(
        visible_tenants(&c, "esg.metrics").await,
        set(&[w.parent]),
        "metrics is not hierarchical"
    );
    let reg: BTreeSet<Uuid> = c
        .query("SELECT id FROM tenancy.tenants", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(reg, family, "registry shows the subtree");
    // Writes reach only the parent's own rows.
    for descendant in [w.child, w.grandchild] {
        for table in TENANT_TABLES {
            let sql = format!(
                "UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = '{descendant}'"
            );
            assert_eq!(affected(&c, &sql).await, 0, "{sql}");
            let sql = format!("DELETE FROM {table} WHERE tenant_id = '{descendant}'");
            assert_eq!(affected(&c, &sql).await, 0, "{sql}");
        }
        for id in ids_of(&w.db, "esg.data_points", descendant).await {
            let sql = format!("UPDATE esg.data_points SET value = -1 WHERE id = {id}");
            assert_eq!(affected(&c, &sql).await, 0, "{sql}");
        }
        let org = ids_of(&w.db, "esg.organisations", descendant).await[0].clone();
        expect_sqlstate(
            c.execute(
                &format!(
                    "INSERT INTO esg.reporting_entities (tenant_id, organisation_id, name) VALUES ('{descendant}', {org}, 'x')"
                ),
                &[],
            )
            .await,
            "42501",
            "parent inserting into a child",
        );
    }
    assert_eq!(w.db.snapshot().await, before);
    let n = affected(&c, "UPDATE esg.data_points SET value = value + 1").await;
    assert_eq!(
        n as usize,
        before.count("esg.data_points", w.parent),
        "unfiltered update hits own rows only"
    );
    let n = affected(&c, "DELETE FROM esg.data_points").await;
    assert_eq!(
        n as usize,
        before.count("esg.data_points", w.parent),
        "unfiltered delete hits own rows only"
    );
    let after = w.db.snapshot().await;
    assert_eq!(
        after.except(w.parent),
        before.except(w.parent),
        "descendants untouched"
    );
}

#[tokio::test]
async fn child_never_sees_parent_rows() {
    let w = World::new("child_reads").await;
    let snap = w.db.snapshot().await;
    for (who, tenant, expect) in [
        ("child", w.child, set(&[w.child, w.grandchild])),
        ("grandchild", w.grandchild, set(&[w.grandchild])),
    ] {
        let (_, bound) = w.member_bound(&format!("{who}_b"), tenant).await;
        let (_, set_) = w.member_set(&format!("{who}_s"), tenant).await;
        for (mode, c) in [("bound", &bound), ("set", &set_)] {
            for table in HIERARCHICAL_TABLES {
                assert_eq!(
                    visible_tenants(c, table).await,
                    expect,
                    "{who} {mode}: {table}"
                );
                let sql = format!(
                    "SELECT count(*) FROM {table} WHERE tenant_id = '{}'",
                    w.parent
                );
                assert_eq!(count(c, &sql).await, 0, "{who} {mode}: {sql}");
            }
            assert_eq!(
                visible_tenants(c, "esg.metrics").await,
                set(&[tenant]),
                "{who} {mode}: metrics"
            );
            for id in ids_of(&w.db, "esg.data_points", w.parent).await {
                let n = count(
                    c,
                    &format!("SELECT count(*) FROM esg.data_points WHERE id = {id}"),
                )
                .await;
                assert_eq!(n, 0, "{who} {mode}: parent's data point {id}");
            }
            let sql = format!(
                "UPDATE esg.organisations SET name = 'x' WHERE tenant_id = '{}'",
                w.parent
            );
            assert_eq!(affected(c, &sql).await, 0, "{who} {mode}: {sql}");
        }
    }
    assert_eq!(w.db.snapshot().await, snap);
}

#[tokio::test]
async fn superadmin_sees_all_tenants_and_each_transaction_is_audited() {
    let w = World::new("superadmin").await;
    let snap = w.db.snapshot().await;
    let role = w.db.login("sa", &[SUPERADMIN]).await;
    let c = w.db.connect_as(&role).await;
    let audits = || async {
        w.db.admin
            .query(
                "SELECT target, details->>'command', actor::text FROM tenancy.audit_log \
                 WHERE action = 'superadmin_access' ORDER BY seq",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                )
            })
            .collect::<Vec<_>>()
    };
    assert!(audits().await.is_empty());
    let all = set(&w.tenants());
    for table in TENANT_TABLES {
        assert_eq!(
            visible_tenants(&c, table).await,
            all,
            "superadmin sees every tenant in {table}"
        );
        assert_eq!(
            count(&c, &format!("SELECT count(*) FROM {table}")).await as usize,
            snap.total(table)
        );
    }
    let entries = audits().await;
    assert_eq!(
        entries.len(),
        8,
        "one entry per statement-transaction and table: {entries:?}"
    );
    for (e, table) in entries
        .iter()
        .zip(TENANT_TABLES.iter().flat_map(|t| [t, t]))
    {
        let quoted = table.split('.').map(ident).collect::<Vec<_>>().join(".");
        assert!(e.0 == *table || e.0 == quoted, "{e:?} vs {table}");
        assert_eq!(e.1, "SELECT");
        assert_eq!(e.2, role);
    }
    // Several statements in one transaction: one entry per table and command.
    c.batch_execute(
        "BEGIN; SELECT count(*) FROM esg.metrics; SELECT * FROM esg.metrics; \
         UPDATE esg.metrics SET name = name; UPDATE esg.metrics SET name = name; COMMIT",
    )
    .await
    .unwrap();
    let entries = audits().await;
    assert_eq!(entries.len(), 10, "{entries:?}");
    assert_eq!(entries[8].1, "SELECT");
    assert_eq!(entries[9].1, "UPDATE");
    assert!(entries[8].0.contains("metrics") && entries[9].0.contains("metrics"));
    // A cross-tenant write through the super admin is audited too.
    let n = affected(
        &c,
        &format!(
            "UPDATE esg.data_points SET value = value WHERE tenant_id = '{}'",
            w.b
        ),
    )
    .await;
    assert_eq!(n as usize, snap.count("esg.data_points", w.b));
    let entries = audits().await;
    assert!(
        entries[10..]
            .iter()
            .any(|e| e.1 == "UPDATE" && e.0.contains("data_points")),
        "{entries:?}"
    );
    let ok: bool =
        w.db.admin
            .query_one("SELECT ok FROM tenancy.verify_audit()", &[])
            .await
            .unwrap()
            .get(0);
    assert!(ok, "audit chain intact");
}

#[tokio::test]
async fn superadmin_read_only_transaction_fails_closed() {
    let w = World::new("superadmin_ro").await;
    let role = w.db.login("sa", &[SUPERADMIN]).await;
    let c = w.db.connect_as(&role).await;
    c.batch_execute("BEGIN READ ONLY").await.unwrap();
    let r = c.query("SELECT * FROM esg.data_points", &[]).await;
    let msg = expect_sqlstate(r, "25006", "a super-admin read the audit log cannot record");
    assert!(msg.contains("read-only"), "{msg}");
    c.batch_execute("ROLLBACK").await.unwrap();
    let n: i64 =
        w.db.count("SELECT count(*) FROM tenancy.audit_log WHERE action = 'superadmin_access'")
            .await;
    assert_eq!(n, 0);
}

#[tokio::test]
async fn pooled_connection_local_context_ends_with_the_transaction() {
    let w = World::new("pooled").await;
    let snap = w.db.snapshot().await;
    let role = w.db.login("pool", &[MEMBER]).await;
    let c = w.db.connect_as(&role).await;
    let check_none = |what: String| {
        let c = &c;
        async move {
            assert_eq!(current_tenant(c).await, None, "{what}");
            for table in TENANT_TABLES {
                assert_eq!(
                    count(c, &format!("SELECT count(*) FROM {table}")).await,
                    0,
                    "{what}: {table}"
                );
            }
        }
    };
    check_none("fresh connection".into()).await;
    for round in 0..3 {
        for (t, slug) in [
            (w.a, "tenant-a"),
            (w.b, "tenant-b"),
            (w.parent, "parent-co"),
        ] {
            for how in ["set_config", "set_tenant", "set_local"] {
                let tx_sql = match how {
                    "set_config" => {
                        format!("BEGIN; SELECT set_config('tenancy.tenant_id', '{t}', true)")
                    }
                    "set_tenant" => format!("BEGIN; SELECT tenancy.set_tenant('{slug}', true)"),
                    _ => format!("BEGIN; SET LOCAL tenancy.tenant_id = '{slug}'"),
                };
                c.batch_execute(&tx_sql).await.unwrap();
                assert_eq!(
                    current_tenant(&c).await,
                    Some(t),
                    "{how}: inside the transaction"
                );
                assert_eq!(
                    count(&c, "SELECT count(*) FROM esg.metrics").await as usize,
                    snap.count("esg.metrics", t),
                    "{how}"
                );
                assert_eq!(visible_tenants(&c, "esg.metrics").await, set(&[t]));
                let end = if round == 1 { "ROLLBACK" } else { "COMMIT" };
                c.batch_execute(end).await.unwrap();
                check_none(format!("round {round}: after {how} for {slug} and {end}")).await;
            }
        }
    }
    // A statement prepared once and reused across transactions (as a pool
    // with statement caching does) follows each transaction's context.
    let stmt = c
        .prepare("SELECT DISTINCT tenant_id FROM esg.data_points")
        .await
        .unwrap();
    for t in [w.a, w.b, w.child, w.a] {
        c.batch_execute(&format!(
            "BEGIN; SELECT set_config('tenancy.tenant_id', '{t}', true)"
        ))
        .await
        .unwrap();
        let seen: BTreeSet<Uuid> = c
            .query(&stmt, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let expect = if t == w.child {
            set(&[w.child, w.grandchild])
        } else {
            set(&[t])
        };
        assert_eq!(
            seen, expect,
            "prepared statement inside the transaction for {t}"
        );
        c.batch_execute("COMMIT").await.unwrap();
        assert!(
            c.query(&stmt, &[]).await.unwrap().is_empty(),
            "prepared statement after the transaction"
        );
    }
    // A transaction that fails midway also drops the context.
    c.batch_execute(&format!(
        "BEGIN; SELECT set_config('tenancy.tenant_id', '{}', true)",
        w.a
    ))
    .await
    .unwrap();
    assert!(c.batch_execute("SELECT 1/0").await.is_err());
    c.batch_execute("ROLLBACK").await.unwrap();
    check_none("after a failed transaction".into()).await;
}

#[tokio::test]
async fn cache_invalidation_across_sessions() {
    let w = World::new("cache_inval").await;
    let snap = w.db.snapshot().await;
    let role = w.db.login("cached", &[MEMBER]).await;
    let s1 = w.db.connect_as(&role).await;
    let s2 = w.db.connect_admin().await;
    let sees = |expect: Option<Uuid>, what: &'static str| {
        let s1 = &s1;
        let snap = &snap;
        async move {
            // Twice: the second run is served from the backend's cache.
            for _ in 0..2 {
                assert_eq!(current_tenant(s1).await, expect, "{what}: current_tenant");
                let n = count(s1, "SELECT count(*) FROM esg.metrics").await as usize;
                assert_eq!(
                    n,
                    expect.map_or(0, |t| snap.count("esg.metrics", t)),
                    "{what}: rows"
                );
                let ts = visible_tenants(s1, "esg.metrics").await;
                assert_eq!(
                    ts,
                    expect.into_iter().collect::<BTreeSet<_>>(),
                    "{what}: tenants"
                );
            }
        }
    };
    sees(None, "unbound, nothing set").await;
    s2.execute(
        "SELECT tenancy.bind_role($1::text::regrole, 'tenant-a')",
        &[&role],
    )
    .await
    .unwrap();
    sees(Some(w.a), "after bind_role(A) in another session").await;
    s2.execute(
        "SELECT tenancy.bind_role($1::text::regrole, 'tenant-b')",
        &[&role],
    )
    .await
    .unwrap();
    sees(Some(w.b), "after re-binding to B").await;
    s2.execute("SELECT tenancy.suspend_tenant('tenant-b')", &[])
        .await
        .unwrap();
    sees(None, "after suspending B").await;
    s2.execute("SELECT tenancy.resume_tenant('tenant-b')", &[])
        .await
        .unwrap();
    sees(Some(w.b), "after resuming B").await;
    s2.execute("SELECT tenancy.unbind_role($1::text::regrole)", &[&role])
        .await
        .unwrap();
    sees(None, "after unbind_role").await;
    // The setting path: set A, then suspend/resume A elsewhere.
    s1.execute("SELECT tenancy.set_tenant('tenant-a')", &[])
        .await
        .unwrap();
    sees(Some(w.a), "set_tenant(A)").await;
    s2.execute("SELECT tenancy.suspend_tenant('tenant-a')", &[])
        .await
        .unwrap();
    sees(None, "set to A, A suspended").await;
    s2.execute("SELECT tenancy.resume_tenant('tenant-a')", &[])
        .await
        .unwrap();
    sees(Some(w.a), "set to A, A resumed").await;
    // Binding overrides a setting that is already cached.
    s2.execute(
        "SELECT tenancy.bind_role($1::text::regrole, 'tenant-b')",
        &[&role],
    )
    .await
    .unwrap();
    sees(Some(w.b), "set to A, then bound to B").await;
    // A bound tenant cannot be dropped; unbound, the session falls back to its setting.
    expect_sqlstate(
        s2.execute(
            "SELECT tenancy.drop_tenant('tenant-b', confirm => 'tenant-b')",
            &[],
        )
        .await,
        "2BP01",
        "drop_tenant while a role is bound to it",
    );
    s2.execute("SELECT tenancy.unbind_role($1::text::regrole)", &[&role])
        .await
        .unwrap();
    sees(Some(w.a), "unbound again: back to the setting (A)").await;
    // Dropping the tenant a session has set: its next statement sees nothing.
    s1.execute("SELECT tenancy.set_tenant('tenant-b')", &[])
        .await
        .unwrap();
    sees(Some(w.b), "set_tenant(B)").await;
    s2.execute(
        "SELECT tenancy.drop_tenant('tenant-b', confirm => 'tenant-b')",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        w.db.snapshot().await.count("esg.metrics", w.b),
        0,
        "drop_tenant removed B's rows"
    );
    for _ in 0..2 {
        match s1.query("SELECT tenant_id FROM esg.metrics", &[]).await {
            Ok(rows) => assert!(rows.is_empty(), "a dropped tenant's session sees rows"),
            Err(e) => assert_eq!(
                sqlstate(&e),
                Some("P0002"),
                "dropped tenant: {}",
                describe(&e)
            ),
        }
    }
}

#[tokio::test]
async fn suspension_reaches_a_session_inside_an_open_transaction() {
    let w = World::new("inval_in_tx").await;
    let snap = w.db.snapshot().await;
    let a_metrics = snap.count("esg.metrics", w.a) as i64;
    let (_, s1) = w.member_bound("mem_tx", w.a).await;
    let s2 = w.db.connect_admin().await;
    // A read-committed transaction already holding locks on the table.
    s1.batch_execute("BEGIN").await.unwrap();
    let stmt = s1
        .prepare("SELECT count(*) FROM esg.metrics")
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            s1.query_one(&stmt, &[]).await.unwrap().get::<_, i64>(0),
            a_metrics
        );
        assert_eq!(current_tenant(&s1).await, Some(w.a));
    }
    s2.execute("SELECT tenancy.suspend_tenant('tenant-a')", &[])
        .await
        .unwrap();
    // Its next statements must not see or write A's rows any more.
    let n: i64 = s1.query_one(&stmt, &[]).await.unwrap().get(0);
    let t = current_tenant(&s1).await;
    let updated = affected(&s1, "UPDATE esg.metrics SET name = name").await;
    s1.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        (t, n, updated),
        (None, 0, 0),
        "(current_tenant(), rows seen, rows updated) in the open transaction after suspension"
    );
}

#[tokio::test]
async fn parallel_query_stays_confined() {
    let w = World::new("parallel").await;
    let snap = w.db.snapshot().await;
    for (mode, c) in w.members_of_a().await {
        c.batch_execute(
            "SET force_parallel_mode = on; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; \
             SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2",
        )
        .await
        .unwrap();
        let plan: Vec<String> = c
            .query("EXPLAIN SELECT tenant_id FROM esg.data_points", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            plan.iter().any(|l| l.contains("Gather")),
            "{mode}: not parallel: {plan:?}"
        );
        for table in TENANT_TABLES {
            assert_eq!(
                visible_tenants(&c, table).await,
                set(&[w.a]),
                "{mode}: parallel {table}"
            );
            let n = count(&c, &format!("SELECT count(*) FROM {table}")).await as usize;
            assert_eq!(
                n,
                snap.count(table, w.a),
                "{mode}: parallel count of {table}"
            );
            let b = count(
                &c,
                &format!("SELECT count(*) FROM {table} WHERE tenant_id = '{}'", w.b),
            )
            .await;
            assert_eq!(b, 0, "{mode}: parallel read of B in {table}");
        }
    }
}

/// A trigger a table owner adds while a clone is about to write its table —
/// the owner's `CREATE TRIGGER` uncommitted when the clone starts, committed
/// while it waits for the table — runs as that owner, never as the extension
/// owner: the copy runs each table's statements as the table's owner, so
/// there is no window between a check and the writes to slip code into.
#[tokio::test]
async fn a_trigger_committed_while_a_clone_waits_runs_as_the_table_owner() {
    let w = World::new("toctou").await;
    let owner = w.db.login("tbl_owner", &[]).await;
    w.db.exec(&format!(
        "CREATE SCHEMA toc AUTHORIZATION {o};
         CREATE TABLE toc.notes (id int, tenant_id uuid NOT NULL);
         ALTER TABLE toc.notes OWNER TO {o};
         SELECT tenancy.enable('toc.notes');
         INSERT INTO toc.notes SELECT 1, id FROM tenancy.tenants WHERE slug = 'tenant-a';",
        o = ident(&owner)
    ))
    .await;
    let o = w.db.connect_as(&owner).await;
    o.batch_execute(
        "CREATE FUNCTION toc.pwn() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             CREATE TABLE IF NOT EXISTS toc.pwned AS SELECT current_user AS who;
             RETURN NULL;
         END $$;
         BEGIN;
         CREATE TRIGGER late AFTER INSERT ON toc.notes FOR EACH STATEMENT EXECUTE FUNCTION toc.pwn();",
    )
    .await
    .unwrap();
    let admin2 = w.db.connect_admin().await;
    let clone = tokio::spawn(async move {
        admin2
            .query_one(
                "SELECT tenancy.clone_tenant('tenant-a', 'toc-copy', 'Copy', tables => ARRAY['toc.notes']::regclass[])",
                &[],
            )
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    o.batch_execute("COMMIT").await.unwrap();
    let r = tokio::time::timeout(std::time::Duration::from_secs(30), clone)
        .await
        .expect("the clone finishes")
        .unwrap();
    r.expect("the clone succeeds");
    assert_eq!(
        w.db.count(&format!(
            "SELECT count(*) FROM toc.pwned WHERE who = {}",
            lit(&owner)
        ))
        .await,
        1,
        "the late trigger ran, as the table's owner"
    );
    assert_eq!(
        w.db.count("SELECT count(*) FROM toc.pwned p JOIN pg_roles r ON r.rolname = p.who WHERE NOT r.rolsuper")
            .await,
        1,
        "... who is not a superuser"
    );
}
