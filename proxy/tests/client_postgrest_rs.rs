//! A real client: Supabase's Rust client, `postgrest` 1.6.0 (postgrest-rs,
//! on reqwest 0.11), against the proxy. It builds its own requests
//! (`Range`/`Range-Unit` for limits, `Accept-Profile`/`Content-Profile` for
//! `schema()`, form-encoded query values, `Prefer` per method), so this
//! checks what the proxy makes of that client's requests, not of ours.
//! Expected rows are computed by PostgreSQL itself, as the same tenant
//! through the same policies, not written down by hand.
//!
//! Its upstream suite (tests/client.rs, tests/multi_schema.rs against its
//! docker fixture) passes against the proxy too: 34/34 at 0da6304.

mod common;

use common::*;
use postgrest::Postgrest;
use serde_json::{json, Value};

/// Status, `Content-Range` and the parsed body of a built request.
async fn call(b: postgrest::Builder) -> (u16, Option<String>, Value) {
    let r = b.execute().await.expect("request");
    let status = r.status().as_u16();
    let range = r
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, range, body)
}

/// The rows of `sql` as `tenant`'s member sees them (same role, same
/// policies), as one JSON array.
async fn as_member(db: &TestDb, tenant: &str, sql: &str) -> Value {
    let c = db.admin().await;
    c.batch_execute("BEGIN").await.unwrap();
    c.execute("SELECT tenancy.set_tenant($1, true)", &[&tenant])
        .await
        .unwrap();
    c.batch_execute("SET LOCAL ROLE tenancy_member")
        .await
        .unwrap();
    let row = c
        .query_one(
            &format!("SELECT coalesce(json_agg(x), '[]')::text FROM ({sql}) x"),
            &[],
        )
        .await
        .unwrap();
    c.batch_execute("ROLLBACK").await.unwrap();
    serde_json::from_str(row.get::<_, &str>(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgrest_rs_client() {
    let db = TestDb::create("pgrs").await;
    db.admin()
        .await
        .batch_execute(
            r#"CREATE TABLE esg.rs_notes (
                 id int PRIMARY KEY,
                 tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant(),
                 title text NOT NULL,
                 tags text[] NOT NULL DEFAULT '{}',
                 span int4range,
                 body text,
                 fts tsvector GENERATED ALWAYS AS (to_tsvector('english', coalesce(body, ''))) STORED);
               SELECT tenancy.enable('esg.rs_notes');
               GRANT ALL ON esg.rs_notes TO tenancy_member;"#,
        )
        .await
        .unwrap();
    let p = db.proxy(db.config()).await;
    let outcome = guarded(async {
        let client = |tenant: &str| Postgrest::new(&p.base).insert_header("Authorization", format!("Bearer {}", member(tenant)));
        let acme = client("acme");
        let globex = client("globex");

        // select + filters + order, against the same query in SQL
        let (s, _, v) = call(acme.from("metrics").select("code,name").order("code.asc")).await;
        let want = as_member(&db, "acme", "SELECT code, name FROM esg.metrics ORDER BY code").await;
        assert_eq!((s, &v), (200, &want));
        assert!(want.as_array().is_some_and(|a| a.len() > 1), "{want}");
        let first = want[0]["code"].as_str().unwrap().to_string();
        let (s, _, v) = call(acme.from("metrics").select("code").eq("code", &first)).await;
        assert_eq!((s, v), (200, json!([{ "code": first }])));
        let (_, _, v) = call(acme.from("metrics").select("code").neq("code", &first).order("code")).await;
        let want = as_member(&db, "acme", &format!("SELECT code FROM esg.metrics WHERE code <> '{first}' ORDER BY code")).await;
        assert_eq!(v, want);
        let (_, _, v) = call(
            acme.from("data_points")
                .select("id")
                .gt("value", "100")
                .lte("value", "5000")
                .or("period.lt.2024-04-01,period.gte.2024-10-01")
                .order("id"),
        )
        .await;
        let want = as_member(
            &db,
            "acme",
            "SELECT id FROM esg.data_points WHERE value > 100 AND value <= 5000
               AND (period < '2024-04-01' OR period >= '2024-10-01') ORDER BY id",
        )
        .await;
        assert_eq!(v, want);
        let (_, _, v) = call(acme.from("metrics").select("code").ilike("name", "%E%").not("in", "code", format!("({first})")).order("code")).await;
        let want = as_member(&db, "acme", &format!("SELECT code FROM esg.metrics WHERE name ILIKE '%E%' AND code NOT IN ('{first}') ORDER BY code")).await;
        assert_eq!(v, want);
        let (_, _, v) = call(acme.from("metrics").select("code").in_("code", [first.as_str(), "nope"])).await;
        assert_eq!(v, json!([{ "code": first }]));

        // embed, limit (a Range header), exact count (Content-Range)
        let (s, range, v) = call(
            acme.from("data_points")
                .select("id,value,metrics(code)")
                .order("id")
                .range(0, 2)
                .exact_count(),
        )
        .await;
        let want = as_member(
            &db,
            "acme",
            "SELECT d.id, d.value, json_build_object('code', m.code) AS metrics
               FROM esg.data_points d JOIN esg.metrics m ON m.tenant_id = d.tenant_id AND m.id = d.metric_id
              ORDER BY d.id LIMIT 1",
        )
        .await;
        let total = as_member(&db, "acme", "SELECT count(*) AS n FROM esg.data_points").await[0]["n"].clone();
        // (exact_count asks for the first row only: Range 0-0)
        assert_eq!((s, &v), (206, &want), "{range:?}");
        assert_eq!(range, Some(format!("0-0/{total}")));
        let (s, range, v) = call(acme.from("data_points").select("id").order("id").limit(3)).await;
        assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(3)), "{v}");
        assert_eq!(range.as_deref(), Some("0-2/*"));

        // single(): an object for one row, 406 PGRST116 for several
        let (s, _, v) = call(acme.from("metrics").select("code").eq("code", &first).single()).await;
        assert_eq!((s, v), (200, json!({ "code": first })));
        let (s, _, v) = call(acme.from("metrics").select("code").single()).await;
        assert_eq!((s, v["code"].as_str()), (406, Some("PGRST116")), "{v}");

        // writes with returning; the other tenant never sees them
        let (s, _, v) = call(acme.from("rs_notes").insert(
            r#"[{"id": 1, "title": "one", "tags": ["a", "b"], "span": "[1,10)", "body": "quick brown fox"},
                {"id": 2, "title": "two", "tags": ["b"], "span": "[20,30)", "body": "lazy dog"}]"#,
        ))
        .await;
        assert_eq!((s, v.as_array().map(Vec::len)), (201, Some(2)), "{v}");
        let (s, _, v) = call(acme.from("rs_notes").upsert(r#"{"id": 2, "title": "two!"}"#).on_conflict("id")).await;
        // (every row updated: 200, as PostgREST's UpsertSpec)
        assert_eq!((s, &v[0]["title"]), (200, &json!("two!")), "{v}");
        assert_eq!(v[0]["tags"], json!(["b"]), "merge keeps the columns not sent: {v}");
        let (s, _, v) = call(acme.from("rs_notes").eq("id", "1").update(r#"{"title": "uno"}"#)).await;
        assert_eq!((s, &v[0]["title"]), (200, &json!("uno")), "{v}");
        let (s, _, v) = call(globex.from("rs_notes").select("id")).await;
        assert_eq!((s, v), (200, json!([])));
        let (s, _, v) = call(globex.from("rs_notes").eq("id", "1").delete()).await;
        assert_eq!((s, v), (200, json!([])), "globex deletes nothing of acme's");
        let (s, _, v) = call(globex.from("rs_notes").eq("id", "1").update(r#"{"title": "stolen"}"#)).await;
        assert_eq!((s, v), (200, json!([])), "globex updates nothing of acme's");

        // array, range and full-text operators
        let ids = |v: &Value| -> Vec<i64> { v.as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect() };
        let q = || acme.from("rs_notes").select("id").order("id");
        assert_eq!(ids(&call(q().cs("tags", "{b}")).await.2), [1, 2]);
        assert_eq!(ids(&call(q().cd("tags", "{a,b,c}")).await.2), [1, 2]);
        assert_eq!(ids(&call(q().ov("tags", "{a,z}")).await.2), [1]);
        assert_eq!(ids(&call(q().sl("span", (15, 40))).await.2), [1]);
        assert_eq!(ids(&call(q().sr("span", (11, 15))).await.2), [2]);
        assert_eq!(ids(&call(q().nxl("span", (15, 40))).await.2), [2]);
        assert_eq!(ids(&call(q().nxr("span", (0, 12))).await.2), [1]);
        // (the client sends exclusive bounds: `adj.(9,20)` is [10,20))
        assert_eq!(ids(&call(q().adj("span", (9, 20))).await.2), [1, 2]);
        assert_eq!(ids(&call(q().adj("span", (10, 20))).await.2), [2]);
        assert_eq!(ids(&call(q().fts("fts", "fox", None)).await.2), [1]);
        assert_eq!(ids(&call(q().plfts("fts", "lazy dogs", Some("english"))).await.2), [2]);
        assert_eq!(ids(&call(q().phfts("fts", "brown fox", Some("english"))).await.2), [1]);
        assert_eq!(ids(&call(q().phfts("fts", "fox brown", Some("english"))).await.2), Vec::<i64>::new());
        assert_eq!(ids(&call(q().wfts("fts", "fox or dog", None)).await.2), [1, 2]);
        assert_eq!(ids(&call(q().is("span", "null")).await.2), Vec::<i64>::new());

        let (s, _, v) = call(acme.from("rs_notes").eq("id", "2").delete()).await;
        assert_eq!((s, &v[0]["id"]), (200, &json!(2)), "{v}");

        // rpc, and schema() switching (Content-Profile on POST)
        let (s, _, v) = call(acme.rpc("add", r#"{"a": 1, "b": 5}"#)).await;
        assert_eq!((s, v), (200, json!(6)));
        let tenancy = Postgrest::new(&p.base)
            .schema("tenancy")
            .insert_header("Authorization", format!("Bearer {}", member("acme")));
        let (s, _, v) = call(tenancy.rpc("current_tenant", "{}")).await;
        let want = as_member(&db, "acme", "SELECT tenancy.current_tenant()::text AS t").await[0]["t"].clone();
        assert_eq!((s, v), (200, want));
        let (s, _, v) = call(acme.from("metrics").select("code").eq("code", &first)).await;
        assert_eq!(s, 200, "{v}");

        // errors, as PostgREST reports them
        let (s, _, v) = call(acme.from("no_such_table").select("*")).await;
        assert_eq!((s, v["code"].as_str()), (404, Some("PGRST205")), "{v}");
        let (s, _, v) = call(Postgrest::new(&p.base).schema("private").from("metrics").select("*")).await;
        assert_eq!((s, v["code"].as_str()), (406, Some("PGRST106")), "{v}");
        let (s, _, v) = call(acme.rpc("no_such_function", "{}")).await;
        assert_eq!((s, v["code"].as_str()), (404, Some("PGRST202")), "{v}");
        let forged = Postgrest::new(&p.base).insert_header("Authorization", format!("Bearer {}x", member("acme")));
        let (s, _, v) = call(forged.from("metrics").select("code")).await;
        assert_eq!((s, v["code"].as_str()), (401, Some("PGRST301")), "{v}");
        // anonymous: no grant on the managed table, 401 as PostgREST answers
        // a permission error of the anonymous role
        let (s, _, v) = call(Postgrest::new(&p.base).from("metrics").select("code")).await;
        assert_eq!((s, v["code"].as_str()), (401, Some("42501")), "{v}");
    })
    .await;
    finish(outcome, &db, vec![p]).await;
}
