//! HTTP handlers: health, readiness, metrics and the PostgREST API.

use crate::auth::Identity;
use crate::db::{self, Exec, Outcome};
use crate::statements::{Read, ReadKey};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tenancy_core::postgrest::ast::{Condition, Operator, Query, Value};
use tenancy_core::postgrest::csv;
use tenancy_core::postgrest::parse::{apply_range, content_range, is_rpc_argument, parse_query};
use tenancy_core::postgrest::payload;
use tenancy_core::postgrest::prefer::{self, Count, Missing, Preferences, Return};
use tenancy_core::postgrest::schema::Volatility;
use tenancy_core::postgrest::sql::{
    self, Args, InsertSpec, Options, RawValue, Resolution, Returning,
};
use tenancy_core::postgrest::ApiError;

pub async fn health() -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{\"status\":\"ok\"}",
    )
}

/// The admin server's `/live`: the process answers.
pub async fn live() -> StatusCode {
    StatusCode::OK
}

pub async fn ready(State(st): State<Arc<AppState>>) -> Response {
    let db_ok = match st.pool.get().await {
        Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    let cache = st.loaded.load(Ordering::SeqCst);
    let body = json!({ "database": db_ok, "schema_cache": cache }).to_string();
    let status = if db_ok && cache {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let s = st.pool.status();
    metrics::gauge!("tenancy_proxy_pool_size").set(s.size as f64);
    metrics::gauge!("tenancy_proxy_pool_available").set(s.available as f64);
    metrics::gauge!("tenancy_proxy_pool_max_size").set(s.max_size as f64);
    metrics::gauge!("tenancy_proxy_pool_waiting").set(s.waiting as f64);
    // PostgREST's names for the same (its admin server's /metrics)
    metrics::gauge!("pgrst_db_pool_available").set(s.available as f64);
    metrics::gauge!("pgrst_db_pool_waiting").set(s.waiting as f64);
    metrics::gauge!("pgrst_db_pool_max").set(s.max_size as f64);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

/// `server-timing-enabled`: when each step of a request ended, for the
/// `Server-Timing` header (jwt, parse, plan, transaction, response).
/// `parse` is reading the request (path, headers, preferences), `plan`
/// parsing the query string and building the statement, `transaction` the
/// database's round trips, `response` rendering the answer.
pub struct Timing {
    start: Instant,
    /// nanoseconds after `start` + 1 (0: not reached): jwt verified, request
    /// read, statement sent, transaction ended
    marks: [AtomicU64; 4],
}

const JWT: usize = 0;
const PARSED: usize = 1;
const SENT: usize = 2;
const DONE: usize = 3;

impl Timing {
    fn new(start: Instant) -> Timing {
        Timing {
            start,
            marks: Default::default(),
        }
    }

    /// Mark step `i` as ended now (the first mark of `SENT` and the last of
    /// `DONE` count, when a request runs more than one statement).
    fn mark(&self, i: usize) {
        let ns = self.start.elapsed().as_nanos() as u64 + 1;
        if i == DONE {
            self.marks[i].store(ns, Ordering::Relaxed);
        } else {
            let _ = self.marks[i].compare_exchange(0, ns, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The header value: the steps that ran, in milliseconds with one
    /// decimal, as PostgREST renders it; an error response has no
    /// `response` step, and stops at the step that failed.
    fn header(&self, error: bool) -> String {
        let end = self.start.elapsed().as_nanos() as u64 + 1;
        let m: Vec<u64> = self
            .marks
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        let mut steps = vec![("jwt", m[JWT])];
        if m[JWT] != 0 && m[PARSED] != 0 {
            steps.push(("parse", m[PARSED]));
            if m[SENT] != 0 {
                steps.push(("plan", m[SENT]));
                if m[DONE] != 0 {
                    steps.push(("transaction", m[DONE]));
                }
            }
            if !error && (m[SENT] == 0 || m[DONE] != 0) {
                steps.push(("response", end));
            }
        }
        let mut last = 1;
        let mut out = Vec::new();
        for (name, at) in steps.into_iter().filter(|(_, at)| *at != 0) {
            out.push(format!(
                "{name};dur={:.1}",
                at.saturating_sub(last) as f64 / 1e6
            ));
            last = at.max(last);
        }
        out.join(", ")
    }
}

/// PostgREST's error response.
pub fn error_response(e: &ApiError) -> Response {
    let details = match (&e.details, e.details_json) {
        (Some(d), true) => serde_json::from_str(d).unwrap_or_else(|_| Json::String(d.clone())),
        (d, _) => json!(d),
    };
    let body = json!({ "code": e.code, "details": details, "hint": e.hint, "message": e.message })
        .to_string();
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response();
    for (k, v) in e.headers.iter().flat_map(|h| h.iter()) {
        if k == tenancy_core::postgrest::error::STATUS_TEXT {
            // `RAISE SQLSTATE 'PGRST'`'s status_text: the reason phrase
            if let Ok(p) = hyper::ext::ReasonPhrase::try_from(v.as_bytes().to_vec()) {
                r.extensions_mut().insert(p);
            }
            continue;
        }
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            // an error's own media type (a `RAISE SQLSTATE 'PGRST'` header)
            // replaces the JSON default; other headers add up
            if k == header::CONTENT_TYPE {
                r.headers_mut().insert(k, v);
            } else {
                r.headers_mut().append(k, v);
            }
        }
    }
    // PostgREST v13's `Proxy-Status` (RFC 9209): which error, for proxies
    // and logs in front of us; harmless to v12 clients
    let token = !e.code.is_empty()
        && e.code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    let code = if token {
        e.code.clone()
    } else {
        format!("\"{}\"", e.code.replace('\\', "\\\\").replace('"', "\\\""))
    };
    if let Ok(v) = HeaderValue::from_str(&format!("PostgREST; error={code}")) {
        r.headers_mut()
            .insert(HeaderName::from_static("proxy-status"), v);
    }
    if e.status == 401 {
        let v = if e.code == "PGRST302" || e.code == "42501" {
            "Bearer".to_string()
        } else {
            format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                e.message.replace('"', "'")
            )
        };
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    r
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Json,
    Object,
    Csv,
    /// `application/geo+json`, with PostGIS installed (see `Schema::geojson`).
    GeoJson,
}

/// The response's media type from `Accept`, and whether it asks for
/// `nulls=stripped` (PostgREST's `vnd.pgrst.array+json;nulls=stripped`,
/// `vnd.pgrst.object+json;nulls=stripped`; `vnd.pgrst.array+json` alone is JSON).
/// `geojson`: whether PostGIS is there to answer `application/geo+json`
/// (without it the type is not available, and a later one of `Accept` may
/// answer); asked only when a client names the type.
fn media(accept: Option<&str>, geojson: impl Fn() -> bool) -> Result<(Media, bool), ApiError> {
    let Some(a) = accept else {
        return Ok((Media::Json, false));
    };
    if a.trim().is_empty() {
        return Ok((Media::Json, false));
    }
    for part in a.split(',') {
        let mut pieces = part.split(';');
        let m = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let stripped = pieces.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("nulls") && v.trim().trim_matches('"') == "stripped"
            })
        });
        match m.as_str() {
            "application/vnd.pgrst.object+json" | "application/vnd.pgrst.object" => {
                return Ok((Media::Object, stripped))
            }
            "application/vnd.pgrst.array+json" | "application/vnd.pgrst.array" => {
                return Ok((Media::Json, stripped))
            }
            "text/csv" => return Ok((Media::Csv, false)),
            "application/geo+json" if geojson() => return Ok((Media::GeoJson, false)),
            "application/json" | "*/*" | "application/*" => return Ok((Media::Json, false)),
            _ => {}
        }
    }
    Err(ApiError::new(
        406,
        "PGRST107",
        format!("None of these media types are available: {a}"),
    ))
}

/// The media type a handler function (one returning the domain `mt`, see
/// `Function::media_type`) answers `accept` with, as PostgREST negotiates:
/// the first listed type that is `mt` wins, unless a builtin type comes
/// first (`None`: JSON, CSV, the singular object). The any-handler `*/*`
/// takes every type but the builtin ones, as `application/octet-stream`
/// (the function may set another `Content-Type` in `response.headers`).
fn handler_media(accept: Option<&str>, mt: &str) -> Option<String> {
    const BUILTIN: &[&str] = &[
        "application/json",
        "text/csv",
        "application/vnd.pgrst.object+json",
        "application/vnd.pgrst.object",
        "application/vnd.pgrst.array+json",
        "application/vnd.pgrst.array",
    ];
    for e in accept_types(accept) {
        if mt == "*/*" {
            return (!BUILTIN.contains(&e.as_str()))
                .then(|| "application/octet-stream".to_string());
        }
        if e.eq_ignore_ascii_case(mt) {
            return Some(mt.to_string());
        }
        if BUILTIN.contains(&e.as_str()) || e == "*/*" || e == "application/*" {
            return None;
        }
    }
    None
}

/// A media type handler's value as the response body: its text, or the
/// bytes of a `bytea` domain (sent as hex by the statement).
fn handler_bytes(out: &Outcome, binary: bool) -> Result<Vec<u8>, ApiError> {
    let text = out.body.as_deref().unwrap_or_default();
    if binary {
        hex::decode(text.as_bytes())
            .map_err(|_| ApiError::new(500, "PGRST000", "the handler's bytes came back malformed"))
    } else {
        Ok(text.as_bytes().to_vec())
    }
}

/// The media types of `Accept`, in order, lowercase, without parameters
/// (none or blank: `*/*`).
fn accept_types(accept: Option<&str>) -> impl Iterator<Item = String> + '_ {
    accept
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("*/*")
        .split(',')
        .map(|part| {
            part.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|e| !e.is_empty())
}

/// The aggregate answering a read of `table` for `Accept`, and the
/// response's `Content-Type`: the first media range a handler or a builtin
/// answers decides (a builtin one: none), as PostgREST negotiates.
fn table_handler<'s>(
    schema: &'s tenancy_core::postgrest::schema::Schema,
    table: &tenancy_core::postgrest::schema::Table,
    accept: Option<&str>,
    default_select: bool,
) -> Option<(&'s tenancy_core::postgrest::schema::MediaAggregate, String)> {
    for e in accept_types(accept) {
        // the vendored types are never overridden
        if e.starts_with("application/vnd.pgrst.") {
            return None;
        }
        let builtin = media(Some(&e), || schema.geojson.is_some()).is_ok();
        if let Some(a) =
            schema.media_aggregate(&table.schema, &table.name, &e, default_select, builtin)
        {
            let ct = if a.media_type == "*/*" {
                "application/octet-stream".to_string()
            } else {
                media_content_type(&a.media_type)
            };
            return Some((a, ct));
        }
        if builtin {
            return None;
        }
    }
    None
}

