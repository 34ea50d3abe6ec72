//! The schema through HTTP: relationships through views (PostgREST's
//! "embedding views"), to-many spreads (PostgREST v13) and the OpenAPI
//! document as each role sees it (`openapi-mode = follow-privileges`).

mod common;
use common::*;
use serde_json::{json, Value};

/// Views over the demo tables (security_invoker, so row level security
/// still applies), comments, and privileges for the OpenAPI checks.
fn setup_sql(anon: &str, nobody: &str, auth: &str) -> String {
    format!(
        r#"
        CREATE VIEW esg.points_v WITH (security_invoker = true) AS
            SELECT id, tenant_id, metric_id, period, value FROM esg.data_points;
        CREATE VIEW esg.metrics_v WITH (security_invoker = true) AS
            SELECT tenant_id, id AS metric_key, code, name, unit FROM esg.metrics;
        -- a view of a view
        CREATE VIEW esg.metrics_vv WITH (security_invoker = true) AS
            SELECT metric_key AS k, tenant_id AS t, code FROM esg.metrics_v;
        -- through a view of an unexposed schema
        CREATE SCHEMA internal;
        CREATE VIEW internal.m WITH (security_invoker = true) AS SELECT * FROM esg.metrics;
        CREATE VIEW esg.metrics_via WITH (security_invoker = true) AS
            SELECT tenant_id, id, code FROM internal.m;
        -- the referenced key twice: two relationships
        CREATE VIEW esg.metrics_twice WITH (security_invoker = true) AS
            SELECT tenant_id, id, id AS id_again, code FROM esg.metrics;
        GRANT INSERT ON esg.metrics_v TO tenancy_member;
        -- an API view over a table of a schema its callers cannot use
        CREATE SCHEMA private_s;
        CREATE TABLE private_s.notes (id serial PRIMARY KEY, body text NOT NULL, tag text NOT NULL DEFAULT 'none');
        CREATE VIEW esg.notes_v AS SELECT id, body, tag FROM private_s.notes;
        GRANT SELECT, INSERT ON esg.notes_v TO tenancy_member;
        GRANT USAGE ON SEQUENCE private_s.notes_id_seq TO tenancy_member;
        GRANT USAGE ON SCHEMA internal TO tenancy_member, tenancy_viewer;
        GRANT SELECT ON internal.m TO tenancy_member, tenancy_viewer;
        GRANT SELECT ON esg.points_v, esg.metrics_v, esg.metrics_vv, esg.metrics_via, esg.metrics_twice
            TO tenancy_member, tenancy_viewer;

        COMMENT ON SCHEMA esg IS $$ESG reporting API

Per-tenant data$$;
        COMMENT ON TABLE esg.units IS $$Units of measure

Shared by every tenant$$;
        COMMENT ON COLUMN esg.units.name IS 'Display name';

        -- functions: each role runs only what it is granted
        REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA esg FROM PUBLIC;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO {anon}, tenancy_member, tenancy_viewer;
        CREATE FUNCTION esg.members_only(n int) RETURNS int LANGUAGE sql STABLE AS 'SELECT n';
        COMMENT ON FUNCTION esg.members_only(int) IS 'Only for members';
        REVOKE EXECUTE ON FUNCTION esg.members_only(int) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION esg.members_only(int) TO tenancy_member;
        -- overloads: only the one callable by name is documented; a type of
        -- the function's schema is named bare
        CREATE TYPE esg.mood AS ENUM ('ok', 'meh');
        CREATE FUNCTION esg.pair_up(mood esg.mood) RETURNS int LANGUAGE sql STABLE AS 'SELECT 1';
        CREATE FUNCTION esg.pair_up(int, int) RETURNS int LANGUAGE sql STABLE AS 'SELECT 2';
        REVOKE EXECUTE ON FUNCTION esg.pair_up(esg.mood), esg.pair_up(int, int) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION esg.pair_up(esg.mood), esg.pair_up(int, int) TO tenancy_member;

        DROP ROLE IF EXISTS {nobody};
        CREATE ROLE {nobody} NOLOGIN;
        GRANT {nobody} TO {auth};
        "#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn views_spreads_openapi() {
    let db = TestDb::create("schema").await;
    let nobody = format!("tp_nobody_schema_{}", std::process::id());
    db.admin()
        .await
        .batch_execute(&setup_sql(&db.anon_role, &nobody, &db.auth_role))
        .await
        .expect("setup");
    let p = db.proxy(db.config()).await;
    // A second proxy whose anonymous role has no privileges at all.
    let mut c = db.config();
    c.db_anon_role = Some(nobody.clone());
    let bare = db.proxy(c).await;
    let result = async {
        embed_views(&p).await;
        view_errors(&p).await;
        to_many_spreads(&p).await;
        openapi_by_role(&p, &bare).await;
        openapi_media(&p).await;
        view_missing_default(&p).await;
    };
    let outcome = guarded(result).await;
    p.stop().await;
    bare.stop().await;
    db.drop().await;
    if let Ok((admin, conn)) =
        tokio_postgres::connect(&db_url("postgres", "postgres"), tokio_postgres::NoTls).await
    {
        tokio::spawn(conn);
        let _ = admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {nobody}"))
            .await;
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

async fn get(p: &Proxy, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = p.get(path);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    json_of(r.send().await.unwrap()).await
}

fn rows(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}"))
}

async fn embed_views(p: &Proxy) {
    let t = member("acme");
    let t = Some(t.as_str());
    // view → table (many-to-one)
    let (s, v) = get(
        p,
        "/points_v?select=id,value,metrics(code)&order=id&limit=3",
        t,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rows(&v).len(), 3);
    assert!(v[0]["metrics"]["code"].is_string(), "{v}");
    // the same rows through the table: the view's embed agrees
    let (_, base) = get(
        p,
        "/data_points?select=id,metrics(code)&order=id&limit=3",
        t,
    )
    .await;
    for (a, b) in rows(&v).iter().zip(rows(&base)) {
        assert_eq!((&a["id"], &a["metrics"]), (&b["id"], &b["metrics"]));
    }
    // table → view, with the view's renamed key
    let (s, v) = get(
        p,
        "/data_points?select=id,metrics_v(metric_key,code)&order=id&limit=3",
        t,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    for (a, b) in rows(&v).iter().zip(rows(&base)) {
        assert_eq!(a["metrics_v"]["code"], b["metrics"]["code"], "{v}");
        assert!(a["metrics_v"]["metric_key"].is_number(), "{v}");
    }
    // view → view (many-to-one), a view of a view, a view of an unexposed view
    for target in ["metrics_v", "metrics_vv", "metrics_via"] {
        let (s, v) = get(
            p,
            &format!("/points_v?select=id,m:{target}(code)&order=id&limit=3"),
            t,
        )
        .await;
        assert_eq!(s, 200, "{target}: {v}");
        for (a, b) in rows(&v).iter().zip(rows(&base)) {
            assert_eq!(a["m"]["code"], b["metrics"]["code"], "{target}: {v}");
        }
    }
    // one-to-many from a view, to a view, with the embed's filters, order, limit
    let (s, v) = get(
        p,
        "/metrics_v?select=code,points_v(period,value)&code=eq.scope1&points_v.order=period.desc&points_v.limit=2",
        t,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rows(&v).len(), 1);
    let pts = rows(&v[0]["points_v"]);
    assert_eq!(pts.len(), 2, "{v}");
    assert!(
        pts[0]["period"].as_str() >= pts[1]["period"].as_str(),
        "{v}"
    );
    // the one-to-many relationship of the table, to the view
    let (s, v) = get(
        p,
        "/metrics?select=code,points_v(value)&code=eq.scope2&points_v.limit=1",
        t,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rows(&v[0]["points_v"]).len(), 1, "{v}");
    // filtering the parent through an embedded view (!inner)
    let (s, v) = get(
        p,
        "/points_v?select=id,metrics_v!inner(code)&metrics_v.code=eq.water&limit=20",
        t,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(!rows(&v).is_empty());
    assert!(
        rows(&v).iter().all(|r| r["metrics_v"]["code"] == "water"),
        "{v}"
    );
    // ordering by a column of an embedded view (to-one)
    let (s, v) = get(
        p,
        "/points_v?select=value,metrics_v(code)&order=metrics_v(code).desc.nullslast,id&limit=1",
        t,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["metrics_v"]["code"], "water", "{v}");
    let (s, v) = get(
        p,
        "/points_v?select=value,metrics_v(code)&order=metrics_v(code).asc.nullslast,id&limit=1",
        t,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["metrics_v"]["code"], "energy", "{v}");
    // the view's own foreign key to a table
    let (s, v) = get(p, "/metrics_v?select=code,units(name)&code=eq.scope1", t).await;
    assert_eq!(s, 200, "{v}");
    assert!(v[0]["units"]["name"].is_string(), "{v}");
    // row level security still applies through the views
    let (_, a) = get(p, "/metrics_v?select=code", t).await;
    let (_, b) = get(p, "/metrics_v?select=code", Some(&member("globex"))).await;
    assert_eq!(rows(&a).len(), 5);
    assert_eq!(rows(&b).len(), 5);
    let (_, anon) = get(p, "/metrics_v?select=code", None).await;
    assert!(anon.get("code").is_some(), "anon has no privilege: {anon}");
}

async fn view_errors(p: &Proxy) {
    let t = member("acme");
    let t = Some(t.as_str());
    // the view shows `id` twice: two relationships, PGRST201 listing both
    let (s, v) = get(p, "/data_points?select=id,metrics_twice(code)&limit=1", t).await;
    assert_eq!((s, v["code"].as_str()), (300, Some("PGRST201")), "{v}");
    let details = v["details"].to_string();
    assert!(details.contains("metrics_twice"), "{v}");
    assert!(
        v["hint"].as_str().unwrap_or("").contains("metrics_twice!"),
        "{v}"
    );
    // …which a column hint resolves
    let (s, v) = get(
        p,
        "/data_points?select=id,metrics_twice!id_again(code)&order=id&limit=2",
        t,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v[0]["metrics_twice"]["code"].is_string(), "{v}");
    // points_v does not show entity_id: no relationship to the entities
    let (s, v) = get(p, "/points_v?select=id,reporting_entities(name)", t).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("PGRST200")), "{v}");
    // a constraint name designates the table, not the views over it
    let (s, v) = get(
        p,
        "/data_points?select=id,data_points_tenant_id_metric_id_fkey(code)&order=id&limit=1",
        t,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v[0]["data_points_tenant_id_metric_id_fkey"]["code"].is_string(),
        "{v}"
    );
}

async fn to_many_spreads(p: &Proxy) {
    let t = member("acme");
    let t = Some(t.as_str());
    // each column an array of the related rows' values, in the embed's order
    let (s, v) = get(
        p,
        "/metrics?select=code,...points_v(periods:period,value)&code=eq.scope1&points_v.order=period.desc&points_v.limit=3",
        t,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let obj = v[0].as_object().unwrap();
    assert_eq!(
        obj.keys().cloned().collect::<Vec<_>>(),
        ["code", "periods", "value"],
        "{v}"
    );
    let periods = rows(&v[0]["periods"]);
    assert_eq!(periods.len(), 3, "{v}");
    assert_eq!(rows(&v[0]["value"]).len(), 3, "{v}");
    assert!(periods[0].as_str() >= periods[1].as_str(), "{v}");
    // no related rows: empty arrays
    let (s, v) = get(
        p,
        "/metrics?select=code,...points_v(value)&code=eq.scope1&points_v.value=lt.-1",
        t,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!([{ "code": "scope1", "value": [] }]));
    // a nested embed inside a to-many spread is an array of objects
    let (s, v) = get(
        p,
        "/units?select=code,...metrics(mcodes:code,points_v(value))&order=code",
        t,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        rows(&v).iter().any(|u| !rows(&u["mcodes"]).is_empty()),
        "{v}"
    );
    for u in rows(&v) {
        assert_eq!(rows(&u["mcodes"]).len(), rows(&u["points_v"]).len(), "{v}");
        assert!(rows(&u["points_v"]).iter().all(Value::is_array), "{v}");
    }
    // aggregates are not implemented for to-many spreads (PostgREST v13)
    let (s, v) = get(p, "/metrics?select=code,...points_v(value.sum())", t).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("PGRST127")), "{v}");
    // a to-one spread is unchanged
    let (s, v) = get(
        p,
        "/points_v?select=id,...metrics_v(code)&order=id&limit=1",
        t,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v[0]["code"].is_string(), "{v}");
}

fn methods(doc: &Value, path: &str) -> Vec<String> {
    let mut m: Vec<String> = doc["paths"][path]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    m.sort();
    m
}

fn paths(doc: &Value) -> Vec<String> {
    let mut p: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    p.sort();
    p
}

async fn openapi_by_role(p: &Proxy, bare: &Proxy) {
    // anonymous: units (SELECT) and the functions granted to it
    let r = p.get("/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/openapi+json; charset=utf-8"
    );
    let anon: Value = r.json().await.unwrap();
    eprintln!("ANONDOC {anon:#}");
    assert_eq!(anon["swagger"], "2.0");
    assert_eq!(anon["info"]["title"], "ESG reporting API");
    assert_eq!(anon["info"]["description"], "Per-tenant data");
    assert_eq!(anon["basePath"], "/");
    assert!(anon["host"].is_string());
    let ps = paths(&anon);
    assert!(ps.contains(&"/units".to_string()), "{ps:?}");
    assert!(!ps.contains(&"/metrics".to_string()), "{ps:?}");
    assert!(!ps.contains(&"/points_v".to_string()), "{ps:?}");
    assert!(ps.contains(&"/rpc/add".to_string()), "{ps:?}");
    assert!(!ps.contains(&"/rpc/members_only".to_string()), "{ps:?}");
    assert_eq!(methods(&anon, "/units"), ["get"]);
    assert!(anon["definitions"]["metrics"].is_null());
    // the units definition: comments, keys, types, required columns
    let units = &anon["definitions"]["units"];
    assert_eq!(units["type"], "object");
    assert_eq!(
        units["description"],
        "Units of measure\n\nShared by every tenant"
    );
    assert_eq!(units["required"], json!(["code", "name"]));
    assert_eq!(units["properties"]["code"]["format"], "text");
    assert_eq!(units["properties"]["code"]["type"], "string");
    assert_eq!(
        units["properties"]["code"]["description"],
        "Note:\nThis is a Primary Key.<pk/>"
    );
    assert_eq!(units["properties"]["name"]["description"], "Display name");
    let get_units = &anon["paths"]["/units"]["get"];
    assert_eq!(get_units["summary"], "Units of measure");
    assert_eq!(get_units["description"], "Shared by every tenant");
    assert_eq!(get_units["tags"], json!(["units"]));
    assert_eq!(
        get_units["responses"]["200"]["schema"]["items"]["$ref"],
        "#/definitions/units"
    );
    assert!(get_units["parameters"]
        .as_array()
        .unwrap()
        .contains(&json!({ "$ref": "#/parameters/rowFilter.units.code" })));
    assert_eq!(
        anon["parameters"]["rowFilter.units.name"]["description"],
        "Display name"
    );
    // functions: get with query parameters (not volatile), post with a body
    let add = &anon["paths"]["/rpc/add"];
    assert_eq!(methods(&anon, "/rpc/add"), ["get", "post"]);
    assert_eq!(add["get"]["tags"], json!(["(rpc) add"]));
    assert_eq!(
        add["get"]["parameters"],
        json!([
            { "name": "a", "required": true, "in": "query", "format": "integer", "type": "integer" },
            { "name": "b", "required": false, "in": "query", "format": "integer", "type": "integer" },
        ])
    );
    let body = &add["post"]["parameters"][0];
    assert_eq!(body["in"], "body");
    assert_eq!(body["schema"]["required"], json!(["a"]));
    assert_eq!(
        body["schema"]["properties"]["b"],
        json!({ "format": "integer", "type": "integer" })
    );
    assert_eq!(methods(&anon, "/rpc/new_metric"), ["post"]);
    // PostgREST v12's media lists and Prefer enums, which generated clients read
    let media = json!([
        "application/json",
        "application/vnd.pgrst.object+json;nulls=stripped",
        "application/vnd.pgrst.object+json",
        "text/csv"
    ]);
    assert_eq!(anon["consumes"], media);
    assert_eq!(anon["produces"], media);
    assert_eq!(
        add["post"]["produces"],
        json!([
            "application/json",
            "application/vnd.pgrst.object+json;nulls=stripped",
            "application/vnd.pgrst.object+json"
        ])
    );
    assert_eq!(
        anon["parameters"]["preferParams"]["enum"],
        json!(["params=single-object"])
    );

    // a member: the tables with every method its privileges allow
    let (s, doc) = get(p, "/", Some(&member("acme"))).await;
    assert_eq!(s, 200, "{doc}");
    assert_eq!(
        methods(&doc, "/metrics"),
        ["delete", "get", "patch", "post"]
    );
    assert_eq!(methods(&doc, "/units"), ["get"]);
    assert_eq!(methods(&doc, "/points_v"), ["get"]);
    let ps = paths(&doc);
    assert!(ps.contains(&"/rpc/members_only".to_string()), "{ps:?}");
    assert_eq!(
        doc["paths"]["/rpc/members_only"]["get"]["summary"],
        "Only for members"
    );
    let body = &doc["paths"]["/rpc/pair_up"]["post"]["parameters"][0]["schema"];
    assert_eq!(body["required"], json!(["mood"]), "{body}");
    assert_eq!(body["properties"]["mood"]["format"], "mood", "{body}");
    let metrics = &doc["definitions"]["metrics"];
    assert_eq!(metrics["properties"]["id"]["format"], "bigint");
    assert_eq!(metrics["properties"]["id"]["type"], "integer");
    assert_eq!(metrics["properties"]["tenant_id"]["format"], "uuid");
    assert_eq!(
        metrics["properties"]["tenant_id"]["default"],
        "tenancy.current_tenant()"
    );
    assert_eq!(
        metrics["properties"]["unit"]["description"],
        "Note:\nThis is a Foreign Key to `units.code`.<fk table='units' column='code'/>"
    );
    assert_eq!(
        metrics["properties"]["id"]["description"],
        "Note:\nThis is a Primary Key.<pk/>"
    );
    assert_eq!(
        doc["paths"]["/metrics"]["post"]["parameters"][0]["$ref"],
        "#/parameters/body.metrics"
    );
    assert_eq!(
        doc["parameters"]["body.metrics"]["schema"]["$ref"],
        "#/definitions/metrics"
    );
    // views: keys and foreign keys from their tables
    let pv = &doc["definitions"]["points_v"];
    assert_eq!(
        pv["properties"]["id"]["description"],
        "Note:\nThis is a Primary Key.<pk/>"
    );
    assert_eq!(
        doc["definitions"]["metrics_v"]["properties"]["unit"]["description"],
        "Note:\nThis is a Foreign Key to `units.code`.<fk table='units' column='code'/>"
    );
    assert_eq!(pv["properties"]["period"]["format"], "date");

    // a viewer: reads only
    let viewer = jwt(json!({ "role": "tenancy_viewer", "tenant_id": "acme", "exp": now() + 600 }));
    let (s, doc) = get(p, "/", Some(&viewer)).await;
    assert_eq!(s, 200, "{doc}");
    assert_eq!(methods(&doc, "/metrics"), ["get"]);
    assert_eq!(methods(&doc, "/data_points"), ["get"]);
    assert!(!paths(&doc).contains(&"/rpc/members_only".to_string()));

    // an anonymous role without any privilege: nothing but the document itself
    let (s, doc) = get(bare, "/", None).await;
    assert_eq!(s, 200, "{doc}");
    assert_eq!(paths(&doc), ["/"], "{doc}");
    assert_eq!(doc["definitions"], json!({}));
}

/// `missing=default` through an auto-updatable view whose objects differ
/// in their keys: a row lacking a column the view has no default for gets
/// the base table's default, as `DEFAULT` through the view would.
async fn view_missing_default(p: &Proxy) {
    let acme = member("acme");
    let (s, v) = get(p, "/metrics?select=tenant_id&limit=1", Some(&acme)).await;
    assert_eq!(s, 200, "{v}");
    let tenant = v[0]["tenant_id"].clone();
    // `POST path` with missing=default as acme: status and body
    let insert = |path: &'static str, body: Value| {
        let r = p
            .post(path)
            .bearer_auth(&acme)
            .header("Prefer", "return=representation,missing=default")
            .json(&body);
        async move { json_of(r.send().await.unwrap()).await }
    };
    let body = json!([
        {"code": "mv1", "name": "one", "unit": "t"},
        {"tenant_id": tenant, "code": "mv2", "name": "two", "unit": "t"}
    ]);
    let (status, v) = insert(
        "/metrics_v?columns=tenant_id,code,name,unit&select=code,tenant_id",
        body,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        v,
        json!([{"code": "mv1", "tenant_id": tenant}, {"code": "mv2", "tenant_id": tenant}])
    );
    // the base table's serial through a view, for a role without USAGE on
    // the table's schema: its sequence is named by oid, as DEFAULT does
    let body = json!([{"body": "a"}, {"id": 1000, "body": "b", "tag": "t"}]);
    let (status, v) = insert("/notes_v?columns=id,body,tag&select=id,body,tag", body).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        v,
        json!([{"id": 1, "body": "a", "tag": "none"}, {"id": 1000, "body": "b", "tag": "t"}])
    );
}

