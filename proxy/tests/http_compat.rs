//! PostgREST deployment compatibility: CORS for browsers, OPTIONS, body
//! limits, singular bodies kept byte for byte, the Authorization scheme.

mod common;
use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_compat() {
    let db = TestDb::create("compat").await;
    db.admin()
        .await
        .batch_execute(&format!(
            "CREATE TABLE esg.precise (id int PRIMARY KEY, v numeric, z text, a int);
             INSERT INTO esg.precise VALUES (1, 12345678901234567890.123456789, 'x', 2);
             GRANT SELECT, INSERT ON esg.precise TO {anon};
             CREATE VIEW esg.precise_v AS SELECT v, z FROM esg.precise;
             GRANT SELECT ON esg.precise_v TO {anon};
             CREATE VIEW esg.precise_ro AS SELECT DISTINCT z FROM esg.precise;
             CREATE VIEW esg.precise_trg AS SELECT DISTINCT z FROM esg.precise;
             CREATE FUNCTION esg.precise_trg_ins() RETURNS trigger LANGUAGE plpgsql
                 AS $$ BEGIN RETURN NEW; END $$;
             CREATE TRIGGER ins INSTEAD OF INSERT ON esg.precise_trg
                 FOR EACH ROW EXECUTE FUNCTION esg.precise_trg_ins();
             CREATE MATERIALIZED VIEW esg.precise_mv AS SELECT * FROM esg.precise;
             GRANT SELECT ON esg.precise_ro, esg.precise_trg, esg.precise_mv TO {anon};
             CREATE FUNCTION esg.cookies() RETURNS json LANGUAGE sql STABLE
                 AS $$ SELECT current_setting('request.cookies', true)::json $$;
             GRANT EXECUTE ON FUNCTION esg.cookies() TO {anon};",
            anon = db.anon_role
        ))
        .await
        .unwrap();
    let mut c = db.config();
    c.max_body_bytes = 1024;
    let p = db.proxy(c).await;
    let outcome = guarded(async {
        cors(&p).await;
        options(&p).await;
        body_limit(&p).await;
        insert_as_sent(&p).await;
        singular_bytes(&p).await;
        bearer_scheme(&p).await;
        rpc_paths(&p).await;
        empty_embeds(&p).await;
        cookies(&p).await;
        rpc_range(&p).await;
        one_bucket_per_tenant(&db).await;
    })
    .await;
    p.stop().await;
    db.drop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

async fn cors(p: &Proxy) {
    // a browser's preflight for a PATCH with a JSON body and a token
    let r = p
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/metrics", p.base))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "PATCH")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type, prefer",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    let methods = header(&r, "access-control-allow-methods").unwrap();
    assert!(
        methods.contains("PATCH") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed = header(&r, "access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("prefer"),
        "{allowed}"
    );
    assert_eq!(
        header(&r, "access-control-max-age").as_deref(),
        Some("86400")
    );
    // spelt exactly as PostgREST (wai-cors) spells them (its CorsSpec)
    assert_eq!(
        methods, "GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD",
        "methods"
    );
    assert_eq!(
        header(&r, "access-control-allow-headers").as_deref(),
        Some("Authorization, content-type, prefer, Accept, Accept-Language, Content-Language")
    );
    let r = p
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/", p.base))
        .header("Origin", "http://example.com")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "Foo,Bar")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "access-control-allow-headers").as_deref(),
        Some("Authorization, Foo, Bar, Accept, Accept-Language, Content-Language")
    );
    // the actual request exposes Content-Range to the page's script
    let r = p
        .get("/units?limit=1")
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    let exposed = header(&r, "access-control-expose-headers").unwrap();
    assert_eq!(
        exposed,
        "Content-Encoding, Content-Location, Content-Range, Content-Type, Date, Location, \
         Server, Transfer-Encoding, Range-Unit"
    );
    // without an Origin (not a browser) no CORS headers, as PostgREST; the
    // response still varies by Origin for caches
    let r = p.get("/units?limit=1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    // (besides `Vary: Accept, Prefer, Range`, see http_spec::vary)
    let vary: Vec<&str> = r
        .headers()
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        vary.iter().any(|v| v.to_lowercase().contains("origin")),
        "{:?}",
        r.headers()
    );
    // CORS covers the operational endpoints too
    let r = p
        .get("/_tenancy/health")
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("*")
    );
}

async fn options(p: &Proxy) {
    let opt = |path: &str| {
        p.http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", p.base))
            .send()
    };
    let r = opt("/precise").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "allow").as_deref(),
        Some("OPTIONS,GET,HEAD,POST,PUT,PATCH,DELETE")
    );
    // a view without its base table's primary key: no PUT
    let r = opt("/precise_v").await.unwrap();
    assert_eq!(
        header(&r, "allow").as_deref(),
        Some("OPTIONS,GET,HEAD,POST,PATCH,DELETE")
    );
    // what a view takes: nothing (not auto-updatable), or what its
    // INSTEAD OF triggers do; a materialized view is read-only
    for (path, allow) in [
        ("/precise_ro", "OPTIONS,GET,HEAD"),
        ("/precise_trg", "OPTIONS,GET,HEAD,POST"),
        ("/precise_mv", "OPTIONS,GET,HEAD"),
    ] {
        let r = opt(path).await.unwrap();
        assert_eq!(header(&r, "allow").as_deref(), Some(allow), "{path}");
    }
    let r = opt("/rpc/noop").await.unwrap();
    assert_eq!(header(&r, "allow").as_deref(), Some("OPTIONS,POST"));
    let r = opt("/rpc/add").await.unwrap();
    assert_eq!(
        header(&r, "allow").as_deref(),
        Some("OPTIONS,GET,HEAD,POST")
    );
    let r = opt("/").await.unwrap();
    assert_eq!(header(&r, "allow").as_deref(), Some("OPTIONS,GET,HEAD"));
    let (s, v) = json_of(opt("/nope").await.unwrap()).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("PGRST205")), "{v}");
    let (s, v) = json_of(opt("/rpc/nope").await.unwrap()).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("PGRST202")), "{v}");
}