/// The `Content-Type` of a handler's answer: the text types PostgREST
/// knows carry `charset=utf-8`, others go as named.
fn media_content_type(mt: &str) -> String {
    match mt.to_ascii_lowercase().as_str() {
        "text/plain" | "text/xml" | "application/json" | "text/csv" | "application/geo+json" => {
            format!("{mt}; charset=utf-8")
        }
        _ => mt.to_string(),
    }
}

/// `Accept: application/vnd.pgrst.plan[+text|+json]; for="<media>";
/// options=analyze|verbose|settings|buffers|wal` (PostgREST's execution
/// plan, as postgrest-js `.explain()` sends it), when it is the first media
/// range of `Accept`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlanAccept {
    json: bool,
    /// The media type the explained query would answer with.
    for_media: String,
    /// EXPLAIN options, in PostgreSQL's order; unknown names are ignored.
    options: Vec<&'static str>,
}

fn plan_accept(accept: Option<&str>) -> Option<PlanAccept> {
    let first = accept?.split(',').next()?;
    let mut pieces = first.split(';');
    let json = match pieces.next()?.trim().to_ascii_lowercase().as_str() {
        "application/vnd.pgrst.plan" | "application/vnd.pgrst.plan+text" => false,
        "application/vnd.pgrst.plan+json" => true,
        _ => return None,
    };
    let mut p = PlanAccept {
        json,
        for_media: "application/json".to_string(),
        options: Vec::new(),
    };
    for piece in pieces {
        let Some((k, v)) = piece.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            // PostgREST names the singular type by its full name
            "for" if v.eq_ignore_ascii_case("application/vnd.pgrst.object") => {
                p.for_media = "application/vnd.pgrst.object+json".to_string()
            }
            "for" if !v.is_empty() => p.for_media = v.to_string(),
            "options" => {
                let asked: Vec<String> = v
                    .split('|')
                    .map(|o| o.trim().to_ascii_lowercase())
                    .collect();
                p.options = ["analyze", "verbose", "settings", "buffers", "wal"]
                    .into_iter()
                    .filter(|o| asked.iter().any(|a| a == o))
                    .collect();
            }
            _ => {}
        }
    }
    Some(p)
}

impl PlanAccept {
    /// `EXPLAIN (…)` put before the statement.
    fn prefix(&self) -> String {
        let mut opts = vec![if self.json {
            "FORMAT JSON"
        } else {
            "FORMAT TEXT"
        }
        .to_string()];
        opts.extend(self.options.iter().map(|o| o.to_ascii_uppercase()));
        format!("EXPLAIN ({})", opts.join(", "))
    }

    fn content_type(&self) -> String {
        let mut c = format!(
            "application/vnd.pgrst.plan+{}; for=\"{}\"",
            if self.json { "json" } else { "text" },
            self.for_media
        );
        if !self.options.is_empty() {
            c.push_str(&format!("; options={}", self.options.join("|")));
        }
        c.push_str("; charset=utf-8");
        c
    }
}

/// A request answered with its execution plan: what the statement's
/// EXPLAIN returned, taken by [`process`] in place of the handler's answer.
struct Explain {
    accept: PlanAccept,
    plan: std::sync::Mutex<Option<String>>,
}

/// The request's `Prefer` headers (see [`prefer`]).
type Prefer = Preferences;

/// Parse the `Prefer` headers; with `handling=strict`, an invalid
/// preference is PGRST122. A `timezone=` is valid when the database knows it.
/// `respond-async` is known (and returned) only where `async_ok` (crate::jobs).
async fn prefer(
    st: &AppState,
    headers: &HeaderMap,
    async_ok: bool,
) -> Result<(Prefer, bool), ApiError> {
    let values: Vec<&str> = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let zones = if values.iter().any(|v| v.contains("timezone=")) {
        Some(timezone_names(st).await?)
    } else {
        None
    };
    let mut p = Preferences::parse(values.iter().copied(), |tz| {
        zones.as_ref().is_some_and(|z| z.contains(tz))
    });
    let respond_async = tenancy_core::jobs::respond_async(&mut p, async_ok);
    p.check_strict()?;
    Ok((p, respond_async))
}

/// `pg_timezone_names`, read once per database URI (PostgREST reads it
/// with the schema cache).
async fn timezone_names(st: &AppState) -> Result<Arc<HashSet<String>>, ApiError> {
    type Cache = Mutex<HashMap<String, Arc<HashSet<String>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let key = &st.config.db_uri;
    if let Some(z) = cache.lock().expect("timezone cache").get(key) {
        return Ok(z.clone());
    }
    let client = db::connection(st).await?;
    let rows = client
        // unnamed: nothing left prepared on a pooled connection
        .query_typed("SELECT name FROM pg_catalog.pg_timezone_names", &[])
        .await
        .map_err(|e| db::db_error(&e, false))?;
    let zones: Arc<HashSet<String>> = Arc::new(rows.iter().map(|r| r.get(0)).collect());
    cache
        .lock()
        .expect("timezone cache")
        .insert(key.clone(), zones.clone());
    Ok(zones)
}

/// The CSV document from a statement's `{"h": [names], "r": [record texts]}`.
fn to_csv(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Json>(body) else {
        return String::new();
    };
    let texts = |k: &str| -> Vec<String> {
        match v.get(k) {
            Some(Json::Array(a)) => a
                .iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect(),
            _ => Vec::new(),
        }
    };
    csv::render(&texts("h"), &texts("r"))
}

/// The first element of a JSON array, byte for byte as PostgreSQL wrote it
/// (key order, number precision): the array is split, not re-encoded.
fn first_element(body: &str) -> String {
    payload::first_element(body).unwrap_or("null").to_string()
}

