//! The PostgREST query-string grammar.
//!
//! Errors are PGRST100 with the 1-based column where parsing failed, in the
//! same shape as PostgREST's own messages:
//! `"failed to parse select parameter (id,,)" (line 1, column 4)`.

use super::ast::*;
use super::error::ApiError;

/// Query parameters with a meaning of their own (not filters).
pub const RESERVED: [&str; 10] = [
    "select",
    "order",
    "limit",
    "offset",
    "or",
    "and",
    "not.or",
    "not.and",
    "columns",
    "on_conflict",
];

const LEVEL_KEYS: [&str; 7] = ["not.or", "not.and", "order", "limit", "offset", "or", "and"];

/// Parse a whole query string, already split into decoded `(key, value)`
/// pairs. Keys that are not reserved are filters; `rel.col=…`, `rel.order=…`
/// and friends apply to the embedded resource labelled `rel`.
/// The longest JSON path (`->`/`->>` steps) a field may have: deeper ones
/// would only exhaust PostgreSQL's stack (54001).
pub const MAX_JSON_PATH: usize = 100;

pub fn parse_query(pairs: &[(String, String)]) -> Result<Query, ApiError> {
    let mut q = Query::default();
    let mut select_seen = false;
    for (key, value) in pairs {
        let key = key.as_str();
        // a NUL cannot be part of a name in a statement (PostgreSQL's
        // protocol ends strings there): refused here, not at the database
        let names = matches!(
            key.rsplit('.').next(),
            Some("select" | "order" | "columns" | "on_conflict")
        );
        if key.contains('\0') || names && value.contains('\0') {
            return Err(ApiError::new(
                400,
                "PGRST100",
                format!(
                    "\"failed to parse {} parameter\" (NUL character)",
                    key.replace('\0', "\\0")
                ),
            )
            .details("A NUL character (%00) is not allowed in a name".to_string()));
        }
        match key {
            "select" => {
                q.select = parse_select(value)?;
                select_seen = true;
            }
            "columns" => q.columns = Some(parse_name_list("columns parameter", value)?),
            "on_conflict" => q.on_conflict = Some(parse_name_list("on_conflict parameter", value)?),
            _ => {
                let (path, rest) = split_embed_path(key);
                let level = q.level_mut(&path);
                apply_level_param(level, rest, value, key)?;
            }
        }
    }
    if !select_seen {
        q.select = vec![SelectItem::Star];
    }
    resolve_embed_paths(&mut q);
    Ok(q)
}

/// PostgREST finds the embed of `rel.col=…` / `rel.order=…` by its alias or
/// its relation name, the first of that level to have it: `the_tasks:tasks(…)`
/// takes `tasks.order=…` as well as `the_tasks.order=…`. From here on paths
/// are labels; a name no embed has stays as given (PGRST108 later). Two
/// spellings of one embed merge: filters add up, the later order and paging
/// win.
fn resolve_embed_paths(q: &mut Query) {
    fn labels(items: &[SelectItem], path: &[String]) -> Option<Vec<String>> {
        let (head, rest) = path.split_first()?;
        let e = items.iter().find_map(|i| match i {
            SelectItem::Embed(e) if e.label() == head || &e.name == head => Some(e),
            _ => None,
        })?;
        let mut out = vec![e.label().to_string()];
        if !rest.is_empty() {
            out.extend(labels(&e.select, rest)?);
        }
        Some(out)
    }
    if q.embedded.is_empty() {
        return;
    }
    for (path, level) in std::mem::take(&mut q.embedded) {
        let path = labels(&q.select, &path).unwrap_or(path);
        let slot = q.level_mut(&path);
        slot.conditions.extend(level.conditions);
        if !level.order.is_empty() {
            slot.order = level.order;
        }
        slot.limit = level.limit.or(slot.limit);
        slot.offset = level.offset.or(slot.offset);
    }
}

/// Whether `key=value` in the query string of `GET /rpc/fn` is an argument
/// of the function rather than a filter, as PostgREST's `QueryParams` splits
/// them: not a reserved key (`select`, `columns`, `on_conflict`, or one
/// ending in `order`, `limit`, `offset`, `and`, `or`), no `.` in the key (an
/// embed path), and a value that does not start with an operator (`eq.…`,
/// `eq(any).…`, `not.….…`, `is…`, `in…`, `fts(english).…`). So
/// `?name=x` is an argument even when `fn` has no parameter `name` (a 404
/// that says so), and `?id=gt.2` filters the rows `fn` returns.
pub fn is_rpc_argument(key: &str, value: &str) -> bool {
    const OPERATORS: &[&str] = &[
        "eq",
        "gte",
        "gt",
        "lte",
        "lt",
        "neq",
        "like",
        "ilike",
        "cs",
        "cd",
        "ov",
        "sl",
        "sr",
        "nxr",
        "nxl",
        "adj",
        "match",
        "imatch",
        "isdistinct",
        "fts",
        "plfts",
        "phfts",
        "wfts",
    ];
    const FTS: &[&str] = &["fts", "plfts", "phfts", "wfts"];
    if RESERVED.contains(&key) || key.contains('.') {
        return false;
    }
    let last = key.rsplit('.').next().unwrap_or(key);
    if ["order", "limit", "offset", "and", "or"].contains(&last) {
        return false;
    }
    let mut parts = value.split('.');
    let first = parts.next().unwrap_or_default();
    let has_operator = match first {
        "not" => parts.next().is_some(),
        "is" | "in" => true,
        op => {
            let bare = op
                .strip_suffix("(any)")
                .or_else(|| op.strip_suffix("(all)"))
                .unwrap_or(op);
            OPERATORS.contains(&bare)
        }
    };
    let has_fts = value
        .split_once('(')
        .is_some_and(|(op, _)| FTS.contains(&op));
    !(has_operator || has_fts)
}

/// `a.b.order` → (["a","b"], "order"); `a.b.col` → (["a","b"], "col");
/// `not.or` stays whole.
fn split_embed_path(key: &str) -> (Vec<String>, &str) {
    if LEVEL_KEYS.contains(&key) {
        return (Vec::new(), key);
    }
    for lk in LEVEL_KEYS {
        if let Some(prefix) = key.strip_suffix(lk).and_then(|p| p.strip_suffix('.')) {
            if !prefix.is_empty() && !prefix.contains("->") {
                return (
                    prefix.split('.').map(str::to_string).collect(),
                    &key[prefix.len() + 1..],
                );
            }
        }
    }
    // A filter: everything before the last dot that is not inside a JSON path.
    let head = key.split("->").next().unwrap_or(key);
    match head.rfind('.') {
        Some(i) if i > 0 => (
            key[..i].split('.').map(str::to_string).collect(),
            &key[i + 1..],
        ),
        _ => (Vec::new(), key),
    }
}

fn apply_level_param(
    level: &mut Level,
    key: &str,
    value: &str,
    full_key: &str,
) -> Result<(), ApiError> {
    match key {
        "order" => level.order = parse_order(value)?,
        // a negative limit is 416 and a negative offset is no offset, as in
        // PostgREST
        "limit" if negative(value) => {
            return Err(ApiError::range(
                "Requested range not satisfiable",
                "Limit should be greater than or equal to zero.",
            ))
        }
        "offset" if negative(value) => level.offset = None,
        "limit" => level.limit = Some(parse_count("limit parameter", value)?),
        "offset" => level.offset = Some(parse_count("offset parameter", value)?),
        "or" | "and" | "not.or" | "not.and" => {
            let negate = key.starts_with("not.");
            let or = key.ends_with("or");
            let children = parse_logic(full_key, value)?;
            level.conditions.push(Condition::Group {
                or,
                negate,
                children,
            });
        }
        _ => {
            let field = parse_filter_key("tree path", key)?;
            let f = parse_filter(field, value)?;
            level.conditions.push(Condition::Filter(f));
        }
    }
    Ok(())
}

