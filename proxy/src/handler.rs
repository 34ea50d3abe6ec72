//! HTTP handlers: health, readiness, metrics and the PostgREST API.

use crate::auth::{self, Identity};
use crate::db::{self, Exec, Outcome};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tenancy_core::postgrest::ast::{Condition, Operator, Query, Value};
use tenancy_core::postgrest::csv;
use tenancy_core::postgrest::parse::{content_range, parse_query, parse_range_header};
use tenancy_core::postgrest::schema::Volatility;
use tenancy_core::postgrest::sql::{self, Args, InsertSpec, Options, Resolution, Returning};
use tenancy_core::postgrest::ApiError;

pub async fn health() -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{\"status\":\"ok\"}",
    )
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
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

/// PostgREST's error response.
pub fn error_response(e: &ApiError) -> Response {
    let body =
        json!({ "code": e.code, "details": e.details, "hint": e.hint, "message": e.message })
            .to_string();
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response();
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
}

fn media(accept: Option<&str>) -> Result<Media, ApiError> {
    let Some(a) = accept else {
        return Ok(Media::Json);
    };
    if a.trim().is_empty() {
        return Ok(Media::Json);
    }
    for part in a.split(',') {
        let m = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match m.as_str() {
            "application/vnd.pgrst.object+json" | "application/vnd.pgrst.object" => {
                return Ok(Media::Object)
            }
            "text/csv" => return Ok(Media::Csv),
            "application/json" | "*/*" | "application/*" | "application/geo+json" => {
                return Ok(Media::Json)
            }
            _ => {}
        }
    }
    Err(ApiError::new(
        406,
        "PGRST107",
        format!("None of these media types are available: {a}"),
    ))
}

#[derive(Default, Debug)]
struct Prefer {
    ret: Option<String>,
    count: Option<String>,
    resolution: Option<Resolution>,
    missing_default: bool,
    tx: Option<String>,
}

fn prefer(headers: &HeaderMap) -> Prefer {
    let mut p = Prefer::default();
    for v in headers.get_all("prefer") {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let item = item.trim();
            let Some((k, val)) = item.split_once('=') else {
                continue;
            };
            match (k.trim(), val.trim()) {
                ("return", r @ ("minimal" | "headers-only" | "representation")) => {
                    p.ret = Some(r.to_string())
                }
                ("count", c @ ("exact" | "planned" | "estimated")) => p.count = Some(c.to_string()),
                ("resolution", "merge-duplicates") => {
                    p.resolution = Some(Resolution::MergeDuplicates)
                }
                ("resolution", "ignore-duplicates") => {
                    p.resolution = Some(Resolution::IgnoreDuplicates)
                }
                ("missing", "default") => p.missing_default = true,
                ("tx", t @ ("commit" | "rollback")) => p.tx = Some(t.to_string()),
                _ => {}
            }
        }
    }
    p
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

fn first_element(body: &str) -> String {
    match serde_json::from_str::<Json>(body) {
        Ok(Json::Array(mut a)) if !a.is_empty() => a.swap_remove(0).to_string(),
        _ => "null".to_string(),
    }
}

/// The whole API: tables, views and `/rpc/fn`.
pub async fn api(
    State(st): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // `/health`, `/ready` and `/metrics` are operational endpoints unless the
    // default schema has a table of that name (the demo has `esg.metrics`);
    // they are always at `/_tenancy/…`.
    let ops = uri.path().trim_start_matches('/');
    if matches!(ops, "health" | "ready" | "metrics") && method == Method::GET {
        let default_schema = st.schemas.first().cloned().unwrap_or_default();
        if st.schema().table(&default_schema, ops).is_none() {
            return match ops {
                "health" => health().await.into_response(),
                "ready" => ready(State(st)).await,
                _ => metrics(State(st)).await,
            };
        }
    }
    let started = Instant::now();
    let (resp, tenant) = match process(&st, &method, &uri, &headers, body).await {
        Ok(x) => x,
        Err((e, tenant)) => (error_response(&e), tenant),
    };
    let status = resp.status().as_u16().to_string();
    metrics::counter!("tenancy_proxy_requests_total", "tenant" => tenant.clone(), "method" => method.to_string(), "status" => status)
        .increment(1);
    metrics::histogram!("tenancy_proxy_request_duration_seconds", "tenant" => tenant, "method" => method.to_string())
        .record(started.elapsed().as_secs_f64());
    resp
}

