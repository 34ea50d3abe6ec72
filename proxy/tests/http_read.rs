//! Reads through HTTP: select, filters, embedding, ranges, media types,
//! error codes, and a hostile query-string fuzz.

mod common;
use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_filters_embeds_errors() {
    let db = TestDb::create("read").await;
    let p = db.proxy(db.config()).await;
    let result = async {
        health(&p).await;
        basics(&p).await;
        filters(&p).await;
        embeds(&p).await;
        ranges_and_media(&p).await;
        errors(&p).await;
        raw_request_targets(&db, &p).await;
        schema_reload(&db, &p).await;
        statement_cache(&db, &p).await;
        fuzz(&p).await;
    };
    let outcome = guarded(result).await;
    p.stop().await;
    db.drop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

/// `/health`, `/ready` and `/metrics` answer as the operational endpoints
/// unless the request's schema has a table of that name: the default
/// schema, or the one `Accept-Profile` names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_aliases_yield_to_tables() {
    let db = TestDb::create("opsalias").await;
    let mut c = db.config();
    // `tenancy` first: it has no table named metrics, esg has
    c.db_schemas = "tenancy,esg".into();
    let p = db.proxy(c).await;
    let result = async {
        let acme = member("acme");
        let ctype =
            |r: &reqwest::Response| r.headers()["content-type"].to_str().unwrap().to_string();
        let r = p.get("/health").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let (s, v) = json_of(p.get("/ready").send().await.unwrap()).await;
        assert_eq!(s, 200, "{v}");
        let r = p.get("/metrics").send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(ctype(&r).starts_with("text/plain"), "{}", ctype(&r));
        // the table, when the request's schema has it
        let r = p
            .get("/metrics?select=code&order=code&limit=1")
            .bearer_auth(&acme)
            .header("Accept-Profile", "esg")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(ctype(&r).starts_with("application/json"), "{}", ctype(&r));
        let v: Value = r.json().await.unwrap();
        assert!(v[0]["code"].is_string(), "{v}");
        // a schema that is not exposed: PostgREST's 406, not the metrics page
        let (s, v) = json_of(
            p.get("/metrics")
                .header("Accept-Profile", "pg_catalog")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v["code"].as_str()), (406, Some("PGRST106")), "{v}");
    };
    finish(guarded(result).await, &db, vec![p]).await;
}

