//! Asynchronous calls (RFC 7240 `Prefer: respond-async`) on `/rpc/fn`.
//!
//! The proxy answers `202 Accepted` with `Location: /_tenancy/jobs/<id>` and
//! runs the call in a background task, exactly as the synchronous call would
//! run (the same handler code: role, `request.jwt.claims`, tenant,
//! pre-request, statement, response shaping), but on a connection of its own
//! opened with the configured `db-uri`, so a long job never holds a pooled
//! connection. The connection's NOTICEs are the job's progress (see
//! [`tenancy_core::jobs::parse_progress`]). `GET /_tenancy/jobs/<id>` reads the
//! job, `DELETE` cancels it (`pg_cancel_backend` through the connection's
//! cancel token: the statement fails with 57014 and its transaction rolls
//! back). Only the identity that started a job sees it
//! ([`tenancy_core::jobs::Owner`]); anonymous callers cannot start jobs.

use crate::auth::Identity;
use crate::db::{self, Exec, Outcome};
use crate::handler::error_response;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, StreamExt};
use serde_json::{json, Value as Json};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tenancy_core::jobs::{rfc3339, Job, Owner, Registry, Status};
use tenancy_core::postgrest::error::sqlstate_status;
use tenancy_core::postgrest::ApiError;
use tokio::sync::oneshot;
use tokio_postgres::{AsyncMessage, CancelToken};

/// Finished jobs kept at most, whatever the TTL: in all, and of one tenant
/// (a busy tenant evicts its own oldest, not another tenant's results).
const MAX_FINISHED: usize = 1000;
const MAX_FINISHED_PER_TENANT: usize = 100;
/// A result larger than this is not kept (the job still succeeds).
const MAX_RESULT_BYTES: usize = 16 << 20;
/// How often, and how many times, a cancel is sent until the job ends: a
/// cancel that reaches the backend between two statements does nothing.
const CANCEL_EVERY: Duration = Duration::from_millis(250);
const CANCEL_TRIES: u32 = 40;

/// What the runtime keeps with a job.
#[derive(Default)]
pub struct Data {
    cancel: Option<CancelToken>,
    /// The metrics label.
    tenant: String,
    /// The status the synchronous call would have answered with.
    status_code: Option<u16>,
    result: Option<Json>,
    error: Option<Json>,
}

/// Every job of this proxy.
pub struct Jobs {
    reg: Mutex<Registry<Data>>,
    /// For cancel requests, which use the connection's TLS settings.
    tls: crate::pg::Tls,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A job's owner, or the 401 for an anonymous caller.
pub fn owner_of(identity: &Identity) -> Result<Owner, ApiError> {
    if !identity.authenticated {
        return Err(ApiError::new(
            401,
            "TENANCY401",
            "Asynchronous calls need an authenticated identity",
        )
        .details(
            "A job is readable and cancellable only by the identity that started it \
             (the JWT's role, tenant_id and sub); an anonymous caller has none.",
        )
        .hint("Send a JWT, or call without Prefer: respond-async."));
    }
    let sub = identity.claims.get("sub").map(|v| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    });
    Ok(Owner {
        role: identity.role.clone(),
        tenant: identity.tenant.clone(),
        sub,
    })
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(404, "TENANCY404", "Job not found").details(format!(
        "No job {id} was started by this identity, or it finished long enough ago to be forgotten"
    ))
}

