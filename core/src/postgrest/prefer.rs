//! The `Prefer` header (RFC 7240) as PostgREST v12 reads it, what goes back
//! in `Preference-Applied`, the `Location` of a `return=headers-only` insert
//! and the totals of `count=planned` / `count=estimated`.
//!
//! Parsing follows PostgREST's `ApiRequest.Preferences`: every `Prefer`
//! header is split at commas, each item trimmed; the first item of each kind
//! wins; an item that is not one PostgREST knows (or a `timezone=` the
//! database does not know) is *invalid*: ignored with `handling=lenient` (the
//! default), an error (PGRST122) with `handling=strict`.

use super::error::ApiError;
use super::sql::Resolution;

/// `Prefer: return=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    HeadersOnly,
    Representation,
}

/// `Prefer: count=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Exact,
    Planned,
    Estimated,
}

impl Count {
    pub fn as_str(self) -> &'static str {
        match self {
            Count::Exact => "exact",
            Count::Planned => "planned",
            Count::Estimated => "estimated",
        }
    }

    /// Whether the statement counts rows exactly (planned only asks the planner).
    pub fn counts_rows(self) -> bool {
        self != Count::Planned
    }
}

/// `Prefer: missing=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Default,
    Null,
}

/// `Prefer: handling=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Strict,
    Lenient,
}

/// Everything a request's `Prefer` headers ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preferences {
    pub resolution: Option<Resolution>,
    pub ret: Option<Return>,
    pub count: Option<Count>,
    /// `commit` or `rollback` (honoured only with `db-tx-end = *-allow-override`).
    pub tx: Option<String>,
    pub missing: Option<Missing>,
    pub handling: Option<Handling>,
    /// A time zone the database knows (`pg_timezone_names`).
    pub timezone: Option<String>,
    pub max_affected: Option<i64>,
    /// `params=single-object`: the whole body (or the query-string
    /// arguments as one JSON object) is the only argument of a function with
    /// a single json/jsonb parameter.
    pub single_object: bool,
    /// The items that are not preferences PostgREST knows, in request order.
    pub invalid: Vec<String>,
}

/// Every value PostgREST accepts as a whole item (besides `timezone=` and
/// `max-affected=`).
const ACCEPTED: &[&str] = &[
    "resolution=merge-duplicates",
    "resolution=ignore-duplicates",
    "return=representation",
    "return=minimal",
    "return=headers-only",
    "params=single-object",
    "count=exact",
    "count=planned",
    "count=estimated",
    "tx=commit",
    "tx=rollback",
    "missing=default",
    "missing=null",
    "handling=strict",
    "handling=lenient",
];

