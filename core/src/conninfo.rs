//! libpq connection strings: the TLS settings tokio-postgres does not parse.
//!
//! A PostgREST deployment's `PGRST_DB_URI` is a libpq connection string,
//! either a URI (`postgresql://user@host/db?sslmode=verify-full&sslrootcert=…`)
//! or `key=value` pairs (`host=db sslmode=require`). tokio-postgres knows
//! `sslmode=disable|prefer|require` only, and refuses `verify-ca`,
//! `verify-full`, `allow` and `sslrootcert`. [`split_tls`] takes those out,
//! returning the rest of the string unchanged in meaning and the TLS
//! settings, for the caller to apply itself.

/// How the server's certificate is checked (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS if the server offers it, else plain (`allow` and `prefer`;
    /// libpq's `allow` tries plain first, here TLS is tried first).
    Prefer,
    /// TLS or fail; the certificate is not checked (unless a root
    /// certificate is given: then as `VerifyCa`, as libpq does).
    Require,
    /// TLS, the certificate chain must lead to a trusted root.
    VerifyCa,
    /// `VerifyCa`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                "invalid sslmode {other:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
            ))
            }
        })
    }
}

/// The TLS settings of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// `sslmode`, libpq's default `prefer` when absent.
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of trusted roots, or `system` (the
    /// operating system's store, which implies `verify-full` as in libpq 16).
    pub root_cert: Option<String>,
}

impl Tls {
    /// The mode that applies: a root certificate turns `require` into
    /// `verify-ca`, and `sslrootcert=system` means `verify-full`.
    pub fn effective_mode(&self) -> SslMode {
        match (&self.root_cert, self.mode) {
            (Some(r), SslMode::Require | SslMode::VerifyCa | SslMode::Prefer) if r == "system" => {
                SslMode::VerifyFull
            }
            (Some(_), SslMode::Require) => SslMode::VerifyCa,
            (_, m) => m,
        }
    }
}

const TLS_KEYS: [&str; 2] = ["sslmode", "sslrootcert"];

/// The connection string without `sslmode` and `sslrootcert`, and those
/// settings. The last occurrence of a key wins, as in libpq.
pub fn split_tls(conn: &str) -> Result<(String, Tls), String> {
    let mut mode = None;
    let mut root = None;
    let mut take = |k: &str, v: String| -> Result<(), String> {
        match k {
            "sslmode" => mode = Some(SslMode::parse(&v)?),
            _ => root = Some(v),
        }
        Ok(())
    };
    let trimmed = conn.trim_start();
    let rest = if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
        let (base, query) = match conn.split_once('?') {
            Some((b, q)) => (b, q),
            None => (conn, ""),
        };
        let mut kept = Vec::new();
        for piece in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = form_urlencoded::parse(piece.as_bytes())
                .next()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .unwrap_or_default();
            if TLS_KEYS.contains(&k.as_str()) {
                take(&k, v)?;
            } else {
                kept.push(piece);
            }
        }
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        let mut kept = Vec::new();
        for (k, v) in key_values(conn)? {
            if TLS_KEYS.contains(&k.as_str()) {
                take(&k, v)?;
            } else {
                kept.push(format!("{k}={}", quote_value(&v)));
            }
        }
        kept.join(" ")
    };
    Ok((
        rest,
        Tls {
            mode: mode.unwrap_or(SslMode::Prefer),
            root_cert: root.filter(|r| !r.is_empty()),
        },
    ))
}

/// `key=value` pairs of a libpq keyword/value string: values may be
/// single-quoted, with `\'` and `\\` escapes inside or outside quotes.
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!(
                "invalid connection string: missing \"=\" after {key:?}"
            ));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "invalid connection string: unterminated quoted value of {key:?}"
                        ))
                    }
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

fn quote_value(v: &str) -> String {
    let mut q = String::with_capacity(v.len() + 2);
    q.push('\'');
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('\'');
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tls(mode: SslMode, root: Option<&str>) -> Tls {
        Tls {
            mode,
            root_cert: root.map(str::to_string),
        }
    }

    #[test]
    fn uris() {
        assert_eq!(
            split_tls("postgresql://u@h:5432/db").unwrap(),
            (
                "postgresql://u@h:5432/db".into(),
                tls(SslMode::Prefer, None)
            )
        );
        assert_eq!(
            split_tls("postgres://u:p%40ss@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x")
                .unwrap(),
            (
                "postgres://u:p%40ss@h/db?application_name=x".into(),
                tls(SslMode::VerifyFull, Some("/etc/ca.pem"))
            )
        );
        assert_eq!(
            split_tls("postgresql://h/db?sslmode=require").unwrap(),
            ("postgresql://h/db".into(), tls(SslMode::Require, None))
        );
        // the last one wins
        assert_eq!(
            split_tls("postgresql://h/db?sslmode=disable&sslmode=require")
                .unwrap()
                .1
                .mode,
            SslMode::Require
        );
        let e = split_tls("postgresql://h/db?sslmode=always").unwrap_err();
        assert!(e.contains("invalid sslmode \"always\""), "{e}");
    }

    #[test]
    fn key_value_strings() {
        let (rest, t) = split_tls(
            "host=db port=5432 sslmode=verify-ca sslrootcert='/my certs/ca.pem' password='it\\'s'",
        )
        .unwrap();
        assert_eq!(rest, "host='db' port='5432' password='it\\'s'");
        assert_eq!(t, tls(SslMode::VerifyCa, Some("/my certs/ca.pem")));
        assert_eq!(
            split_tls("  host = db  dbname=x ").unwrap(),
            ("host='db' dbname='x'".into(), tls(SslMode::Prefer, None))
        );
        assert!(split_tls("host").unwrap_err().contains("missing"));
        assert!(split_tls("host='db").unwrap_err().contains("unterminated"));
    }

    #[test]
    fn effective_modes() {
        assert_eq!(
            tls(SslMode::Require, Some("/ca")).effective_mode(),
            SslMode::VerifyCa
        );
        assert_eq!(
            tls(SslMode::Require, Some("system")).effective_mode(),
            SslMode::VerifyFull
        );
        assert_eq!(
            tls(SslMode::Prefer, Some("system")).effective_mode(),
            SslMode::VerifyFull
        );
        assert_eq!(
            tls(SslMode::Disable, Some("/ca")).effective_mode(),
            SslMode::Disable
        );
        assert_eq!(
            tls(SslMode::Require, None).effective_mode(),
            SslMode::Require
        );
    }

    proptest! {
        /// Any value survives quoting: the rewritten string parses back to
        /// the same pairs, TLS keys removed.
        #[test]
        fn key_values_round_trip(
            pairs in proptest::collection::vec(("[a-z_]{1,12}", "\\PC{0,20}"), 0..6),
            mode in prop_oneof![Just("disable"), Just("require"), Just("verify-full")],
        ) {
            let pairs: Vec<(String, String)> = pairs
                .into_iter()
                .filter(|(k, _)| !TLS_KEYS.contains(&k.as_str()))
                .collect();
            let mut s: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", quote_value(v))).collect();
            s.insert(s.len() / 2, format!("sslmode={mode}"));
            let (rest, t) = split_tls(&s.join(" ")).unwrap();
            prop_assert_eq!(t.mode, SslMode::parse(mode).unwrap());
            prop_assert_eq!(key_values(&rest).unwrap(), pairs);
        }
    }
}
