//! PostgREST v12 behaviours through HTTP: `Location` for `return=headers-only`,
//! CSV and form request bodies, `Prefer: handling / timezone / max-affected`,
//! planned and estimated counts, and rate limits for requests without a tenant.

mod common;
use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prefer_bodies_counts_limits() {
    let db = TestDb::create("pf").await;
    setup(&db).await;
    let p = db.proxy(db.config()).await;
    let outcome = guarded(async {
        location(&p, &db).await;
        csv_bodies(&p, &db).await;
        form_bodies(&p, &db).await;
        content_types(&p, &db).await;
        handling(&p, &db).await;
        timezone(&p).await;
        max_affected(&p, &db).await;
        counts(&p, &db).await;
        estimated_counts(&db).await;
        anon_rate_limits(&db).await;
    })
    .await;
    p.stop().await;
    db.drop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

/// Tables without row-level security for this file, created before the
/// proxy loads its schema cache.
async fn setup(db: &TestDb) {
    let admin = db.admin().await;
    admin
        .batch_execute(&format!(
            r#"
            CREATE TABLE esg.prefer_items (id serial PRIMARY KEY, name text NOT NULL, qty int, note text, tags text[]);
            CREATE TABLE esg.prefer_nopk (a text, b text);
            CREATE TABLE esg.prefer_codes (code text PRIMARY KEY, label text);
            CREATE TABLE esg.prefer_times (id int PRIMARY KEY, t timestamptz);
            INSERT INTO esg.prefer_times VALUES (1, '2023-10-18 12:37:59.611+00');
            -- stale statistics: the planner expects 1000 rows, 100 are left
            CREATE TABLE esg.prefer_counts (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false);
            INSERT INTO esg.prefer_counts SELECT i, i % 7 FROM generate_series(1, 1000) i;
            ANALYZE esg.prefer_counts;
            DELETE FROM esg.prefer_counts WHERE id > 100;
            CREATE FUNCTION esg.prefer_counts_fn() RETURNS SETOF esg.prefer_counts LANGUAGE sql STABLE
                AS 'SELECT * FROM esg.prefer_counts';
            CREATE FUNCTION esg.delete_items(prefix text) RETURNS SETOF esg.prefer_items LANGUAGE sql VOLATILE
                AS $$ DELETE FROM esg.prefer_items WHERE name LIKE prefix || '%' RETURNING * $$;
            CREATE FUNCTION esg.delete_items_void(prefix text) RETURNS void LANGUAGE sql VOLATILE
                AS $$ DELETE FROM esg.prefer_items WHERE name LIKE prefix || '%' $$;
            GRANT SELECT, INSERT, UPDATE, DELETE ON esg.prefer_items, esg.prefer_nopk, esg.prefer_codes,
                esg.prefer_times, esg.prefer_counts TO {n}, tenancy_member;
            GRANT USAGE ON ALL SEQUENCES IN SCHEMA esg TO {n}, tenancy_member;
            GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO PUBLIC;
            "#,
            n = db.anon_role
        ))
        .await
        .expect("prefer setup");
}

async fn scalar(db: &TestDb, sql: &str) -> i64 {
    db.admin().await.query_one(sql, &[]).await.unwrap().get(0)
}

async fn items(db: &TestDb) -> i64 {
    scalar(db, "SELECT count(*) FROM esg.prefer_items").await
}

/// The planner's row estimate, as the test database sees it.
async fn explain(db: &TestDb, sql: &str) -> i64 {
    let row = db
        .admin()
        .await
        .query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &[])
        .await
        .unwrap();
    let v: Value = row.get(0);
    v[0]["Plan"]["Plan Rows"].as_f64().unwrap() as i64
}

