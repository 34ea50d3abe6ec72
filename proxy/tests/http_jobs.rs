//! Asynchronous calls (`Prefer: respond-async`): `202` + `/_tenancy/jobs/<id>`,
//! progress from `tenancy progress:` NOTICEs, results equal to the
//! synchronous call, failures, cancellation with rollback, privacy between
//! identities, the job connection outside the pool, limits, TTL, shutdown.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Test functions: a slow one that reports progress, one that writes then
/// sleeps (for cancel), one that only sleeps.
async fn setup(db: &TestDb) {
    let admin = db.admin().await;
    admin
        .batch_execute(
            r#"
            CREATE FUNCTION esg.slow(steps int, pause float8 DEFAULT 0.05) RETURNS json
            LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                FOR i IN 1..steps LOOP
                    PERFORM pg_sleep(pause);
                    RAISE NOTICE 'tenancy progress: step %/%: slept', i, steps;
                END LOOP;
                RAISE WARNING 'just a warning';
                RETURN json_build_object('steps', steps, 'tenant', tenancy.current_tenant(),
                                         'role', current_user);
            END $$;
            CREATE TABLE esg.job_log (note text NOT NULL);
            CREATE FUNCTION esg.write_then_sleep(note text, secs float8) RETURNS int
            LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
            BEGIN
                INSERT INTO esg.job_log VALUES (note);
                RAISE NOTICE 'tenancy progress: 1/2: wrote %', note;
                PERFORM pg_sleep(secs);
                RAISE NOTICE 'tenancy progress: 2/2: slept';
                RETURN 1;
            END $$;
            CREATE FUNCTION esg.nap(secs float8) RETURNS text LANGUAGE sql VOLATILE
                AS $$ SELECT pg_sleep(secs)::text || 'rested' $$;
            GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA esg TO PUBLIC;
            SELECT tenancy.create_template('jobs-starter', 'globex');
            "#,
        )
        .await
        .expect("job test functions");
    admin
        .batch_execute(&format!("GRANT tenancy_superadmin TO {}", db.auth_role))
        .await
        .expect("grant superadmin");
}

fn token(role: &str, tenant: Option<&str>, sub: Option<&str>) -> String {
    let mut c = json!({ "role": role, "exp": now() + 600 });
    if let Some(t) = tenant {
        c["tenant_id"] = json!(t);
    }
    if let Some(s) = sub {
        c["sub"] = json!(s);
    }
    jwt(c)
}

/// Start a job: the 202, its headers and body; the job's location.
async fn start(p: &Proxy, path: &str, tok: &str, body: Value) -> String {
    let r = p
        .post(path)
        .bearer_auth(tok)
        .header("Prefer", "respond-async")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    assert_eq!(status, 202, "{path}: {text}");
    assert_eq!(headers["preference-applied"], "respond-async");
    let loc = headers["location"].to_str().unwrap().to_string();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status"], "running");
    assert_eq!(v["location"], loc.as_str());
    assert_eq!(loc, format!("/_tenancy/jobs/{}", v["id"].as_str().unwrap()));
    loc
}

/// Try to start a job that must be refused: the 503's body.
async fn refused(p: &Proxy, tok: &str) -> Value {
    let r = p
        .post("/rpc/nap")
        .bearer_auth(tok)
        .header("Prefer", "respond-async")
        .json(&json!({"secs": 1}))
        .send()
        .await
        .unwrap();
    let retry = r.headers().get("retry-after").cloned();
    let (s, v) = json_of(r).await;
    assert_eq!((s, v["code"].as_str()), (503, Some("TENANCY503")), "{v}");
    assert!(retry.is_some(), "503 carries Retry-After");
    v
}

async fn status(p: &Proxy, loc: &str, tok: &str) -> (u16, Value) {
    json_of(p.get(loc).bearer_auth(tok).send().await.unwrap()).await
}

