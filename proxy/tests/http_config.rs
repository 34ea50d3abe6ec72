//! PostgREST's deployment settings, end to end against the real cluster:
//! `server-trace-header`, `server-timing-enabled`, `openapi-mode`,
//! `openapi-security-active`, `openapi-server-proxy-uri`, `db-root-spec`,
//! `admin-server-port`, `server-unix-socket`, `db-pool-acquisition-timeout`,
//! `db-pool-max-idletime`, `db-channel` / `db-channel-enabled`, settings
//! from the database, the settings of impersonated roles and functions
//! (`db-hoisted-tx-settings`), `db-pre-request`, the startup errors of
//! bad values, and the binary reading PostgREST's older environment names.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployment_settings() {
    let db = TestDb::create("cfg").await;
    let admin = db.admin().await;
    admin
        .batch_execute(
            r#"
            CREATE FUNCTION esg.root_doc() RETURNS json LANGUAGE sql STABLE
                AS $$ SELECT '{"swagger": "2.0", "info": {"title": "mine"}}'::json $$;
            CREATE FUNCTION esg.prepared_here() RETURNS bigint LANGUAGE sql VOLATILE
                AS 'SELECT count(*) FROM pg_prepared_statements';
            CREATE FUNCTION esg.nap(s float8) RETURNS int LANGUAGE sql VOLATILE
                AS 'SELECT 1 FROM pg_sleep(s)';
            GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO PUBLIC;
            "#,
        )
        .await
        .unwrap();
    let outcome = guarded(async {
        trace_header_and_server_timing(&db).await;
        openapi_settings(&db).await;
        root_spec(&db).await;
        admin_server(&db).await;
        unix_socket(&db).await;
        pool_settings(&db).await;
        unprepared_statements(&db).await;
        notify_channel(&db, &admin).await;
        bad_values(&db).await;
        old_names_from_the_environment(&db).await;
        recovery(&db, &admin).await;
        in_database_config(&db, &admin).await;
        transaction_settings(&db, &admin).await;
        pre_request(&db, &admin).await;
    })
    .await;
    finish(outcome, &db, Vec::new()).await;
}

/// `name;dur=1.2, …`: the step names, each with one decimal of milliseconds.
fn timing_steps(h: &str) -> Vec<String> {
    h.split(", ")
        .map(|part| {
            let (name, dur) = part.split_once(";dur=").unwrap_or_else(|| panic!("{h}"));
            let (int, frac) = dur.split_once('.').unwrap_or_else(|| panic!("{h}"));
            assert!(
                int.chars().all(|c| c.is_ascii_digit())
                    && frac.len() == 1
                    && frac.chars().all(|c| c.is_ascii_digit()),
                "{h}"
            );
            name.to_string()
        })
        .collect()
}

async fn trace_header_and_server_timing(db: &TestDb) {
    let mut c = db.config();
    c.server_trace_header = Some("X-Request-Id".into());
    c.server_timing_enabled = true;
    let p = db.proxy(c).await;
    let all = ["jwt", "parse", "plan", "transaction", "response"];
    let tok = member("acme");
    // a read, a write, a call, the root: every step
    for (method, path, body) in [
        (reqwest::Method::GET, "/data_points?limit=1", None),
        (
            reqwest::Method::POST,
            "/rpc/add",
            Some(json!({"a": 1, "b": 2})),
        ),
        (reqwest::Method::HEAD, "/", None),
    ] {
        let mut rq = p
            .request(method.clone(), path)
            .bearer_auth(&tok)
            .header("X-Request-Id", "req-42");
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let r = rq.send().await.unwrap();
        assert!(r.status().is_success(), "{method} {path}: {}", r.status());
        assert_eq!(header(&r, "x-request-id").as_deref(), Some("req-42"));
        let t = header(&r, "server-timing").expect("Server-Timing");
        assert_eq!(timing_steps(&t), all, "{method} {path}: {t}");
    }
    // OPTIONS runs no statement
    let r = p
        .request(reqwest::Method::OPTIONS, "/data_points")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = header(&r, "server-timing").unwrap();
    assert_eq!(timing_steps(&t), ["jwt", "parse", "response"], "{t}");
    // errors stop at the step that failed; the trace header is still there
    let r = p
        .get("/data_points")
        .bearer_auth("not-a-token")
        .header("X-Request-Id", "bad-jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "x-request-id").as_deref(), Some("bad-jwt"));
    assert_eq!(timing_steps(&header(&r, "server-timing").unwrap()), ["jwt"]);
    let r = p
        .get("/data_points?id=bogus")
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        timing_steps(&header(&r, "server-timing").unwrap()),
        ["jwt", "parse"]
    );
    let r = p
        .get("/data_points?id=eq.bogus")
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        timing_steps(&header(&r, "server-timing").unwrap()),
        ["jwt", "parse", "plan", "transaction"]
    );
    // no header asked for, none sent back
    let r = p.get("/units?limit=1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(header(&r, "x-request-id").is_none());
    p.stop().await;
    // off by default
    let p = db.proxy(db.config()).await;
    let r = p
        .get("/units?limit=1")
        .header("X-Request-Id", "1")
        .send()
        .await
        .unwrap();
    assert!(header(&r, "server-timing").is_none());
    assert!(header(&r, "x-request-id").is_none());
    p.stop().await;
}