/// The PostgREST API (tables, views and `/rpc/fn`): every request outside
/// `/_tenancy/` (see crate::App).
pub async fn api(st: Arc<AppState>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // `_held`: the body's bytes count against the budget until the response
    let (body, _held) =
        match crate::body::read(body, content_length, st.config.max_body_bytes, &st.bodies).await {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        };
    // `/health`, `/ready` and `/metrics` are operational endpoints unless the
    // request's schema (`Accept-Profile`, else the default one) has a table
    // of that name (the demo has `esg.metrics`); they are always at
    // `/_tenancy/…`.
    let ops = uri.path().trim_start_matches('/');
    if matches!(ops, "health" | "ready" | "metrics") && method == Method::GET {
        let live = st.live();
        let profile = headers
            .get("accept-profile")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let schema = match profile {
            Some(p) => p.to_string(),
            None => live.schemas.first().cloned().unwrap_or_default(),
        };
        if profile.is_none_or(|p| live.schemas.iter().any(|s| s == p))
            && st.schema().table(&schema, ops).is_none()
        {
            return match ops {
                "health" => health().await.into_response(),
                "ready" => ready(State(st)).await,
                _ => metrics(State(st)).await,
            };
        }
    }
    if !st.loaded.load(Ordering::Relaxed) {
        let e = ApiError::new(
            503,
            "PGRST002",
            "Could not query the database for the schema cache. Retrying.",
        );
        let mut r = error_response(&e);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let started = Instant::now();
    let live = st.live();
    let timing = live
        .config
        .server_timing_enabled
        .then(|| Arc::new(Timing::new(started)));
    // Boxed: the request's state machine is several kB, and every layer
    // above (middleware, router, hyper) would otherwise move it by value.
    let (mut resp, tenant) = match Box::pin(process(
        &st,
        &live,
        &method,
        &uri,
        &headers,
        body,
        timing.clone(),
    ))
    .await
    {
        Ok(x) => x,
        Err((e, tenant)) => (error_response(&e), tenant),
    };
    if let Some(t) = &timing {
        let error = resp.status().is_client_error() || resp.status().is_server_error();
        if let Ok(v) = HeaderValue::from_str(&t.header(error)) {
            resp.headers_mut().insert("server-timing", v);
        }
    }
    // `server-trace-header`: the request's value, back on the response
    if let Some(name) = &live.config.server_trace_header {
        if let Some(v) = headers.get(name.as_str()) {
            if let Ok(n) = HeaderName::try_from(name.as_str()) {
                resp.headers_mut().insert(n, v.clone());
            }
        }
    }
    // the answer depends on these request headers (JSON or CSV, counts and
    // returns, the page), so a shared cache must key on them — as PostgREST
    // after v13 sends by default; a function's own `Vary` (through
    // `response.headers`) replaces it. `Vary: Origin` is added by the CORS
    // handling for every response.
    if !resp.headers().contains_key(header::VARY) {
        resp.headers_mut().insert(
            header::VARY,
            HeaderValue::from_static("Accept, Prefer, Range"),
        );
    }
    // Static label values where possible: no allocation per request.
    let status = resp.status();
    let status: metrics::SharedString = STATUS_LABELS
        .iter()
        .find(|(c, _)| *c == status.as_u16())
        .map_or_else(
            || status.as_u16().to_string().into(),
            |(_, s)| metrics::SharedString::const_str(s),
        );
    let method = method_label(&method);
    metrics::counter!("tenancy_proxy_requests_total", "tenant" => tenant.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("tenancy_proxy_request_duration_seconds", "tenant" => tenant, "method" => method)
        .record(started.elapsed().as_secs_f64());
    resp
}

const STATUS_LABELS: &[(u16, &str)] = &[
    (200, "200"),
    (201, "201"),
    (204, "204"),
    (206, "206"),
    (300, "300"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (406, "406"),
    (409, "409"),
    (413, "413"),
    (415, "415"),
    (416, "416"),
    (422, "422"),
    (429, "429"),
    (500, "500"),
    (501, "501"),
    (503, "503"),
    (504, "504"),
];

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

type Fail = (ApiError, String);

/// A request without a tenant over its role's rate (`TENANCY_ANON_RATE_LIMIT`):
/// the 429 response, as for a tenant.
fn anon_rate_limited(st: &AppState, role: &str) -> Option<Response> {
    let rps = st.config.anon_rate_limit;
    let wait = st.limits.check_anon(role, rps).err()?;
    metrics::counter!("tenancy_proxy_rate_limited_total", "tenant" => "none").increment(1);
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let e = ApiError::new(
        429,
        "TENANCY429",
        format!("Too many requests for role {role}"),
    )
    .details(format!(
        "Requests without a tenant allow {rps} requests per second per role"
    ))
    .hint(format!("Retry after {secs} second(s)."));
    let mut r = error_response(&e);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    Some(r)
}

async fn process(
    st: &Arc<AppState>,
    live: &Arc<crate::Live>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
    timing: Option<Arc<Timing>>,
) -> Result<(Response, String), Fail> {
    let auth_header = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            (
                ApiError::new(401, "PGRST301", "Authorization header is not valid text"),
                "none".to_string(),
            )
        })?),
    };
    let identity = live.jwt.identify(auth_header);
    if let Some(t) = &timing {
        t.mark(JWT);
    }
    let identity = identity.map_err(|e| (e, "none".to_string()))?;
    // the metrics label: by slug, whether the token names the tenant by uuid
    // or by slug (`unknown` for a claim naming no known tenant)
    let tenant = st.limits.label(identity.tenant.as_deref());
    let fail = |e: ApiError| (e, tenant.clone());
    if let Some(t) = &identity.tenant {
        if let Err(wait) = st.limits.check(&st.limits.canonical(t)) {
            metrics::counter!("tenancy_proxy_rate_limited_total", "tenant" => tenant.clone())
                .increment(1);
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let e = ApiError::new(
                429,
                "TENANCY429",
                format!("Too many requests for tenant {t}"),
            )
            .details(format!(
                "The tenant's plan allows {} requests per second",
                st.limits.rate_for(t)
            ))
            .hint(format!("Retry after {secs} second(s)."));
            let mut r = error_response(&e);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return Ok((r, tenant));
        }
    } else if let Some(r) = anon_rate_limited(st, &identity.role) {
        return Ok((r, tenant));
    }
    // only the writes name their schema with `Content-Profile` (PostgREST:
    // GET, HEAD and OPTIONS read `Accept-Profile`)
    let is_read = !matches!(
        *method,
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    );
    let profile_header = if is_read {
        "accept-profile"
    } else {
        "content-profile"
    };
    // PostgREST answers with `Content-Profile` when the schema was chosen by
    // a profile header or could have been (several schemas exposed)
    let negotiated_profile = headers.contains_key(profile_header) || live.schemas.len() > 1;
    let schema = match headers.get(profile_header).and_then(|v| v.to_str().ok()) {
        Some(p) => {
            if !live.schemas.iter().any(|s| s == p) {
                return Err(fail(ApiError::new(
                    406,
                    "PGRST106",
                    format!(
                        "The schema must be one of the following: {}",
                        live.schemas.join(", ")
                    ),
                )));
            }
            p.to_string()
        }
        None => live
            .schemas
            .first()
            .cloned()
            .unwrap_or_else(|| "public".into()),
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    // `application/vnd.pgrst.plan`: the statement's EXPLAIN instead of its
    // result (`db-plan-enabled`), for the media type in `for=`
    let plan =
        match plan_accept(accept) {
            Some(_) if !live.config.db_plan_enabled => return Err(fail(
                ApiError::new(
                    406,
                    "PGRST107",
                    format!(
                        "None of these media types are available: {}",
                        accept.unwrap_or("")
                    ),
                )
                .hint("Execution plans are off: set db-plan-enabled (PGRST_DB_PLAN_ENABLED=true)."),
            )),
            p => p,
        };
    let accept = plan.as_ref().map_or(accept, |p| Some(p.for_media.as_str()));
    // `/` negotiates its own media types (crate::openapi).
    let (media, strip_nulls, media_error) = match media(accept, || st.schema().geojson.is_some()) {
        Ok((m, strip)) => (m, strip, None),
        Err(_) if uri.path() == "/" => (Media::Json, false, None),
        Err(e) if uri.path().starts_with("/rpc/") => (Media::Json, false, Some(e)),
        // a table's media type handler (an aggregate) may answer it
        Err(e)
            if matches!(*method, Method::GET | Method::HEAD)
                && !st.schema().media_aggregates.is_empty() =>
        {
            (Media::Json, false, Some(e))
        }
        Err(e) => return Err(fail(e)),
    };
    let explain = plan.map(|accept| {
        Arc::new(Explain {
            accept,
            plan: std::sync::Mutex::new(None),
        })
    });
    let raw_query = uri.query().unwrap_or("");
    // each segment decoded on its own, as PostgREST (Warp's pathInfo): an
    // encoded slash stays inside its segment, so `/rpc%2Fwhoami` names a
    // table `rpc/whoami`, not the function; and an empty segment is one
    // (`//items`, `/items/`: 404 PGRST125, not `/items`)
    let p = uri.path();
    let segments: Vec<String> = p
        .strip_prefix('/')
        .unwrap_or(p)
        .split('/')
        .map(decode_segment)
        .collect();
    let path = segments.join("/");
    let rpc_name = match segments.as_slice() {
        [rpc, f] if rpc == "rpc" => Some(f.as_str()),
        _ => None,
    };
    let async_ok =
        rpc_name.is_some() && matches!(*method, Method::GET | Method::POST) && explain.is_none();
    let (pref, respond_async) = prefer(st, headers, async_ok).await.map_err(fail)?;
    let headers_json = tenancy_core::postgrest::parse::headers_json(
        headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
    );
    let cookies_json = tenancy_core::postgrest::parse::cookies_json(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let tx_override = live.config.db_tx_end.ends_with("allow-override");
    let mut rollback = live.config.db_tx_end.starts_with("rollback");
    let mut applied = Vec::new();
    if tx_override {
        if let Some(t) = &pref.tx {
            rollback = t == "rollback";
            applied.push(format!("tx={t}"));
        }
    }
    // an error answer still says which transaction end it got (PostgREST)
    let tx_applied = applied.first().cloned();
    if let Some(t) = &timing {
        t.mark(PARSED);
    }
    let ctx = Ctx {
        live: live.clone(),
        timing: timing.clone(),
        st: st.clone(),
        negotiated_profile,
        identity,
        method: method.clone(),
        path: uri.path().to_string(),
        headers_json,
        cookies_json,
        schema,
        rollback,
        media,
        strip_nulls,
        pref,
        applied,
        job: None,
        explain: explain.clone(),
        media_error,
        func_settings: Vec::new(),
        func_isolation: None,
        limit_cap: None,
    };
    // a path of more segments than `table` or `rpc/fn` names nothing, for
    // OPTIONS too (PostgREST's PGRST125 before any lookup)
    let invalid_path = !path.is_empty() && rpc_name.is_none() && segments.len() != 1;
    let resp = if ctx.method == Method::OPTIONS && !invalid_path {
        options(&ctx, &path)
    } else if let Some(spec) = live
        .config
        .db_root_spec
        .as_deref()
        .filter(|_| path.is_empty())
    {
        root_spec(ctx, spec, raw_query, headers, &body).await
    } else if path.is_empty() {
        ctx.mark(SENT);
        let r = crate::openapi::respond(&ctx.st, &ctx.identity, &ctx.schema, &ctx.method, headers)
            .await;
        ctx.mark(DONE);
        // the description is of one schema: say which, as other bodies do
        r.map(|mut r| {
            if ctx.negotiated_profile && r.status().is_success() {
                if let Ok(v) = HeaderValue::from_str(&ctx.schema) {
                    r.headers_mut()
                        .insert(HeaderName::from_static("content-profile"), v);
                }
            }
            r
        })
    } else if let Some(f) = rpc_name {
        let mut ctx = ctx;
        let pairs = query_pairs(raw_query);
        if respond_async {
            // the same call, run as a job (crate::jobs)
            let (id, name) = (ctx.identity.clone(), format!("{}.{f}", ctx.schema));
            let (f, hs) = (f.to_string(), headers.clone());
            crate::jobs::submit(st, &id, name, move |job| async move {
                ctx.job = Some(job);
                let r = rpc(&mut ctx, &f, pairs, &hs, &body).await;
                r.unwrap_or_else(|e| error_response(&e))
            })
            .await
        } else {
            rpc(&mut ctx, f, pairs, headers, &body).await
        }
    } else if invalid_path || segments.len() != 1 {
        Err(ApiError::new(
            404,
            "PGRST125",
            // PostgREST's text exactly (the path is the client's own)
            "Invalid path specified in request URL",
        ))
    } else {
        table(ctx, &segments[0], raw_query, headers, &body).await
    };
    if let Some(x) = &explain {
        let plan = x.plan.lock().ok().and_then(|mut p| p.take());
        if let Some(plan) = plan {
            let body = if *method == Method::HEAD {
                String::new()
            } else {
                plan
            };
            let mut r = (StatusCode::OK, body).into_response();
            if let Ok(v) = HeaderValue::from_str(&x.accept.content_type()) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            return Ok((r, tenant.clone()));
        }
    }
    resp.map(|r| (r, tenant.clone()))
        .map_err(|e| match tx_applied {
            Some(t) => fail(e.header("Preference-Applied", t)),
            None => fail(e),
        })
}

/// `GET /` with `db-root-spec`: the function's result instead of the
/// OpenAPI document, as `application/openapi+json` when that is what the
/// client asked for. A `schema.function` name in an exposed schema is
/// called there; otherwise in the request's schema.
async fn root_spec(
    mut ctx: Ctx,
    spec: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    if ctx.method != Method::GET && ctx.method != Method::HEAD {
        return Err(ApiError::new(
            405,
            "PGRST117",
            format!("Unsupported HTTP method: {}", ctx.method),
        ));
    }
    let name = match spec.split_once('.') {
        Some((schema, name)) if ctx.live.schemas.iter().any(|s| s == schema) => {
            ctx.schema = schema.to_string();
            name
        }
        _ => spec,
    };
    let openapi = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| accept_types(Some(a)).next())
        .is_some_and(|m| m.eq_ignore_ascii_case("application/openapi+json"));
    let mut r = rpc(&mut ctx, name, query_pairs(raw_query), headers, body).await?;
    if openapi && r.status().is_success() {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openapi+json; charset=utf-8"),
        );
    }
    Ok(r)
}

