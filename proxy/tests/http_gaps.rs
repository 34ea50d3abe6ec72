//! PostgREST-compatibility gaps the postgrest-py tier found, end to end:
//! limited update/delete, null filters on embedded resources,
//! `nulls=stripped` media types, and embedding on a function's rows.

mod common;
use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgrest_gaps() {
    let db = TestDb::create("gaps").await;
    // a table without a primary key, and views of it without a key
    db.admin()
        .await
        .batch_execute(
            "CREATE TABLE esg.lim_nopk (id int, name text);
             INSERT INTO esg.lim_nopk VALUES (1, 'item-1'), (2, 'item-2'), (3, 'item-3');
             CREATE VIEW esg.lim_nopk_view AS SELECT id, name FROM esg.lim_nopk;
             CREATE VIEW esg.lim_nonuniq_view AS SELECT id, name, 'static'::text AS static FROM esg.lim_nopk;
             GRANT SELECT, UPDATE, DELETE ON esg.lim_nopk, esg.lim_nopk_view, esg.lim_nonuniq_view TO tenancy_member;",
        )
        .await
        .unwrap();
    let mut config = db.config();
    // many requests per tenant in a short time: no plan limits here
    config.plan_rate_limits = "starter=100000,pro=100000,enterprise=100000".into();
    let p = db.proxy(config).await;
    let outcome = guarded(async {
        limited_update_delete(&p).await;
        limited_without_key(&p).await;
        wide_bodies(&p).await;
        null_filter_on_embeds(&p).await;
        stripped_nulls(&p).await;
        rpc_embeds(&p).await;
    })
    .await;
    p.stop().await;
    db.drop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

/// `code,name` of the tenant's `lim*` metrics, by code.
async fn lim_rows(p: &Proxy, t: &str) -> Value {
    let (s, v) = json_of(
        p.get("/metrics?select=code,name&code=like.lim*&order=code")
            .bearer_auth(t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v
}

fn assert_pgrst109(s: u16, v: &Value) {
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        v,
        &json!({
            "code": "PGRST109",
            "message": "A 'limit' was applied without an explicit 'order'",
            "details": null,
            "hint": "Apply an 'order' using unique column(s)"
        })
    );
}

async fn limited_update_delete(p: &Proxy) {
    let t = member("initech");
    let g = member("globex");
    for tok in [&t, &g] {
        let r = p
            .post("/metrics")
            .bearer_auth(tok)
            .json(&json!([
                {"code": "lim0", "name": "x", "unit": "t"},
                {"code": "lim1", "name": "x", "unit": "t"},
                {"code": "lim2", "name": "x", "unit": "t"}
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    // limit + order: only the first two rows change
    let r = p
        .patch("/metrics?select=code,name&code=like.lim*&order=id&limit=2")
        .bearer_auth(&t)
        .header("Prefer", "return=representation,count=exact")
        .json(&json!({"name": "limited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-range"], "0-1/2");
    let mut v: Value = r.json().await.unwrap();
    v.as_array_mut()
        .unwrap()
        .sort_by_key(|r| r["code"].as_str().unwrap().to_string());
    assert_eq!(
        v,
        json!([{"code": "lim0", "name": "limited"}, {"code": "lim1", "name": "limited"}])
    );
    assert_eq!(
        lim_rows(p, &t).await,
        json!([
            {"code": "lim0", "name": "limited"},
            {"code": "lim1", "name": "limited"},
            {"code": "lim2", "name": "x"}
        ])
    );
    // limit + offset + descending order
    let r = p
        .patch("/metrics?code=like.lim*&order=code.desc&limit=1&offset=1")
        .bearer_auth(&t)
        .json(&json!({"name": "second"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        lim_rows(p, &t).await,
        json!([
            {"code": "lim0", "name": "limited"},
            {"code": "lim1", "name": "second"},
            {"code": "lim2", "name": "x"}
        ])
    );
    // the other tenant's rows of the same codes were not touched
    assert_eq!(
        lim_rows(p, &g).await,
        json!([
            {"code": "lim0", "name": "x"},
            {"code": "lim1", "name": "x"},
            {"code": "lim2", "name": "x"}
        ])
    );

    // limit or offset without order: PGRST109, nothing written
    for path in [
        "/metrics?code=like.lim*&limit=1",
        "/metrics?code=like.lim*&offset=1",
        "/metrics?limit=1&offset=1",
    ] {
        let (s, v) = json_of(
            p.patch(path)
                .bearer_auth(&t)
                .json(&json!({"name": "all"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_pgrst109(s, &v);
        let (s, v) = json_of(p.delete(path).bearer_auth(&t).send().await.unwrap()).await;
        assert_pgrst109(s, &v);
    }
    assert_eq!(lim_rows(p, &t).await.as_array().unwrap().len(), 3);
    assert_eq!(lim_rows(p, &t).await[2]["name"], "x");

    // DELETE: the last row by id only, returned
    let r = p
        .delete("/metrics?select=code&code=like.lim*&order=id.desc&limit=1")
        .bearer_auth(&t)
        .header("Prefer", "return=representation")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!([{"code": "lim2"}]));
    assert_eq!(
        lim_rows(p, &t).await,
        json!([
            {"code": "lim0", "name": "limited"},
            {"code": "lim1", "name": "second"}
        ])
    );
    // limit=0 deletes nothing
    let r = p
        .delete("/metrics?code=like.lim*&order=id&limit=0")
        .bearer_auth(&t)
        .header("Prefer", "count=exact")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["content-range"], "*/0");
    assert_eq!(lim_rows(p, &t).await.as_array().unwrap().len(), 2);
    // an order on a column that does not exist: 42703, nothing deleted
    let (s, v) = json_of(
        p.delete("/metrics?code=like.lim*&order=nope&limit=1")
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("42703")), "{v}");
    assert_eq!(lim_rows(p, &t).await.as_array().unwrap().len(), 2);
    // globex still has its three
    assert_eq!(lim_rows(p, &g).await.as_array().unwrap().len(), 3);
}

/// Limited writes where there is no key to pick rows by: a table pages
/// by `ctid` (a system column, orderable like PostgREST's), a view by its
/// order columns — and changing more rows than `limit` (non-unique order
/// values) is PGRST110, rolled back.
async fn limited_without_key(p: &Proxy) {
    let t = member("initech");
    let names = || async {
        let (s, v) = get_json(p, "/lim_nopk?select=name&order=id", &member("initech")).await;
        assert_eq!(s, 200, "{v}");
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    // the table: by ctid, second row in physical order
    let r = p
        .patch("/lim_nopk?order=ctid&limit=1&offset=1")
        .bearer_auth(&t)
        .json(&json!({"name": "by-ctid"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    assert_eq!(names().await, ["item-1", "by-ctid", "item-3"]);
    // system columns read like columns on tables
    let (s, v) = get_json(p, "/lim_nopk?select=id,ctid&id=eq.1", &t).await;
    assert_eq!((s, v[0]["ctid"].is_string()), (200, true), "{v}");
    // ... and not on views, which have none
    let (s, v) = get_json(p, "/lim_nopk_view?select=ctid", &t).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("42703")), "{v}");
    // a view without a key: the page's rows by their order column
    let r = p
        .patch("/lim_nopk_view?order=id.desc&limit=1")
        .bearer_auth(&t)
        .header("Prefer", "return=representation")
        .json(&json!({"name": "last"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!([{"id": 3, "name": "last"}])
    );
    // ordered by a value all rows share: three rows would change for
    // limit=1, so PGRST110 and nothing written, PATCH and DELETE
    for req in [
        p.patch("/lim_nonuniq_view?order=static&limit=1")
            .json(&json!({"name": "all"})),
        p.delete("/lim_nonuniq_view?order=static&limit=1"),
    ] {
        let (s, v) = json_of(req.bearer_auth(&t).send().await.unwrap()).await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(
            v,
            json!({
                "code": "PGRST110",
                "message": "The maximum number of rows allowed to change was surpassed",
                "details": "Results contain 3 rows changed but the maximum number allowed is 1",
                "hint": null
            })
        );
    }
    assert_eq!(names().await, ["item-1", "by-ctid", "last"]);
    // within the limit it goes through
    let r = p
        .delete("/lim_nonuniq_view?order=static&limit=3")
        .bearer_auth(&t)
        .header("Prefer", "count=exact")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["content-range"], "*/3");
    assert!(names().await.is_empty());
}

/// Bodies naming many distinct keys or CSV columns cost linear time: the
/// unknown column is the answer, quickly, and the proxy stays responsive
/// (a hostile client's 30k-object body took ~16 s CPU and ~1 GB before).
async fn wide_bodies(p: &Proxy) {
    let t = member("initech");
    let n = 30_000;
    let json_body = format!(
        "[{}]",
        (0..n)
            .map(|i| format!("{{\"code\":\"w{i}\",\"k{i}\":1}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let header: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let csv_body = format!("{}\n{}\n", header.join(","), vec!["1"; n].join(","));
    for (ct, body, prefer) in [
        (
            "application/json",
            json_body.clone(),
            "tx=rollback,missing=default",
        ),
        ("application/json", json_body, "tx=rollback"),
        ("text/csv", csv_body, "tx=rollback"),
    ] {
        let started = std::time::Instant::now();
        let (s, v) = json_of(
            p.post("/metrics")
                .bearer_auth(&t)
                .header("Content-Type", ct)
                .header("Prefer", prefer)
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 400, "{ct} {prefer}: {v}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{ct} {prefer}: {:?}",
            started.elapsed()
        );
    }
}

async fn get_json(p: &Proxy, path: &str, tok: &str) -> (u16, Value) {
    json_of(p.get(path).bearer_auth(tok).send().await.unwrap()).await
}

async fn null_filter_on_embeds(p: &Proxy) {
    let g = member("globex");
    let base = "/organisations?select=name,reporting_entities(name)&reporting_entities.kind=eq.warehouse&order=name";
    let (s, v) = get_json(p, &format!("{base}&reporting_entities=not.is.null"), &g).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!([{"name": "Globex Energy", "reporting_entities": [{"name": "Globex Energy site 2"}]}])
    );
    let (s, v) = get_json(p, &format!("{base}&reporting_entities=is.null"), &g).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!([{"name": "Globex Energy Operations", "reporting_entities": []}])
    );
    // the exact count filters the same way
    let r = p
        .get(&format!("{base}&reporting_entities=is.null"))
        .bearer_auth(&g)
        .header("Prefer", "count=exact")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-range"], "0-0/1");
    // without embed filters every organisation has sites
    let (s, v) = get_json(
        p,
        "/organisations?select=name,reporting_entities(name)&reporting_entities=is.null",
        &g,
    )
    .await;
    assert_eq!((s, v), (200, json!([])));
    // on an alias, inside or=
    let (s, v) = get_json(
        p,
        "/organisations?select=name,w:reporting_entities(name)&w.kind=eq.warehouse&or=(w.not.is.null,name.eq.nobody)",
        &g,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!([{"name": "Globex Energy", "w": [{"name": "Globex Energy site 2"}]}])
    );
    // to-one: entities whose organisation (filtered to DE) exists
    let (s, v) = get_json(
        p,
        "/reporting_entities?select=name,organisations(country)&organisations.country=eq.DE&organisations=not.is.null&order=name",
        &g,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Globex Energy site 1", "Globex Energy site 3"]);
    // not an embed of the request: a column, which does not exist
    let (s, v) = get_json(
        p,
        "/organisations?select=name&reporting_entities=is.null",
        &g,
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("42703")), "{v}");
    // only is.null / not.is.null apply to an embed
    let (s, v) = get_json(
        p,
        "/organisations?select=name,reporting_entities(name)&reporting_entities=eq.x",
        &g,
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("42703")), "{v}");
}

async fn stripped_nulls(p: &Proxy) {
    let g = member("globex");
    let array = "application/vnd.pgrst.array+json;nulls=stripped";
    let r = p
        .get("/organisations?select=name,parent_org_id,country&order=name")
        .bearer_auth(&g)
        .header("Accept", array)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.pgrst.array+json;nulls=stripped; charset=utf-8"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v[0], json!({"name": "Globex Energy", "country": "US"}));
    assert!(v[1]["parent_org_id"].is_i64(), "{v}");
    // nested objects are stripped too
    let (s, v) = json_of(
        p.get("/reporting_entities?select=name,organisations(name,parent_org_id)&name=eq.Globex Energy site 2")
            .bearer_auth(&g)
            .header("Accept", array)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!([{"name": "Globex Energy site 2", "organisations": {"name": "Globex Energy"}}])
    );
    // the array type without the parameter is plain JSON, nulls kept
    let r = p
        .get("/organisations?select=name,parent_org_id&parent_org_id=is.null")
        .bearer_auth(&g)
        .header("Accept", "application/vnd.pgrst.array+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!([{"name": "Globex Energy", "parent_org_id": null}])
    );
    // the object form
    let r = p
        .get("/organisations?select=name,parent_org_id&parent_org_id=is.null")
        .bearer_auth(&g)
        .header("Accept", "application/vnd.pgrst.object+json;nulls=stripped")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.pgrst.object+json;nulls=stripped; charset=utf-8"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"name": "Globex Energy"})
    );
    let r = p
        .get("/organisations?select=name,parent_org_id&parent_org_id=is.null")
        .bearer_auth(&g)
        .header("Accept", "application/vnd.pgrst.object+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.pgrst.object+json; charset=utf-8"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"name": "Globex Energy", "parent_org_id": null})
    );
    // still singular: two rows are PGRST116
    let (s, v) = json_of(
        p.get("/organisations?select=name")
            .bearer_auth(&g)
            .header("Accept", "application/vnd.pgrst.object+json;nulls=stripped")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (406, Some("PGRST116")), "{v}");
    // writes return stripped rows
    let r = p
        .post("/organisations?select=name,parent_org_id")
        .bearer_auth(member("initech"))
        .header("Prefer", "return=representation")
        .header("Accept", array)
        .json(&json!({"name": "Stripped Ltd", "country": "FR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!([{"name": "Stripped Ltd"}])
    );
    // RPC rows (and their embeds)
    let (s, v) = json_of(
        p.get("/rpc/entities_of?k=warehouse&select=name,organisations(name,parent_org_id)")
            .bearer_auth(&g)
            .header("Accept", array)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!([{"name": "Globex Energy site 2", "organisations": {"name": "Globex Energy"}}])
    );
    // an unknown media type is still refused
    let (s, v) = json_of(
        p.get("/organisations")
            .bearer_auth(&g)
            .header("Accept", "application/vnd.pgrst.nope+json;nulls=stripped")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (406, Some("PGRST107")), "{v}");
}

async fn rpc_embeds(p: &Proxy) {
    let g = member("globex");
    // SETOF a table: its many-to-one embed, via GET and POST
    let (s, v) = get_json(
        p,
        "/rpc/entities_of?k=plant&select=name,organisations(name)",
        &g,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!([{"name": "Globex Energy site 3", "organisations": {"name": "Globex Energy Operations"}}])
    );
    let (s, v) = json_of(
        p.post("/rpc/entities_of?select=name,org:organisations(name)")
            .bearer_auth(&g)
            .json(&json!({"k": "plant"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!([{"name": "Globex Energy site 3", "org": {"name": "Globex Energy Operations"}}])
    );
    // !inner with the embed's filter, a one-to-many embed, and the count
    let r = p
        .get("/rpc/entities_of?k=office&select=name,organisations!inner(country),data_points(count())&organisations.country=eq.US")
        .bearer_auth(&g)
        .header("Prefer", "count=exact")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-range"], "0-0/1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!([{"name": "Globex Energy site 4", "organisations": {"country": "US"}, "data_points": [{"count": 60}]}])
    );
    // a single row of a table type (volatile, so POST)
    let (s, v) = json_of(
        p.post("/rpc/new_metric?select=code,units(name)")
            .bearer_auth(member("initech"))
            .json(&json!({"code": "rpc_embed", "name": "From RPC"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"code": "rpc_embed", "units": {"name": "tonnes"}}));
    // no relationship from the returned table: PGRST200
    let (s, v) = get_json(p, "/rpc/entities_of?k=plant&select=name,tags(*)", &g).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("PGRST200")), "{v}");
    // a row type that is no table's (OUT parameters) has nothing to embed
    let (s, v) = get_json(p, "/rpc/totals?select=n,units(*)", &g).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("PGRST200")), "{v}");
}