async fn openapi_doc(p: &Proxy) -> (u16, Value) {
    json_of(
        p.get("/")
            .header("Accept", "application/openapi+json")
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn openapi_settings(db: &TestDb) {
    // follow-privileges (default): the anonymous role sees what it may read
    let p = db.proxy(db.config()).await;
    let (s, doc) = openapi_doc(&p).await;
    assert_eq!(s, 200, "{doc}");
    assert!(doc["paths"]["/units"].is_object());
    assert!(doc["paths"]["/data_points"].is_null(), "anon has no grant");
    assert!(doc.get("security").is_none());
    assert_eq!(doc["schemes"], json!(["http"]));
    assert_eq!(doc["basePath"], "/");
    p.stop().await;

    let mut c = db.config();
    c.openapi_mode = "ignore-privileges".into();
    c.openapi_security_active = true;
    c.openapi_server_proxy_uri = Some("https://api.example.com/v1".into());
    let p = db.proxy(c).await;
    let (s, doc) = openapi_doc(&p).await;
    assert_eq!(s, 200, "{doc}");
    assert!(
        doc["paths"]["/data_points"].is_object(),
        "everything exposed"
    );
    assert!(doc["paths"]["/rpc/add"].is_object());
    assert_eq!(doc["security"], json!([{ "JWT": [] }]));
    assert_eq!(doc["securityDefinitions"]["JWT"]["in"], "header");
    assert_eq!(doc["securityDefinitions"]["JWT"]["name"], "Authorization");
    assert_eq!(doc["securityDefinitions"]["JWT"]["type"], "apiKey");
    assert_eq!(doc["host"], "api.example.com:443");
    assert_eq!(doc["basePath"], "/v1");
    assert_eq!(doc["schemes"], json!(["https"]));
    // the data itself still follows the grants
    let r = p.get("/data_points").send().await.unwrap();
    assert_eq!(r.status(), 401);
    p.stop().await;

    let mut c = db.config();
    c.openapi_mode = "disabled".into();
    let p = db.proxy(c).await;
    let (s, body) = openapi_doc(&p).await;
    assert_eq!(s, 404);
    assert_eq!(
        body,
        json!({"code": "PGRST126", "message": "Root endpoint metadata is disabled", "details": null, "hint": null})
    );
    // the API is unaffected
    assert_eq!(p.get("/units").send().await.unwrap().status(), 200);
    p.stop().await;
}

async fn root_spec(db: &TestDb) {
    let mut c = db.config();
    c.db_root_spec = Some("root_doc".into());
    let p = db.proxy(c).await;
    let r = p
        .get("/")
        .header("Accept", "application/openapi+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/openapi+json; charset=utf-8")
    );
    let (_, v) = json_of(r).await;
    assert_eq!(v, json!({"swagger": "2.0", "info": {"title": "mine"}}));
    let r = p
        .get("/")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type")
        .unwrap()
        .starts_with("application/json"));
    let (_, v) = json_of(r).await;
    assert_eq!(v["info"]["title"], "mine");
    let (s, v) = json_of(p.post("/").json(&json!({})).send().await.unwrap()).await;
    assert_eq!((s, v["code"].as_str()), (405, Some("PGRST117")), "{v}");
    p.stop().await;
    // a root spec function that does not exist: the function's 404
    let mut c = db.config();
    c.db_root_spec = Some("no_such_root".into());
    let p = db.proxy(c).await;
    let (s, v) = json_of(p.get("/").send().await.unwrap()).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("PGRST202")), "{v}");
    p.stop().await;
}