/// A negative integer (`-1`), which `limit`/`offset` treat apart.
fn negative(value: &str) -> bool {
    value.trim().parse::<i64>().is_ok_and(|n| n < 0)
}

fn parse_count(param: &str, value: &str) -> Result<u64, ApiError> {
    value.trim().parse::<u64>().map_err(|_| {
        ApiError::parse(
            param,
            value,
            1,
            format!(
                "{} must be a non-negative integer",
                param.trim_end_matches(" parameter")
            ),
        )
    })
}

fn parse_name_list(param: &str, value: &str) -> Result<Vec<String>, ApiError> {
    let mut c = Cursor::new(param, value);
    let mut out = Vec::new();
    loop {
        c.skip_ws();
        out.push(c.name()?);
        c.skip_ws();
        if c.eof() {
            return Ok(out);
        }
        c.expect(',')?;
    }
}

/// PostgREST's canonical form of a query string (its `Content-Location`):
/// the decoded pairs sorted by key (stable: repeated keys keep their order),
/// each side percent-encoded but for `A-Z a-z 0-9 - _ . ~` (uppercase hex,
/// UTF-8 bytes), a key without a value as `key=`.
pub fn canonical_query(pairs: &[(String, String)]) -> String {
    fn encode(out: &mut String, s: &str) {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
            }
        }
    }
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(&mut out, k);
        out.push('=');
        encode(&mut out, v);
    }
    out
}

/// `a`, `a or b`, `a, b or c`: parsec's list of expected items.
fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A character cursor that knows which parameter it reads, for errors.
struct Cursor<'a> {
    /// What PostgREST calls the text in its errors: `select parameter`,
    /// `filter`, `order`, `logic tree`, …
    param: &'a str,
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
    /// Added to error columns (a logic tree's operator, which PostgREST
    /// parses in front of the value).
    offset: usize,
}

const NAME_STOP: &[char] = &[',', '.', ':', '(', ')', '!', '"', '*', '{', '}'];

impl<'a> Cursor<'a> {
    fn new(param: &'a str, text: &'a str) -> Self {
        Cursor {
            param,
            text,
            chars: text.chars().collect(),
            pos: 0,
            offset: 0,
        }
    }

    fn eof(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn looking_at(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(k, ch)| self.chars.get(self.pos + k) == Some(&ch))
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.looking_at(s) {
            self.pos += s.chars().count();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(c) if c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn error(&self, expecting: &str) -> ApiError {
        self.fail_at(self.peek(), '"', expecting)
    }

    /// PGRST100 at the cursor, parsec's style: `unexpected "c" expecting …`
    /// (`quote` is `"` for a string token, `'` for a character).
    fn fail_at(&self, found: Option<char>, quote: char, expecting: &str) -> ApiError {
        let found = match found {
            Some(c) => format!("unexpected {quote}{c}{quote}"),
            None => "unexpected end of input".to_string(),
        };
        ApiError::parse(
            self.param,
            self.text,
            self.pos + self.offset + 1,
            format!("{found} expecting {expecting}"),
        )
    }

    /// None of `words` is at the cursor: parsec's error for a choice of
    /// strings, at the cursor, naming the first character that breaks the
    /// first word (`order=id.ac`: unexpected "c" expecting "asc", …).
    fn keyword_error(&self, words: &[&str]) -> ApiError {
        let expecting: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
        self.mismatch_error(words.first().copied().unwrap_or(""), &or_list(&expecting))
    }

    /// `first` (the first of parsec's alternatives) is not at the cursor:
    /// unexpected the character where it breaks off, expecting `expecting`.
    fn mismatch_error(&self, first: &str, expecting: &str) -> ApiError {
        let found = first
            .chars()
            .enumerate()
            .find_map(|(k, w)| match self.chars.get(self.pos + k) {
                Some(&c) if c == w => None,
                other => Some(other.copied()),
            })
            .flatten();
        self.fail_at(found, '"', expecting)
    }

    /// parsec's error for a single unexpected character (`'c'`).
    fn char_error(&self, expecting: &str) -> ApiError {
        self.fail_at(self.peek(), '\'', expecting)
    }

    fn expect(&mut self, ch: char) -> Result<(), ApiError> {
        if self.peek() == Some(ch) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("{ch:?}")))
        }
    }

    /// A field or relation name: a run of non-reserved characters (not `->`),
    /// or a double-quoted name with backslash escapes.
    fn name(&mut self) -> Result<String, ApiError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        // spaces may be inside a name (`Just A Server Model`), as in
        // PostgREST; around it they are dropped
        self.run_trimmed("field name (* or [a..z0..9_$])", |cur, c| {
            NAME_STOP.contains(&c) || (c.is_whitespace() && c != ' ') || cur.looking_at("->")
        })
    }

    /// A name in `select` (a column, alias, relation or hint) or a filter
    /// key, as PostgREST's `pFieldName` reads it: letters, digits, `_`, `$`,
    /// spaces and `-` (not `->`), or a double-quoted name. Any other
    /// character ends it, so `select=name'` is a parse error, as in
    /// PostgREST, rather than a column named `name'`.
    fn field_name(&mut self) -> Result<String, ApiError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        self.run_trimmed("field name (* or [a..z0..9_$])", |cur, c| {
            !(c.is_alphabetic()
                || c.is_ascii_digit()
                || matches!(c, '_' | '$' | ' ')
                || (c == '-' && !cur.looking_at("->")))
        })
    }

    /// The characters up to the first where `stop` holds, without the
    /// spaces around them; none (or only spaces) is an error expecting
    /// `expecting`, at the start.
    fn run_trimmed(
        &mut self,
        expecting: &str,
        stop: impl Fn(&Self, char) -> bool,
    ) -> Result<String, ApiError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if stop(self, c) {
                break;
            }
            self.pos += 1;
        }
        let taken = &self.chars[start..self.pos];
        let first = taken.iter().position(|&c| c != ' ');
        let last = taken.iter().rposition(|&c| c != ' ');
        let (Some(first), Some(last)) = (first, last) else {
            self.pos = start;
            return Err(self.error(expecting));
        };
        Ok(taken[first..=last].iter().collect())
    }

    fn quoted(&mut self) -> Result<String, ApiError> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("closing '\"'")),
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        None => return Err(self.error("an escaped character")),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `->a->>0` after a column name.
    fn json_path(&mut self) -> Result<Vec<JsonStep>, ApiError> {
        let mut path = Vec::new();
        loop {
            let arrow = if self.eat("->>") {
                Arrow::Text
            } else if self.eat("->") {
                Arrow::Json
            } else {
                return Ok(path);
            };
            let start = self.pos;
            let negative = self.eat("-");
            let digits_start = self.pos;
            while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                self.pos += 1;
            }
            let at_end = match self.peek() {
                None => true,
                Some(c) => NAME_STOP.contains(&c) || c.is_whitespace() || self.looking_at("->"),
            };
            let key = if self.pos > digits_start && at_end {
                let s: String = self.chars[start..self.pos].iter().collect();
                match s.parse::<i64>() {
                    Ok(n) => JsonKey::Index(n),
                    Err(_) => return Err(self.error("a JSON array index")),
                }
            } else {
                if negative {
                    // `->-x`: a `-` starts an index only (PostgREST)
                    return Err(self.error("digit"));
                }
                self.pos = start;
                JsonKey::Name(self.json_key()?)
            };
            path.push(JsonStep { arrow, key });
            if path.len() > MAX_JSON_PATH {
                return Err(ApiError::new(
                    400,
                    "PGRST100",
                    format!("\"failed to parse JSON path\" (more than {MAX_JSON_PATH} arrows)"),
                ));
            }
        }
    }

    /// A JSON key after an arrow: quoted, or a run of anything but the
    /// reserved `.,>()` (PostgREST), ending before `->` and `::`; so keys
    /// like `!@#$%^&*_d` need no quotes.
    fn json_key(&mut self) -> Result<String, ApiError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        self.run_trimmed(
            "\"-\", digit or any non reserved character different from: .,>()",
            |cur, c| {
                matches!(c, '.' | ',' | '>' | '(' | ')')
                    || (c.is_whitespace() && c != ' ')
                    || cur.looking_at("->")
                    || cur.looking_at("::")
            },
        )
    }

    fn field(&mut self) -> Result<Field, ApiError> {
        let name = self.field_name()?;
        let path = self.json_path()?;
        Ok(Field { name, path })
    }

    /// `::type`: letters, digits, underscores and spaces, optionally `[]`.
    fn cast(&mut self) -> Result<Option<String>, ApiError> {
        if !self.eat("::") {
            return Ok(None);
        }
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == ' ') {
            self.pos += 1;
        }
        let mut ty: String = self.chars[start..self.pos].iter().collect();
        let ty_trim = ty.trim().to_string();
        if ty_trim.is_empty() || ty_trim.starts_with(|c: char| c.is_ascii_digit()) {
            self.pos = start;
            return Err(self.error("a type name"));
        }
        ty = ty_trim;
        if self.eat("[]") {
            ty.push_str("[]");
        }
        Ok(Some(ty))
    }
}

