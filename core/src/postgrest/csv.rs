//! `Accept: text/csv`: the statement returns (as JSON) the column names in
//! select order and each row's PostgreSQL record text; [`render`] turns
//! those into CSV, so every value keeps its PostgreSQL text form (`{a,b}` for
//! arrays, jsonb's own output) and columns keep the `select=` order.

/// Split a record's text output (`(a,"b c",)`) into its fields; an empty
/// unquoted field is NULL.
pub fn parse_record(s: &str) -> Vec<Option<String>> {
    let inner = s
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .unwrap_or(s);
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        let mut field = String::new();
        let mut quoted_any = false;
        let mut in_quotes = false;
        let mut more = false;
        while let Some(c) = chars.next() {
            if in_quotes {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => in_quotes = false,
                    '\\' => {
                        if let Some(n) = chars.next() {
                            field.push(n);
                        }
                    }
                    c => field.push(c),
                }
            } else {
                match c {
                    ',' => {
                        more = true;
                        break;
                    }
                    '"' => {
                        in_quotes = true;
                        quoted_any = true;
                    }
                    '\\' => {
                        if let Some(n) = chars.next() {
                            field.push(n);
                        }
                    }
                    c => field.push(c),
                }
            }
        }
        out.push(if field.is_empty() && !quoted_any {
            None
        } else {
            Some(field)
        });
        if !more {
            break;
        }
    }
    out
}

/// One CSV field: quoted when it holds a comma, a quote or a line break.
pub fn field(v: Option<&str>) -> String {
    match v {
        None => String::new(),
        Some(s) if s.contains([',', '"', '\n', '\r']) => {
            format!("\"{}\"", s.replace('"', "\"\""))
        }
        Some(s) => s.to_string(),
    }
}

/// The CSV document from the column names (select order) and each row's
/// record text; no rows and no header give an empty document.
pub fn render(header: &[String], rows: &[String]) -> String {
    if header.is_empty() {
        return String::new();
    }
    let mut out = header
        .iter()
        .map(|k| field(Some(k)))
        .collect::<Vec<_>>()
        .join(",");
    for r in rows {
        out.push('\n');
        out.push_str(
            &parse_record(r)
                .iter()
                .map(|f| field(f.as_deref()))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        assert_eq!(parse_record("(a)"), vec![Some("a".into())]);
        assert_eq!(parse_record("()"), vec![None]);
        assert_eq!(
            parse_record("(\"x y\",\"{a,b}\",,\"q\"\"\\\\\",)"),
            vec![
                Some("x y".into()),
                Some("{a,b}".into()),
                None,
                Some("q\"\\".into()),
                None
            ]
        );
        assert_eq!(
            parse_record("(\"\",1)"),
            vec![Some(String::new()), Some("1".into())]
        );
        assert_eq!(
            parse_record("(\"{\"\"k\"\": [1]}\")"),
            vec![Some("{\"k\": [1]}".into())]
        );
    }

    #[test]
    fn documents() {
        let h = vec!["name".to_string(), "tags".to_string()];
        let rows = vec![
            "(tonnes,\"{audit,scope1}\")".to_string(),
            "(\"a b\",)".to_string(),
        ];
        assert_eq!(
            render(&h, &rows),
            "name,tags\ntonnes,\"{audit,scope1}\"\na b,"
        );
        assert_eq!(render(&[], &[]), "");
        assert_eq!(field(Some("x\"y")), "\"x\"\"y\"");
    }
}
