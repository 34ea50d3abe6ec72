//! What a hostile or careless client can hold, end to end against the real
//! cluster: slow headers and idle connections (`header-read-timeout-ms`),
//! connection floods (`max-connections`), and requests abandoned half-way
//! (the statement is cancelled, the transaction rolled back), and the
//! request body bytes held at once (`body-budget-bytes`).

mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resource_limits() {
    let db = TestDb::create("lim").await;
    let admin = db.admin().await;
    admin
        .batch_execute(
            "CREATE FUNCTION esg.nap(s float8) RETURNS int LANGUAGE sql VOLATILE
                 AS 'SELECT 1 FROM pg_sleep(s)';
             GRANT EXECUTE ON FUNCTION esg.nap(float8) TO PUBLIC;
             CREATE TABLE esg.marks(note text);
             GRANT ALL ON esg.marks TO PUBLIC;
             CREATE FUNCTION esg.mark_then_nap(note text, s float8) RETURNS int LANGUAGE sql VOLATILE
                 AS 'INSERT INTO esg.marks VALUES (note); SELECT 1 FROM pg_sleep(s)';
             GRANT EXECUTE ON FUNCTION esg.mark_then_nap(text, float8) TO PUBLIC;",
        )
        .await
        .unwrap();
    let outcome = guarded(async {
        slow_and_idle_clients(&db).await;
        connection_cap(&db).await;
        abandoned_request(&db, &admin).await;
        late_cancels(&db).await;
        body_budget(&db).await;
    })
    .await;
    finish(outcome, &db, Vec::new()).await;
}