/// One path segment, percent-decoded (`+`, `&`, `=` stay as they are; a
/// `%` not followed by two hex digits is kept).
fn decode_segment(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `OPTIONS` without a CORS preflight: the methods the resource answers
/// (PostgREST's `Allow` header).
fn options(ctx: &Ctx, path: &str) -> Result<Response, ApiError> {
    use tenancy_core::postgrest::schema::Volatility;
    let schema = ctx.st.schema();
    let allow = if path.is_empty() {
        "OPTIONS,GET,HEAD".to_string()
    } else if let Some(f) = path.strip_prefix("rpc/") {
        let fns: Vec<_> = schema
            .functions
            .iter()
            .filter(|x| x.schema == ctx.schema && x.name == f)
            .collect();
        if fns.is_empty() {
            return Err(ApiError::new(
                404,
                "PGRST202",
                format!(
                    "Could not find the function {}.{f} in the schema cache",
                    ctx.schema
                ),
            ));
        }
        if fns.iter().all(|x| x.volatility == Volatility::Volatile) {
            "OPTIONS,POST".to_string()
        } else {
            "OPTIONS,GET,HEAD,POST".to_string()
        }
    } else {
        let t = schema.table(&ctx.schema, path).ok_or_else(|| {
            ApiError::no_table(&ctx.schema, path, schema.table_hint(&ctx.schema, path))
        })?;
        // as PostgREST: what the relation takes (a view: what it or its
        // INSTEAD OF triggers allow), PUT when it can insert and update by
        // a primary key
        let w = t.writable;
        let mut m = vec!["OPTIONS,GET,HEAD"];
        if w.insert {
            m.push("POST");
        }
        if w.insert && w.update && !t.primary_key.is_empty() {
            m.push("PUT");
        }
        if w.update {
            m.push("PATCH");
        }
        if w.delete {
            m.push("DELETE");
        }
        m.join(",")
    };
    let mut r = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    // PostgREST's `*` here; not when `server-cors-allowed-origins` limits
    // the origins (a refused origin's preflight lands here)
    if ctx.live.config.cors_origins().is_empty() {
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    Ok(r)
}

struct Ctx {
    st: Arc<AppState>,
    /// The settings in force when the request came in.
    live: Arc<crate::Live>,
    /// `server-timing-enabled`.
    timing: Option<Arc<Timing>>,
    identity: Identity,
    method: Method,
    path: String,
    headers_json: String,
    cookies_json: String,
    schema: String,
    /// Responses with a body carry `Content-Profile: <schema>`.
    negotiated_profile: bool,
    rollback: bool,
    media: Media,
    /// `nulls=stripped` on the JSON media type.
    strip_nulls: bool,
    pref: Prefer,
    applied: Vec<String>,
    /// `Prefer: respond-async`: the statement runs as this job.
    job: Option<Arc<crate::jobs::JobRun>>,
    /// `Accept: application/vnd.pgrst.plan`: EXPLAIN the statement instead.
    explain: Option<Arc<Explain>>,
    /// An `Accept` no builtin media type answers (PGRST107), kept for
    /// `/rpc/…`: a media type handler function may answer it.
    media_error: Option<ApiError>,
    /// The called function's hoisted settings (`db-hoisted-tx-settings`),
    /// applied to the whole transaction.
    func_settings: Vec<(String, String)>,
    /// The called function's `default_transaction_isolation`.
    func_isolation: Option<String>,
    /// See [`Exec::limit_cap`].
    limit_cap: Option<i64>,
}

impl Ctx {
    /// The `Accept` the answer is negotiated for: the request's own, or
    /// the `for=` media type of an execution plan (a media type handler's
    /// query is explained as it would run).
    fn accept<'h>(&'h self, headers: &'h HeaderMap) -> Option<&'h str> {
        match &self.explain {
            Some(x) => Some(x.accept.for_media.as_str()),
            None => headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
        }
    }

    fn mark(&self, step: usize) {
        if let Some(t) = &self.timing {
            t.mark(step);
        }
    }

    fn options(&self) -> Options {
        Options {
            aggregates: self.live.config.db_aggregates_enabled,
            max_rows: self.live.config.db_max_rows,
            csv: self.media == Media::Csv,
            count_cap: None,
            strip_nulls: self.strip_nulls && self.media != Media::Csv,
            plan_count: false,
            raw: None,
            handler: None,
            geojson: match self.media {
                Media::GeoJson => self.st.schema().geojson.clone(),
                _ => None,
            },
        }
    }

    async fn exec(
        &self,
        statement: sql::Statement,
        read_only: bool,
        singular: bool,
    ) -> Result<Outcome, ApiError> {
        self.exec_counted(statement, read_only, singular, None, None)
            .await
    }

    /// [`Ctx::exec`] with the planner's count (`plan`, an EXPLAIN) and
    /// `max-affected`; `Prefer: timezone` goes with every statement.
    async fn exec_counted(
        &self,
        statement: sql::Statement,
        read_only: bool,
        singular: bool,
        plan: Option<sql::Statement>,
        max_affected: Option<i64>,
    ) -> Result<Outcome, ApiError> {
        let settings = self
            .pref
            .timezone
            .iter()
            .map(|tz| ("timezone".to_string(), tz.clone()))
            .chain(self.func_settings.iter().cloned())
            .collect();
        // an execution plan: the statement under EXPLAIN, no count, no
        // row-count checks (`process` answers with the plan)
        let explain = self.explain.as_ref().map(|x| x.accept.prefix());
        let explaining = explain.is_some();
        let e = Exec {
            settings,
            isolation: self.func_isolation.clone(),
            plan: if explaining { None } else { plan },
            explain,
            max_affected: if explaining { None } else { max_affected },
            limit_cap: if explaining { None } else { self.limit_cap },
            identity: self.identity.clone(),
            method: self.method.to_string(),
            path: self.path.clone(),
            headers_json: self.headers_json.clone(),
            cookies_json: self.cookies_json.clone(),
            schema: self.schema.clone(),
            read_only,
            rollback: self.rollback,
            statement,
            singular: singular && !explaining,
        };
        if let Some(job) = self.job.as_ref().filter(|_| !explaining) {
            return crate::jobs::exec(job, e).await;
        }
        self.mark(SENT);
        // A task of its own: a client that goes away cannot stop the
        // transaction half-way and leave the pooled connection
        // mid-statement. It drops `alive` instead, and the task cancels the
        // statement and rolls back (see db::run).
        let st = self.st.clone();
        let (alive, abandoned) = tokio::sync::oneshot::channel::<()>();
        let out = tokio::spawn(Box::pin(db::run(st, e, abandoned)))
            .await
            .map_err(|_| ApiError::new(500, "PGRST000", "request task failed"));
        drop(alive);
        self.mark(DONE);
        let out = out??;
        match &self.explain {
            Some(x) => {
                if let Ok(mut p) = x.plan.lock() {
                    *p = out.body;
                }
                // not an error: `process` answers with the plan it finds
                Err(ApiError::new(200, "PGRST000", "explained"))
            }
            None => Ok(out),
        }
    }

    /// Build the response from an outcome: media type, GUC headers/status.
    fn respond(
        &self,
        status: StatusCode,
        out: &Outcome,
        body: Option<String>,
        extra: Vec<(HeaderName, String)>,
    ) -> Response {
        let (ctype, body) = match (self.media, body) {
            (_, None) => (None, String::new()),
            (Media::Csv, Some(b)) => (Some("text/csv; charset=utf-8"), to_csv(&b)),
            (Media::Object, Some(b)) if self.strip_nulls => (
                Some("application/vnd.pgrst.object+json;nulls=stripped; charset=utf-8"),
                b,
            ),
            (Media::Object, Some(b)) => {
                (Some("application/vnd.pgrst.object+json; charset=utf-8"), b)
            }
            (Media::Json, Some(b)) if self.strip_nulls => (
                Some("application/vnd.pgrst.array+json;nulls=stripped; charset=utf-8"),
                b,
            ),
            (Media::Json, Some(b)) => (Some("application/json; charset=utf-8"), b),
            (Media::GeoJson, Some(b)) => (Some("application/geo+json; charset=utf-8"), b),
        };
        self.reply(
            status,
            out,
            ctype.map(HeaderValue::from_static),
            body.into_bytes(),
            extra,
        )
    }

    /// A page answered by a media type handler (the aggregate's text, or
    /// its bytes when `binary`), as `content_type`, with its Content-Range.
    fn handler_reply(
        &self,
        status: StatusCode,
        out: &Outcome,
        binary: bool,
        content_type: &str,
        range: String,
    ) -> Result<Response, ApiError> {
        let bytes = handler_bytes(out, binary)?;
        Ok(self.reply(
            status,
            out,
            HeaderValue::from_str(content_type).ok(),
            bytes,
            vec![(header::CONTENT_RANGE, range)],
        ))
    }

    /// The response: `body` as `ctype` (none: no body, no Content-Type),
    /// then `Preference-Applied` and what the function set in
    /// `response.status` / `response.headers`.
    fn reply(
        &self,
        status: StatusCode,
        out: &Outcome,
        ctype: Option<HeaderValue>,
        body: Vec<u8>,
        extra: Vec<(HeaderName, String)>,
    ) -> Response {
        // what the function (or the pre-request one) set: wrong shapes are
        // PostgREST's 500s, not silently dropped
        let status = match out.response_status.as_deref() {
            None => status,
            Some(s) => match s
                .trim()
                .parse::<u16>()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
            {
                Some(s) => s,
                None => {
                    return error_response(&ApiError::new(
                        500,
                        "PGRST112",
                        "response.status guc must be a valid status code",
                    ))
                }
            },
        };
        let guc_headers = match out.response_headers.as_deref().map(guc_headers) {
            None => Vec::new(),
            Some(Some(hs)) => hs,
            Some(None) => {
                return error_response(&ApiError::new(
                    500,
                    "PGRST111",
                    "response.headers guc must be a JSON array composed of objects with a single key and a string value",
                ))
            }
        };
        let body = if self.method == Method::HEAD {
            Vec::new()
        } else {
            body
        };
        let mut r = (status, body).into_response();
        let h = r.headers_mut();
        match ctype {
            Some(c) => {
                h.insert(header::CONTENT_TYPE, c);
                // a body says which schema it is from when that was
                // negotiated, as PostgREST does
                if self.negotiated_profile {
                    if let Ok(v) = HeaderValue::from_str(&self.schema) {
                        h.insert(HeaderName::from_static("content-profile"), v);
                    }
                }
            }
            // no body (return=minimal/headers-only, 204): no Content-Type, as PostgREST
            None => {
                h.remove(header::CONTENT_TYPE);
            }
        }
        for (k, v) in extra {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        let mut applied = self.applied.clone();
        applied.extend(self.pref.applied_common());
        if let Some(v) = prefer::applied_header(&applied) {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(HeaderName::from_static("preference-applied"), v);
            }
        }
        // the first occurrence of a name replaces the proxy's own header,
        // later ones add to it (two `Set-Cookie`s stay two)
        let mut seen: Vec<HeaderName> = Vec::new();
        for (k, v) in guc_headers {
            if seen.contains(&k) {
                h.append(k, v);
            } else {
                seen.push(k.clone());
                h.insert(k, v);
            }
        }
        r
    }
}

/// `response.headers` as PostgREST reads it: a JSON array of objects of one
/// key each, with a string value (`[{"Set-Cookie": "a=1"}, {"Set-Cookie":
/// "b=2"}]`); `None` for anything else, a name or value HTTP cannot carry
/// included.
fn guc_headers(text: &str) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let Ok(Json::Array(items)) = serde_json::from_str::<Json>(text) else {
        return None;
    };
    items
        .into_iter()
        .map(|item| match item {
            Json::Object(m) if m.len() == 1 => {
                let (k, v) = m.into_iter().next()?;
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_str(v.as_str()?).ok()?,
                ))
            }
            _ => None,
        })
        .collect()
}