async fn openapi_media(p: &Proxy) {
    for accept in [
        "application/openapi+json",
        "application/json",
        "*/*",
        "text/html, application/openapi+json;q=0.9",
    ] {
        let r = p.get("/").header("Accept", accept).send().await.unwrap();
        assert_eq!(r.status(), 200, "{accept}");
        assert_eq!(
            r.headers()["content-type"],
            "application/openapi+json; charset=utf-8"
        );
    }
    for accept in ["text/csv", "application/vnd.pgrst.object+json", "image/png"] {
        let (s, v) = json_of(p.get("/").header("Accept", accept).send().await.unwrap()).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (406, Some("PGRST107")),
            "{accept}: {v}"
        );
    }
    // tables still refuse the OpenAPI media type
    let (s, v) = json_of(
        p.get("/units")
            .header("Accept", "application/openapi+json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (406, Some("PGRST107")), "{v}");
    let r = p.http.head(format!("{}/", p.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (s, v) = json_of(p.post("/").json(&json!({})).send().await.unwrap()).await;
    assert_eq!((s, v["code"].as_str()), (405, Some("PGRST117")), "{v}");
    // another exposed schema
    let (s, doc) = json_of(
        p.get("/")
            .bearer_auth(member("acme"))
            .header("Accept-Profile", "tenancy")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{doc}");
    assert!(doc["paths"]["/metrics"].is_null(), "{doc}");
}