/// Poll until the job has ended.
async fn wait_done(p: &Proxy, loc: &str, tok: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = status(p, loc, tok).await;
        assert_eq!(s, 200, "{v}");
        if v["status"] != "running" {
            return v;
        }
        assert!(Instant::now() < until, "job did not end: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll until `pred` holds for the job's status.
async fn wait_for(p: &Proxy, loc: &str, tok: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = status(p, loc, tok).await;
        assert_eq!(s, 200, "{v}");
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < until, "condition not reached: {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Run `f` against a fresh database and proxy, cleaning up even on panic.
macro_rules! with_proxy {
    ($tag:expr, $config:expr, |$db:ident, $p:ident| $body:expr) => {{
        let $db = TestDb::create($tag).await;
        setup(&$db).await;
        #[allow(clippy::redundant_closure_call)]
        let config = ($config)(&$db);
        let proxy = $db.proxy(config).await;
        let outcome = {
            let $p = &proxy;
            let $db = &$db;
            guarded(async { $body }).await
        };
        proxy.stop().await;
        $db.drop().await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e);
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_result_and_progress_match_the_sync_call() {
    with_proxy!("jobs_ok", |db: &TestDb| db.config(), |db, p| {
        let _ = db;
        let acme = token("tenancy_member", Some("acme"), Some("u1"));
        // the synchronous call
        let (s, sync) = json_of(
            p.post("/rpc/slow")
                .bearer_auth(&acme)
                .json(&json!({"steps": 3}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{sync}");
        assert_eq!(sync["steps"], 3);
        assert_eq!(sync["role"], "tenancy_member");
        assert!(sync["tenant"].is_string(), "{sync}");
        // the same call as a job
        let loc = start(p, "/rpc/slow", &acme, json!({"steps": 3})).await;
        let v = wait_done(p, &loc, &acme).await;
        assert_eq!(v["status"], "succeeded", "{v}");
        assert_eq!(v["function"], "esg.slow");
        assert_eq!(
            v["result"], sync,
            "the job's result is the synchronous body"
        );
        assert_eq!(v["status_code"], 200);
        assert_eq!(v["error"], Value::Null);
        assert_eq!(v["progress_count"], 3);
        let progress = v["progress"].as_array().unwrap();
        assert_eq!(progress.len(), 3, "{v}");
        for (i, e) in progress.iter().enumerate() {
            assert_eq!(
                e,
                &json!({"unit": "step", "done": i + 1, "total": 3, "message": "slept"})
            );
        }
        assert_eq!(
            v["notices"],
            json!([{"severity": "WARNING", "message": "just a warning"}])
        );
        assert_eq!(v["cancel_requested"], false);
        let (started, finished) = (
            v["started_at"].as_str().unwrap(),
            v["finished_at"].as_str().unwrap(),
        );
        assert!(started.ends_with('Z') && started.len() == 24, "{started}");
        assert!(finished >= started, "{started} {finished}");

        // GET /rpc with arguments in the query string
        let r = p
            .get("/rpc/slow?steps=2&pause=0")
            .bearer_auth(&acme)
            .header("Prefer", "respond-async")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let v = wait_done(p, &loc, &acme).await;
        assert_eq!(v["status"], "succeeded", "{v}");
        assert_eq!(v["result"]["steps"], 2);
        assert_eq!(v["progress"][1]["done"], 2);

        // a void function: result null, as the 204 has no body
        let loc = start(p, "/rpc/noop", &acme, json!({})).await;
        let v = wait_done(p, &loc, &acme).await;
        assert_eq!(v["status"], "succeeded", "{v}");
        assert_eq!(v["status_code"], 204);
        assert_eq!(v["result"], Value::Null);

        // errors found before the call runs are answered at once, no job
        let (s, v) = json_of(
            p.post("/rpc/no_such_fn")
                .bearer_auth(&acme)
                .header("Prefer", "respond-async")
                .json(&json!({}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 404, "{v}");
        assert_eq!(v["code"], "PGRST202");

        // respond-async elsewhere is an unknown preference: ignored...
        let r = p
            .get("/metrics?select=code&limit=1")
            .bearer_auth(&acme)
            .header("Prefer", "respond-async")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("preference-applied").is_none());
        // ...but an error with handling=strict, unlike on /rpc
        let (s, v) = json_of(
            p.get("/metrics?select=code&limit=1")
                .bearer_auth(&acme)
                .header("Prefer", "respond-async, handling=strict")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["code"], "PGRST122");
        let r = p
            .post("/rpc/slow")
            .bearer_auth(&acme)
            .header("Prefer", "respond-async, handling=strict")
            .json(&json!({"steps": 1, "pause": 0}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        assert_eq!(wait_done(p, &loc, &acme).await["status"], "succeeded");
        // HEAD is not run as a job
        let r = p
            .head("/rpc/slow?steps=1&pause=0")
            .bearer_auth(&acme)
            .header("Prefer", "respond-async")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        // anonymous callers cannot start jobs
        let (s, v) = json_of(
            p.post("/rpc/slow")
                .header("Prefer", "respond-async")
                .json(&json!({"steps": 1}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 401, "{v}");
        assert_eq!(v["code"], "TENANCY401");

        // the real thing: provision_many reports a step per table and tenant
        let sa = token("tenancy_superadmin", None, Some("ops"));
        let r = p
            .post("/rpc/provision_many")
            .bearer_auth(&sa)
            .header("Content-Profile", "tenancy")
            .header("Prefer", "respond-async")
            .json(&json!({"template": "jobs-starter", "tenants": [
                {"slug": "job-north", "name": "North"}, {"slug": "job-south", "name": "South"}]}))
            .send()
            .await
            .unwrap();
        let (s, text) = (r.status(), r.text().await.unwrap());
        assert_eq!(s, 202, "{text}");
        let loc = serde_json::from_str::<Value>(&text).unwrap()["location"]
            .as_str()
            .unwrap()
            .to_string();
        let v = wait_done(p, &loc, &sa).await;
        assert_eq!(v["status"], "succeeded", "{v}");
        assert_eq!(v["function"], "tenancy.provision_many");
        let ids = v["result"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(ids.len(), 2);
        let progress = v["progress"].as_array().unwrap();
        let tenants: Vec<&Value> = progress.iter().filter(|e| e["unit"] == "tenant").collect();
        assert_eq!(tenants.len(), 2, "{v}");
        assert_eq!(
            tenants[1],
            &json!({"unit": "tenant", "done": 2, "total": 2, "message": "provisioned job-south"})
        );
        let tables = progress.iter().filter(|e| e["unit"] == "table").count();
        assert!(tables >= 2, "{v}");
        assert_eq!(v["progress_count"], progress.len());
        let admin = db.admin().await;
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM tenancy.tenants WHERE slug IN ('job-north', 'job-south')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_failure_and_cancel() {
    with_proxy!("jobs_fail", |db: &TestDb| db.config(), |db, p| {
        let acme = token("tenancy_member", Some("acme"), Some("u1"));
        // a failure: the error body (and status) the synchronous call answers
        let sync = p
            .post("/rpc/fail")
            .bearer_auth(&acme)
            .json(&json!({"code": "P0001"}))
            .send()
            .await
            .unwrap();
        let (s, sync) = json_of(sync).await;
        assert_eq!(s, 400, "{sync}");
        let loc = start(p, "/rpc/fail", &acme, json!({"code": "P0001"})).await;
        let v = wait_done(p, &loc, &acme).await;
        assert_eq!(v["status"], "failed", "{v}");
        assert_eq!(v["error"], sync);
        assert_eq!(
            v["error"],
            json!({"code": "P0001", "message": "failed on purpose", "details": null, "hint": "a hint"})
        );
        assert_eq!(v["status_code"], 400);
        assert_eq!(v["result"], Value::Null);

        // cancel: the row written before the cancel is rolled back
        let loc = start(
            p,
            "/rpc/write_then_sleep",
            &acme,
            json!({"note": "cancelled-1", "secs": 60}),
        )
        .await;
        let v = wait_for(p, &loc, &acme, |v| v["progress_count"] == 1).await;
        assert_eq!(v["progress"][0]["message"], "wrote cancelled-1");
        let t0 = Instant::now();
        let (s, v) = json_of(p.delete(&loc).bearer_auth(&acme).send().await.unwrap()).await;
        assert_eq!(s, 202, "{v}");
        assert_eq!(v["cancel_requested"], true);
        let v = wait_done(p, &loc, &acme).await;
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert_eq!(v["status"], "cancelled", "{v}");
        assert_eq!(v["error"]["code"], "57014", "{v}");
        assert_eq!(v["progress_count"], 1);
        let admin = db.admin().await;
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM esg.job_log WHERE note = 'cancelled-1'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "no partial write");
        // cancelling an ended job changes nothing
        let (s, v) = json_of(p.delete(&loc).bearer_auth(&acme).send().await.unwrap()).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["status"], "cancelled");
        // a job that is not cancelled commits
        let loc = start(
            p,
            "/rpc/write_then_sleep",
            &acme,
            json!({"note": "kept-1", "secs": 0}),
        )
        .await;
        let v = wait_done(p, &loc, &acme).await;
        assert_eq!(v["status"], "succeeded", "{v}");
        assert_eq!(v["result"], 1);
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM esg.job_log WHERE note = 'kept-1'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_are_private_and_expire() {
    let config = |db: &TestDb| {
        let mut c = db.config();
        c.jobs_ttl_secs = 2;
        c
    };
    with_proxy!("jobs_priv", config, |db, p| {
        let _ = db;
        let owner = token("tenancy_member", Some("acme"), Some("u1"));
        let loc = start(p, "/rpc/nap", &owner, json!({"secs": 0.5})).await;
        let others = [
            (
                "another tenant",
                token("tenancy_member", Some("globex"), Some("u1")),
            ),
            (
                "another sub",
                token("tenancy_member", Some("acme"), Some("u2")),
            ),
            ("no sub", token("tenancy_member", Some("acme"), None)),
            (
                "another role",
                token("tenancy_viewer", Some("acme"), Some("u1")),
            ),
            ("no tenant", token("tenancy_member", None, Some("u1"))),
        ];
        for (what, t) in &others {
            let (s, v) = status(p, &loc, t).await;
            assert_eq!(s, 404, "{what}: {v}");
            assert_eq!(v["code"], "TENANCY404", "{what}");
            let (s, _) = json_of(p.delete(&loc).bearer_auth(t).send().await.unwrap()).await;
            assert_eq!(s, 404, "{what}");
        }
        // an unknown id answers exactly the same
        let unknown = "/_tenancy/jobs/00000000-0000-0000-0000-000000000000";
        let (s, v) = status(p, unknown, &owner).await;
        assert_eq!(s, 404);
        let (_, theirs) = status(p, &loc, &others[0].1).await;
        assert_eq!(
            v["message"], theirs["message"],
            "no difference between unknown and foreign"
        );
        // anonymous: 401
        let (s, v) = json_of(p.get(&loc).send().await.unwrap()).await;
        assert_eq!(s, 401, "{v}");
        // a bad token: 401 as everywhere
        let (s, _) = json_of(p.get(&loc).bearer_auth("x.y.z").send().await.unwrap()).await;
        assert_eq!(s, 401);
        // the owner sees it, until the TTL after it ended
        let v = wait_done(p, &loc, &owner).await;
        assert_eq!(v["status"], "succeeded", "{v}");
        assert_eq!(v["result"], "rested");
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let (s, v) = status(p, &loc, &owner).await;
        assert_eq!(s, 404, "forgotten after the TTL: {v}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_stay_off_the_pool_are_bounded_and_stop_with_the_proxy() {
    let config = |db: &TestDb| {
        let mut c = db.config();
        c.db_pool = 1;
        c.max_jobs = 2;
        c
    };
    with_proxy!("jobs_pool", config, |db, p| {
        let acme = token("tenancy_member", Some("acme"), Some("u1"));
        let a = start(p, "/rpc/nap", &acme, json!({"secs": 60})).await;
        let b = start(p, "/rpc/nap", &acme, json!({"secs": 60})).await;
        // a third is refused while two run
        refused(p, &acme).await;
        // the pool (one connection) still serves requests while both jobs sleep
        for _ in 0..5 {
            let t = Instant::now();
            let (s, v) = json_of(
                p.get("/metrics?select=code&limit=1")
                    .bearer_auth(&acme)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(s, 200, "{v}");
            assert!(t.elapsed() < Duration::from_secs(5));
        }
        let (s, v) = json_of(
            p.post("/rpc/add")
                .bearer_auth(&acme)
                .json(&json!({"a": 1}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v), (200, json!(3)));
        let admin = db.admin().await;
        let sleeping = |admin: tokio_postgres::Client| async move {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND state = 'active' AND wait_event = 'PgSleep'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (n, admin)
        };
        // both jobs report running once their backend has the statement; on a
        // loaded host it may take a moment to reach pg_sleep
        let (mut n, mut admin) = sleeping(admin).await;
        for _ in 0..50 {
            if n == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            (n, admin) = sleeping(admin).await;
        }
        assert_eq!(n, 2, "two job backends run the statement");
        // ending one frees a slot
        let (s, _) = json_of(p.delete(&a).bearer_auth(&acme).send().await.unwrap()).await;
        assert_eq!(s, 202);
        assert_eq!(wait_done(p, &a, &acme).await["status"], "cancelled");
        let c = start(p, "/rpc/nap", &acme, json!({"secs": 60})).await;
        // metrics count jobs by status
        let m = p.metrics_text().await;
        assert!(m.contains("tenancy_proxy_jobs_started_total"), "{m}");
        assert!(
            m.lines()
                .any(|l| l.starts_with("tenancy_proxy_jobs_finished_total")
                    && l.contains("status=\"cancelled\"")),
            "{m}"
        );
        assert!(m.contains("tenancy_proxy_jobs_rejected_total"), "{m}");
        // stopping the proxy cancels the running jobs (b and c)
        let _ = (b, c);
        let t = Instant::now();
        let jobs = p.running.state.jobs.clone();
        jobs.shutdown(Duration::from_secs(5)).await;
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(jobs.running(), 0);
        let (n, _) = sleeping(admin).await;
        assert_eq!(n, 0, "no job backend left running");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_tenant_cannot_take_every_job_slot() {
    let config = |db: &TestDb| {
        let mut c = db.config();
        c.max_jobs = 3;
        c.max_jobs_per_tenant = 2;
        c
    };
    with_proxy!("jobs_fair", config, |db, p| {
        let acme = token("tenancy_member", Some("acme"), Some("u1"));
        let a1 = start(p, "/rpc/nap", &acme, json!({"secs": 60})).await;
        let a2 = start(p, "/rpc/nap", &acme, json!({"secs": 60})).await;
        // a third for acme is refused: its own cap, not the global one
        let v = refused(p, &acme).await;
        assert!(
            v["details"]
                .as_str()
                .unwrap()
                .contains("TENANCY_MAX_JOBS_PER_TENANT"),
            "{v}"
        );
        // the same tenant under its uuid, upper-cased, is the same tenant
        let id: uuid::Uuid = db
            .admin()
            .await
            .query_one("SELECT id FROM tenancy.tenants WHERE slug = 'acme'", &[])
            .await
            .unwrap()
            .get(0);
        let by_uuid = token(
            "tenancy_member",
            Some(&id.to_string().to_uppercase()),
            Some("u2"),
        );
        let v = refused(p, &by_uuid).await;
        assert!(
            v["details"]
                .as_str()
                .unwrap()
                .contains("TENANCY_MAX_JOBS_PER_TENANT"),
            "{v}"
        );
        // another tenant still gets the slot acme could not take
        let globex = token("tenancy_member", Some("globex"), Some("u1"));
        let g = start(p, "/rpc/nap", &globex, json!({"secs": 60})).await;
        // now every slot is taken: the global cap answers
        let other = token("tenancy_member", Some("initech"), Some("u1"));
        let v = refused(p, &other).await;
        assert!(
            v["details"].as_str().unwrap().contains("TENANCY_MAX_JOBS)"),
            "{v}"
        );
        for (loc, tok) in [(&a1, &acme), (&a2, &acme), (&g, &globex)] {
            let (s, _) = json_of(p.delete(loc).bearer_auth(tok).send().await.unwrap()).await;
            assert_eq!(s, 202);
            assert_eq!(wait_done(p, loc, tok).await["status"], "cancelled");
        }
        // a slot freed: acme runs again
        let a3 = start(p, "/rpc/nap", &acme, json!({"secs": 0})).await;
        assert_eq!(wait_done(p, &a3, &acme).await["status"], "succeeded");
    });
}