type Fail = (ApiError, String);

async fn process(
    st: &Arc<AppState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
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
    let identity = auth::identify(
        auth_header,
        st.jwt_key.as_ref(),
        st.config.db_anon_role.as_deref(),
    )
    .map_err(|e| (e, "none".to_string()))?;
    let tenant = identity
        .tenant
        .clone()
        .unwrap_or_else(|| "none".to_string());
    let fail = |e: ApiError| (e, tenant.clone());
    if let Some(t) = &identity.tenant {
        if let Err(wait) = st.limits.check(t) {
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
    }
    let is_read = matches!(*method, Method::GET | Method::HEAD);
    let profile_header = if is_read {
        "accept-profile"
    } else {
        "content-profile"
    };
    let schema = match headers.get(profile_header).and_then(|v| v.to_str().ok()) {
        Some(p) => {
            if !st.schemas.iter().any(|s| s == p) {
                return Err(fail(ApiError::new(
                    406,
                    "PGRST106",
                    format!(
                        "The schema must be one of the following: {}",
                        st.schemas.join(", ")
                    ),
                )));
            }
            p.to_string()
        }
        None => st
            .schemas
            .first()
            .cloned()
            .unwrap_or_else(|| "public".into()),
    };
    let media = media(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())).map_err(fail)?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let path = uri.path().trim_start_matches('/');
    let path: String = form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let pref = prefer(headers);
    let headers_json = {
        let mut m = serde_json::Map::new();
        for (k, v) in headers {
            if let Ok(v) = v.to_str() {
                m.insert(k.as_str().to_string(), Json::String(v.to_string()));
            }
        }
        Json::Object(m).to_string()
    };
    let tx_override = st.config.db_tx_end.ends_with("allow-override");
    let mut rollback = st.config.db_tx_end.starts_with("rollback");
    let mut applied = Vec::new();
    if tx_override {
        if let Some(t) = &pref.tx {
            rollback = t == "rollback";
            applied.push(format!("tx={t}"));
        }
    }
    let ctx = Ctx {
        st: st.clone(),
        identity,
        method: method.clone(),
        path: uri.path().to_string(),
        headers_json,
        schema,
        rollback,
        media,
        pref,
        applied,
    };
    let resp = if path.is_empty() {
        openapi(&ctx)
    } else if let Some(f) = path.strip_prefix("rpc/") {
        let mut ctx = ctx;
        rpc(&mut ctx, f, pairs, &body).await
    } else if path.contains('/') {
        Err(ApiError::new(
            404,
            "PGRST125",
            format!("Invalid path specified in request URL: /{path}"),
        ))
    } else {
        table(ctx, &path, pairs, headers, &body).await
    };
    resp.map(|r| (r, tenant.clone())).map_err(fail)
}

struct Ctx {
    st: Arc<AppState>,
    identity: Identity,
    method: Method,
    path: String,
    headers_json: String,
    schema: String,
    rollback: bool,
    media: Media,
    pref: Prefer,
    applied: Vec<String>,
}

impl Ctx {
    fn options(&self) -> Options {
        Options {
            aggregates: self.st.config.db_aggregates_enabled,
            max_rows: self.st.config.db_max_rows,
            csv: self.media == Media::Csv,
        }
    }

    async fn exec(
        &self,
        statement: sql::Statement,
        read_only: bool,
        singular: bool,
    ) -> Result<Outcome, ApiError> {
        let e = Exec {
            identity: self.identity.clone(),
            method: self.method.to_string(),
            path: self.path.clone(),
            headers_json: self.headers_json.clone(),
            schema: self.schema.clone(),
            read_only,
            rollback: self.rollback,
            statement,
            singular,
        };
        // A task of its own: a client that goes away cannot cancel the
        // transaction half-way and leave the pooled connection mid-statement.
        let st = self.st.clone();
        tokio::spawn(db::run(st, e))
            .await
            .map_err(|_| ApiError::new(500, "PGRST000", "request task failed"))?
    }

