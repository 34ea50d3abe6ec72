//! Running one request's statement in one transaction.

use crate::auth::Identity;
use crate::AppState;
use bytes::BytesMut;
use std::sync::Arc;
use tenancy_core::ident::quote_ident;
use tenancy_core::postgrest::error::sqlstate_status;
use tenancy_core::postgrest::prefer::max_affected_error;
use tenancy_core::postgrest::sql::limit_exceeded;
use tenancy_core::postgrest::sql::Statement;
use tenancy_core::postgrest::ApiError;
use tokio_postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};

/// A parameter sent as untyped text: the server parses it with the input
/// function of whatever type it inferred, like a literal in PostgREST's SQL.
#[derive(Debug)]
pub struct Untyped(pub Option<String>);

impl ToSql for Untyped {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// Everything one request runs.
pub struct Exec {
    pub identity: Identity,
    pub method: String,
    pub path: String,
    pub headers_json: String,
    /// `request.cookies`: the `Cookie` header as a JSON object.
    pub cookies_json: String,
    pub schema: String,
    pub read_only: bool,
    pub rollback: bool,
    pub statement: Statement,
    /// Fail with PGRST116 (and roll back) unless exactly one row.
    pub singular: bool,
    /// Extra transaction-local settings (`Prefer: timezone`, then an RPC
    /// function's hoisted settings), set after the request's settings,
    /// before the pre-request function.
    pub settings: Vec<(String, String)>,
    /// The called function's `default_transaction_isolation` (lowercase):
    /// wins over the role's.
    pub isolation: Option<String>,
    /// `Prefer: count=planned|estimated`: an `EXPLAIN (FORMAT JSON)` of the
    /// count query, run after the statement in the same transaction.
    pub plan: Option<Statement>,
    /// `Prefer: handling=strict, max-affected=n`: fail with PGRST124 (and
    /// roll back) when the statement touches more rows.
    pub max_affected: Option<i64>,
    /// A limited PATCH/DELETE whose rows are picked by non-key `order`
    /// columns (a view without a key): fail with PGRST110 (and roll back)
    /// when more rows than `limit` changed.
    pub limit_cap: Option<i64>,
    /// `EXPLAIN (…)`: run the statement under it and answer with the plan
    /// (the JSON document, or the text lines) as the body.
    pub explain: Option<String>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub total: Option<i64>,
    pub page: i64,
    pub body: Option<String>,
    pub response_headers: Option<String>,
    pub response_status: Option<String>,
    /// The planner's row estimate of [`Exec::plan`].
    pub planned: Option<i64>,
}

pub fn db_error(e: &tokio_postgres::Error, authenticated: bool) -> ApiError {
    match e.as_db_error() {
        Some(d) if d.code().code() == "PGRST" => {
            ApiError::from_pgrst_raise(d.message(), d.detail())
        }
        Some(d) => {
            let code = d.code().code();
            let mut err = ApiError::new(
                sqlstate_status(code, d.message(), authenticated),
                code,
                d.message(),
            );
            err.details = d.detail().map(str::to_string);
            err.hint = d.hint().map(str::to_string);
            err
        }
        // the request held something the protocol cannot carry (a NUL in
        // a name): the client's fault, nothing reached the database
        None if !e.is_closed()
            && ["error encoding message", "error serializing parameter"]
                .iter()
                .any(|p| e.to_string().starts_with(p)) =>
        {
            ApiError::new(
                400,
                "PGRST100",
                "The request holds a value PostgreSQL cannot take",
            )
            .details(crate::pg::error_chain(e))
        }
        None => ApiError::new(
            503,
            "PGRST001",
            "Database client error. Retrying the connection.",
        )
        .details(e.to_string()),
    }
}

/// A pooled connection, or PostgREST's error: 504 `PGRST003` when none
/// came free within `db-pool-acquisition-timeout`, 503 `PGRST001` when the
/// database cannot be reached.
pub async fn connection(state: &AppState) -> Result<deadpool_postgres::Object, ApiError> {
    use deadpool_postgres::PoolError;
    state.pool.get().await.map_err(|err| match err {
        PoolError::Timeout(_) => {
            metrics::counter!("pgrst_db_pool_timeouts_total").increment(1);
            ApiError::new(
                504,
                "PGRST003",
                "Timed out acquiring connection from connection pool.",
            )
        }
        PoolError::Backend(e) => ApiError::new(
            503,
            "PGRST001",
            "Database client error. Retrying the connection.",
        )
        .details(crate::pg::error_chain(&e)),
        other => ApiError::new(
            503,
            "PGRST001",
            "Database client error. Retrying the connection.",
        )
        .details(other.to_string()),
    })
}

/// PGRST116, in `application/json` as every error (PostgREST 12.0.3,
/// #3373: the rejected singular media type is not echoed).
pub fn singular_error(n: i64) -> ApiError {
    ApiError::new(
        406,
        "PGRST116",
        "JSON object requested, multiple (or no) rows returned",
    )
    .details(format!("The result contains {n} rows"))
}

pub(crate) fn qualified_function(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// The session reset that follows every `COMMIT`/`ROLLBACK`, in the same
/// round trip: what the statement set for the whole session does not reach
/// the next request on the pooled connection, another tenant's maybe.
/// `RESET ALL` undoes `set_config(…, false)` and `SET` in a function, but
/// skips the role (PostgreSQL's GUC_NO_RESET_ALL): a function's
/// `set_config('role', …, false)` is undone by `RESET ROLE`. `CLOSE ALL`
/// closes `WITH HOLD` cursors a function declared (their rows were read
/// under this request's role and tenant, and any later request could
/// `FETCH` them); `UNLISTEN *` drops a function's `LISTEN`s; `DISCARD TEMP`
/// drops temporary tables a function left (a scratch table created `IF NOT
/// EXISTS` and never emptied would otherwise hand one tenant's rows to the
/// next; temporary tables have no row-level security); `DISCARD SEQUENCES`
/// forgets `lastval()`/`currval()` (the id another tenant just inserted).
/// All free when there is nothing to undo (pgbench, 8 clients, 3 × 4 s
/// alternating, `CLOSE ALL; UNLISTEN *` added: 28.8/28.4, 29.6/29.5,
/// 30.1/28.6k tps). Prepared statements stay (the pool's own). Session
/// advisory locks are released by the next request's [`SETUP`].
macro_rules! session_reset {
    () => {
        "RESET ALL; RESET ROLE; CLOSE ALL; UNLISTEN *; DISCARD TEMP; DISCARD SEQUENCES"
    };
}
/// A request's transaction ends: commit (a rollback server-side when the
/// transaction failed), then the [`session_reset!`].
const COMMIT: &str = concat!("COMMIT; ", session_reset!());
const ROLLBACK: &str = concat!("ROLLBACK; ", session_reset!());
/// A transaction the request asked to end in a rollback (`Prefer:
/// tx=rollback`, `db-tx-end`): deferred constraints are checked first, so a
/// violation is the response as it would be on commit (PostgREST). On an
/// error the rest of the string is skipped and the caller rolls back.
const ROLLBACK_CHECKED: &str = concat!(
    "SET CONSTRAINTS ALL IMMEDIATE; ROLLBACK; ",
    session_reset!()
);

/// Parameter bytes past which a connection is not reused (see [`run`]).
const LARGE_STATEMENT_BYTES: usize = 4 << 20;

/// The per-request settings, one statement (all values are parameters).
/// First it releases the session advisory locks an earlier request's
/// function left on the connection (`pg_advisory_lock` without an unlock):
/// they would otherwise block every other session wanting them for as long
/// as the connection lives. Here rather than in the [`session_reset!`],
/// where it would be one more statement (−11 % in a trivial pgbench loop);
/// as one more call in this statement it measured within noise (pgbench, 8
/// clients, 10 alternating pairs of 4–8 s).
const SETUP: &str = "SELECT pg_catalog.pg_advisory_unlock_all(), pg_catalog.set_config('role', $1, true), pg_catalog.set_config('request.jwt.claims', $2, true), \
     pg_catalog.set_config('request.method', $3, true), pg_catalog.set_config('request.path', $4, true), \
     pg_catalog.set_config('request.headers', $5, true), pg_catalog.set_config('search_path', $6, true), \
     pg_catalog.set_config('tenancy.tenant_id', $7, true), pg_catalog.set_config('request.cookies', $8, true)";

/// A pooled connection that is closed instead of returned to the pool
/// unless the request's transaction was seen to end (commit or rollback):
/// a future dropped half-way can never hand the next request a connection
/// inside someone else's transaction.
///
/// Closing the socket does not stop the backend (PostgreSQL notices a gone
/// client only when it next reads or writes), so the statement in flight is
/// cancelled too, best effort: the backend is not reused either way.
struct Conn {
    obj: Option<deadpool_postgres::Object>,
    clean: bool,
    tls: crate::pg::Tls,
}

impl Conn {
    fn client(&self) -> &deadpool_postgres::Object {
        self.obj.as_ref().expect("connection")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.clean {
            if let Some(obj) = self.obj.take() {
                let token = obj.cancel_token();
                let tls = self.tls.clone();
                drop(deadpool_postgres::Object::take(obj));
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        if let Err(e) = token.cancel_query(tls).await {
                            tracing::warn!(error = %e, "cancelling an abandoned statement failed");
                        }
                    });
                }
            }
        }
    }
}