async fn health(p: &Proxy) {
    assert_eq!(
        p.get("/_tenancy/health").send().await.unwrap().status(),
        200
    );
    let (s, v) = json_of(p.get("/_tenancy/ready").send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    // the OpenAPI document follows privileges: a member sees the tables it may read
    let (s, v) = json_of(p.get("/").bearer_auth(member("acme")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(v["swagger"], "2.0");
    assert!(v["paths"]["/metrics"].is_object(), "{v}");
}

async fn basics(p: &Proxy) {
    let acme = member("acme");
    let (s, v) = json_of(
        p.get("/metrics?select=code,name&order=code")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let codes: Vec<&str> = v
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["energy", "scope1", "scope2", "waste", "water"]);
    assert_eq!(v[0].as_object().unwrap().len(), 2);
    // alias, cast
    let (s, v) = json_of(
        p.get("/metrics?select=c:code,id::text&code=eq.scope1")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["c"], "scope1");
    assert!(v[0]["id"].is_string());
    // reference table readable by anon
    let (s, v) = json_of(p.get("/units?order=code").send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 5);
    // aggregates
    let (s, v) = json_of(
        p.get(
            "/data_points?select=metric_id,value.sum(),count()&order=metric_id&metric_id=lt.100000",
        )
        .bearer_auth(member("globex"))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 5);
    assert_eq!(v[0]["count"], 48);
    // grouped by a to-one spread's column, with an aggregate inside the spread
    let (s, v) = json_of(
        p.get("/data_points?select=...metrics(code,metric:id.max()),n:count()")
            .bearer_auth(member("globex"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let mut rows: Vec<(String, i64)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["metric"].is_i64(), "{r}");
            (
                r["code"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    let codes: Vec<&str> = rows.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(codes, ["energy", "scope1", "scope2", "waste", "water"]);
    assert!(rows.iter().all(|(_, n)| *n == 48), "{rows:?}");
    // PostgREST's embedded count: `rel(count)`
    let (s, v) = json_of(
        p.get("/metrics?select=code,data_points(count)&code=eq.scope1")
            .bearer_auth(member("globex"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v),
        (
            200,
            serde_json::json!([{"code": "scope1", "data_points": [{"count": 48}]}])
        )
    );
}

async fn count_of(p: &Proxy, query: &str) -> usize {
    let (s, v) = json_of(
        p.get(&format!("/metrics?{query}"))
            .bearer_auth(member("acme"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{query}: {v}");
    v.as_array().unwrap().len()
}

async fn filters(p: &Proxy) {
    let cases: &[(&str, usize)] = &[
        ("code=eq.scope1", 1),
        ("code=neq.scope1", 4),
        ("code=gt.scope1", 3),
        ("code=gte.scope1", 4),
        ("code=lt.scope1", 1),
        ("code=lte.scope1", 2),
        ("code=like.scope*", 2),
        ("code=ilike.SCOPE*", 2),
        ("code=match.^sc", 2),
        ("code=imatch.^SC", 2),
        ("code=in.(scope1,water,nope)", 2),
        ("code=in.()", 0),
        ("code=not.in.(scope1,scope2)", 3),
        ("code=is.null", 0),
        ("code=not.is.null", 5),
        ("code=isdistinct.scope1", 4),
        ("name=fts.emissions", 2),
        ("name=plfts(english).scope emissions", 2),
        ("name=phfts.scope 1 emissions", 1),
        ("name=wfts.emissions -\"scope 2\"", 1),
        ("code=like(any).{scope*,wat*}", 3),
        ("code=like(all).{s*,*1}", 1),
        ("code=eq(any).{energy,waste}", 2),
        ("or=(code.eq.scope1,code.eq.water)", 2),
        (
            "or=(code.eq.scope1,and(code.like.w*,name.ilike.*water*))",
            2,
        ),
        ("not.or=(code.eq.scope1,code.eq.water)", 3),
        ("and=(code.like.s*,or(name.ilike.*1*,name.ilike.*2*))", 2),
        ("unit=eq.tCO2e&code=neq.scope2", 1),
        ("limit=2&order=code.desc", 2),
        ("limit=2&offset=4&order=code", 1),
    ];
    for (q, n) in cases {
        assert_eq!(count_of(p, q).await, *n, "{q}");
    }
    // array / range operators on literals the server types
    let (s, v) = json_of(
        p.post("/rpc/add")
            .json(&serde_json::json!({"a": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, Value::from(3)));
}

async fn embeds(p: &Proxy) {
    let acme = member("acme-europe");
    // many-to-one, nested one-to-many, aliases, embed filters/order/limit
    let (s, v) = json_of(
        p.get("/reporting_entities?select=name,org:organisations(name,country),data_points(value,period,metrics(code))&data_points.order=period.desc&data_points.limit=2&order=name&limit=2")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(v[0]["org"]["name"].is_string(), "{v}");
    assert_eq!(v[0]["data_points"].as_array().unwrap().len(), 2);
    assert_eq!(v[0]["data_points"][0]["period"], "2025-12-01");
    assert!(v[0]["data_points"][0]["metrics"]["code"].is_string());
    // embed filter + !inner filters the parent
    let (_, all) = json_of(
        p.get("/reporting_entities?select=name,organisations(country)")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (s, de) = json_of(
        p.get("/reporting_entities?select=name,organisations!inner(country)&organisations.country=eq.DE")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{de}");
    assert!(de.as_array().unwrap().len() < all.as_array().unwrap().len());
    assert!(de
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["organisations"]["country"] == "DE"));
    // spread
    let (s, v) = json_of(
        p.get("/reporting_entities?select=name,...organisations(org_name:name)&limit=1")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v[0]["org_name"].is_string(), "{v}");
    // self reference: the table's name alone is the children
    let (s, v) = json_of(
        p.get("/organisations?select=name,organisations(name)")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    // PostgREST's self-reference convention: the table's name is the
    // children, the key column the parent, a hint the children's column
    assert_eq!(s, 200, "{v}");
    assert!(v[0]["organisations"].is_array(), "{v}");
    for select in [
        "name,parent:parent_org_id(name),children:organisations!parent_org_id(name)",
        "name,parent:parent_org_id(name),children:organisations!organisations_tenant_id_parent_org_id_fkey(name)",
        "name,parent:parent_org_id(name),children:organisations(name)",
    ] {
        let (s, v) = json_of(
            p.get(&format!("/organisations?select={select}&order=id"))
                .bearer_auth(&acme)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{select}: {v}");
        assert!(v[0]["parent"].is_null(), "{v}");
        assert_eq!(v[1]["parent"]["name"], v[0]["name"], "{v}");
        assert_eq!(v[0]["children"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v[0]["children"][0]["name"], v[1]["name"], "{v}");
    }
    // to-one related order
    let (s, v) = json_of(
        p.get("/data_points?select=value,metrics(code)&order=metrics(code).desc,period&limit=1")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["metrics"]["code"], "water");
    // no relationship
    let (s, v) = json_of(
        p.get("/units?select=code,organisations(name)")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("PGRST200")), "{v}");
}

async fn ranges_and_media(p: &Proxy) {
    let t = member("globex");
    let r = p
        .get("/metrics?order=code")
        .bearer_auth(&t)
        .header("Range", "1-2")
        .header("Prefer", "count=exact")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "1-2/5");
    // PostgREST reads Range on GET only: a HEAD (table or function) is unranged
    for path in ["/metrics?order=code", "/rpc/entities_of?k=office"] {
        let r = p
            .head(path)
            .bearer_auth(&t)
            .header("Range", "1-1")
            .header("Prefer", "count=exact")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let cr = r.headers()["content-range"].to_str().unwrap().to_string();
        assert!(cr.starts_with("0-"), "{path}: {cr}");
    }
    let r = p
        .get("/metrics?limit=2")
        .bearer_auth(&t)
        .header("Prefer", "count=exact")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-range"], "0-1/5");
    let r = p.get("/metrics").bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-range"], "0-4/*");
    let (s, v) = json_of(
        p.get("/metrics?offset=10")
            .bearer_auth(&t)
            .header("Prefer", "count=exact")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (416, Some("PGRST103")), "{v}");
    // single object
    let r = p
        .get("/metrics?code=eq.scope1&select=code")
        .bearer_auth(&t)
        .header("Accept", "application/vnd.pgrst.object+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/vnd.pgrst.object+json"));
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"code": "scope1"})
    );
    let (s, v) = json_of(
        p.get("/metrics")
            .bearer_auth(&t)
            .header("Accept", "application/vnd.pgrst.object+json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (406, Some("PGRST116")), "{v}");
    // csv
    let r = p
        .get("/units?select=code,name&order=name&limit=2")
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "code,name\nm3,\"cubic metres\"\nMWh,\"megawatt hours\""
    );
    // csv keeps the select order
    let r = p
        .get("/units?select=name,code&code=eq.t")
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "name,code\ntonnes,t");
    // no rows: PostgREST's document is a single line break (its header comes
    // from the first row)
    let r = p
        .get("/units?select=name,code&code=eq.nope")
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "\n");
    let (s, v) = json_of(
        p.get("/units")
            .header("Accept", "image/png")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (406, Some("PGRST107")));
    // schema switching
    let (s, v) = json_of(
        p.get("/units")
            .header("Accept-Profile", "nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (406, Some("PGRST106")));
    let (s, _) = json_of(
        p.get("/tenants")
            .bearer_auth(&t)
            .header("Accept-Profile", "tenancy")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    // the extension's functions are reachable, its internal helpers are not
    for (path, want) in [
        ("/rpc/current_tenant", 200),
        ("/rpc/_is_uuid?t=acme", 404),
        (
            "/rpc/_check_set_tenant?tenant=acme&session_oid=0&current_oid=0",
            404,
        ),
    ] {
        let (s, v) = json_of(
            p.get(path)
                .bearer_auth(&t)
                .header("Accept-Profile", "tenancy")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, want, "{path}: {v}");
    }
    // HEAD
    let r = p.head_like("/units").await;
    assert_eq!(r, 200);
}

trait HeadLike {
    async fn head_like(&self, path: &str) -> u16;
}

impl HeadLike for Proxy {
    async fn head_like(&self, path: &str) -> u16 {
        let r = self
            .http
            .head(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    }
}

async fn errors(p: &Proxy) {
    let t = member("acme");
    let cases: &[(&str, u16, &str)] = &[
        ("/metrics?select=id,,code", 400, "PGRST100"),
        ("/metrics?code=xx.1", 400, "PGRST100"),
        ("/metrics?limit=abc", 400, "PGRST100"),
        ("/metrics?or=(code.eq.1", 400, "PGRST100"),
        ("/metrics?nope=eq.1", 400, "42703"),
        ("/nope", 404, "PGRST205"),
        ("/metrics?select=code&units.code=eq.x", 400, "PGRST108"),
        ("/metrics?id=eq.notanumber", 400, "22P02"),
        ("/rpc/nope", 404, "PGRST202"),
        // a NUL in a name, a JSON path too deep: parse errors, not 5xx
        ("/metrics?select=%00:code", 400, "PGRST100"),
        ("/metrics?select=code&order=co%00de", 400, "PGRST100"),
        // an encoded slash stays in its segment: a table name, not /rpc/
        ("/rpc%2Fentities_of?k=office", 404, "PGRST205"),
        // one name embedded twice: PostgREST's statement fails with 42712
        (
            "/metrics?select=code,data_points(id),data_points(value)",
            400,
            "42712",
        ),
    ];
    for (path, status, code) in cases {
        let (s, v) = json_of(p.get(path).bearer_auth(&t).send().await.unwrap()).await;
        assert_eq!(
            (s, v["code"].as_str().unwrap_or("")),
            (*status, *code),
            "{path}: {v}"
        );
        assert!(
            v.get("message").is_some() && v.get("details").is_some() && v.get("hint").is_some()
        );
    }
    let (s, v) = json_of(p.get("/metrics?select=id,,code").send().await.unwrap()).await;
    assert!(
        v["message"].as_str().unwrap().contains("column 4"),
        "{s} {v}"
    );
}

/// Raw HTTP/1.1 on one connection: `requests` written at once (pipelined),
/// the whole answer read back.
async fn raw_exchange(p: &Proxy, requests: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = p.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(requests).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// curl sends `"`, `<`, `>` in a URL as they are (PostgREST's docs write
/// `select=j->>k` and `in.("a","b")`); the proxy takes them as PostgREST does,
/// and bodies on the same connection are left alone.
async fn raw_request_targets(db: &TestDb, p: &Proxy) {
    db.admin()
        .await
        .batch_execute(
            "CREATE FUNCTION esg.echo_code(code text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT code';
             GRANT EXECUTE ON FUNCTION esg.echo_code(text) TO PUBLIC;
             NOTIFY pgrst, 'reload schema';",
        )
        .await
        .unwrap();
    assert!(
        answers_200(p, "/rpc/echo_code?code=a", None).await,
        "schema reload"
    );
    let body = r#"{"code":"<a> \"b\""}"#;
    let reqs = format!(
        "GET /units?select=code&code=in.(\"t\",\"kg\")&order=code HTTP/1.1\r\nHost: x\r\n\r\n\
         POST /rpc/echo_code HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}\
         GET /units?select=c:code&code=gt.<m>&limit=1&order=code HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let out = raw_exchange(p, reqs.as_bytes()).await;
    let statuses: Vec<&str> = out
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &out[i..i + 12])
        .collect();
    assert_eq!(
        statuses,
        ["HTTP/1.1 200", "HTTP/1.1 200", "HTTP/1.1 200"],
        "{out}"
    );
    assert!(out.contains(r#"[{"code":"t"}]"#), "{out}");
    // the body reached the function byte for byte
    assert!(out.contains(r#""<a> \"b\"""#), "{out}");
    assert!(out.contains(r#"[{"c":"MWh"}]"#), "{out}");
}

async fn schema_reload(db: &TestDb, p: &Proxy) {
    let admin = db.admin().await;
    admin
        .batch_execute("CREATE TABLE esg.late (id int primary key); GRANT SELECT ON esg.late TO tenancy_member; INSERT INTO esg.late VALUES (1)")
        .await
        .unwrap();
    let (s, _) = json_of(
        p.get("/late")
            .bearer_auth(member("acme"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    admin
        .batch_execute("NOTIFY pgrst, 'reload schema'")
        .await
        .unwrap();
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (s, _) = json_of(
            p.get("/late")
                .bearer_auth(member("acme"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        if s == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "schema cache did not reload on NOTIFY");
}

/// A counter's value from `/_tenancy/metrics` (0 when not yet exported).
async fn counter(p: &Proxy, name: &str) -> u64 {
    let text = p.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Built read statements are reused (crate::statements) only where they are
/// the same statement: not across a schema reload, not across `Range`
/// headers; and a reused statement still runs as the caller's tenant.
async fn statement_cache(db: &TestDb, p: &Proxy) {
    const HITS: &str = "tenancy_proxy_statement_cache_hits_total";
    const MISSES: &str = "tenancy_proxy_statement_cache_misses_total";
    let acme = member("acme");
    let get = |path: &'static str, tok: &str| p.get(path).bearer_auth(tok.to_string());
    let (h0, m0) = (counter(p, HITS).await, counter(p, MISSES).await);
    for _ in 0..3 {
        let (s, v) = json_of(get("/late?select=id&id=eq.1", &acme).send().await.unwrap()).await;
        assert_eq!((s, v), (200, serde_json::json!([{"id": 1}])));
    }
    assert_eq!(counter(p, MISSES).await - m0, 1, "built once");
    assert_eq!(counter(p, HITS).await - h0, 2, "reused twice");

    // the same URL, two tenants: each sees only its own rows
    let url = "/data_points?select=id,tenant_id&order=id&limit=50";
    let mut seen = Vec::new();
    for t in ["acme", "globex"] {
        let (s, v) = json_of(get(url, &member(t)).send().await.unwrap()).await;
        assert_eq!(s, 200, "{v}");
        let rows = v.as_array().unwrap().clone();
        assert!(!rows.is_empty(), "{t}: no rows");
        let tenants: std::collections::HashSet<String> = rows
            .iter()
            .map(|r| r["tenant_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(tenants.len(), 1, "{t}: rows of several tenants {tenants:?}");
        let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        seen.push((tenants.into_iter().next().unwrap(), ids));
    }
    assert_ne!(seen[0].0, seen[1].0);
    assert!(seen[0].1.iter().all(|id| !seen[1].1.contains(id)));

    // the same query string, different Range headers: different pages
    let page = |range: &'static str| {
        get("/data_points?select=id&order=id", &acme)
            .header("Range", range)
            .send()
    };
    let a = page("0-1").await.unwrap();
    assert_eq!(a.headers()["content-range"], "0-1/*");
    let (_, a) = json_of(a).await;
    let b = page("2-3").await.unwrap();
    assert_eq!(b.headers()["content-range"], "2-3/*");
    let (_, b) = json_of(b).await;
    assert_eq!(a.as_array().unwrap().len(), 2);
    assert_eq!(b.as_array().unwrap().len(), 2);
    assert!(a[1]["id"].as_i64() < b[0]["id"].as_i64(), "{a} {b}");

    // a reload: the embed's foreign key moves to another column; the
    // statement built for the old one (still valid SQL, other rows) is not
    // reused
    let admin = db.admin().await;
    admin
        .batch_execute(
            "CREATE TABLE esg.cache_u (id int PRIMARY KEY, name text);
             CREATE TABLE esg.cache_t (id int PRIMARY KEY, a int REFERENCES esg.cache_u, b int);
             INSERT INTO esg.cache_u VALUES (1, 'one'), (2, 'two');
             INSERT INTO esg.cache_t VALUES (1, 1, 2);
             GRANT SELECT ON esg.cache_u, esg.cache_t TO tenancy_member;
             NOTIFY pgrst, 'reload schema'",
        )
        .await
        .unwrap();
    let embed = "/cache_t?select=id,cache_u(name)";
    let name_of = |v: &Value| v[0]["cache_u"]["name"].as_str().map(str::to_string);
    let mut first = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (s, v) = json_of(get(embed, &acme).send().await.unwrap()).await;
        if s == 200 {
            first = name_of(&v);
            break;
        }
    }
    assert_eq!(first.as_deref(), Some("one"), "through cache_t.a");
    // cached now
    let (_, v) = json_of(get(embed, &acme).send().await.unwrap()).await;
    assert_eq!(name_of(&v).as_deref(), Some("one"));
    admin
        .batch_execute(
            "ALTER TABLE esg.cache_t DROP CONSTRAINT cache_t_a_fkey,
                 ADD FOREIGN KEY (b) REFERENCES esg.cache_u;
             NOTIFY pgrst, 'reload schema'",
        )
        .await
        .unwrap();
    let mut now = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (s, v) = json_of(get(embed, &acme).send().await.unwrap()).await;
        assert_eq!(s, 200, "{v}");
        now = name_of(&v);
        if now.as_deref() == Some("two") {
            break;
        }
    }
    assert_eq!(
        now.as_deref(),
        Some("two"),
        "the statement built before the reload is still used"
    );
}

/// Random and hostile query strings and headers: never a 5xx, never a hang,
/// and the pool still answers correctly afterwards.
async fn fuzz(p: &Proxy) {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let pieces = [
        "select",
        "order",
        "limit",
        "offset",
        "or",
        "and",
        "not.or",
        "code",
        "name",
        "id",
        "organisations",
        "x->>y",
        "data_points.limit",
    ];
    let key = proptest::sample::select(pieces.to_vec());
    let val =
        proptest::string::string_regex("[a-z0-9_.,:()!*>\\-\"'{}\\[\\];% \\\\]{0,24}").unwrap();
    let t = member("acme");
    let client = p.http.clone();
    for i in 0..300 {
        let k = key.new_tree(&mut runner).unwrap().current();
        let v = val.new_tree(&mut runner).unwrap().current();
        let q: String = form_urlencoded_pair(k, &v);
        let path = if i % 3 == 0 {
            "/reporting_entities"
        } else {
            "/metrics"
        };
        let mut req = client
            .get(format!("{}{}?{}", p.base, path, q))
            .timeout(std::time::Duration::from_secs(10));
        if i % 2 == 0 {
            req = req.bearer_auth(&t);
        }
        if i % 5 == 0 {
            req = req.header("Range", v.clone()).header("Prefer", v.clone());
        }
        if i % 7 == 0 {
            req = req.header("Authorization", format!("Bearer {v}"));
        }
        let r = req.send().await.expect("no hang");
        assert!(
            r.status().as_u16() < 500,
            "{path}?{q} gave {} {:?}",
            r.status(),
            r.text().await
        );
    }
    // Every pooled connection still works and is clean.
    for _ in 0..8 {
        let (s, v) = json_of(
            p.get("/metrics?select=code")
                .bearer_auth(member("acme"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v.as_array().map(|a| a.len())), (200, Some(5)));
    }
}

fn form_urlencoded_pair(k: &str, v: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    format!("{}={}", enc(k), enc(v))
}
