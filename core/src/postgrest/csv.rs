//! `Accept: text/csv`: the statement returns (as JSON) the column names in
//! select order and each row's PostgreSQL record text; [`render`] turns
//! those into CSV, so every value keeps its PostgreSQL text form (`{a,b}` for
//! arrays, jsonb's own output) and columns keep the `select=` order.
//!
//! `Content-Type: text/csv` request bodies: [`parse_body`].

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

/// The CSV document as PostgREST writes it: the column names (select order)
/// on the first line, then each row's record text without its parentheses,
/// lines joined by `\n` (no final line break). The fields so keep
/// PostgreSQL's record quoting: a value is quoted when it is empty or holds
/// whitespace, `,`, `"`, `\`, `(` or `)`, with `"` and `\` doubled inside;
/// NULL is nothing. Without rows PostgREST's header (taken from the first
/// row) is empty too: the document is a single `\n`.
pub fn render(header: &[String], rows: &[String]) -> String {
    if rows.is_empty() {
        return "\n".to_string();
    }
    let mut out = header
        .iter()
        .map(|k| field(Some(k)))
        .collect::<Vec<_>>()
        .join(",");
    for r in rows {
        out.push('\n');
        let inner = r
            .strip_prefix('(')
            .and_then(|x| x.strip_suffix(')'))
            .unwrap_or(r);
        out.push_str(inner);
    }
    out
}

/// A `Content-Type: text/csv` request body, as PostgREST (cassava's
/// `decodeByName`) reads it: the first record names the columns; `NULL`
/// (quoted or not) is NULL, every other field (the empty one too) is text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvBody {
    /// The header's names, each once (a repeated name keeps its last value).
    pub columns: Vec<String>,
    /// One value per column for each record.
    pub rows: Vec<Vec<Option<String>>>,
}

/// Why a CSV body does not parse (PGRST102's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError(pub String);

/// Records of RFC 4180 CSV: `,` between fields, `\n`, `\r\n` or `\r`
/// between records, `"…"` quoting with `""` for a quote. Blank lines are
/// skipped, as cassava does.
fn records(text: &str) -> Result<Vec<Vec<String>>, CsvError> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while chars.peek().is_some() {
        let mut record = Vec::new();
        loop {
            let mut field = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let start = line;
                loop {
                    match chars.next() {
                        None => {
                            return Err(CsvError(format!(
                                "parse error (unterminated quoted field starting on line {start})"
                            )))
                        }
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                    }
                }
                if !matches!(chars.peek(), None | Some(',') | Some('\n') | Some('\r')) {
                    return Err(CsvError(format!(
                        "parse error (unexpected character after a quoted field on line {line})"
                    )));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    match c {
                        ',' | '\n' | '\r' => break,
                        '"' => {
                            return Err(CsvError(format!(
                                "parse error (a quote inside an unquoted field on line {line})"
                            )))
                        }
                        c => {
                            field.push(c);
                            chars.next();
                        }
                    }
                }
            }
            record.push(field);
            match chars.next() {
                Some(',') => continue,
                Some('\r') => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    line += 1;
                    break;
                }
                Some('\n') => {
                    line += 1;
                    break;
                }
                _ => break,
            }
        }
        if !(record.len() == 1 && record[0].is_empty()) {
            out.push(record);
        }
    }
    Ok(out)
}