/// Run one request: `BEGIN`, the settings, the pre-request function, the
/// statement and `COMMIT` (or `ROLLBACK`) are pipelined — one round trip
/// when the statement is already prepared on the connection, two on a
/// statement-cache miss, when it is prepared after `search_path` is set so
/// names resolve exactly as the request sees them (see [`run_on`]). A failed
/// step aborts the transaction: what follows it fails, and the pipelined
/// `COMMIT` is a rollback server-side. A singular (`vnd.pgrst.object`) or
/// `max-affected` request waits for the row count before ending the
/// transaction.
///
/// `abandoned` resolves when the client has gone away (its sender is
/// dropped with the request's future). The statement in flight is then
/// cancelled — PostgreSQL's cancel request — and the transaction ends as on
/// any error: rolled back. The connection is then closed, not reused: the
/// cancel is not acknowledged, and could reach the backend after the
/// connection went back to the pool, cancelling another request's
/// statement. A write already committed stays committed. PostgREST lets such
/// statements run to their end (its issues #699, #3517), which lets a
/// client that starts slow requests and hangs up hold the whole pool.
pub async fn run(
    state: Arc<AppState>,
    e: Exec,
    mut abandoned: tokio::sync::oneshot::Receiver<()>,
) -> Result<Outcome, ApiError> {
    let mut retried = false;
    // `abandoned` has resolved (it must not be polled again)
    let mut gone = false;
    let (mut conn, out) = loop {
        // a client that left while waiting for a connection is not served
        let obj = tokio::select! {
            biased;
            c = connection(&state) => c?,
            _ = &mut abandoned => {
                return Err(ApiError::new(499, "TENANCY499", "The client closed the request"));
            }
        };
        let mut conn = Conn {
            obj: Some(obj),
            clean: false,
            tls: state.db.tls.clone(),
        };
        let (out, clean) = {
            let work = run_client(&state, &e, conn.client());
            tokio::pin!(work);
            tokio::select! {
                biased;
                r = &mut work => r,
                _ = &mut abandoned => {
                    gone = true;
                    metrics::counter!("tenancy_proxy_cancelled_statements_total").increment(1);
                    let token = conn.client().cancel_token();
                    if let Err(err) = token.cancel_query(state.db.tls.clone()).await {
                        tracing::warn!(error = %err, "cancelling an abandoned request's statement failed");
                    }
                    work.await
                }
            }
        };
        conn.clean = clean;
        // A function the previous requests ran can `DEALLOCATE` the pool's
        // prepared statements or `PREPARE` one under the name the pool
        // picks next: the connection's statement cache no longer matches
        // its backend, and every request on it would fail. It is closed,
        // and the request — rolled back, nothing of it committed — runs
        // once more on another connection.
        match &out {
            Err(err) if clean && stale_statement(err) => {
                tracing::warn!(code = %err.code, message = %err.message,
                    "a prepared statement of the pool was dropped or taken on the connection; closing it");
                metrics::counter!("tenancy_proxy_stale_connections_total").increment(1);
                if let Some(obj) = conn.obj.take() {
                    drop(deadpool_postgres::Object::take(obj));
                }
                // (not for a client that has gone away)
                if !retried && !gone {
                    retried = true;
                    continue;
                }
                return out;
            }
            _ => break (conn, out),
        }
    };
    // A cancel request is not acknowledged: PostgreSQL's postmaster signals
    // the backend some time after `cancel_query` returned, and if the
    // statement had already finished the signal cancels whatever runs next
    // on that backend — the next request on a pooled connection, another
    // tenant's perhaps, or its COMMIT, failing a write that was committed.
    // A connection a cancel was sent on is therefore never reused.
    if gone {
        if let Some(obj) = conn.obj.take() {
            drop(deadpool_postgres::Object::take(obj));
        }
        return out;
    }
    let clean = conn.clean;
    // A connection's buffers grow to the largest message it sent and keep
    // that size: one that carried a large body (a bulk insert) is closed
    // instead of going back to the pool, so its memory is released.
    let sent: usize = e
        .statement
        .params
        .iter()
        .map(|p| p.as_ref().map_or(0, String::len))
        .sum();
    if clean && sent > LARGE_STATEMENT_BYTES {
        if let Some(obj) = conn.obj.take() {
            drop(deadpool_postgres::Object::take(obj));
        }
        return out;
    }
    // Each distinct statement text stays prepared on its connection (in
    // the backend's memory too) until the connection closes; clients choose
    // the texts (select lists, filters, embeds), so the set is bounded here:
    // past the limit the connection starts over with none.
    let cap = state.config.prepared_statements_per_connection;
    let cache = &conn.client().statement_cache;
    if clean && cap > 0 && cache.size() > cap {
        cache.clear();
        metrics::counter!("tenancy_proxy_prepared_statement_resets_total").increment(1);
    }
    out
}

