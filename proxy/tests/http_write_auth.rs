//! Writes, RPC, JWT cases, tenant isolation, rate limits and metrics through HTTP.

mod common;
use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_rpc_auth_isolation() {
    let db = TestDb::create("wa").await;
    let p = db.proxy(db.config()).await;
    let outcome = guarded(async {
        writes(&p).await;
        rpc(&p).await;
        jwt_cases(&p).await;
        jwt_options(&db).await;
        jwt_keys(&db).await;
        isolation(&p).await;
        pooled_isolation(&db).await;
        rate_limits(&db).await;
        metrics(&p).await;
    })
    .await;
    p.stop().await;
    db.drop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

async fn writes(p: &Proxy) {
    let t = member("initech");
    // single insert, representation with embed
    let r = p
        .post("/metrics?select=code,units(name)")
        .bearer_auth(&t)
        .header("Prefer", "return=representation")
        .json(&json!({"code": "co2", "name": "CO2", "unit": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["preference-applied"], "return=representation");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!([{"code": "co2", "units": {"name": "tonnes"}}]));
    // bulk, minimal
    let r = p
        .post("/metrics")
        .bearer_auth(&t)
        .json(&json!([{"code": "b1", "name": "B1", "unit": "t"}, {"code": "b2", "name": "B2", "unit": "t"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.text().await.unwrap(), "");
    // the written rows come back in the top-level order (insert, update)
    let r = p
        .post("/metrics?select=code&order=code.desc")
        .bearer_auth(&t)
        .header("Prefer", "return=representation")
        .json(&json!([{"code": "o1", "name": "O1", "unit": "t"}, {"code": "o2", "name": "O2", "unit": "t"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!([{"code": "o2"}, {"code": "o1"}]));
    let r = p
        .patch("/metrics?select=code&code=in.(o1,o2)&order=code.desc")
        .bearer_auth(&t)
        .header("Prefer", "return=representation")
        .json(&json!({"name": "O"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!([{"code": "o2"}, {"code": "o1"}]));
    // (the tenant's plan allows 20 requests a second: let the bucket refill)
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    // keys must match
    let (s, v) = json_of(
        p.post("/metrics")
            .bearer_auth(&t)
            .json(&json!([{"code": "x"}, {"name": "y"}]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("PGRST102")));
    // missing=default
    let r = p
        .post("/reporting_entities?select=kind")
        .bearer_auth(&t)
        .header("Prefer", "return=representation,missing=default")
        .json(&json!([{"name": "A", "organisation_id": 1000000}, {"name": "B", "organisation_id": 1000000, "kind": "office"}]))
        .send()
        .await
        .unwrap();
    // FK to an org that does not exist: 409
    assert_eq!(r.status(), 409);
    let (_, orgs) = json_of(
        p.get("/organisations?select=id&limit=1")
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let org = orgs[0]["id"].as_i64().unwrap();
    let (s, v) = json_of(
        p.post("/reporting_entities?select=kind")
            .bearer_auth(&t)
            .header("Prefer", "return=representation,missing=default")
            .json(&json!([{"name": "A", "organisation_id": org}, {"name": "B", "organisation_id": org, "kind": "office"}]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v, json!([{"kind": "site"}, {"kind": "office"}]));
    // rows lacking different keys: each gets the column's own default,
    // evaluated per row (a volatile one too), in the body's order
    let given = "00000000-0000-4000-8000-00000000000a";
    let (s, v) = json_of(
        p.post("/reporting_entities?columns=id,name,organisation_id,kind&select=id,name,kind")
            .bearer_auth(&t)
            .header("Prefer", "return=representation,missing=default")
            .json(&json!([
                {"name": "md1", "organisation_id": org},
                {"id": given, "name": "md2", "organisation_id": org, "kind": "office"},
                {"name": "md3", "organisation_id": org, "kind": "plant"},
                {"name": "md4", "organisation_id": org}
            ]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let names: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, ["md1", "md2", "md3", "md4"], "{v}");
    let kinds: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].clone())
        .collect();
    assert_eq!(kinds, ["site", "office", "plant", "site"], "{v}");
    assert_eq!(v[1]["id"], given);
    let ids: std::collections::HashSet<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].to_string())
        .collect();
    assert_eq!(ids.len(), 4, "one default per row: {v}");
    // and a large such body stays linear: 20,000 objects (1.3 MB) once
    // made the server plan 60,000 reads of the whole body and run out of
    // memory (every backend restarted)
    let rows: Vec<Value> = (0..20_000)
        .map(|i| {
            if i % 2 == 0 {
                json!({"name": format!("bulk{i}"), "organisation_id": org})
            } else {
                json!({"name": format!("bulk{i}"), "organisation_id": org, "kind": "office"})
            }
        })
        .collect();
    let started = std::time::Instant::now();
    let r = p
        .post("/reporting_entities")
        .bearer_auth(&t)
        .header("Prefer", "return=minimal,missing=default,count=exact")
        .json(&rows)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["content-range"], "*/20000");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let r = p
        .get("/reporting_entities?name=like.bulk*&kind=eq.site&select=id")
        .bearer_auth(&t)
        .header("Prefer", "count=exact")
        .header("Range", "0-0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-range"], "0-0/10000");
    // unique violation → 409 with the database's code
    let (s, v) = json_of(
        p.post("/metrics")
            .bearer_auth(&t)
            .json(&json!({"code": "co2", "name": "again", "unit": "t"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("23505")), "{v}");
    // upsert merge / ignore
    let (s, v) = json_of(
        p.post("/metrics?on_conflict=tenant_id,code&select=code,name")
            .bearer_auth(&t)
            .header(
                "Prefer",
                "resolution=merge-duplicates,return=representation",
            )
            .json(&json!({"code": "co2", "name": "CO2 merged", "unit": "t"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // the row existed: merged, nothing inserted, so 200 (PostgREST v12)
    assert_eq!(
        (s, v.clone()),
        (200, json!([{"code": "co2", "name": "CO2 merged"}]))
    );
    let (s, v) = json_of(
        p.post("/metrics?on_conflict=tenant_id,code")
            .bearer_auth(&t)
            .header(
                "Prefer",
                "resolution=ignore-duplicates,return=representation",
            )
            .json(&json!({"code": "co2", "name": "ignored", "unit": "t"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (201, json!([])));
    // unknown column
    let (s, v) = json_of(
        p.post("/metrics")
            .bearer_auth(&t)
            .json(&json!({"nope": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("PGRST204")));
    // invalid json
    let (s, v) = json_of(
        p.post("/metrics")
            .bearer_auth(&t)
            .body("{nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("PGRST102")));
    // PATCH with filters
    let r = p
        .patch("/metrics?code=in.(b1,b2)&select=code,name")
        .bearer_auth(&t)
        .header("Prefer", "return=representation,count=exact")
        .json(&json!({"name": "patched"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-range"], "0-1/2");
    let v: Value = r.json().await.unwrap();
    assert!(v.as_array().unwrap().iter().all(|m| m["name"] == "patched"));
    // PATCH singular on 2 rows → 406 and nothing changed
    let (s, v) = json_of(
        p.patch("/metrics?code=in.(b1,b2)")
            .bearer_auth(&t)
            .header("Prefer", "return=representation")
            .header("Accept", "application/vnd.pgrst.object+json")
            .json(&json!({"name": "never"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (406, Some("PGRST116")));
    let (_, v) = json_of(
        p.get("/metrics?name=eq.never")
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v, json!([]));
    // DELETE
    let r = p
        .delete("/metrics?code=eq.b2")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, v) = json_of(
        p.get("/metrics?code=eq.b2")
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v, json!([]));
    // PUT: one-row upsert by primary key
    let (s, v) = json_of(
        p.put("/units?code=eq.kg")
            .header("Prefer", "return=representation")
            .bearer_auth(jwt(json!({"role": "tenancy_superadmin_nope"})))
            .json(&json!({"code": "kg", "name": "kilogram"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401, "unknown role: {v}");
    let (s, v) = json_of(
        p.put("/units?code=eq.kg")
            .bearer_auth(&t)
            .json(&json!({"code": "kg2", "name": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("PGRST115")));
    let (s, v) = json_of(
        p.put("/units?name=eq.kg")
            .bearer_auth(&t)
            .json(&json!({"code": "kg", "name": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (405, Some("PGRST105")));
    // viewer cannot write: 403 with the database's code
    let viewer = jwt(json!({"role": "tenancy_viewer", "tenant_id": "initech"}));
    let (s, v) = json_of(
        p.post("/metrics")
            .bearer_auth(&viewer)
            .json(&json!({"code": "v", "name": "v", "unit": "t"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (403, Some("42501")), "{v}");
    // anonymous write → 401 with WWW-Authenticate
    let r = p
        .post("/metrics")
        .json(&json!({"code": "v", "name": "v", "unit": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
}

async fn rpc(p: &Proxy) {
    let t = member("globex");
    let (s, v) = json_of(p.get("/rpc/add?a=1&b=5").send().await.unwrap()).await;
    assert_eq!((s, v), (200, json!(6)));
    let (s, v) = json_of(
        p.post("/rpc/add")
            .json(&json!({"a": 40}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!(42)));
    let (s, v) = json_of(
        p.get("/rpc/metric_count")
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!(5)));
    // set-returning with filters, order, limit
    let (s, v) = json_of(
        p.get("/rpc/entities_of?k=plant&select=name&order=name.desc&limit=1")
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 1);
    // with count=exact: the total of matching rows, without paging
    let r = p
        .get("/rpc/entities_of?k=plant&select=name&limit=1")
        .bearer_auth(&t)
        .header("Prefer", "count=exact")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let range = r.headers()["content-range"].to_str().unwrap().to_string();
    assert!(
        range.starts_with("0-0/") && !range.ends_with('*'),
        "{range}"
    );
    let (s, v) = json_of(p.get("/rpc/codes").bearer_auth(&t).send().await.unwrap()).await;
    assert_eq!((s, v.as_array().map(|a| a.len())), (200, Some(5)));
    let (s, v) = json_of(p.get("/rpc/totals").bearer_auth(&t).send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["n"], 240);
    // volatile through POST writes; through GET it is read-only → 405
    let (s, v) = json_of(
        p.post("/rpc/new_metric")
            .bearer_auth(&t)
            .json(&json!({"code": "r1", "name": "R1"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["code"], "r1");
    let (s, v) = json_of(
        p.get("/rpc/new_metric?code=r2&name=R2")
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (405, Some("25006")), "{v}");
    // void → 204
    let r = p.post("/rpc/noop").send().await.unwrap();
    assert_eq!(r.status(), 204);
    // errors raised by functions
    let (s, v) = json_of(
        p.post("/rpc/fail")
            .json(&json!({"code": "P0001"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str(), v["hint"].as_str()),
        (400, Some("P0001"), Some("a hint"))
    );
    let (s, v) = json_of(
        p.post("/rpc/fail")
            .json(&json!({"code": "PT402"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (402, Some("PT402")));
    // response.status / response.headers
    let r = p.get("/rpc/teapot").send().await.unwrap();
    assert_eq!(r.status(), 418);
    assert_eq!(r.headers()["x-test"], "yes");
    // request settings reach the SQL
    let (s, v) = json_of(p.get("/rpc/whoami").bearer_auth(&t).send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["role"], "tenancy_member");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["claims"]["tenant_id"], "globex");
    assert!(v["tenant"].is_string());
    // unknown function / wrong args
    let (s, v) = json_of(
        p.post("/rpc/add")
            .json(&json!({"zzz": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (404, Some("PGRST202")));
    let (s, v) = json_of(p.delete("/rpc/add").send().await.unwrap()).await;
    assert_eq!((s, v["code"].as_str()), (405, Some("PGRST101")));
}

async fn jwt_cases(p: &Proxy) {
    let status = |r: &reqwest::Response| r.status().as_u16();
    let cases: Vec<(String, u16, &str)> = vec![
        (
            jwt(json!({"role": "tenancy_member", "exp": now() - 3600})),
            401,
            "PGRST303",
        ),
        (
            jwt(json!({"role": "tenancy_member", "nbf": now() + 3600})),
            401,
            "PGRST303",
        ),
        (
            jwt(json!({"role": "tenancy_member", "iat": now() + 3600})),
            401,
            "PGRST303",
        ),
        // exp/nbf that are not numbers, or negative: refused, not skipped
        (
            jwt(json!({"role": "tenancy_member", "exp": (now() - 86400).to_string()})),
            401,
            "PGRST303",
        ),
        (
            jwt(json!({"role": "tenancy_member", "nbf": "9999999999"})),
            401,
            "PGRST303",
        ),
        (
            jwt(json!({"role": "tenancy_member", "exp": -5})),
            401,
            "PGRST303",
        ),
        (
            jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &json!({"role": "tenancy_member"}),
                &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-another"),
            )
            .unwrap(),
            401,
            "PGRST301",
        ),
        ("not.a.jwt".to_string(), 401, "PGRST301"),
        ("garbage".to_string(), 401, "PGRST301"),
        (jwt(json!({"role": "no_such_role_xyz"})), 401, "22023"),
    ];
    // twice each: the same answer whether the token cache has seen it or not
    for (tok, want, code) in cases.iter().chain(cases.iter()) {
        let r = p.get("/units").bearer_auth(tok).send().await.unwrap();
        assert_eq!(status(&r), *want, "{tok}");
        assert!(r.headers().contains_key("www-authenticate"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], *code, "{v}");
    }
    // another scheme carries no JWT: anonymous, as PostgREST (the anon
    // role reads the reference table, and no tenant's rows)
    let r = p
        .get("/units")
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 200);
    let (s, v) = json_of(
        p.get("/metrics")
            .header("Authorization", "Basic dXNlcjpwYXNz")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(s == 401 || v == json!([]), "{s} {v}");
    // no role claim → anon role: reads the reference table, not tenant tables
    let (s, v) = json_of(
        p.get("/units")
            .bearer_auth(jwt(json!({"sub": "x"})))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v.as_array().map(|a| a.len() >= 5)), (200, Some(true)));
    let (s, v) = json_of(
        p.get("/metrics")
            .bearer_auth(jwt(json!({"sub": "x"})))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // ...and, running as the anonymous role, is anonymous: 401 as without a
    // token (PostgREST: authenticated means a role other than the anonymous one)
    assert_eq!((s, v["code"].as_str()), (401, Some("42501")), "{v}");
    let (s, v) = json_of(p.get("/metrics").send().await.unwrap()).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("42501")), "{v}");
}

/// `jwt-aud`, `jwt-role-claim-key`, and the verified-token cache honouring `exp`.
async fn jwt_options(db: &TestDb) {
    let mut c = db.config();
    c.jwt_aud = Some("api".into());
    c.jwt_role_claim_key = ".app_metadata.\"pg role\"".into();
    c.jwt_cache_max_lifetime = 3600;
    let p = db.proxy(c).await;
    let get = |tok: String| {
        let r = p
            .get("/metrics?select=code&limit=1")
            .bearer_auth(tok)
            .send();
        async move { json_of(r.await.unwrap()).await }
    };
    let member = |aud: Value| {
        jwt(
            json!({"aud": aud, "app_metadata": {"pg role": "tenancy_member"}, "tenant_id": "acme", "exp": now() + 600}),
        )
    };
    // the role comes from the configured path; aud may be a string or a list
    for aud in [json!("api"), json!(["web", "api"]), Value::Null] {
        let (s, v) = get(member(aud.clone())).await;
        assert_eq!(s, 200, "{aud}: {v}");
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    }
    for aud in [json!("web"), json!(["web"])] {
        let (s, v) = get(member(aud.clone())).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (401, Some("PGRST303")),
            "{aud}: {v}"
        );
        assert_eq!(v["message"], "JWT not in audience");
    }
    // not a string or strings: refused for its shape
    let (s, v) = get(member(json!(7))).await;
    assert_eq!(
        (s, v["message"].as_str()),
        (
            401,
            Some("The JWT 'aud' claim must be a string or an array of strings")
        )
    );
    // `role` at the top level is not where this deployment keeps it: the
    // anon role, which may not read tenant tables (401: as the anonymous role
    // the request is anonymous, token or not)
    let (s, v) = get(jwt(json!({"role": "tenancy_member", "tenant_id": "acme"}))).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("42501")), "{v}");
    // a cached token is re-checked against the clock: valid now (inside the
    // 30 s leeway), expired three seconds later
    let tok = jwt(
        json!({"app_metadata": {"pg role": "tenancy_member"}, "tenant_id": "acme", "exp": now() - 28}),
    );
    assert_eq!(get(tok.clone()).await.0, 200);
    assert_eq!(get(tok.clone()).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (s, v) = get(tok).await;
    assert_eq!(
        (s, v["message"].as_str()),
        (401, Some("JWT expired")),
        "{v}"
    );
    p.stop().await;
}

/// `jwt-secret` as a JWK set from `@file` (RS256, ES256, EdDSA picked by
/// `alg` and `kid`), attacks on it, a base64 secret and `db-uri = @file`.
async fn jwt_keys(db: &TestDb) {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
    let pem = |f: &str| std::fs::read(format!("{fixtures}/{f}")).unwrap();
    let sign = |alg: jsonwebtoken::Algorithm,
                kid: Option<&str>,
                key: jsonwebtoken::EncodingKey,
                claims: Value| {
        let mut h = jsonwebtoken::Header::new(alg);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&h, &claims, &key).unwrap()
    };
    use jsonwebtoken::{Algorithm as A, EncodingKey as K};
    let rsa = || K::from_rsa_pem(&pem("rsa.pem")).unwrap();
    let ec = || K::from_ec_pem(&pem("ec.pem")).unwrap();
    let ed = || K::from_ed_pem(&pem("ed.pem")).unwrap();
    let claims =
        |tenant: &str| json!({"role": "tenancy_member", "tenant_id": tenant, "exp": now() + 600});

    let mut c = db.config();
    c.jwt_secret = Some(format!("@{fixtures}/jwks.json"));
    c.jwt_cache_max_lifetime = 0;
    let p = db.proxy(c).await;
    let acme = tenant_of(&p, &sign(A::RS256, Some("rsa-1"), rsa(), claims("acme"))).await;
    let globex = tenant_of(&p, &sign(A::ES256, Some("ec-1"), ec(), claims("globex"))).await;
    let initech = tenant_of(&p, &sign(A::EdDSA, None, ed(), claims("initech"))).await;
    assert_eq!((acme.len(), globex.len(), initech.len()), (1, 1, 1));
    assert!(acme != globex && globex != initech && acme != initech);

    let jwks = String::from_utf8(pem("jwks.json")).unwrap();
    let set: Value = serde_json::from_str(&jwks).unwrap();
    let n = set["keys"][0]["n"].as_str().unwrap().to_string();
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims("acme"))
    );
    let attacks: Vec<(&str, String, &str)> = vec![
        // algorithm confusion: HS256 keyed with the public key's material
        (
            "HS256 with the RSA modulus",
            sign(
                A::HS256,
                Some("rsa-1"),
                K::from_secret(n.as_bytes()),
                claims("acme"),
            ),
            "JWSError JWSInvalidAlgorithm",
        ),
        (
            "HS256 with the JWKS text",
            sign(
                A::HS256,
                None,
                K::from_secret(jwks.as_bytes()),
                claims("acme"),
            ),
            "JWSError JWSInvalidAlgorithm",
        ),
        (
            "HS256 with the test secret",
            jwt(claims("acme")),
            "JWSError JWSInvalidAlgorithm",
        ),
        ("alg none", unsigned.clone(), "JWSError JWSInvalidToken"),
        (
            "alg none, signature kept",
            format!(
                "{unsigned}{}",
                sign(A::RS256, None, rsa(), claims("acme"))
                    .rsplit('.')
                    .next()
                    .unwrap()
            ),
            "JWSError JWSInvalidToken",
        ),
        (
            "unknown kid",
            sign(A::RS256, Some("rsa-2"), rsa(), claims("acme")),
            "No suitable key or wrong key type",
        ),
        (
            "kid of another key type",
            sign(A::RS256, Some("ec-1"), rsa(), claims("acme")),
            "No suitable key or wrong key type",
        ),
        (
            "a key outside the set",
            sign(
                A::ES256,
                Some("ec-1"),
                K::from_ec_pem(&pem("ec-other.pem")).unwrap(),
                claims("acme"),
            ),
            "JWSError JWSInvalidSignature",
        ),
        (
            "PS256 with the RS256-only key",
            sign(A::PS256, None, rsa(), claims("acme")),
            "JWSError JWSInvalidAlgorithm",
        ),
        (
            "expired",
            sign(
                A::EdDSA,
                None,
                ed(),
                json!({"role": "tenancy_member", "exp": now() - 600}),
            ),
            "JWT expired",
        ),
    ];
    for (what, tok, message) in attacks {
        let r = p
            .get("/metrics?select=tenant_id")
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert!(r.headers().contains_key("www-authenticate"), "{what}");
        let (s, v) = json_of(r).await;
        assert_eq!(s, 401, "{what}: {v}");
        assert_eq!(v["message"], message, "{what}: {v}");
    }
    // a tampered payload under a valid RS256 signature
    let good = sign(A::RS256, None, rsa(), claims("acme"));
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = b64(&claims("globex"));
    let (s, v) = json_of(
        p.get("/metrics")
            .bearer_auth(parts.join("."))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["message"].as_str()),
        (401, Some("JWSError JWSInvalidSignature")),
        "{v}"
    );
    p.stop().await;

    // a base64 secret (URL-safe alphabet) and the connection string in a file
    let dir = std::env::temp_dir().join(format!("tenancy-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let uri_file = dir.join("db-uri");
    let mut c = db.config();
    std::fs::write(&uri_file, format!("{}\n", c.db_uri)).unwrap();
    c.db_uri = format!("@{}", uri_file.display());
    let raw: Vec<u8> = (0u8..40)
        .map(|i| i.wrapping_mul(61).wrapping_add(200))
        .collect();
    c.jwt_secret = Some({
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE.encode(&raw)
    });
    c.jwt_secret_is_base64 = true;
    let p = db.proxy(c).await;
    let tok = sign(A::HS256, None, K::from_secret(&raw), claims("acme"));
    assert_eq!(tenant_of(&p, &tok).await, acme);
    // the base64 text itself is not the key
    let (s, _) = json_of(
        p.get("/metrics")
            .bearer_auth(jwt(claims("acme")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    p.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();

    // secrets that cannot verify anything stop the start
    for (secret, b64, want) in [
        ("too-short", false, "at least 32 characters"),
        (
            r#"{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}"#,
            false,
            "no JWK that can verify",
        ),
        (r#"{"keys": [}"#, false, "does not parse"),
        ("@/no/such/secret", false, "cannot read /no/such/secret"),
        ("***", true, "not valid base64"),
    ] {
        let mut c = db.config();
        c.jwt_secret = Some(secret.to_string());
        c.jwt_secret_is_base64 = b64;
        let e = start_error(c).await;
        assert!(e.contains(want), "{secret}: {e}");
    }
}

async fn tenant_of(p: &Proxy, token: &str) -> Vec<String> {
    let (s, v) = json_of(
        p.get("/metrics?select=tenant_id")
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let mut t: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tenant_id"].as_str().unwrap().to_string())
        .collect();
    t.dedup();
    t
}

async fn isolation(p: &Proxy) {
    let acme = tenant_of(p, &member("acme")).await;
    let globex = tenant_of(p, &member("globex")).await;
    assert_eq!(acme.len(), 1);
    assert_eq!(globex.len(), 1);
    assert_ne!(acme, globex);
    // the same tenant by uuid
    assert_eq!(tenant_of(p, &member(&acme[0])).await, acme);
    // no tenant claim: nothing from managed tables
    let none = jwt(json!({"role": "tenancy_member"}));
    assert!(tenant_of(p, &none).await.is_empty());
    // an unknown tenant: nothing
    assert!(tenant_of(p, &member("no-such-tenant")).await.is_empty());
    // writes cannot cross tenants
    let (s, _) = json_of(
        p.patch(&format!("/metrics?tenant_id=eq.{}", globex[0]))
            .bearer_auth(member("acme"))
            .header("Prefer", "return=representation")
            .json(&json!({"name": "hijacked"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let (_, v) = json_of(
        p.get("/metrics?name=eq.hijacked")
            .bearer_auth(member("globex"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v, json!([]));
}

async fn pooled_isolation(db: &TestDb) {
    let mut c = db.config();
    c.db_pool = 1;
    let p = db.proxy(c).await;
    let acme = member("acme");
    let globex = member("globex");
    let none = jwt(json!({"role": "tenancy_member"}));
    let a = tenant_of(&p, &acme).await;
    for _ in 0..5 {
        let g = tenant_of(&p, &globex).await;
        assert_ne!(g, a);
        assert!(
            tenant_of(&p, &none).await.is_empty(),
            "tenant leaked to the next request"
        );
        assert_eq!(tenant_of(&p, &acme).await, a);
        // an error mid-transaction does not leave the connection dirty
        let _ = p
            .get("/metrics?id=eq.x")
            .bearer_auth(&globex)
            .send()
            .await
            .unwrap();
        assert!(tenant_of(&p, &none).await.is_empty());
    }
    // what one tenant's call sets for the whole session (set_config(…,
    // false)) does not reach the next request on the connection
    let admin = db.admin().await;
    admin
        .batch_execute(
            "CREATE FUNCTION esg.leak(v text) RETURNS void LANGUAGE sql VOLATILE AS $$
               SELECT set_config('app.secret', v, false), set_config('statement_timeout', '5', false)
             $$;
             CREATE FUNCTION esg.peek() RETURNS json LANGUAGE sql STABLE AS $$
               SELECT json_build_object('secret', current_setting('app.secret', true),
                                        'timeout', current_setting('statement_timeout'))
             $$;
             CREATE FUNCTION esg.scratch(v text) RETURNS text[] LANGUAGE plpgsql VOLATILE AS $$
               BEGIN
                 CREATE TEMP TABLE IF NOT EXISTS scratch (v text);
                 INSERT INTO scratch VALUES (v);
                 RETURN ARRAY(SELECT s.v FROM scratch s ORDER BY 1);
               END $$;
             CREATE SEQUENCE esg.tickets;
             GRANT USAGE ON SEQUENCE esg.tickets TO PUBLIC;
             CREATE FUNCTION esg.take_ticket() RETURNS bigint LANGUAGE sql VOLATILE AS $$
               SELECT nextval('esg.tickets')
             $$;
             CREATE FUNCTION esg.last_ticket() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
               BEGIN
                 RETURN lastval();
               EXCEPTION WHEN object_not_in_prerequisite_state THEN
                 RETURN NULL;
               END $$;
             CREATE FUNCTION esg.hold_rows() RETURNS void LANGUAGE plpgsql VOLATILE AS $$
               BEGIN
                 EXECUTE 'DECLARE held CURSOR WITH HOLD FOR SELECT tenant_id::text AS t FROM esg.metrics';
               END $$;
             CREATE FUNCTION esg.held() RETURNS SETOF text LANGUAGE plpgsql VOLATILE AS $$
               DECLARE r record;
               BEGIN
                 IF EXISTS (SELECT FROM pg_cursors WHERE name = 'held') THEN
                   FOR r IN EXECUTE 'FETCH ALL FROM held' LOOP RETURN NEXT r.t; END LOOP;
                 END IF;
               END $$;
             CREATE FUNCTION esg.listen_news() RETURNS void LANGUAGE plpgsql VOLATILE AS $$
               BEGIN EXECUTE 'LISTEN tenant_news'; END $$;
             CREATE FUNCTION esg.channels() RETURNS text[] LANGUAGE sql STABLE AS $$
               SELECT ARRAY(SELECT pg_listening_channels())
             $$;
             CREATE FUNCTION esg.forget_plans() RETURNS void LANGUAGE plpgsql VOLATILE AS $$
               BEGIN EXECUTE 'DEALLOCATE ALL'; END $$;
             -- takes the names the pool's next prepared statements will get
             CREATE FUNCTION esg.squat() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
               DECLARE top int;
               BEGIN
                 SELECT coalesce(max(substr(name, 2)::int), 0) INTO top
                   FROM pg_prepared_statements WHERE name ~ '^s[0-9]+$';
                 FOR i IN top + 1 .. top + 300 LOOP
                   EXECUTE format('PREPARE %I AS SELECT 1', 's' || i);
                 END LOOP;
                 RETURN top;
               END $$;
             CREATE FUNCTION esg.lock_forever() RETURNS boolean LANGUAGE sql VOLATILE AS $$
               SELECT pg_try_advisory_lock(4242)
             $$;
             GRANT EXECUTE ON FUNCTION esg.lock_forever() TO PUBLIC;
             GRANT EXECUTE ON FUNCTION esg.leak(text), esg.peek(), esg.scratch(text),
               esg.take_ticket(), esg.last_ticket(), esg.hold_rows(), esg.held(),
               esg.listen_news(), esg.channels(), esg.forget_plans(), esg.squat() TO PUBLIC;
             NOTIFY pgrst, 'reload schema';",
        )
        .await
        .unwrap();
    let seen = answers_200(&p, "/rpc/peek", Some(&acme)).await;
    assert!(seen, "schema reload");
    for _ in 0..3 {
        let r = p
            .post("/rpc/leak")
            .bearer_auth(&globex)
            .json(&json!({"v": "globex-secret"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let (s, v) = json_of(p.get("/rpc/peek").bearer_auth(&acme).send().await.unwrap()).await;
        assert_eq!(s, 200, "{v}");
        assert_ne!(v["secret"], "globex-secret", "{v}");
        assert_eq!(v["timeout"], "0", "{v}");
        // a temporary table one tenant's call left is gone for the next request
        for (tok, v) in [(&globex, "globex-row"), (&acme, "acme-row")] {
            let (s, got) = json_of(
                p.post("/rpc/scratch")
                    .bearer_auth(tok)
                    .json(&json!({ "v": v }))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(
                (s, got),
                (200, json!([v])),
                "temporary table survived the request"
            );
        }
        // nor does lastval(): one tenant's last sequence value (an id it
        // just inserted) is not the next request's to read
        let (s, t) = json_of(
            p.post("/rpc/take_ticket")
                .bearer_auth(&globex)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{t}");
        assert!(t.as_i64().is_some(), "{t}");
        let (s, v) = json_of(
            p.post("/rpc/last_ticket")
                .bearer_auth(&acme)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, Value::Null), "lastval() survived the request");
        // nor a WITH HOLD cursor: its rows were read under the first
        // tenant's policies and would be fetched by the next request
        assert_eq!(call(&p, "hold_rows", &globex).await.0, 204);
        assert_eq!(
            call(&p, "held", &acme).await,
            (200, json!([])),
            "a WITH HOLD cursor survived the request"
        );
        // nor a LISTEN
        assert_eq!(call(&p, "listen_news", &globex).await.0, 204);
        assert_eq!(
            call(&p, "channels", &acme).await,
            (200, json!([])),
            "a LISTEN survived the request"
        );
    }
    // a session advisory lock a function left is released when the
    // connection serves its next request, whoever's
    let lock_free = "SELECT pg_try_advisory_lock(4242) AND pg_advisory_unlock(4242)";
    assert_eq!(call(&p, "lock_forever", &globex).await, (200, json!(true)));
    let free: bool = admin.query_one(lock_free, &[]).await.unwrap().get(0);
    assert!(
        !free,
        "the lock outlives the request until the connection's next one"
    );
    assert_eq!(call(&p, "peek", &acme).await.0, 200);
    let free: bool = admin.query_one(lock_free, &[]).await.unwrap().get(0);
    assert!(free, "a session advisory lock survived the next request");
    // a function that drops the pool's prepared statements, or takes the
    // names it will use next, fails no later request: the connection is
    // replaced and the request runs again
    for round in 0..2 {
        assert_eq!(call(&p, "forget_plans", &globex).await.0, 204);
        let (s, v) = call(&p, "peek", &acme).await;
        assert_eq!(s, 200, "after DEALLOCATE ALL: {v}");
        let (s, top) = call(&p, "squat", &globex).await;
        assert_eq!(s, 200, "{top}");
        assert!(
            top.as_i64().unwrap() > 0,
            "the pool prepares statements: {top}"
        );
        // a statement text the connection has not prepared yet
        let path = format!("/metrics?select=id&limit={}", 40 + round);
        let (s, v) = json_of(p.get(&path).bearer_auth(&acme).send().await.unwrap()).await;
        assert_eq!(s, 200, "after PREPARE of the pool's next names: {v}");
    }
    p.stop().await;
}

/// `POST /rpc/<name>` without arguments as `token`: status and body.
async fn call(p: &Proxy, name: &str, token: &str) -> (u16, Value) {
    json_of(
        p.post(&format!("/rpc/{name}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn rate_limits(db: &TestDb) {
    let admin = db.admin().await;
    admin
        .batch_execute("UPDATE tenancy.tenants SET settings = settings || '{\"rate_limit_rps\": 3}' WHERE slug = 'initech'")
        .await
        .unwrap();
    let mut c = db.config();
    c.default_rate_limit = 1000;
    let p = db.proxy(c).await;
    let t = member("initech");
    let mut limited = None;
    for _ in 0..10 {
        let r = p.get("/units").bearer_auth(&t).send().await.unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a 429 within 10 requests at 3/s");
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("initech"));
    // another tenant is unaffected
    let r = p
        .get("/units")
        .bearer_auth(member("globex"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    p.stop().await;
}

async fn metrics(p: &Proxy) {
    let text = p.metrics_text().await;
    assert!(
        text.contains("tenancy_proxy_requests_total{tenant=\"globex\""),
        "{text}"
    );
    assert!(text.contains("tenancy_proxy_request_duration_seconds_bucket"));
    assert!(text.contains("tenancy_proxy_rate_limited_total{tenant=\"initech\"}"));
    assert!(text.contains("tenancy_proxy_pool_size"));
}