impl Preferences {
    /// Parse the values of every `Prefer` header. `timezone_ok` says whether
    /// the database knows a time zone name.
    pub fn parse<'a>(
        headers: impl IntoIterator<Item = &'a str>,
        timezone_ok: impl Fn(&str) -> bool,
    ) -> Preferences {
        // RFC 7240's #rule: empty list elements are ignored.
        let items: Vec<&str> = headers
            .into_iter()
            .flat_map(|h| h.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let first = |cands: &[&str]| items.iter().copied().find(|i| cands.contains(i));
        let mut p = Preferences {
            resolution: first(&[
                "resolution=merge-duplicates",
                "resolution=ignore-duplicates",
            ])
            .map(|r| {
                if r.ends_with("merge-duplicates") {
                    Resolution::MergeDuplicates
                } else {
                    Resolution::IgnoreDuplicates
                }
            }),
            ret: first(&[
                "return=representation",
                "return=minimal",
                "return=headers-only",
            ])
            .map(|r| match r {
                "return=representation" => Return::Representation,
                "return=minimal" => Return::Minimal,
                _ => Return::HeadersOnly,
            }),
            count: first(&["count=exact", "count=planned", "count=estimated"]).map(|c| match c {
                "count=exact" => Count::Exact,
                "count=planned" => Count::Planned,
                _ => Count::Estimated,
            }),
            tx: first(&["tx=commit", "tx=rollback"]).map(|t| t["tx=".len()..].to_string()),
            missing: first(&["missing=default", "missing=null"]).map(|m| {
                if m == "missing=default" {
                    Missing::Default
                } else {
                    Missing::Null
                }
            }),
            handling: first(&["handling=strict", "handling=lenient"]).map(|h| {
                if h == "handling=strict" {
                    Handling::Strict
                } else {
                    Handling::Lenient
                }
            }),
            single_object: items.contains(&"params=single-object"),
            ..Preferences::default()
        };
        let tz = items.iter().find_map(|i| i.strip_prefix("timezone="));
        let tz_ok = tz.is_some_and(&timezone_ok);
        if tz_ok {
            p.timezone = tz.map(str::to_string);
        }
        p.max_affected = items
            .iter()
            .find_map(|i| i.strip_prefix("max-affected="))
            .and_then(parse_int);
        p.invalid = items
            .iter()
            .filter(|i| {
                !ACCEPTED.contains(i)
                    && (!i.starts_with("timezone=") || !tz_ok)
                    && !i.starts_with("max-affected=")
            })
            .map(|i| i.to_string())
            .collect();
        p
    }

    pub fn strict(&self) -> bool {
        self.handling == Some(Handling::Strict)
    }

    /// PGRST122 when `handling=strict` meets an invalid preference.
    pub fn check_strict(&self) -> Result<(), ApiError> {
        if self.strict() && !self.invalid.is_empty() {
            return Err(ApiError::new(
                400,
                "PGRST122",
                "Invalid preferences given with handling=strict",
            )
            .details(format!("Invalid preferences: {}", self.invalid.join(", "))));
        }
        Ok(())
    }

    /// `max-affected=n`, which only counts with `handling=strict`.
    pub fn max_affected_strict(&self) -> Option<i64> {
        if self.strict() {
            self.max_affected
        } else {
            None
        }
    }

    /// The `Preference-Applied` items every response carries: handling,
    /// timezone (`tx=` is added by the caller when the config allows it).
    pub fn applied_common(&self) -> Vec<String> {
        let mut v = Vec::new();
        match self.handling {
            Some(Handling::Strict) => v.push("handling=strict".to_string()),
            Some(Handling::Lenient) => v.push("handling=lenient".to_string()),
            None => {}
        }
        if let Some(tz) = &self.timezone {
            v.push(format!("timezone={tz}"));
        }
        v
    }
}

/// Haskell's `readMaybe` for an Int64: optional `-`, digits.
fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// PostgREST's order of the items in `Preference-Applied`.
fn applied_rank(item: &str) -> usize {
    const ORDER: &[&str] = &[
        "resolution=",
        "missing=",
        "return=",
        "params=",
        "count=",
        "tx=",
        "handling=",
        "timezone=",
        "max-affected=",
    ];
    ORDER
        .iter()
        .position(|p| item.starts_with(p))
        .unwrap_or(ORDER.len())
}

/// The `Preference-Applied` value: the items in PostgREST's order, each once.
pub fn applied_header(items: &[String]) -> Option<String> {
    let mut v: Vec<&String> = Vec::new();
    for i in items {
        if !v.contains(&i) {
            v.push(i);
        }
    }
    v.sort_by_key(|i| applied_rank(i));
    if v.is_empty() {
        None
    } else {
        Some(v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
    }
}

/// PGRST124: a PATCH/DELETE/RPC wrote more rows than `max-affected`.
pub fn max_affected_error(affected: i64) -> ApiError {
    ApiError::new(
        400,
        "PGRST124",
        "Query result exceeds max-affected preference constraint",
    )
    .details(format!("The query affects {affected} rows"))
}

/// PGRST128: `max-affected` with `handling=strict` on a function that does not return rows.
pub fn max_affected_function_error() -> ApiError {
    ApiError::new(
        400,
        "PGRST128",
        "Function must return SETOF or TABLE when max-affected preference is used with handling=strict",
    )
}

/// Percent-encoding of a query-string component as PostgREST's
/// (http-types') `renderSimpleQuery`: letters, digits and `-_.~` stay.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `Location` of a row inserted with `return=headers-only`:
/// `/table?k1=eq.v1&k2=is.null`, one pair per primary-key column (`value` is
/// the column's JSON text form, `None` for NULL).
pub fn location(table: &str, keys: &[(String, Option<String>)]) -> String {
    let q: Vec<String> = keys
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Some(v) => format!("eq.{v}"),
                None => "is.null".to_string(),
            };
            format!("{}={}", url_encode(k), url_encode(&v))
        })
        .collect();
    format!("/{table}?{}", q.join("&"))
}

