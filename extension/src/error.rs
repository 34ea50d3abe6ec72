//! One way to fail: a SQLSTATE, a message naming the object, and a hint.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// Raise an ERROR with SQLSTATE `code`, `message` and an optional hint.
#[track_caller]
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>, hint: Option<&str>) -> ! {
    let mut report = ErrorReport::new(code, message.into(), "pg_tenancy");
    if let Some(h) = hint {
        report = report.set_hint(h.to_string());
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raise an ERROR with SQLSTATE `code`, `message`, a detail and a hint.
#[track_caller]
pub fn raise_detail(
    code: PgSqlErrorCode,
    message: impl Into<String>,
    detail: impl Into<String>,
    hint: &str,
) -> ! {
    ErrorReport::new(code, message.into(), "pg_tenancy")
        .set_detail(detail.into())
        .set_hint(hint.to_string())
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Turn an SPI failure into an internal error with context.
pub trait OrRaise<T> {
    fn or_raise(self, what: &str) -> T;
}

impl<T> OrRaise<T> for Result<T, pgrx::spi::SpiError> {
    #[track_caller]
    fn or_raise(self, what: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!("{what}: {e}"),
                None,
            ),
        }
    }
}

/// Run a read-only query and return the first column of its first row (None
/// for no row or NULL). Unlike `Spi::get_one`, this never marks the
/// transaction as writing, so it assigns no transaction id and works in
/// read-only transactions, on standbys and in parallel workers.
pub fn select_one<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(
    query: &str,
    args: &[pgrx::datum::DatumWithOid],
) -> Result<Option<T>, pgrx::spi::SpiError> {
    pgrx::spi::Spi::connect(|c| {
        let t = c.select(query, Some(1), args)?;
        if t.is_empty() {
            Ok(None)
        } else {
            t.first().get_one::<T>()
        }
    })
}