fn parse_body(body: &Bytes) -> Result<Json, ApiError> {
    if body.is_empty() {
        return Err(ApiError::body("Empty or invalid json"));
    }
    // PostgREST's body, details null: where the JSON broke is in the log
    serde_json::from_slice(body).map_err(|e| {
        tracing::debug!(error = %e, "request body is not JSON");
        ApiError::body("Empty or invalid json")
    })
}

/// A request body's kind, by its `Content-Type` (PostgREST's payloads):
/// JSON (also without a `Content-Type`), CSV or an HTML form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Csv,
    Form,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let text = String::from_utf8_lossy(v.as_bytes());
    let mime = text.split(';').next().unwrap_or("").trim();
    match mime.to_ascii_lowercase().as_str() {
        "application/json" | "application/vnd.pgrst.array+json" | "application/vnd.pgrst.array" => {
            Ok(BodyKind::Json)
        }
        "text/csv" => Ok(BodyKind::Csv),
        "application/x-www-form-urlencoded" => Ok(BodyKind::Form),
        _ => Err(ApiError::body(format!(
            "Content-Type not acceptable: {}",
            if mime.is_empty() { "*/*" } else { mime }
        ))),
    }
}

/// The media type of a request body (no parameters, lowercase; none:
/// `application/json`).
fn body_mime(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|| "application/json".to_string())
}

/// The value a function whose only parameter is unnamed gets, as PostgREST
/// passes it: the body as sent (a JSON body, text, XML; bytes as `\x`
/// hex for bytea), or — for a query string, a form or CSV — the arguments
/// as a JSON object.
fn raw_argument(data_type: &str, bytes: &[u8]) -> Result<String, ApiError> {
    if data_type == "bytea" {
        return Ok(format!("\\x{}", hex::encode(bytes)));
    }
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::body("The request body is not valid UTF-8"))
}

/// A `text/csv` body: one JSON object of text values (`NULL`: null) per record.
fn csv_rows(body: &Bytes) -> Result<Vec<Json>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::body("parse error (the body is not UTF-8)"))?;
    let doc = csv::parse_body(text).map_err(|e| ApiError::body(e.0))?;
    Ok(doc
        .rows
        .into_iter()
        .map(|r| {
            Json::Object(
                doc.columns
                    .iter()
                    .cloned()
                    .zip(r.into_iter().map(|v| v.map_or(Json::Null, Json::String)))
                    .collect(),
            )
        })
        .collect())
}

/// A `text/csv` body as the JSON array of its records (objects of text
/// values, `NULL` → null), written straight from the parsed records.
fn csv_json(body: &Bytes) -> Result<String, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::body("parse error (the body is not UTF-8)"))?;
    let doc = csv::parse_body(text).map_err(|e| ApiError::body(e.0))?;
    let names: Vec<String> = doc
        .columns
        .iter()
        .map(|c| Json::String(c.clone()).to_string())
        .collect();
    let mut out = String::with_capacity(text.len() * 2);
    out.push('[');
    for (i, row) in doc.rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        for (j, (name, v)) in names.iter().zip(row).enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(name);
            out.push(':');
            match v {
                Some(v) => out.push_str(&Json::String(v.clone()).to_string()),
                None => out.push_str("null"),
            }
        }
        out.push('}');
    }
    out.push(']');
    Ok(out)
}