/// Parse `select=`. An empty value means `*`.
pub fn parse_select(text: &str) -> Result<Vec<SelectItem>, ApiError> {
    let mut c = Cursor::new("select parameter", text);
    c.skip_ws();
    if c.eof() {
        return Ok(vec![SelectItem::Star]);
    }
    let items = select_list(&mut c, 0)?;
    c.skip_ws();
    // PostgREST's `select` parser does not ask for the end of the input:
    // after a complete embed or spread (`rel(…)`) at the top level, the list
    // simply ends and the rest is ignored (its spec: `select=name,
    // projects(count)'` answers the rows). A column must be followed by `,`,
    // `)` or the end: `name'` is a parse error, `name)…` ends the list.
    if !c.eof() && !matches!(items.last(), Some(SelectItem::Embed(_))) && c.peek() != Some(')') {
        return Err(c.error("\",\" or end of input"));
    }
    Ok(items)
}

const MAX_DEPTH: usize = 16;

fn select_list(c: &mut Cursor, depth: usize) -> Result<Vec<SelectItem>, ApiError> {
    if depth > MAX_DEPTH {
        return Err(c.error("less nesting"));
    }
    let mut items = Vec::new();
    loop {
        c.skip_ws();
        items.push(select_item(c, depth)?);
        c.skip_ws();
        if c.peek() == Some(',') {
            c.pos += 1;
            continue;
        }
        return Ok(items);
    }
}

fn aggregate_name(s: &str) -> Option<Aggregate> {
    Some(match s {
        "count" => Aggregate::Count,
        "sum" => Aggregate::Sum,
        "avg" => Aggregate::Avg,
        "max" => Aggregate::Max,
        "min" => Aggregate::Min,
        _ => return None,
    })
}

fn select_item(c: &mut Cursor, depth: usize) -> Result<SelectItem, ApiError> {
    if c.eat("*") {
        return Ok(SelectItem::Star);
    }
    if c.eat("...") {
        let name = c.field_name()?;
        let mut embed = embed_rest(c, name, None, depth)?;
        embed.spread = true;
        return Ok(SelectItem::Embed(embed));
    }
    let first = c.field_name()?;
    let (alias, name) = if c.peek() == Some(':') && !c.looking_at("::") {
        c.pos += 1;
        c.skip_ws();
        (Some(first), c.field_name()?)
    } else {
        (None, first)
    };
    // count() on its own
    if name == "count" && c.looking_at("()") {
        c.pos += 2;
        let aggregate_cast = c.cast()?;
        return Ok(SelectItem::Column {
            field: Field::plain("*"),
            alias,
            cast: None,
            aggregate: Some(Aggregate::Count),
            aggregate_cast,
        });
    }
    if matches!(c.peek(), Some('(') | Some('!')) {
        return Ok(SelectItem::Embed(embed_rest(c, name, alias, depth)?));
    }
    let path = c.json_path()?;
    let field = Field { name, path };
    let cast = c.cast()?;
    let mut aggregate = None;
    let mut aggregate_cast = None;
    if c.peek() == Some('.') {
        c.pos += 1;
        let start = c.pos;
        let fname = c.field_name()?;
        match aggregate_name(&fname) {
            Some(a) if c.looking_at("()") => {
                c.pos += 2;
                aggregate = Some(a);
                aggregate_cast = c.cast()?;
            }
            _ => {
                c.pos = start;
                return Err(c.error("an aggregate: count(), sum(), avg(), max() or min()"));
            }
        }
    }
    Ok(SelectItem::Column {
        field,
        alias,
        cast,
        aggregate,
        aggregate_cast,
    })
}

fn embed_rest(
    c: &mut Cursor,
    name: String,
    alias: Option<String>,
    depth: usize,
) -> Result<Embed, ApiError> {
    let mut hint = None;
    let mut join = None;
    while c.eat("!") {
        let h = c.field_name()?;
        match h.as_str() {
            "inner" => join = Some(JoinKind::Inner),
            "left" => join = Some(JoinKind::Left),
            _ => {
                if hint.is_some() {
                    return Err(c.error("\"(\""));
                }
                hint = Some(h)
            }
        }
    }
    c.expect('(')?;
    c.skip_ws();
    let select = if c.peek() == Some(')') {
        Vec::new()
    } else {
        select_list(c, depth + 1)?
    };
    c.skip_ws();
    c.expect(')')?;
    Ok(Embed {
        name,
        alias,
        hint,
        join,
        spread: false,
        select,
    })
}

/// Parse a filter key: a field name and an optional JSON path, as
/// PostgREST's `pTreePath`, which does not ask for the end of the key: what
/// follows is ignored. So `title[0]=ilike.*a*&title[1]=ilike.*b*` (the `qs`
/// library's arrays, which react-admin's PostgREST provider sends for two
/// conditions on one column) filters `title` twice, as under PostgREST.
fn parse_filter_key(param: &str, text: &str) -> Result<Field, ApiError> {
    Cursor::new(param, text).field()
}

/// Parse the value of a filter parameter: `[not.]op[(any|all)|(lang)].value`.
pub fn parse_filter(field: Field, text: &str) -> Result<Filter, ApiError> {
    let mut c = Cursor::new("filter", text);
    let f = operation(&mut c, field, None)?;
    Ok(f)
}

