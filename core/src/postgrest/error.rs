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
    /// Headers the response carries besides the error body (a function's
    /// `RAISE SQLSTATE 'PGRST'` may set some; boxed, as errors are rare and
    /// travel in every `Result`).
    pub headers: Option<Box<Vec<(String, String)>>>,
}

/// The key, in [`ApiError::headers`], of a custom reason phrase (`RAISE
/// SQLSTATE 'PGRST'`'s `status_text`): not a valid header name, so never
/// confused with one.
pub const STATUS_TEXT: &str = ":status-text";

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            details: None,
            hint: None,
            details_json: false,
            headers: None,
        }
    }

    /// A function's own error, PostgREST's `RAISE SQLSTATE 'PGRST' USING
    /// message = '{"code": …, "message": …, "details": …, "hint": …}',
    /// detail = '{"status": 402, "headers": {"X-A": "b"}}'`: the body and
    /// the status and headers it asks for, or 500 PGRST121 when either is
    /// not such JSON.
    pub fn from_pgrst_raise(message: &str, detail: Option<&str>) -> Self {
        use serde_json::Value;
        // PGRST121 as PostgREST 12.2 words it: which part failed (MESSAGE,
        // then a missing DETAIL, then DETAIL), quoted, and the shape it needs
        let unparsable = |details: String, hint: &str| {
            ApiError::new(
                500,
                "PGRST121",
                "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error",
            )
            .details(details)
            .hint(hint)
        };
        const MESSAGE_HINT: &str = "MESSAGE must be a JSON object with obligatory keys: 'code', \
             'message' and optional keys: 'details', 'hint'.";
        const DETAIL_HINT: &str = "DETAIL must be a JSON object with obligatory keys: 'status', \
             'headers' and optional key: 'status_text'.";
        let text = |v: Option<&Value>| match v {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(_) => None,
        };
        let body = serde_json::from_str::<Value>(message).ok().and_then(|m| {
            let code = text(m.get("code"))??;
            let msg = text(m.get("message"))??;
            Some((code, msg, text(m.get("details"))?, text(m.get("hint"))?))
        });
        let Some((code, msg, details, hint)) = body else {
            return unparsable(
                format!("Invalid JSON value for MESSAGE: '{message}'"),
                MESSAGE_HINT,
            );
        };
        let Some(detail) = detail else {
            return unparsable(
                "DETAIL is missing in the RAISE statement".to_string(),
                DETAIL_HINT,
            );
        };
        let shape = serde_json::from_str::<Value>(detail).ok().and_then(|d| {
            let status = d
                .get("status")?
                .as_u64()
                .filter(|s| (100..=999).contains(s))?;
            // `headers` is obligatory (an object, `{}` for none), as PostgREST's parser has it
            let mut headers = match d.get("headers") {
                Some(Value::Object(h)) => h
                    .iter()
                    .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect::<Option<Vec<_>>>()?,
                _ => return None,
            };
            match d.get("status_text") {
                None | Some(Value::Null) => {}
                Some(Value::String(t)) => headers.push((STATUS_TEXT.to_string(), t.clone())),
                Some(_) => return None,
            }
            Some((status as u16, headers))
        });
        let Some((status, headers)) = shape else {
            return unparsable(
                format!("Invalid JSON value for DETAIL: '{detail}'"),
                DETAIL_HINT,
            );
        };
        let mut e = ApiError::new(status, &code, msg);
        e.details = details;
        e.hint = hint;
        e.headers = (!headers.is_empty()).then(|| Box::new(headers));
        e
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

    /// A header the error response carries besides the body; a
    /// `Content-Type` replaces the JSON default.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .get_or_insert_with(Default::default)
            .push((name.into(), value.into()));
        self
    }

    /// PGRST100: a query parameter does not parse. `what` is PostgREST's
    /// name for it (`select parameter`, `filter`, `order`, `logic tree`);
    /// `column` is 1-based.
    pub fn parse(what: &str, text: &str, column: usize, details: impl Into<String>) -> Self {
        ApiError::new(
            400,
            "PGRST100",
            format!("\"failed to parse {what} ({text})\" (line 1, column {column})"),
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
    pub fn no_relationship(
        from: &str,
        to: &str,
        embed_hint: Option<&str>,
        schema: &str,
        hint: Option<String>,
    ) -> Self {
        let using = embed_hint
            .map(|h| format!(" using the hint '{h}'"))
            .unwrap_or_default();
        let e = ApiError::new(
            400,
            "PGRST200",
            format!("Could not find a relationship between '{from}' and '{to}' in the schema cache"),
        )
        .details(format!(
            "Searched for a foreign key relationship between '{from}' and '{to}'{using} in the schema '{schema}', but no matches were found."
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
        // pg-safeupdate's "UPDATE requires a WHERE clause" is the client's
        // doing (PostgREST 12.0.3+); other cardinality violations are not
        "21000" if message.ends_with("requires a WHERE clause") => return 400,
        "42P17" | "21000" => return 500,
        "42501" => return if authenticated { 403 } else { 401 },
        "22023" if message.starts_with("role ") && message.ends_with("does not exist") => {
            return 401
        }
        _ => {}
    }
    // PTnnn: that status; PT not followed by one (`PT40A`): 500, as PostgREST
    if let Some(n) = code.strip_prefix("PT") {
        return match n.parse::<u16>() {
            Ok(n) if (100..1000).contains(&n) => n,
            _ => 500,
        };
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
        assert_eq!(
            sqlstate_status("21000", "DELETE requires a WHERE clause", true),
            400
        );
        assert_eq!(
            sqlstate_status(
                "21000",
                "more than one row returned by a subquery used as an expression",
                true
            ),
            500
        );
        assert_eq!(sqlstate_status("P0002", "", true), 500);
        assert_eq!(sqlstate_status("PT402", "", true), 402);
        assert_eq!(sqlstate_status("PT40A", "", true), 500);
        assert_eq!(sqlstate_status("PT402", "", true), 402);
        assert_eq!(sqlstate_status("PT999", "", true), 999);
        assert_eq!(sqlstate_status("PT099", "", true), 500);
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

    #[test]
    fn raise_sqlstate_pgrst() {
        let e = ApiError::from_pgrst_raise(
            r#"{"code":"123","message":"ABC","details":"DEF","hint":"XYZ"}"#,
            Some(r#"{"status":332,"status_text":"My Custom Status","headers":{"X-Header":"str"}}"#),
        );
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str()),
            (332, "123", "ABC")
        );
        assert_eq!(
            (e.details.as_deref(), e.hint.as_deref()),
            (Some("DEF"), Some("XYZ"))
        );
        // the reason phrase travels with the headers, under a key no header has
        assert_eq!(
            e.headers.as_deref(),
            Some(&vec![
                ("X-Header".to_string(), "str".to_string()),
                (STATUS_TEXT.to_string(), "My Custom Status".to_string())
            ])
        );
        let e = ApiError::from_pgrst_raise(
            r#"{"code":"1","message":"m"}"#,
            Some(r#"{"status":404,"headers":{}}"#),
        );
        assert_eq!((e.status, e.details, e.hint), (404, None, None));
        // PostgREST 12.2's PGRST121: the part that failed, quoted, and the
        // shape it needs; MESSAGE is read first, then DETAIL
        let message_hint = "MESSAGE must be a JSON object with obligatory keys: 'code', \
                            'message' and optional keys: 'details', 'hint'.";
        let detail_hint = "DETAIL must be a JSON object with obligatory keys: 'status', \
                           'headers' and optional key: 'status_text'.";
        let ok = r#"{"code":"1","message":"m"}"#;
        for (m, d, details, hint) in [
            (
                "INVALID",
                None,
                "Invalid JSON value for MESSAGE: 'INVALID'",
                message_hint,
            ),
            (
                r#"{"message":"no code"}"#,
                Some(r#"{"status":400,"headers":{}}"#),
                r#"Invalid JSON value for MESSAGE: '{"message":"no code"}'"#,
                message_hint,
            ),
            (
                ok,
                None,
                "DETAIL is missing in the RAISE statement",
                detail_hint,
            ),
            (
                ok,
                Some("INVALID"),
                "Invalid JSON value for DETAIL: 'INVALID'",
                detail_hint,
            ),
            (
                ok,
                Some(r#"{"status":"x","headers":{}}"#),
                r#"Invalid JSON value for DETAIL: '{"status":"x","headers":{}}'"#,
                detail_hint,
            ),
            (
                ok,
                Some(r#"{"status":400}"#),
                r#"Invalid JSON value for DETAIL: '{"status":400}'"#,
                detail_hint,
            ),
            (
                ok,
                Some(r#"{"status":400,"headers":{},"status_text":1}"#),
                r#"Invalid JSON value for DETAIL: '{"status":400,"headers":{},"status_text":1}'"#,
                detail_hint,
            ),
        ] {
            let e = ApiError::from_pgrst_raise(m, d);
            assert_eq!((e.status, e.code.as_str()), (500, "PGRST121"), "{m}");
            assert_eq!(
                e.message,
                "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error"
            );
            assert_eq!(
                (e.details.as_deref(), e.hint.as_deref()),
                (Some(details), Some(hint)),
                "{m} {d:?}"
            );
        }
    }
}