/// The body of a POST/PUT to a table as JSON text — a JSON body as sent, a
/// CSV body or a form turned into JSON — and its shape (objects, keys;
/// see [`payload::scan`]), refused with PostgREST's messages.
fn insert_body<'a>(
    headers: &HeaderMap,
    body: &'a Bytes,
    first_only: bool,
    keep_keys: bool,
) -> Result<(std::borrow::Cow<'a, str>, payload::Shape), ApiError> {
    use std::borrow::Cow;
    let text = match body_kind(headers)? {
        BodyKind::Json => Cow::Borrowed(
            std::str::from_utf8(body).map_err(|_| ApiError::body("Empty or invalid json"))?,
        ),
        BodyKind::Csv => Cow::Owned(csv_json(body)?),
        BodyKind::Form => Cow::Owned(
            Json::Object(
                form_pairs(body)
                    .into_iter()
                    .map(|(k, v)| (k, Json::String(v)))
                    .collect(),
            )
            .to_string(),
        ),
    };
    let shape = payload::scan(&text, first_only, keep_keys).map_err(|e| {
        tracing::debug!(error = ?e, "request body refused");
        ApiError::body(e.message())
    })?;
    Ok((text, shape))
}

/// An `application/x-www-form-urlencoded` body as name/text pairs.
fn form_pairs(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The body of a POST/PUT to a table: a JSON value, the CSV records (an
/// array) or the form (an object of texts; a repeated name keeps its last value).
fn table_body(headers: &HeaderMap, body: &Bytes) -> Result<Json, ApiError> {
    match body_kind(headers)? {
        BodyKind::Json => parse_body(body),
        BodyKind::Csv => Ok(Json::Array(csv_rows(body)?)),
        BodyKind::Form => Ok(Json::Object(
            form_pairs(body)
                .into_iter()
                .map(|(k, v)| (k, Json::String(v)))
                .collect(),
        )),
    }
}

/// The body of a PATCH: like [`table_body`], a CSV body being one record
/// (none: an empty object; several: `many`).
fn object_body(headers: &HeaderMap, body: &Bytes, many: &str) -> Result<Json, ApiError> {
    if body_kind(headers)? == BodyKind::Csv {
        let mut rows = csv_rows(body)?;
        if rows.len() > 1 {
            return Err(ApiError::body(many));
        }
        return Ok(rows.pop().unwrap_or_else(|| json!({})));
    }
    table_body(headers, body)
}

fn returning(ctx: &mut Ctx, insert: bool) -> Returning {
    match ctx.pref.ret {
        Some(Return::Representation) => {
            ctx.applied.push("return=representation".into());
            Returning::Representation
        }
        Some(Return::HeadersOnly) => {
            ctx.applied.push("return=headers-only".into());
            // only an insert has a `Location`
            if insert {
                Returning::HeadersOnly
            } else {
                Returning::Minimal
            }
        }
        Some(Return::Minimal) => {
            ctx.applied.push("return=minimal".into());
            Returning::Minimal
        }
        None => Returning::Minimal,
    }
}

/// `Prefer: count=…` on a write: the total is the number of rows written
/// (not with `count=planned`, as PostgREST).
fn write_count(ctx: &mut Ctx) -> bool {
    match ctx.pref.count {
        Some(c) => {
            ctx.applied.push(format!("count={}", c.as_str()));
            c.counts_rows()
        }
        None => false,
    }
}

/// `Prefer: handling=strict, max-affected=n`: the most rows a PATCH, DELETE
/// or function may touch.
fn max_affected(ctx: &mut Ctx) -> Option<i64> {
    let n = ctx.pref.max_affected_strict()?;
    ctx.applied.push(format!("max-affected={n}"));
    Some(n)
}

/// `Prefer: count=…` on a read: whether the statement counts exactly, the
/// EXPLAIN for the planner's estimate, and the cap of `count=estimated`.
fn read_count(ctx: &mut Ctx, opts: &mut Options) -> (Option<Count>, bool) {
    let count = ctx.pref.count;
    if let Some(c) = count {
        ctx.applied.push(format!("count={}", c.as_str()));
    }
    if count == Some(Count::Estimated) {
        opts.count_cap = ctx.live.config.db_max_rows.map(|m| m.saturating_add(1));
    }
    opts.plan_count = matches!(count, Some(Count::Planned | Count::Estimated));
    (count, count.is_some_and(Count::counts_rows))
}

fn plan_of(count: Option<Count>, stmt: &sql::Statement) -> Option<sql::Statement> {
    match count {
        Some(Count::Planned | Count::Estimated) => sql::count_plan(stmt),
        _ => None,
    }
}

/// The total for `Content-Range`: exact, the planner's, or estimated.
fn count_total(count: Option<Count>, out: &Outcome, max_rows: Option<u64>) -> Option<i64> {
    match count? {
        Count::Exact => out.total,
        Count::Planned => out.planned,
        Count::Estimated => prefer::estimated_total(out.total, out.planned, max_rows),
    }
}

/// The status of a counted page (PostgREST's `rangeStatus`); past the end:
/// the 416 response (PGRST103).
#[allow(clippy::result_large_err)] // the error is the finished response, built once
fn page_status(from: u64, page: i64, total: Option<i64>) -> Result<StatusCode, Response> {
    match prefer::range_status(from, page, total) {
        416 => {
            let total = total.unwrap_or(0);
            let mut r = error_response(&ApiError::range(
                "Requested range not satisfiable",
                format!("An offset of {from} was requested, but there are only {total} rows."),
            ));
            if let Ok(v) = HeaderValue::from_str(&format!("*/{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            Err(r)
        }
        206 => Ok(StatusCode::PARTIAL_CONTENT),
        _ => Ok(StatusCode::OK),
    }
}

/// The query string's decoded `name=value` pairs, in order.
fn query_pairs(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect()
}

async fn table(
    mut ctx: Ctx,
    name: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let schema = ctx.st.schema();
    // borrowed from the cache snapshot (`schema` is this request's Arc)
    let table = schema.table(&ctx.schema, name).ok_or_else(|| {
        ApiError::no_table(&ctx.schema, name, schema.table_hint(&ctx.schema, name))
    })?;
    let mut opts = ctx.options();
    let singular = ctx.media == Media::Object;
    // PostgREST's media type handlers for tables: an aggregate over the rows
    let handler = if schema.media_aggregates.is_empty()
        || singular
        || !matches!(ctx.method, Method::GET | Method::HEAD)
    {
        None
    } else {
        let default_select = !query_pairs(raw_query).iter().any(|(k, _)| k == "select");
        table_handler(&schema, table, ctx.accept(headers), default_select)
    };
    if let Some(e) = ctx.media_error.take() {
        if handler.is_none() {
            return Err(e);
        }
    }
    if let Some((agg, _)) = &handler {
        opts.handler = Some(sql::AggHandler::of(agg));
    }
    if matches!(ctx.method, Method::GET | Method::HEAD) {
        let (count, exact) = read_count(&mut ctx, &mut opts);
        // PostgREST reads `Range` on GET only (HEAD answers as an unranged GET)
        let range = headers
            .get(header::RANGE)
            .filter(|_| ctx.method == Method::GET)
            .and_then(|v| v.to_str().ok());
        // everything the statement is built from (crate::statements)
        let key = ReadKey {
            generation: schema.generation,
            schema: ctx.schema.clone(),
            table: name.to_string(),
            query: raw_query.to_string(),
            range: range.map(str::to_string),
            options: opts.clone(),
            exact,
        };
        let read = ctx.st.statements.read(key, || {
            let pairs = query_pairs(raw_query);
            let mut query = parse_query(&pairs)?;
            (query.root.offset, query.root.limit) =
                apply_range(range, query.root.offset, query.root.limit)?;
            let statement = sql::read(&schema, table, &query, &opts, exact)?;
            let from = query.root.offset.unwrap_or(0);
            // PostgREST's Content-Location: the table and the sorted query
            let canonical = tenancy_core::postgrest::parse::canonical_query(&pairs);
            let location = match canonical.is_empty() {
                true => format!("/{name}"),
                false => format!("/{name}?{canonical}"),
            };
            Ok::<_, ApiError>(Read {
                statement,
                from,
                location,
            })
        })?;
        let stmt = read.statement.clone();
        let plan = plan_of(count, &stmt);
        let out = ctx.exec_counted(stmt, true, singular, plan, None).await?;
        let from = read.from;
        let total = count_total(count, &out, opts.max_rows);
        let status = match page_status(from, out.page, total) {
            Ok(s) => s,
            Err(r) => return Ok(r),
        };
        let range = content_range(from, out.page, total);
        if let Some((agg, content_type)) = handler {
            return ctx.handler_reply(status, &out, agg.binary, &content_type, range);
        }
        let body = out
            .body
            .clone()
            .map(|b| if singular { first_element(&b) } else { b });
        let extra = vec![
            (header::CONTENT_RANGE, range),
            (header::CONTENT_LOCATION, read.location.clone()),
        ];
        return Ok(ctx.respond(status, &out, body, extra));
    }
    let mut query = parse_query(&query_pairs(raw_query))?;
    match ctx.method {
        Method::POST | Method::PUT => {
            let insert = ctx.method == Method::POST;
            let ret = returning(&mut ctx, insert);
            let count = write_count(&mut ctx);
            let put = ctx.method == Method::PUT;
            let missing_default = ctx.pref.missing == Some(Missing::Default);
            // PostgREST puts the first element of an array and ignores the rest
            let (text, shape) = insert_body(headers, body, put, missing_default)?;
            let mut columns = match &query.columns {
                Some(c) => c.clone(),
                None if missing_default => shape.all_keys.clone(),
                None => {
                    if !shape.keys_match {
                        return Err(ApiError::body("All object keys must match"));
                    }
                    shape.first_keys.clone()
                }
            };
            // unknown keys fail now, before anything is sized by them (a
            // body naming thousands of keys must not cost rows x keys)
            sql::check_columns(table, &columns)?;
            if ctx.method == Method::POST {
                match ctx.pref.missing {
                    Some(Missing::Default) => ctx.applied.push("missing=default".into()),
                    Some(Missing::Null) => ctx.applied.push("missing=null".into()),
                    None => {}
                }
            }
            let rows = if put { shape.rows.min(1) } else { shape.rows };
            // no conflict target: PostgREST inserts and does not apply it
            let mut resolution = sql::upsert_resolution(table, &query, ctx.pref.resolution);
            // each object's keys are sorted (payload::scan)
            let present = match shape.row_keys.as_ref() {
                Some(rk) => {
                    let flags = rk
                        .iter()
                        .take(rows)
                        .map(|keys| {
                            columns
                                .iter()
                                .map(|c| keys.binary_search(c).is_ok())
                                .collect()
                        })
                        .collect();
                    let upsert = resolution.is_some() || put;
                    let (kept, present) = sql::missing_default_columns(columns, flags, upsert);
                    columns = kept;
                    present
                }
                None => None,
            };
            if ctx.method == Method::PUT {
                let one = shape.array_text(&text, true);
                let first =
                    payload::first_element(&one).and_then(|t| serde_json::from_str::<Json>(t).ok());
                put_checks(&table.primary_key, &query, first.as_ref())?;
                resolution = Some(Resolution::MergeDuplicates);
                query.root.conditions.clear();
            } else if let Some(r) = resolution {
                ctx.applied.push(
                    match r {
                        Resolution::MergeDuplicates => "resolution=merge-duplicates",
                        Resolution::IgnoreDuplicates => "resolution=ignore-duplicates",
                    }
                    .into(),
                );
            }
            let merge = resolution == Some(Resolution::MergeDuplicates);
            if rows == 0 {
                if singular {
                    return Err(db::singular_error(0));
                }
                let out = Outcome::default();
                let body = (ret == Returning::Representation).then(|| "[]".to_string());
                let status = if merge {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                return Ok(ctx.respond(status, &out, body, vec![]));
            }
            let spec = InsertSpec {
                columns,
                body: shape.array_text(&text, put),
                present,
                resolution,
            };
            let stmt = sql::insert(&schema, table, &query, &opts, &spec, ret)?;
            let out = ctx.exec(stmt, false, singular).await?;
            // PostgREST (#1070): an upsert that only updated is 200, one
            // that inserted 201; a PUT without representation 204
            let inserted = out.total.unwrap_or(0) > 0;
            let status = match (ctx.method == Method::PUT, ret) {
                (true, Returning::Representation) if inserted => StatusCode::CREATED,
                (true, Returning::Representation) => StatusCode::OK,
                (true, Returning::Minimal | Returning::HeadersOnly) => StatusCode::NO_CONTENT,
                (false, _) if merge && !inserted => StatusCode::OK,
                (false, _) => StatusCode::CREATED,
            };
            let body = match ret {
                Returning::Representation => {
                    out.body
                        .clone()
                        .map(|b| if singular { first_element(&b) } else { b })
                }
                Returning::Minimal | Returning::HeadersOnly => None,
            };
            // PostgREST: `*/*`, or `*/n` with the count of inserted rows.
            let range = content_range(0, 0, count.then_some(out.page));
            let mut extra = vec![(header::CONTENT_RANGE, range)];
            if ret == Returning::HeadersOnly {
                if let Some(loc) = location_of(&table.name, out.body.as_deref()) {
                    extra.push((header::LOCATION, loc));
                }
            }
            Ok(ctx.respond(status, &out, body, extra))
        }
        Method::PATCH | Method::DELETE => {
            let ret = returning(&mut ctx, false);
            let count = write_count(&mut ctx);
            let max = max_affected(&mut ctx);
            let stmt = if ctx.method == Method::PATCH {
                match ctx.pref.missing {
                    Some(Missing::Default) => ctx.applied.push("missing=default".into()),
                    Some(Missing::Null) => ctx.applied.push("missing=null".into()),
                    None => {}
                }
                let json =
                    match object_body(headers, body, "The request body must be a JSON object")? {
                        // PostgREST reads a PATCH's array body by its first
                        // object (`[]` changes nothing)
                        Json::Array(mut a) if a.first().is_none_or(Json::is_object) => {
                            if a.is_empty() {
                                json!({})
                            } else {
                                a.swap_remove(0)
                            }
                        }
                        other => other,
                    };
                let Json::Object(obj) = &json else {
                    return Err(ApiError::body("The request body must be a JSON object"));
                };
                let columns: Vec<String> = match &query.columns {
                    Some(c) => c.clone(),
                    None => obj.keys().cloned().collect(),
                };
                if columns.is_empty() {
                    if singular {
                        return Err(db::singular_error(0));
                    }
                    let out = Outcome::default();
                    let (st, b) = match ret {
                        Returning::Representation => (StatusCode::OK, Some("[]".to_string())),
                        Returning::Minimal | Returning::HeadersOnly => {
                            (StatusCode::NO_CONTENT, None)
                        }
                    };
                    let range = "*/*".to_string();
                    return Ok(ctx.respond(st, &out, b, vec![(header::CONTENT_RANGE, range)]));
                }
                // `columns=` names a column the body lacks: its default
                // with `missing=default`, else NULL (as PostgREST)
                let defaults: Vec<String> = match ctx.pref.missing {
                    Some(Missing::Default) => columns
                        .iter()
                        .filter(|c| !obj.contains_key(c.as_str()))
                        .cloned()
                        .collect(),
                    _ => Vec::new(),
                };
                sql::update(
                    &schema,
                    table,
                    &query,
                    &opts,
                    &columns,
                    &defaults,
                    &json.to_string(),
                    ret,
                )?
            } else {
                sql::delete(&schema, table, &query, &opts, ret)?
            };
            ctx.limit_cap = sql::limit_cap(table, &query);
            let out = ctx.exec_counted(stmt, false, singular, None, max).await?;
            // PostgREST: PATCH says which rows (`0-2/3`), DELETE only how many (`*/3`)
            let shown = if ctx.method == Method::PATCH {
                out.page
            } else {
                0
            };
            let range = content_range(0, shown, count.then_some(out.page));
            let (status, body) = match ret {
                Returning::Representation => (
                    StatusCode::OK,
                    out.body
                        .clone()
                        .map(|b| if singular { first_element(&b) } else { b }),
                ),
                Returning::Minimal | Returning::HeadersOnly => (StatusCode::NO_CONTENT, None),
            };
            Ok(ctx.respond(status, &out, body, vec![(header::CONTENT_RANGE, range)]))
        }
        _ => Err(ApiError::new(
            405,
            "PGRST117",
            format!("Unsupported HTTP method: {}", ctx.method),
        )),
    }
}

/// The `Location` of a `return=headers-only` insert from the statement's
/// `[[column, JSON text or null], …]` (none unless one row with a key).
fn location_of(table: &str, body: Option<&str>) -> Option<String> {
    let Json::Array(items) = serde_json::from_str::<Json>(body?).ok()? else {
        return None;
    };
    let keys: Vec<(String, Option<String>)> = items
        .iter()
        .filter_map(|kv| {
            let k = kv.get(0)?.as_str()?;
            Some((k.to_string(), kv.get(1)?.as_str().map(str::to_string)))
        })
        .collect();
    (!keys.is_empty()).then(|| prefer::location(table, &keys))
}

/// PUT: filters are exactly `eq` on every primary key column, the body one
/// object carrying the same key values.
fn put_checks(pk: &[String], query: &Query, row: Option<&Json>) -> Result<(), ApiError> {
    let bad = || {
        ApiError::new(
            405,
            "PGRST105",
            "Filters must include all and only primary key columns with 'eq' operators",
        )
    };
    if query.root.limit.is_some() || query.root.offset.is_some() {
        return Err(ApiError::new(
            400,
            "PGRST114",
            "limit/offset querystring parameters are not allowed for PUT",
        ));
    }
    let mut seen = Vec::new();
    for c in &query.root.conditions {
        match c {
            Condition::Filter(f)
                if f.op == Operator::Eq
                    && !f.negate
                    && f.field.path.is_empty()
                    && pk.contains(&f.field.name) =>
            {
                if let Value::Single(v) = &f.value {
                    seen.push((f.field.name.clone(), v.clone()));
                }
            }
            _ => return Err(bad()),
        }
    }
    if pk.is_empty() || seen.len() != pk.len() {
        return Err(bad());
    }
    let Some(row) = row else {
        return Err(ApiError::body("PUT requires a single JSON object"));
    };
    for (col, v) in &seen {
        let matches = match row.get(col) {
            Some(Json::String(s)) => s == v,
            Some(Json::Null) | None => false,
            Some(other) => &other.to_string() == v,
        };
        if !matches {
            return Err(ApiError::new(
                400,
                "PGRST115",
                "Payload values do not match URL in primary key column(s)",
            ));
        }
    }
    Ok(())
}

async fn rpc(
    ctx: &mut Ctx,
    name: &str,
    pairs: Vec<(String, String)>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let schema = ctx.st.schema();
    let mut opts = ctx.options();
    let post_mime = (ctx.method == Method::POST).then(|| body_mime(headers));
    let single_object = ctx.pref.single_object;
    // The argument names (PostgREST's keys), and how the arguments travel.
    enum Given {
        Text(Vec<(String, String)>),
        Json(Json),
        Raw,
    }
    let (given, keys, rest): (Given, Vec<String>, Vec<(String, String)>) = match ctx.method {
        // PostgREST's split: a key that is not reserved and a value without
        // an operator is an argument (known to the function or not); the
        // rest filter, order and page the result
        Method::GET | Method::HEAD => {
            let (a, r): (Vec<_>, Vec<_>) =
                pairs.into_iter().partition(|(k, v)| is_rpc_argument(k, v));
            let mut keys: Vec<String> = a.iter().map(|(k, _)| k.clone()).collect();
            keys.dedup();
            (Given::Text(a), keys, r)
        }
        // text, XML and bytes only ever go whole to an unnamed parameter
        Method::POST
            if matches!(
                post_mime.as_deref(),
                Some("text/plain" | "text/xml" | "application/xml" | "application/octet-stream")
            ) =>
        {
            (Given::Raw, Vec::new(), pairs)
        }
        // a form's fields are the arguments, as text
        Method::POST if body_kind(headers)? == BodyKind::Form => {
            let a = form_pairs(body);
            let mut keys: Vec<String> = a.iter().map(|(k, _)| k.clone()).collect();
            keys.dedup();
            (Given::Text(a), keys, pairs)
        }
        Method::POST => {
            // CSV records are objects, as a JSON array of them would be
            let mut json = if body_kind(headers)? == BodyKind::Csv {
                Json::Array(csv_rows(body)?)
            } else if body.is_empty() {
                Json::Object(Default::default())
            } else {
                parse_body(body)?
            };
            // an array of objects: PostgREST calls with the first one
            if !single_object {
                if let Json::Array(items) = &mut json {
                    if matches!(items.first(), None | Some(Json::Object(_))) {
                        json = if items.is_empty() {
                            Json::Object(Default::default())
                        } else {
                            items.swap_remove(0)
                        };
                    }
                }
            }
            // `?columns=a,b` names the keys that count; the others are ignored
            let columns = parse_query(&pairs)?.columns;
            if let (Some(cols), Json::Object(o)) = (&columns, &mut json) {
                o.retain(|k, _| cols.contains(k));
            }
            let rest = pairs.into_iter().filter(|(k, _)| k != "columns").collect();
            let keys = match &json {
                Json::Object(o) => o.keys().cloned().collect(),
                _ => Vec::new(),
            };
            (Given::Json(json), keys, rest)
        }
        _ => {
            return Err(ApiError::new(
                405,
                "PGRST101",
                format!("Cannot use the {} method on RPC", ctx.method),
            ))
        }
    };
    let func = sql::find_function(
        &schema,
        &ctx.schema,
        name,
        &keys,
        post_mime.as_deref(),
        single_object,
    )?;
    // its SET clauses PostgREST hoists to the transaction
    ctx.func_settings = func.hoisted_settings(&ctx.live.hoisted).cloned().collect();
    ctx.func_isolation = func.isolation();
    // a media type handler answers with its value itself when `Accept`
    // asks for its type; otherwise an `Accept` no builtin type answers is 406
    // a scalar function only: a set of media values has no one body
    // (PostgREST 12: 406 PGRST107 for `RETURNS SETOF "text/plain"`)
    let raw_media = func
        .media_type
        .as_deref()
        .filter(|_| func.result_columns.is_empty() && !func.returns_void && !func.returns_set)
        .and_then(|mt| handler_media(ctx.accept(headers), mt));
    // a function returning a table's rows answers in that table's media
    // type handlers too (an aggregate over its rows), as in PostgREST
    let row_handler = match (&raw_media, &func.return_table) {
        (None, Some((ts, tn)))
            if func.returns_set
                && ctx.media != Media::Object
                && !schema.media_aggregates.is_empty() =>
        {
            schema.table(ts, tn).and_then(|t| {
                let default_select = !rest.iter().any(|(k, _)| k == "select");
                table_handler(&schema, t, ctx.accept(headers), default_select)
            })
        }
        _ => None,
    };
    if raw_media.is_none() && row_handler.is_none() {
        if let Some(e) = ctx.media_error.take() {
            return Err(e);
        }
    }
    if let Some((agg, _)) = &row_handler {
        opts.handler = Some(sql::AggHandler::of(agg));
    }
    if raw_media.is_some() {
        opts.raw = Some(if func.media_binary {
            RawValue::Hex
        } else {
            RawValue::Text
        });
    }
    // the arguments as one JSON object of text values (query string, form)
    let text_object = |a: &[(String, String)]| {
        let obj: serde_json::Map<String, Json> = a
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        Json::Object(obj).to_string()
    };
    let args = if single_object {
        // the one json/jsonb parameter gets everything, positionally
        let ty = func.args[0].data_type.as_str();
        let csv = post_mime.as_deref() == Some("text/csv");
        Args::Raw(match &given {
            Given::Json(_) if !csv && !body.is_empty() => raw_argument(ty, body)?,
            Given::Json(j) => raw_argument(ty, j.to_string().as_bytes())?,
            Given::Text(a) => raw_argument(ty, text_object(a).as_bytes())?,
            Given::Raw => raw_argument(ty, body)?,
        })
    } else if sql::takes_raw_body(func) {
        // PostgREST's positional call: the body as sent, or the arguments
        // as one JSON object
        let ty = func.args[0].data_type.as_str();
        let csv = post_mime.as_deref() == Some("text/csv");
        Args::Raw(match &given {
            Given::Raw => raw_argument(ty, body)?,
            Given::Json(_) if !csv && !body.is_empty() => raw_argument(ty, body)?,
            Given::Json(j) => raw_argument(ty, j.to_string().as_bytes())?,
            Given::Text(a) => raw_argument(ty, text_object(a).as_bytes())?,
        })
    } else {
        match given {
            Given::Text(a) => Args::Text(a),
            Given::Json(json @ Json::Object(_)) => Args::Json {
                names: keys,
                body: json.to_string(),
            },
            // nothing to name the arguments by (a JSON array or scalar; text,
            // XML, bytes): only a call without arguments
            _ if func.args.iter().all(|a| a.has_default) => Args::Json {
                names: Vec::new(),
                body: "{}".into(),
            },
            _ => {
                return Err(ApiError::body(
                    "The request body of an RPC call must be a JSON object",
                ))
            }
        }
    };
    let mut query = parse_query(&rest)?;
    // a Range header pages a GET call as it pages a table read (PostgREST
    // reads it on GET only)
    if ctx.method == Method::GET {
        let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
        (query.root.offset, query.root.limit) =
            apply_range(range, query.root.offset, query.root.limit)?;
    }
    let (count, exact) = read_count(ctx, &mut opts);
    let max = max_affected(ctx);
    if max.is_some() && !func.returns_set {
        return Err(prefer::max_affected_function_error());
    }
    let stmt = sql::call(
        &schema,
        func,
        &args,
        &query,
        &opts,
        exact && !func.returns_void,
    )?;
    let plan = if func.returns_void {
        None
    } else {
        plan_of(count, &stmt)
    };
    let read_only =
        matches!(ctx.method, Method::GET | Method::HEAD) || func.volatility != Volatility::Volatile;
    let set_like = func.returns_set;
    let singular = ctx.media == Media::Object && set_like;
    let out = ctx
        .exec_counted(stmt, read_only, singular, plan, max)
        .await?;
    if func.returns_void {
        return Ok(ctx.respond(StatusCode::NO_CONTENT, &out, None, vec![]));
    }
    if let Some(mt) = raw_media {
        let bytes = handler_bytes(&out, func.media_binary)?;
        return Ok(ctx.reply(
            StatusCode::OK,
            &out,
            HeaderValue::from_str(&media_content_type(&mt)).ok(),
            bytes,
            vec![],
        ));
    }
    let body = out.body.clone().map(|b| {
        if (!set_like && !func.result_columns.is_empty()) || singular {
            first_element(&b)
        } else {
            b
        }
    });
    let from = query.root.offset.unwrap_or(0);
    let total = count_total(count, &out, opts.max_rows);
    let status = match page_status(from, out.page, total) {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    let range = content_range(from, out.page, total);
    if let Some((agg, content_type)) = row_handler {
        return ctx.handler_reply(status, &out, agg.binary, &content_type, range);
    }
    Ok(ctx.respond(status, &out, body, vec![(header::CONTENT_RANGE, range)]))
}

#[cfg(test)]
mod tests {
    use super::decode_segment;

    #[test]
    fn path_segments_decode_on_their_own() {
        assert_eq!(decode_segment("units"), "units");
        assert_eq!(decode_segment("rpc%2Fwhoami"), "rpc/whoami");
        assert_eq!(decode_segment("caf%C3%A9"), "caf\u{e9}");
        // `+`, `&`, `=` are path characters, not form syntax
        assert_eq!(decode_segment("a+b&c=d"), "a+b&c=d");
        // a stray `%` stays
        assert_eq!(decode_segment("50%"), "50%");
        assert_eq!(decode_segment("%zz%4"), "%zz%4");
        assert_eq!(decode_segment("%41%42"), "AB");
        assert_eq!(decode_segment(""), "");
    }
}