/// Whether a request failed because the connection's prepared statements
/// are not the ones its statement cache names (`26000` "prepared statement
/// \"s12\" does not exist" after a `DEALLOCATE`, `42P05` "… already
/// exists" when a `PREPARE` took the name the pool chose): the pool's
/// statements are named `s` and a number.
fn stale_statement(err: &ApiError) -> bool {
    let tail = match err.code.as_str() {
        "26000" => "\" does not exist",
        "42P05" => "\" already exists",
        _ => return false,
    };
    err.message
        .strip_prefix("prepared statement \"s")
        .and_then(|m| m.strip_suffix(tail))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// [`run`] on a given connection (the pool's, or an asynchronous job's own):
/// the outcome, and whether the transaction was seen to end (the connection
/// is clean).
pub async fn run_client(
    state: &AppState,
    e: &Exec,
    client: &deadpool_postgres::ClientWrapper,
) -> (Result<Outcome, ApiError>, bool) {
    let auth = e.identity.authenticated;
    match run_on(state, e, client).await {
        Ok((out, true)) => (Ok(out), true),
        Ok((out, false)) => {
            // singular / max-affected: commit or roll back now that the count is known
            let over = e.max_affected.is_some_and(|m| out.page > m);
            let off_limits = e.limit_cap.filter(|&l| out.page > l);
            let end = if e.singular && out.page != 1 || over || off_limits.is_some() {
                ROLLBACK
            } else if e.rollback {
                ROLLBACK_CHECKED
            } else {
                COMMIT
            };
            if let Err(err) = client.batch_execute(end).await {
                // still in the (failed) transaction: clean once rolled back
                let clean = client.batch_execute(ROLLBACK).await.is_ok();
                return (Err(db_error(&err, auth)), clean);
            }
            if e.singular && out.page != 1 {
                return (Err(singular_error(out.page)), true);
            }
            if let Some(limit) = off_limits {
                return (Err(limit_exceeded(out.page, limit)), true);
            }
            if over {
                return (Err(max_affected_error(out.page)), true);
            }
            (Ok(out), true)
        }
        Err((err, in_tx)) => {
            // outside a transaction the connection is clean; inside, only once
            // the rollback went through
            let clean = !in_tx || client.batch_execute(ROLLBACK).await.is_ok();
            (Err(err), clean)
        }
    }
}

/// `Ok((outcome, transaction ended))`, or the first error and whether the
/// transaction may still be open.
async fn run_on(
    state: &AppState,
    e: &Exec,
    client: &deadpool_postgres::ClientWrapper,
) -> Result<(Outcome, bool), (ApiError, bool)> {
    let auth = e.identity.authenticated;
    let fail = |in_tx: bool| move |err: tokio_postgres::Error| (db_error(&err, auth), in_tx);
    let live = state.live();
    let search_path = std::iter::once(e.schema.as_str())
        .chain(
            live.config
                .db_extra_search_path
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty()),
        )
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(", ");
    let tenant = e.identity.tenant.as_deref().unwrap_or_default();
    let prepared = live.config.db_prepared_statements;
    let any = unspecified();
    let setup = stmt(client, prepared, SETUP).await.map_err(fail(false))?;
    let app_settings = &live.config.app_settings;
    // the settings of the role the request runs as (`ALTER ROLE … SET`)
    let role = live.roles.get(&e.identity.role);
    let role_settings = role.map_or(&[][..], |r| &r.settings[..]);
    let set_extra =
        match e.settings.is_empty() && app_settings.is_empty() && role_settings.is_empty() {
            true => None,
            false => Some(
                stmt(client, prepared, SET_CONFIG)
                    .await
                    .map_err(fail(false))?,
            ),
        };
    let isolation = e
        .isolation
        .as_deref()
        .or_else(|| role.and_then(|r| r.isolation.as_deref()));
    let begin = begin(e.read_only, isolation);
    let pre = live
        .config
        .db_pre_request
        .as_deref()
        .map(|f| format!("SELECT {}()", qualified_function(f)));
    let settings: [&(dyn ToSql + Sync); 8] = [
        &e.identity.role,
        &&*e.identity.claims_text,
        &e.method,
        &e.path,
        &e.headers_json,
        &search_path,
        &tenant,
        &e.cookies_json,
    ];
    // `app.settings.*` first, then the request's own (`Prefer: timezone`)
    let extra: Vec<[&(dyn ToSql + Sync); 2]> = app_settings
        .iter()
        .chain(e.settings.iter())
        .map(|(k, v)| [k as &(dyn ToSql + Sync), v as &(dyn ToSql + Sync)])
        .collect();
    let role_kv: Vec<[&(dyn ToSql + Sync); 2]> = role_settings
        .iter()
        .map(|(k, v)| [k as &(dyn ToSql + Sync), v as &(dyn ToSql + Sync)])
        .collect();
    let params: Vec<Untyped> = e.statement.params.iter().cloned().map(Untyped).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let plan_params: Vec<Untyped> = e
        .plan
        .iter()
        .flat_map(|p| p.params.iter().cloned().map(Untyped))
        .collect();
    let plan_refs: Vec<&(dyn ToSql + Sync)> = plan_params
        .iter()
        .map(|p| p as &(dyn ToSql + Sync))
        .collect();
    let ends_now =
        !e.singular && e.max_affected.is_none() && e.limit_cap.is_none() && e.explain.is_none();
    let end = if e.rollback { ROLLBACK_CHECKED } else { COMMIT };
    // One pipeline, in this order: BEGIN; the role's settings (before the
    // role, as PostgREST: `GRANT SET ON PARAMETER` is then the login
    // role's); the request's settings; pre-request; the statement (and the
    // EXPLAIN of a planned count); the end of the transaction unless the
    // response depends on the row count. `tokio::join!` polls in order and
    // each future sends its messages on its first poll, so they reach the
    // backend in this order. A statement already prepared on this
    // connection goes out in the same round trip as the settings (one
    // round trip per request); on a cache miss it is prepared there, after
    // `search_path` is set, so names resolve exactly as the request sees
    // them, and the statement and `COMMIT` follow in a second round trip.
    // Any error aborts the transaction, so what follows it fails (25P02)
    // and never runs without the request's role and tenant; a `COMMIT` of
    // an aborted transaction is a rollback.
    let (r_begin, r_role, r_setup, r_extra, r_pre, r_main) = tokio::join!(
        client.batch_execute(begin),
        async {
            match &set_extra {
                Some(set) if !role_kv.is_empty() => futures_util::future::try_join_all(
                    role_kv.iter().map(|kv| query(client, set, kv, &Type::TEXT)),
                )
                .await
                .map(drop),
                _ => Ok(()),
            }
        },
        query(client, &setup, &settings, &Type::TEXT),
        async {
            match &set_extra {
                Some(set) => futures_util::future::try_join_all(
                    extra.iter().map(|kv| query(client, set, kv, &Type::TEXT)),
                )
                .await
                .map(drop),
                None => Ok(()),
            }
        },
        async {
            match &pre {
                Some(p) => client.batch_execute(p).await,
                None => Ok(()),
            }
        },
        async {
            if let Some(prefix) = &e.explain {
                // not cached on the connection: plans are asked for rarely
                let sql = format!("{prefix} {}", e.statement.sql);
                let explained = match prepared {
                    true => Stmt::Prepared(client.prepare(&sql).await?),
                    false => Stmt::Unnamed(&sql),
                };
                let rows = query(client, &explained, &refs, &any).await?;
                return Ok(Main::Explain(rows));
            }
            let main = stmt(client, prepared, &e.statement.sql).await?;
            let plan = match &e.plan {
                Some(p) => Some(stmt(client, prepared, &p.sql).await?),
                None => None,
            };
            let (rows, r_plan, r_end) = tokio::join!(
                query(client, &main, &refs, &any),
                async {
                    match &plan {
                        Some(p) => query(client, p, &plan_refs, &any)
                            .await
                            .map(|r| plan_rows(&r)),
                        None => Ok(None),
                    }
                },
                async {
                    if ends_now {
                        client.batch_execute(end).await
                    } else {
                        Ok(())
                    }
                }
            );
            Ok::<_, tokio_postgres::Error>(Main::Rows(rows, r_plan, r_end))
        }
    );
    // the first error in pipeline order is the request's; the transaction
    // is over only when the pipelined end went through
    let ended = |m: &Result<Main, tokio_postgres::Error>| match m {
        Ok(Main::Rows(_, _, r_end)) => ends_now && r_end.is_ok(),
        _ => false,
    };
    let first_err = r_begin
        .err()
        .or(r_role.err())
        .or(r_setup.err())
        .or(r_extra.err())
        .or(r_pre.err());
    if let Some(err) = first_err {
        return Err((db_error(&err, auth), !ended(&r_main)));
    }
    let in_tx = !ended(&r_main);
    let (rows, r_plan, r_end) = match r_main {
        Err(err) => return Err((db_error(&err, auth), in_tx)),
        Ok(Main::Explain(rows)) => {
            let r_end = client.batch_execute(end).await;
            r_end.map_err(fail(true))?;
            return Ok((explain_outcome(&rows), true));
        }
        Ok(Main::Rows(rows, r_plan, r_end)) => (rows, r_plan, r_end),
    };
    let rows = match rows.and_then(|rows| r_plan.map(|p| (rows, p))) {
        Ok(rows) => rows,
        // a failed statement makes the pipelined COMMIT a rollback
        Err(err) => return Err((db_error(&err, auth), in_tx)),
    };
    let (rows, planned) = rows;
    // a failed COMMIT has ended the transaction, a failed deferred-constraint
    // check before a ROLLBACK has not: roll back to be sure (harmless after)
    r_end.map_err(fail(in_tx))?;
    let row = rows.first().ok_or_else(|| {
        (
            ApiError::new(500, "PGRST000", "the statement returned no row"),
            in_tx,
        )
    })?;
    let out = Outcome {
        total: row.get(0),
        page: row.get(1),
        body: row.get(2),
        response_headers: row.get(3),
        response_status: row.get(4),
        planned,
    };
    Ok((out, ends_now))
}