/// The operator part; the value runs to `end` (a char index) or to the end.
fn operation(c: &mut Cursor, field: Field, end: Option<usize>) -> Result<Filter, ApiError> {
    let negate = c.eat("not.");
    let start = c.pos;
    while matches!(c.peek(), Some(ch) if ch.is_ascii_alphabetic()) {
        c.pos += 1;
    }
    let opname: String = c.chars[start..c.pos].iter().collect();
    let op = match Operator::from_name(&opname) {
        Some(op) => op,
        None => {
            c.pos = start;
            // PostgREST's label (the operators are eq gt gte lt lte neq
            // like ilike match imatch in is isdistinct fts plfts phfts wfts
            // cs cd ov sl sr nxr nxl adj)
            return Err(if negate {
                c.mismatch_error("in", "operator (eq, gt, ...)")
            } else {
                c.mismatch_error("not", "\"not\" or operator (eq, gt, ...)")
            });
        }
    };
    let mut quantifier = None;
    let mut language = None;
    if c.peek() == Some('(') {
        if op.quantifiable() && c.eat("(any)") {
            quantifier = Some(Quantifier::Any);
        } else if op.quantifiable() && c.eat("(all)") {
            quantifier = Some(Quantifier::All);
        } else if op.is_fts() {
            c.pos += 1;
            let ls = c.pos;
            while matches!(c.peek(), Some(ch) if ch.is_ascii_alphanumeric() || ch == '_') {
                c.pos += 1;
            }
            if c.pos == ls {
                return Err(c.error("a text search configuration name"));
            }
            language = Some(c.chars[ls..c.pos].iter().collect());
            c.expect(')')?;
        } else {
            return Err(c.error("\".\""));
        }
    }
    c.expect('.')?;
    let end = end.unwrap_or(c.chars.len());
    let vstart = c.pos;
    let raw: String = c.chars[vstart..end].iter().collect();
    let value = match op {
        Operator::Is => {
            let v = match raw.to_ascii_lowercase().as_str() {
                "null" => IsValue::Null,
                "not_null" => IsValue::NotNull,
                "true" => IsValue::True,
                "false" => IsValue::False,
                "unknown" => IsValue::Unknown,
                _ => return Err(c.error("null, not_null, true, false or unknown")),
            };
            Value::Is(v)
        }
        Operator::In => {
            let mut lc = Cursor {
                param: c.param,
                text: c.text,
                chars: c.chars[..end].to_vec(),
                pos: vstart,
                offset: c.offset,
            };
            let mut items = list(&mut lc, '(', ')')?;
            while matches!(lc.peek(), Some(' ' | '\t')) {
                lc.pos += 1;
            }
            if !lc.eof() {
                return Err(lc.error("end of the list"));
            }
            // one empty item is the empty list, as PostgREST reads `in.()`
            if items.len() == 1 && items[0].is_empty() {
                items.clear();
            }
            Value::List(items)
        }
        _ if quantifier.is_some() => {
            let mut lc = Cursor {
                param: c.param,
                text: c.text,
                chars: c.chars[..end].to_vec(),
                pos: vstart,
                offset: c.offset,
            };
            let items = list(&mut lc, '{', '}')?;
            if !lc.eof() {
                return Err(lc.error("end of the list"));
            }
            let items = if matches!(op, Operator::Like | Operator::Ilike) {
                items.into_iter().map(|s| s.replace('*', "%")).collect()
            } else {
                items
            };
            Value::List(items)
        }
        Operator::Like | Operator::Ilike => Value::Single(raw.replace('*', "%")),
        _ => Value::Single(raw),
    };
    c.pos = end;
    Ok(Filter {
        field,
        negate,
        op,
        quantifier,
        language,
        value,
    })
}

/// `(a,"b,c",d)` or `{a,b}`: items, double quotes for reserved characters.
fn list(c: &mut Cursor, open: char, close: char) -> Result<Vec<String>, ApiError> {
    c.expect(open)?;
    // as PostgREST's `lexeme (char '(')`: blanks after the opening bracket
    // go, so `in.(   )` is the empty list
    while matches!(c.peek(), Some(' ' | '\t')) {
        c.pos += 1;
    }
    let mut items = Vec::new();
    if c.peek() == Some(close) {
        c.pos += 1;
        return Ok(items);
    }
    loop {
        // a quoted element only when the quotes close right before `,` or
        // the bracket; otherwise the characters as they are (`in.(")`)
        let start = c.pos;
        let quoted = if c.peek() == Some('"') {
            c.quoted()
                .ok()
                .filter(|_| matches!(c.peek(), Some(ch) if ch == ',' || ch == close))
        } else {
            None
        };
        let item = match quoted {
            Some(q) => q,
            None => {
                c.pos = start;
                while let Some(ch) = c.peek() {
                    if ch == ',' || ch == close {
                        break;
                    }
                    c.pos += 1;
                }
                c.chars[start..c.pos].iter().collect()
            }
        };
        items.push(item);
        match c.peek() {
            Some(',') => c.pos += 1,
            Some(ch) if ch == close => {
                c.pos += 1;
                return Ok(items);
            }
            _ => return Err(c.error(&format!("\",\" or {close:?}"))),
        }
    }
}

/// Parse the value of `or=`/`and=`: `(cond,cond,...)`.
pub fn parse_logic(param: &str, text: &str) -> Result<Vec<Condition>, ApiError> {
    let param = if param.contains('.') && !param.starts_with("not.") {
        param.rsplit('.').next().unwrap_or(param)
    } else {
        param
    };
    // PostgREST parses `or(…)` (the operator, then the value): its error
    // columns count the operator's characters too
    let mut c = Cursor::new("logic tree", text);
    c.offset = param.chars().count();
    c.skip_ws();
    let children = logic_group(&mut c, 0)?;
    // PostgREST stops at the group's end: blanks and stray closing
    // brackets after it are ignored (`(a.eq.1))`), anything else is an error
    while matches!(c.peek(), Some(ch) if ch == ')' || ch.is_whitespace()) {
        c.pos += 1;
    }
    if !c.eof() {
        return Err(c.error("end of input"));
    }
    Ok(children)
}

fn logic_group(c: &mut Cursor, depth: usize) -> Result<Vec<Condition>, ApiError> {
    if depth > MAX_DEPTH {
        return Err(c.error("less nesting"));
    }
    c.expect('(')?;
    let mut out = Vec::new();
    loop {
        c.skip_ws();
        out.push(logic_condition(c, depth)?);
        c.skip_ws();
        match c.peek() {
            Some(',') => c.pos += 1,
            Some(')') => {
                c.pos += 1;
                return Ok(out);
            }
            _ => return Err(c.error("\",\" or \")\"")),
        }
    }
}

fn logic_condition(c: &mut Cursor, depth: usize) -> Result<Condition, ApiError> {
    let save = c.pos;
    let negate = c.eat("not.");
    for (kw, or) in [("or", true), ("and", false)] {
        // blanks may stand between the operator and its bracket: `and (…)`
        let mut k = c.pos + kw.len();
        while matches!(c.chars.get(k), Some(ch) if ch.is_whitespace()) {
            k += 1;
        }
        if c.looking_at(kw) && c.chars.get(k) == Some(&'(') {
            c.pos = k;
            let children = logic_group(c, depth + 1)?;
            return Ok(Condition::Group {
                or,
                negate,
                children,
            });
        }
    }
    c.pos = save;
    if negate {
        c.pos += 4;
    }
    if matches!(c.peek(), None | Some(',' | ')' | '(')) {
        return Err(c.error(
            "field name (* or [a..z0..9_$]), negation operator (not) or logic operator (and, or)",
        ));
    }
    c.pos = save;
    let field = c.field()?;
    c.expect('.')?;
    // Find where this condition's value ends: the first ',' or ')' at depth 0
    // outside double quotes.
    let mut i = c.pos;
    let mut nest = 0i32;
    let mut in_quotes = false;
    while i < c.chars.len() {
        let ch = c.chars[i];
        if in_quotes {
            if ch == '\\' {
                i += 1;
            } else if ch == '"' {
                in_quotes = false;
            }
        } else {
            match ch {
                '"' => in_quotes = true,
                '(' | '{' | '[' => nest += 1,
                ')' | '}' | ']' if nest > 0 => nest -= 1,
                ',' | ')' if nest == 0 => break,
                _ => {}
            }
        }
        i += 1;
    }
    if in_quotes {
        c.pos = i;
        return Err(c.error("closing '\"'"));
    }
    let mut f = operation(c, field, Some(i))?;
    // A whole-value double-quoted literal: unquote it.
    if let Value::Single(s) = &f.value {
        if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
            let mut qc = Cursor::new(c.param, s);
            if let Ok(v) = qc.quoted() {
                if qc.eof() {
                    let v = if matches!(f.op, Operator::Like | Operator::Ilike) {
                        v.replace('*', "%")
                    } else {
                        v
                    };
                    f.value = Value::Single(v);
                }
            }
        }
    }
    Ok(Condition::Filter(f))
}

