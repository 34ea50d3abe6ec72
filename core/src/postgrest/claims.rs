//! JWT claim paths: PostgREST's `jwt-role-claim-key` (`.role`,
//! `.app_metadata.role`, `."https://example.com/claims".role`, `.roles[0]`)
//! and the `aud` check of `jwt-aud`.

use serde_json::Value as Json;

/// One step of a claim path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Parse a claim path. Every step starts with `.` (a key, bare or
/// double-quoted) or is an index `[n]`.
pub fn parse_path(s: &str) -> Result<Vec<Step>, String> {
    let err = |at: usize, what: &str| format!("invalid JWT claim path {s:?} at {at}: {what}");
    let b = s.as_bytes();
    let mut i = 0;
    let mut steps = Vec::new();
    while i < b.len() {
        match b[i] {
            b'.' => {
                i += 1;
                if i < b.len() && b[i] == b'"' {
                    let start = i + 1;
                    let end = s[start..]
                        .find('"')
                        .map(|e| start + e)
                        .ok_or_else(|| err(i, "unterminated quoted key"))?;
                    steps.push(Step::Key(s[start..end].to_string()));
                    i = end + 1;
                } else {
                    let start = i;
                    while i < b.len()
                        && (b[i].is_ascii_alphanumeric()
                            || b[i] == b'_'
                            || b[i] == b'-'
                            || b[i] == b'$')
                    {
                        i += 1;
                    }
                    if start == i {
                        return Err(err(start, "expected a key after '.'"));
                    }
                    steps.push(Step::Key(s[start..i].to_string()));
                }
            }
            b'[' => {
                let start = i + 1;
                let end = s[start..]
                    .find(']')
                    .map(|e| start + e)
                    .ok_or_else(|| err(i, "unterminated index"))?;
                let n = s[start..end]
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| err(start, "expected a non-negative index"))?;
                steps.push(Step::Index(n));
                i = end + 1;
            }
            _ => return Err(err(i, "expected '.' or '['")),
        }
    }
    if steps.is_empty() {
        return Err(err(0, "empty path"));
    }
    Ok(steps)
}

/// The value at `path` in `claims`, if any.
pub fn lookup<'a>(claims: &'a Json, path: &[Step]) -> Option<&'a Json> {
    path.iter().try_fold(claims, |v, step| match step {
        Step::Key(k) => v.get(k.as_str()),
        Step::Index(n) => v.get(*n),
    })
}

/// RFC 7519 §4.1.3: `aud` is a string or an array of strings; the token is
/// for us when one of them is `expected`. A token without `aud` is accepted
/// (as PostgREST does).
pub fn audience_ok(claims: &Json, expected: &str) -> bool {
    match claims.get("aud") {
        None | Some(Json::Null) => true,
        Some(Json::String(a)) => a == expected,
        Some(Json::Array(xs)) => xs.iter().any(|x| x.as_str() == Some(expected)),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn paths() {
        assert_eq!(parse_path(".role").unwrap(), vec![Step::Key("role".into())]);
        assert_eq!(
            parse_path(".app_metadata.roles[1]").unwrap(),
            vec![
                Step::Key("app_metadata".into()),
                Step::Key("roles".into()),
                Step::Index(1)
            ]
        );
        assert_eq!(
            parse_path(".\"https://x.io/claims\".role").unwrap(),
            vec![
                Step::Key("https://x.io/claims".into()),
                Step::Key("role".into())
            ]
        );
        for bad in [
            "", "role", ".", ".a[", ".a[x]", ".\"open", ".a..b", ".a[-1]",
        ] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lookups() {
        let c = json!({"role": "r", "app": {"roles": ["a", "b"]}, "https://x.io/c": {"role": "q"}});
        let at = |p: &str| lookup(&c, &parse_path(p).unwrap()).cloned();
        assert_eq!(at(".role"), Some(json!("r")));
        assert_eq!(at(".app.roles[1]"), Some(json!("b")));
        assert_eq!(at(".app.roles[2]"), None);
        assert_eq!(at(".\"https://x.io/c\".role"), Some(json!("q")));
        assert_eq!(at(".missing.role"), None);
    }

    #[test]
    fn audiences() {
        assert!(audience_ok(&json!({}), "api"));
        assert!(audience_ok(&json!({"aud": "api"}), "api"));
        assert!(audience_ok(&json!({"aud": ["web", "api"]}), "api"));
        assert!(!audience_ok(&json!({"aud": "web"}), "api"));
        assert!(!audience_ok(&json!({"aud": ["web"]}), "api"));
        assert!(!audience_ok(&json!({"aud": 1}), "api"));
    }

    proptest! {
        /// Any key survives a quoted round trip, and parsing never panics.
        #[test]
        fn quoted_keys_round_trip(k in "[^\"]{0,20}", junk in ".{0,20}") {
            let p = parse_path(&format!(".\"{k}\"")).unwrap();
            prop_assert_eq!(p, vec![Step::Key(k)]);
            let _ = parse_path(&junk);
        }
    }
}