/// Reads until the server closes the connection (or `limit` passes):
/// the bytes read and when the connection closed (`None`: still open).
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(t.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return (got, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Some(t.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn slow_and_idle_clients(db: &TestDb) {
    let mut c = db.config();
    c.header_read_timeout_ms = 1000;
    let p = db.proxy(c).await;
    let addr = p.running.addr;

    // headers trickled, never finished: cut after the timeout, no response
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /units HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    let closed = closed.expect("a connection trickling headers is closed");
    assert!(closed >= Duration::from_millis(900), "{closed:?}");
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // a byte every 300 ms does not reset the clock
    let mut s = TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    let mut cut = None;
    for b in b"GET /units HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghijklmnopqrstuvwxyz\r\n" {
        if s.write_all(&[*b]).await.is_err() {
            cut = Some(t.elapsed());
            break;
        }
        let mut one = [0u8; 1];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), s.read(&mut one)).await {
            assert!(matches!(r, Ok(0) | Err(_)), "an answer to half a request");
            cut = Some(t.elapsed());
            break;
        }
    }
    let cut = cut.expect("a trickling client is cut");
    assert!(cut < Duration::from_secs(5), "{cut:?}");

    // an idle kept-alive connection closes after the same time; the
    // response before it was complete
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /units?select=code&code=eq.t HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with(r#"[{"code":"t"}]"#), "{text}");
    assert!(closed.is_some(), "an idle connection stays open");

    // a client that keeps asking is never cut: ten requests over ~2.5 s
    // on one connection, each answered
    let mut s = TcpStream::connect(addr).await.unwrap();
    for _ in 0..10 {
        s.write_all(b"GET /units?select=code&code=eq.t HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    p.stop().await;
}

async fn connection_cap(db: &TestDb) {
    let mut c = db.config();
    c.max_connections = 3;
    // long enough that only a holder leaving frees a slot below
    c.header_read_timeout_ms = 10_000;
    let p = db.proxy(c).await;
    let addr = p.running.addr;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // the fourth client is accepted by the kernel but not served while
    // three connections are open
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    fourth
        .write_all(
            b"GET /units?select=code&code=eq.t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(700), fourth.read(&mut buf)).await;
    assert!(early.is_err(), "served past the connection cap");
    // one holder leaves: the fourth is served at once
    drop(held.pop());
    let t = Instant::now();
    let (got, _) = read_until_closed(&mut fourth, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    drop(held);
    let m = p.metrics_text().await;
    assert!(
        m.lines().any(
            |l| l.starts_with("tenancy_proxy_connection_limit_reached_total") && !l.ends_with(" 0")
        ),
        "{m}"
    );
    p.stop().await;
}

/// Backends of this database sleeping in `pg_sleep`.
async fn sleeping(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event = 'PgSleep' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A JSON POST written on a raw connection, left open for the caller.
async fn post_raw(addr: std::net::SocketAddr, path: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s
}

async fn abandoned_request(db: &TestDb, admin: &tokio_postgres::Client) {
    let mut c = db.config();
    c.db_pool = 1;
    let p = db.proxy(c).await;
    for (path, body) in [
        ("/rpc/nap", r#"{"s": 60}"#),
        // a write the client gives up on is rolled back, not committed later
        ("/rpc/mark_then_nap", r#"{"note": "abandoned", "s": 60}"#),
    ] {
        let s = post_raw(p.running.addr, path, body).await;
        assert!(
            eventually(50, || async { sleeping(admin).await == 1 }).await,
            "the statement started"
        );
        // the client hangs up: its statement is cancelled, not left to run 60 s
        drop(s);
        let t = Instant::now();
        assert!(
            eventually(50, || async { sleeping(admin).await == 0 }).await,
            "{path}: the abandoned statement still runs"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        // the pool's only connection, rolled back, serves the next request
        let r = p.get("/rpc/nap?s=0").send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "1");
    }
    // a request still waiting for the pool when its client leaves never runs
    let holder = post_raw(p.running.addr, "/rpc/nap", r#"{"s": 60}"#).await;
    assert!(eventually(50, || async { sleeping(admin).await == 1 }).await);
    let queued = post_raw(
        p.running.addr,
        "/rpc/mark_then_nap",
        r#"{"note": "queued", "s": 0}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(queued);
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(holder);
    assert!(eventually(50, || async { sleeping(admin).await == 0 }).await);
    let r = p.get("/rpc/nap?s=0.3").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let marks: i64 = admin
        .query_one("SELECT count(*) FROM esg.marks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(marks, 0, "the abandoned write was committed");
    assert_eq!(p.running.state.pool.status().size, 1);
    // a request that completes is not cancelled afterwards: the next one on
    // the same connection runs to its end
    let r = p
        .post("/rpc/mark_then_nap")
        .json(&serde_json::json!({"note": "kept", "s": 0.2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = p.get("/rpc/nap?s=0.5").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let marks: i64 = admin
        .query_one("SELECT count(*) FROM esg.marks WHERE note = 'kept'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(marks, 1);
    let m = p.metrics_text().await;
    assert!(
        m.lines()
            .any(|l| l == "tenancy_proxy_cancelled_statements_total 3"),
        "{m}"
    );
    p.stop().await;
}

/// A cancel request is not acknowledged: PostgreSQL signals the backend
/// some time after it was sent. Clients that hang up just as their short
/// statement ends must not cancel the next request on the same pooled
/// connection (before the fix: a few 500 57014 per thousand hang-ups).
async fn late_cancels(db: &TestDb) {
    let mut c = db.config();
    c.db_pool = 1;
    let p = db.proxy(c).await;
    let addr = p.running.addr;
    let until = Instant::now() + Duration::from_secs(6);
    let attacker = tokio::spawn(async move {
        let mut n = 0u64;
        while Instant::now() < until {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /rpc/nap?s=0 HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            // hang up somewhere around the statement's end (0-1.5 ms)
            n += 1;
            tokio::time::sleep(Duration::from_micros(n * 7919 % 1500)).await;
            drop(s);
        }
        n
    });
    // four clients keep the pool's one connection busy
    let victims: Vec<_> = (0..4)
        .map(|_| {
            let client = p.http.clone();
            let url = format!("{}/rpc/nap?s=0", p.base);
            tokio::spawn(async move {
                let (mut served, mut failures) = (0usize, Vec::new());
                while Instant::now() < until {
                    let r = client.get(&url).send().await.unwrap();
                    let status = r.status().as_u16();
                    let body = r.text().await.unwrap();
                    if status == 200 {
                        served += 1;
                    } else {
                        failures.push((status, body));
                    }
                }
                (served, failures)
            })
        })
        .collect();
    let (mut served, mut failures) = (0, Vec::new());
    for v in victims {
        let (s, f) = v.await.unwrap();
        served += s;
        failures.extend(f);
    }
    let attacks = attacker.await.unwrap();
    let m = p.metrics_text().await;
    let cancelled: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("tenancy_proxy_cancelled_statements_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed beside {attacks} hang-ups ({cancelled} cancels): {:?}",
        failures.len(),
        served + failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(served > 100, "{served}");
    assert!(
        cancelled > 0.0,
        "no statement was cancelled in {attacks} hang-ups"
    );
    p.stop().await;
}

async fn body_budget(db: &TestDb) {
    let mut c = db.config();
    c.body_budget_bytes = 64 * 1024;
    c.db_pool_acquisition_timeout = 1;
    let p = db.proxy(c).await;
    // a slow upload holds what it has sent: 50 kB of a 60 kB body
    let total = 60_000;
    let body = format!("{}[]", " ".repeat(total - 2));
    let mut slow = TcpStream::connect(p.running.addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /units HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    slow.write_all(&body.as_bytes()[..50_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // another body does not fit: it waits, then 503 with Retry-After
    let other = format!("[{}]", vec![r#"{"code":"zz","name":"zz"}"#; 800].join(","));
    assert!(other.len() > 16 * 1024);
    let t = Instant::now();
    let r = p
        .post("/units")
        .header("Content-Type", "application/json")
        .body(other.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(header(&r, "retry-after").as_deref(), Some("1"));
    let (_, v) = json_of(r).await;
    assert_eq!(v["code"], "TENANCY503", "{v}");
    // a small body still fits
    let r = p
        .post("/rpc/nap")
        .json(&serde_json::json!({"s": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // the slow upload finishes and is answered; its bytes are released
    slow.write_all(&body.as_bytes()[50_000..]).await.unwrap();
    let (got, _) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(
        got.starts_with(b"HTTP/1.1 "),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let r = p
        .post("/units")
        .header("Content-Type", "application/json")
        .body(other)
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 503);
    // a body declared larger than the whole budget: 413 before it is read
    let r = p
        .post("/units")
        .header("Content-Type", "application/json")
        .body(" ".repeat(70 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let (_, v) = json_of(r).await;
    assert!(
        v["hint"]
            .as_str()
            .unwrap()
            .contains("TENANCY_BODY_BUDGET_BYTES"),
        "{v}"
    );
    let m = p.metrics_text().await;
    assert!(
        m.lines()
            .any(|l| l == "tenancy_proxy_body_budget_timeouts_total 1"),
        "{m}"
    );
    p.stop().await;
}