/// Parse a `text/csv` request body (PostgREST's `csvToJson`).
pub fn parse_body(text: &str) -> Result<CsvBody, CsvError> {
    let mut recs = records(text)?.into_iter();
    let header = recs
        .next()
        .ok_or_else(|| CsvError("parse error (not enough input)".into()))?;
    let mut columns: Vec<String> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    // for each header field, its column index (a repeated name: the same)
    let slots: Vec<usize> = header
        .iter()
        .map(|h| {
            *index.entry(h.as_str()).or_insert_with(|| {
                columns.push(h.clone());
                columns.len() - 1
            })
        })
        .collect();
    let mut rows = Vec::new();
    for r in recs {
        if r.len() != header.len() {
            return Err(CsvError("All lines must have same number of fields".into()));
        }
        let mut row: Vec<Option<String>> = vec![None; columns.len()];
        for (slot, v) in slots.iter().zip(r) {
            row[*slot] = if v == "NULL" { None } else { Some(v) };
        }
        rows.push(row);
    }
    Ok(CsvBody { columns, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_headers_parse_in_linear_time() {
        let n = 100_000;
        let header: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let text = format!("{},c1\n{}\n", header.join(","), vec!["1"; n + 1].join(","));
        let t = std::time::Instant::now();
        let b = parse_body(&text).unwrap();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
        // a repeated name is one column (its last value wins)
        assert_eq!(b.columns.len(), n);
        assert_eq!(b.rows.len(), 1);
    }

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
            "name,tags\ntonnes,\"{audit,scope1}\"\n\"a b\","
        );
        // PostgreSQL's quoting, kept: empty, backslash, parentheses, tabs
        let rows = vec!["(\"\",\"a\\\\b\",\"(x)\",\"t\tu\",)".to_string()];
        assert_eq!(
            render(&h, &rows),
            "name,tags\n\"\",\"a\\\\b\",\"(x)\",\"t\tu\","
        );
        assert_eq!(render(&h, &[]), "\n");
        assert_eq!(render(&[], &[]), "\n");
        assert_eq!(field(Some("x\"y")), "\"x\"\"y\"");
    }

    #[test]
    fn request_bodies() {
        let b =
            parse_body("name,qty,note\nalpha,1,NULL\n\"b,c\",\"\",\"say \"\"hi\"\"\nthere\"\r\n")
                .unwrap();
        assert_eq!(b.columns, vec!["name", "qty", "note"]);
        assert_eq!(
            b.rows,
            vec![
                vec![Some("alpha".into()), Some("1".into()), None],
                vec![
                    Some("b,c".into()),
                    Some(String::new()),
                    Some("say \"hi\"\nthere".into())
                ],
            ]
        );
        // quoted NULL is NULL too; the empty field is the empty string
        let b = parse_body("a,b\n\"NULL\",\nNULLish,x").unwrap();
        assert_eq!(
            b.rows,
            vec![
                vec![None, Some(String::new())],
                vec![Some("NULLish".into()), Some("x".into())]
            ]
        );
        // header only; blank lines; CR line ends
        assert_eq!(parse_body("a,b\n").unwrap().rows.len(), 0);
        assert_eq!(
            parse_body("a\n\nx\n\n").unwrap().rows,
            vec![vec![Some("x".into())]]
        );
        assert_eq!(parse_body("a\rx\ry").unwrap().rows.len(), 2);
        // a repeated name keeps the last value
        let b = parse_body("a,a,b\n1,2,3").unwrap();
        assert_eq!(b.columns, vec!["a", "b"]);
        assert_eq!(b.rows, vec![vec![Some("2".into()), Some("3".into())]]);
    }

    #[test]
    fn malformed_request_bodies() {
        let msg = |s: &str| parse_body(s).unwrap_err().0;
        assert_eq!(msg(""), "parse error (not enough input)");
        assert_eq!(msg("\n\n"), "parse error (not enough input)");
        assert_eq!(
            msg("a,b\nfoo,bar\nbaz"),
            "All lines must have same number of fields"
        );
        assert_eq!(
            msg("a,b\n1,2,3"),
            "All lines must have same number of fields"
        );
        assert!(msg("a,b\n\"open,2").starts_with("parse error (unterminated"));
        assert!(msg("a,b\nx\"y,2").starts_with("parse error (a quote"));
        assert!(msg("a,b\n\"x\"y,2").starts_with("parse error (unexpected"));
    }
}