impl Jobs {
    pub fn new(
        max_running: usize,
        max_running_per_tenant: usize,
        ttl_secs: u64,
        tls: crate::pg::Tls,
    ) -> Jobs {
        Jobs {
            reg: Mutex::new(
                Registry::new(max_running, ttl_secs.saturating_mul(1000), MAX_FINISHED)
                    .per_group(max_running_per_tenant, MAX_FINISHED_PER_TENANT),
            ),
            tls,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry<Data>> {
        // the registry stays consistent even if a holder panicked
        self.reg.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.lock().running()
    }

    fn start(&self, id: &str, function: &str, owner: Owner, tenant: &str) -> Result<(), ApiError> {
        let mut reg = self.lock();
        let data = Data {
            tenant: tenant.to_string(),
            ..Data::default()
        };
        // the group is the metrics label: one per known tenant however its
        // claim is spelt (slug, uuid), `unknown`, `none`
        reg.start(id, function, owner, tenant, data, now_ms())
            .map_err(|f| {
                metrics::counter!("tenancy_proxy_jobs_rejected_total", "tenant" => tenant.to_string())
                    .increment(1);
                let details = if f.per_group {
                    format!(
                        "This tenant runs {} jobs already, its most at once (TENANCY_MAX_JOBS_PER_TENANT)",
                        f.max
                    )
                } else {
                    format!("At most {} jobs run at once (TENANCY_MAX_JOBS)", f.max)
                };
                ApiError::new(503, "TENANCY503", "Too many asynchronous calls running")
                    .details(details)
                    .hint("Retry when a job has ended, or call without Prefer: respond-async.")
                    .header("Retry-After", "5")
            })?;
        metrics::gauge!("tenancy_proxy_jobs_running").set(reg.running() as f64);
        Ok(())
    }

    fn note(&self, id: &str, severity: &str, message: &str) {
        if let Some(j) = self.lock().job_mut(id) {
            j.note(severity, message);
        }
    }

    /// Keep the job connection's cancel token; `true` if a cancel was
    /// already asked for.
    fn attach(&self, id: &str, token: CancelToken) -> bool {
        match self.lock().job_mut(id) {
            Some(j) => {
                j.data.cancel = Some(token);
                j.cancel_requested
            }
            None => true,
        }
    }

    fn forget(&self, id: &str) {
        let mut reg = self.lock();
        reg.remove(id);
        metrics::gauge!("tenancy_proxy_jobs_running").set(reg.running() as f64);
    }

    /// End a job with the response the synchronous call would have sent.
    async fn complete(&self, id: &str, resp: Response) {
        let code = resp.status().as_u16();
        let (body, dropped) = match axum::body::to_bytes(resp.into_body(), MAX_RESULT_BYTES).await {
            Ok(b) if b.is_empty() => (Json::Null, false),
            Ok(b) => (
                serde_json::from_slice(&b)
                    .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&b).into_owned())),
                false,
            ),
            Err(_) => (Json::Null, true),
        };
        let failed = code >= 400;
        let sqlstate = failed.then(|| {
            body.get("code")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string()
        });
        let mut reg = self.lock();
        let Some(job) = reg.job_mut(id) else {
            return;
        };
        let status = Status::of_end(sqlstate.as_deref(), job.cancel_requested);
        job.data.status_code = Some(code);
        job.data.cancel = None;
        if failed {
            job.data.error = Some(body);
        } else {
            job.data.result = Some(body);
        }
        if dropped {
            job.note(
                "WARNING",
                &format!("the result is larger than {MAX_RESULT_BYTES} bytes and was not kept"),
            );
        }
        let tenant = job.data.tenant.clone();
        reg.finish(id, status, now_ms());
        metrics::counter!("tenancy_proxy_jobs_finished_total", "tenant" => tenant, "status" => status.as_str())
            .increment(1);
        metrics::gauge!("tenancy_proxy_jobs_running").set(reg.running() as f64);
    }

    /// Send cancels to a job's backend until the job has ended.
    fn cancel_until_done(self: &Arc<Self>, id: String) {
        let jobs = self.clone();
        tokio::spawn(async move {
            for _ in 0..CANCEL_TRIES {
                let token = {
                    let mut reg = jobs.lock();
                    match reg.job_mut(&id) {
                        Some(j) if j.status == Status::Running => j.data.cancel.clone(),
                        _ => return,
                    }
                };
                if let Some(t) = token {
                    if let Err(e) = t.cancel_query(jobs.tls.clone()).await {
                        tracing::warn!(job = %id, error = %e, "could not send a cancel request");
                    }
                }
                tokio::time::sleep(CANCEL_EVERY).await;
            }
        });
    }

    /// Cancel every running job and wait (up to `grace`) for them to end.
    pub async fn shutdown(self: &Arc<Self>, grace: Duration) {
        let ids = self.lock().request_cancel_all();
        if ids.is_empty() {
            return;
        }
        tracing::info!(jobs = ids.len(), "cancelling running jobs");
        for id in ids {
            self.cancel_until_done(id);
        }
        let until = tokio::time::Instant::now() + grace;
        while self.running() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn render(job: &Job<Data>) -> Json {
        let progress: Vec<Json> = job
            .progress
            .iter()
            .map(|p| json!({ "unit": p.unit, "done": p.done, "total": p.total, "message": p.message }))
            .collect();
        let notices: Vec<Json> = job
            .notices
            .iter()
            .map(|n| json!({ "severity": n.severity, "message": n.message }))
            .collect();
        json!({
            "id": job.id,
            "function": job.function,
            "status": job.status.as_str(),
            "started_at": rfc3339(job.started_at),
            "finished_at": job.finished_at.map(rfc3339),
            "cancel_requested": job.cancel_requested,
            "progress": progress,
            "progress_count": job.progress_count,
            "notices": notices,
            "notice_count": job.notice_count,
            "status_code": job.data.status_code,
            "result": job.data.result,
            "error": job.data.error,
        })
    }
}

/// One asynchronous call being set up or running: handed to the handler's
/// request context, whose statement then runs through [`exec`].
pub struct JobRun {
    id: String,
    state: Arc<AppState>,
    /// `None` once the statement starts (the caller answers 202), or the
    /// response of a call that ended before (the caller answers with it).
    started: Mutex<Option<oneshot::Sender<Option<Response>>>>,
}