/// The total of `count=estimated`: the exact count (of at most
/// `db-max-rows + 1` rows) when it is within `db-max-rows`, else the larger
/// of it and the planner's estimate. Like PostgREST, an unset `db-max-rows`
/// always takes the larger of the two.
pub fn estimated_total(
    exact: Option<i64>,
    planned: Option<i64>,
    max_rows: Option<u64>,
) -> Option<i64> {
    let over = match (exact, max_rows) {
        (Some(e), Some(m)) => e > m as i64,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if over {
        match (exact, planned) {
            (Some(e), Some(p)) => Some(e.max(p)),
            (e, _) => e,
        }
    } else {
        exact
    }
}

/// When `count=estimated` needs the planner: the exact count is above this
/// (`None`: always, as without `db-max-rows`).
pub fn estimated_plan_threshold(max_rows: Option<u64>) -> Option<i64> {
    max_rows.map(|m| m.min(i64::MAX as u64) as i64)
}

/// The HTTP status of a read of `page` rows from offset `from` when the
/// total is known (PostgREST's `rangeStatus`): 416 past the end, 206 for
/// part of the rows, 200 for all of them.
pub fn range_status(from: u64, page: i64, total: Option<i64>) -> u16 {
    let Some(total) = total else {
        return 200;
    };
    if from as i128 > total as i128 {
        416
    } else if page < total {
        206
    } else {
        200
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(h: &[&str]) -> Preferences {
        Preferences::parse(h.iter().copied(), |tz| tz == "America/Los_Angeles")
    }

    #[test]
    fn parses_like_postgrest() {
        let p = parse(&["resolution=ignore-duplicates, count=exact, timezone=America/Los_Angeles, max-affected=100"]);
        assert_eq!(p.resolution, Some(Resolution::IgnoreDuplicates));
        assert_eq!(p.count, Some(Count::Exact));
        assert_eq!(p.timezone.as_deref(), Some("America/Los_Angeles"));
        assert_eq!(p.max_affected, Some(100));
        assert!(p.invalid.is_empty());
        // several headers; the first of a kind wins
        let p = parse(&[
            "resolution=ignore-duplicates",
            "count=exact",
            "missing=null",
            "handling=lenient",
            "invalid",
            "max-affected=5999",
            "tx=commit, tx=rollback",
            "resolution=merge-duplicates",
        ]);
        assert_eq!(p.resolution, Some(Resolution::IgnoreDuplicates));
        assert_eq!(p.missing, Some(Missing::Null));
        assert_eq!(p.handling, Some(Handling::Lenient));
        assert_eq!(p.tx.as_deref(), Some("commit"));
        assert_eq!(p.invalid, vec!["invalid"]);
        // spaces, lower case, unknown items
        let p = parse(&["count=exact,    tx=commit   ,return=representation , missing=default, handling=strict, anything"]);
        assert_eq!(p.ret, Some(Return::Representation));
        assert_eq!(p.missing, Some(Missing::Default));
        assert!(p.strict());
        assert_eq!(p.invalid, vec!["anything"]);
        let e = p.check_strict().unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "PGRST122"));
        assert_eq!(e.message, "Invalid preferences given with handling=strict");
        assert_eq!(e.details.as_deref(), Some("Invalid preferences: anything"));
        // lenient: the same items are fine
        assert!(parse(&["handling=lenient, foo, bar"])
            .check_strict()
            .is_ok());
        assert!(parse(&["foo"]).check_strict().is_ok());
        // an unknown time zone is invalid; an unparsable max-affected is not
        let p = parse(&["handling=strict, timezone=Jupiter/Red_Spot, max-affected=x"]);
        assert_eq!(p.timezone, None);
        assert_eq!(p.max_affected, None);
        assert_eq!(p.invalid, vec!["timezone=Jupiter/Red_Spot"]);
        // values that are not exact items are invalid
        let p = parse(&["return=everything, count = exact, , params=single-object"]);
        assert_eq!(p.ret, None);
        assert_eq!(p.count, None);
        assert_eq!(p.invalid, vec!["return=everything", "count = exact"]);
        assert_eq!(parse(&["max-affected=-3"]).max_affected, Some(-3));
        assert_eq!(parse(&["max-affected=+3"]).max_affected, None);
        assert_eq!(
            parse(&["handling=lenient, max-affected=3"]).max_affected_strict(),
            None
        );
        assert_eq!(
            parse(&["handling=strict, max-affected=3"]).max_affected_strict(),
            Some(3)
        );
    }

    #[test]
    fn applied_in_postgrest_order() {
        let items: Vec<String> = [
            "tx=rollback",
            "count=exact",
            "return=representation",
            "max-affected=3",
            "timezone=UTC",
            "handling=strict",
            "missing=default",
            "resolution=merge-duplicates",
            "count=exact",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            applied_header(&items).unwrap(),
            "resolution=merge-duplicates, missing=default, return=representation, count=exact, tx=rollback, handling=strict, timezone=UTC, max-affected=3"
        );
        assert_eq!(applied_header(&[]), None);
        let p = parse(&["handling=strict, timezone=America/Los_Angeles"]);
        assert_eq!(
            p.applied_common(),
            vec!["handling=strict", "timezone=America/Los_Angeles"]
        );
    }

    #[test]
    fn locations() {
        assert_eq!(
            location("data_points", &[("id".into(), Some("42".into()))]),
            "/data_points?id=eq.42"
        );
        assert_eq!(
            location(
                "t",
                &[
                    ("k".into(), Some("a b/ü&=".into())),
                    ("n".into(), None),
                    ("x y".into(), Some("~-_.".into()))
                ]
            ),
            "/t?k=eq.a%20b%2F%C3%BC%26%3D&n=is.null&x%20y=eq.~-_."
        );
    }

    #[test]
    fn estimated_counts() {
        // within db-max-rows: exact
        assert_eq!(estimated_total(Some(10), Some(900), Some(100)), Some(10));
        assert_eq!(estimated_total(Some(100), Some(900), Some(100)), Some(100));
        // above: the larger of the capped exact count and the plan
        assert_eq!(estimated_total(Some(101), Some(900), Some(100)), Some(900));
        assert_eq!(estimated_total(Some(101), Some(50), Some(100)), Some(101));
        assert_eq!(estimated_total(Some(101), None, Some(100)), Some(101));
        // no db-max-rows: always the larger
        assert_eq!(estimated_total(Some(10), Some(900), None), Some(900));
        assert_eq!(estimated_total(Some(10), Some(3), None), Some(10));
        assert_eq!(estimated_total(None, Some(3), None), None);
        assert_eq!(estimated_plan_threshold(Some(5)), Some(5));
        assert_eq!(estimated_plan_threshold(None), None);
        assert_eq!(Count::Planned.as_str(), "planned");
        assert!(!Count::Planned.counts_rows());
        assert!(Count::Estimated.counts_rows());
    }

    #[test]
    fn range_statuses() {
        assert_eq!(range_status(0, 5, None), 200);
        assert_eq!(range_status(0, 5, Some(5)), 200);
        assert_eq!(range_status(0, 5, Some(900)), 206);
        assert_eq!(range_status(3, 2, Some(15)), 206);
        assert_eq!(range_status(0, 0, Some(0)), 200);
        assert_eq!(range_status(0, 0, Some(1)), 206);
        assert_eq!(range_status(5, 0, Some(5)), 206);
        assert_eq!(range_status(6, 0, Some(5)), 416);
        assert_eq!(range_status(1, 0, Some(0)), 416);
        // a plan below the rows actually returned
        assert_eq!(range_status(0, 7, Some(3)), 200);
    }
}