/// Parse `order=`.
pub fn parse_order(text: &str) -> Result<Vec<OrderTerm>, ApiError> {
    let mut c = Cursor::new("order", text);
    let mut out = Vec::new();
    loop {
        c.skip_ws();
        let first = c.field()?;
        let (relation, field) = if c.peek() == Some('(') && first.path.is_empty() {
            c.pos += 1;
            let f = c.field()?;
            c.expect(')')?;
            (Some(first.name), f)
        } else {
            (None, first)
        };
        let mut term = OrderTerm {
            relation,
            field,
            direction: None,
            nulls: None,
        };
        // PostgREST's grammar: `field[.asc|.desc][.nullsfirst|.nullslast]`,
        // with parsec's errors (the first word that does not match, at its
        // start; a stray character after a complete term)
        if c.peek() == Some('.') {
            c.pos += 1;
            if c.eat("asc") {
                term.direction = Some(Direction::Asc);
            } else if c.eat("desc") {
                term.direction = Some(Direction::Desc);
            } else if let Some(n) = order_nulls(&mut c) {
                term.nulls = Some(n);
            } else {
                return Err(c.keyword_error(&["asc", "desc", "nullsfirst", "nullslast"]));
            }
            if term.direction.is_some() && c.peek() == Some('.') {
                c.pos += 1;
                match order_nulls(&mut c) {
                    Some(n) => term.nulls = Some(n),
                    None => return Err(c.keyword_error(&["nullsfirst", "nullslast"])),
                }
            }
        }
        c.skip_ws();
        if !c.eof() && c.peek() != Some(',') {
            let expecting = if term.nulls.is_none() {
                "delimiter (.), \",\" or end of input"
            } else {
                "\",\" or end of input"
            };
            return Err(c.char_error(expecting));
        }
        out.push(term);
        c.skip_ws();
        if c.eof() {
            return Ok(out);
        }
        c.expect(',')?;
    }
}

/// `nullsfirst` / `nullslast` at the cursor.
fn order_nulls(c: &mut Cursor) -> Option<Nulls> {
    if c.eat("nullsfirst") {
        Some(Nulls::First)
    } else if c.eat("nullslast") {
        Some(Nulls::Last)
    } else {
        None
    }
}

/// PostgREST's top level range: the `Range` header (`0-9`, `items=5-`)
/// intersected with the query's `offset`/`limit`, as (offset, limit). A header
/// that does not parse is ignored; `limit=0` stands as it is. Errors (416
/// `PGRST103`): a header whose lower bound is above its upper one, and a
/// header that does not overlap `offset`/`limit`.
pub fn apply_range(
    header: Option<&str>,
    offset: Option<u64>,
    limit: Option<u64>,
) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let Some(h) = header else {
        return Ok((offset, limit));
    };
    let t = h.trim();
    let t = t.strip_prefix("items=").unwrap_or(t);
    let Some((a, b)) = t.split_once('-') else {
        return Ok((offset, limit));
    };
    let (Ok(h_lo), hi) = (a.trim().parse::<u64>(), b.trim()) else {
        return Ok((offset, limit));
    };
    let h_hi = match hi {
        "" => None,
        hi => match hi.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => return Ok((offset, limit)),
        },
    };
    if h_hi.is_some_and(|hi| hi < h_lo) {
        return Err(ApiError::range(
            "Requested range not satisfiable",
            "The lower boundary must be lower than or equal to the upper boundary in the Range header.",
        ));
    }
    if limit == Some(0) {
        return Ok((offset, limit));
    }
    let q_lo = offset.unwrap_or(0);
    let q_hi = limit.map(|l| q_lo.saturating_add(l - 1));
    let lo = h_lo.max(q_lo);
    let hi = match (h_hi, q_hi) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if hi.is_some_and(|hi| hi < lo) {
        return Err(ApiError::range(
            "Requested range not satisfiable",
            "The Range header and the limit/offset of the query do not overlap.",
        ));
    }
    // `Range: 0-18446744073709551615` is "all": no wrap-around, and a
    // LIMIT PostgreSQL's bigint can take
    Ok((
        Some(lo),
        hi.map(|hi| (hi - lo).saturating_add(1).min(i64::MAX as u64)),
    ))
}

/// The `Content-Range` of a response: `from-to/total` for `page` rows
/// starting at `from`, `*/total` for none; `total` is `*` when not counted.
pub fn content_range(from: u64, page: i64, total: Option<i64>) -> String {
    let total = total.map_or_else(|| "*".to_string(), |t| t.to_string());
    if page <= 0 {
        format!("*/{total}")
    } else {
        format!("{from}-{}/{total}", from as i64 + page - 1)
    }
}

/// `request.headers` as PostgREST sets it: a JSON object of the request's
/// header names (lower case, as HTTP/2 and the `http` crate give them) and
/// values; of a repeated name the last value wins.
pub fn headers_json<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(16);
    for (k, v) in headers {
        match pairs.iter_mut().find(|(pk, _)| *pk == k) {
            Some(p) => p.1 = v,
            None => pairs.push((k, v)),
        }
    }
    let mut out = String::with_capacity(
        2 + pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>(),
    );
    out.push('{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, k);
        out.push(':');
        push_json_str(&mut out, v);
    }
    out.push('}');
    out
}

/// `s` as a JSON string literal: copied as is unless it needs escaping.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f)
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