    /// Build the response from an outcome: media type, GUC headers/status.
    fn respond(
        &self,
        status: StatusCode,
        out: &Outcome,
        body: Option<String>,
        extra: Vec<(HeaderName, String)>,
    ) -> Response {
        let status = out
            .response_status
            .as_deref()
            .and_then(|s| s.trim().parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(status);
        let (ctype, body) = match (self.media, body) {
            (_, None) => (None, String::new()),
            (Media::Csv, Some(b)) => (Some("text/csv; charset=utf-8"), to_csv(&b)),
            (Media::Object, Some(b)) => {
                (Some("application/vnd.pgrst.object+json; charset=utf-8"), b)
            }
            (Media::Json, Some(b)) => (Some("application/json; charset=utf-8"), b),
        };
        let body = if self.method == Method::HEAD {
            String::new()
        } else {
            body
        };
        let mut r = (status, body).into_response();
        let h = r.headers_mut();
        if let Some(c) = ctype {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(c));
        }
        for (k, v) in extra {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        if !self.applied.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&self.applied.join(", ")) {
                h.insert(HeaderName::from_static("preference-applied"), v);
            }
        }
        if let Some(gh) = &out.response_headers {
            if let Ok(Json::Array(items)) = serde_json::from_str::<Json>(gh) {
                for item in items {
                    if let Json::Object(m) = item {
                        for (k, v) in m {
                            if let (Ok(k), Some(Ok(v))) = (
                                HeaderName::from_bytes(k.as_bytes()),
                                v.as_str().map(HeaderValue::from_str),
                            ) {
                                h.insert(k, v);
                            }
                        }
                    }
                }
            }
        }
        r
    }
}

fn openapi(ctx: &Ctx) -> Result<Response, ApiError> {
    let schema = ctx.st.schema();
    let mut paths = serde_json::Map::new();
    let mut defs = serde_json::Map::new();
    let mut names: Vec<_> = schema
        .tables
        .values()
        .filter(|t| t.schema == ctx.schema)
        .collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    for t in names {
        paths.insert(
            format!("/{}", t.name),
            json!({ "get": { "tags": [t.name], "responses": { "200": { "description": "OK" } } } }),
        );
        let props: serde_json::Map<String, Json> = t
            .columns
            .iter()
            .map(|c| (c.name.clone(), json!({ "format": c.data_type })))
            .collect();
        defs.insert(
            t.name.clone(),
            json!({ "type": "object", "properties": props }),
        );
    }
    for f in schema.functions.iter().filter(|f| f.schema == ctx.schema) {
        paths.insert(
            format!("/rpc/{}", f.name),
            json!({ "post": { "tags": ["(rpc) ".to_string() + &f.name] } }),
        );
    }
    let doc = json!({
        "swagger": "2.0",
        "info": { "title": "tenancy-proxy", "version": env!("CARGO_PKG_VERSION") },
        "basePath": "/",
        "schemes": ["http"],
        "consumes": ["application/json"],
        "produces": ["application/json", "application/vnd.pgrst.object+json", "text/csv"],
        "paths": paths,
        "definitions": defs,
    });
    let mut r = (StatusCode::OK, doc.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openapi+json; charset=utf-8"),
    );
    Ok(r)
}