impl JobRun {
    fn take_started(&self) -> Option<oneshot::Sender<Option<Response>>> {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// Start `call` (the handler's RPC, given the job to run its statement
/// with) as a job. Errors found before the statement runs (unknown
/// function, bad arguments, no database connection) are answered at once,
/// as without `respond-async`, and no job remains.
pub async fn submit<F, Fut>(
    st: &Arc<AppState>,
    identity: &Identity,
    function: String,
    call: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Arc<JobRun>) -> Fut,
    Fut: Future<Output = Response> + Send + 'static,
{
    let owner = owner_of(identity)?;
    // the metrics label, as for requests (slug, `unknown`, `none`)
    let tenant = &st.limits.label(identity.tenant.as_deref());
    let id = uuid::Uuid::new_v4().to_string();
    st.jobs.start(&id, &function, owner, tenant)?;
    let (tx, rx) = oneshot::channel();
    let run = Arc::new(JobRun {
        id: id.clone(),
        state: st.clone(),
        started: Mutex::new(Some(tx)),
    });
    let fut = call(run.clone());
    tokio::spawn(async move {
        let resp = AssertUnwindSafe(fut)
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                error_response(&ApiError::new(500, "PGRST000", "the job's task failed"))
            });
        match run.take_started() {
            Some(tx) => {
                run.state.jobs.forget(&run.id);
                let _ = tx.send(Some(resp));
            }
            None => run.state.jobs.complete(&run.id, resp).await,
        }
    });
    match rx.await {
        Ok(None) => {
            metrics::counter!("tenancy_proxy_jobs_started_total", "tenant" => tenant.to_string())
                .increment(1);
            Ok(accepted(&id))
        }
        Ok(Some(resp)) => Ok(resp),
        Err(_) => {
            st.jobs.forget(&id);
            Err(ApiError::new(500, "PGRST000", "the job's task failed"))
        }
    }
}

/// The `202 Accepted` of a started job.
fn accepted(id: &str) -> Response {
    let location = format!("/_tenancy/jobs/{id}");
    let body = json!({ "id": id, "status": "running", "location": location }).to_string();
    let mut r = (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(
        "preference-applied",
        HeaderValue::from_static(tenancy_core::jobs::RESPOND_ASYNC),
    );
    r
}

/// Run a job's statement as [`db::run`] would, on a connection of its own
/// whose NOTICEs go to the job.
pub async fn exec(job: &Arc<JobRun>, e: Exec) -> Result<Outcome, ApiError> {
    let st = &job.state;
    let auth = e.identity.authenticated;
    let (client, mut conn) = st
        .db
        .config
        .connect(st.db.tls.clone())
        .await
        .map_err(|err| db::db_error(&err, auth))?;
    let token = client.cancel_token();
    let (jobs, id) = (st.jobs.clone(), job.id.clone());
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notice(n)) => jobs.note(&id, n.severity(), n.message()),
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(job = %id, error = %err, "job connection failed");
                    break;
                }
            }
        }
    });
    // dropping the wrapper ends the connection
    let client = deadpool_postgres::ClientWrapper::new(client, driver);
    if st.jobs.attach(&job.id, token) {
        let msg = "canceling statement due to user request";
        return Err(ApiError::new(
            sqlstate_status("57014", msg, auth),
            "57014",
            msg,
        ));
    }
    if let Some(tx) = job.take_started() {
        let _ = tx.send(None);
    }
    let (out, _clean) = db::run_client(st, &e, &client).await;
    out
}

/// The request's owner, or the error response.
#[allow(clippy::result_large_err)] // the error is the finished response
fn caller(st: &AppState, headers: &HeaderMap) -> Result<Owner, Response> {
    let auth = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            error_response(&ApiError::new(
                401,
                "PGRST301",
                "Authorization header is not valid text",
            ))
        })?),
    };
    let identity = st
        .live()
        .jwt
        .identify(auth)
        .map_err(|e| error_response(&e))?;
    owner_of(&identity).map_err(|e| {
        let mut r = error_response(&e);
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    })
}

fn json_response(status: StatusCode, body: Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /_tenancy/jobs/<id>`: the job's status, progress and outcome.
pub async fn status(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let owner = match caller(&st, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let mut reg = st.jobs.lock();
    match reg.get(&id, &owner, now_ms()) {
        Some(job) => json_response(StatusCode::OK, Jobs::render(job)),
        None => error_response(&not_found(&id)),
    }
}

/// `DELETE /_tenancy/jobs/<id>`: cancel a running job (`202`, its status
/// follows); an ended job is left as it is (`200`).
pub async fn cancel(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let owner = match caller(&st, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (running, body) = {
        let mut reg = st.jobs.lock();
        let now = now_ms();
        let Some(running) = reg.request_cancel(&id, &owner, now) else {
            return error_response(&not_found(&id));
        };
        let Some(job) = reg.get(&id, &owner, now) else {
            return error_response(&not_found(&id));
        };
        (running, Jobs::render(job))
    };
    if running {
        st.jobs.cancel_until_done(id);
        json_response(StatusCode::ACCEPTED, body)
    } else {
        json_response(StatusCode::OK, body)
    }
}