/// What the request's statement gave: an execution plan, or the rows (and
/// the planned count's estimate, and the pipelined end of the transaction).
enum Main {
    Explain(Vec<tokio_postgres::Row>),
    Rows(
        Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>,
        Result<Option<i64>, tokio_postgres::Error>,
        Result<(), tokio_postgres::Error>,
    ),
}

/// The response of an `EXPLAIN` (`Accept: application/vnd.pgrst.plan`):
/// its JSON document, or its text lines.
fn explain_outcome(rows: &[tokio_postgres::Row]) -> Outcome {
    let body = match rows.first().map(|r| r.columns()[0].type_().clone()) {
        Some(t) if t == tokio_postgres::types::Type::JSON => rows
            .first()
            .and_then(|r| r.try_get::<_, serde_json::Value>(0).ok())
            .map(|v| v.to_string()),
        _ => Some(
            rows.iter()
                .filter_map(|r| r.try_get::<_, String>(0).ok())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    };
    Outcome {
        body,
        ..Outcome::default()
    }
}

/// A statement to run: prepared once per connection and kept
/// (`db-prepared-statements`, the default), or sent unnamed each time —
/// parsed on every use, but nothing outlives the transaction, as PgBouncer's
/// transaction pooling needs.
enum Stmt<'a> {
    Prepared(tokio_postgres::Statement),
    Unnamed(&'a str),
}

async fn stmt<'a>(
    client: &deadpool_postgres::ClientWrapper,
    prepared: bool,
    sql: &'a str,
) -> Result<Stmt<'a>, tokio_postgres::Error> {
    Ok(match prepared {
        true => Stmt::Prepared(client.prepare_cached(sql).await?),
        false => Stmt::Unnamed(sql),
    })
}

