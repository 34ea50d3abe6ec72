//! Quoting of SQL identifiers and literals.
//!
//! Generated DDL always quotes identifiers: it is never ambiguous, survives
//! keywords and mixed case, and cannot be used to inject SQL.

/// Quote an identifier the way PostgreSQL's `quote_ident` does when forced:
/// wrap in double quotes and double any embedded double quote.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for ch in name.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// Quote a schema-qualified name: `"schema"."name"`.
pub fn quote_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// Quote a string literal as PostgreSQL's `quote_literal` does: wrap in
/// single quotes and double embedded single quotes; a value with a
/// backslash becomes an escape string (`E'…'`, backslashes doubled). So the
/// literal reads back the same whether `standard_conforming_strings` is on
/// or off — with `'…'` alone and the setting off, a backslash in a table
/// name would escape the closing quote and let the name's text run as SQL.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for ch in value.chars() {
        if ch == '\'' || ch == '\\' {
            out.push(ch);
        }
        out.push(ch);
    }
    out.push('\'');
    out
}

/// Undo [`quote_ident`]; `None` if the text is not one quoted identifier.
pub fn unquote_ident(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '"' && chars.next() != Some('"') {
            return None;
        }
        out.push(ch);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quotes_plain_and_hostile_names() {
        assert_eq!(quote_ident("tenant_id"), "\"tenant_id\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            quote_ident("x\"; DROP TABLE t; --"),
            "\"x\"\"; DROP TABLE t; --\""
        );
        assert_eq!(quote_qualified("My Schema", "T"), "\"My Schema\".\"T\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(quote_literal("x\\') s --"), "E'x\\\\'') s --'");
    }

    /// Read a literal back as PostgreSQL's lexer does; `escapes` is what a
    /// backslash means in a plain '…' string (standard_conforming_strings off).
    fn read_literal(q: &str, escapes: bool) -> Option<String> {
        let (body, escapes) = match q.strip_prefix('E') {
            Some(rest) => (rest, true),
            None => (q, escapes),
        };
        let inner = body.strip_prefix('\'')?.strip_suffix('\'')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(ch) = chars.next() {
            match ch {
                '\\' if escapes => out.push(chars.next()?),
                '\'' => {
                    if chars.next()? != '\'' {
                        return None; // the literal would end early
                    }
                    out.push('\'');
                }
                c => out.push(c),
            }
        }
        Some(out)
    }

    proptest! {
        #[test]
        fn ident_round_trips(s in "\\PC{0,40}") {
            let q = quote_ident(&s);
            prop_assert_eq!(unquote_ident(&q), Some(s.clone()));
            // The quoted form never contains an unpaired quote inside.
            let inner = &q[1..q.len() - 1];
            prop_assert_eq!(inner.matches('"').count() % 2, 0);
        }

        #[test]
        fn literal_reads_back_the_same_whatever_standard_conforming_strings(s in "[a-z'\\\\ ;)(-]{0,20}|\\PC{0,40}") {
            let q = quote_literal(&s);
            prop_assert_eq!(read_literal(&q, false), Some(s.clone()));
            prop_assert_eq!(read_literal(&q, true), Some(s.clone()));
        }
    }
}