async fn location(p: &Proxy, db: &TestDb) {
    let t = member("globex");
    let (_, ents) = json_of(
        p.get("/reporting_entities?select=id&limit=1")
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (_, mets) = json_of(
        p.get("/metrics?select=id&limit=1")
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let point = json!({"entity_id": ents[0]["id"], "metric_id": mets[0]["id"], "period": "2024-01-01", "value": 42});
    // headers-only: 201, no body, Location of the new row
    let r = p
        .post("/data_points")
        .bearer_auth(&t)
        .header("Prefer", "return=headers-only")
        .json(&point)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("return=headers-only")
    );
    assert_eq!(header(&r, "content-range").as_deref(), Some("*/*"));
    assert_eq!(header(&r, "content-type"), None);
    let loc = header(&r, "location").expect("Location");
    assert!(r.text().await.unwrap().is_empty());
    let id = scalar(db, "SELECT max(id) FROM esg.data_points").await;
    assert_eq!(loc, format!("/data_points?id=eq.{id}"));
    let (s, v) = json_of(
        p.get(&format!("{loc}&select=id,value"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!([{"id": id, "value": 42}])));
    // a composite key, in column order
    let r = p
        .post("/metrics")
        .bearer_auth(&t)
        .header("Prefer", "return=headers-only")
        .json(&json!({"code": "loc1", "name": "Located", "unit": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let loc = header(&r, "location").expect("Location");
    let row = db
        .admin()
        .await
        .query_one(
            "SELECT tenant_id::text, id FROM esg.metrics WHERE code = 'loc1'",
            &[],
        )
        .await
        .unwrap();
    let (tid, mid): (String, i64) = (row.get(0), row.get(1));
    assert_eq!(loc, format!("/metrics?tenant_id=eq.{tid}&id=eq.{mid}"));
    let (_, v) = json_of(
        p.get(&format!("{loc}&select=code"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v, json!([{"code": "loc1"}]));
    // a text key is percent-encoded and finds the row again
    let r = p
        .post("/prefer_codes")
        .header("Prefer", "return=headers-only")
        .json(&json!({"code": "a b/ü&x", "label": "enc"}))
        .send()
        .await
        .unwrap();
    let loc = header(&r, "location").expect("Location");
    assert_eq!(loc, "/prefer_codes?code=eq.a%20b%2F%C3%BC%26x");
    let (_, v) = json_of(p.get(&loc).send().await.unwrap()).await;
    assert_eq!(v, json!([{"code": "a b/ü&x", "label": "enc"}]));
    // return=minimal, return=representation and no preference: no Location
    for pref in ["return=minimal", "return=representation", "count=exact"] {
        let r = p
            .post("/prefer_codes")
            .header("Prefer", pref)
            .json(&json!({"code": format!("k-{pref}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{pref}");
        assert_eq!(header(&r, "location"), None, "{pref}");
    }
    // a bulk insert: no Location
    let r = p
        .post("/prefer_codes")
        .header("Prefer", "return=headers-only")
        .json(&json!([{"code": "bulk1"}, {"code": "bulk2"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), None);
    // a table without a primary key: no Location
    let r = p
        .post("/prefer_nopk")
        .header("Prefer", "return=headers-only")
        .json(&json!({"a": "x", "b": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), None);
    assert_eq!(
        scalar(db, "SELECT count(*) FROM esg.prefer_nopk").await,
        1,
        "the row is written"
    );
    // PUT (an upsert) has none either
    let r = p
        .put("/prefer_codes?code=eq.put1")
        .header("Prefer", "return=headers-only")
        .json(&json!({"code": "put1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "location"), None);
}

async fn csv_bodies(p: &Proxy, db: &TestDb) {
    // bulk insert: first line names the columns; NULL is null, an empty field ""
    let r = p
        .post("/prefer_items?select=name,qty,note,tags")
        .header("Content-Type", "text/csv")
        .header("Prefer", "return=representation")
        .body("name,qty,note,tags\nc1,1,NULL,\"{a,b}\"\n\"c,2\",2,,{}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!([
            {"name": "c1", "qty": 1, "note": null, "tags": ["a", "b"]},
            {"name": "c,2", "qty": 2, "note": "", "tags": []}
        ])
    );
    // CSV in, CSV out
    let r = p
        .post("/prefer_items?select=name,qty")
        .header("Content-Type", "text/csv; charset=utf-8")
        .header("Accept", "text/csv")
        .header("Prefer", "return=representation")
        .body("qty,name\r\n3,\"say \"\"hi\"\"\"\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("text/csv; charset=utf-8")
    );
    assert_eq!(r.text().await.unwrap(), "name,qty\n\"say \"\"hi\"\"\",3");
    let before = items(db).await;
    assert_eq!(before, 3);
    // malformed CSV: 400 PGRST102, nothing written
    for (body, message) in [
        ("name,qty\nx,1\n\"open,2\n", None),
        ("name,qty\nx,1\nbad\"quote,2\n", None),
        (
            "name,qty\nx,1\ny\n",
            Some("All lines must have same number of fields"),
        ),
        (
            "name,qty\nx,1,3\n",
            Some("All lines must have same number of fields"),
        ),
        ("", Some("parse error (not enough input)")),
    ] {
        let (s, v) = json_of(
            p.post("/prefer_items")
                .header("Content-Type", "text/csv")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some("PGRST102")),
            "{body:?}: {v}"
        );
        if let Some(m) = message {
            assert_eq!(
                v,
                json!({"code": "PGRST102", "details": null, "hint": null, "message": m})
            );
        }
    }
    // not UTF-8
    let (s, v) = json_of(
        p.post("/prefer_items")
            .header("Content-Type", "text/csv")
            .body(vec![b'n', b'a', b'm', b'e', b'\n', 0xff, 0xfe])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("PGRST102")), "{v}");
    // a value the column type rejects: the database's 400, nothing written
    let (s, v) = json_of(
        p.post("/prefer_items")
            .header("Content-Type", "text/csv")
            .body("name,qty\nok,1\nbad,many\n")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("22P02")), "{v}");
    // an unknown column
    let (s, v) = json_of(
        p.post("/prefer_items")
            .header("Content-Type", "text/csv")
            .body("name,nope\nx,1\n")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("PGRST204")), "{v}");
    assert_eq!(items(db).await, before);
    // a header only: nothing to insert
    let r = p
        .post("/prefer_items")
        .header("Content-Type", "text/csv")
        .header("Prefer", "return=representation")
        .body("name,qty\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    assert_eq!(items(db).await, before);
    // PATCH with one CSV record
    let r = p
        .patch("/prefer_items?name=eq.c1&select=name,qty,note")
        .header("Content-Type", "text/csv")
        .header("Prefer", "return=representation")
        .body("qty,note\n10,patched\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!([{"name": "c1", "qty": 10, "note": "patched"}])
    );
    // PATCH with two records: 400, nothing changed
    let (s, v) = json_of(
        p.patch("/prefer_items?name=eq.c1")
            .header("Content-Type", "text/csv")
            .body("qty\n11\n12\n")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("PGRST102")), "{v}");
    assert_eq!(
        scalar(
            db,
            "SELECT qty::bigint FROM esg.prefer_items WHERE name = 'c1'"
        )
        .await,
        10
    );
    // RPC with one CSV record
    let (s, v) = json_of(
        p.post("/rpc/add")
            .header("Content-Type", "text/csv")
            .body("a,b\n2,3\n")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!(5)));
    // several records: the first one's values, as a JSON array's first object
    let (s, v) = json_of(
        p.post("/rpc/add")
            .header("Content-Type", "text/csv")
            .body("a,b\n2,3\n4,5\n")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!(5)));
}

async fn form_bodies(p: &Proxy, db: &TestDb) {
    let form = "application/x-www-form-urlencoded";
    let r = p
        .post("/prefer_items?select=name,qty,note")
        .header("Content-Type", form)
        .header("Prefer", "return=representation")
        .body("name=f1&qty=5&note=a+b%26c")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!([{"name": "f1", "qty": 5, "note": "a b&c"}])
    );
    let r = p
        .patch("/prefer_items?name=eq.f1")
        .header("Content-Type", form)
        .body("qty=6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        scalar(
            db,
            "SELECT qty::bigint FROM esg.prefer_items WHERE name = 'f1'"
        )
        .await,
        6
    );
    // a form's fields are a function's arguments
    let (s, v) = json_of(
        p.post("/rpc/add")
            .header("Content-Type", form)
            .body("a=1&b=5")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!(6)));
    let (s, v) = json_of(
        p.post("/rpc/add")
            .header("Content-Type", form)
            .body("a=1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!(3)), "the default of b");
    // a value the column type rejects
    let before = items(db).await;
    let (s, v) = json_of(
        p.post("/prefer_items")
            .header("Content-Type", form)
            .body("name=f2&qty=x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("22P02")), "{v}");
    assert_eq!(items(db).await, before);
}

async fn content_types(p: &Proxy, db: &TestDb) {
    let before = items(db).await;
    let not_acceptable = |m: &str| json!({"code": "PGRST102", "details": null, "hint": null, "message": format!("Content-Type not acceptable: {m}")});
    let (s, v) = json_of(
        p.post("/prefer_items")
            .header("Content-Type", "text/plain")
            .body("{\"name\": \"plain\"}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (400, not_acceptable("text/plain")));
    let (s, v) = json_of(
        p.patch("/prefer_items?name=eq.f1")
            .header("Content-Type", "application/xml; charset=utf-8")
            .body("<qty>1</qty>")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (400, not_acceptable("application/xml")));
    let (s, v) = json_of(
        p.post("/rpc/add")
            .header("Content-Type", "text/xml")
            .body("<a>1</a>")
            .send()
            .await
            .unwrap(),
    )
    .await;
    // to a function, XML is a body for a single unnamed xml parameter, and
    // `add(a, b)` has none: PostgREST's 404
    assert_eq!((s, v["code"].as_str()), (404, Some("PGRST202")), "{v}");
    assert_eq!(
        v["details"],
        "Searched for the function esg.add with a single unnamed xml parameter, but no matches were found in the schema cache."
    );
    assert_eq!(items(db).await, before);
    assert_eq!(
        scalar(
            db,
            "SELECT qty::bigint FROM esg.prefer_items WHERE name = 'f1'"
        )
        .await,
        6
    );
    // JSON with parameters, and no Content-Type at all, are JSON
    let r = p
        .post("/prefer_items")
        .header("Content-Type", "application/json; charset=utf-8")
        .body("{\"name\": \"j1\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = p
        .post("/prefer_items")
        .body("{\"name\": \"j2\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // a DELETE's body (and its type) is ignored
    let r = p
        .delete("/prefer_items?name=in.(j1,j2)")
        .header("Content-Type", "text/plain")
        .body("whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(items(db).await, before);
}

async fn handling(p: &Proxy, db: &TestDb) {
    let invalid = |d: &str| {
        json!({"code": "PGRST122", "details": format!("Invalid preferences: {d}"), "hint": null,
               "message": "Invalid preferences given with handling=strict"})
    };
    let (s, v) = json_of(
        p.get("/prefer_items")
            .header("Prefer", "handling=strict, foo, bar")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (400, invalid("foo, bar")));
    // across several headers
    let (s, v) = json_of(
        p.get("/prefer_items")
            .header("Prefer", "handling=strict")
            .header("Prefer", "something, else")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (400, invalid("something, else")));
    // a write is refused before anything is written
    let before = items(db).await;
    let (s, v) = json_of(
        p.post("/prefer_items")
            .header("Prefer", "return=representation, handling=strict, anything")
            .json(&json!({"name": "strict"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (400, invalid("anything")));
    assert_eq!(items(db).await, before);
    let (s, v) = json_of(
        p.post("/rpc/add")
            .header("Prefer", "handling=strict, count=none")
            .json(&json!({"a": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (400, invalid("count=none")));
    // lenient (the default): ignored, and echoed when asked for
    let r = p
        .get("/prefer_items?limit=1")
        .header("Prefer", "handling=lenient, foo")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("handling=lenient")
    );
    let r = p
        .get("/prefer_items?limit=1")
        .header("Prefer", "foo, return=nothing")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "preference-applied"), None);
    // strict with valid preferences: applied, in PostgREST's order
    let r = p
        .get("/prefer_items?limit=1")
        .header("Prefer", "handling=strict, count=exact")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("count=exact, handling=strict")
    );
    let r = p
        .post("/prefer_items?select=name")
        .header("Prefer", "handling=strict")
        .header("Prefer", "count=exact, return=representation, missing=null")
        .json(&json!({"name": "strict-ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("missing=null, return=representation, count=exact, handling=strict")
    );
    assert_eq!(header(&r, "content-range").as_deref(), Some("*/1"));
    let r = p
        .post("/prefer_items")
        .header("Prefer", "return=minimal, return=representation")
        .json(&json!({"name": "first-wins"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("return=minimal")
    );
    assert!(r.text().await.unwrap().is_empty(), "the first return= wins");
    p.delete("/prefer_items?name=in.(strict-ok,first-wins)")
        .send()
        .await
        .unwrap();
}

async fn timezone(p: &Proxy) {
    let t = |r: &Value| r[0]["t"].as_str().unwrap().to_string();
    let r = p
        .get("/prefer_times?select=t")
        .header("Prefer", "timezone=America/Los_Angeles")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("timezone=America/Los_Angeles")
    );
    assert_eq!(t(&r.json().await.unwrap()), "2023-10-18T05:37:59.611-07:00");
    let r = p
        .get("/prefer_times?select=t")
        .header("Prefer", "handling=strict, timezone=Asia/Kolkata")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("handling=strict, timezone=Asia/Kolkata")
    );
    assert_eq!(t(&r.json().await.unwrap()), "2023-10-18T18:07:59.611+05:30");
    // the setting is local to the request's transaction
    let (_, plain) = json_of(p.get("/prefer_times?select=t").send().await.unwrap()).await;
    // an unknown time zone: ignored (the default), not applied
    let r = p
        .get("/prefer_times?select=t")
        .header("Prefer", "timezone=Jupiter/Red_Spot")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "preference-applied"), None);
    assert_eq!(r.json::<Value>().await.unwrap(), plain);
    assert_ne!(t(&plain), "2023-10-18T18:07:59.611+05:30");
    // … an error with handling=strict
    let (s, v) = json_of(
        p.get("/prefer_times?select=t")
            .header("Prefer", "handling=strict, timezone=Jupiter/Red_Spot")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("PGRST122")), "{v}");
    assert_eq!(
        v["details"],
        "Invalid preferences: timezone=Jupiter/Red_Spot"
    );
    // it applies to functions too
    let (s, v) = json_of(
        p.post("/rpc/whoami")
            .header("Prefer", "timezone=Asia/Kolkata")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

async fn max_affected(p: &Proxy, db: &TestDb) {
    let seed = || async {
        db.admin()
            .await
            .batch_execute(
                "DELETE FROM esg.prefer_items WHERE name LIKE 'm%';
                 INSERT INTO esg.prefer_items (name, qty) SELECT 'm' || i, i FROM generate_series(1, 5) i",
            )
            .await
            .unwrap();
    };
    let ms = || {
        scalar(
            db,
            "SELECT count(*) FROM esg.prefer_items WHERE name LIKE 'm%'",
        )
    };
    let qty_sum = || {
        scalar(
            db,
            "SELECT sum(qty)::bigint FROM esg.prefer_items WHERE name LIKE 'm%'",
        )
    };
    seed().await;
    let over = |n: i64| {
        json!({"code": "PGRST124", "details": format!("The query affects {n} rows"), "hint": null,
               "message": "Query result exceeds max-affected preference constraint"})
    };
    // strict: more rows than allowed is 400 and nothing is deleted / changed
    let (s, v) = json_of(
        p.delete("/prefer_items?name=like.m*")
            .header("Prefer", "handling=strict, max-affected=3")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (400, over(5)));
    assert_eq!(ms().await, 5);
    let (s, v) = json_of(
        p.patch("/prefer_items?name=like.m*")
            .header(
                "Prefer",
                "handling=strict, max-affected=0, return=representation",
            )
            .json(&json!({"qty": 0}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (400, over(5)));
    assert_eq!(qty_sum().await, 15);
    // functions returning rows
    let (s, v) = json_of(
        p.post("/rpc/delete_items")
            .header("Prefer", "handling=strict, max-affected=4")
            .json(&json!({"prefix": "m"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (400, over(5)));
    assert_eq!(ms().await, 5);
    // … and those that do not
    let (s, v) = json_of(
        p.post("/rpc/delete_items_void")
            .header("Prefer", "handling=strict, max-affected=10")
            .json(&json!({"prefix": "m"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"code": "PGRST128", "details": null, "hint": null,
                   "message": "Function must return SETOF or TABLE when max-affected preference is used with handling=strict"})
        )
    );
    assert_eq!(ms().await, 5);
    // lenient: max-affected is ignored
    let r = p
        .patch("/prefer_items?name=like.m*")
        .header("Prefer", "handling=lenient, max-affected=1")
        .json(&json!({"qty": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("handling=lenient")
    );
    assert_eq!(qty_sum().await, 5);
    // without handling=strict too
    let r = p
        .patch("/prefer_items?name=like.m*")
        .header("Prefer", "max-affected=1")
        .json(&json!({"qty": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(qty_sum().await, 10);
    // within the limit
    let r = p
        .patch("/prefer_items?name=eq.m1")
        .header("Prefer", "handling=strict, max-affected=1")
        .json(&json!({"qty": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("handling=strict, max-affected=1")
    );
    assert_eq!(qty_sum().await, 15);
    let (s, v) = json_of(
        p.post("/rpc/delete_items?select=name&order=name")
            .header("Prefer", "handling=strict, max-affected=2")
            .json(&json!({"prefix": "m4"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!([{"name": "m4"}])));
    let r = p
        .delete("/prefer_items?name=like.m*")
        .header("Prefer", "handling=strict, max-affected=4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("handling=strict, max-affected=4")
    );
    assert_eq!(ms().await, 0);
}

async fn counts(p: &Proxy, db: &TestDb) {
    let all = explain(db, "SELECT 1 FROM esg.prefer_counts").await;
    let above_50 = explain(db, "SELECT 1 FROM esg.prefer_counts WHERE id > 50").await;
    assert!(all > 100, "stale statistics: {all}");
    let get = |path: &str, pref: &str| p.get(path).header("Prefer", pref.to_string()).send();
    // exact
    let r = get("/prefer_counts?limit=10", "count=exact").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range").as_deref(), Some("0-9/100"));
    // planned: the planner's estimate, 206 while a page is below it
    let r = get("/prefer_counts?limit=10", "count=planned")
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), Some(format!("0-9/{all}")));
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("count=planned")
    );
    let r = get("/prefer_counts", "count=planned").await.unwrap();
    assert_eq!(r.status(), 206, "all 100 rows, but the plan says {all}");
    assert_eq!(header(&r, "content-range"), Some(format!("0-99/{all}")));
    assert_eq!(
        r.json::<Value>().await.unwrap().as_array().unwrap().len(),
        100
    );
    let r = p
        .head("/prefer_counts?limit=5&offset=3")
        .header("Prefer", "count=planned")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), Some(format!("3-7/{all}")));
    let r = get("/prefer_counts?id=gt.50&limit=5&select=id", "count=planned")
        .await
        .unwrap();
    assert_eq!(header(&r, "content-range"), Some(format!("0-4/{above_50}")));
    // past the exact end but within the plan: an empty page
    let r = get("/prefer_counts?offset=500", "count=planned")
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), Some(format!("*/{all}")));
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    // past the plan: 416
    let r = get("/prefer_counts?offset=5000", "count=planned")
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "content-range"), Some(format!("*/{all}")));
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"code": "PGRST103", "hint": null, "message": "Requested range not satisfiable",
               "details": format!("An offset of 5000 was requested, but there are only {all} rows.")})
    );
    // estimated without db-max-rows: the larger of exact and planned (as PostgREST)
    let r = get("/prefer_counts?limit=10", "count=estimated")
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), Some(format!("0-9/{all}")));
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("count=estimated")
    );
    // exact, all rows: 200
    let r = get("/prefer_counts?id=lte.3", "count=exact").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-range").as_deref(), Some("0-2/3"));
    // functions: planned and exact
    let fn_all = explain(db, "SELECT 1 FROM esg.prefer_counts_fn() AS t").await;
    let r = get("/rpc/prefer_counts_fn?limit=5", "count=planned")
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), Some(format!("0-4/{fn_all}")));
    let r = get("/rpc/prefer_counts_fn?limit=5", "count=exact")
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range").as_deref(), Some("0-4/100"));
    // writes: planned is not counted, estimated is the rows written
    let r = p
        .post("/prefer_codes")
        .header("Prefer", "count=planned")
        .json(&json!({"code": "cnt1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "content-range").as_deref(), Some("*/*"));
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("count=planned")
    );
    let r = p
        .post("/prefer_codes")
        .header("Prefer", "count=estimated")
        .json(&json!([{"code": "cnt2"}, {"code": "cnt3"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-range").as_deref(), Some("*/2"));
    let r = p
        .delete("/prefer_codes?code=like.cnt*")
        .header("Prefer", "count=estimated")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "content-range").as_deref(), Some("*/3"));
}

/// `count=estimated` with `db-max-rows`: exact up to it, the plan beyond.
async fn estimated_counts(db: &TestDb) {
    let all = explain(db, "SELECT 1 FROM esg.prefer_counts").await;
    for (max_rows, expect) in [(500u64, 100i64), (50, all)] {
        let mut c = db.config();
        c.db_max_rows = Some(max_rows);
        let p = db.proxy(c).await;
        let r = p
            .get("/prefer_counts?limit=10")
            .header("Prefer", "count=estimated")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206, "max rows {max_rows}");
        assert_eq!(
            header(&r, "content-range"),
            Some(format!("0-9/{expect}")),
            "max rows {max_rows}"
        );
        // few rows: exact, and all of them
        let r = p
            .get("/prefer_counts?id=lte.3")
            .header("Prefer", "count=estimated")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-range").as_deref(), Some("0-2/3"));
        p.stop().await;
    }
    // db-max-rows caps every level that returns rows: the top level and
    // each embedded array (PostgREST's QueryLimitedSpec "works on all levels")
    let mut c = db.config();
    c.db_max_rows = Some(2);
    let p = db.proxy(c).await;
    let r = p
        .get("/metrics?select=code,data_points(id)&order=code&data_points.order=id")
        .bearer_auth(member("acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-range").as_deref(), Some("0-1/*"));
    let v: Value = r.json().await.unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    for row in rows {
        assert_eq!(row["data_points"].as_array().unwrap().len(), 2, "{v}");
    }
    // to-one embeds stay objects (no second LIMIT on their one row)
    let r = p
        .get("/data_points?select=id,metrics(code)")
        .bearer_auth(member("acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v[0]["metrics"].is_object(), "{v}");
    p.stop().await;
}

async fn anon_rate_limits(db: &TestDb) {
    let mut c = db.config();
    c.anon_rate_limit = 3;
    let p = db.proxy(c).await;
    for i in 0..3 {
        let r = p.get("/units?limit=1").send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
    }
    let r = p.get("/units?limit=1").send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "TENANCY429");
    assert_eq!(
        v["message"],
        format!("Too many requests for role {}", db.anon_role)
    );
    assert_eq!(
        v["details"],
        "Requests without a tenant allow 3 requests per second per role"
    );
    assert_eq!(v["hint"], format!("Retry after {retry} second(s)."));
    // a token without a tenant for the same role shares the bucket
    let anon_token = jwt(json!({"role": db.anon_role, "exp": now() + 600}));
    let r = p
        .get("/units?limit=1")
        .bearer_auth(&anon_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // another role has its own bucket
    let viewer = jwt(json!({"role": "tenancy_viewer", "exp": now() + 600}));
    for i in 0..3 {
        let r = p
            .get("/units?limit=1")
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 429, "viewer request {i}");
    }
    let r = p
        .get("/units?limit=1")
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // tenants are not affected (default_rate_limit = 0 here)
    for _ in 0..5 {
        let r = p
            .get("/units?limit=1")
            .bearer_auth(member("globex"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let text = p.metrics_text().await;
    assert!(
        text.contains("tenancy_proxy_rate_limited_total{tenant=\"none\"}"),
        "{text}"
    );
    p.stop().await;
}
