//! PostgREST's error body: `{code, message, details, hint}` plus an HTTP status.

use std::fmt;

/// An error in PostgREST's shape. `status` is the HTTP status it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Option<String>,
    pub hint: Option<String>,
    /// `details` is a JSON document (PGRST201's list of relationships), sent
    /// as JSON rather than as a string.
    pub details_json: bool,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            details: None,
            hint: None,
            details_json: false,
        }
    }

    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// `details` as a JSON document (see [`ApiError::details_json`]).
    pub fn details_as_json(mut self, json: impl Into<String>) -> Self {
        self.details = Some(json.into());
        self.details_json = true;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// PGRST100: a query parameter does not parse. `column` is 1-based.
    pub fn parse(param: &str, text: &str, column: usize, details: impl Into<String>) -> Self {
        ApiError::new(
            400,
            "PGRST100",
            format!("\"failed to parse {param} parameter ({text})\" (line 1, column {column})"),
        )
        .details(details)
    }

    /// PGRST100 for a whole value that is wrong (no position).
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(400, "PGRST100", message)
    }

    /// PGRST102: the request body is not what it must be.
    pub fn body(message: impl Into<String>) -> Self {
        ApiError::new(400, "PGRST102", message)
    }

    /// PGRST103: the requested range cannot be satisfied.
    pub fn range(message: impl Into<String>, details: impl Into<String>) -> Self {
        ApiError::new(416, "PGRST103", message).details(details)
    }

    /// PGRST200: no relationship between two resources.
    /// PGRST200, with PostgREST's "Perhaps you meant …" hint when one is close.
    pub fn no_relationship(from: &str, to: &str, schema: &str, hint: Option<String>) -> Self {
        let e = ApiError::new(
            400,
            "PGRST200",
            format!("Could not find a relationship between '{from}' and '{to}' in the schema cache"),
        )
        .details(format!(
            "Searched for a foreign key relationship between '{from}' and '{to}' in the schema '{schema}', but no matches were found."
        ));
        match hint {
            Some(h) => e.hint(h),
            None => e,
        }
    }

    /// PGRST204: a column named in the request does not exist.
    pub fn no_column(column: &str, table: &str) -> Self {
        ApiError::new(
            400,
            "PGRST204",
            format!("Could not find the '{column}' column of '{table}' in the schema cache"),
        )
    }

    /// PGRST205: no such table or view.
    /// PGRST205, with PostgREST's "Perhaps you meant the table …" hint when
    /// one is close (see `Schema::table_hint`).
    pub fn no_table(schema: &str, table: &str, hint: Option<String>) -> Self {
        let e = ApiError::new(
            404,
            "PGRST205",
            format!("Could not find the table '{schema}.{table}' in the schema cache"),
        );
        match hint {
            Some(h) => e.hint(h),
            None => e,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The HTTP status PostgREST gives a PostgreSQL SQLSTATE. `authenticated`
/// decides 42501 (403 with a token, 401 without). A `PTnnn` SQLSTATE raised by
/// user code asks for status nnn.
pub fn sqlstate_status(code: &str, message: &str, authenticated: bool) -> u16 {
    let class = code.get(..2).unwrap_or("");
    match code {
        "23503" | "23505" => return 409,
        "25006" => return 405,
        "53400" => return 500,
        "P0001" => return 400,
        "42883" | "42P01" => return 404,
        "42P17" | "21000" => return 500,
        "42501" => return if authenticated { 403 } else { 401 },
        "22023" if message.starts_with("role ") && message.ends_with("does not exist") => {
            return 401
        }
        _ => {}
    }
    if let Some(n) = code.strip_prefix("PT") {
        if let Ok(n) = n.parse::<u16>() {
            if (100..600).contains(&n) {
                return n;
            }
        }
    }
    match class {
        "08" | "53" => 503,
        "0L" | "0P" | "28" => 403,
        "09" | "25" | "2D" | "38" | "39" | "3B" | "40" | "54" | "55" | "57" | "58" | "F0"
        | "HV" | "P0" | "XX" => 500,
        _ => 400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_sqlstates_like_postgrest() {
        assert_eq!(sqlstate_status("23505", "", true), 409);
        assert_eq!(sqlstate_status("23503", "", true), 409);
        assert_eq!(sqlstate_status("23502", "", true), 400);
        assert_eq!(sqlstate_status("42501", "", true), 403);
        assert_eq!(sqlstate_status("42501", "", false), 401);
        assert_eq!(sqlstate_status("42P01", "", true), 404);
        assert_eq!(sqlstate_status("42883", "", true), 404);
        assert_eq!(sqlstate_status("P0001", "", true), 400);
        assert_eq!(sqlstate_status("P0002", "", true), 500);
        assert_eq!(sqlstate_status("PT402", "", true), 402);
        assert_eq!(sqlstate_status("PT999", "", true), 400);
        assert_eq!(sqlstate_status("25006", "", true), 405);
        assert_eq!(sqlstate_status("08006", "", true), 503);
        assert_eq!(sqlstate_status("53300", "", true), 503);
        assert_eq!(sqlstate_status("28000", "", true), 403);
        assert_eq!(
            sqlstate_status("22023", "role \"x\" does not exist", true),
            401
        );
        assert_eq!(sqlstate_status("22023", "bad value", true), 400);
        assert_eq!(sqlstate_status("22P02", "", true), 400);
    }
}