/// The parameter type "unspecified" (oid 0): PostgreSQL infers it from
/// the statement, as when the statement is prepared without types.
fn unspecified() -> Type {
    Type::new(
        "unspecified".into(),
        0,
        tokio_postgres::types::Kind::Pseudo,
        "pg_catalog".into(),
    )
}

/// Run `s`; an unnamed statement sends its parameters as `ty`.
async fn query(
    client: &deadpool_postgres::ClientWrapper,
    s: &Stmt<'_>,
    params: &[&(dyn ToSql + Sync)],
    ty: &Type,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    match s {
        Stmt::Prepared(p) => client.query(p, params).await,
        Stmt::Unnamed(sql) => {
            let typed: Vec<(&(dyn ToSql + Sync), Type)> =
                params.iter().map(|p| (*p, ty.clone())).collect();
            client.query_typed(sql, &typed).await
        }
    }
}

/// `BEGIN` with the access mode and, when the role or the function sets
/// `default_transaction_isolation`, that isolation level (PostgREST's values:
/// anything but `serializable` and `repeatable read` is `read committed`).
fn begin(read_only: bool, isolation: Option<&str>) -> &'static str {
    match (isolation.map(str::trim), read_only) {
        (None, true) => "BEGIN READ ONLY",
        (None, false) => "BEGIN",
        (Some("serializable"), true) => "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY",
        (Some("serializable"), false) => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        (Some("repeatable read"), true) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        (Some("repeatable read"), false) => "BEGIN ISOLATION LEVEL REPEATABLE READ",
        (Some(_), true) => "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY",
        (Some(_), false) => "BEGIN ISOLATION LEVEL READ COMMITTED",
    }
}

