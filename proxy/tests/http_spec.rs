//! What running PostgREST's own spec files (its fixtures loaded in a test
//! database, each request sent to the proxy) found different from
//! PostgREST 12.2, now the same: a `PATCH` reads only the `columns=` keys,
//! honours `missing=default`, takes `bit(n)`/`char(n)` values and never
//! parses a representation of a row it does not touch; an embed that
//! renders nothing is left out however deep; a set of media-type values is
//! not a handler; to-one embeds are `jsonb`; a cast of a represented column
//! casts its JSON; `OPTIONS` reads `Accept-Profile` and refuses a path of
//! more segments with PGRST125.

mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgrest_spec_differences() {
    let db = TestDb::create("spec").await;
    db.admin()
        .await
        .batch_execute(
            r#"CREATE TABLE esg.sp_items (id int PRIMARY KEY, body text, n int, f int NOT NULL DEFAULT 1);
             INSERT INTO esg.sp_items VALUES (1, 'a', 1, 5), (2, 'b', 2, 5);
             CREATE VIEW esg.sp_items_v AS SELECT * FROM esg.sp_items;
             ALTER VIEW esg.sp_items_v ALTER COLUMN body SET DEFAULT 'view default';
             CREATE TABLE esg.sp_bits (b bit(5), c char(5));
             INSERT INTO esg.sp_bits VALUES ('00000', 'aaaaa');
             CREATE DOMAIN esg.sp_color AS int CHECK (VALUE >= 0);
             CREATE FUNCTION esg.sp_color(json) RETURNS esg.sp_color IMMUTABLE LANGUAGE sql
               AS $$ SELECT (('x' || lpad(ltrim($1 #>> '{}', '#'), 8, '0'))::bit(32)::int)::esg.sp_color $$;
             CREATE CAST (json AS esg.sp_color) WITH FUNCTION esg.sp_color(json) AS IMPLICIT;
             CREATE FUNCTION esg.json(esg.sp_color) RETURNS json IMMUTABLE LANGUAGE sql
               AS $$ SELECT to_json('#' || lpad(upper(to_hex($1)), 6, '0')) $$;
             CREATE CAST (esg.sp_color AS json) WITH FUNCTION esg.json(esg.sp_color) AS IMPLICIT;
             CREATE TABLE esg.sp_todos (id int PRIMARY KEY, c esg.sp_color);
             INSERT INTO esg.sp_todos VALUES (1, 16);
             CREATE TABLE esg.sp_projects (id int PRIMARY KEY, name text);
             CREATE TABLE esg.sp_tasks (id int PRIMARY KEY, project_id int REFERENCES esg.sp_projects, name text);
             CREATE TABLE esg.sp_users (id int PRIMARY KEY, name text);
             CREATE TABLE esg.sp_users_tasks (user_id int REFERENCES esg.sp_users, task_id int REFERENCES esg.sp_tasks,
                                              PRIMARY KEY (user_id, task_id));
             INSERT INTO esg.sp_projects VALUES (1, 'p1');
             INSERT INTO esg.sp_tasks VALUES (1, 1, 't1'), (2, 1, 't2');
             INSERT INTO esg.sp_users VALUES (1, 'u1'), (2, 'u2');
             INSERT INTO esg.sp_users_tasks VALUES (1, 1), (1, 2), (2, 2);
             CREATE DOMAIN esg."text/plain" AS text;
             CREATE FUNCTION esg.sp_once() RETURNS esg."text/plain" STABLE LANGUAGE sql AS $$ SELECT 'hello'::esg."text/plain" $$;
             CREATE FUNCTION esg.sp_twice() RETURNS SETOF esg."text/plain" STABLE LANGUAGE sql
               AS $$ VALUES ('hello'::esg."text/plain"), ('again') $$;
             -- parents analyzed, children not: PostgreSQL would plan a plain
             -- EXISTS as a hash join driven by the children (rows 2, 1)
             CREATE TABLE esg.sp_parents (id int PRIMARY KEY);
             CREATE TABLE esg.sp_kids (id int PRIMARY KEY, parent_id int REFERENCES esg.sp_parents);
             INSERT INTO esg.sp_parents SELECT generate_series(1, 6);
             INSERT INTO esg.sp_kids VALUES (1, 1), (2, 1), (3, 2), (4, 2), (5, 2);
             ANALYZE esg.sp_parents;
             GRANT SELECT, INSERT, UPDATE, DELETE ON esg.sp_items, esg.sp_items_v, esg.sp_bits, esg.sp_todos,
               esg.sp_projects, esg.sp_tasks, esg.sp_users, esg.sp_users_tasks,
               esg.sp_parents, esg.sp_kids TO tenancy_member;
             CREATE FUNCTION esg.sp_path() RETURNS text STABLE LANGUAGE sql
               AS $$ SELECT current_setting('request.path') $$;
             CREATE FUNCTION esg.sp_own_vary() RETURNS int STABLE LANGUAGE plpgsql AS $$
               BEGIN PERFORM set_config('response.headers', '[{"Vary": "X-Test-Accept"}]', true); RETURN 1; END $$;
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO tenancy_member;"#,
        )
        .await
        .unwrap();
    let p = db.proxy(db.config()).await;
    let outcome = guarded(async {
        patch_columns(&p).await;
        reads(&p).await;
        options(&p).await;
        supabase_prefix(&p).await;
        vary(&p).await;
        deep_bodies(&p).await;
    })
    .await;
    finish(outcome, &db, vec![p]).await;
}

async fn patch_columns(p: &Proxy) {
    let rep = "return=representation";
    let rep_default = "return=representation, missing=default";
    // in order (each sees the rows the ones before it wrote): path, Prefer,
    // body, status, and the rows returned — or, for an error, its code
    let cases = [
        // a key `columns=` does not list is never read (not even parsed)
        (
            "/sp_items?id=eq.1&columns=body",
            rep,
            json!({"body": "x", "n": "not-an-int", "no_such_column": 1}),
            200,
            json!([{"id": 1, "body": "x", "n": 1, "f": 5}]),
        ),
        // missing=default: a listed column the body lacks takes its default
        (
            "/sp_items?id=eq.2&columns=body,f",
            rep_default,
            json!({"body": "y"}),
            200,
            json!([{"id": 2, "body": "y", "n": 2, "f": 1}]),
        ),
        // without it, NULL (here a not-null violation, nothing written)
        (
            "/sp_items?id=eq.2&columns=body,f",
            rep,
            json!({"body": "z"}),
            400,
            json!("23502"),
        ),
        // a view's own default; every listed column defaulted reads no body
        (
            "/sp_items_v?id=eq.2&columns=body",
            rep_default,
            json!({}),
            200,
            json!([{"id": 2, "body": "view default", "n": 2, "f": 1}]),
        ),
        // bit(5) and char(5): the column's own length, not the type's
        // default 1
        (
            "/sp_bits?c=eq.aaaaa",
            rep,
            json!({"b": "11100"}),
            200,
            json!([{"b": "11100", "c": "aaaaa"}]),
        ),
        (
            "/sp_bits?b=eq.11100",
            rep,
            json!({"c": "zzzyy"}),
            200,
            json!([{"b": "11100", "c": "zzzyy"}]),
        ),
        // a represented column is made by its function from the row: a
        // PATCH that matches no row does not parse a bad value, one that
        // matches does
        (
            "/sp_todos?id=eq.999&columns=c",
            rep,
            json!({"c": "invalid"}),
            200,
            json!([]),
        ),
        (
            "/sp_todos?id=eq.1&columns=c",
            rep,
            json!({"c": "invalid"}),
            400,
            json!("22P02"),
        ),
        (
            "/sp_todos?id=eq.1",
            rep,
            json!({"c": "#0000FF"}),
            200,
            json!([{"id": 1, "c": "#0000FF"}]),
        ),
    ];
    for (path, prefer, body, status, want) in cases {
        let r = p
            .patch(path)
            .bearer_auth(member("acme"))
            .header("Prefer", prefer)
            .json(&body)
            .send()
            .await
            .unwrap();
        let applied = header(&r, "preference-applied").unwrap_or_default();
        let (s, v) = json_of(r).await;
        if status == 200 {
            assert_eq!((s, &v), (200, &want), "{path}");
            if prefer.contains("missing=default") {
                assert!(applied.contains("missing=default"), "{path}: {applied}");
            }
        } else {
            assert_eq!((s, &v["code"]), (status, &want), "{path}: {v}");
        }
    }
}

/// A body nested too deeply for PostgreSQL's parser is the client's error
/// (400 PGRST102), not a 500 54001 stack overflow; nothing is written.
async fn deep_bodies(p: &Proxy) {
    let acme = member("acme");
    let deep = format!(
        r#"{{"id": 9, "body": {}1{}}}"#,
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    for (method, path) in [
        (reqwest::Method::POST, "/sp_items"),
        (reqwest::Method::PUT, "/sp_items?id=eq.9"),
    ] {
        let (s, v) = json_of(
            p.request(method.clone(), path)
                .bearer_auth(&acme)
                .header("Content-Type", "application/json")
                .body(deep.clone())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some("PGRST102")),
            "{method} {v}"
        );
    }
    let (_, v) = json_of(
        p.get("/sp_items?id=eq.9")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v, json!([]));
}

async fn reads(p: &Proxy) {
    let acme = member("acme");
    let get = |path: &str, accept: &str| {
        p.get(path)
            .bearer_auth(&acme)
            .header("Accept", accept)
            .send()
    };
    // JSON answers: path, Accept, status, body
    let json = "application/json";
    let cases = [
        // an embed whose embeds select nothing renders nothing: left out
        (
            "/sp_users?select=id,sp_users_tasks(sp_tasks(sp_projects()))&order=id",
            json,
            200,
            json!([{"id": 1}, {"id": 2}]),
        ),
        // ...and still filters with `!inner`
        (
            "/sp_users?select=id,sp_users_tasks!inner(sp_tasks!inner(id))&sp_users_tasks.sp_tasks.id=eq.1",
            json,
            200,
            json!([{"id": 1, "sp_users_tasks": [{"sp_tasks": {"id": 1}}]}]),
        ),
        // a filter key ends where a field name ends, as PostgREST reads it:
        // the `qs` library's arrays (react-admin's data provider) filter the
        // column twice
        (
            "/sp_items?select=id&id[0]=in.(1,2)&id[1]=neq.2",
            json,
            200,
            json!([{"id": 1}]),
        ),
        // a to-one embed or spread paged by the client (PostgREST applies
        // the page): `limit=1` keeps the row, `offset=1` skips it
        (
            "/sp_tasks?select=id,sp_projects(name)&sp_projects.limit=1&order=id",
            json,
            200,
            json!([{"id": 1, "sp_projects": {"name": "p1"}}, {"id": 2, "sp_projects": {"name": "p1"}}]),
        ),
        (
            "/sp_tasks?select=id,sp_projects(name)&sp_projects.offset=1&id=eq.1",
            json,
            200,
            json!([{"id": 1, "sp_projects": null}]),
        ),
        (
            "/sp_tasks?select=id,...sp_projects(project:name)&sp_projects.order=name&sp_projects.limit=1&id=eq.2",
            json,
            200,
            json!([{"id": 2, "project": "p1"}]),
        ),
        // without `order`, `!inner` and a null filter keep the parents' scan
        // order, as PostgREST's lateral join does
        (
            "/sp_parents?select=id,sp_kids!inner()",
            json,
            200,
            json!([{"id": 1}, {"id": 2}]),
        ),
        (
            "/sp_parents?select=id,sp_kids()&sp_kids=not.is.null",
            json,
            200,
            json!([{"id": 1}, {"id": 2}]),
        ),
        // the embed's own offset decides too: parent 1 has only two kids
        (
            "/sp_parents?select=id,sp_kids!inner(id)&sp_kids.offset=2",
            json,
            200,
            json!([{"id": 2, "sp_kids": [{"id": 5}]}]),
        ),
        // an aggregate next to a to-one embed groups by it (jsonb has
        // equality)
        (
            "/sp_tasks?select=project_id,count(),sp_projects(name)",
            json,
            200,
            json!([{"project_id": 1, "count": 2, "sp_projects": {"name": "p1"}}]),
        ),
        // a cast of a represented column casts its JSON
        (
            "/sp_todos?select=id,c,t:c::text",
            json,
            200,
            json!([{"id": 1, "c": "#0000FF", "t": "\"#0000FF\""}]),
        ),
        // a set of media values is not a handler (one value is, below)
        (
            "/rpc/sp_twice",
            "text/plain",
            406,
            json!({"code": "PGRST107", "details": null, "hint": null,
                   "message": "None of these media types are available: text/plain"}),
        ),
        ("/rpc/sp_twice", json, 200, json!(["hello", "again"])),
    ];
    for (path, accept, status, want) in cases {
        let (s, v) = json_of(get(path, accept).await.unwrap()).await;
        assert_eq!((s, v), (status, want), "{path}");
    }
    // the counts count what the rows keep (a count may be a semi-join)
    for (prefer, want) in [("count=exact", "0-1/2"), ("count=planned", "0-1/")] {
        let r = p
            .get("/sp_parents?select=id,sp_kids!inner()")
            .bearer_auth(&acme)
            .header("Prefer", prefer)
            .send()
            .await
            .unwrap();
        let range = r.headers()["content-range"].to_str().unwrap().to_string();
        assert!(range.starts_with(want), "{prefer}: {range}");
        assert_eq!(r.text().await.unwrap().matches("\"id\"").count(), 2);
    }
    // text answers: a to-one embed is jsonb, as PostgREST's: its keys in
    // jsonb's order and text (seen byte for byte in CSV); to-many embeds too
    // (`json_agg(…)::jsonb`); one media value is the body
    for (path, accept, want) in [
        (
            "/sp_tasks?select=id,sp_projects(name,id)&id=eq.1",
            "text/csv",
            "id,sp_projects\n1,\"{\"\"id\"\": 1, \"\"name\"\": \"\"p1\"\"}\"",
        ),
        (
            "/sp_projects?select=id,sp_tasks(name,id)&sp_tasks.order=id",
            "text/csv",
            "id,sp_tasks\n1,\"[{\"\"id\"\": 1, \"\"name\"\": \"\"t1\"\"}, {\"\"id\"\": 2, \"\"name\"\": \"\"t2\"\"}]\"",
        ),
        ("/rpc/sp_once", "text/plain", "hello"),
    ] {
        let r = get(path, accept).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().await.unwrap(), want, "{path}");
    }
}

async fn options(p: &Proxy) {
    let acme = member("acme");
    let opt = |path: &str, h: Option<(&str, &str)>| {
        let mut r = p.request(reqwest::Method::OPTIONS, path).bearer_auth(&acme);
        if let Some((k, v)) = h {
            r = r.header(k, v);
        }
        r.send()
    };
    let r = opt("/sp_items", None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(header(&r, "allow").unwrap_or_default().contains("PATCH"));
    // the schema comes from Accept-Profile, as for GET (Content-Profile is
    // a write's)
    let (s, v) = json_of(
        opt("/sp_items", Some(("Accept-Profile", "tenancy")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (404, Some("PGRST205")), "{v}");
    let (s, v) = json_of(
        opt("/sp_items", Some(("Accept-Profile", "nope")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (406, Some("PGRST106")), "{v}");
    let r = opt("/sp_items", Some(("Content-Profile", "nope")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // more segments than a table or rpc/fn: PGRST125, as any method
    for path in ["/sp_items/1", "/rpc/sp_once/x"] {
        let (s, v) = json_of(opt(path, None).await.unwrap()).await;
        assert_eq!(
            (s, v["code"].as_str(), v["message"].as_str()),
            (
                404,
                Some("PGRST125"),
                Some("Invalid path specified in request URL")
            ),
            "{path}"
        );
    }
}

/// Supabase's clients put the API under `/rest/v1` (its gateway strips it):
/// the proxy serves it there too, and only there.
async fn supabase_prefix(p: &Proxy) {
    let acme = member("acme");
    let get = |path: &str| p.get(path).bearer_auth(&acme).send();
    let (s, plain) = json_of(get("/sp_items?id=eq.1").await.unwrap()).await;
    assert_eq!(s, 200);
    for path in ["/rest/v1/sp_items?id=eq.1", "/rest/v1/sp_items?id=eq.1&"] {
        let (s, v) = json_of(get(path).await.unwrap()).await;
        assert_eq!((s, &v), (200, &plain), "{path}");
    }
    // functions, and the OpenAPI root with and without the slash
    let (s, v) = json_of(get("/rest/v1/rpc/sp_twice").await.unwrap()).await;
    assert_eq!((s, v), (200, json!(["hello", "again"])));
    for path in ["/rest/v1", "/rest/v1/"] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["swagger"], "2.0", "{path}");
    }
    // the database sees the path without the prefix, as behind Supabase's
    // gateway
    let r = p
        .post("/rest/v1/rpc/sp_path")
        .bearer_auth(&acme)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await, (200, json!("/rpc/sp_path")));
    // a look-alike prefix is not stripped: a nested path, 404 PGRST125
    for path in [
        "/rest/v10/sp_items",
        "/rest/v1x/sp_items",
        "/v1/rest/sp_items",
        // an empty segment is a segment, as in PostgREST's path
        "/rest/v1//sp_items",
        "//sp_items",
        "/sp_items/",
        "//rpc/sp_twice",
        "/rpc//sp_twice",
    ] {
        let (s, v) = json_of(get(path).await.unwrap()).await;
        assert_eq!((s, v["code"].as_str()), (404, Some("PGRST125")), "{path}");
    }
}

/// `Vary: Accept, Prefer, Range` on every API answer (PostgREST's default
/// after v13: the body depends on them), besides CORS's `Vary: Origin`;
/// a function that sets its own `Vary` replaces it.
async fn vary(p: &Proxy) {
    let acme = member("acme");
    let varies = |r: &reqwest::Response| -> Vec<String> {
        r.headers()
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    for path in ["/sp_items?id=eq.1", "/sp_nothing", "/rpc/sp_path"] {
        let r = p.get(path).bearer_auth(&acme).send().await.unwrap();
        assert_eq!(varies(&r), ["Accept, Prefer, Range", "Origin"], "{path}");
    }
    let r = p
        .get("/rpc/sp_own_vary")
        .bearer_auth(&acme)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(varies(&r), ["X-Test-Accept", "Origin"]);
}

/// `Accept: application/geo+json` with PostGIS (≥ 3, installed by
/// scripts/deps.sh): the rows as a GeoJSON `FeatureCollection`, as
/// PostgREST answers (postgrest-js `.geojson()`); without PostGIS the type
/// is not available (406, or the next type of `Accept`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geojson() {
    let db = TestDb::create("geojson").await;
    db.admin()
        .await
        .batch_execute(
            r#"CREATE EXTENSION postgis;
             CREATE TABLE esg.sp_shops (id int PRIMARY KEY, address text, location geometry(Point, 4326));
             INSERT INTO esg.sp_shops VALUES
               (1, '1369 Cambridge St', 'SRID=4326;POINT(-71.10044 42.373695)'),
               (2, 'no location', NULL);
             CREATE FUNCTION esg.sp_shops_near() RETURNS SETOF esg.sp_shops STABLE LANGUAGE sql
               AS $$ SELECT * FROM esg.sp_shops WHERE id = 1 $$;
             CREATE FUNCTION esg.sp_point() RETURNS geometry IMMUTABLE LANGUAGE sql
               AS $$ SELECT 'SRID=4326;POINT(1 2)'::geometry $$;
             CREATE FUNCTION esg.sp_points() RETURNS SETOF geometry IMMUTABLE LANGUAGE sql
               AS $$ VALUES ('SRID=4326;POINT(1 2)'::geometry), ('SRID=4326;POINT(3 4)') $$;
             GRANT SELECT, INSERT ON esg.sp_shops TO tenancy_member;
             GRANT EXECUTE ON FUNCTION esg.sp_shops_near() TO tenancy_member;"#,
        )
        .await
        .unwrap();
    let p = db.proxy(db.config()).await;
    let outcome = guarded(async {
        let acme = member("acme");
        let geo = "application/geo+json";
        let feature = json!({"type": "Feature",
            "geometry": {"type": "Point", "coordinates": [-71.10044, 42.373695]},
            "properties": {"id": 1, "address": "1369 Cambridge St"}});
        let collection = |features: serde_json::Value| json!({"type": "FeatureCollection", "features": features});
        // reads, functions returning rows, writes returning them
        let r = p.get("/sp_shops?id=eq.1").bearer_auth(&acme).header("Accept", geo).send().await.unwrap();
        assert_eq!(r.headers()["content-type"], "application/geo+json; charset=utf-8");
        assert_eq!(json_of(r).await, (200, collection(json!([feature]))));
        let r = p.get("/rpc/sp_shops_near").bearer_auth(&acme).header("Accept", geo).send().await.unwrap();
        assert_eq!(json_of(r).await, (200, collection(json!([feature]))));
        let r = p
            .post("/sp_shops")
            .bearer_auth(&acme)
            .header("Accept", geo)
            .header("Prefer", "return=representation")
            .json(&json!({"id": 3, "address": "new", "location": null}))
            .send()
            .await
            .unwrap();
        // (a NULL geometry is PostGIS's to render: `{"type": null}` in 3.3)
        let (s, v) = json_of(r).await;
        assert_eq!((s, &v["type"]), (201, &json!("FeatureCollection")), "{v}");
        assert_eq!(v["features"][0]["type"], "Feature", "{v}");
        assert_eq!(v["features"][0]["properties"], json!({"id": 3, "address": "new"}), "{v}");
        // no rows: an empty collection
        let r = p.get("/sp_shops?id=eq.99").bearer_auth(&acme).header("Accept", geo).send().await.unwrap();
        assert_eq!(json_of(r).await, (200, collection(json!([]))));
        // a function of geometries: a Feature per value, no properties (as
        // PostgREST, whose collection runs over the rows of the call); a
        // scalar that is no geometry has no geometry column (22023)
        let point = |x: i32, y: i32| {
            json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]}, "properties": {}})
        };
        for (path, want) in [
            ("/rpc/sp_point", json!([point(1, 2)])),
            ("/rpc/sp_points", json!([point(1, 2), point(3, 4)])),
            ("/rpc/sp_points?limit=1&offset=1", json!([point(3, 4)])),
        ] {
            let r = p.get(path).bearer_auth(&acme).header("Accept", geo).send().await.unwrap();
            assert_eq!(r.headers()["content-type"], "application/geo+json; charset=utf-8", "{path}");
            assert_eq!(json_of(r).await, (200, collection(want)), "{path}");
        }
        let r = p.post("/rpc/add").bearer_auth(&acme).header("Accept", geo).json(&json!({"a": 1})).send().await.unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!((s, v["code"].as_str()), (400, Some("22023")), "{v}");
        // without a geometry column PostGIS refuses (22023 → 400), as under PostgREST
        let r = p.get("/sp_shops?select=id").bearer_auth(&acme).header("Accept", geo).send().await.unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!((s, v["code"].as_str()), (400, Some("22023")), "{v}");
    })
    .await;
    finish(outcome, &db, vec![p]).await;
}

/// Without PostGIS `application/geo+json` is not a type the proxy has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geojson_without_postgis() {
    let db = TestDb::create("nogeo").await;
    let p = db.proxy(db.config()).await;
    let outcome = guarded(async {
        let acme = member("acme");
        let get = |accept: &'static str| {
            p.get("/metrics?select=code&limit=1")
                .bearer_auth(&acme)
                .header("Accept", accept)
                .send()
        };
        let (s, v) = json_of(get("application/geo+json").await.unwrap()).await;
        assert_eq!((s, v["code"].as_str()), (406, Some("PGRST107")), "{v}");
        let r = get("application/geo+json, text/csv").await.unwrap();
        assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    })
    .await;
    finish(outcome, &db, vec![p]).await;
}

/// Type names the schema cache splices into statements (`json_to_record(…)
/// AS _(col type)` of PATCH, PUT, `missing=default`, RPC arguments) are
/// qualified: under `Content-Profile: sp_other` the request's search path
/// puts `sp_other` first, whose own `sp_mood` must not stand in for the
/// column's `public.sp_mood` (postgrest-rs's multi-schema test: a PATCH
/// through the second schema failed with 42804).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadowed_type_names() {
    let db = TestDb::create("shadowtypes").await;
    db.admin()
        .await
        .batch_execute(
            r#"CREATE SCHEMA sp_other;
             CREATE TYPE public.sp_mood AS ENUM ('ok', 'bad');
             CREATE TYPE sp_other.sp_mood AS ENUM ('other');
             CREATE TABLE sp_other.sp_feel (id int PRIMARY KEY, mood public.sp_mood DEFAULT 'ok',
               moods public.sp_mood[] NOT NULL DEFAULT '{}');
             INSERT INTO sp_other.sp_feel VALUES (1, 'ok', '{ok}');
             CREATE FUNCTION sp_other.sp_echo(m public.sp_mood, ms public.sp_mood[] DEFAULT '{}')
               RETURNS text IMMUTABLE LANGUAGE sql AS $$ SELECT m::text || cardinality(ms) $$;
             GRANT USAGE ON SCHEMA sp_other TO tenancy_member;
             GRANT ALL ON sp_other.sp_feel TO tenancy_member;"#,
        )
        .await
        .unwrap();
    let mut c = db.config();
    c.db_schemas = "esg,sp_other".into();
    let p = db.proxy(c).await;
    let outcome = guarded(async {
        let acme = member("acme");
        let send = |r: reqwest::RequestBuilder| {
            r.bearer_auth(&acme)
                .header("Content-Profile", "sp_other")
                .header("Accept-Profile", "sp_other")
                .header("Prefer", "return=representation")
                .send()
        };
        let r = send(p.patch("/sp_feel?id=eq.1").json(&json!({"mood": "bad", "moods": ["bad", "ok"]})));
        let (s, v) = json_of(r.await.unwrap()).await;
        assert_eq!((s, v), (200, json!([{"id": 1, "mood": "bad", "moods": ["bad", "ok"]}])));
        let r = send(p.put("/sp_feel?id=eq.2").json(&json!({"id": 2, "mood": "bad", "moods": []})));
        let (s, v) = json_of(r.await.unwrap()).await;
        assert_eq!((s, v), (201, json!([{"id": 2, "mood": "bad", "moods": []}])));
        let r = p
            .post("/sp_feel?columns=id,mood")
            .bearer_auth(&acme)
            .header("Content-Profile", "sp_other")
            .header("Prefer", "return=representation, missing=default")
            .json(&json!([{"id": 3, "mood": "bad"}, {"id": 4}]))
            .send();
        let (s, v) = json_of(r.await.unwrap()).await;
        assert_eq!(
            (s, v),
            (201, json!([{"id": 3, "mood": "bad", "moods": []}, {"id": 4, "mood": "ok", "moods": []}]))
        );
        let r = send(p.post("/rpc/sp_echo").json(&json!({"m": "bad", "ms": ["ok", "bad"]})));
        assert_eq!(json_of(r.await.unwrap()).await, (200, json!("bad2")));
        let r = send(p.get("/rpc/sp_echo?m=ok"));
        assert_eq!(json_of(r.await.unwrap()).await, (200, json!("ok0")));
        let r = send(p.get("/sp_feel?select=id,mood&mood=eq.bad&order=id"));
        assert_eq!(
            json_of(r.await.unwrap()).await,
            (200, json!([{"id": 1, "mood": "bad"}, {"id": 2, "mood": "bad"}, {"id": 3, "mood": "bad"}]))
        );
    })
    .await;
    finish(outcome, &db, vec![p]).await;
}