/// `request.cookies` as PostgREST sets it: a JSON object of the `Cookie`
/// headers' name=value pairs (RFC 6265 §4.2.1; the last of a repeated name
/// wins; pairs without `=` are skipped).
pub fn cookies_json<'a>(cookie_headers: impl Iterator<Item = &'a str>) -> String {
    let mut m = serde_json::Map::new();
    for h in cookie_headers {
        for pair in h.split(';') {
            if let Some((k, v)) = pair.split_once('=') {
                let k = k.trim();
                if !k.is_empty() {
                    let v = v.trim();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(v);
                    m.insert(k.to_string(), serde_json::Value::String(v.to_string()));
                }
            }
        }
    }
    serde_json::Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(headers_json([]), "{}");
        assert_eq!(
            headers_json([("a", "1"), ("b", "x\"y\\z\t"), ("a", "2")]),
            r#"{"a":"2","b":"x\"y\\z\t"}"#
        );
    }

    proptest::proptest! {
        /// Any header list gives valid JSON holding each name's last value.
        #[test]
        fn headers_json_is_json(pairs in proptest::collection::vec(("[a-c]{1,2}", "\\PC{0,8}|[\\x00-\\x7f]{0,8}"), 0..12)) {
            let text = headers_json(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let parsed: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&text).expect("valid JSON");
            let mut want = serde_json::Map::new();
            for (k, v) in &pairs {
                want.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
            proptest::prop_assert_eq!(parsed, want);
        }
    }

    #[test]
    fn cookies() {
        assert_eq!(cookies_json(std::iter::empty()), "{}");
        assert_eq!(
            cookies_json(["a=1; b = \"two\" ;junk; =x", "a=3"].into_iter()),
            r#"{"a":"3","b":"two"}"#
        );
    }

    fn col(name: &str) -> SelectItem {
        SelectItem::Column {
            field: Field::plain(name),
            alias: None,
            cast: None,
            aggregate: None,
            aggregate_cast: None,
        }
    }

    #[test]
    fn json_keys_take_any_unreserved_character() {
        let s = parse_select("data->!@#$%^&*_d->>!@#$%^&*_e::integer,x:data->a b->c:d").unwrap();
        let SelectItem::Column { field, cast, .. } = &s[0] else {
            panic!("{s:?}")
        };
        assert_eq!(
            field.path,
            vec![
                JsonStep {
                    arrow: Arrow::Json,
                    key: JsonKey::Name("!@#$%^&*_d".into())
                },
                JsonStep {
                    arrow: Arrow::Text,
                    key: JsonKey::Name("!@#$%^&*_e".into())
                },
            ]
        );
        assert_eq!(cast.as_deref(), Some("integer"));
        let SelectItem::Column { field, .. } = &s[1] else {
            panic!("{s:?}")
        };
        assert_eq!(field.path[1].key, JsonKey::Name("c:d".into()));
        // reserved characters, and a `-` that starts no index
        let e = parse_select("data->(x").unwrap_err();
        assert_eq!(e.code, "PGRST100");
        let e = parse_select("data->>--34").unwrap_err();
        assert!(e.message.contains("column 9"), "{}", e.message);
        assert!(parse_select("data->-1,data->-x").is_err());
    }

    #[test]
    fn select_columns_aliases_casts_paths() {
        let s = parse_select("id,full:name,price::text,data->a->>b,data->0").unwrap();
        assert_eq!(s[0], col("id"));
        match &s[1] {
            SelectItem::Column { field, alias, .. } => {
                assert_eq!(field.name, "name");
                assert_eq!(alias.as_deref(), Some("full"));
            }
            _ => panic!(),
        }
        match &s[2] {
            SelectItem::Column { cast, .. } => assert_eq!(cast.as_deref(), Some("text")),
            _ => panic!(),
        }
        match &s[3] {
            SelectItem::Column { field, .. } => {
                assert_eq!(field.path.len(), 2);
                assert_eq!(field.path[1].arrow, Arrow::Text);
                assert_eq!(field.output_name(), "b");
            }
            _ => panic!(),
        }
        match &s[4] {
            SelectItem::Column { field, .. } => assert_eq!(field.path[0].key, JsonKey::Index(0)),
            _ => panic!(),
        }
    }

    #[test]
    fn select_embeds_hints_spreads() {
        let s = parse_select(
            "*,org:organisations!fk_org!inner(name,parent:organisations(*)),...metrics(code)",
        )
        .unwrap();
        assert_eq!(s[0], SelectItem::Star);
        match &s[1] {
            SelectItem::Embed(e) => {
                assert_eq!(e.name, "organisations");
                assert_eq!(e.alias.as_deref(), Some("org"));
                assert_eq!(e.hint.as_deref(), Some("fk_org"));
                assert_eq!(e.join, Some(JoinKind::Inner));
                assert!(
                    matches!(&e.select[1], SelectItem::Embed(inner) if inner.label() == "parent")
                );
            }
            _ => panic!(),
        }
        assert!(matches!(&s[2], SelectItem::Embed(e) if e.spread && e.name == "metrics"));
        assert_eq!(parse_select("").unwrap(), vec![SelectItem::Star]);
        assert!(
            matches!(&parse_select("rel!left()").unwrap()[0], SelectItem::Embed(e) if e.select.is_empty() && e.join == Some(JoinKind::Left))
        );
    }

    #[test]
    fn select_aggregates() {
        let s = parse_select("count(),value.sum(),value::int.avg()::text").unwrap();
        assert!(matches!(
            &s[0],
            SelectItem::Column {
                aggregate: Some(Aggregate::Count),
                ..
            }
        ));
        assert!(matches!(
            &s[1],
            SelectItem::Column {
                aggregate: Some(Aggregate::Sum),
                ..
            }
        ));
        assert!(
            matches!(&s[2], SelectItem::Column { aggregate: Some(Aggregate::Avg), cast: Some(c), aggregate_cast: Some(ac), .. } if c == "int" && ac == "text")
        );
    }

    #[test]
    fn select_errors_have_positions() {
        let e = parse_select("id,,name").unwrap_err();
        assert_eq!(e.code, "PGRST100");
        assert_eq!(e.status, 400);
        assert!(
            e.message
                .contains("failed to parse select parameter (id,,name)"),
            "{}",
            e.message
        );
        assert!(e.message.contains("column 4"), "{}", e.message);
        let e = parse_select("rel(id").unwrap_err();
        assert!(e.message.contains("column 7"), "{}", e.message);
        let e = parse_select("id::int;drop").unwrap_err();
        assert!(e.message.contains("column 8"), "{}", e.message);
        let e = parse_select("id.foo()").unwrap_err();
        assert!(e.message.contains("column 4"), "{}", e.message);
        assert!(parse_select("a::").is_err());
        assert!(parse_select(&"r(".repeat(40)).is_err());
    }

    /// As PostgREST's parser (no end of input asked for): the top-level
    /// list ends after an embed or spread, or at a `)`, and the rest is
    /// ignored; inside an embed the list must end with its `)`.
    #[test]
    fn select_ignores_what_follows_a_complete_list() {
        let items = parse_select("name,projects(count)'").unwrap();
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[1], SelectItem::Embed(e) if e.name == "projects"));
        assert_eq!(parse_select("...rel(a) junk,b").unwrap().len(), 1);
        assert_eq!(parse_select("a)").unwrap().len(), 1);
        assert_eq!(parse_select("a,b)c").unwrap().len(), 2);
        // a column followed by anything else, and junk inside an embed, fail
        for bad in ["id::int;drop", "c(p(id)x)", "c(id'", "a,", "a b(c"] {
            let e = parse_select(bad).unwrap_err();
            assert_eq!(e.code, "PGRST100", "{bad}");
        }
    }

    #[test]
    fn select_names_take_postgrest_field_name_characters() {
        let name = |text: &str| match parse_select(text).unwrap().remove(0) {
            SelectItem::Column { field, .. } => field.name,
            SelectItem::Embed(e) => e.name,
            SelectItem::Star => "*".into(),
        };
        for (text, want) in [
            ("Just A Server Model", "Just A Server Model"),
            ("ñame", "ñame"),
            ("تست", "تست"),
            ("a$b", "a$b"),
            ("a-b", "a-b"),
            ("a-b->c", "a-b"),
            ("\"a#b'c\"", "a#b'c"),
            ("r-1(id)", "r-1"),
        ] {
            assert_eq!(name(text), want, "{text}");
        }
        // anything else ends the name, and a column must then end
        for (bad, column) in [
            ("name'", 5),
            ("name;x", 5),
            ("a#b", 2),
            ("a,b%c", 4),
            ("r(x@y)", 4),
        ] {
            let e = parse_select(bad).unwrap_err();
            assert_eq!(e.code, "PGRST100", "{bad}");
            assert!(
                e.message.ends_with(&format!("(line 1, column {column})")),
                "{bad}: {}",
                e.message
            );
        }
    }

    #[test]
    fn filter_keys_end_where_postgrest_field_names_end() {
        let pairs: Vec<(String, String)> = [
            ("title[0]", "ilike.*a*"),
            ("title[1]", "ilike.*b*"),
            ("data->k[x]", "eq.1"),
            ("views@gte", "gte.2"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let q = parse_query(&pairs).unwrap();
        let fields: Vec<(String, usize)> = q
            .root
            .conditions
            .iter()
            .map(|c| match c {
                Condition::Filter(f) => (f.field.name.clone(), f.field.path.len()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            fields,
            [("title", 0), ("title", 0), ("data", 1), ("views", 0)]
                .map(|(n, p)| (n.to_string(), p))
        );
        // a key that does not start with a field name is still an error
        let bad = vec![("[0]title".to_string(), "eq.1".to_string())];
        assert_eq!(parse_query(&bad).unwrap_err().code, "PGRST100");
    }

    fn filter(v: &str) -> Filter {
        parse_filter(Field::plain("c"), v).unwrap()
    }

    #[test]
    fn every_operator_parses() {
        for op in Operator::ALL {
            let v = match op {
                Operator::Is => "is.null".to_string(),
                Operator::In => "in.(1,2)".to_string(),
                _ => format!("{}.x", op.name()),
            };
            let f = filter(&v);
            assert_eq!(f.op, op);
            let nf = filter(&format!("not.{v}"));
            assert!(nf.negate);
        }
    }

    #[test]
    fn filter_values() {
        assert_eq!(filter("eq.a.b").value, Value::Single("a.b".into()));
        assert_eq!(filter("like.*a*").value, Value::Single("%a%".into()));
        assert_eq!(
            filter("in.(1,\"a,b\",\"q\\\"x\")").value,
            Value::List(vec!["1".into(), "a,b".into(), "q\"x".into()])
        );
        assert_eq!(filter("in.()").value, Value::List(vec![]));
        assert_eq!(filter("is.NULL").value, Value::Is(IsValue::Null));
        assert_eq!(filter("is.not_null").value, Value::Is(IsValue::NotNull));
        let f = filter("like(any).{a*,b*}");
        assert_eq!(f.quantifier, Some(Quantifier::Any));
        assert_eq!(f.value, Value::List(vec!["a%".into(), "b%".into()]));
        let f = filter("fts(english).cat & dog");
        assert_eq!(f.language.as_deref(), Some("english"));
        assert_eq!(f.value, Value::Single("cat & dog".into()));
        assert_eq!(filter("eq.").value, Value::Single("".into()));
        assert!(parse_filter(Field::plain("c"), "nope.1").is_err());
        assert!(parse_filter(Field::plain("c"), "is.maybe").is_err());
        assert!(parse_filter(Field::plain("c"), "in.1,2").is_err());
        assert!(parse_filter(Field::plain("c"), "eq").is_err());
        assert!(parse_filter(Field::plain("c"), "neq(any).{1}").is_err());
        assert!(parse_filter(Field::plain("c"), "fts(en;x).a").is_err());
    }

    #[test]
    fn logic_trees() {
        let l = parse_logic(
            "or",
            "(a.eq.1,b.in.(1,2),and(c.gt.1,d.not.is.null),not.or(e.like.*x*,f->>g.eq.\"a,b)\"))",
        )
        .unwrap();
        assert_eq!(l.len(), 4);
        match &l[1] {
            Condition::Filter(f) => assert_eq!(f.value, Value::List(vec!["1".into(), "2".into()])),
            _ => panic!(),
        }
        match &l[2] {
            Condition::Group {
                or,
                negate,
                children,
            } => {
                assert!(!or && !negate);
                assert!(
                    matches!(&children[1], Condition::Filter(f) if f.negate && f.op == Operator::Is)
                );
            }
            _ => panic!(),
        }
        match &l[3] {
            Condition::Group {
                or,
                negate,
                children,
            } => {
                assert!(*or && *negate);
                assert!(
                    matches!(&children[0], Condition::Filter(f) if f.value == Value::Single("%x%".into()))
                );
                assert!(
                    matches!(&children[1], Condition::Filter(f) if f.value == Value::Single("a,b)".into()) && f.field.path.len() == 1)
                );
            }
            _ => panic!(),
        }
        // PostgREST's wording; columns count the operator it parses first
        let e = parse_logic("or", "(a.eq.1,b)").unwrap_err();
        assert_eq!(
            e.message,
            "\"failed to parse logic tree ((a.eq.1,b))\" (line 1, column 12)"
        );
        let e = parse_logic("or", "()").unwrap_err();
        assert_eq!(
            e.message,
            "\"failed to parse logic tree (())\" (line 1, column 4)"
        );
        assert_eq!(
            e.details.as_deref(),
            Some("unexpected \")\" expecting field name (* or [a..z0..9_$]), negation operator (not) or logic operator (and, or)")
        );
        let e = parse_logic("not.and", "(a.eq.1,)").unwrap_err();
        assert!(e.message.ends_with("(line 1, column 16)"), "{}", e.message);
        assert!(parse_logic("or", "a.eq.1").is_err());
        assert!(parse_logic("or", "(a.eq.1").is_err());
        assert!(parse_logic("or", "(a.eq.\"1)").is_err());
    }

    #[test]
    fn order_terms() {
        let o = parse_order("a.desc.nullslast,b,data->>x.asc,org(name).desc").unwrap();
        assert_eq!(o[0].direction, Some(Direction::Desc));
        assert_eq!(o[0].nulls, Some(Nulls::Last));
        assert_eq!(o[1].direction, None);
        assert_eq!(o[2].field.path.len(), 1);
        assert_eq!(o[3].relation.as_deref(), Some("org"));
        assert!(parse_order("a.sideways").is_err());
        assert!(parse_order("a,").is_err());
        assert_eq!(
            parse_order("a.nullsfirst").unwrap()[0].nulls,
            Some(Nulls::First)
        );
        // PostgREST's grammar and its parsec errors, position and wording
        let err = |t: &str| {
            let e = parse_order(t).unwrap_err();
            (e.message, e.details.unwrap_or_default())
        };
        assert_eq!(
            err("id.ac"),
            (
                "\"failed to parse order (id.ac)\" (line 1, column 4)".into(),
                "unexpected \"c\" expecting \"asc\", \"desc\", \"nullsfirst\" or \"nullslast\""
                    .into()
            )
        );
        assert_eq!(
            err("id.descc").1,
            "unexpected 'c' expecting delimiter (.), \",\" or end of input"
        );
        assert!(err("id.descc").0.ends_with("(line 1, column 8)"));
        assert_eq!(
            err("id.asc.nlsfst").1,
            "unexpected \"l\" expecting \"nullsfirst\" or \"nullslast\""
        );
        assert!(err("id.asc.nlsfst").0.ends_with("(line 1, column 8)"));
        assert_eq!(
            err("id.nullslasttt").1,
            "unexpected 't' expecting \",\" or end of input"
        );
        assert!(err("id.nullslasttt").0.ends_with("(line 1, column 13)"));
        assert_eq!(
            err("id.as").1.split(" expecting").next(),
            Some("unexpected end of input")
        );
        // Content-Location's canonical query string
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            canonical_query(&pairs(&[("b", "eq.1"), ("a", "eq.1")])),
            "a=eq.1&b=eq.1"
        );
        assert_eq!(
            canonical_query(&pairs(&[
                ("select", "id,name"),
                ("d", ""),
                ("c", "in.(1, 2)"),
                ("c", "é")
            ])),
            "c=in.%281%2C%202%29&c=%C3%A9&d=&select=id%2Cname"
        );
        assert_eq!(canonical_query(&[]), "");
        // a filter without an operator: PostgREST's wording
        let q = |k: &str, v: &str| parse_query(&[(k.to_string(), v.to_string())]).unwrap_err();
        let e = q("id", "0");
        assert_eq!(
            e.message,
            "\"failed to parse filter (0)\" (line 1, column 1)"
        );
        assert_eq!(
            e.details.as_deref(),
            Some("unexpected \"0\" expecting \"not\" or operator (eq, gt, ...)")
        );
        let e = q("a.b", "noop.0");
        assert_eq!(
            e.details.as_deref(),
            Some("unexpected \"o\" expecting \"not\" or operator (eq, gt, ...)")
        );
        // options come in PostgREST's order only
        assert!(parse_order("a.nullsfirst.desc").is_err());
        assert!(parse_order("a.asc.desc").is_err());
    }

    #[test]
    fn query_levels() {
        let pairs: Vec<(String, String)> = [
            ("select", "id,items(id)"),
            ("id", "gt.1"),
            ("items.price", "lt.5"),
            ("items.order", "id.desc"),
            ("items.limit", "2"),
            ("or", "(id.eq.1,id.eq.2)"),
            ("limit", "10"),
            ("offset", "5"),
            ("data->>a", "eq.1"),
            ("not.or", "(id.eq.1,id.eq.2)"),
            ("items.not.and", "(id.eq.1,id.eq.2)"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let q = parse_query(&pairs).unwrap();
        assert_eq!(q.root.limit, Some(10));
        assert_eq!(q.root.offset, Some(5));
        assert_eq!(q.root.conditions.len(), 4);
        let items = q.level(&["items".to_string()]).unwrap();
        assert_eq!(items.limit, Some(2));
        assert_eq!(items.conditions.len(), 2);
        assert_eq!(items.order.len(), 1);
        assert!(parse_query(&[("limit".into(), "-1".into())]).is_err());
        assert!(parse_query(&[("id".into(), "xx.1".into())]).is_err());
    }

    #[test]
    fn embed_paths_by_alias_or_relation_name() {
        let q = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            parse_query(&pairs).unwrap()
        };
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // the relation name reaches the aliased embed, before or after select
        for pairs in [
            &[
                ("select", "id,the_tasks:tasks(id,users(id))"),
                ("tasks.order", "name"),
                ("tasks.users.id", "eq.1"),
            ][..],
            &[
                ("tasks.users.id", "eq.1"),
                ("tasks.order", "name"),
                ("select", "id,the_tasks:tasks(id,users(id))"),
            ][..],
        ] {
            let q = q(pairs);
            assert_eq!(q.embedded.len(), 2, "{q:?}");
            assert_eq!(q.level(&path(&["the_tasks"])).unwrap().order.len(), 1);
            assert_eq!(
                q.level(&path(&["the_tasks", "users"]))
                    .unwrap()
                    .conditions
                    .len(),
                1
            );
        }
        // both spellings of one embed merge; the later limit wins
        let q = q(&[
            ("select", "id,t:tasks(id)"),
            ("t.id", "gt.1"),
            ("tasks.id", "lt.9"),
            ("t.limit", "1"),
            ("tasks.limit", "2"),
        ]);
        assert_eq!(q.embedded.len(), 1);
        let t = q.level(&path(&["t"])).unwrap();
        assert_eq!((t.conditions.len(), t.limit), (2, Some(2)));
        // an unknown name stays (PGRST108 when the SQL is built)
        let q2 = super::parse_query(&[("nope.id".into(), "eq.1".into())]).unwrap();
        assert_eq!(q2.embedded[0].0, path(&["nope"]));
    }

    #[test]
    fn nul_and_deep_json_paths_are_parse_errors() {
        let q = |k: &str, v: &str| parse_query(&[(k.to_string(), v.to_string())]);
        for (k, v) in [
            ("select", "\0:code"),
            ("select", "doc->\0"),
            ("order", "co\0de"),
            ("columns", "a\0"),
            ("on_conflict", "a\0"),
            ("co\0de", "eq.1"),
            ("rel.select", "a\0"),
        ] {
            let e = q(k, v).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (400, "PGRST100"),
                "{k:?}={v:?}"
            );
        }
        // a NUL in a filter value is a value (PostgreSQL refuses it as data)
        assert!(q("code", "eq.a\0b").is_ok());
        let deep = format!("doc{}", "->a".repeat(MAX_JSON_PATH + 1));
        let e = q("select", &deep).unwrap_err();
        assert_eq!(e.code, "PGRST100");
        assert!(e.message.contains("JSON path"), "{}", e.message);
        assert!(q("select", &format!("doc{}", "->a".repeat(MAX_JSON_PATH))).is_ok());
    }

    #[test]
    fn range_header() {
        // the widest range: no wrap-around, a limit bigint takes
        assert_eq!(
            apply_range(Some("0-18446744073709551615"), None, None).unwrap(),
            (Some(0), Some(i64::MAX as u64))
        );
        assert_eq!(
            apply_range(Some("5-18446744073709551615"), None, None).unwrap(),
            (Some(5), Some(i64::MAX as u64))
        );
        // the header and offset/limit intersect
        assert_eq!(
            apply_range(None, Some(3), Some(2)).unwrap(),
            (Some(3), Some(2))
        );
        assert_eq!(
            apply_range(Some("0-9"), None, None).unwrap(),
            (Some(0), Some(10))
        );
        assert_eq!(
            apply_range(Some("items=5-"), None, None).unwrap(),
            (Some(5), None)
        );
        assert_eq!(
            apply_range(Some("0-9"), Some(5), None).unwrap(),
            (Some(5), Some(5))
        );
        assert_eq!(
            apply_range(Some("0-9"), None, Some(3)).unwrap(),
            (Some(0), Some(3))
        );
        assert_eq!(
            apply_range(Some("2-"), Some(1), Some(5)).unwrap(),
            (Some(2), Some(4))
        );
        assert_eq!(
            apply_range(Some("0-9"), None, Some(0)).unwrap(),
            (None, Some(0))
        );
        assert_eq!(
            apply_range(Some("junk"), Some(1), None).unwrap(),
            (Some(1), None)
        );
        assert_eq!(apply_range(Some("1-x"), None, None).unwrap(), (None, None));
        let e = apply_range(Some("9-0"), None, None).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (416, "PGRST103"));
        assert!(apply_range(Some("0-9"), Some(20), None).is_err());
        assert!(apply_range(Some("0-9"), Some(20), Some(5)).is_err());
        assert_eq!(content_range(0, 2, Some(2)), "0-1/2");
        assert_eq!(content_range(0, 0, Some(2)), "*/2");
        assert_eq!(content_range(5, 1, None), "5-5/*");
        assert_eq!(content_range(0, 0, None), "*/*");
    }

    #[test]
    fn rpc_arguments_split_as_postgrest() {
        // arguments: plain keys with plain values, known to the function or not
        for (k, v) in [
            ("name", "world"),
            ("v", "hi"),
            ("smthelse", "blabla"),
            ("", "x"),
            ("a", ""),
            ("n", "equal.1"),
            ("n", "notice"),
            ("n", "(1,2)"),
        ] {
            assert!(is_rpc_argument(k, v), "{k}={v}");
        }
        // filters, logic, paging and reserved keys
        for (k, v) in [
            ("id", "gt.2"),
            ("id", "eq"),
            ("id", "not.gt.2"),
            ("id", "not.in.(1,3)"),
            ("id", "in.(1,2)"),
            ("id", "is.null"),
            ("id", "eq(any).{1,2}"),
            ("id", "isdistinct.3"),
            ("tsv", "fts(english).fun"),
            ("tsv", "plfts.x"),
            ("rel.id", "5"),
            ("select", "id"),
            ("columns", "a,b"),
            ("order", "id"),
            ("limit", "1"),
            ("offset", "1"),
            ("or", "(a.eq.1)"),
            ("not.and", "(a.eq.1)"),
            ("rel.order", "id"),
        ] {
            assert!(!is_rpc_argument(k, v), "{k}={v}");
        }
    }

    #[test]
    fn lenient_forms_postgrest_accepts() {
        let list = |v: &str| match parse_filter(
            Field {
                name: "a".into(),
                path: vec![],
            },
            v,
        )
        .unwrap()
        .value
        {
            Value::List(items) => items,
            other => panic!("{other:?}"),
        };
        assert!(list("in.(   )").is_empty());
        assert!(list("in.()").is_empty());
        assert!(list("in.(\"\")").is_empty());
        assert_eq!(list("in.(\")"), vec!["\"".to_string()]);
        assert_eq!(list("in.(\"a,b\",c)"), vec!["a,b".to_string(), "c".into()]);
        assert_eq!(
            list("in.(\"a\"b,c)"),
            vec!["\"a\"b".to_string(), "c".into()]
        );
        assert_eq!(list("in.( 1, 2 ) "), vec!["1".to_string(), " 2 ".into()]);
        // logic trees: blanks around operators and brackets, stray `)`
        let q = parse_query(&[(
            "and".to_string(),
            "( and ( id.in.( 1, 2, 3 ) , id.eq.3 ) , or ( id.eq.2 , id.eq.3 ) )".to_string(),
        )])
        .unwrap();
        assert_eq!(q.root.conditions.len(), 1);
        assert!(parse_logic("and", "(id.eq.1,id.neq.2))").is_ok());
        assert!(parse_logic("and", "(id.eq.1)x").is_err());
        assert!(parse_logic("or", "()").is_err());
        // names may hold spaces, not around them
        let sel = parse_select("Just A Server Model, id ").unwrap();
        assert!(
            matches!(&sel[0], SelectItem::Column { field, .. } if field.name == "Just A Server Model")
        );
        assert!(matches!(&sel[1], SelectItem::Column { field, .. } if field.name == "id"));
        // negative limit: 416; negative offset: none
        let e = parse_query(&[("limit".into(), "-1".into())]).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (416, "PGRST103"));
        let q = parse_query(&[("offset".into(), "-4".into())]).unwrap();
        assert_eq!(q.root.offset, None);
        assert!(parse_query(&[("limit".into(), "x".into())]).is_err());
    }
}