/// One `set_config` of [`Exec::settings`].
const SET_CONFIG: &str = "SELECT pg_catalog.set_config($1, $2, true)";

/// The top node's `Plan Rows` of an `EXPLAIN (FORMAT JSON)`.
fn plan_rows(rows: &[tokio_postgres::Row]) -> Option<i64> {
    let plan: serde_json::Value = rows.first()?.try_get(0).ok()?;
    let n = plan.get(0)?.get("Plan")?.get("Plan Rows")?.as_f64()?;
    Some(n.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_statement_only_for_the_pools_names() {
        let cases = [
            ("26000", r#"prepared statement "s12" does not exist"#, true),
            ("42P05", r#"prepared statement "s0" already exists"#, true),
            // a function's own statements, other codes, other shapes
            (
                "26000",
                r#"prepared statement "mine" does not exist"#,
                false,
            ),
            ("26000", r#"prepared statement "s" does not exist"#, false),
            ("26000", r#"prepared statement "s1x" does not exist"#, false),
            ("42P05", r#"prepared statement "s1" does not exist"#, false),
            ("P0001", r#"prepared statement "s1" does not exist"#, false),
        ];
        for (code, message, stale) in cases {
            let e = ApiError::new(500, code, message);
            assert_eq!(stale_statement(&e), stale, "{code} {message}");
        }
    }
}