async fn admin_server(db: &TestDb) {
    let mut c = db.config();
    c.admin_server_port = Some(0);
    let p = db.proxy(c).await;
    let admin = format!("http://{}", p.running.admin_addr.expect("admin address"));
    assert_ne!(Some(p.running.addr), p.running.admin_addr);
    let get = |path: &str| p.http.get(format!("{admin}{path}")).send();
    assert_eq!(get("/live").await.unwrap().status(), 200);
    assert_eq!(get("/ready").await.unwrap().status(), 200);
    let m = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(m.contains("pgrst_db_pool_max 4"), "{m}");
    assert!(m.contains("pgrst_db_pool_available"), "{m}");
    // the admin port serves no API
    assert_eq!(get("/units").await.unwrap().status(), 404);
    p.stop().await;
    // no admin port unless asked for
    let p = db.proxy(db.config()).await;
    assert!(p.running.admin_addr.is_none());
    p.stop().await;
}

async fn unix_socket(db: &TestDb) {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let path = format!("/tmp/tenancy-proxy-test-{}.sock", std::process::id());
    let mut c = db.config();
    c.server_unix_socket = Some(path.clone());
    c.server_unix_socket_mode = "600".into();
    let p = db.proxy(c).await;
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(b"GET /units?select=code&code=eq.t HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.ends_with(r#"[{"code":"t"}]"#), "{out}");
    p.stop().await;
    assert!(std::fs::metadata(&path).is_err(), "socket removed on stop");
}

async fn pool_settings(db: &TestDb) {
    let mut c = db.config();
    c.db_pool = 1;
    c.db_pool_acquisition_timeout = 1;
    c.db_pool_max_idletime = 1;
    let p = db.proxy(c).await;
    // one request holds the only connection; the next waits 1 s, then 504
    let slow = p
        .post("/rpc/nap")
        .bearer_auth(member("acme"))
        .json(&json!({"s": 3}))
        .send();
    let slow = tokio::spawn(slow);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = std::time::Instant::now();
    let (s, v) = json_of(p.get("/units").send().await.unwrap()).await;
    let waited = t0.elapsed();
    assert_eq!(s, 504, "{v}");
    assert_eq!(
        v,
        json!({"code": "PGRST003", "message": "Timed out acquiring connection from connection pool.", "details": null, "hint": null})
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    assert!(p
        .metrics_text()
        .await
        .contains("pgrst_db_pool_timeouts_total"));
    // the connection is returned, then closed after a second unused
    assert_eq!(p.get("/units").send().await.unwrap().status(), 200);
    assert_eq!(p.running.state.pool.status().size, 1);
    let closed = eventually(40, || async { p.running.state.pool.status().size == 0 }).await;
    assert!(closed, "idle connection not closed");
    // and a new one is opened when needed
    assert_eq!(p.get("/units").send().await.unwrap().status(), 200);
    p.stop().await;
}

/// `db-prepared-statements = false`: everything works, and the pooled
/// connection keeps no prepared statement between (or within) requests.
async fn unprepared_statements(db: &TestDb) {
    let prepared_here = |p: &Proxy| {
        let rq = p
            .post("/rpc/prepared_here")
            .bearer_auth(member("acme"))
            .send();
        async move {
            let (s, v) = json_of(rq.await.unwrap()).await;
            assert_eq!(s, 200, "{v}");
            v.as_i64().unwrap()
        }
    };
    // the default keeps the request's statements prepared
    let p = db.proxy(db.config()).await;
    prepared_here(&p).await;
    assert!(prepared_here(&p).await > 0);
    p.stop().await;

    let mut c = db.config();
    c.db_prepared_statements = false;
    c.db_pool = 1;
    c.app_settings = vec![("app.settings.x".into(), "1".into())];
    let p = db.proxy(c).await;
    let tok = member("acme");
    // filters with inferred parameter types, embeds, a planned count
    let r = p
        .get("/data_points?select=id,value,metrics(code)&value=gt.0&id=in.(1,2,3,4,5,6,7,8,9,10)&order=id&limit=3")
        .bearer_auth(&tok)
        .header("Prefer", "count=planned")
        .send()
        .await
        .unwrap();
    // a page of the planned total (206 unless the estimate is at most 3)
    assert!(matches!(r.status().as_u16(), 200 | 206), "{}", r.status());
    assert!(header(&r, "content-range").is_some_and(|c| c.starts_with("0-")));
    let (_, v) = json_of(r).await;
    assert!(
        v.as_array().is_some_and(|a| !a.is_empty() && a.len() <= 3),
        "{v}"
    );
    assert!(v[0]["metrics"]["code"].is_string(), "{v}");
    let (s, v) = json_of(
        p.get("/rpc/add?a=40&b=2")
            .bearer_auth(&tok)
            .header("Prefer", "timezone=UTC")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!(42)));
    let (s, v) = json_of(
        p.post("/metrics")
            .bearer_auth(&tok)
            .header("Prefer", "return=representation")
            .json(&json!({"code": "unprep", "name": "Unprepared", "unit": "t"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v[0]["code"], "unprep");
    let (s, v) = json_of(
        p.get("/data_points?id=eq.bogus")
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("22P02")), "{v}");
    // the one pooled connection: nothing prepared, before or after
    assert_eq!(prepared_here(&p).await, 0);
    assert_eq!(prepared_here(&p).await, 0);
    p.stop().await;
}

async fn notify_channel(db: &TestDb, admin: &tokio_postgres::Client) {
    let chan = format!("tp chan {}", std::process::id());
    let mut c = db.config();
    c.db_channel = chan.clone();
    let p = db.proxy(c).await;
    let mut c = db.config();
    c.db_channel_enabled = false;
    // start returns once the listener is in place: no wait before NOTIFY
    let off = db.proxy(c).await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE esg.chan_t (id int); GRANT SELECT ON esg.chan_t TO {};
             NOTIFY pgrst, 'reload schema';",
            db.anon_role
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // neither listens on `pgrst`
    assert_eq!(p.get("/chan_t").send().await.unwrap().status(), 404);
    assert_eq!(off.get("/chan_t").send().await.unwrap().status(), 404);
    admin
        .batch_execute(&format!("NOTIFY \"{chan}\", 'reload schema'"))
        .await
        .unwrap();
    let seen = eventually(50, || async {
        p.get("/chan_t").send().await.unwrap().status() == 200
    })
    .await;
    assert!(seen, "reload on the configured channel");
    assert_eq!(off.get("/chan_t").send().await.unwrap().status(), 404);
    // the listening connection dies; what changes before it is back (no
    // NOTIFY reaches it) is still picked up: it reloads when it reconnects
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND query = $1",
            &[&format!("LISTEN \"{chan}\"")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    admin
        .batch_execute(&format!(
            "CREATE TABLE esg.chan_t2 (id int); GRANT SELECT ON esg.chan_t2 TO {};",
            db.anon_role
        ))
        .await
        .unwrap();
    let seen = eventually(80, || async {
        p.get("/chan_t2").send().await.unwrap().status() == 200
    })
    .await;
    assert!(seen, "reload after the listener reconnected");
    p.stop().await;
    off.stop().await;
}

async fn bad_values(db: &TestDb) {
    type Set = Box<dyn Fn(&mut tenancy_proxy::Config)>;
    let cases: Vec<(&str, Set)> = vec![
        (
            "openapi-mode",
            Box::new(|c| c.openapi_mode = "hidden".into()),
        ),
        (
            "openapi-server-proxy-uri",
            Box::new(|c| c.openapi_server_proxy_uri = Some("ftp://x".into())),
        ),
        (
            "server-unix-socket-mode",
            Box::new(|c| c.server_unix_socket_mode = "999".into()),
        ),
        ("log-level", Box::new(|c| c.log_level = "loud".into())),
        (
            "server-trace-header",
            Box::new(|c| c.server_trace_header = Some("a b".into())),
        ),
    ];
    for (name, set) in cases {
        let mut c = db.config();
        set(&mut c);
        let e = start_error(c).await;
        assert!(e.contains(name), "{name}: {e}");
    }
}

/// The `tenancy-proxy` binary, configured the way many PostgREST
/// docker-compose files do it, with the older names (`PGRST_DB_SCHEMA`,
/// `PGRST_MAX_ROWS`): PostgREST reads every name of a setting from
/// `PGRST_<NAME>`. And a misspelt `PGRST_DB_TX_END` stops the start
/// instead of meaning `commit`.
async fn old_names_from_the_environment(db: &TestDb) {
    let c = db.config();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenancy-proxy"));
        for (k, _) in
            std::env::vars().filter(|(k, _)| k.starts_with("PGRST_") || k.starts_with("TENANCY_"))
        {
            cmd.env_remove(k);
        }
        cmd.env("PGRST_DB_URI", &c.db_uri)
            .env("PGRST_DB_ANON_ROLE", c.db_anon_role.as_deref().unwrap())
            .env("PGRST_SERVER_HOST", "127.0.0.1")
            .env("PGRST_SERVER_PORT", port.to_string())
            .env("PGRST_DB_POOL_AUTOMATIC_RECOVERY", "false")
            .env("TENANCY_ANON_RATE_LIMIT", "0")
            .envs(extra.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn().expect("spawn tenancy-proxy")
    };
    let mut child = run(&[("PGRST_DB_SCHEMA", "esg, tenancy"), ("PGRST_MAX_ROWS", "1")]);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let ready = eventually(150, || {
        let r = http.get(format!("{base}/ready")).send();
        async move { r.await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    assert!(ready, "the binary did not become ready");
    // max-rows = 1: one unit of several
    let r = http
        .get(format!("{base}/units?select=code"))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!(
        (status, body.as_array().map(Vec::len)),
        (200, Some(1)),
        "{body}"
    );
    // db-schema = "esg, tenancy": the second schema can be chosen
    let units_in = |profile: &'static str| {
        let r = http
            .get(format!("{base}/units"))
            .header("Accept-Profile", profile)
            .send();
        async move { json_of(r.await.unwrap()).await }
    };
    let (status, body) = units_in("tenancy").await;
    assert_ne!(body["code"], "PGRST106", "{status} {body}");
    let (status, body) = units_in("public").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (406, Some("PGRST106")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .ends_with("esg, tenancy"),
        "{body}"
    );
    child.kill().await.unwrap();
    // a transaction end PostgREST does not know: no start
    let child = run(&[("PGRST_DB_SCHEMA", "esg"), ("PGRST_DB_TX_END", "rolback")]);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the binary exits")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("rollback-allow-override"),
        "{err}"
    );
}

/// `db-pool-automatic-recovery` (the default in the binary): a database
/// that cannot be reached at start is retried; meanwhile the API answers
/// 503 `PGRST002` and `/ready` 503, `/live` 200.
async fn recovery(db: &TestDb, admin: &tokio_postgres::Client) {
    let late = format!("tp_late_{}", std::process::id());
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {late}"))
        .await
        .unwrap();
    let mut c = db.config();
    c.db_uri = c.db_uri.replacen(&db.auth_role, &late, 1);
    c.db_pool_automatic_recovery = true;
    c.admin_server_port = Some(0);
    let p = db.proxy(c).await;
    let admin_url = format!("http://{}", p.running.admin_addr.unwrap());
    let r = p.get("/units").send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("1"));
    let (_, v) = json_of(r).await;
    assert_eq!(
        v,
        json!({"code": "PGRST002", "message": "Could not query the database for the schema cache. Retrying.", "details": null, "hint": null})
    );
    let get = |path: &str| p.http.get(format!("{admin_url}{path}")).send();
    assert_eq!(get("/live").await.unwrap().status(), 200);
    assert_eq!(get("/ready").await.unwrap().status(), 503);
    // the login appears: the next retry loads the cache
    admin
        .batch_execute(&format!(
            "CREATE ROLE {late} LOGIN NOINHERIT; GRANT {}, tenancy_member TO {late};",
            db.anon_role
        ))
        .await
        .unwrap();
    let up = eventually(60, || async {
        p.get("/units").send().await.unwrap().status() == 200
    })
    .await;
    assert!(up, "schema cache not loaded after recovery");
    assert_eq!(get("/ready").await.unwrap().status(), 200);
    p.stop().await;
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {late}"))
        .await
        .unwrap();
    // without recovery, the same start fails
    let mut c = db.config();
    c.db_uri = c.db_uri.replacen(&db.auth_role, &late, 1);
    let e = start_error(c).await;
    assert!(e.contains(&late), "{e}");
}

/// `db-config`: the login role's `pgrst.*` settings (this database's over
/// every database's, both over the pre-config function's) win over the
/// proxy's own, and are re-read on `NOTIFY pgrst, 'reload config'`.
async fn in_database_config(db: &TestDb, admin: &tokio_postgres::Client) {
    let role = &db.auth_role;
    admin
        .batch_execute(&format!(
            r#"
            CREATE FUNCTION esg.pre_config() RETURNS void LANGUAGE sql AS $$
                SELECT set_config('pgrst.server_trace_header', 'X-Trace', true),
                       set_config('pgrst.db_max_rows', '5', true)
            $$;
            GRANT USAGE ON SCHEMA esg TO {role};
            GRANT EXECUTE ON FUNCTION esg.pre_config() TO {role};
            ALTER ROLE {role} SET pgrst.db_max_rows = '2';
            ALTER ROLE {role} SET pgrst.openapi_mode = 'ignore-privileges';
            ALTER ROLE {role} IN DATABASE {db} SET pgrst.openapi_mode = 'disabled';
            "#,
            db = db.name
        ))
        .await
        .unwrap();
    let rows = |p: &Proxy| {
        let rq = p.get("/units").send();
        async move {
            let (s, v) = json_of(rq.await.unwrap()).await;
            assert_eq!(s, 200, "{v}");
            v.as_array().unwrap().len()
        }
    };
    let mut c = db.config();
    c.db_pre_config = Some("esg.pre_config".into());
    c.db_max_rows = Some(100);
    let p = db.proxy(c).await;
    // the role's setting over the function's, the function's where the role has none
    assert_eq!(rows(&p).await, 2);
    let r = p
        .get("/units")
        .header("X-Trace", "t1")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-trace").as_deref(), Some("t1"));
    // this database's setting over the role's
    let (s, v) = openapi_doc(&p).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("PGRST126")), "{v}");
    // a reload picks up changes, the schema cache follows `db_schemas`
    let r = p
        .get("/tenants")
        .header("Accept-Profile", "tenancy")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 406);
    admin
        .batch_execute(&format!(
            "ALTER ROLE {role} IN DATABASE {db} RESET pgrst.openapi_mode;
             ALTER ROLE {role} SET pgrst.db_schemas = 'esg';
             NOTIFY pgrst, 'reload config';",
            db = db.name
        ))
        .await
        .unwrap();
    let reloaded = eventually(50, || async { openapi_doc(&p).await.0 == 200 }).await;
    assert!(reloaded, "config not reloaded");
    let (_, doc) = openapi_doc(&p).await;
    assert!(
        doc["paths"]["/data_points"].is_object(),
        "ignore-privileges now"
    );
    let (s, v) = json_of(
        p.get("/tenants")
            .header("Accept-Profile", "tenancy")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (406, Some("PGRST106")), "{v}");
    assert_eq!(v["message"], "The schema must be one of the following: esg");
    // a value that does not parse: the settings stay as they were
    admin
        .batch_execute(&format!(
            "ALTER ROLE {role} SET pgrst.db_max_rows = 'lots'; NOTIFY pgrst, 'reload config';"
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rows(&p).await, 2);
    assert_eq!(openapi_doc(&p).await.0, 200);
    p.stop().await;
    // `db-config = false`: none of it; and a bad value fails the start
    let mut c = db.config();
    c.db_config = false;
    let p = db.proxy(c).await;
    assert!(rows(&p).await > 2);
    assert_eq!(openapi_doc(&p).await.0, 200);
    p.stop().await;
    let e = start_error(db.config()).await;
    assert!(e.contains("db-max-rows"), "{e}");
    admin
        .batch_execute(&format!("ALTER ROLE {role} RESET ALL"))
        .await
        .unwrap();
}

/// Impersonated role settings (`ALTER ROLE anon SET statement_timeout`) and
/// hoisted function settings, as PostgREST applies them: transaction-local,
/// the function's over the role's, `default_transaction_isolation` as the
/// transaction's isolation level; re-read on `reload config`.
async fn transaction_settings(db: &TestDb, admin: &tokio_postgres::Client) {
    let (anon, dbn) = (&db.anon_role, &db.name);
    admin
        .batch_execute(&format!(
            r#"
            CREATE FUNCTION esg.iso() RETURNS text LANGUAGE sql STABLE
                AS $$ SELECT current_setting('transaction_isolation') $$;
            CREATE FUNCTION esg.iso_serializable() RETURNS text LANGUAGE sql STABLE
                SET default_transaction_isolation = 'SERIALIZABLE'
                AS $$ SELECT current_setting('transaction_isolation') $$;
            CREATE FUNCTION esg.nap_long(s float8) RETURNS int LANGUAGE sql VOLATILE
                SET statement_timeout = '10s' SET work_mem = '7MB'
                AS 'SELECT 1 FROM pg_sleep(s)';
            CREATE FUNCTION esg.timeout() RETURNS text LANGUAGE sql STABLE
                AS $$ SELECT current_setting('statement_timeout') $$;
            CREATE FUNCTION esg.work_mem() RETURNS text LANGUAGE sql STABLE
                SET work_mem = '9MB' AS $$ SELECT current_setting('work_mem') $$;
            GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO PUBLIC;
            ALTER ROLE {anon} IN DATABASE {dbn} SET statement_timeout = '150ms';
            ALTER ROLE {anon} IN DATABASE {dbn} SET default_transaction_isolation = 'repeatable read';
            -- a setting the login role may not set: left out, not an error
            ALTER ROLE {anon} IN DATABASE {dbn} SET log_min_duration_statement = 0;
            "#
        ))
        .await
        .unwrap();
    let call = |p: &Proxy, path: String| {
        let rq = p.get(&path).send();
        async move { json_of(rq.await.unwrap()).await }
    };
    let p = db.proxy(db.config()).await;
    // the role's timeout cuts a statement that outlives it…
    let (s, v) = call(&p, "/rpc/nap?s=0.6".into()).await;
    assert_eq!(v["code"], "57014", "{s} {v}");
    // …the function's own (hoisted) timeout wins over the role's
    let (s, v) = call(&p, "/rpc/nap_long?s=0.3".into()).await;
    assert_eq!((s, v.clone()), (200, json!(1)), "{v}");
    // the role's isolation level, and the function's over it
    let (s, v) = call(&p, "/rpc/iso".into()).await;
    assert_eq!((s, v.clone()), (200, json!("repeatable read")), "{v}");
    let (s, v) = call(&p, "/rpc/iso_serializable".into()).await;
    assert_eq!((s, v.clone()), (200, json!("serializable")), "{v}");
    // a table read runs under the role's settings too
    let (s, v) = call(&p, "/units?limit=1".into()).await;
    assert_eq!(s, 200, "{v}");
    // not hoisted (work_mem is not in the list): the function sees its own
    // value, and nothing leaks to the next request on the connection
    let (_, v) = call(&p, "/rpc/work_mem".into()).await;
    assert_eq!(v, json!("9MB"));
    // transaction-local: a request as another role, on the same pooled
    // connections, runs without the anonymous role's settings
    for _ in 0..8 {
        let (s, v) = json_of(
            p.get("/rpc/timeout")
                .bearer_auth(member("acme"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v.clone()), (200, json!("0")), "{v}");
        let (_, v) = call(&p, "/rpc/timeout".into()).await;
        assert_eq!(v, json!("150ms"));
    }
    drop(p);

    // db-hoisted-tx-settings without statement_timeout: the function's
    // timeout no longer covers the call (the isolation level still applies)
    let mut c = db.config();
    c.db_hoisted_tx_settings = "default_transaction_isolation".into();
    let p = db.proxy(c).await;
    let (s, v) = call(&p, "/rpc/nap_long?s=0.6".into()).await;
    assert_eq!(v["code"], "57014", "{s} {v}");
    let (_, v) = call(&p, "/rpc/iso_serializable".into()).await;
    assert_eq!(v, json!("serializable"));

    // role settings are re-read with the configuration
    admin
        .batch_execute(&format!(
            "ALTER ROLE {anon} IN DATABASE {dbn} RESET statement_timeout;
             ALTER ROLE {anon} IN DATABASE {dbn} RESET default_transaction_isolation;
             NOTIFY pgrst, 'reload config';"
        ))
        .await
        .unwrap();
    let reloaded = eventually(50, || async {
        call(&p, "/rpc/iso".into()).await.1 == json!("read committed")
    })
    .await;
    assert!(reloaded, "role settings not re-read");
    let (s, v) = call(&p, "/rpc/nap?s=0.3".into()).await;
    assert_eq!((s, v.clone()), (200, json!(1)), "{v}");

    // with db-config off, role settings are not read (as PostgREST)
    admin
        .batch_execute(&format!(
            "ALTER ROLE {anon} IN DATABASE {dbn} SET default_transaction_isolation = 'serializable'"
        ))
        .await
        .unwrap();
    let mut c = db.config();
    c.db_config = false;
    let p = db.proxy(c).await;
    let (_, v) = call(&p, "/rpc/iso".into()).await;
    assert_eq!(v, json!("read committed"));
    admin
        .batch_execute(&format!("ALTER ROLE {anon} IN DATABASE {dbn} RESET ALL"))
        .await
        .unwrap();
}

/// `db-pre-request`: the function runs in the request's transaction after
/// the settings (it sees the role, the tenant and the headers) and before the
/// statement; an error it raises is the response, and the statement — sent
/// in the same round trip once prepared on the connection — never runs.
async fn pre_request(db: &TestDb, admin: &tokio_postgres::Client) {
    admin
        .batch_execute(
            r#"
            CREATE FUNCTION esg.check_request() RETURNS void LANGUAGE plpgsql AS $$
            BEGIN
                IF current_setting('request.headers', true)::json->>'x-block' = 'yes' THEN
                    RAISE EXCEPTION 'blocked by the pre-request function'
                        USING ERRCODE = 'PT403', DETAIL = 'x-block', HINT = 'drop the header';
                END IF;
                PERFORM set_config('response.headers', json_build_array(json_build_object(
                    'X-Pre', current_user || '/' || coalesce(nullif(current_setting('tenancy.tenant_id', true), ''), '-')
                        || '/' || current_setting('request.method')))::text, true);
            END $$;
            GRANT EXECUTE ON FUNCTION esg.check_request() TO PUBLIC;
            "#,
        )
        .await
        .unwrap();
    let mut c = db.config();
    c.db_pre_request = Some("esg.check_request".into());
    c.db_pool = 1; // one connection: the statements below are prepared on it
    let p = db.proxy(c).await;
    let t = member("initech");
    // it ran with the request's role, tenant (the claim as sent) and
    // method, before the statement
    let r = p
        .get("/metrics?select=code&limit=1")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-pre").as_deref(),
        Some("tenancy_member/initech/GET")
    );
    let r = p.get("/units?limit=1").send().await.unwrap();
    assert_eq!(
        header(&r, "x-pre").as_deref(),
        Some(format!("{}/-/GET", db.anon_role).as_str())
    );
    let count = || async {
        admin
            .query_one(
                "SELECT count(*) FROM esg.metrics WHERE code LIKE 'pre%'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let insert = |code: &str, block: bool| {
        let mut rq = p
            .post("/metrics")
            .bearer_auth(&t)
            .json(&json!({"code": code, "name": "P", "unit": "t"}));
        if block {
            rq = rq.header("X-Block", "yes");
        }
        async move { json_of(rq.send().await.unwrap()).await }
    };
    // blocked on a cold connection (the insert is prepared after the
    // settings), then allowed (now prepared), then blocked again: the
    // pipelined insert runs in the aborted transaction and writes nothing
    for (i, block) in [true, false, true, true].into_iter().enumerate() {
        let (s, v) = insert(&format!("pre{i}"), block).await;
        if block {
            assert_eq!(s, 403, "{v}");
            assert_eq!(
                v,
                json!({"code": "PT403", "message": "blocked by the pre-request function",
                       "details": "x-block", "hint": "drop the header"})
            );
        } else {
            assert_eq!(s, 201, "{v}");
        }
    }
    assert_eq!(count().await, 1, "only the allowed insert was written");
    // a blocked RPC write and PATCH, after the same statements ran once
    for block in [false, true] {
        let mut rq = p
            .patch("/metrics?code=eq.pre1")
            .bearer_auth(&t)
            .json(&json!({"name": if block { "blocked" } else { "ok" }}));
        if block {
            rq = rq.header("X-Block", "yes");
        }
        let s = rq.send().await.unwrap().status().as_u16();
        assert_eq!(s, if block { 403 } else { 204 });
    }
    let name: String = admin
        .query_one("SELECT name FROM esg.metrics WHERE code = 'pre1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "ok");
    // the connection is clean afterwards: the next request succeeds
    let r = p
        .get("/metrics?select=code&code=eq.pre1")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!([{"code": "pre1"}]));
}