async fn body_limit(p: &Proxy) {
    let big = format!("[{}]", vec!["{\"code\":\"x\"}"; 200].join(","));
    assert!(big.len() > 1024);
    let r = p
        .post("/metrics")
        .bearer_auth(member("acme"))
        .header("Content-Type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(header(&r, "content-type").unwrap().contains("json"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "TENANCY413", "{v}");
    assert!(v["hint"].as_str().unwrap().contains("1024"), "{v}");
    // the connection and the proxy are fine afterwards
    let r = p.get("/units?limit=1").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// An insert's JSON body reaches PostgreSQL as written, as under PostgREST:
/// digits beyond a double's range, and the last of a repeated key.
async fn insert_as_sent(p: &Proxy) {
    let r = p
        .post("/precise?select=id,v,z")
        .header("Content-Type", "application/json")
        .header("Prefer", "return=representation")
        .body(
            r#"[{"id": 7, "v": 1e400, "z": "first", "z": "last", "a": 1},
                  {"a": 2, "z": "\u00e9", "v": 0.1000000000000000000000000001, "id": 8}]"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let text = r.text().await.unwrap();
    let want_v = format!("1{}", "0".repeat(400));
    assert!(
        text.starts_with(&format!(r#"[{{"id":7,"v":{want_v},"z":"last"}}"#)),
        "{text}"
    );
    assert!(
        text.ends_with(r#"{"id":8,"v":0.1000000000000000000000000001,"z":"é"}]"#),
        "{text}"
    );
    // keys that differ between objects are refused before anything is written
    let r = p
        .post("/precise")
        .header("Content-Type", "application/json")
        .body(r#"[{"id": 9, "v": 1}, {"id": 10, "z": "x"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "All object keys must match", "{v}");
    let r = p.get("/precise?id=gte.9").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "[]");
}

async fn singular_bytes(p: &Proxy) {
    // vnd.pgrst.object+json returns the row as PostgreSQL wrote it: column
    // order kept, numerics not squeezed through a double
    let r = p
        .get("/precise?id=eq.1&select=z,v,id")
        .header("Accept", "application/vnd.pgrst.object+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert_eq!(
        body,
        r#"{"z":"x","v":12345678901234567890.123456789,"id":1}"#
    );
}

async fn bearer_scheme(p: &Proxy) {
    // the scheme is case-insensitive; a token is still verified
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = p
            .get("/metrics?select=code&limit=1")
            .header("Authorization", format!("{scheme} {}", member("acme")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let (s, v) = json_of(
        p.get("/metrics")
            .header("Authorization", format!("BEARER {}x", member("acme")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (401, Some("PGRST301")), "{v}");
    let (s, v) = json_of(
        p.get("/metrics")
            .header("Authorization", "Bearer")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, &v["code"], &v["message"]),
        (
            401,
            &json!("PGRST301"),
            &json!("Empty JWT is sent in Authorization header")
        ),
        "{v}"
    );
    // a valid token without a role runs as the anonymous role, and is as
    // anonymous: a permission error is 401 (with WWW-Authenticate), not 403
    let r = p
        .get("/metrics")
        .bearer_auth(jwt(json!({"tenant_id": "acme", "exp": now() + 600})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let (_, v) = json_of(r).await;
    assert_eq!(v["code"], "42501", "{v}");
    // with a role, a denial is 403 (esg.precise is the anonymous role's only)
    let (s, v) = json_of(
        p.get("/precise")
            .bearer_auth(member("acme"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, &v["code"]), (403, &json!("42501")), "{v}");
    // an `aud` that is not a string or strings
    let (s, v) = json_of(
        p.get("/metrics")
            .bearer_auth(jwt(json!({"role": "tenancy_member", "aud": {"x": 1}})))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, &v["message"]),
        (
            401,
            &json!("The JWT 'aud' claim must be a string or an array of strings")
        ),
        "{v}"
    );
}

async fn rpc_paths(p: &Proxy) {
    // errors name their code in Proxy-Status (PostgREST v13, RFC 9209)
    let r = p.get("/rpc/add/extra?a=1").send().await.unwrap();
    assert_eq!(r.headers()["proxy-status"], "PostgREST; error=PGRST125");
    let (s, v) = json_of(p.get("/rpc/add/extra?a=1").send().await.unwrap()).await;
    assert_eq!(
        (s, v),
        (
            404,
            json!({"code": "PGRST125", "message": "Invalid path specified in request URL",
                "details": null, "hint": null})
        )
    );
    let (s, v) = json_of(p.get("/rpc/add?a=1").send().await.unwrap()).await;
    assert_eq!((s, v), (200, serde_json::json!(3)));
}

/// A tenant named by uuid in one token and by slug in another has one
/// rate-limit bucket and one metrics label.
async fn one_bucket_per_tenant(db: &TestDb) {
    let id: String = db
        .admin()
        .await
        .query_one(
            "SELECT id::text FROM tenancy.tenants WHERE slug = 'initech'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut c = db.config();
    c.plan_rate_limits = "starter=3,pro=3,enterprise=3".into();
    c.default_rate_limit = 3;
    let p = db.proxy(c).await;
    let mut codes = Vec::new();
    for t in ["initech", id.as_str(), "initech", id.as_str(), "initech"] {
        let r = p
            .get("/metrics?select=code&limit=1")
            .bearer_auth(member(t))
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 2, "{codes:?}");
    // other spellings of the uuid, and claims naming no tenant
    for t in [
        id.to_uppercase(),
        id.replace('-', ""),
        "made-up-1".into(),
        "made-up-2".into(),
    ] {
        let r = p
            .get("/metrics?select=code&limit=1")
            .bearer_auth(member(&t))
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 500, "{t}");
    }
    let m = p.metrics_text().await;
    assert!(m.contains("tenant=\"initech\""), "{m}");
    assert!(!m.contains(&id), "metrics labelled by uuid: {m}");
    assert!(
        !m.contains(&id.replace('-', "")),
        "metrics labelled by uuid: {m}"
    );
    assert!(
        !m.contains("made-up"),
        "metrics labelled by made-up claims: {m}"
    );
    assert!(m.contains("tenant=\"unknown\""), "{m}");
    p.stop().await;
}

/// `rel()` selects nothing but still filters (`!inner`) — PostgREST's way to
/// filter on a relation without returning it.
async fn empty_embeds(p: &Proxy) {
    let acme = member("acme");
    let get = |q: &str| {
        let r = p.get(q).bearer_auth(&acme).send();
        async move { json_of(r.await.unwrap()).await }
    };
    let (s, full) = get("/organisations?select=name,reporting_entities!inner(kind)&reporting_entities.kind=eq.plant&order=name").await;
    assert_eq!(s, 200, "{full}");
    let want: Vec<Value> = full
        .as_array()
        .unwrap()
        .iter()
        .map(|o| serde_json::json!({"name": o["name"]}))
        .collect();
    assert!(!want.is_empty());
    let (s, v) = get("/organisations?select=name,reporting_entities!inner()&reporting_entities.kind=eq.plant&order=name").await;
    assert_eq!((s, v), (200, Value::Array(want)));
    // without !inner the filter only shapes the (empty) embed: every organisation
    let (s, v) =
        get("/organisations?select=name,reporting_entities()&reporting_entities.kind=eq.plant")
            .await;
    let (_, all) = get("/organisations?select=name").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v.as_array().map(Vec::len), all.as_array().map(Vec::len));
}

/// `request.cookies`, as PostgREST sets it, for functions that read a session cookie.
async fn cookies(p: &Proxy) {
    let (s, v) = json_of(
        p.get("/rpc/cookies")
            .header("Cookie", "session=abc; theme=\"dark\"")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v),
        (200, serde_json::json!({"session": "abc", "theme": "dark"}))
    );
    // and nothing carries over to the next request on the pooled connection
    for _ in 0..4 {
        let (s, v) = json_of(p.get("/rpc/cookies").send().await.unwrap()).await;
        assert_eq!((s, v), (200, serde_json::json!({})));
    }
}

/// A `Range` header pages a set-returning function read with GET, as a table.
async fn rpc_range(p: &Proxy) {
    let acme = member("acme");
    let (_, all) = json_of(p.get("/rpc/codes").bearer_auth(&acme).send().await.unwrap()).await;
    let all = all.as_array().unwrap().clone();
    assert!(all.len() >= 3, "{all:?}");
    let r = p
        .get("/rpc/codes")
        .bearer_auth(&acme)
        .header("Range", "1-2")
        .header("Prefer", "count=exact")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206, "{:?}", r.headers());
    assert_eq!(
        header(&r, "content-range"),
        Some(format!("1-2/{}", all.len()))
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, Value::Array(all[1..3].to_vec()));
    // limit/offset in the query string page a set of scalars as well
    let (s, v) = json_of(
        p.get("/rpc/codes?offset=1&limit=2")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, Value::Array(all[1..3].to_vec())));
    // a Range header and offset/limit intersect, as in PostgREST; no
    // overlap, or a lower bound above the upper one, is 416 PGRST103
    let ranged = |url: &str, range: &str| {
        p.get(url)
            .bearer_auth(&acme)
            .header("Range", range.to_string())
            .send()
    };
    let (s, v) = json_of(ranged("/rpc/codes?offset=1", "0-1").await.unwrap()).await;
    assert_eq!((s, v), (200, Value::Array(all[1..2].to_vec())));
    let (s, v) = json_of(
        ranged("/metrics?select=code&order=code&limit=3", "1-")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, every) = json_of(
        p.get("/metrics?select=code&order=code")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v, Value::Array(every.as_array().unwrap()[1..3].to_vec()));
    for (url, range) in [
        ("/metrics?offset=50", "0-1"),
        ("/metrics", "3-1"),
        ("/rpc/codes", "5-2"),
    ] {
        let r = ranged(url, range).await.unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (416, Some("PGRST103")),
            "{url} {range}: {v}"
        );
    }
    // a header that does not parse is ignored
    let (s, _) = json_of(ranged("/metrics?limit=1", "bytes=abc").await.unwrap()).await;
    assert_eq!(s, 200);
}

/// `PGRST_DB_URI` with libpq's TLS settings (proxy/src/pg.rs) against the
/// local cluster, which `scripts/cluster.sh` runs with a self-signed
/// certificate for localhost / 127.0.0.1 (copied to `.run/pg-ca.crt`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres() {
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/../.run/pg-ca.crt");
    assert!(
        std::path::Path::new(ca).exists(),
        "{ca} is missing: start the cluster with scripts/cluster.sh (it enables TLS)"
    );
    let db = TestDb::create("tls").await;
    let result = async {
        let admin = db.admin().await;
        let base = db.config().db_uri;
        // whether every backend of a proxy (by application_name) is on TLS,
        // and how many there are
        let ssl_of = |app: String| {
            let admin = &admin;
            async move {
                let row = admin
                    .query_one(
                        "SELECT coalesce(bool_and(s.ssl), false), count(*) FROM pg_stat_ssl s \
                         JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
                        &[&app],
                    )
                    .await
                    .unwrap();
                (row.get::<_, bool>(0), row.get::<_, i64>(1))
            }
        };
        let cases = [
            ("sslmode=require".to_string(), true),
            (format!("sslmode=verify-full&sslrootcert={ca}"), true),
            (format!("sslmode=verify-ca&sslrootcert={ca}"), true),
            // a root certificate turns require into verify-ca
            (format!("sslmode=require&sslrootcert={ca}"), true),
            ("sslmode=disable".to_string(), false),
            // libpq's default, prefer: TLS when the server offers it
            (String::new(), true),
        ];
        for (i, (query, tls)) in cases.into_iter().enumerate() {
            let app = format!("tls_case_{i}_{}", std::process::id());
            let mut c = db.config();
            c.db_uri = format!("{base}?application_name={app}&{query}");
            let p = db.proxy(c).await;
            let r = p
                .get("/data_points?select=id&limit=1")
                .bearer_auth(member("acme"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{query}");
            // the pool's connection and the NOTIFY listener (which connects
            // in the background)
            let (mut on, mut n) = ssl_of(app.clone()).await;
            for _ in 0..100 {
                if n >= 2 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                (on, n) = ssl_of(app.clone()).await;
            }
            assert!(n >= 2, "{query}: {n} backends");
            assert_eq!(on, tls, "{query}: TLS on every backend");
            p.stop().await;
            // a stopped proxy keeps no connection open
            let mut left = n;
            for _ in 0..50 {
                left = ssl_of(app.clone()).await.1;
                if left == 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert_eq!(left, 0, "{query}: connections left after stop");
        }
        // refused: an untrusted certificate (the system store does not hold
        // the cluster's self-signed one), a missing root file, a bad mode
        for (query, expect) in [
            ("sslmode=verify-full&sslrootcert=system", "certificate"),
            (
                "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
                "/nonexistent/ca.pem",
            ),
            ("sslmode=sometimes", "invalid sslmode"),
        ] {
            let mut c = db.config();
            c.db_uri = format!("{base}?{query}");
            let e = start_error(c).await;
            assert!(e.contains(expect), "{query}: {e}");
        }
    };
    finish(guarded(result).await, &db, vec![]).await;
}

/// `server-cors-allowed-origins` (PGRST_SERVER_CORS_ALLOWED_ORIGINS): only
/// the listed origins get CORS headers, with credentials allowed; any other
/// origin is served without them (the browser then blocks the response).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allowed_origins() {
    let db = TestDb::create("corsorigins").await;
    let mut c = db.config();
    c.server_cors_allowed_origins = Some(" https://a.example , https://b.example".into());
    let p = db.proxy(c).await;
    let result = async {
        let acme = member("acme");
        for origin in ["https://a.example", "https://b.example"] {
            let r = p
                .get("/data_points?select=id&limit=1")
                .bearer_auth(&acme)
                .header("Origin", origin)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(
                header(&r, "access-control-allow-origin").as_deref(),
                Some(origin)
            );
            assert_eq!(
                header(&r, "access-control-allow-credentials").as_deref(),
                Some("true")
            );
            let pre = p
                .http
                .request(reqwest::Method::OPTIONS, format!("{}/data_points", p.base))
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "POST")
                .header(
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                )
                .send()
                .await
                .unwrap();
            assert_eq!(pre.status(), 200);
            assert_eq!(
                header(&pre, "access-control-allow-origin").as_deref(),
                Some(origin)
            );
            assert!(header(&pre, "access-control-allow-methods")
                .unwrap()
                .contains("POST"));
        }
        // another origin (also one that differs only by scheme or port)
        for origin in [
            "https://evil.example",
            "http://a.example",
            "https://a.example:8443",
        ] {
            let r = p
                .get("/data_points?select=id&limit=1")
                .bearer_auth(&acme)
                .header("Origin", origin)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "served, without CORS headers");
            for h in [
                "access-control-allow-origin",
                "access-control-allow-credentials",
                "access-control-expose-headers",
            ] {
                assert_eq!(header(&r, h), None, "{origin}: {h}");
            }
            let pre = p
                .http
                .request(reqwest::Method::OPTIONS, format!("{}/data_points", p.base))
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "DELETE")
                .send()
                .await
                .unwrap();
            assert_eq!(
                header(&pre, "access-control-allow-origin"),
                None,
                "{origin}"
            );
            assert_eq!(
                header(&pre, "access-control-allow-methods"),
                None,
                "{origin}"
            );
        }
        // a value that cannot be an origin stops the proxy at start
        let mut bad = db.config();
        bad.server_cors_allowed_origins = Some("https://ok.example, bad\norigin".into());
        let e = start_error(bad).await;
        assert!(e.contains("invalid origin"), "{e}");
    };
    finish(guarded(result).await, &db, vec![p]).await;
}

/// PostgREST's `app.settings.*`: every request's transaction has them, for
/// SQL to read with `current_setting`; a proxy without them sets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_settings() {
    let db = TestDb::create("appsettings").await;
    db.admin()
        .await
        .batch_execute(
            "CREATE FUNCTION esg.app_setting(name text) RETURNS text LANGUAGE sql STABLE
               AS $$ SELECT current_setting('app.settings.' || name, true) $$;
             GRANT EXECUTE ON FUNCTION esg.app_setting(text) TO tenancy_member;",
        )
        .await
        .unwrap();
    let mut c = db.config();
    c.app_settings = vec![
        ("app.settings.greeting".into(), "it's \"hello\"; --".into()),
        ("app.settings.jwt_exp".into(), "3600".into()),
    ];
    let p = db.proxy(c).await;
    let plain = db.proxy(db.config()).await;
    let result = async {
        let acme = member("acme");
        let read = |p: &Proxy, name: &str| {
            p.get(&format!("/rpc/app_setting?name={name}"))
                .bearer_auth(acme.clone())
                .send()
        };
        let (s, v) = json_of(read(&p, "greeting").await.unwrap()).await;
        assert_eq!((s, v), (200, Value::String("it's \"hello\"; --".into())));
        let (s, v) = json_of(read(&p, "jwt_exp").await.unwrap()).await;
        assert_eq!((s, v), (200, Value::String("3600".into())));
        // also through POST (a write transaction) and with Prefer: timezone
        let r = p
            .post("/rpc/app_setting")
            .bearer_auth(&acme)
            .header("Prefer", "timezone=UTC")
            .json(&serde_json::json!({"name": "jwt_exp"}))
            .send()
            .await
            .unwrap();
        assert_eq!(json_of(r).await, (200, Value::String("3600".into())));
        let (s, v) = json_of(read(&plain, "greeting").await.unwrap()).await;
        assert_eq!((s, v), (200, Value::Null));
    };
    finish(guarded(result).await, &db, vec![p, plain]).await;
}

/// `Accept: application/vnd.pgrst.plan` (`db-plan-enabled`), as
/// postgrest-js `.explain()` sends it: reads, writes and RPC, text and JSON,
/// `for=` and `options=`; off by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_plans() {
    let db = TestDb::create("explain").await;
    let mut c = db.config();
    c.db_plan_enabled = true;
    let p = db.proxy(c).await;
    let off = db.proxy(db.config()).await;
    let result = async {
        let acme = member("acme");
        let get = |p: &Proxy, url: &str, accept: &str| {
            p.get(url)
                .bearer_auth(acme.clone())
                .header("Accept", accept.to_string())
                .send()
        };
        let ctype = |r: &reqwest::Response| {
            r.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        // JSON format, postgrest-js's exact header (empty options, trailing `;`)
        let r = get(
            &p,
            "/metrics?select=code&limit=2",
            r#"application/vnd.pgrst.plan+json; for="application/json"; options=;"#,
        )
        .await
        .unwrap();
        let status = r.status();
        let head = ctype(&r);
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            head,
            r#"application/vnd.pgrst.plan+json; for="application/json"; charset=utf-8"#
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v[0]["Plan"]["Node Type"].is_string(), "{v}");
        assert!(v[0]["Plan"].get("Actual Rows").is_none(), "{v}");
        // text is the default; options in PostgreSQL's order
        let r = get(&p, "/metrics?select=code", "application/vnd.pgrst.plan")
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(text.contains("cost=") && text.lines().count() > 1, "{text}");
        let r = get(
            &p,
            "/metrics?select=code",
            r#"application/vnd.pgrst.plan+json; for="text/csv"; options=verbose|analyze|nonsense"#,
        )
        .await
        .unwrap();
        assert_eq!(
            ctype(&r),
            r#"application/vnd.pgrst.plan+json; for="text/csv"; options=analyze|verbose; charset=utf-8"#
        );
        let v: Value = r.json().await.unwrap();
        assert!(v[0]["Plan"]["Actual Rows"].is_number(), "{v}");
        assert!(v[0]["Execution Time"].is_number(), "{v}");
        // a singular media type explains instead of refusing many rows
        let r = get(
            &p,
            "/metrics",
            r#"application/vnd.pgrst.plan+json; for="application/vnd.pgrst.object+json""#,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        // and under its short name too, answered with PostgREST's full one
        let r = get(
            &p,
            "/metrics",
            r#"application/vnd.pgrst.plan+json; for="application/vnd.pgrst.object""#,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            r#"application/vnd.pgrst.plan+json; for="application/vnd.pgrst.object+json"; charset=utf-8"#
        );
        // errors in the request are errors, not plans
        let (s, v) = json_of(
            get(&p, "/metrics?select=nope", "application/vnd.pgrst.plan")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v["code"].as_str()), (400, Some("42703")), "{v}");
        let (s, v) = json_of(
            get(&p, "/metrics?id=zz.1", "application/vnd.pgrst.plan")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v["code"].as_str()), (400, Some("PGRST100")), "{v}");
        // a write without analyze is planned, not run
        let count = || async {
            let (_, v) = json_of(
                p.get("/metrics?select=code&code=eq.planned")
                    .bearer_auth(acme.clone())
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            v.as_array().map(Vec::len)
        };
        let r = p
            .post("/metrics")
            .bearer_auth(&acme)
            .header("Accept", "application/vnd.pgrst.plan+json")
            .json(&serde_json::json!({"code": "planned", "name": "P", "unit": "t"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(v.to_string().contains("Insert"), "{v}");
        assert_eq!(count().await, Some(0));
        // RPC, GET and POST
        let r = get(&p, "/rpc/codes?limit=1", "application/vnd.pgrst.plan+text")
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            ctype(&r).starts_with("application/vnd.pgrst.plan+text;"),
            "{}",
            ctype(&r)
        );
        let r = p
            .post("/rpc/add")
            .bearer_auth(&acme)
            .header("Accept", "application/vnd.pgrst.plan+json")
            .json(&serde_json::json!({"a": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // off unless db-plan-enabled
        let (s, v) = json_of(
            get(&off, "/metrics", "application/vnd.pgrst.plan+json")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v["code"].as_str()), (406, Some("PGRST107")), "{v}");
        // the plan answers only the first media range
        let (s, _) = json_of(
            get(
                &p,
                "/metrics?select=code",
                "application/json, application/vnd.pgrst.plan",
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(s, 200);
    };
    finish(guarded(result).await, &db, vec![p, off]).await;
}

/// PostgREST's single unnamed parameter: the raw body of `POST /rpc/fn` as
/// json/jsonb, text (`text/plain`), xml (`text/xml`) or bytea
/// (`application/octet-stream`); named overloads still win for JSON objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_body_functions() {
    let db = TestDb::create("rawbody").await;
    db.admin()
        .await
        .batch_execute(
            "CREATE FUNCTION esg.raw_json(jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS 'SELECT $1';
             CREATE FUNCTION esg.raw_text(text) RETURNS json LANGUAGE sql IMMUTABLE
               AS 'SELECT json_build_object(''len'', length($1), ''text'', $1)';
             CREATE FUNCTION esg.raw_bytes(bytea) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT encode($1, ''hex'')';
             CREATE FUNCTION esg.raw_xml(xml) RETURNS text LANGUAGE sql IMMUTABLE
               AS 'SELECT (xpath(''/a/text()'', $1))[1]::text';
             CREATE FUNCTION esg.over(jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT ''raw '' || $1::text';
             CREATE FUNCTION esg.over(x int) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT ''named '' || x';
             CREATE FUNCTION esg.two_unnamed(text, text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT $1 || $2';
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO tenancy_member;",
        )
        .await
        .unwrap();
    let p = db.proxy(db.config()).await;
    let result = async {
        let acme = member("acme");
        let post = |f: &str, ctype: &str, body: Vec<u8>| {
            p.post(&format!("/rpc/{f}"))
                .bearer_auth(acme.clone())
                .header("Content-Type", ctype.to_string())
                .body(body)
                .send()
        };
        let doc = serde_json::json!({"a": 1, "b": [2, "x"], "c": {"d": null}});
        let (s, v) = json_of(
            post("raw_json", "application/json", doc.to_string().into_bytes())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, doc));
        // any JSON value, not only an object
        let (s, v) = json_of(
            post("raw_json", "application/json", b"[1,2,3]".to_vec())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, serde_json::json!([1, 2, 3])));
        let (s, v) = json_of(
            post("raw_json", "application/json", b"{oops".to_vec())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v["code"].as_str()), (400, Some("PGRST102")), "{v}");
        // text keeps quotes, semicolons and non-ASCII as sent
        let t = "héllo'; DROP TABLE esg.metrics; --";
        let (s, v) = json_of(
            post(
                "raw_text",
                "text/plain; charset=utf-8",
                t.as_bytes().to_vec(),
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["text"], t);
        assert_eq!(v["len"], t.chars().count());
        let (s, v) = json_of(
            post("raw_text", "text/plain", vec![0xff, 0xfe])
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 400, "{v}");
        // bytes, NUL and backslash included
        let bytes = vec![0u8, 255, 10, b'\\', b'x', 0x7f];
        let (s, v) = json_of(
            post("raw_bytes", "application/octet-stream", bytes)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, Value::String("00ff0a5c787f".into())));
        let (s, v) = json_of(
            post("raw_xml", "text/xml", b"<a>hi</a>".to_vec())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, Value::String("hi".into())));
        // a JSON object whose keys fit the named overload goes there
        let (s, v) = json_of(
            post("over", "application/json", br#"{"x": 2}"#.to_vec())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, Value::String("named 2".into())));
        let (s, v) = json_of(
            post("over", "application/json", br#"{"y": 2}"#.to_vec())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, Value::String(r#"raw {"y": 2}"#.into())));
        // the wrong media type for the parameter, GET, and two unnamed
        // parameters: not callable this way
        let (s, v) = json_of(
            post("raw_bytes", "text/plain", b"x".to_vec())
                .await
                .unwrap(),
        )
        .await;
        assert!(s == 400 || s == 404 || s == 415, "{s} {v}");
        // PostgREST names an unnamed parameter "": `?=x` reaches it, and the
        // query arguments go to it as one JSON object
        let (s, v) = json_of(
            p.get("/rpc/raw_text?=x")
                .bearer_auth(&acme)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v["text"].as_str()), (200, Some(r#"{"":"x"}"#)), "{v}");
        // so does a JSON body `{"": …}`, whole, even for a text parameter
        let (s, v) = json_of(
            post("raw_text", "application/json", br#"{"": "y"}"#.to_vec())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v["text"].as_str()), (200, Some(r#"{"": "y"}"#)), "{v}");
        // other keys do not, and the error is PostgREST's, with its hint
        let (s, v) = json_of(
            post("raw_text", "application/json", br#"{"z": "y"}"#.to_vec())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v["code"].as_str()), (404, Some("PGRST202")), "{v}");
        assert_eq!(
            v["details"],
            "Searched for the function esg.raw_text with parameter z or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache."
        );
        let (s, v) = json_of(post("raw_txt", "text/plain", b"y".to_vec()).await.unwrap()).await;
        assert_eq!((s, v["code"].as_str()), (404, Some("PGRST202")), "{v}");
        // PostgREST gives a raw text/XML/bytes body no hint
        assert_eq!(v["hint"], serde_json::Value::Null, "{v}");
        let (s, v) = json_of(
            post("two_unnamed", "text/plain", b"x".to_vec())
                .await
                .unwrap(),
        )
        .await;
        assert!(s == 400 || s == 404 || s == 415, "{s} {v}");
    };
    finish(guarded(result).await, &db, vec![p]).await;
}

/// How PostgREST passes arguments: a repeated query key fills a `VARIADIC`
/// parameter (the last value wins for any other), a key without an operator
/// is an argument even when the function has no such parameter (404, not a
/// filter), `Prefer: params=single-object` hands the whole body to a single
/// json/jsonb parameter, `?columns=` drops other body keys, and an array body
/// calls with its first object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_argument_forms() {
    let db = TestDb::create("rpcargs").await;
    db.admin()
        .await
        .batch_execute(
            "CREATE FUNCTION esg.vari(VARIADIC v text[] DEFAULT '{}') RETURNS text[] LANGUAGE sql IMMUTABLE AS 'SELECT v';
             CREATE FUNCTION esg.hello_vari(name text, VARIADIC v int[]) RETURNS text LANGUAGE sql IMMUTABLE
               AS 'SELECT name || '':'' || array_length(v, 1)';
             CREATE FUNCTION esg.hello(name text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT ''Hello, '' || name';
             CREATE FUNCTION esg.add2(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT a + b';
             CREATE FUNCTION esg.echo_obj(payload json) RETURNS json LANGUAGE sql IMMUTABLE AS 'SELECT payload';
             CREATE FUNCTION esg.nums(n int) RETURNS TABLE(i int) LANGUAGE sql IMMUTABLE
               AS 'SELECT g FROM generate_series(1, n) g';
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO tenancy_member;",
        )
        .await
        .unwrap();
    let p = db.proxy(db.config()).await;
    let result = async {
        let acme = member("acme");
        let get = |path: &str| p.get(path).bearer_auth(acme.clone()).send();
        let post = |path: &str, prefer: &str, ctype: &str, body: &str| {
            let mut r = p
                .post(path)
                .bearer_auth(acme.clone())
                .header("Content-Type", ctype.to_string())
                .body(body.to_string());
            if !prefer.is_empty() {
                r = r.header("Prefer", prefer.to_string());
            }
            r.send()
        };
        // VARIADIC: none (its default), one, many, quotes and commas kept
        for (path, want) in [
            ("/rpc/vari", serde_json::json!([])),
            ("/rpc/vari?v=hi", serde_json::json!(["hi"])),
            (
                "/rpc/vari?v=hi&v=a,%22b%22&v=%7Bc%7D",
                serde_json::json!(["hi", "a,\"b\"", "{c}"]),
            ),
        ] {
            let (s, v) = json_of(get(path).await.unwrap()).await;
            assert_eq!((s, v), (200, want), "{path}");
        }
        let (s, v) = json_of(
            post("/rpc/vari", "", "application/json", r#"{"v": ["x", "y"]}"#)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, serde_json::json!(["x", "y"])));
        let (s, v) = json_of(
            post(
                "/rpc/vari",
                "",
                "application/x-www-form-urlencoded",
                "v=1&v=2&v=3",
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, serde_json::json!(["1", "2", "3"])));
        // the last value of a repeated non-variadic argument wins
        let (s, v) = json_of(
            get("/rpc/hello_vari?name=ignored&name=world&v=1&v=2")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, Value::String("world:2".into())));
        let (s, v) = json_of(get("/rpc/hello?name=ignored&name=world").await.unwrap()).await;
        assert_eq!((s, v), (200, Value::String("Hello, world".into())));
        // a variadic value that is not of its element type: PostgreSQL's error
        let (s, v) = json_of(get("/rpc/hello_vari?name=x&v=1&v=two").await.unwrap()).await;
        assert_eq!((s, v["code"].as_str()), (400, Some("22P02")), "{v}");
        // an unknown key without an operator is an argument: 404, not a filter
        let (s, v) = json_of(get("/rpc/add2?a=1&b=2&smthelse=blabla").await.unwrap()).await;
        assert_eq!((s, v["code"].as_str()), (404, Some("PGRST202")), "{v}");
        assert_eq!(
            v["message"],
            "Could not find the function esg.add2(a, b, smthelse) in the schema cache"
        );
        assert_eq!(
            v["hint"],
            "Perhaps you meant to call the function esg.add2(a, b)"
        );
        // with an operator it filters the rows the function returns
        let (s, v) = json_of(get("/rpc/nums?n=5&i=gt.3").await.unwrap()).await;
        assert_eq!((s, v), (200, serde_json::json!([{"i": 4}, {"i": 5}])));
        let (s, v) = json_of(get("/rpc/nums?n=5&i=not.in.(1,2,3)").await.unwrap()).await;
        assert_eq!((s, v), (200, serde_json::json!([{"i": 4}, {"i": 5}])));
        // params=single-object: the whole body, the form or the query string
        // as one JSON object, to the single json parameter
        let doc = r#"{"p1": 1, "p2": "text", "p3": {"obj": "text"}}"#;
        let (s, v) = json_of(
            post(
                "/rpc/echo_obj",
                "params=single-object",
                "application/json",
                doc,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, serde_json::from_str::<Value>(doc).unwrap()));
        let (s, v) = json_of(
            post(
                "/rpc/echo_obj",
                "params=single-object",
                "application/json",
                r#"[{"x": 1}, {"x": 2}]"#,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, serde_json::json!([{"x": 1}, {"x": 2}])));
        let (s, v) = json_of(
            post(
                "/rpc/echo_obj",
                "params=single-object",
                "application/x-www-form-urlencoded",
                "a=1&b=forms+are+fun",
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(
            (s, v),
            (200, serde_json::json!({"a": "1", "b": "forms are fun"}))
        );
        let (s, v) = json_of(
            p.get("/rpc/echo_obj?p1=1&p2=text")
                .bearer_auth(&acme)
                .header("Prefer", "params=single-object")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, serde_json::json!({"p1": "1", "p2": "text"})));
        // no function with a single json parameter: PostgREST's 404
        let (s, v) = json_of(
            post(
                "/rpc/hello",
                "params=single-object",
                "application/json",
                "{}",
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(
            (s, v),
            (
                404,
                serde_json::json!({
                    "code": "PGRST202",
                    "message": "Could not find the function esg.hello in the schema cache",
                    "details": "Searched for the function esg.hello with a single json/jsonb parameter, but no matches were found in the schema cache.",
                    "hint": null
                })
            )
        );
        // ?columns= keeps only the keys it names
        let (s, v) = json_of(
            post(
                "/rpc/hello?columns=name",
                "",
                "application/json",
                r#"{"name": "John", "smth": "here", "fake_id": 13}"#,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, Value::String("Hello, John".into())));
        // an array of objects: the first one is the call
        let (s, v) = json_of(
            post(
                "/rpc/add2",
                "",
                "application/json",
                r#"[{"a": 1, "b": 2}, {"a": 4, "b": 6}]"#,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, serde_json::json!(3)));
    };
    finish(guarded(result).await, &db, vec![p]).await;
}

/// PostgREST's media type handlers for functions: a function returning a
/// domain named like a media type answers that `Accept` with its value
/// itself (text or bytes), `*/*` domains answer any type as
/// `application/octet-stream`, builtin types listed first still win, and an
/// `Accept` nothing answers is 406 PGRST107.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_type_handler_functions() {
    let db = TestDb::create("mediahandlers").await;
    db.admin()
        .await
        .batch_execute(
            r#"CREATE DOMAIN esg."text/html" AS text;
             CREATE DOMAIN esg."text/plain" AS text;
             CREATE DOMAIN esg."image/png" AS bytea;
             CREATE DOMAIN esg."*/*" AS bytea;
             CREATE FUNCTION esg.page(who text DEFAULT 'you') RETURNS esg."text/html" LANGUAGE sql STABLE
               AS $$ SELECT ('<h1>hi ' || who || '</h1>')::esg."text/html" $$;
             CREATE FUNCTION esg.greeting() RETURNS esg."text/plain" LANGUAGE sql STABLE
               AS $$ SELECT 'héllo'::esg."text/plain" $$;
             CREATE FUNCTION esg.pixel() RETURNS esg."image/png" LANGUAGE sql STABLE
               AS $$ SELECT '\x89504e470d0a1a0a00ff'::bytea::esg."image/png" $$;
             CREATE FUNCTION esg.nothing() RETURNS esg."text/plain" LANGUAGE sql STABLE
               AS $$ SELECT NULL::esg."text/plain" $$;
             CREATE FUNCTION esg.anything() RETURNS esg."*/*" LANGUAGE sql STABLE
               AS $$ SELECT convert_to('any', 'UTF8')::esg."*/*" $$;
             CREATE FUNCTION esg.typed_anything() RETURNS esg."*/*" LANGUAGE plpgsql STABLE AS $$
               BEGIN
                 PERFORM set_config('response.headers', '[{"Content-Type": "app/groucho"}]', true);
                 RETURN convert_to('groucho', 'UTF8')::esg."*/*";
               END $$;
             GRANT USAGE ON TYPE esg."text/html", esg."text/plain", esg."image/png", esg."*/*" TO tenancy_member;
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO tenancy_member;"#,
        )
        .await
        .unwrap();
    let p = db.proxy(db.config()).await;
    let mut with_plans = db.config();
    with_plans.db_plan_enabled = true;
    let plans = db.proxy(with_plans).await;
    let result = async {
        let acme = member("acme");
        let get = |path: &str, accept: &str| {
            let mut r = p.get(path).bearer_auth(acme.clone());
            if !accept.is_empty() {
                r = r.header("Accept", accept.to_string());
            }
            r.send()
        };
        let raw = |r: reqwest::Response| async move {
            let s = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            (s, ct, r.bytes().await.unwrap().to_vec())
        };
        // the handler's own type, also as a browser asks (text/html first)
        let (s, ct, b) = raw(get("/rpc/page?who=%3Cb%3E", "text/html").await.unwrap()).await;
        assert_eq!(
            (s, ct.as_deref(), b),
            (200, Some("text/html"), b"<h1>hi <b></h1>".to_vec())
        );
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        let (s, ct, _) = raw(get("/rpc/page", browser).await.unwrap()).await;
        assert_eq!((s, ct.as_deref()), (200, Some("text/html")));
        // JSON when JSON (or anything) is asked for first
        let (s, ct, b) = raw(get("/rpc/page", "").await.unwrap()).await;
        assert_eq!(
            (s, ct.as_deref()),
            (200, Some("application/json; charset=utf-8"))
        );
        assert_eq!(b, br#""<h1>hi you</h1>""#.to_vec());
        let (s, _, b) = raw(get("/rpc/page", "application/json, text/html")
            .await
            .unwrap())
        .await;
        assert_eq!((s, b), (200, br#""<h1>hi you</h1>""#.to_vec()));
        // text/plain carries a charset; non-ASCII kept
        let (s, ct, b) = raw(get("/rpc/greeting", "text/plain").await.unwrap()).await;
        assert_eq!(
            (s, ct.as_deref(), b),
            (
                200,
                Some("text/plain; charset=utf-8"),
                "héllo".as_bytes().to_vec()
            )
        );
        // bytes as they are, NUL and 0xff included; HEAD has none
        let (s, ct, b) = raw(get("/rpc/pixel", "image/png").await.unwrap()).await;
        assert_eq!(
            (s, ct.as_deref(), b),
            (
                200,
                Some("image/png"),
                vec![0x89, b'P', b'N', b'G', 13, 10, 26, 10, 0, 255]
            )
        );
        let r = p
            .head("/rpc/pixel")
            .bearer_auth(&acme)
            .header("Accept", "image/png")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.bytes().await.unwrap().is_empty());
        // no value: an empty body
        let (s, _, b) = raw(get("/rpc/nothing", "text/plain").await.unwrap()).await;
        assert_eq!((s, b.len()), (200, 0));
        // a type neither the handler nor a builtin answers: 406 PGRST107
        for (path, accept) in [("/rpc/greeting", "text/html"), ("/rpc/page", "image/png")] {
            let (s, _, b) = raw(get(path, accept).await.unwrap()).await;
            let v: Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(
                (s, v["code"].as_str()),
                (406, Some("PGRST107")),
                "{path} {v}"
            );
            assert_eq!(
                v["message"],
                format!("None of these media types are available: {accept}")
            );
        }
        // the any-handler: every type, as octet-stream, or the type it sets
        for accept in ["*/*", "app/bingo", "image/boingo", ""] {
            let (s, ct, b) = raw(get("/rpc/anything", accept).await.unwrap()).await;
            assert_eq!(
                (s, ct.as_deref(), b),
                (200, Some("application/octet-stream"), b"any".to_vec()),
                "{accept}"
            );
        }
        let (s, ct, b) = raw(get("/rpc/typed_anything", "*/*").await.unwrap()).await;
        assert_eq!(
            (s, ct.as_deref(), b),
            (200, Some("app/groucho"), b"groucho".to_vec())
        );
        // tables keep refusing what they cannot produce
        let (s, _, _) = raw(get("/metrics", "text/html").await.unwrap()).await;
        assert_eq!(s, 406);
        // the execution plan of a handler's call (`for=` a handler's type)
        // is the plan of the call as it would answer that type; `for=` a
        // type nothing answers stays 406
        let plan = |path: &'static str, accept: &'static str| {
            let plans = &plans;
            let acme = &acme;
            async move {
                let r = plans
                    .get(path)
                    .bearer_auth(acme)
                    .header("Accept", accept)
                    .send()
                    .await
                    .unwrap();
                let ct = r
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string());
                (r.status().as_u16(), ct, r.text().await.unwrap())
            }
        };
        let (s, ct, body) = plan(
            "/rpc/page?who=x",
            r#"application/vnd.pgrst.plan+json; for="text/html""#,
        )
        .await;
        assert_eq!(
            (s, ct.as_deref()),
            (
                200,
                Some(r#"application/vnd.pgrst.plan+json; for="text/html"; charset=utf-8"#)
            ),
            "{body}"
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v[0]["Plan"]["Total Cost"].is_number(), "{v}");
        let (s, ct, body) = plan(
            "/rpc/pixel",
            r#"application/vnd.pgrst.plan; for="image/png""#,
        )
        .await;
        assert_eq!(
            (s, ct.as_deref()),
            (
                200,
                Some(r#"application/vnd.pgrst.plan+text; for="image/png"; charset=utf-8"#)
            ),
            "{body}"
        );
        assert!(body.contains("cost="), "{body}");
        let (s, _, body) = plan(
            "/rpc/greeting",
            r#"application/vnd.pgrst.plan; for="text/html""#,
        )
        .await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((s, v["code"].as_str()), (406, Some("PGRST107")), "{v}");
    };
    finish(guarded(result).await, &db, vec![p, plans]).await;
}

/// Query-string and relationship cases from PostgREST's own specs: nested
/// `!inner` filters the top level, negative `limit`/`offset`, `in.()` edge
/// cases, blanks in logic trees, column names with spaces, and partitioned
/// tables relating through their parent's keys only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgrest_spec_query_cases() {
    let db = TestDb::create("specquery").await;
    db.admin()
        .await
        .batch_execute(
            r#"CREATE TABLE esg.q_clients (id int PRIMARY KEY, name text);
             CREATE TABLE esg.q_projects (id int PRIMARY KEY, client_id int REFERENCES esg.q_clients);
             CREATE TABLE esg.q_tasks (id int PRIMARY KEY, project_id int REFERENCES esg.q_projects);
             INSERT INTO esg.q_clients VALUES (1, 'one'), (2, 'two'), (3, '"');
             INSERT INTO esg.q_projects VALUES (1, 1), (2, 2), (3, 2);
             INSERT INTO esg.q_tasks VALUES (1, 1), (2, 1), (3, 2), (4, 3);
             CREATE TABLE esg."Server Today" ("Just A Server Model" text, id int);
             INSERT INTO esg."Server Today" VALUES ('model 91', 1), ('model 12', 2);
             CREATE TABLE esg.q_models (id int PRIMARY KEY, name text);
             CREATE TABLE esg.q_dealers (id int PRIMARY KEY, city text);
             CREATE TABLE esg.q_models_dealers (
               model_id int REFERENCES esg.q_models, dealer_id int REFERENCES esg.q_dealers, quantity int,
               PRIMARY KEY (model_id, dealer_id, quantity)) PARTITION BY RANGE (quantity);
             CREATE TABLE esg.q_md_low PARTITION OF esg.q_models_dealers FOR VALUES FROM (0) TO (10);
             CREATE TABLE esg.q_md_high PARTITION OF esg.q_models_dealers FOR VALUES FROM (10) TO (100);
             CREATE TABLE esg.q_sales (id int, model_id int REFERENCES esg.q_models, month int,
               PRIMARY KEY (id, month)) PARTITION BY RANGE (month);
             CREATE TABLE esg.q_sales_jan PARTITION OF esg.q_sales FOR VALUES FROM (1) TO (2);
             INSERT INTO esg.q_models VALUES (1, 'A'), (2, 'B');
             INSERT INTO esg.q_dealers VALUES (1, 'Paris'), (2, 'Lyon');
             INSERT INTO esg.q_models_dealers VALUES (1, 1, 5), (1, 2, 50), (2, 2, 7);
             INSERT INTO esg.q_sales VALUES (1, 1, 1);
             GRANT SELECT ON ALL TABLES IN SCHEMA esg TO tenancy_member;"#,
        )
        .await
        .unwrap();
    let p = db.proxy(db.config()).await;
    let result = async {
        let acme = member("acme");
        let get = |path: &str| p.get(path).bearer_auth(acme.clone()).send();
        let ok = |path: &'static str, want: Value| {
            let r = get(path);
            async move {
                let (s, v) = json_of(r.await.unwrap()).await;
                assert_eq!((s, v), (200, want), "{path}");
            }
        };
        // nested !inner: the innermost filter removes top-level rows
        ok(
            "/q_tasks?select=id,q_projects!inner(id,q_clients!inner(id))&q_projects.q_clients.id=eq.2&order=id",
            serde_json::json!([
                {"id": 3, "q_projects": {"id": 2, "q_clients": {"id": 2}}},
                {"id": 4, "q_projects": {"id": 3, "q_clients": {"id": 2}}}
            ]),
        )
        .await;
        ok(
            "/q_clients?select=id,q_projects!inner(id,q_tasks!inner(id))&q_projects.q_tasks.id=eq.4",
            serde_json::json!([{"id": 2, "q_projects": [{"id": 3, "q_tasks": [{"id": 4}]}]}]),
        )
        .await;
        // an outer embed keeps its rows even when a nested !inner has none
        ok(
            "/q_clients?select=id,q_projects(id,q_tasks!inner(id))&q_projects.q_tasks.id=eq.4&order=id&id=lt.3",
            serde_json::json!([
                {"id": 1, "q_projects": []},
                {"id": 2, "q_projects": [{"id": 3, "q_tasks": [{"id": 4}]}]}
            ]),
        )
        .await;
        // negative limit: 416; negative offset: no offset
        let (s, v) = json_of(get("/q_tasks?select=id&limit=-1").await.unwrap()).await;
        assert_eq!(
            (s, v),
            (
                416,
                serde_json::json!({"code": "PGRST103", "message": "Requested range not satisfiable",
                    "details": "Limit should be greater than or equal to zero.", "hint": null})
            )
        );
        let r = get("/q_tasks?select=id&offset=-4&order=id").await.unwrap();
        assert_eq!(r.headers()["content-range"], "0-3/*");
        let (s, v) = json_of(r).await;
        assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(4)));
        // in.(): blanks are the empty list; a lone quote is a value
        ok("/q_tasks?id=in.(%20%20%20)", serde_json::json!([])).await;
        ok(
            "/q_clients?select=id&name=in.(%22)",
            serde_json::json!([{"id": 3}]),
        )
        .await;
        ok(
            "/q_clients?select=id&name=in.(%22one%22,two)&order=id",
            serde_json::json!([{"id": 1}, {"id": 2}]),
        )
        .await;
        // blanks around logic operators and brackets; a stray closing bracket
        ok(
            "/q_tasks?and=(%20and%20(%20id.in.(%201,%202,%203%20)%20,%20id.eq.3%20)%20,%20or%20(%20id.eq.2%20,%20id.eq.3%20)%20)&select=id",
            serde_json::json!([{"id": 3}]),
        )
        .await;
        ok(
            "/q_tasks?and=(id.eq.1,id.neq.2))&select=id",
            serde_json::json!([{"id": 1}]),
        )
        .await;
        // garbage after the group is still an error
        let (s, v) = json_of(get("/q_tasks?and=(id.eq.1)x").await.unwrap()).await;
        assert_eq!((s, v["code"].as_str()), (400, Some("PGRST100")), "{v}");
        // a column name with spaces, in select and in a filter
        ok(
            "/Server%20Today?select=Just%20A%20Server%20Model&Just%20A%20Server%20Model=like.*91*",
            serde_json::json!([{"Just A Server Model": "model 91"}]),
        )
        .await;
        // partitions: the junction's partitions are no extra junctions, the
        // partitioned table relates through its parent, a partition not at all
        ok(
            "/q_models?select=name,q_dealers(city)&order=name&q_dealers.order=city",
            serde_json::json!([
                {"name": "A", "q_dealers": [{"city": "Lyon"}, {"city": "Paris"}]},
                {"name": "B", "q_dealers": [{"city": "Lyon"}]}
            ]),
        )
        .await;
        ok(
            "/q_models?select=id,q_sales(id)&order=id",
            serde_json::json!([{"id": 1, "q_sales": [{"id": 1}]}, {"id": 2, "q_sales": []}]),
        )
        .await;
        let (s, v) = json_of(get("/q_models?select=id,q_sales_jan(id)").await.unwrap()).await;
        assert_eq!((s, v["code"].as_str()), (400, Some("PGRST200")), "{v}");
    };
    finish(guarded(result).await, &db, vec![p]).await;
}

/// Writes and function responses as PostgREST's specs pin them: a singular
/// `Accept` holds for every write (406 and rolled back, whatever `return=`),
/// a write returns no more columns than it needs (INSERT-only roles),
/// `response.headers` / `response.status` are validated and may repeat a
/// header, `RAISE SQLSTATE 'PGRST'` chooses status, headers and body, a
/// single OUT parameter makes an object, and arrows work on composite and
/// array columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgrest_spec_write_and_function_cases() {
    let db = TestDb::create("specwrite").await;
    db.admin()
        .await
        .batch_execute(
            r#"CREATE TABLE esg.w_items (id int PRIMARY KEY, name text);
             INSERT INTO esg.w_items SELECT g, 'item ' || g FROM generate_series(1, 5) g;
             CREATE TABLE esg.w_insertonly (v text);
             CREATE TABLE esg.w_secret (id int PRIMARY KEY, password text, name text);
             INSERT INTO esg.w_secret VALUES (1, 'x', 'one');
             CREATE TYPE esg.w_complex AS (r float8, i float8);
             CREATE TABLE esg.w_nums (id int PRIMARY KEY, num esg.w_complex, arr int[], data jsonb);
             INSERT INTO esg.w_nums VALUES (1, ROW(1.5, 0.5), '{1,2,3}', '[{"a": [1, 2, 3]}]'),
                                           (2, ROW(2.5, 0.6), '{4}', '[{"a": [4, 5]}]');
             GRANT SELECT, INSERT, UPDATE, DELETE ON esg.w_items TO tenancy_member;
             GRANT INSERT ON esg.w_insertonly TO tenancy_member;
             GRANT SELECT (id, name), UPDATE (password) ON esg.w_secret TO tenancy_member;
             GRANT SELECT ON esg.w_nums TO tenancy_member;
             CREATE FUNCTION esg.two_cookies() RETURNS void LANGUAGE sql STABLE
               AS $$ SELECT set_config('response.headers', '[{"Set-Cookie": "a=1"}, {"Set-Cookie": "b=2"}]', true) $$;
             CREATE FUNCTION esg.bad_headers() RETURNS int LANGUAGE sql STABLE
               AS $$ SELECT set_config('response.headers', '{"X": "y"}', true); SELECT 1 $$;
             CREATE FUNCTION esg.bad_status() RETURNS int LANGUAGE sql STABLE
               AS $$ SELECT set_config('response.status', 'teapot', true); SELECT 1 $$;
             CREATE FUNCTION esg.pay() RETURNS int LANGUAGE plpgsql AS $$ BEGIN
               RAISE SQLSTATE 'PGRST' USING
                 message = '{"code": "123", "message": "Payment Required", "details": "Quota exceeded", "hint": "Upgrade"}',
                 detail = '{"status": 402, "headers": {"X-Powered-By": "Nerds"}}';
             END $$;
             CREATE FUNCTION esg.bad_raise() RETURNS int LANGUAGE plpgsql AS $$ BEGIN
               RAISE SQLSTATE 'PGRST' USING message = 'INVALID', detail = '{"status": 400}';
             END $$;
             CREATE FUNCTION esg.bad_pt() RETURNS int LANGUAGE plpgsql AS $$ BEGIN
               RAISE SQLSTATE 'PT40A' USING message = 'Wrong';
             END $$;
             CREATE FUNCTION esg.one_out(num int, OUT num_plus_one int) LANGUAGE sql STABLE AS 'SELECT num + 1';
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO tenancy_member;"#,
        )
        .await
        .unwrap();
    let p = db.proxy(db.config()).await;
    let result = async {
        let acme = member("acme");
        let object = "application/vnd.pgrst.object+json";
        let count_items = || async {
            let (_, v) = json_of(
                p.get("/w_items?select=id")
                    .bearer_auth(&acme)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            v.as_array().map_or(0, Vec::len)
        };
        // singular: five rows deleted is 406, and nothing is deleted
        for prefer in ["return=minimal", "return=representation", ""] {
            let mut r = p
                .delete("/w_items?id=gt.0&id=lt.6")
                .bearer_auth(&acme)
                .header("Accept", object);
            if !prefer.is_empty() {
                r = r.header("Prefer", prefer);
            }
            let (s, v) = json_of(r.send().await.unwrap()).await;
            assert_eq!(
                (s, v["code"].as_str()),
                (406, Some("PGRST116")),
                "{prefer} {v}"
            );
            assert_eq!(count_items().await, 5, "{prefer}");
        }
        let (s, v) = json_of(
            p.patch("/w_items?id=lt.3")
                .bearer_auth(&acme)
                .header("Accept", object)
                .json(&serde_json::json!({"name": "x"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v["code"].as_str()), (406, Some("PGRST116")), "{v}");
        let (_, v) = json_of(
            p.get("/w_items?select=name&id=eq.1")
                .bearer_auth(&acme)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(v, serde_json::json!([{"name": "item 1"}]));
        // one row: fine
        let r = p
            .delete("/w_items?id=eq.5")
            .bearer_auth(&acme)
            .header("Accept", object)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        assert_eq!(count_items().await, 4);
        // a role that may only insert (or update one column) can with return=minimal
        let r = p
            .post("/w_insertonly")
            .bearer_auth(&acme)
            .header("Prefer", "return=minimal")
            .json(&serde_json::json!({"v": "some value"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let (s, v) = json_of(
            p.post("/w_insertonly")
                .bearer_auth(&acme)
                .header("Prefer", "return=representation")
                .json(&serde_json::json!({"v": "x"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(v["code"], "42501", "{s} {v}");
        let r = p
            .patch("/w_secret?id=eq.1")
            .bearer_auth(&acme)
            .json(&serde_json::json!({"password": "passabc"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        let (s, v) = json_of(
            p.patch("/w_secret?id=eq.1&select=id,name")
                .bearer_auth(&acme)
                .header("Prefer", "return=representation")
                .json(&serde_json::json!({"password": "again"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, serde_json::json!([{"id": 1, "name": "one"}])));
        // response.headers: a header twice; wrong shapes are PostgREST's 500s
        let r = p
            .get("/rpc/two_cookies")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        let cookies: Vec<&str> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies, vec!["a=1", "b=2"]);
        for (f, code) in [("bad_headers", "PGRST111"), ("bad_status", "PGRST112")] {
            let (s, v) = json_of(
                p.get(&format!("/rpc/{f}"))
                    .bearer_auth(&acme)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!((s, v["code"].as_str()), (500, Some(code)), "{v}");
        }
        // RAISE SQLSTATE 'PGRST': status, headers and body as the function says
        let r = p
            .post("/rpc/pay")
            .bearer_auth(&acme)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-powered-by"], "Nerds");
        let (s, v) = json_of(r).await;
        assert_eq!(
            (s, v),
            (
                402,
                serde_json::json!({"code": "123", "message": "Payment Required",
                    "details": "Quota exceeded", "hint": "Upgrade"})
            )
        );
        let (s, v) = json_of(
            p.post("/rpc/bad_raise")
                .bearer_auth(&acme)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v["code"].as_str()), (500, Some("PGRST121")), "{v}");
        // PostgREST 12.2's wording: the part that failed, and its shape
        assert_eq!(
            v["message"],
            "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error"
        );
        assert_eq!(v["details"], "Invalid JSON value for MESSAGE: 'INVALID'");
        assert_eq!(
            v["hint"],
            "MESSAGE must be a JSON object with obligatory keys: 'code', 'message' and \
             optional keys: 'details', 'hint'."
        );
        let (s, v) = json_of(
            p.post("/rpc/bad_pt")
                .bearer_auth(&acme)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v["code"].as_str()), (500, Some("PT40A")), "{v}");
        // a single OUT parameter: an object
        let (s, v) = json_of(
            p.get("/rpc/one_out?num=5")
                .bearer_auth(&acme)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, serde_json::json!({"num_plus_one": 6})));
        // arrows on a composite and an array column; the name skips indexes
        for (path, want) in [
            (
                "/w_nums?select=id,num->i&order=id",
                serde_json::json!([{"id": 1, "i": 0.5}, {"id": 2, "i": 0.6}]),
            ),
            (
                "/w_nums?select=id&arr->0=eq.4",
                serde_json::json!([{"id": 2}]),
            ),
            (
                "/w_nums?select=id&order=arr->0.desc",
                serde_json::json!([{"id": 2}, {"id": 1}]),
            ),
            (
                "/w_nums?select=data->0->a->>2&id=eq.1",
                serde_json::json!([{"a": "3"}]),
            ),
        ] {
            let (s, v) = json_of(p.get(path).bearer_auth(&acme).send().await.unwrap()).await;
            assert_eq!((s, v), (200, want), "{path}");
        }
    };
    finish(guarded(result).await, &db, vec![p]).await;
}

/// Clients choose statement texts (select lists, filters), and each one
/// stays prepared on its pooled connection: `prepared-statements-per-connection`
/// bounds them, seen from the backend itself (`pg_prepared_statements`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_are_bounded() {
    let db = TestDb::create("prepared").await;
    db.admin()
        .await
        .batch_execute(
            "CREATE FUNCTION esg.prepared_here() RETURNS bigint LANGUAGE sql STABLE
               AS 'SELECT count(*) FROM pg_prepared_statements';
             GRANT EXECUTE ON FUNCTION esg.prepared_here() TO tenancy_member;",
        )
        .await
        .unwrap();
    let proxy = |cap: usize| {
        let mut c = db.config();
        c.db_pool = 1;
        c.prepared_statements_per_connection = cap;
        c.statement_cache_bytes = 0;
        db.proxy(c)
    };
    let bounded = proxy(8).await;
    let unbounded = proxy(0).await;
    let result = async {
        let acme = member("acme");
        // 30 distinct statement texts: one alias each
        async fn prepared_after_30(p: &Proxy, token: &str) -> i64 {
            for i in 0..30 {
                let r = p
                    .get(&format!("/metrics?select=a{i}:code&limit=1"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
            let (s, v) = json_of(
                p.get("/rpc/prepared_here")
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(s, 200, "{v}");
            v.as_i64().unwrap()
        }
        let n = prepared_after_30(&bounded, &acme).await;
        assert!(
            n <= 8 + 3,
            "{n} statements prepared on a connection bounded to 8"
        );
        let n = prepared_after_30(&unbounded, &acme).await;
        assert!(n >= 30, "{n}: without a bound every text stays prepared");
        // the bounded proxy still answers correctly after its resets
        let (s, v) = json_of(
            bounded
                .get("/metrics?select=code&code=eq.scope1")
                .bearer_auth(&acme)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, serde_json::json!([{"code": "scope1"}])));
        assert!(bounded
            .metrics_text()
            .await
            .contains("tenancy_proxy_prepared_statement_resets_total"));
    };
    finish(guarded(result).await, &db, vec![bounded, unbounded]).await;
}

/// PostgREST's computed fields (`fn(tbl) RETURNS scalar`: selected,
/// filtered and ordered like columns) and computed relationships (`fn(tbl)
/// RETURNS SETOF target`, embedded by the function's name; `ROWS 1` or no
/// `SETOF` makes them to-one), on reads and on the read-back of writes,
/// under the tenant's row-level security.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn computed_fields_and_relationships() {
    let db = TestDb::create("computed").await;
    db.admin()
        .await
        .batch_execute(
            r#"CREATE FUNCTION esg.label(esg.metrics) RETURNS text LANGUAGE sql STABLE
                 AS $$ SELECT $1.code || ': ' || $1.name $$;
             CREATE FUNCTION esg."odd ""name"""(m esg.metrics) RETURNS int LANGUAGE sql STABLE
                 AS $$ SELECT length(m.code) $$;
             CREATE FUNCTION esg.words(esg.metrics) RETURNS tsvector LANGUAGE sql IMMUTABLE
                 AS $$ SELECT to_tsvector('english', $1.name) $$;
             CREATE FUNCTION esg.points(esg.metrics) RETURNS SETOF esg.data_points LANGUAGE sql STABLE
                 AS $$ SELECT * FROM esg.data_points WHERE metric_id = $1.id AND tenant_id = $1.tenant_id $$;
             CREATE FUNCTION esg.first_point(esg.metrics) RETURNS SETOF esg.data_points ROWS 1 LANGUAGE sql STABLE
                 AS $$ SELECT * FROM esg.data_points WHERE metric_id = $1.id ORDER BY period, id LIMIT 1 $$;
             CREATE FUNCTION esg.no_point(esg.metrics) RETURNS esg.data_points LANGUAGE sql STABLE
                 AS $$ SELECT * FROM esg.data_points WHERE false $$;
             -- ignores its argument: row-level security still decides what it sees
             CREATE FUNCTION esg.every_point(esg.metrics) RETURNS SETOF esg.data_points LANGUAGE sql STABLE
                 AS $$ SELECT * FROM esg.data_points $$;
             -- named like the table: overrides the foreign key
             CREATE FUNCTION esg.metrics(esg.data_points) RETURNS SETOF esg.metrics ROWS 1 LANGUAGE sql STABLE
                 AS $$ SELECT m.* FROM esg.metrics m WHERE m.id = $1.metric_id AND m.code = 'scope1' $$;
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO tenancy_member;"#,
        )
        .await
        .unwrap();
    let p = db.proxy(db.config()).await;
    let result = async {
        let acme = member("acme");
        let get = |path: String| p.get(&path).bearer_auth(acme.clone()).send();
        // computed fields: select (aliased, and a name that needs quoting), filter, order
        let (s, v) = json_of(
            get("/metrics?select=code,label,len:\"odd \\\"name\\\"\"&label=like.scope*&order=label.desc".into())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, v),
            (
                200,
                serde_json::json!([
                    {"code": "scope2", "label": "scope2: Scope 2 emissions", "len": 6},
                    {"code": "scope1", "label": "scope1: Scope 1 emissions", "len": 6}
                ])
            )
        );
        // not part of `*`
        let (s, v) = json_of(get("/metrics?select=*&code=eq.water".into()).await.unwrap()).await;
        assert_eq!(s, 200, "{v}");
        assert!(
            v[0].get("label").is_none() && v[0].get("code").is_some(),
            "{v}"
        );
        // full-text search on a tsvector computed field; the value stays a value
        let (s, v) = json_of(
            get("/metrics?select=code&words=fts.withdraw&order=code".into())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, serde_json::json!([{"code": "water"}])));
        let (s, v) = json_of(
            get("/metrics?select=code&label=eq.x'%3B%20DROP%20TABLE%20esg.metrics%3B--".into())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, serde_json::json!([])));
        // an unknown name is still an unknown column
        let (s, v) = json_of(get("/metrics?select=labels".into()).await.unwrap()).await;
        assert_eq!((s, v["code"].as_str()), (400, Some("42703")), "{v}");

        // computed relationships: to-many (with the embed's own filter,
        // order and limit), to-one by ROWS 1, to-one without SETOF
        let (s, v) = json_of(
            get("/metrics?select=code,points(period,value),first:first_point(period),none:no_point(id)&code=eq.scope1&points.order=period.desc,id&points.limit=2".into())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let row = &v[0];
        assert_eq!(row["points"].as_array().unwrap().len(), 2, "{v}");
        assert!(
            row["points"][0]["period"].as_str() >= row["points"][1]["period"].as_str(),
            "{v}"
        );
        assert!(
            row["first"].is_object() && row["first"]["period"].is_string(),
            "{v}"
        );
        // a non-SETOF function's no-row is a row of nulls, as in PostgREST
        assert_eq!(row["none"], serde_json::json!({"id": null}), "{v}");
        // !inner through a computed relationship, and ordering by a to-one one
        let (s, v) = json_of(
            get("/metrics?select=code,points!inner(id)&points.value=lt.0".into())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, serde_json::json!([])));
        let (s, v) = json_of(
            get("/metrics?select=code,first_point(period)&order=first_point(period).asc,code&limit=1".into())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        // row-level security applies inside the function: a function that
        // ignores its argument still returns only what the tenant may see
        // (acme's hierarchy), the same as reading the table directly
        let tenants_via = |token: String, path: &'static str| {
            let p = &p;
            async move {
                let (s, v) = json_of(p.get(path).bearer_auth(token).send().await.unwrap()).await;
                assert_eq!(s, 200);
                let mut set = std::collections::BTreeSet::new();
                let mut walk = vec![v];
                while let Some(x) = walk.pop() {
                    match x {
                        Value::Array(a) => walk.extend(a),
                        Value::Object(o) => {
                            if let Some(Value::String(t)) = o.get("tenant_id") {
                                set.insert(t.clone());
                            }
                            walk.extend(o.into_iter().map(|(_, v)| v));
                        }
                        _ => {}
                    }
                }
                set
            }
        };
        let via_fn = "/metrics?select=every_point(tenant_id)&code=eq.scope1";
        let direct = "/data_points?select=tenant_id";
        let acme_fn = tenants_via(acme.clone(), via_fn).await;
        let acme_direct = tenants_via(acme.clone(), direct).await;
        let globex_fn = tenants_via(member("globex"), via_fn).await;
        assert!(!acme_fn.is_empty() && !globex_fn.is_empty());
        assert_eq!(acme_fn, acme_direct);
        assert!(acme_fn.is_disjoint(&globex_fn), "{acme_fn:?} {globex_fn:?}");
        // the computed `metrics` overrides the foreign key (only scope1 here);
        // a hint still reaches the foreign key
        let (s, v) = json_of(
            get("/data_points?select=metrics(code)&limit=400".into())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let rows = v.as_array().unwrap();
        assert!(rows.iter().any(|r| r["metrics"].is_null()), "{v}");
        assert!(rows.iter().any(|r| r["metrics"]["code"] == "scope1"), "{v}");
        let (s, v) = json_of(
            get(
                "/data_points?select=metrics!data_points_tenant_id_metric_id_fkey(code)&limit=400"
                    .into(),
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert!(
            v.as_array()
                .unwrap()
                .iter()
                .any(|r| r["metrics"]["code"] == "scope2"),
            "{v}"
        );

        // the read-back of a write: computed fields and relationships of the new row
        let r = p
            .post("/metrics?select=code,label,points(id)")
            .bearer_auth(&acme)
            .header("Prefer", "return=representation")
            .json(&serde_json::json!({"code": "cf1", "name": "Computed", "unit": "t"}))
            .send()
            .await
            .unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!(
            (s, v),
            (
                201,
                serde_json::json!([{"code": "cf1", "label": "cf1: Computed", "points": []}])
            )
        );
        // PATCH and DELETE filtered by a computed field
        let r = p
            .patch("/metrics?label=eq.cf1:%20Computed&select=label")
            .bearer_auth(&acme)
            .header("Prefer", "return=representation")
            .json(&serde_json::json!({"name": "Renamed"}))
            .send()
            .await
            .unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!(
            (s, v),
            (200, serde_json::json!([{"label": "cf1: Renamed"}]))
        );
        let r = p
            .delete("/metrics?label=eq.cf1:%20Renamed")
            .bearer_auth(&acme)
            .header("Prefer", "return=representation")
            .send()
            .await
            .unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        // a computed field is not a column to write
        let r = p
            .post("/metrics")
            .bearer_auth(&acme)
            .json(&serde_json::json!({"code": "cf2", "name": "x", "unit": "t", "label": "no"}))
            .send()
            .await
            .unwrap();
        let (s, v) = json_of(r).await;
        assert!(s == 400, "{s} {v}");
    };
    finish(guarded(result).await, &db, vec![p]).await;
}

/// PostgREST v12 behaviour the spec replay showed missing: self-reference
/// and m2m disambiguation, embed paths by relation name, upsert statuses,
/// PK-only upserts, PATCH/PUT array bodies, JSON keys with special
/// characters, `character`/`bit` parameters taken whole.
#[tokio::test]
async fn postgrest_spec_embed_and_upsert_cases() {
    let db = TestDb::create("specembed").await;
    db.admin()
        .await
        .batch_execute(
            r#"CREATE TABLE esg.s_tree (id int PRIMARY KEY, name text, parent int REFERENCES esg.s_tree);
             INSERT INTO esg.s_tree VALUES (1, 'root', NULL), (2, 'kid one', 1), (3, 'kid two', 1), (4, 'grandkid', 2);
             CREATE TABLE esg.s_sites (id int PRIMARY KEY, main_project int);
             CREATE TABLE esg.s_projects (id int PRIMARY KEY, name text);
             ALTER TABLE esg.s_sites ADD FOREIGN KEY (main_project) REFERENCES esg.s_projects;
             CREATE TABLE esg.s_jobs (site int REFERENCES esg.s_sites, project int REFERENCES esg.s_projects,
                                      PRIMARY KEY (site, project));
             INSERT INTO esg.s_projects VALUES (1, 'p1'), (2, 'p2');
             INSERT INTO esg.s_sites VALUES (1, 1), (2, NULL);
             INSERT INTO esg.s_jobs VALUES (1, 2), (2, 1), (2, 2);
             CREATE TABLE esg.s_only_pk (id int PRIMARY KEY);
             INSERT INTO esg.s_only_pk VALUES (1), (2);
             CREATE TABLE esg.s_kv (k text PRIMARY KEY, v int);
             INSERT INTO esg.s_kv VALUES ('a', 1);
             CREATE TABLE esg.s_nopk (a text, b text);
             CREATE TABLE esg.s_json (id int PRIMARY KEY, data jsonb);
             INSERT INTO esg.s_json VALUES (1, '{"!@#$%^&*_d": {"!@#$%^&*_e": 3}}');
             CREATE FUNCTION esg.s_chars(c character, cs character[], b bit) RETURNS json LANGUAGE sql STABLE
               AS $$ SELECT json_build_object('c', c, 'cs', cs, 'b', b::text) $$;
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA esg TO tenancy_member;
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO tenancy_member;"#,
        )
        .await
        .unwrap();
    let p = db.proxy(db.config()).await;
    let result = async {
        let acme = member("acme");
        let get = |path: &'static str| {
            let p = &p;
            let acme = &acme;
            async move { json_of(p.get(path).bearer_auth(acme).send().await.unwrap()).await }
        };
        // self-reference: table name = children, column = parent, hint = children's column
        let (s, v) =
            get("/s_tree?id=eq.1&select=id,children:s_tree!parent(id,children:s_tree!parent(id))")
                .await;
        assert_eq!(
            (s, v),
            (
                200,
                serde_json::json!([{"id": 1, "children": [{"id": 2, "children": [{"id": 4}]}, {"id": 3, "children": []}]}])
            )
        );
        let (s, v) = get("/s_tree?id=eq.4&select=id,parent(id,name),kids:s_tree(id)").await;
        assert_eq!(
            (s, v),
            (
                200,
                serde_json::json!([{"id": 4, "parent": {"id": 2, "name": "kid one"}, "kids": []}])
            )
        );
        // a direct key and a many-to-many to the same table: 300, with
        // PostgREST's relationship wording; the junction as hint picks one
        let (s, v) = get("/s_sites?select=id,s_projects(id)").await;
        assert_eq!((s, v["code"].as_str()), (300, Some("PGRST201")), "{v}");
        assert_eq!(
            v["details"][1]["relationship"],
            "s_jobs using s_jobs_site_fkey(site) and s_jobs_project_fkey(project)",
            "{v}"
        );
        let (s, v) = get("/s_sites?select=id,s_projects!s_jobs(id)&order=id").await;
        assert_eq!(
            (s, v),
            (
                200,
                serde_json::json!([{"id": 1, "s_projects": [{"id": 2}]}, {"id": 2, "s_projects": [{"id": 1}, {"id": 2}]}])
            )
        );
        // an unknown hint is named in the details
        let (s, v) = get("/s_sites?select=id,s_projects!space(id)").await;
        assert_eq!((s, v["code"].as_str()), (400, Some("PGRST200")));
        assert!(
            v["details"]
                .as_str()
                .unwrap()
                .contains("using the hint 'space'"),
            "{v}"
        );
        // an aliased embed takes filters and order by its relation name too
        let (s, v) =
            get("/s_tree?id=eq.1&select=id,kids:s_tree(id)&s_tree.order=id.desc&s_tree.id=lt.4")
                .await;
        assert_eq!(
            (s, v),
            (
                200,
                serde_json::json!([{"id": 1, "kids": [{"id": 3}, {"id": 2}]}])
            )
        );
        // JSON keys with special characters, select and filter
        let (s, v) = get("/s_json?select=data->!@%23$%25^%26*_d->>!@%23$%25^%26*_e::integer&data->!@%23$%25^%26*_d->>!@%23$%25^%26*_e=eq.3").await;
        assert_eq!((s, v), (200, serde_json::json!([{"!@#$%^&*_e": 3}])));
        let (s, v) = get("/s_json?select=data->>--34").await;
        assert_eq!((s, v["code"].as_str()), (400, Some("PGRST100")), "{v}");
        // upserts: 200 when nothing was inserted, 201 when something was
        let upsert = |body: serde_json::Value, path: &'static str| {
            let p = &p;
            let acme = &acme;
            async move {
                json_of(
                    p.post(path)
                        .bearer_auth(acme)
                        .header(
                            "Prefer",
                            "return=representation,resolution=merge-duplicates",
                        )
                        .json(&body)
                        .send()
                        .await
                        .unwrap(),
                )
                .await
            }
        };
        let (s, v) = upsert(serde_json::json!([{"k": "a", "v": 2}]), "/s_kv").await;
        assert_eq!((s, v), (200, serde_json::json!([{"k": "a", "v": 2}])));
        let (s, _) = upsert(
            serde_json::json!([{"k": "a", "v": 3}, {"k": "b", "v": 1}]),
            "/s_kv",
        )
        .await;
        assert_eq!(s, 201);
        let (s, v) = upsert(serde_json::json!([]), "/s_kv").await;
        assert_eq!((s, v), (200, serde_json::json!([])));
        // a table of key columns only returns every row, updated or inserted
        let (s, v) = upsert(
            serde_json::json!([{"id": 1}, {"id": 2}, {"id": 4}]),
            "/s_only_pk",
        )
        .await;
        assert_eq!(
            (s, v),
            (201, serde_json::json!([{"id": 1}, {"id": 2}, {"id": 4}]))
        );
        // no conflict target: resolution ignored (and not applied), a plain insert
        let r = p
            .post("/s_nopk")
            .bearer_auth(&acme)
            .header(
                "Prefer",
                "return=representation,resolution=merge-duplicates",
            )
            .json(&serde_json::json!([{"a": "1", "b": "0"}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["preference-applied"], "return=representation");
        assert_eq!(r.status(), 201);
        // PUT: 201 inserted, 200 updated, 204 minimal; an array puts its first element
        let put = |path: &'static str, body: serde_json::Value, prefer: &'static str| {
            let p = &p;
            let acme = &acme;
            async move {
                let r = p
                    .put(path)
                    .bearer_auth(acme)
                    .header("Prefer", prefer)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            }
        };
        assert_eq!(
            put(
                "/s_kv?k=eq.z",
                serde_json::json!({"k": "z", "v": 9}),
                "return=representation"
            )
            .await,
            201
        );
        assert_eq!(
            put(
                "/s_kv?k=eq.z",
                serde_json::json!({"k": "z", "v": 8}),
                "return=representation"
            )
            .await,
            200
        );
        assert_eq!(
            put(
                "/s_kv?k=eq.z",
                serde_json::json!({"k": "z", "v": 7}),
                "return=minimal"
            )
            .await,
            204
        );
        assert_eq!(
            put(
                "/s_kv?k=eq.a",
                serde_json::json!([{"k": "a", "v": 19}, {"k": "swift", "v": 12}]),
                "return=representation"
            )
            .await,
            200
        );
        let (_, v) = get("/s_kv?k=in.(a,swift,z)&order=k").await;
        assert_eq!(
            v,
            serde_json::json!([{"k": "a", "v": 19}, {"k": "z", "v": 7}])
        );
        // PATCH takes an array body's first object
        let r = p
            .patch("/s_kv?k=eq.a")
            .bearer_auth(&acme)
            .header("Prefer", "return=representation")
            .json(&serde_json::json!([{"v": 42}]))
            .send()
            .await
            .unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!((s, v), (200, serde_json::json!([{"k": "a", "v": 42}])));
        // an empty write with the singular Accept is 406, not a 201 of []
        let r = p
            .post("/s_kv")
            .bearer_auth(&acme)
            .header("Accept", "application/vnd.pgrst.object+json")
            .json(&serde_json::json!([]))
            .send()
            .await
            .unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!((s, v["code"].as_str()), (406, Some("PGRST116")), "{v}");
        // character / bit parameters are not cut to one character
        let (s, v) = get("/rpc/s_chars?c=abcdefg&cs={abc,abcdefg}&b=101010").await;
        assert_eq!(
            (s, v),
            (
                200,
                serde_json::json!({"c": "abcdefg", "cs": ["abc", "abcdefg"], "b": "101010"})
            )
        );
    };
    finish(guarded(result).await, &db, vec![p]).await;
}

/// PostgREST v12.2 behaviour found by replaying its own specs: data
/// representations (domain casts to and from json/text), the singular
/// error's media type, `Preference-Applied` on errors, the RAISE 'PGRST'
/// reason phrase and v12.2 PGRST121, `Content-Location`, PostgREST's parse
/// error wording, a CSV body to a function, candidate type names, and
/// relationship errors before unknown columns.
#[tokio::test]
async fn postgrest_spec_data_representations_and_errors() {
    let db = TestDb::create("specreps").await;
    db.admin()
        .await
        .batch_execute(
            r#"CREATE DOMAIN esg.s_color AS integer CHECK (VALUE BETWEEN 0 AND 16777215);
             CREATE FUNCTION esg.s_color(text) RETURNS esg.s_color LANGUAGE sql IMMUTABLE
               AS $$ SELECT (('x' || lpad(ltrim($1, '#'), 8, '0'))::bit(32)::int)::esg.s_color $$;
             CREATE FUNCTION esg.s_color(json) RETURNS esg.s_color LANGUAGE sql IMMUTABLE
               AS $$ SELECT esg.s_color($1 #>> '{}') $$;
             CREATE FUNCTION esg.json(esg.s_color) RETURNS json LANGUAGE sql IMMUTABLE
               AS $$ SELECT to_json('#' || lpad(upper(to_hex($1)), 6, '0')) $$;
             CREATE CAST (esg.s_color AS json) WITH FUNCTION esg.json(esg.s_color) AS IMPLICIT;
             CREATE CAST (json AS esg.s_color) WITH FUNCTION esg.s_color(json) AS IMPLICIT;
             CREATE CAST (text AS esg.s_color) WITH FUNCTION esg.s_color(text) AS IMPLICIT;
             CREATE TABLE esg.s_todos (id int PRIMARY KEY, name text, color esg.s_color DEFAULT 0);
             INSERT INTO esg.s_todos VALUES (1, 'one', 256), (2, 'two', 65280), (3, 'three', 0);
             CREATE TABLE esg.s_notes (id int PRIMARY KEY, todo int REFERENCES esg.s_todos);
             INSERT INTO esg.s_notes VALUES (10, 2);
             CREATE FUNCTION esg.s_over(a int) RETURNS int LANGUAGE sql STABLE AS $$ SELECT a $$;
             CREATE FUNCTION esg.s_over(a text) RETURNS int LANGUAGE sql STABLE AS $$ SELECT 1 $$;
             CREATE FUNCTION esg.s_pair(x int, y int) RETURNS int LANGUAGE sql STABLE AS $$ SELECT x + y $$;
             CREATE DOMAIN esg.s_todo_row AS esg.s_todos;
             CREATE FUNCTION esg.s_todo(id int) RETURNS esg.s_todo_row LANGUAGE sql STABLE
               AS $$ SELECT t::esg.s_todo_row FROM esg.s_todos t WHERE t.id = s_todo.id $$;
             CREATE FUNCTION esg.s_records() RETURNS SETOF record LANGUAGE sql STABLE
               AS $$ SELECT id, name FROM esg.s_todos ORDER BY id LIMIT 2 $$;
             CREATE TABLE esg.s_words (id int PRIMARY KEY, word text);
             INSERT INTO esg.s_words VALUES (1, 'one'), (2, 'two');
             CREATE DOMAIN esg."text/tab-separated-values" AS text;
             CREATE FUNCTION esg.s_tsv_trans(state text, next esg.s_words) RETURNS text LANGUAGE sql
               AS $$ SELECT state || next.id || E'\t' || next.word || E'\n' $$;
             CREATE FUNCTION esg.s_tsv_final(state text) RETURNS esg."text/tab-separated-values" LANGUAGE sql
               AS $$ SELECT (E'id\tword\n' || state)::esg."text/tab-separated-values" $$;
             CREATE AGGREGATE esg.s_tsv(esg.s_words) (initcond = '', stype = text,
               sfunc = esg.s_tsv_trans, finalfunc = esg.s_tsv_final);
             CREATE FUNCTION esg.s_all_words() RETURNS SETOF esg.s_words LANGUAGE sql STABLE
               AS $$ SELECT * FROM esg.s_words $$;
             CREATE TABLE esg.s_deferred (c int UNIQUE DEFERRABLE INITIALLY IMMEDIATE);
             CREATE FUNCTION esg.s_raise_deferred() RETURNS void LANGUAGE plpgsql AS $$
               BEGIN SET CONSTRAINTS ALL DEFERRED; INSERT INTO esg.s_deferred VALUES (1), (1); END $$;
             CREATE DOMAIN esg."pg/outfunc" AS text;
             CREATE FUNCTION esg.s_out_trans(state esg."pg/outfunc", next anyelement) RETURNS esg."pg/outfunc"
               LANGUAGE sql AS $$ SELECT (state || next::text || E'\n')::esg."pg/outfunc" $$;
             CREATE AGGREGATE esg.s_out(anyelement) (initcond = '', stype = esg."pg/outfunc", sfunc = esg.s_out_trans);
             CREATE FUNCTION esg.s_raise(bad boolean) RETURNS void LANGUAGE plpgsql AS $$
               BEGIN
                 IF bad THEN
                   RAISE SQLSTATE 'PGRST' USING message = 'not json', detail = '{"status": 400}';
                 END IF;
                 RAISE SQLSTATE 'PGRST' USING message = '{"code": "X1", "message": "gone"}',
                   detail = '{"status": 410, "status_text": "Long Gone", "headers": {"X-Why": "because"}}';
               END $$;
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA esg TO tenancy_member;
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO tenancy_member;"#,
        )
        .await
        .unwrap();
    let mut config = db.config();
    config.db_tx_end = "commit-allow-override".into();
    config.db_plan_enabled = true;
    let p = db.proxy(config).await;
    let result = async {
        let acme = member("acme");
        let get = |path: &'static str| {
            let p = &p;
            let acme = &acme;
            async move { json_of(p.get(path).bearer_auth(acme).send().await.unwrap()).await }
        };
        // reads: `*`, a column, an embed, all through the json function;
        // a cast applies to the json value, as in PostgREST
        let (s, v) = get("/s_todos?order=id&limit=2").await;
        assert_eq!(
            (s, v),
            (
                200,
                serde_json::json!([{"id": 1, "name": "one", "color": "#000100"}, {"id": 2, "name": "two", "color": "#00FF00"}])
            )
        );
        let (_, v) = get("/s_notes?select=id,s_todos(color,raw:color::text)").await;
        assert_eq!(
            v,
            serde_json::json!([{"id": 10, "s_todos": {"color": "#00FF00", "raw": "\"#00FF00\""}}])
        );
        // filters take their value through the text function
        let (_, v) = get("/s_todos?select=id&color=eq.%2300FF00").await;
        assert_eq!(v, serde_json::json!([{"id": 2}]));
        let (_, v) = get("/s_todos?select=id&color=in.(%23000100,%23000000)&order=id").await;
        assert_eq!(v, serde_json::json!([{"id": 1}, {"id": 3}]));
        let (_, v) = get("/s_todos?select=id&color=gt.%23000100").await;
        assert_eq!(v, serde_json::json!([{"id": 2}]));
        // writes take the body's value through the json function: bulk,
        // missing=default, PATCH and an upsert
        let write = |m: reqwest::Method,
                     path: &'static str,
                     body: serde_json::Value,
                     prefer: &'static str| {
            let p = &p;
            let acme = &acme;
            async move {
                json_of(
                    p.request(m, path)
                        .bearer_auth(acme)
                        .header("Prefer", prefer)
                        .json(&body)
                        .send()
                        .await
                        .unwrap(),
                )
                .await
            }
        };
        let (s, v) = write(
            reqwest::Method::POST,
            "/s_todos",
            serde_json::json!([{"id": 4, "name": "four", "color": "#0000FF"}, {"id": 5, "name": "five", "color": "#FF0000"}]),
            "return=representation",
        )
        .await;
        assert_eq!(
            (s, v),
            (
                201,
                serde_json::json!([{"id": 4, "name": "four", "color": "#0000FF"}, {"id": 5, "name": "five", "color": "#FF0000"}])
            )
        );
        let (s, v) = write(
            reqwest::Method::POST,
            "/s_todos?columns=id,name,color",
            serde_json::json!([{"id": 6, "color": "#000001"}, {"id": 7, "name": "seven"}]),
            "return=representation,missing=default",
        )
        .await;
        assert_eq!(
            (s, v),
            (
                201,
                serde_json::json!([{"id": 6, "name": null, "color": "#000001"}, {"id": 7, "name": "seven", "color": "#000000"}])
            )
        );
        let (s, v) = write(
            reqwest::Method::PATCH,
            "/s_todos?id=eq.7",
            serde_json::json!({"color": "#ABCDEF", "name": "sept"}),
            "return=representation",
        )
        .await;
        assert_eq!(
            (s, v),
            (
                200,
                serde_json::json!([{"id": 7, "name": "sept", "color": "#ABCDEF"}])
            )
        );
        let (s, _) = write(
            reqwest::Method::POST,
            "/s_todos",
            serde_json::json!({"id": 7, "name": "sept", "color": "#000007"}),
            "resolution=merge-duplicates",
        )
        .await;
        assert_eq!(s, 200);
        let stored: i32 = db
            .admin()
            .await
            .query_one("SELECT color FROM esg.s_todos WHERE id = 7", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored, 7);
        // a bad value is the function's error, not a parse of the domain's text
        let (s, v) = write(
            reqwest::Method::POST,
            "/s_todos",
            serde_json::json!({"id": 8, "color": "#FFFFFFFF"}),
            "return=minimal",
        )
        .await;
        assert_eq!((s, v["code"].as_str()), (400, Some("23514")), "{v}");

        // a deferred constraint is checked before a rollback too: the
        // violation is the response, as on commit (PostgREST's RollbackSpec)
        for prefer in ["tx=rollback", "tx=commit"] {
            let (s, v) = json_of(
                p.post("/rpc/s_raise_deferred")
                    .bearer_auth(&acme)
                    .header("Prefer", prefer)
                    .json(&serde_json::json!({}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(
                (s, v["code"].as_str()),
                (409, Some("23505")),
                "{prefer}: {v}"
            );
        }
        let (s, v) = get("/s_deferred?select=c").await;
        assert_eq!((s, v), (200, serde_json::json!([])));

        // the singular error is JSON as every error (PostgREST 12.0.3
        // stopped echoing the singular media type) and, with a tx
        // preference, says which it applied
        let r = p
            .get("/s_todos")
            .bearer_auth(&acme)
            .header("Accept", "application/vnd.pgrst.object+json")
            .header("Prefer", "tx=rollback")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 406);
        assert_eq!(
            r.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        assert_eq!(r.headers()["preference-applied"], "tx=rollback");
        // RAISE 'PGRST': the reason phrase, the headers; 12.2's PGRST121
        let r = p
            .get("/rpc/s_raise?bad=false")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 410);
        assert_eq!(r.status().canonical_reason(), Some("Gone"));
        assert_eq!(r.headers()["x-why"], "because");
        let raw = raw_status_line(&p.base, "/rpc/s_raise?bad=false", &acme).await;
        assert_eq!(raw, "HTTP/1.1 410 Long Gone");
        let (s, v) = get("/rpc/s_raise?bad=true").await;
        assert_eq!(
            (s, v),
            (
                500,
                serde_json::json!({"code": "PGRST121",
                    "details": "Invalid JSON value for MESSAGE: 'not json'",
                    "hint": "MESSAGE must be a JSON object with obligatory keys: 'code', 'message' and optional keys: 'details', 'hint'.",
                    "message": "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error"})
            )
        );
        // Content-Location: the table and the sorted query string
        let r = p
            .get("/s_todos?select=id&name=eq.one%20two&id=gt.0")
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["content-location"],
            "/s_todos?id=gt.0&name=eq.one%20two&select=id"
        );
        // two schemas exposed (esg, tenancy): a body says which one it is from
        assert_eq!(r.headers()["content-profile"], "esg");
        let r = p
            .patch("/s_todos?id=eq.1")
            .bearer_auth(&acme)
            .header("Content-Profile", "esg")
            .header("Prefer", "tx=rollback")
            .json(&serde_json::json!({"name": "uno"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        assert!(r.headers().get("content-profile").is_none());
        // the OpenAPI description too, for the default schema and a chosen one
        for (profile, want) in [(None, "esg"), (Some("tenancy"), "tenancy")] {
            let mut req = p.get("/").bearer_auth(&acme);
            if let Some(pr) = profile {
                req = req.header("Accept-Profile", pr);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            assert_eq!(r.headers()["content-profile"], want);
        }
        // PostgREST's parse error wording
        let (s, v) = get("/s_todos?order=id.ac").await;
        assert_eq!(
            (s, v),
            (
                400,
                serde_json::json!({"code": "PGRST100", "hint": null,
                    "details": "unexpected \"c\" expecting \"asc\", \"desc\", \"nullsfirst\" or \"nullslast\"",
                    "message": "\"failed to parse order (id.ac)\" (line 1, column 4)"})
            )
        );
        let (_, v) = get("/s_todos?or=()").await;
        assert_eq!(
            v["message"],
            "\"failed to parse logic tree (())\" (line 1, column 4)"
        );
        let (_, v) = get("/s_todos?id=1").await;
        assert_eq!(
            (v["message"].as_str(), v["details"].as_str()),
            (
                Some("\"failed to parse filter (1)\" (line 1, column 1)"),
                Some("unexpected \"1\" expecting \"not\" or operator (eq, gt, ...)")
            )
        );
        // a missing relationship before an unknown column
        let (s, v) = get("/s_todos?select=nope,s_nothing(id)").await;
        assert_eq!((s, v["code"].as_str()), (400, Some("PGRST200")), "{v}");
        // bodies: invalid JSON, an array of non-objects
        let r = p
            .post("/s_todos")
            .bearer_auth(&acme)
            .header("Content-Type", "application/json")
            .body("}{ x = 2")
            .send()
            .await
            .unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!(
            (s, v),
            (
                400,
                serde_json::json!({"code": "PGRST102", "details": null, "hint": null, "message": "Empty or invalid json"})
            )
        );
        let (s, v) = write(
            reqwest::Method::POST,
            "/s_todos",
            serde_json::json!([{"id": 9}, 1]),
            "return=minimal",
        )
        .await;
        assert_eq!(
            (s, v["message"].as_str()),
            (400, Some("All object keys must match"))
        );
        // functions: candidates with their full type names; a CSV body's
        // header names the arguments (404 with the closest overload)
        let (s, v) = get("/rpc/s_over?a=1").await;
        assert_eq!(
            (s, v["message"].as_str()),
            (
                300,
                Some("Could not choose the best candidate function between: esg.s_over(a => integer), esg.s_over(a => text)")
            )
        );
        let r = p
            .post("/rpc/s_pair")
            .bearer_auth(&acme)
            .header("Content-Type", "text/csv")
            .body("x,z\n1,2\n3,4")
            .send()
            .await
            .unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!(
            (s, v["code"].as_str(), v["hint"].as_str()),
            (
                404,
                Some("PGRST202"),
                Some("Perhaps you meant to call the function esg.s_pair(x, y)")
            ),
            "{v}"
        );
        // a function returning a domain over a table's row embeds like the
        // table; `SETOF record` rows are objects named by the function's query
        let (s, v) = get("/rpc/s_todo?id=2&select=id,s_notes(id)").await;
        assert_eq!(
            (s, v),
            (200, serde_json::json!({"id": 2, "s_notes": [{"id": 10}]}))
        );
        let (s, v) = get("/rpc/s_records").await;
        assert_eq!(
            (s, v),
            (
                200,
                serde_json::json!([{"id": 1, "name": "one"}, {"id": 2, "name": "two"}])
            )
        );
        let (_, v) = get("/rpc/s_records?limit=1").await;
        assert_eq!(v, serde_json::json!([{"id": 1, "name": "one"}]));
        // media type handlers for tables: an aggregate over the rows, for
        // its own relation (whole rows only) or any (anyelement)
        let accept = |path: &'static str, mt: &'static str| {
            let p = &p;
            let acme = &acme;
            async move {
                let r = p
                    .get(path)
                    .bearer_auth(acme)
                    .header("Accept", mt)
                    .send()
                    .await
                    .unwrap();
                let ct = r.headers()["content-type"].to_str().unwrap().to_string();
                (r.status().as_u16(), ct, r.text().await.unwrap())
            }
        };
        assert_eq!(
            accept("/s_words?order=id", "text/tab-separated-values").await,
            (
                200,
                "text/tab-separated-values".to_string(),
                "id\tword\n1\tone\n2\ttwo\n".to_string()
            )
        );
        let (s, _, body) = accept("/s_words?select=id", "text/tab-separated-values").await;
        assert_eq!(s, 406, "{body}");
        assert_eq!(
            accept("/s_words?select=word,id&order=id", "pg/outfunc").await,
            (
                200,
                "pg/outfunc".to_string(),
                "(one,1)\n(two,2)\n".to_string()
            )
        );
        let (s, ct, _) = accept("/s_words", "application/json").await;
        assert_eq!((s, ct.as_str()), (200, "application/json; charset=utf-8"));
        let (s, _, _) = accept("/s_words", "text/bogus").await;
        assert_eq!(s, 406);
        // a function returning the table's rows answers in its handlers too
        assert_eq!(
            accept("/rpc/s_all_words?order=id", "text/tab-separated-values").await,
            (
                200,
                "text/tab-separated-values".to_string(),
                "id\tword\n1\tone\n2\ttwo\n".to_string()
            )
        );
        assert_eq!(
            accept(
                "/rpc/s_all_words?select=word,id&order=id&limit=1",
                "pg/outfunc"
            )
            .await,
            (200, "pg/outfunc".to_string(), "(one,1)\n".to_string())
        );
        let (s, _, _) = accept("/rpc/s_all_words", "text/bogus").await;
        assert_eq!(s, 406);
        // their execution plans: the aggregate over the rows
        for path in ["/s_words?order=id", "/rpc/s_all_words?order=id"] {
            let (s, ct, body) = accept(
                path,
                r#"application/vnd.pgrst.plan; for="text/tab-separated-values""#,
            )
            .await;
            assert_eq!(
                (s, ct.as_str()),
                (
                    200,
                    r#"application/vnd.pgrst.plan+text; for="text/tab-separated-values"; charset=utf-8"#
                ),
                "{path} {body}"
            );
            assert!(body.contains("Aggregate"), "{path} {body}");
        }
        let (s, ct, _) = accept("/rpc/s_all_words", "application/json").await;
        assert_eq!((s, ct.as_str()), (200, "application/json; charset=utf-8"));
        // a raw text body gets no hint
        let r = p
            .post("/rpc/s_pair")
            .bearer_auth(&acme)
            .header("Content-Type", "text/plain")
            .body("hello")
            .send()
            .await
            .unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!((s, &v["hint"]), (404, &serde_json::Value::Null), "{v}");
    };
    finish(guarded(result).await, &db, vec![p]).await;
}

/// The status line as sent (reqwest keeps no reason phrase).
async fn raw_status_line(base: &str, path: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}
