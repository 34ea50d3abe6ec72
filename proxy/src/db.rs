//! Running one request's statement in one transaction.

use crate::auth::Identity;
use crate::AppState;
use bytes::BytesMut;
use std::sync::Arc;
use tenancy_core::ident::quote_ident;
use tenancy_core::postgrest::error::sqlstate_status;
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
    pub schema: String,
    pub read_only: bool,
    pub rollback: bool,
    pub statement: Statement,
    /// Fail with PGRST116 (and roll back) unless exactly one row.
    pub singular: bool,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub total: Option<i64>,
    pub page: i64,
    pub body: Option<String>,
    pub response_headers: Option<String>,
    pub response_status: Option<String>,
}

pub fn db_error(e: &tokio_postgres::Error, authenticated: bool) -> ApiError {
    match e.as_db_error() {
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
        None => ApiError::new(
            503,
            "PGRST001",
            "Database client error. Retrying the connection.",
        )
        .details(e.to_string()),
    }
}

pub fn singular_error(n: i64) -> ApiError {
    ApiError::new(
        406,
        "PGRST116",
        "JSON object requested, multiple (or no) rows returned",
    )
    .details(format!("The result contains {n} rows"))
}

fn qualified_function(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

pub async fn run(state: Arc<AppState>, e: Exec) -> Result<Outcome, ApiError> {
    let auth = e.identity.authenticated;
    let mut client = state.pool.get().await.map_err(|err| {
        ApiError::new(
            503,
            "PGRST003",
            "Timed out acquiring connection from connection pool.",
        )
        .details(err.to_string())
    })?;
    let tx = client
        .build_transaction()
        .read_only(e.read_only)
        .start()
        .await
        .map_err(|err| db_error(&err, auth))?;
    let search_path = std::iter::once(e.schema.as_str())
        .chain(
            state
                .config
                .db_extra_search_path
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty()),
        )
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(", ");
    let claims = e.identity.claims.to_string();
    let tenant = e.identity.tenant.clone().unwrap_or_default();
    let setup = tx
        .prepare_cached(
            "SELECT pg_catalog.set_config('role', $1, true), pg_catalog.set_config('request.jwt.claims', $2, true), \
             pg_catalog.set_config('request.method', $3, true), pg_catalog.set_config('request.path', $4, true), \
             pg_catalog.set_config('request.headers', $5, true), pg_catalog.set_config('search_path', $6, true), \
             pg_catalog.set_config('tenancy.tenant_id', $7, true)",
        )
        .await
        .map_err(|err| db_error(&err, auth))?;
    tx.query(
        &setup,
        &[
            &e.identity.role,
            &claims,
            &e.method,
            &e.path,
            &e.headers_json,
            &search_path,
            &tenant,
        ],
    )
    .await
    .map_err(|err| db_error(&err, auth))?;
    if let Some(pre) = &state.config.db_pre_request {
        tx.batch_execute(&format!("SELECT {}()", qualified_function(pre)))
            .await
            .map_err(|err| db_error(&err, auth))?;
    }
    let stmt = tx
        .prepare_cached(&e.statement.sql)
        .await
        .map_err(|err| db_error(&err, auth))?;
    let params: Vec<Untyped> = e.statement.params.iter().cloned().map(Untyped).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let row = tx
        .query_one(&stmt, &refs)
        .await
        .map_err(|err| db_error(&err, auth))?;
    let out = Outcome {
        total: row.get(0),
        page: row.get(1),
        body: row.get(2),
        response_headers: row.get(3),
        response_status: row.get(4),
    };
    if e.singular && out.page != 1 {
        let _ = tx.rollback().await;
        return Err(singular_error(out.page));
    }
    if e.rollback {
        tx.rollback().await.map_err(|err| db_error(&err, auth))?;
    } else {
        tx.commit().await.map_err(|err| db_error(&err, auth))?;
    }
    Ok(out)
}