fn parse_body(body: &Bytes) -> Result<Json, ApiError> {
    if body.is_empty() {
        return Err(ApiError::body("Empty or invalid json"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::body("Empty or invalid json").details(e.to_string()))
}

fn returning(ctx: &mut Ctx) -> Returning {
    match ctx.pref.ret.as_deref() {
        Some("representation") => {
            ctx.applied.push("return=representation".into());
            Returning::Representation
        }
        Some(r) => {
            ctx.applied.push(format!("return={r}"));
            Returning::Minimal
        }
        None => Returning::Minimal,
    }
}

/// `Prefer: count=…` on a write: the total is the number of rows written.
fn write_count(ctx: &mut Ctx) -> bool {
    match &ctx.pref.count {
        Some(c) => {
            ctx.applied.push(format!("count={c}"));
            true
        }
        None => false,
    }
}

async fn table(
    mut ctx: Ctx,
    name: &str,
    pairs: Vec<(String, String)>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let schema = ctx.st.schema();
    let table = schema
        .table(&ctx.schema, name)
        .cloned()
        .ok_or_else(|| ApiError::no_table(&ctx.schema, name))?;
    let mut query = parse_query(&pairs)?;
    let opts = ctx.options();
    let singular = ctx.media == Media::Object;
    match ctx.method {
        Method::GET | Method::HEAD => {
            if query.root.limit.is_none() && query.root.offset.is_none() {
                if let Some(r) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
                    if let Some((off, lim)) = parse_range_header(r) {
                        query.root.offset = Some(off);
                        query.root.limit = lim;
                    }
                }
            }
            let count = ctx.pref.count.is_some();
            if let Some(c) = &ctx.pref.count {
                ctx.applied.push(format!("count={c}"));
            }
            let stmt = sql::read(&schema, &table, &query, &opts, count)?;
            let out = ctx.exec(stmt, true, singular).await?;
            let from = query.root.offset.unwrap_or(0);
            if let Some(total) = out.total {
                if out.page == 0 && from > 0 && from as i64 >= total {
                    let mut r = error_response(&ApiError::range(
                        "Requested range not satisfiable",
                        format!(
                            "An offset of {from} was requested, but there are only {total} rows."
                        ),
                    ));
                    if let Ok(v) = HeaderValue::from_str(&format!("*/{total}")) {
                        r.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    return Ok(r);
                }
            }
            let range = content_range(from, out.page, out.total);
            let partial = out
                .total
                .is_some_and(|t| out.page > 0 && (from > 0 || (out.page) < t));
            let body = out
                .body
                .clone()
                .map(|b| if singular { first_element(&b) } else { b });
            let status = if partial {
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            };
            Ok(ctx.respond(status, &out, body, vec![(header::CONTENT_RANGE, range)]))
        }
        Method::POST | Method::PUT => {
            let ret = returning(&mut ctx);
            let count = write_count(&mut ctx);
            let json = parse_body(body)?;
            let rows: Vec<Json> = match json {
                Json::Array(a) => a,
                o @ Json::Object(_) => vec![o],
                _ => {
                    return Err(ApiError::body(
                        "The request body must be a JSON object or an array of objects",
                    ))
                }
            };
            if rows.iter().any(|r| !r.is_object()) {
                return Err(ApiError::body(
                    "All elements of the array must be JSON objects",
                ));
            }
            let keys = |r: &Json| -> Vec<String> {
                r.as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default()
            };
            let columns = match &query.columns {
                Some(c) => c.clone(),
                None => {
                    let first = rows.first().map(keys).unwrap_or_default();
                    if !ctx.pref.missing_default {
                        for r in &rows {
                            let mut k = keys(r);
                            let mut f = first.clone();
                            k.sort();
                            f.sort();
                            if k != f {
                                return Err(ApiError::body("All object keys must match"));
                            }
                        }
                        first
                    } else {
                        let mut all: Vec<String> = Vec::new();
                        for r in &rows {
                            for k in keys(r) {
                                if !all.contains(&k) {
                                    all.push(k);
                                }
                            }
                        }
                        all
                    }
                }
            };
            let present = ctx.pref.missing_default.then(|| {
                ctx.applied.push("missing=default".into());
                rows.iter()
                    .map(|r| columns.iter().map(|c| r.get(c).is_some()).collect())
                    .collect()
            });
            let mut resolution = ctx.pref.resolution;
            if ctx.method == Method::PUT {
                put_checks(&table.primary_key, &query, &rows)?;
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
            if rows.is_empty() {
                let out = Outcome::default();
                let body = (ret == Returning::Representation).then(|| "[]".to_string());
                return Ok(ctx.respond(StatusCode::CREATED, &out, body, vec![]));
            }
            let spec = InsertSpec {
                columns,
                body: Json::Array(rows).to_string(),
                present,
                resolution,
            };
            let stmt = sql::insert(&schema, &table, &query, &opts, &spec, ret)?;
            let out = ctx
                .exec(stmt, false, singular && ret == Returning::Representation)
                .await?;
            let status = match (ctx.method == Method::PUT, ret) {
                (true, Returning::Representation) => StatusCode::OK,
                (true, Returning::Minimal) => StatusCode::NO_CONTENT,
                (false, _) => StatusCode::CREATED,
            };
            let body = match ret {
                Returning::Representation => {
                    out.body
                        .clone()
                        .map(|b| if singular { first_element(&b) } else { b })
                }
                Returning::Minimal => None,
            };
            // PostgREST: `*/*`, or `*/n` with the count of inserted rows.
            let range = content_range(0, 0, count.then_some(out.page));
            Ok(ctx.respond(status, &out, body, vec![(header::CONTENT_RANGE, range)]))
        }
        Method::PATCH | Method::DELETE => {
            let ret = returning(&mut ctx);
            let count = write_count(&mut ctx);
            let stmt = if ctx.method == Method::PATCH {
                let json = parse_body(body)?;
                let Json::Object(obj) = &json else {
                    return Err(ApiError::body("The request body must be a JSON object"));
                };
                let columns: Vec<String> = match &query.columns {
                    Some(c) => c.clone(),
                    None => obj.keys().cloned().collect(),
                };
                if columns.is_empty() {
                    let out = Outcome::default();
                    let (st, b) = match ret {
                        Returning::Representation => (StatusCode::OK, Some("[]".to_string())),
                        Returning::Minimal => (StatusCode::NO_CONTENT, None),
                    };
                    return Ok(ctx.respond(st, &out, b, vec![]));
                }
                sql::update(
                    &schema,
                    &table,
                    &query,
                    &opts,
                    &columns,
                    &json.to_string(),
                    ret,
                )?
            } else {
                sql::delete(&schema, &table, &query, &opts, ret)?
            };
            let out = ctx
                .exec(stmt, false, singular && ret == Returning::Representation)
                .await?;
            let range = content_range(0, out.page, count.then_some(out.page));
            let (status, body) = match ret {
                Returning::Representation => (
                    StatusCode::OK,
                    out.body
                        .clone()
                        .map(|b| if singular { first_element(&b) } else { b }),
                ),
                Returning::Minimal => (StatusCode::NO_CONTENT, None),
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

/// PUT: filters are exactly `eq` on every primary key column, the body one
/// object carrying the same key values.
fn put_checks(pk: &[String], query: &Query, rows: &[Json]) -> Result<(), ApiError> {
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
    if rows.len() != 1 {
        return Err(ApiError::body("PUT requires a single JSON object"));
    }
    for (col, v) in &seen {
        let matches = match rows[0].get(col) {
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
    body: &Bytes,
) -> Result<Response, ApiError> {
    let schema = ctx.st.schema();
    let known: Vec<String> = schema
        .functions
        .iter()
        .filter(|f| f.schema == ctx.schema && f.name == name)
        .flat_map(|f| f.args.iter().map(|a| a.name.clone()))
        .collect();
    let opts = ctx.options();
    let (args, rest, read_only_method) = match ctx.method {
        Method::GET | Method::HEAD => {
            let (a, r): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| known.contains(k));
            (Args::Text(a), r, true)
        }
        Method::POST => {
            let json = if body.is_empty() {
                Json::Object(Default::default())
            } else {
                parse_body(body)?
            };
            let Json::Object(obj) = &json else {
                return Err(ApiError::body(
                    "The request body of an RPC call must be a JSON object",
                ));
            };
            let names: Vec<String> = obj.keys().cloned().collect();
            (
                Args::Json {
                    names,
                    body: json.to_string(),
                },
                pairs,
                false,
            )
        }
        _ => {
            return Err(ApiError::new(
                405,
                "PGRST101",
                format!("Cannot use the {} method on RPC", ctx.method),
            ))
        }
    };
    let arg_names: Vec<String> = match &args {
        Args::Text(a) => a.iter().map(|(k, _)| k.clone()).collect(),
        Args::Json { names, .. } => names.clone(),
    };
    let func = sql::find_function(&schema, &ctx.schema, name, &arg_names)?;
    let query = parse_query(&rest)?;
    let count = ctx.pref.count.is_some() && !func.returns_void;
    if count {
        if let Some(c) = &ctx.pref.count {
            ctx.applied.push(format!("count={c}"));
        }
    }
    let stmt = sql::call(&schema, func, &args, &query, &opts, count)?;
    let read_only = read_only_method || func.volatility != Volatility::Volatile;
    let set_like = func.returns_set;
    let singular = ctx.media == Media::Object && set_like;
    let out = ctx.exec(stmt, read_only, singular).await?;
    if func.returns_void {
        return Ok(ctx.respond(StatusCode::NO_CONTENT, &out, None, vec![]));
    }
    let body = out.body.clone().map(|b| {
        if (!set_like && !func.result_columns.is_empty()) || singular {
            first_element(&b)
        } else {
            b
        }
    });
    let range = content_range(query.root.offset.unwrap_or(0), out.page, out.total);
    Ok(ctx.respond(
        StatusCode::OK,
        &out,
        body,
        vec![(header::CONTENT_RANGE, range)],
    ))
}
