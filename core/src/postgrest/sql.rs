//! From a parsed request and the schema cache to one parameterised statement.
//!
//! Values are always bind parameters (`$n`), sent as untyped text so the
//! server infers their type from the context, exactly like a literal in
//! PostgREST's queries. Identifiers are always quoted. Type names come only
//! from the catalog (column and argument types) or from a cast the parser
//! has checked to be letters, digits, underscores and spaces; casts are
//! emitted quoted, after mapping SQL's aliases (`int`, `double precision`)
//! to the catalog's names.
//!
//! Every statement returns one row: `total_count` (NULL unless counted),
//! `page_count`, `body` (JSON text, NULL when not asked for),
//! `response_headers` and `response_status` (what the SQL set in the
//! `response.*` settings, PostgREST's protocol for functions).

use super::ast::*;
use super::error::ApiError;
use super::schema::{ComputedField, Function, Relationship, Schema, Table};
use crate::ident::{quote_ident, quote_qualified, unquote_ident};

/// A statement and its parameters (text, or NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Option<String>>,
    /// The rows a read counts, as `SELECT 1 FROM …` using `params`' numbers
    /// (for the planner's estimate of `Prefer: count=planned|estimated`;
    /// see [`count_plan`]).
    pub count_query: Option<String>,
}

/// Settings that shape statements (hashable: with the query they are the
/// key of a cached statement).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Options {
    /// `db-aggregates-enabled`.
    pub aggregates: bool,
    /// `db-max-rows`: a cap on the root level's rows.
    pub max_rows: Option<u64>,
    /// `Accept: text/csv`: the body is `{"h": [column names in select
    /// order], "r": [each row's record text]}` (see [`super::csv`]).
    pub csv: bool,
    /// `Prefer: count=estimated`: count at most this many rows
    /// (`db-max-rows + 1`, as PostgREST).
    pub count_cap: Option<u64>,
    /// `Accept: application/vnd.pgrst.array+json;nulls=stripped` (or the
    /// object form): the JSON body goes through `json_strip_nulls`.
    pub strip_nulls: bool,
    /// `Prefer: count=planned|estimated`: keep the count query on the
    /// statement for [`count_plan`] (otherwise it is not built).
    pub plan_count: bool,
    /// A media type handler answers (`Function::media_type`): the body of a
    /// scalar function's call is its value itself, not JSON.
    pub raw: Option<RawValue>,
    /// A table's media type handler (an aggregate, PostgREST's handlers
    /// for tables and views): the body is its value over the rows.
    pub handler: Option<AggHandler>,
    /// `Accept: application/geo+json`: PostGIS's `st_asgeojson(record)`
    /// ([`super::schema::Schema::geojson`]); the body is a GeoJSON
    /// `FeatureCollection` of the rows, as PostgREST builds it.
    pub geojson: Option<String>,
}

/// An aggregate answering a read in its media type (see
/// [`super::schema::MediaAggregate`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AggHandler {
    /// The aggregate, schema-qualified and quoted.
    pub func: String,
    /// The row type it takes (quoted), or none for `anyelement`.
    pub row_type: Option<String>,
    /// Its value is bytes (hex in the body column, decoded by the caller).
    pub binary: bool,
}

impl AggHandler {
    /// The handler for a media aggregate of the schema cache.
    pub fn of(agg: &super::schema::MediaAggregate) -> Self {
        AggHandler {
            func: quote_qualified(&agg.schema, &agg.name),
            row_type: agg.target.as_ref().map(|(s, t)| quote_qualified(s, t)),
            binary: agg.binary,
        }
    }

    /// The body expression over the rows `_postgrest_t`.
    fn body(&self) -> String {
        let arg = match &self.row_type {
            Some(t) => format!("_postgrest_t::{t}"),
            None => "_postgrest_t".to_string(),
        };
        if self.binary {
            format!("pg_catalog.encode({}({arg})::bytea, 'hex')", self.func)
        } else {
            // the type's output function (`format`), as PostgREST sends
            // the value: `xml::text` would keep an xml's raw text
            format!("pg_catalog.format('%s', {}({arg}))", self.func)
        }
    }
}

/// How a media type handler's value comes back in the body column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawValue {
    /// Its text (a domain over text, xml, json …).
    Text,
    /// Hex of its bytes (a domain over bytea), decoded by the caller.
    Hex,
}

impl RawValue {
    /// The body expression over the rows of `_postgrest_t."pgrst_scalar"`:
    /// the values one after the other; NULL (no body) when there is none.
    fn body(self) -> &'static str {
        match self {
            // the output function (an xml's text as PostgreSQL prints it,
            // as PostgREST sends it); a NULL stays no body
            RawValue::Text => "pg_catalog.string_agg(CASE WHEN _postgrest_t.\"pgrst_scalar\" IS NOT NULL THEN pg_catalog.format('%s', _postgrest_t.\"pgrst_scalar\") END, '')",
            RawValue::Hex => "pg_catalog.encode(pg_catalog.string_agg(_postgrest_t.\"pgrst_scalar\"::bytea, ''::bytea), 'hex')",
        }
    }
}

/// Which rows a write returns to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returning {
    /// Nothing (return=minimal): only the count.
    Minimal,
    /// The written rows, shaped by `select=` (return=representation).
    Representation,
    /// return=headers-only: nothing, but when exactly one row was written
    /// the body is its primary key as `[[column, JSON text or null], …]` in
    /// column order (for `Location`); NULL otherwise or without a key.
    HeadersOnly,
}

/// `Prefer: resolution=…` of an upsert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    MergeDuplicates,
    IgnoreDuplicates,
}

/// What an INSERT writes.
#[derive(Debug, Clone)]
pub struct InsertSpec {
    /// The columns written: `columns=` or the keys of the body's objects.
    pub columns: Vec<String>,
    /// The body as a JSON array of objects (text), bound as one parameter.
    pub body: String,
    /// `Prefer: missing=default`: for each row, which of `columns` it has;
    /// absent ones take the column default.
    pub present: Option<Vec<Vec<bool>>>,
    pub resolution: Option<Resolution>,
}

/// A function's arguments.
#[derive(Debug, Clone)]
pub enum Args {
    /// From the query string of `GET /rpc/fn` (name, text value).
    Text(Vec<(String, String)>),
    /// From the JSON object body of `POST /rpc/fn` (the names it has, the body).
    Json { names: Vec<String>, body: String },
    /// The whole body of `POST /rpc/fn`, for a function whose only
    /// parameter is unnamed (json, jsonb, text, xml, or bytea as `\x` hex).
    Raw(String),
}

/// Types of a single unnamed parameter that takes the raw request body.
pub const RAW_BODY_TYPES: &[&str] = &["json", "jsonb", "text", "xml", "bytea"];

/// The unnamed-parameter type a request body of `mime` goes to, as
/// PostgREST maps them (JSON: json or jsonb).
pub fn raw_body_types(mime: &str) -> &'static [&'static str] {
    match mime {
        "application/json" => &["json", "jsonb"],
        "text/plain" => &["text"],
        "text/xml" | "application/xml" => &["xml"],
        "application/octet-stream" => &["bytea"],
        _ => &[],
    }
}

/// The level of a path the query says nothing about.
static EMPTY_LEVEL: Level = Level {
    conditions: Vec::new(),
    order: Vec::new(),
    limit: None,
    offset: None,
};

struct Ctx<'a> {
    schema: &'a Schema,
    query: &'a Query,
    opts: &'a Options,
    params: Vec<Option<String>>,
    /// The relation aliases given so far (quoted), see [`Ctx::alias`].
    aliases: Vec<String>,
    /// Ignore the root level's filters/order/paging (the read-back of a write).
    skip_root: bool,
    /// The select items and embed path of each level whose conditions are
    /// being rendered (innermost last): a null filter on an embed's label
    /// (`rel=is.null`) looks its embed up there.
    scopes: Vec<(&'a [SelectItem], Vec<String>)>,
    /// Aliases whose rows are records rather than rows of their table's type
    /// (`pgrst_source`, the written rows): a computed field or relationship
    /// gets such a row cast to the table's type.
    untyped: Vec<String>,
    /// Set for the level rendered next: a to-one spread inside an
    /// aggregating level, whose aggregates the parent computes (the spread
    /// gives their raw values; see `embed`).
    defer_aggregates: bool,
    /// The lateral alias of each to-one spread, by (parent alias, label):
    /// an `order` on the spread's columns reads them there (a correlated
    /// subquery would not be grouped in an aggregating level).
    spread_laterals: Vec<(String, String, String)>,
}

/// The SQL pieces of one level of the embed tree.
#[derive(Default)]
struct LevelSql {
    select: Vec<String>,
    joins: Vec<String>,
    conditions: Vec<String>,
    group_by: Vec<String>,
    order: Vec<String>,
    paging: String,
}

impl LevelSql {
    fn select_list(&self) -> String {
        if self.select.is_empty() {
            String::new()
        } else {
            self.select.join(", ")
        }
    }

    fn tail(&self, extra_condition: Option<&str>) -> String {
        let mut s = String::new();
        for j in &self.joins {
            s.push(' ');
            s.push_str(j);
        }
        let mut conds: Vec<&str> = Vec::new();
        if let Some(c) = extra_condition {
            conds.push(c);
        }
        conds.extend(self.conditions.iter().map(String::as_str));
        if !conds.is_empty() {
            s.push_str(" WHERE ");
            s.push_str(&conds.join(" AND "));
        }
        if !self.group_by.is_empty() {
            s.push_str(" GROUP BY ");
            s.push_str(&self.group_by.join(", "));
        }
        if !self.order.is_empty() {
            s.push_str(" ORDER BY ");
            s.push_str(&self.order.join(", "));
        }
        s.push_str(&self.paging);
        s
    }

    /// Only the WHERE part (for counting): joins are LEFT and do not filter.
    fn where_only(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }
}

/// Two embeds of one level under the same name (`users!a(*),users!b(*)`,
/// or the same alias) would give an object with a repeated key: PostgREST's
/// statement names each embed's join `<parent>_<name>_<depth>`, so PostgreSQL
/// refuses it with 42712, and so does this.
fn duplicate_embeds(table: &Table, items: &[SelectItem], depth: usize) -> Result<(), ApiError> {
    let mut seen: Vec<&str> = Vec::new();
    for item in items {
        let SelectItem::Embed(e) = item else { continue };
        if e.spread {
            continue;
        }
        let label = e.label();
        if seen.contains(&label) {
            let mut name = format!("{}_{label}_{depth}", table.name);
            // PostgreSQL truncates identifiers to 63 bytes
            let mut cut = name.len().min(63);
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name.truncate(cut);
            return Err(ApiError::new(
                400,
                "42712",
                format!("table name \"{name}\" specified more than once"),
            ));
        }
        seen.push(label);
    }
    Ok(())
}

/// The type of a system column of a table (`ctid`, `xmin`, …: PostgreSQL
/// has them on every table, not on views), which PostgREST passes through
/// like any column — `order=ctid` pages a limited PATCH on a table without
/// a key.
fn system_column(table: &Table, name: &str) -> Option<&'static str> {
    if table.is_view {
        return None;
    }
    match name {
        "ctid" => Some("tid"),
        "xmin" | "xmax" => Some("xid"),
        "cmin" | "cmax" => Some("cid"),
        "tableoid" => Some("oid"),
        _ => None,
    }
}

/// PostgreSQL's 42703 for `alias.column` (the quoted alias the statement
/// gives the relation: `users`, or `messages_1` in an embed, as PostgREST's).
fn undefined_column(alias: &str, column: &str) -> ApiError {
    let name = unquote_ident(alias).unwrap_or_else(|| alias.to_string());
    ApiError::new(
        400,
        "42703",
        format!("column {name}.{column} does not exist"),
    )
}

/// Map a cast the client wrote to a quoted catalog type name.
fn cast_type(ty: &str) -> String {
    let (base, array) = match ty.strip_suffix("[]") {
        Some(b) => (b.trim(), "[]"),
        None => (ty.trim(), ""),
    };
    let lower = base.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let canonical = match words.join(" ").as_str() {
        "int" | "integer" => "int4".to_string(),
        "smallint" => "int2".to_string(),
        "bigint" => "int8".to_string(),
        "real" => "float4".to_string(),
        "float" | "double precision" => "float8".to_string(),
        "boolean" => "bool".to_string(),
        "decimal" => "numeric".to_string(),
        "char" | "character" => "bpchar".to_string(),
        "character varying" => "varchar".to_string(),
        "timestamp with time zone" => "timestamptz".to_string(),
        "timestamp without time zone" => "timestamp".to_string(),
        "time with time zone" => "timetz".to_string(),
        "time without time zone" => "time".to_string(),
        other => other.to_string(),
    };
    format!("{}{}", quote_ident(&canonical), array)
}

/// A PostgreSQL array literal of text items: `{"a","b\"c"}`.
pub fn array_literal(items: &[String]) -> String {
    let mut s = String::from("{");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        for ch in it.chars() {
            if ch == '"' || ch == '\\' {
                s.push('\\');
            }
            s.push(ch);
        }
        s.push('"');
    }
    s.push('}');
    s
}

impl<'a> Ctx<'a> {
    fn new(schema: &'a Schema, query: &'a Query, opts: &'a Options) -> Self {
        Ctx {
            schema,
            query,
            opts,
            params: Vec::new(),
            aliases: Vec::new(),
            skip_root: false,
            scopes: Vec::new(),
            untyped: Vec::new(),
            defer_aggregates: false,
            spread_laterals: Vec::new(),
        }
    }

    fn param(&mut self, v: impl Into<String>) -> String {
        self.params.push(Some(v.into()));
        format!("${}", self.params.len())
    }

    /// An alias for a relation named `name` below the statement's main one:
    /// `name_1`, `name_2`, … (PostgREST's `cities_1`), so plans and errors
    /// name the tables a request touches. Unique within the statement, and
    /// short enough that PostgreSQL's 63-byte truncation cannot merge two.
    fn alias(&mut self, name: &str) -> String {
        let mut base = name;
        while base.len() > 50 {
            let mut cut = 50;
            while !base.is_char_boundary(cut) {
                cut -= 1;
            }
            base = &base[..cut];
        }
        let mut n = 1;
        loop {
            let a = quote_ident(&format!("{base}_{n}"));
            if !self.aliases.contains(&a) {
                self.aliases.push(a.clone());
                return a;
            }
            n += 1;
        }
    }

    /// The alias of the statement's main relation: its own name, as
    /// PostgREST's `FROM "schema"."name"` gives it, unless that is one of
    /// the names the builder gives its own subqueries (then as [`Ctx::alias`]).
    fn main_alias(&mut self, name: &str) -> String {
        const FIXED: &[&str] = &[
            "_",
            "_args",
            "_b",
            "_c",
            "_e",
            "_g",
            "_s",
            "_v",
            "_postgrest_t",
            "j",
            "s",
            "t_w",
            "pgrst_location",
            "pgrst_scalar",
            "pgrst_source",
        ];
        let a = quote_ident(name);
        if FIXED.contains(&name) || self.aliases.contains(&a) {
            return self.alias(name);
        }
        self.aliases.push(a.clone());
        a
    }

    fn finish(self, sql: String) -> Statement {
        Statement {
            sql: sql.replace(KEEP_SCAN_ORDER, " OFFSET 0"),
            params: self.params,
            count_query: None,
        }
    }

    /// `count` in a select on a table without such a column: PostgREST's
    /// "count as a column" (`select=count`, `rel(count)`), which it keeps
    /// working whether or not aggregates are enabled — PostgreSQL reads
    /// `t.count` as `count(t)`.
    fn is_legacy_count(&self, table: &Table, item: &SelectItem) -> bool {
        matches!(item, SelectItem::Column { field, cast: None, aggregate: None, .. }
            if field.name == "count"
                && field.path.is_empty()
                && table.column("count").is_none()
                && self.computed_field(table, "count").is_none())
    }

    /// The `alias` row as a value of `table`'s row type, the argument of a
    /// computed field or relationship.
    fn whole_row(&self, table: &Table, alias: &str) -> String {
        if self.untyped.iter().any(|a| a == alias) {
            format!(
                "CAST(ROW({alias}.*) AS {})",
                quote_qualified(&table.schema, &table.name)
            )
        } else {
            format!("{alias}.*")
        }
    }

    /// The computed field `name` of `table`, unless a column hides it or
    /// `table` is not a table or view of the cache (a function's `RETURNS
    /// TABLE` rows have no row type to pass).
    fn computed_field(&self, table: &Table, name: &str) -> Option<&'a ComputedField> {
        if table.column(name).is_some() {
            return None;
        }
        let schema: &'a Schema = self.schema;
        schema.table(&table.schema, &table.name)?;
        schema.computed_field(&table.schema, &table.name, name)
    }

    /// A column's (or computed field's) type name, for the full-text operators.
    fn field_type<'t>(&self, table: &'t Table, name: &str) -> Option<&'t str>
    where
        'a: 't,
    {
        match table.column(name) {
            Some(c) => Some(&c.data_type),
            None => self
                .computed_field(table, name)
                .map(|c| c.data_type.as_str())
                .or_else(|| system_column(table, name)),
        }
    }

    fn field_expr(
        &mut self,
        table: &Table,
        alias: &str,
        field: &Field,
    ) -> Result<String, ApiError> {
        let mut e =
            if table.column(&field.name).is_some() || system_column(table, &field.name).is_some() {
                format!("{alias}.{}", quote_ident(&field.name))
            } else if let Some(cf) = self.computed_field(table, &field.name) {
                format!(
                    "{}({})",
                    quote_qualified(&cf.schema, &cf.name),
                    self.whole_row(table, alias)
                )
            } else {
                return Err(undefined_column(alias, &field.name));
            };
        // arrows on a column that is not JSON (a composite, an array) go
        // through its JSON form, as in PostgREST
        if !field.path.is_empty()
            && self
                .field_type(table, &field.name)
                .is_some_and(|t| t != "json" && t != "jsonb")
        {
            e = format!("pg_catalog.to_jsonb({e})");
        }
        for step in &field.path {
            let arrow = match step.arrow {
                Arrow::Json => "->",
                Arrow::Text => "->>",
            };
            match &step.key {
                JsonKey::Index(i) => e = format!("({e}{arrow}{i})"),
                JsonKey::Name(n) => {
                    let p = self.param(n.clone());
                    e = format!("({e}{arrow}{p}::text)");
                }
            }
        }
        Ok(e)
    }

    fn conditions(
        &mut self,
        table: &Table,
        alias: &str,
        conds: &[Condition],
    ) -> Result<Vec<String>, ApiError> {
        conds
            .iter()
            .map(|c| self.condition(table, alias, c))
            .collect()
    }

    fn condition(
        &mut self,
        table: &Table,
        alias: &str,
        cond: &Condition,
    ) -> Result<String, ApiError> {
        match cond {
            Condition::Filter(f) => self.filter(table, alias, f),
            Condition::Group {
                or,
                negate,
                children,
            } => {
                let parts = self.conditions(table, alias, children)?;
                let joined = if parts.is_empty() {
                    "TRUE".to_string()
                } else {
                    parts.join(if *or { " OR " } else { " AND " })
                };
                Ok(if *negate {
                    format!("NOT ({joined})")
                } else {
                    format!("({joined})")
                })
            }
        }
    }

    fn filter(&mut self, table: &Table, alias: &str, f: &Filter) -> Result<String, ApiError> {
        if let Some(e) = self.null_embed_filter(table, alias, f)? {
            return Ok(e);
        }
        let lhs = self.field_expr(table, alias, &f.field)?;
        let simple = |op: Operator| -> Option<&'static str> {
            Some(match op {
                Operator::Eq => "=",
                Operator::Neq => "<>",
                Operator::Gt => ">",
                Operator::Gte => ">=",
                Operator::Lt => "<",
                Operator::Lte => "<=",
                Operator::Like => "LIKE",
                Operator::Ilike => "ILIKE",
                Operator::Match => "~",
                Operator::Imatch => "~*",
                Operator::Cs => "@>",
                Operator::Cd => "<@",
                Operator::Ov => "&&",
                Operator::Sl => "<<",
                Operator::Sr => ">>",
                Operator::Nxr => "&<",
                Operator::Nxl => "&>",
                Operator::Adj => "-|-",
                _ => return None,
            })
        };
        // a domain with a text data representation: comparisons take the
        // value through it (`label_color=eq.#000100`)
        let rep = if f.field.path.is_empty() {
            self.field_type(table, &f.field.name)
                .and_then(|t| self.schema.rep_from_text(t))
        } else {
            None
        };
        let one = |p: String| match rep {
            Some(r) => format!("{r}({p}::text)"),
            None => p,
        };
        let list = |p: String| match rep {
            Some(r) => format!("ARRAY(SELECT {r}(_v) FROM pg_catalog.unnest({p}::text[]) AS _v)"),
            None => p,
        };
        let comparison = matches!(
            f.op,
            Operator::Eq
                | Operator::Neq
                | Operator::Gt
                | Operator::Gte
                | Operator::Lt
                | Operator::Lte
        );
        let expr = match (&f.op, &f.value) {
            (Operator::Is, Value::Is(v)) => format!(
                "{lhs} IS {}",
                match v {
                    IsValue::Null => "NULL",
                    IsValue::NotNull => "NOT NULL",
                    IsValue::True => "TRUE",
                    IsValue::False => "FALSE",
                    IsValue::Unknown => "UNKNOWN",
                }
            ),
            (Operator::In, Value::List(items)) => {
                if items.is_empty() {
                    "FALSE".to_string()
                } else {
                    let p = list(self.param(array_literal(items)));
                    format!("{lhs} = ANY ({p})")
                }
            }
            (Operator::IsDistinct, Value::Single(v)) => {
                let p = one(self.param(v.clone()));
                format!("{lhs} IS DISTINCT FROM {p}")
            }
            (op, Value::Single(v)) if op.is_fts() => {
                let column_is_tsvector = f.field.path.is_empty()
                    && self.field_type(table, &f.field.name) == Some("tsvector");
                let lang = f.language.clone().map(|l| self.param(l));
                let vector = match (&lang, column_is_tsvector) {
                    (_, true) => lhs.clone(),
                    (Some(l), false) => format!("pg_catalog.to_tsvector({l}::regconfig, {lhs})"),
                    (None, false) => format!("pg_catalog.to_tsvector({lhs})"),
                };
                let func = match op {
                    Operator::Fts => "to_tsquery",
                    Operator::Plfts => "plainto_tsquery",
                    Operator::Phfts => "phraseto_tsquery",
                    _ => "websearch_to_tsquery",
                };
                let q = self.param(v.clone());
                match lang {
                    Some(l) => format!("{vector} @@ pg_catalog.{func}({l}::regconfig, {q})"),
                    None => format!("{vector} @@ pg_catalog.{func}({q})"),
                }
            }
            (op, Value::List(items)) if f.quantifier.is_some() => {
                let sql_op = simple(*op)
                    .ok_or_else(|| ApiError::invalid("operator does not take (any)/(all)"))?;
                let q = if f.quantifier == Some(Quantifier::Any) {
                    "ANY"
                } else {
                    "ALL"
                };
                let p = self.param(array_literal(items));
                let p = if comparison { list(p) } else { p };
                format!("{lhs} {sql_op} {q} ({p})")
            }
            (op, Value::Single(v)) => {
                let sql_op = simple(*op).ok_or_else(|| {
                    ApiError::invalid(format!("operator {} needs another value", op.name()))
                })?;
                let p = self.param(v.clone());
                let p = if comparison { one(p) } else { p };
                format!("{lhs} {sql_op} {p}")
            }
            (op, _) => {
                return Err(ApiError::invalid(format!(
                    "invalid value for operator {}",
                    op.name()
                )))
            }
        };
        Ok(if f.negate {
            format!("NOT ({expr})")
        } else {
            expr
        })
    }

    /// `*`: the row's columns, each column of a domain with a data
    /// representation through its JSON function (as PostgREST expands it).
    fn star(&self, table: &Table, alias: &str, select: &mut Vec<String>) {
        let reps: Vec<Option<&str>> = table
            .columns
            .iter()
            .map(|c| self.schema.rep_to_json(&c.data_type))
            .collect();
        if reps.iter().all(Option::is_none) {
            select.push(format!("{alias}.*"));
            return;
        }
        for (c, rep) in table.columns.iter().zip(reps) {
            let q = quote_ident(&c.name);
            select.push(match rep {
                Some(f) => format!("{f}({alias}.{q}) AS {q}"),
                None => format!("{alias}.{q}"),
            });
        }
    }

    /// Every embed of `items` (nested) has a relationship: PostgREST plans
    /// the embeds before the database sees a column, so their errors
    /// (PGRST200/201) come before an unknown column's 42703.
    fn check_embeds(&self, table: &Table, items: &[SelectItem]) -> Result<(), ApiError> {
        for item in items {
            if let SelectItem::Embed(embed) = item {
                let rel = self.embed_rel(table, embed)?;
                self.check_embeds(self.target(&rel)?, &embed.select)?;
            }
        }
        Ok(())
    }

    /// The relationship `embed` names from `table` (with its hint).
    fn embed_rel(&self, table: &Table, embed: &Embed) -> Result<Relationship, ApiError> {
        self.schema.relationship(
            &table.schema,
            &table.name,
            &embed.name,
            embed.hint.as_deref(),
        )
    }

    fn target(&self, rel: &Relationship) -> Result<&'a Table, ApiError> {
        self.schema
            .table(&rel.target_schema, &rel.target)
            .ok_or_else(|| ApiError::no_table(&rel.target_schema, &rel.target, None))
    }

    /// The `FROM` item giving `rel`'s target rows under `target_alias`, and
    /// the condition tying them to their `parent_alias` row (none for a
    /// computed relationship: the function is called with the parent's row).
    fn source(
        &mut self,
        rel: &Relationship,
        parent: &Table,
        parent_alias: &str,
        target_alias: &str,
    ) -> (String, Option<String>) {
        match &rel.function {
            Some((fs, fname)) => (
                format!(
                    "{}({}) AS {target_alias}",
                    quote_qualified(fs, fname),
                    self.whole_row(parent, parent_alias)
                ),
                None,
            ),
            None => (
                format!(
                    "{} AS {target_alias}",
                    quote_qualified(&rel.target_schema, &rel.target)
                ),
                Some(self.join_condition(rel, parent_alias, target_alias)),
            ),
        }
    }

    /// The condition tying `target_alias` rows to their `parent_alias` row.
    fn join_condition(
        &mut self,
        rel: &Relationship,
        parent_alias: &str,
        target_alias: &str,
    ) -> String {
        match &rel.junction {
            None => rel
                .pairs
                .iter()
                .map(|(p, t)| {
                    format!(
                        "{target_alias}.{} = {parent_alias}.{}",
                        quote_ident(t),
                        quote_ident(p)
                    )
                })
                .collect::<Vec<_>>()
                .join(" AND "),
            Some(j) => {
                let ja = self.alias(&j.table);
                let mut conds: Vec<String> = j
                    .parent_pairs
                    .iter()
                    .map(|(p, jc)| {
                        format!(
                            "{ja}.{} = {parent_alias}.{}",
                            quote_ident(jc),
                            quote_ident(p)
                        )
                    })
                    .collect();
                conds.extend(j.target_pairs.iter().map(|(t, jc)| {
                    format!(
                        "{ja}.{} = {target_alias}.{}",
                        quote_ident(jc),
                        quote_ident(t)
                    )
                }));
                format!(
                    "EXISTS (SELECT 1 FROM {} AS {ja} WHERE {})",
                    quote_qualified(&j.schema, &j.table),
                    conds.join(" AND ")
                )
            }
        }
    }

    /// Render one level: `table` under `alias`, with `items`, at embed
    /// `path`; `capped`: db-max-rows applies to it.
    fn level(
        &mut self,
        table: &Table,
        alias: &str,
        items: &'a [SelectItem],
        path: &[String],
        capped: bool,
    ) -> Result<LevelSql, ApiError> {
        let mut out = LevelSql::default();
        let query: &'a Query = self.query;
        let level = match query.level(path) {
            Some(l) if !(path.is_empty() && self.skip_root) => l,
            _ => &EMPTY_LEVEL,
        };
        let defer = std::mem::take(&mut self.defer_aggregates);
        // a level aggregates when it has an aggregate, or a to-one spread
        // of it has one (the spread's columns then join its GROUP BY)
        let explicit_aggregate = has_aggregate(items)
            || items
                .iter()
                .any(|i| matches!(i, SelectItem::Embed(e) if e.spread && has_aggregate(&e.select)));
        let legacy: Vec<bool> = items
            .iter()
            .map(|i| self.is_legacy_count(table, i))
            .collect();
        let has_aggregate = explicit_aggregate || legacy.contains(&true);
        if explicit_aggregate && !self.opts.aggregates {
            return Err(ApiError::new(
                400,
                "PGRST123",
                "Use of aggregate functions is not allowed",
            ));
        }
        for (item, legacy) in items.iter().zip(legacy) {
            match item {
                SelectItem::Star => self.star(table, alias, &mut out.select),
                SelectItem::Column {
                    field,
                    alias: label,
                    cast,
                    aggregate,
                    aggregate_cast,
                } => {
                    // PostgREST's embedded count: `rel(count)` is `rel(count())`
                    let aggregate = if legacy {
                        &Some(Aggregate::Count)
                    } else {
                        aggregate
                    };
                    let mut e =
                        if legacy || field.name == "*" && *aggregate == Some(Aggregate::Count) {
                            String::new()
                        } else {
                            self.field_expr(table, alias, field)?
                        };
                    if aggregate.is_none() && field.path.is_empty() && !e.is_empty() {
                        // a domain with a data representation reads as its
                        // JSON, and a cast applies to that (PostgREST:
                        // `label_color::text` is the JSON text `"#000000"`)
                        if let Some(f) = self
                            .field_type(table, &field.name)
                            .and_then(|t| self.schema.rep_to_json(t))
                        {
                            e = format!("{f}({e})");
                        }
                    }
                    if let Some(c) = cast {
                        e = format!("CAST({e} AS {})", cast_type(c));
                    }
                    let name = match (label, aggregate) {
                        (Some(l), _) => l.clone(),
                        (None, Some(a)) => a.sql().to_string(),
                        (None, None) => field.output_name(),
                    };
                    match aggregate {
                        // the parent aggregates these values
                        Some(_) if defer => {
                            let raw = if e.is_empty() { "1".to_string() } else { e };
                            out.select.push(format!("{raw} AS {}", quote_ident(&name)));
                        }
                        Some(a) => {
                            let mut ae = if e.is_empty() {
                                "pg_catalog.count(*)".to_string()
                            } else {
                                format!("pg_catalog.{}({e})", a.sql())
                            };
                            if let Some(c) = aggregate_cast {
                                ae = format!("CAST({ae} AS {})", cast_type(c));
                            }
                            out.select.push(format!("{ae} AS {}", quote_ident(&name)));
                        }
                        None => {
                            if has_aggregate && !defer {
                                out.group_by.push(e.clone());
                            }
                            out.select.push(format!("{e} AS {}", quote_ident(&name)));
                        }
                    }
                }
                SelectItem::Embed(embed) => {
                    self.embed(table, alias, embed, path, has_aggregate && !defer, &mut out)?
                }
            }
        }
        self.scopes.push((items, path.to_vec()));
        let conds = self.conditions(table, alias, &level.conditions);
        self.scopes.pop();
        out.conditions.extend(conds?);
        out.order = self.order_terms(table, alias, items, &level.order)?;
        // db-max-rows caps every level that returns rows, as PostgREST's
        // range restriction of its whole read plan: the top level and each
        // to-many embed
        let limit = match (level.limit, capped.then_some(self.opts.max_rows).flatten()) {
            (Some(l), Some(m)) => Some(l.min(m)),
            (l, m) => l.or(m),
        };
        if let Some(l) = limit {
            let p = self.param(l.to_string());
            out.paging.push_str(&format!(" LIMIT {p}"));
        }
        if let Some(o) = level.offset {
            let p = self.param(o.to_string());
            out.paging.push_str(&format!(" OFFSET {p}"));
        }
        // after the request's own errors (unknown relationships, …): in
        // PostgREST this one comes from the database
        duplicate_embeds(table, items, path.len() + 1)?;
        Ok(out)
    }

    /// `ORDER BY` items of one level (`rel(col)` orders by a to-one embed in `items`).
    fn order_terms(
        &mut self,
        table: &Table,
        alias: &str,
        items: &[SelectItem],
        order: &[OrderTerm],
    ) -> Result<Vec<String>, ApiError> {
        let mut out = Vec::with_capacity(order.len());
        for term in order {
            let mut s = match &term.relation {
                None => self.field_expr(table, alias, &term.field)?,
                Some(rel_label) => {
                    self.related_order_expr(table, alias, items, rel_label, &term.field)?
                }
            };
            match term.direction {
                Some(Direction::Asc) => s.push_str(" ASC"),
                Some(Direction::Desc) => s.push_str(" DESC"),
                None => {}
            }
            match term.nulls {
                Some(Nulls::First) => s.push_str(" NULLS FIRST"),
                Some(Nulls::Last) => s.push_str(" NULLS LAST"),
                None => {}
            }
            out.push(s);
        }
        Ok(out)
    }

    fn related_order_expr(
        &mut self,
        table: &Table,
        alias: &str,
        items: &[SelectItem],
        label: &str,
        field: &Field,
    ) -> Result<String, ApiError> {
        let embed = items
            .iter()
            .find_map(|i| match i {
                SelectItem::Embed(e) if e.label() == label => Some(e),
                _ => None,
            })
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "PGRST108",
                    format!("'{label}' is not an embedded resource in this request"),
                )
                .hint(format!(
                    "Verify that '{label}' is included in the 'select' query parameter."
                ))
            })?;
        let rel = self.embed_rel(table, embed)?;
        if !rel.cardinality.to_one() {
            return Err(ApiError::new(
                400,
                "PGRST118",
                format!("A related order on '{label}' is not possible"),
            )
            .details(format!(
                "'{}' and '{label}' do not form a many-to-one or one-to-one relationship",
                table.name
            )));
        }
        // a to-one spread that selects the column plainly: its lateral has it
        if embed.spread && field.path.is_empty() {
            let lateral = self
                .spread_laterals
                .iter()
                .find(|(a, l, _)| a == alias && l == label)
                .map(|(_, _, sa)| sa.clone());
            let output = embed.select.iter().find_map(|i| match i {
                SelectItem::Column {
                    field: f,
                    alias: out,
                    cast: None,
                    aggregate: None,
                    ..
                } if f.path.is_empty() && f.name == field.name => {
                    Some(out.clone().unwrap_or_else(|| f.name.clone()))
                }
                _ => None,
            });
            if let (Some(sa), Some(name)) = (lateral, output) {
                return Ok(format!("{sa}.{}", quote_ident(&name)));
            }
        }
        let target = self.target(&rel)?;
        let ta = self.alias(&target.name.clone());
        let e = self.field_expr(target, &ta, field)?;
        let (from, jc) = self.source(&rel, table, alias, &ta);
        let cond = jc.map(|c| format!(" WHERE {c}")).unwrap_or_default();
        Ok(format!("(SELECT {e} FROM {from}{cond} LIMIT 1)"))
    }

    fn embed(
        &mut self,
        table: &Table,
        alias: &str,
        embed: &'a Embed,
        path: &[String],
        grouping: bool,
        out: &mut LevelSql,
    ) -> Result<(), ApiError> {
        let rel = self.embed_rel(table, embed)?;
        let target = self.target(&rel)?;
        let mut sub_path = path.to_vec();
        sub_path.push(embed.label().to_string());
        let ta = self.alias(&target.name.clone());
        let (from, jc) = self.source(&rel, table, alias, &ta);
        // an embed that selects nothing (`rel()`, e.g. only for `!inner` or a
        // null filter) drops its SQL: its filters' parameters must go too
        let mark = self.params.len();
        let to_one_spread = embed.spread && rel.cardinality.to_one();
        self.defer_aggregates = grouping && to_one_spread;
        let to_many = !rel.cardinality.to_one();
        let inner = self.level(target, &ta, &embed.select, &sub_path, to_many);
        self.defer_aggregates = false;
        let inner = inner?;
        // what it renders, not what it names: `a(b(c()))` selects nothing
        // either, and is left out as PostgREST 12.2.2 leaves it (#3093)
        let used = !inner.select.is_empty();
        if !used {
            self.params.truncate(mark);
        }
        let inner_sql = format!(
            "SELECT {} FROM {from}{}",
            inner.select_list(),
            inner.tail(jc.as_deref())
        );
        // a to-one embed or spread is at most one row; when the client paged
        // it too (`rel.limit=1`, `rel.offset=1`, as PostgREST allows), its
        // own LIMIT/OFFSET applies first
        let one_row = if inner.paging.is_empty() {
            format!("{inner_sql} LIMIT 1")
        } else {
            format!("SELECT * FROM ({inner_sql}) AS \"_o\" LIMIT 1")
        };
        let label = quote_ident(embed.label());
        if embed.spread && !rel.cardinality.to_one() {
            // PostgREST v13: spreading a to-many relationship gives each
            // selected column as an array of its values (v12 refused it
            // with PGRST119; this is a superset). As in v13 it aggregates,
            // so it needs `db-aggregates-enabled`.
            if !self.opts.aggregates && !embed.select.is_empty() {
                return Err(ApiError::new(
                    400,
                    "PGRST123",
                    "Use of aggregate functions is not allowed",
                ));
            }
            if has_aggregate(&embed.select) {
                return Err(
                    ApiError::new(400, "PGRST127", "Feature not implemented").details(
                        "Aggregates are not implemented for one-to-many or many-to-many spreads.",
                    ),
                );
            }
            if !inner.select.is_empty() {
                let names = self.output_names(target, &embed.select)?;
                let cols: Vec<String> = names
                    .iter()
                    .map(|n| {
                        let q = quote_ident(n);
                        format!("COALESCE(pg_catalog.json_agg(\"_s\".{q}), '[]'::json) AS {q}")
                    })
                    .collect();
                let sa = self.alias(&target.name.clone());
                out.joins.push(format!(
                    "LEFT JOIN LATERAL (SELECT {} FROM ({inner_sql}) AS \"_s\") AS {sa} ON TRUE",
                    cols.join(", ")
                ));
                out.select.push(format!("{sa}.*"));
            }
        } else if embed.spread {
            if !inner.select.is_empty() {
                let sa = self.alias(&target.name.clone());
                out.joins
                    .push(format!("LEFT JOIN LATERAL ({one_row}) AS {sa} ON TRUE"));
                self.spread_laterals.push((
                    alias.to_string(),
                    embed.label().to_string(),
                    sa.clone(),
                ));
                if grouping {
                    // in an aggregating level: the spread's aggregates are
                    // computed over the level's rows, its other columns group
                    for name in self.output_names(target, &embed.select)? {
                        let q = format!("{sa}.{}", quote_ident(&name));
                        let agg = embed.select.iter().find_map(|i| match i {
                            SelectItem::Column {
                                alias,
                                aggregate: Some(a),
                                aggregate_cast,
                                ..
                            } if alias.as_deref().unwrap_or(a.sql()) == name => {
                                Some((*a, aggregate_cast.clone()))
                            }
                            _ => None,
                        });
                        match agg {
                            Some((a, cast)) => {
                                let mut ae = format!("pg_catalog.{}({q})", a.sql());
                                if let Some(c) = cast {
                                    ae = format!("CAST({ae} AS {})", cast_type(&c));
                                }
                                out.select.push(format!("{ae} AS {}", quote_ident(&name)));
                            }
                            None => {
                                out.select.push(q.clone());
                                out.group_by.push(q);
                            }
                        }
                    }
                } else {
                    out.select.push(format!("{sa}.*"));
                }
            }
        } else if used {
            if rel.cardinality.to_one() {
                // jsonb, as PostgREST 12 (`row_to_json(…)::jsonb`, and
                // `json_agg(…)::jsonb` for to-many): key order and text in
                // the response are PostgREST's, and a level that groups
                // (aggregates) can group by it (json has no equality)
                out.select.push(format!(
                    "(SELECT pg_catalog.row_to_json(\"_e\")::jsonb FROM ({one_row}) AS \"_e\") AS {label}"
                ));
            } else {
                out.select.push(format!(
                    "COALESCE((SELECT pg_catalog.json_agg(\"_e\")::jsonb FROM ({inner_sql}) AS \"_e\"), '[]'::jsonb) AS {label}"
                ));
            }
        }
        if embed.join == Some(JoinKind::Inner) {
            let exists = self.embed_exists(table, alias, embed, &sub_path)?;
            out.conditions.push(exists);
        }
        // Filters on embeds that are not in the select are an error, as in PostgREST.
        Ok(())
    }

    /// `EXISTS (…)`: whether the `alias` row has a row of `embed` (at
    /// `sub_path`) that passes the embed's own filters (`!inner`, and the
    /// null filter on an embed).
    fn embed_exists(
        &mut self,
        table: &Table,
        alias: &str,
        embed: &'a Embed,
        sub_path: &[String],
    ) -> Result<String, ApiError> {
        let rel = self.embed_rel(table, embed)?;
        let target = self.target(&rel)?;
        let ea = self.alias(&target.name.clone());
        let query: &'a Query = self.query;
        let level = query.level(sub_path).unwrap_or(&EMPTY_LEVEL);
        let (from, jc) = self.source(&rel, table, alias, &ea);
        let mut conds: Vec<String> = jc.into_iter().collect();
        self.scopes.push((&embed.select, sub_path.to_vec()));
        let own = self.conditions(target, &ea, &level.conditions);
        self.scopes.pop();
        conds.extend(own?);
        // its own `!inner` embeds must exist too: `a!inner(b!inner(…))`
        // keeps only the rows whose `a` has a `b`
        for item in &embed.select {
            if let SelectItem::Embed(sub) = item {
                if sub.join == Some(JoinKind::Inner) {
                    let mut path = sub_path.to_vec();
                    path.push(sub.label().to_string());
                    conds.push(self.embed_exists(target, &ea, sub, &path)?);
                }
            }
        }
        let cond = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        // PostgREST joins the embed `LATERAL` and keeps the row when the
        // embed's own (limited, offset) rows are not empty: the parent's
        // rows stay in its scan order. An `OFFSET` (0 when the embed has
        // none: `KEEP_SCAN_ORDER`) keeps PostgreSQL from turning this
        // `EXISTS` into a semi-join, which would hand the rows back in the
        // child's hash order.
        let mut paging = String::new();
        if let Some(l) = level.limit {
            let p = self.param(l.to_string());
            paging.push_str(&format!(" LIMIT {p}"));
        }
        match level.offset {
            Some(o) => {
                let p = self.param(o.to_string());
                paging.push_str(&format!(" OFFSET {p}"));
            }
            None => paging.push_str(KEEP_SCAN_ORDER),
        }
        Ok(format!("EXISTS (SELECT 1 FROM {from}{cond}{paging})"))
    }

    /// PostgREST's null filter on an embedded resource: `rel=is.null` keeps
    /// the rows without a `rel` row (under `rel`'s filters), `rel=not.is.null`
    /// those with one. `None` unless `f` is `is.null` on a name that is not
    /// a column but an embed of the level being rendered.
    fn null_embed_filter(
        &mut self,
        table: &Table,
        alias: &str,
        f: &Filter,
    ) -> Result<Option<String>, ApiError> {
        let is_null = match (&f.op, &f.value) {
            (Operator::Is, Value::Is(IsValue::Null)) => !f.negate,
            (Operator::Is, Value::Is(IsValue::NotNull)) => f.negate,
            _ => return Ok(None),
        };
        if !f.field.path.is_empty()
            || table.column(&f.field.name).is_some()
            || self.computed_field(table, &f.field.name).is_some()
        {
            return Ok(None);
        }
        let Some((items, path)) = self.scopes.last() else {
            return Ok(None);
        };
        let items: &'a [SelectItem] = items;
        let Some(embed) = items.iter().find_map(|i| match i {
            SelectItem::Embed(e) if e.label() == f.field.name => Some(e),
            _ => None,
        }) else {
            return Ok(None);
        };
        let mut sub_path = path.clone();
        sub_path.push(embed.label().to_string());
        let exists = self.embed_exists(table, alias, embed, &sub_path)?;
        Ok(Some(if is_null {
            format!("NOT {exists}")
        } else {
            exists
        }))
    }
}

fn has_aggregate(items: &[SelectItem]) -> bool {
    items.iter().any(|i| {
        matches!(
            i,
            SelectItem::Column {
                aggregate: Some(_),
                ..
            }
        )
    })
}

impl Ctx<'_> {
    /// The names of the columns a level's select list produces, in order
    /// and without repeats (`*` is the table's columns; a spread, its
    /// target's names).
    fn output_names(&self, table: &Table, items: &[SelectItem]) -> Result<Vec<String>, ApiError> {
        let mut names: Vec<String> = Vec::new();
        fn add(n: String, names: &mut Vec<String>) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        for item in items {
            match item {
                SelectItem::Star => {
                    for c in &table.columns {
                        add(c.name.clone(), &mut names);
                    }
                }
                SelectItem::Column {
                    field,
                    alias,
                    aggregate,
                    ..
                } => add(
                    match (alias, aggregate) {
                        (Some(l), _) => l.clone(),
                        (None, Some(a)) => a.sql().to_string(),
                        (None, None) => field.output_name(),
                    },
                    &mut names,
                ),
                SelectItem::Embed(e) if e.select.is_empty() => {}
                SelectItem::Embed(e) if e.spread => {
                    let rel = self.schema.relationship(
                        &table.schema,
                        &table.name,
                        &e.name,
                        e.hint.as_deref(),
                    )?;
                    for n in self.output_names(self.target(&rel)?, &e.select)? {
                        add(n, &mut names);
                    }
                }
                SelectItem::Embed(e) => add(e.label().to_string(), &mut names),
            }
        }
        Ok(names)
    }
}

/// Check that every embed path with filters names an embed in `select`.
fn check_embedded_levels(query: &Query) -> Result<(), ApiError> {
    /// The first segment of `path` the select tree has no embed for
    /// (PostgREST names that one: `projects.tasks2` is about `tasks2`).
    fn missing<'p>(items: &[SelectItem], path: &'p [String]) -> Option<&'p str> {
        let (head, rest) = path.split_first()?;
        let found = items.iter().find_map(|i| match i {
            SelectItem::Embed(e) if e.label() == head => Some(e),
            _ => None,
        });
        match found {
            Some(e) => missing(&e.select, rest),
            None => Some(head),
        }
    }
    for (path, _) in &query.embedded {
        if let Some(name) = missing(&query.select, path) {
            return Err(ApiError::new(
                400,
                "PGRST108",
                format!("'{name}' is not an embedded resource in this request"),
            )
            .hint(format!(
                "Verify that '{name}' is included in the 'select' query parameter."
            )));
        }
    }
    Ok(())
}

fn wrap(cte: &str, inner: &str, body: &str, count: &str) -> String {
    format!(
        "WITH pgrst_source AS ({cte}) SELECT {count} AS total_count, pg_catalog.count(*) AS page_count, {body} AS body, \
         nullif(pg_catalog.current_setting('response.headers', true), '') AS response_headers, \
         nullif(pg_catalog.current_setting('response.status', true), '') AS response_status \
         FROM ({inner}) AS _postgrest_t"
    )
}

const JSON_BODY: &str = "coalesce(pg_catalog.json_agg(_postgrest_t), '[]')::text";

/// [`JSON_BODY`] without the keys whose value is null (at every depth).
const JSON_STRIPPED_BODY: &str =
    "coalesce(pg_catalog.json_strip_nulls(pg_catalog.json_agg(_postgrest_t)), '[]')::text";

/// The rows as CSV material: column names from the first row's JSON (in
/// select order) and every row's record text (PostgreSQL's text forms).
const CSV_BODY: &str = "pg_catalog.json_build_object('h', (SELECT pg_catalog.json_agg(k) FROM pg_catalog.json_object_keys(pg_catalog.json_agg(_postgrest_t)->0) AS k), \
     'r', coalesce(pg_catalog.json_agg(_postgrest_t::text), '[]'))::text";

fn rows_body(opts: &Options) -> std::borrow::Cow<'static, str> {
    if let Some(f) = &opts.geojson {
        // PostgREST's: each row a Feature (its geometry column the
        // geometry, the other columns its properties)
        format!(
            "pg_catalog.json_build_object('type', 'FeatureCollection', 'features', \
             coalesce(pg_catalog.json_agg({f}(_postgrest_t)::json), '[]'))::text"
        )
        .into()
    } else if opts.csv {
        CSV_BODY.into()
    } else if opts.strip_nulls {
        JSON_STRIPPED_BODY.into()
    } else {
        JSON_BODY.into()
    }
}

/// The body of a function of scalars: its values as `json` (the JSON
/// expression over `_postgrest_t."pgrst_scalar"`), or raw for a media
/// handler; with `application/geo+json`, PostgREST's collection over the
/// rows `(pgrst_scalar)` — a geometry becomes a Feature without
/// properties, any other value has no geometry column (PostGIS: 22023).
fn scalar_body(opts: &Options, json: &'static str) -> std::borrow::Cow<'static, str> {
    if opts.geojson.is_some() {
        rows_body(opts)
    } else {
        opts.raw.map_or(json, RawValue::body).into()
    }
}

/// A read: `GET /table?…`. `count` adds the exact total of matching rows.
pub fn read(
    schema: &Schema,
    table: &Table,
    query: &Query,
    opts: &Options,
    count: bool,
) -> Result<Statement, ApiError> {
    check_embedded_levels(query)?;
    let mut cx = Ctx::new(schema, query, opts);
    let alias = cx.main_alias(&table.name);
    let lv = match cx.level(table, &alias, &query.select, &[], true) {
        Ok(lv) => lv,
        Err(e) if e.code == "42703" => {
            cx.check_embeds(table, &query.select)?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let from = format!("{} AS {alias}", quote_qualified(&table.schema, &table.name));
    let cte = format!("SELECT {} FROM {from}{}", lv.select_list(), lv.tail(None));
    let count_query =
        (opts.plan_count || count && opts.count_cap.is_some()).then(|| count_query_of(&from, &lv));
    let count_sql = if count {
        if let (Some(cap), Some(cq)) = (opts.count_cap, &count_query) {
            format!("(SELECT pg_catalog.count(*) FROM ({cq} LIMIT {cap}) AS _c)")
        } else if lv.group_by.is_empty() {
            format!(
                "(SELECT pg_catalog.count(*) FROM {from}{})",
                counting(&lv.where_only())
            )
        } else {
            format!(
                "(SELECT pg_catalog.count(*) FROM (SELECT 1 FROM {from}{} GROUP BY {}) AS _g)",
                counting(&lv.where_only()),
                lv.group_by.join(", ")
            )
        }
    } else {
        "NULL::bigint".to_string()
    };
    let body = match &opts.handler {
        Some(h) => h.body().into(),
        None => rows_body(opts),
    };
    let sql = wrap(&cte, "SELECT * FROM pgrst_source", &body, &count_sql);
    let mut st = cx.finish(sql);
    st.count_query = count_query.filter(|_| opts.plan_count);
    Ok(st)
}

/// The rows a count counts: `SELECT 1 FROM … WHERE …` (one row per group
/// when aggregating), PostgREST's count query.
fn count_query_of(from: &str, lv: &LevelSql) -> String {
    let conditions = counting(&lv.where_only());
    if lv.group_by.is_empty() {
        format!("SELECT 1 FROM {from}{conditions}")
    } else {
        format!(
            "SELECT 1 FROM {from}{conditions} GROUP BY {}",
            lv.group_by.join(", ")
        )
    }
}

/// Marks an `EXISTS` of an `!inner` or null-filtered embed that must not
/// become a semi-join in the rows' query (`Ctx::finish` makes it
/// `OFFSET 0`) but may in a count, as in PostgREST's count query: a count
/// has no order, and the semi-join is the cheaper plan and the estimate
/// `count=planned` reports. No identifier or literal in PostgreSQL can
/// hold a NUL, so the marker stands only where `embed_exists` put it.
const KEEP_SCAN_ORDER: &str = "\u{0}keep-scan-order\u{0}";

/// A level's conditions as a count reads them (see `KEEP_SCAN_ORDER`).
fn counting(conditions: &str) -> String {
    conditions.replace(KEEP_SCAN_ORDER, "")
}

/// `EXPLAIN (FORMAT JSON)` of a statement's count query, with only the
/// parameters it uses (renumbered), for the planner's row estimate.
pub fn count_plan(st: &Statement) -> Option<Statement> {
    let q = st.count_query.as_ref()?;
    let (sql, params) = compact_params(q, &st.params);
    Some(Statement {
        sql: format!("EXPLAIN (FORMAT JSON) {sql}"),
        params,
        count_query: None,
    })
}

/// Renumber the `$n` a piece of generated SQL uses (outside quoted
/// identifiers and literals) to `$1…` and keep only those parameters.
pub fn compact_params(sql: &str, params: &[Option<String>]) -> (String, Vec<Option<String>>) {
    let mut out = String::with_capacity(sql.len());
    let mut used: Vec<usize> = Vec::new();
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    if chars.peek() == Some(&q) {
                        out.push(q);
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                let old: usize = n.parse().unwrap_or(0);
                let new = match used.iter().position(|u| *u == old) {
                    Some(i) => i + 1,
                    None => {
                        used.push(old);
                        used.len()
                    }
                };
                out.push_str(&format!("${new}"));
            }
            None => out.push(c),
        }
    }
    let kept = used
        .iter()
        .map(|u| params.get(u.wrapping_sub(1)).cloned().flatten())
        .collect();
    (out, kept)
}

/// PGRST204 for the first of `cols` the table does not have.
pub fn check_columns(table: &Table, cols: &[String]) -> Result<(), ApiError> {
    for c in cols {
        if table.column(c).is_none() {
            return Err(ApiError::no_column(c, &table.name));
        }
    }
    Ok(())
}

/// What a write returns to its read-back, no more than it needs, so that a
/// role may write without reading every column (PostgREST's `RETURNING 1`):
/// nothing but a row count for `return=minimal`, the primary key for
/// `headers-only`, and for `representation` the selected columns when the
/// select is plain columns (else the whole row, for embeds and computed
/// fields).
fn returning_clause(table: &Table, query: &Query, returning: Returning, alias: &str) -> String {
    let cols: Option<Vec<&str>> = match returning {
        Returning::Minimal => None,
        Returning::HeadersOnly => Some(table.primary_key.iter().map(String::as_str).collect()),
        // the read-back orders by `order=`: its columns must come back too
        Returning::Representation if !query.root.order.is_empty() => {
            return format!(" RETURNING {alias}.*")
        }
        Returning::Representation => {
            let mut cols: Vec<&str> = Vec::new();
            for item in &query.select {
                match item {
                    SelectItem::Column { field, .. } if table.column(&field.name).is_some() => {
                        if !cols.contains(&field.name.as_str()) {
                            cols.push(&field.name);
                        }
                    }
                    _ => return format!(" RETURNING {alias}.*"),
                }
            }
            Some(cols)
        }
    };
    match cols {
        Some(c) if !c.is_empty() => {
            let list: Vec<String> = c
                .iter()
                .map(|c| format!("{alias}.{}", quote_ident(c)))
                .collect();
            format!(" RETURNING {}", list.join(", "))
        }
        _ => " RETURNING 1".to_string(),
    }
}

/// The read-back after a write: the written rows (`pgrst_source`) shaped by
/// `select=`. `total` is the statement's `total_count` column: NULL, or
/// for an upsert the rows it inserted ([`UPSERT_INSERTED`]).
fn write_tail<'a>(
    cx: &mut Ctx<'a>,
    table: &Table,
    query: &'a Query,
    returning: Returning,
    cte: String,
    total: &str,
) -> Result<String, ApiError> {
    Ok(match returning {
        Returning::Minimal => wrap(&cte, "SELECT 1 FROM pgrst_source", "NULL::text", total),
        Returning::Representation => {
            check_embedded_levels(query)?;
            let alias = cx.main_alias(&table.name);
            // `pgrst_source` rows are records with the table's columns.
            cx.untyped.push(alias.clone());
            // Only the select shape and the embeds' own levels apply to the read-back.
            cx.skip_root = true;
            let mut lv = cx.level(table, &alias, &query.select, &[], false)?;
            // …and the top-level `order`: the written rows come back in it
            // (filters and paging picked the rows to write)
            lv.order = cx.order_terms(table, &alias, &query.select, &query.root.order)?;
            let inner = format!(
                "SELECT {} FROM pgrst_source AS {alias}{}",
                lv.select_list(),
                lv.tail(None)
            );
            wrap(&cte, &inner, &rows_body(cx.opts), total)
        }
        Returning::HeadersOnly => {
            // PostgREST's `locationF`: the key columns' JSON text forms.
            let keys: Vec<String> = table
                .columns
                .iter()
                .filter(|c| table.primary_key.contains(&c.name))
                .map(|c| cx.param(c.name.clone()))
                .collect();
            if keys.is_empty() {
                wrap(&cte, "SELECT 1 FROM pgrst_source", "NULL::text", total)
            } else {
                let inner = format!(
                    "SELECT (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(\"j\".key, \"j\".value)) \
                     FROM pg_catalog.json_each_text(pg_catalog.row_to_json(\"s\")) AS \"j\" WHERE \"j\".key IN ({})) AS \"pgrst_location\" \
                     FROM pgrst_source AS \"s\"",
                    keys.join(", ")
                );
                wrap(
                    &cte,
                    &inner,
                    "CASE WHEN pg_catalog.count(*) = 1 THEN pg_catalog.max(_postgrest_t.\"pgrst_location\"::text) END",
                    total,
                )
            }
        }
    })
}

/// Always true; counts one row taking an upsert's `DO UPDATE` path.
const UPSERT_COUNT_UPDATE: &str = "pg_catalog.set_config('pgrst.upsert_updates', \
     (coalesce(nullif(pg_catalog.current_setting('pgrst.upsert_updates', true), '')::bigint, 0) + 1)::text, true) IS NOT NULL";

/// The rows an upsert inserted: those it wrote less those it updated
/// (read after the write, as `response.headers` is).
const UPSERT_INSERTED: &str = "pg_catalog.count(*) - coalesce(nullif(pg_catalog.current_setting('pgrst.upsert_updates', true), '')::bigint, 0)";

/// The resolution an insert applies: none without a conflict target (no
/// primary key and no `on_conflict`), where PostgREST ignores
/// `Prefer: resolution` and inserts (and does not list it as applied).
pub fn upsert_resolution(
    table: &Table,
    query: &Query,
    resolution: Option<Resolution>,
) -> Option<Resolution> {
    let has_target =
        query.on_conflict.as_ref().is_some_and(|c| !c.is_empty()) || !table.primary_key.is_empty();
    resolution.filter(|_| has_target)
}

/// `Prefer: missing=default` when rows differ in which of the columns they
/// have: one `INSERT … SELECT` over the body's objects in their order, each
/// column the row's value when it has the key, else the column's default
/// ([`Column::default_expr`], evaluated per row like `DEFAULT`; NULL when
/// there is none). The rows' key sets are one parameter (`'1'`/`'0'` per
/// column), so the statement's size does not grow with the body and
/// PostgreSQL reads the body once — a `VALUES` row per object with a cell
/// per column, each extracting its object from the bound body, cost rows ×
/// columns body reads and, planned with the body as a constant, exhausted
/// the server's memory (20,000 objects of 60 bytes: 24 GB, and the
/// postmaster restarted every backend).
#[allow(clippy::too_many_arguments)]
fn missing_default_insert(
    cx: &mut Ctx,
    table: &Table,
    spec: &InsertSpec,
    present: &[Vec<bool>],
    reps: &[Option<&str>],
    tq: &str,
    cols: &[String],
    body: &str,
) -> String {
    let masks: Vec<String> = present
        .iter()
        .map(|flags| flags.iter().map(|&p| if p { '1' } else { '0' }).collect())
        .collect();
    let masks = cx.param(array_literal(&masks));
    // the row as the table's record; represented columns are made from
    // their JSON by their function instead, so their keys are left out
    let record = if reps.iter().any(Option::is_some) {
        let rep_keys: Vec<String> = spec
            .columns
            .iter()
            .zip(reps)
            .filter(|(_, r)| r.is_some())
            .map(|(c, _)| c.clone())
            .collect();
        let keys = cx.param(array_literal(&rep_keys));
        format!("pg_catalog.jsonb_populate_record(NULL::{tq}, \"pgrst_x\".\"e\"::jsonb - {keys}::text[])")
    } else {
        format!("pg_catalog.json_populate_record(NULL::{tq}, \"pgrst_x\".\"e\")")
    };
    let mut cells = Vec::with_capacity(spec.columns.len());
    for (j, (c, rep)) in spec.columns.iter().zip(reps).enumerate() {
        let value = match rep {
            Some(f) => {
                let k = cx.param(c.clone());
                format!("{f}(\"pgrst_x\".\"e\"->{k})")
            }
            None => format!("\"pgrst_r\".{}", quote_ident(c)),
        };
        let default = table
            .column(c)
            .and_then(|col| col.default_expr.as_deref())
            .unwrap_or("NULL");
        cells.push(format!(
            "CASE WHEN pg_catalog.substr(\"pgrst_x\".\"m\", {}, 1) = '1' THEN {value} ELSE {default} END",
            j + 1
        ));
    }
    format!(
        "INSERT INTO {tq} AS \"t_w\" ({}) SELECT {} \
         FROM ROWS FROM (pg_catalog.json_array_elements({body}::json), pg_catalog.unnest({masks}::text[])) \
         WITH ORDINALITY AS \"pgrst_x\"(\"e\", \"m\", \"n\") \
         CROSS JOIN LATERAL {record} AS \"pgrst_r\" ORDER BY \"pgrst_x\".\"n\"",
        cols.join(", "),
        cells.join(", ")
    )
}

/// `missing=default`: which columns the statement lists and, when rows
/// differ, each row's flags (`None`: every row has every column, the plain
/// path applies and PostgreSQL fills the unlisted columns' defaults). A
/// column no row has is left out of the list (it takes its `DEFAULT`
/// exactly, identity and generated columns included) unless `keep_absent`
/// (an upsert, whose update writes every listed column).
pub fn missing_default_columns(
    columns: Vec<String>,
    present: Vec<Vec<bool>>,
    keep_absent: bool,
) -> (Vec<String>, Option<Vec<Vec<bool>>>) {
    if present.is_empty() {
        return (columns, None);
    }
    let mut keep: Vec<bool> = (0..columns.len())
        .map(|j| {
            keep_absent
                || present
                    .iter()
                    .any(|row| row.get(j).copied().unwrap_or(false))
        })
        .collect();
    // objects with no key at all: one `DEFAULT VALUES` row would not do for
    // several, so the columns stay (each row takes their defaults)
    if present.len() > 1 && !keep.iter().any(|&k| k) {
        keep.iter_mut().for_each(|k| *k = true);
    }
    let columns: Vec<String> = columns
        .into_iter()
        .zip(&keep)
        .filter_map(|(c, &k)| k.then_some(c))
        .collect();
    let present: Vec<Vec<bool>> = present
        .into_iter()
        .map(|row| {
            row.into_iter()
                .zip(&keep)
                .filter_map(|(p, &k)| k.then_some(p))
                .collect()
        })
        .collect();
    if present.iter().all(|row| row.iter().all(|&p| p)) {
        (columns, None)
    } else {
        (columns, Some(present))
    }
}

/// `POST /table` (and `PUT`, as a one-row upsert). With a merging
/// resolution the statement's `total_count` is the number of rows inserted
/// (the rest were updated).
pub fn insert(
    schema: &Schema,
    table: &Table,
    query: &Query,
    opts: &Options,
    spec: &InsertSpec,
    returning: Returning,
) -> Result<Statement, ApiError> {
    check_columns(table, &spec.columns)?;
    if let Some(oc) = &query.on_conflict {
        check_columns(table, oc)?;
    }
    let mut cx = Ctx::new(schema, query, opts);
    let tq = quote_qualified(&table.schema, &table.name);
    let cols: Vec<String> = spec.columns.iter().map(|c| quote_ident(c)).collect();
    let body = if spec.columns.is_empty() {
        String::new()
    } else {
        cx.param(spec.body.clone())
    };
    // columns of a domain with a JSON data representation: made from the
    // body's JSON value by its function, never parsed as the domain's text
    let reps: Vec<Option<&str>> = spec
        .columns
        .iter()
        .map(|c| {
            table
                .column(c)
                .and_then(|col| schema.rep_from_json(&col.data_type))
        })
        .collect();
    let has_reps = reps.iter().any(Option::is_some);
    let mut cte = if spec.columns.is_empty() {
        // `{}`: one row of defaults (the body carries nothing to write).
        format!("INSERT INTO {tq} AS \"t_w\" DEFAULT VALUES")
    } else if let Some(present) = &spec.present {
        missing_default_insert(&mut cx, table, spec, present, &reps, &tq, &cols, &body)
    } else if has_reps {
        // typed columns straight from the body: json for the represented ones
        let mut defs = Vec::new();
        let mut exprs = Vec::new();
        for (c, rep) in spec.columns.iter().zip(&reps) {
            let q = quote_ident(c);
            let ty = widen_param_type(table.column(c).map_or("text", |col| col.data_type.as_str()));
            match rep {
                Some(f) => {
                    defs.push(format!("{q} json"));
                    exprs.push(format!("{f}(_.{q})"));
                }
                None => {
                    defs.push(format!("{q} {ty}"));
                    exprs.push(format!("_.{q}"));
                }
            }
        }
        format!(
            "INSERT INTO {tq} AS \"t_w\" ({}) SELECT {} FROM pg_catalog.json_to_recordset({body}::json) AS _({})",
            cols.join(", "),
            exprs.join(", "),
            defs.join(", ")
        )
    } else {
        format!(
            "INSERT INTO {tq} AS \"t_w\" ({c}) SELECT {c} FROM pg_catalog.json_populate_recordset(NULL::{tq}, {body}::json) AS _",
            c = cols.join(", ")
        )
    };
    let mut total = "NULL::bigint";
    if let Some(res) = upsert_resolution(table, query, spec.resolution) {
        let target = query
            .on_conflict
            .clone()
            .unwrap_or_else(|| table.primary_key.clone());
        let tcols: Vec<String> = target.iter().map(|c| quote_ident(c)).collect();
        // The payload's other columns; with only key columns, those (a
        // no-op update that still returns the row, as PostgREST).
        let mut set: Vec<&String> = spec
            .columns
            .iter()
            .filter(|c| !target.contains(c))
            .collect();
        if set.is_empty() {
            set = spec.columns.iter().collect();
        }
        let updates: Vec<String> = set
            .iter()
            .map(|c| format!("{q} = EXCLUDED.{q}", q = quote_ident(c)))
            .collect();
        match res {
            Resolution::IgnoreDuplicates => {
                cte.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", tcols.join(", ")))
            }
            Resolution::MergeDuplicates if updates.is_empty() => {
                cte.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", tcols.join(", ")));
                total = UPSERT_INSERTED;
            }
            Resolution::MergeDuplicates => {
                // Each row that takes the update path counts itself, so the
                // response can tell inserted rows (201) from updated (200).
                cte.push_str(&format!(
                    " ON CONFLICT ({}) DO UPDATE SET {} WHERE {UPSERT_COUNT_UPDATE}",
                    tcols.join(", "),
                    updates.join(", ")
                ));
                total = UPSERT_INSERTED;
            }
        }
    }
    cte.push_str(&returning_clause(table, query, returning, "\"t_w\""));
    let sql = write_tail(&mut cx, table, query, returning, cte, total)?;
    Ok(cx.finish(sql))
}

/// PGRST109: `limit`/`offset` on a PATCH or DELETE without `order`.
pub fn limit_without_order() -> ApiError {
    ApiError::new(
        400,
        "PGRST109",
        "A 'limit' was applied without an explicit 'order'",
    )
    .hint("Apply an 'order' using unique column(s)")
}

/// PGRST110: a limited PATCH or DELETE changed more rows than its `limit`.
pub fn limit_exceeded(changed: i64, limit: i64) -> ApiError {
    ApiError::new(
        400,
        "PGRST110",
        "The maximum number of rows allowed to change was surpassed",
    )
    .details(format!(
        "Results contain {changed} rows changed but the maximum number allowed is {limit}"
    ))
}

/// The most rows a limited PATCH or DELETE may change when its rows are
/// picked by the `order` columns (a view without a key, see
/// [`mutation_where`]; non-unique order values match more rows than the
/// page): the caller rolls back past it with [`limit_exceeded`]. `None`
/// where rows are picked by their key and the page is exact.
pub fn limit_cap(table: &Table, query: &Query) -> Option<i64> {
    if table.primary_key.is_empty() && table.is_view {
        query
            .root
            .limit
            .map(|l| i64::try_from(l).unwrap_or(i64::MAX))
    } else {
        None
    }
}

/// The ` WHERE …` of a PATCH or DELETE on `alias` (empty without filters).
///
/// With `limit`/`offset` (PostgREST's limited update/delete), the rows
/// are those the filters select, ordered by the required `order` and
/// paged, picked by their primary key (`ctid` without one; a view without
/// a key by the order columns, capped by [`limit_cap`]):
/// `(key) IN (SELECT key … ORDER BY … LIMIT … OFFSET …)`. The filters also
/// stay on the written row itself, so a row a concurrent write moved out
/// of them is left alone.
fn mutation_where(
    cx: &mut Ctx,
    table: &Table,
    alias: &str,
    query: &Query,
) -> Result<String, ApiError> {
    let root = &query.root;
    let mut conds = cx.conditions(table, alias, &root.conditions)?;
    if root.limit.is_some() || root.offset.is_some() {
        if root.order.is_empty() {
            return Err(limit_without_order());
        }
        let key: Vec<String> = if !table.primary_key.is_empty() {
            table.primary_key.clone()
        } else if !table.is_view {
            vec!["ctid".to_string()]
        } else {
            // a view without a key has no `ctid` either: its rows are
            // picked by the order columns, as PostgREST does, and the
            // caller caps the rows written at `limit` (PGRST110)
            let mut cols: Vec<String> = Vec::new();
            for t in root.order.iter().filter(|t| t.relation.is_none()) {
                if !cols.contains(&t.field.name) {
                    cols.push(t.field.name.clone());
                }
            }
            if cols.is_empty() {
                return Err(limit_without_order());
            }
            cols
        };
        let ka = cx.alias(&table.name);
        let inner = cx.conditions(table, &ka, &root.conditions)?;
        let order = cx.order_terms(table, &ka, &query.select, &root.order)?;
        let mut picked = format!(
            "SELECT {} FROM {} AS {ka}",
            key.iter()
                .map(|k| format!("{ka}.{}", quote_ident(k)))
                .collect::<Vec<_>>()
                .join(", "),
            quote_qualified(&table.schema, &table.name)
        );
        if !inner.is_empty() {
            picked.push_str(&format!(" WHERE {}", inner.join(" AND ")));
        }
        picked.push_str(&format!(" ORDER BY {}", order.join(", ")));
        if let Some(l) = root.limit {
            let p = cx.param(l.to_string());
            picked.push_str(&format!(" LIMIT {p}"));
        }
        if let Some(o) = root.offset {
            let p = cx.param(o.to_string());
            picked.push_str(&format!(" OFFSET {p}"));
        }
        let outer: Vec<String> = key
            .iter()
            .map(|k| format!("{alias}.{}", quote_ident(k)))
            .collect();
        conds.push(format!("({}) IN ({picked})", outer.join(", ")));
    }
    Ok(if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    })
}

/// `PATCH /table?filters` with a JSON object body. The row is read from
/// the body for `columns` only, each as its column's type (keys not listed
/// are never looked at, as PostgREST's `json_to_recordset`); a column in
/// `defaults` (listed, absent from the body, `Prefer: missing=default`) is
/// set to its `DEFAULT`.
#[allow(clippy::too_many_arguments)]
pub fn update(
    schema: &Schema,
    table: &Table,
    query: &Query,
    opts: &Options,
    columns: &[String],
    defaults: &[String],
    body: &str,
    returning: Returning,
) -> Result<Statement, ApiError> {
    check_columns(table, columns)?;
    let mut cx = Ctx::new(schema, query, opts);
    let tq = quote_qualified(&table.schema, &table.name);
    let alias = cx.main_alias(&table.name);
    // a domain with a JSON data representation is read as json and made
    // by its function, from the row (never from the parameter itself: an
    // IMMUTABLE function of a parameter is evaluated while planning, so a
    // PATCH matching no row would still fail on a bad value)
    let mut defs = Vec::new();
    let mut sets = Vec::new();
    for c in columns {
        let q = quote_ident(c);
        if defaults.contains(c) {
            sets.push(format!("{q} = DEFAULT"));
            continue;
        }
        let col = table.column(c);
        match col.and_then(|col| schema.rep_from_json(&col.data_type)) {
            Some(f) => {
                defs.push(format!("{q} json"));
                sets.push(format!("{q} = {f}(\"_b\".{q})"));
            }
            None => {
                // the cache's type has no length: `character` and `bit`
                // (length 1 so) are read wider, the assignment applies
                // the column's own length
                let ty = widen_param_type(col.map_or("text", |col| col.data_type.as_str()));
                defs.push(format!("{q} {ty}"));
                sets.push(format!("{q} = \"_b\".{q}"));
            }
        }
    }
    // (every column set to its default: the body is not read at all)
    let b = (!defs.is_empty()).then(|| cx.param(body.to_string()));
    let filter = mutation_where(&mut cx, table, &alias, query)?;
    let from = match b {
        None => String::new(),
        Some(b) => format!(
            " FROM (SELECT * FROM pg_catalog.json_to_record({b}::json) AS \"_b\"({})) AS \"_b\"",
            defs.join(", ")
        ),
    };
    let mut cte = format!(
        "UPDATE {tq} AS {alias} SET {}{from}{filter}",
        sets.join(", ")
    );
    cte.push_str(&returning_clause(table, query, returning, &alias));
    let sql = write_tail(&mut cx, table, query, returning, cte, "NULL::bigint")?;
    Ok(cx.finish(sql))
}

/// `DELETE /table?filters`.
pub fn delete(
    schema: &Schema,
    table: &Table,
    query: &Query,
    opts: &Options,
    returning: Returning,
) -> Result<Statement, ApiError> {
    let mut cx = Ctx::new(schema, query, opts);
    let alias = cx.main_alias(&table.name);
    let filter = mutation_where(&mut cx, table, &alias, query)?;
    let mut cte = format!(
        "DELETE FROM {} AS {alias}{filter}",
        quote_qualified(&table.schema, &table.name)
    );
    cte.push_str(&returning_clause(table, query, returning, &alias));
    let sql = write_tail(&mut cx, table, query, returning, cte, "NULL::bigint")?;
    Ok(cx.finish(sql))
}

/// The name PostgreSQL's catalog gives a type (`typname`), which PostgREST
/// shows in its messages: `integer` → `int4`, `character varying` →
/// `varchar`, `esg.metrics` → `metrics`, `integer[]` → `_int4`.
pub fn short_type_name(format_type: &str) -> String {
    if let Some(elem) = format_type.strip_suffix("[]") {
        return format!("_{}", short_type_name(elem));
    }
    let base = format_type.split('(').next().unwrap_or(format_type).trim();
    let short = match base {
        "integer" => "int4",
        "bigint" => "int8",
        "smallint" => "int2",
        "boolean" => "bool",
        "real" => "float4",
        "double precision" => "float8",
        "character varying" => "varchar",
        "character" => "bpchar",
        "bit varying" => "varbit",
        "timestamp with time zone" => "timestamptz",
        "timestamp without time zone" => "timestamp",
        "time with time zone" => "timetz",
        "time without time zone" => "time",
        other => other,
    };
    // a schema-qualified name: the type's own name, unquoted
    let unqualified = match short.rsplit_once('.') {
        Some((_, n)) if !short.starts_with('"') || short.ends_with('"') => n,
        _ => short,
    };
    unqualified.trim_matches('"').to_string()
}

/// The type an argument is read as: `character` and `bit` (length 1 when
/// cast to without a length, so `'abc'::character` is `'a'`) widen to
/// `character varying` and `bit varying`, as PostgREST does; the function
/// then gets the whole value, or PostgreSQL's own error for its length.
fn widen_param_type(ty: &str) -> &str {
    match ty {
        "character" => "character varying",
        "character[]" => "character varying[]",
        "bit" => "bit varying",
        "bit[]" => "bit varying[]",
        other => other,
    }
}

/// Whether `f` has one unnamed parameter: PostgREST passes such a function
/// the request body (or the query arguments as a JSON object) positionally.
pub fn takes_raw_body(f: &Function) -> bool {
    matches!(f.args.as_slice(), [a] if a.name.is_empty())
}

/// `ns.name(p => type, …)`, as PostgREST lists candidate functions.
fn signature(f: &Function) -> String {
    let params: Vec<String> = f
        .args
        .iter()
        .map(|a| format!("{} => {}", a.name, a.data_type))
        .collect();
    format!("{}.{}({})", f.schema, f.name, params.join(", "))
}

/// Pick the function `ns.name` a call designates, as PostgREST's `findProc`:
/// an overload whose parameters fit the argument names (every name is a
/// parameter, every parameter without a default is named; an unnamed
/// parameter is named `""`), else — for a `POST` (`post_mime`: its media
/// type) — the overload whose only parameter is unnamed and of the type that
/// media type carries (`application/json`: json/jsonb, `text/plain`: text,
/// `text/xml`: xml, `application/octet-stream`: bytea). With
/// `single_object` (`Prefer: params=single-object`) only an overload with a
/// single json/jsonb parameter fits, whatever its name. Several fits are 300
/// PGRST203, none is 404 PGRST202 (with PostgREST's details and hint).
pub fn find_function<'s>(
    schema: &'s Schema,
    ns: &str,
    name: &str,
    arg_names: &[String],
    post_mime: Option<&str>,
    single_object: bool,
) -> Result<&'s Function, ApiError> {
    let raw_only = matches!(
        post_mime,
        Some("text/plain" | "text/xml" | "application/xml" | "application/octet-stream")
    );
    let overloads: Vec<&Function> = schema
        .functions
        .iter()
        .filter(|f| f.schema == ns && f.name == name)
        .collect();
    let fits_names = |f: &&&Function| {
        if f.args.is_empty() {
            return arg_names.is_empty() && !raw_only;
        }
        arg_names
            .iter()
            .all(|a| f.args.iter().any(|p| &p.name == a))
            && f.args
                .iter()
                .all(|p| p.has_default || arg_names.contains(&p.name))
    };
    let raw_types = post_mime.map(raw_body_types).unwrap_or(&[]);
    let fits_body =
        |f: &&&Function| takes_raw_body(f) && raw_types.contains(&f.args[0].data_type.as_str());
    // `Prefer: params=single-object`: one json/jsonb parameter, named or not
    let fits_object = |f: &&&Function| matches!(f.args.as_slice(), [a] if matches!(a.data_type.as_str(), "json" | "jsonb"));
    let by_names: Vec<&Function> = if single_object {
        overloads.iter().filter(fits_object).copied().collect()
    } else {
        overloads.iter().filter(fits_names).copied().collect()
    };
    let candidates = if by_names.is_empty() && !single_object {
        overloads.iter().filter(fits_body).copied().collect()
    } else {
        by_names
    };
    match candidates.as_slice() {
        [f] => Ok(f),
        [] if single_object => Err(ApiError::new(
            404,
            "PGRST202",
            format!("Could not find the function {ns}.{name} in the schema cache"),
        )
        .details(format!(
            "Searched for the function {ns}.{name} with a single json/jsonb parameter, but no matches were found in the schema cache."
        ))),
        [] => Err(no_function(schema, ns, name, arg_names, post_mime, &overloads)),
        many => Err(ApiError::new(
            300,
            "PGRST203",
            format!(
                "Could not choose the best candidate function between: {}",
                in_routine_order(many)
                    .iter()
                    .map(|f| signature(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .hint("Try renaming the parameters or the function itself in the database so function overloading can be resolved")),
    }
}

/// Overloads in the order PostgREST's schema cache keeps them (its
/// `Ord Routine`): fewer parameters first, then by the parameters, each
/// compared by name, type, required, variadic — so the PGRST203 list reads
/// the same whatever order the functions were created in.
fn in_routine_order<'s>(fs: &[&'s Function]) -> Vec<&'s Function> {
    let mut v = fs.to_vec();
    v.sort_by(|a, b| {
        let key = |f: &'s Function| {
            f.args
                .iter()
                .map(|p| {
                    (
                        p.name.as_str(),
                        p.data_type.as_str(),
                        !p.has_default,
                        p.variadic,
                    )
                })
                .collect::<Vec<_>>()
        };
        a.args
            .len()
            .cmp(&b.args.len())
            .then_with(|| key(a).cmp(&key(b)))
    });
    v
}

/// PGRST202 as PostgREST words it, with a "Perhaps you meant" hint: the
/// overload whose parameters are closest, or the closest function name.
fn no_function(
    schema: &Schema,
    ns: &str,
    name: &str,
    arg_names: &[String],
    post_mime: Option<&str>,
    overloads: &[&Function],
) -> ApiError {
    let mut keys = arg_names.to_vec();
    keys.sort();
    keys.dedup();
    let func = format!("{ns}.{name}");
    let listed = keys.join(", ");
    let params_detail = if keys.is_empty() {
        " without parameters".to_string()
    } else {
        format!(
            " with parameter{} {listed}",
            if keys.len() > 1 { "s" } else { "" }
        )
    };
    let (with_params, searched) = match post_mime {
        Some("text/plain") => (false, " with a single unnamed text parameter".to_string()),
        Some("text/xml" | "application/xml") => {
            (false, " with a single unnamed xml parameter".to_string())
        }
        Some("application/octet-stream") => {
            (false, " with a single unnamed bytea parameter".to_string())
        }
        Some("application/json") => (
            true,
            format!("{params_detail} or with a single unnamed json/jsonb parameter"),
        ),
        _ => (true, params_detail),
    };
    let message = if with_params && keys.is_empty() {
        format!("Could not find the function {func} without parameters in the schema cache")
    } else if with_params {
        format!("Could not find the function {func}({listed}) in the schema cache")
    } else {
        format!("Could not find the function {func} in the schema cache")
    };
    let in_parens = |names: Vec<&str>| format!("({})", names.join(", "));
    // PostgREST gives no hint for a raw text/xml/bytea body
    let suggestion = if !with_params {
        None
    } else if overloads.is_empty() {
        let mut names: Vec<&str> = schema
            .functions
            .iter()
            .filter(|f| f.schema == ns)
            .map(|f| f.name.as_str())
            .collect();
        names.dedup();
        super::fuzzy::best_match(&names, name).map(str::to_string)
    } else {
        let lists: Vec<String> = overloads
            .iter()
            .map(|f| in_parens(f.args.iter().map(|a| a.name.as_str()).collect()))
            .collect();
        let refs: Vec<&str> = lists.iter().map(String::as_str).collect();
        super::fuzzy::best_match(&refs, &in_parens(keys.iter().map(String::as_str).collect()))
            .map(|p| format!("{name}{p}"))
    };
    let mut e = ApiError::new(404, "PGRST202", message).details(format!(
        "Searched for the function {func}{searched}, but no matches were found in the schema cache."
    ));
    if let Some(s) = suggestion {
        e = e.hint(format!("Perhaps you meant to call the function {ns}.{s}"));
    }
    e
}

/// `/rpc/fn`: call `func` with `args`; a row-returning function takes
/// `select`, filters, `order` and paging like a table. `count` adds the
/// exact total of the rows it returns that match the filters (no paging).
pub fn call(
    schema: &Schema,
    func: &Function,
    args: &Args,
    query: &Query,
    opts: &Options,
    count: bool,
) -> Result<Statement, ApiError> {
    let mut cx = Ctx::new(schema, query, opts);
    let fq = quote_qualified(&func.schema, &func.name);
    let mut from_args = String::new();
    // `VARIADIC "v" := …` names a variadic parameter (PostgreSQL's rule)
    let named = |n: &str| {
        let variadic = func.args.iter().any(|a| a.name == n && a.variadic);
        format!(
            "{}{}",
            if variadic { "VARIADIC " } else { "" },
            quote_ident(n)
        )
    };
    let arg_exprs: Vec<String> = match args {
        // A repeated key fills a variadic parameter (`?v=a&v=b`); for any
        // other parameter the last value wins, as in PostgREST.
        Args::Text(pairs) => {
            let mut names: Vec<&str> = Vec::new();
            for (n, _) in pairs {
                if !names.contains(&n.as_str()) {
                    names.push(n);
                }
            }
            names
                .into_iter()
                .map(|n| {
                    let arg = func.args.iter().find(|a| a.name == n);
                    let ty = widen_param_type(arg.map_or("text", |a| a.data_type.as_str()));
                    let mut values = pairs.iter().filter(|(k, _)| k == n).map(|(_, v)| v);
                    let value = if arg.is_some_and(|a| a.variadic) {
                        array_literal(&values.cloned().collect::<Vec<_>>())
                    } else {
                        values.next_back().cloned().unwrap_or_default()
                    };
                    let p = cx.param(value);
                    format!("{} := {p}::{ty}", named(n))
                })
                .collect()
        }
        Args::Json { names, body } => {
            if !names.is_empty() {
                let defs: Vec<String> = names
                    .iter()
                    .map(|n| {
                        let ty = func
                            .args
                            .iter()
                            .find(|a| &a.name == n)
                            .map_or("text", |a| a.data_type.as_str());
                        format!("{} {}", quote_ident(n), widen_param_type(ty))
                    })
                    .collect();
                let p = cx.param(body.clone());
                from_args = format!(
                    "pg_catalog.json_to_record({p}::json) AS \"_args\"({})",
                    defs.join(", ")
                );
            }
            names
                .iter()
                .map(|n| format!("{} := \"_args\".{}", named(n), quote_ident(n)))
                .collect()
        }
        Args::Raw(body) => {
            let ty = func
                .args
                .first()
                .map(|a| a.data_type.clone())
                .unwrap_or_else(|| "text".into());
            let p = cx.param(body.clone());
            vec![format!("{p}::{ty}")]
        }
    };
    let call_expr = format!("{fq}({})", arg_exprs.join(", "));
    let from_args_prefix = if from_args.is_empty() {
        String::new()
    } else {
        format!(" FROM {from_args}")
    };
    // Without paging, every row the statement returns is counted.
    let all_rows = if count {
        "pg_catalog.count(*)"
    } else {
        "NULL::bigint"
    };
    let mut count_query: Option<String> = None;
    let sql = if func.returns_void {
        // nothing reads a void call's value, and PostgreSQL drops unread
        // non-volatile expressions: MATERIALIZED keeps a STABLE void
        // function's body running (its checks, its response.headers)
        wrap(
            &format!("SELECT {call_expr}{from_args_prefix}"),
            "SELECT 1 FROM pgrst_source",
            "NULL::text",
            "NULL::bigint",
        )
        .replacen(
            "WITH pgrst_source AS (",
            "WITH pgrst_source AS MATERIALIZED (",
            1,
        )
    } else if func.result_columns.is_empty() {
        if func.returns_set {
            // `SETOF record` is called in a select list (in FROM it would
            // need a column definition list): each row becomes an object
            // with the names the function's query gives it
            let from = if func.returns_record {
                format!("(SELECT {call_expr} AS \"pgrst_scalar\"{from_args_prefix}) AS \"_s\"")
            } else if from_args.is_empty() {
                format!("{call_expr} AS \"pgrst_scalar\"")
            } else {
                format!("{from_args}, LATERAL {call_expr} AS \"pgrst_scalar\"")
            };
            let cte = format!("SELECT \"pgrst_scalar\" FROM {from}");
            count_query = cx.opts.plan_count.then(|| format!("SELECT 1 FROM {from}"));
            // limit/offset (and db-max-rows) page a set of scalars too
            let root = &query.root;
            let limit = match (root.limit, cx.opts.max_rows) {
                (Some(l), Some(m)) => Some(l.min(m)),
                (l, m) => l.or(m),
            };
            let mut page = "SELECT * FROM pgrst_source".to_string();
            if let Some(l) = limit {
                let p = cx.param(l.to_string());
                page.push_str(&format!(" LIMIT {p}"));
            }
            if let Some(o) = root.offset {
                let p = cx.param(o.to_string());
                page.push_str(&format!(" OFFSET {p}"));
            }
            // the total counts the whole set, not the page
            let total = if count {
                "(SELECT pg_catalog.count(*) FROM pgrst_source)"
            } else {
                all_rows
            };
            let body = scalar_body(
                cx.opts,
                "coalesce(pg_catalog.json_agg(_postgrest_t.\"pgrst_scalar\"), '[]')::text",
            );
            wrap(&cte, &page, &body, total)
        } else {
            let cte = format!("SELECT {call_expr} AS \"pgrst_scalar\"{from_args_prefix}");
            let body = scalar_body(
                cx.opts,
                "(pg_catalog.json_agg(_postgrest_t.\"pgrst_scalar\")->0)::text",
            );
            wrap(&cte, "SELECT * FROM pgrst_source", &body, all_rows)
        }
    } else {
        check_embedded_levels(query)?;
        // A function returning a table's rows embeds through that table's
        // relationships; other row types have none.
        let (rs, rn) = match &func.return_table {
            Some((s, n)) if schema.table(s, n).is_some() => (s.clone(), n.clone()),
            _ => (func.schema.clone(), func.name.clone()),
        };
        let pseudo = Table {
            schema: rs,
            name: rn,
            columns: func.result_columns.clone(),
            ..Table::default()
        };
        let alias = cx.main_alias(&pseudo.name.clone());
        let lv = cx.level(&pseudo, &alias, &query.select, &[], true)?;
        let from = if from_args.is_empty() {
            format!("{call_expr} AS {alias}")
        } else {
            format!("{from_args}, LATERAL {call_expr} AS {alias}")
        };
        let cte = format!("SELECT {} FROM {from}{}", lv.select_list(), lv.tail(None));
        let cq = (opts.plan_count || count && opts.count_cap.is_some())
            .then(|| count_query_of(&from, &lv));
        let count_sql = if !count {
            "NULL::bigint".to_string()
        } else if let (Some(cap), Some(cq)) = (opts.count_cap, &cq) {
            format!("(SELECT pg_catalog.count(*) FROM ({cq} LIMIT {cap}) AS _c)")
        } else if lv.group_by.is_empty() {
            format!(
                "(SELECT pg_catalog.count(*) FROM {from}{})",
                counting(&lv.where_only())
            )
        } else {
            format!(
                "(SELECT pg_catalog.count(*) FROM (SELECT 1 FROM {from}{} GROUP BY {}) AS _g)",
                counting(&lv.where_only()),
                lv.group_by.join(", ")
            )
        };
        count_query = cq.filter(|_| opts.plan_count);
        // a table's media type handler over the function's rows of it
        let body = match &opts.handler {
            Some(h) => h.body().into(),
            None => rows_body(opts),
        };
        wrap(&cte, "SELECT * FROM pgrst_source", &body, &count_sql)
    };
    let mut st = cx.finish(sql);
    st.count_query = count_query;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_query;
    use super::super::schema::tests::demo;
    use super::*;
    use proptest::prelude::*;

    fn q(pairs: &[(&str, &str)]) -> Query {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        parse_query(&v).unwrap()
    }

    fn read_sql(table: &str, pairs: &[(&str, &str)]) -> Result<Statement, ApiError> {
        let s = demo();
        let t = s.table("esg", table).unwrap().clone();
        let opts = Options {
            plan_count: true,
            ..Options::default()
        };
        read(&s, &t, &q(pairs), &opts, true)
    }

    /// The highest `$n` in the SQL equals the number of parameters sent.
    fn placeholders_match(st: &Statement) {
        let max = (1..=st.params.len() + 5)
            .filter(|n| st.sql.contains(&format!("${n}")))
            .max()
            .unwrap_or(0);
        assert_eq!(max, st.params.len(), "{} {:?}", st.sql, st.params);
    }

    #[test]
    fn empty_embeds_drop_their_parameters() {
        for select in [
            "name,reporting_entities()",
            "name,reporting_entities!inner()",
            "name,...reporting_entities()",
            "name,re:reporting_entities!inner(),reporting_entities(name)",
        ] {
            let st = read_sql(
                "organisations",
                &[
                    ("select", select),
                    ("reporting_entities.kind", "eq.plant"),
                    ("name", "like.G*"),
                ],
            )
            .unwrap();
            placeholders_match(&st);
        }
        let st = read_sql(
            "organisations",
            &[
                ("select", "name,reporting_entities!inner()"),
                ("reporting_entities.kind", "eq.plant"),
            ],
        )
        .unwrap();
        assert!(st.sql.contains("EXISTS"), "{}", st.sql);
        assert_eq!(st.params, vec![Some("plant".into())]);
    }

    #[test]
    fn aliases_name_tables_and_never_collide() {
        let (s, q, o) = (Schema::default(), Query::default(), Options::default());
        let mut cx = Ctx::new(&s, &q, &o);
        // the main relation under its own name, the others numbered
        assert_eq!(cx.main_alias("x_1"), "\"x_1\"");
        assert_eq!(cx.alias("x"), "\"x_2\"");
        assert_eq!(cx.alias("x"), "\"x_3\"");
        assert_eq!(cx.alias("y"), "\"y_1\"");
        // a long name is cut (at a character boundary) so PostgreSQL's
        // 63-byte limit keeps the suffix
        let long = "\u{e9}".repeat(40);
        let a = cx.alias(&long);
        assert_eq!(a, format!("\"{}_1\"", "\u{e9}".repeat(25)));
        assert!(a.len() - 2 <= 63);
        let b = cx.alias(&format!("{long}z"));
        assert_eq!(b, format!("\"{}_2\"", "\u{e9}".repeat(25)));
        // a table named like one of the builder's own subqueries is numbered
        let mut cx = Ctx::new(&s, &q, &o);
        assert_eq!(cx.main_alias("_b"), "\"_b_1\"");
        assert_eq!(cx.main_alias("pgrst_source"), "\"pgrst_source_1\"");
        // quoting holds for any name
        let mut cx = Ctx::new(&s, &q, &o);
        assert_eq!(cx.main_alias("a\"b"), "\"a\"\"b\"");
        assert_eq!(cx.alias("a\"b"), "\"a\"\"b_1\"");
    }

    #[test]
    fn simple_read_is_parameterised() {
        let st = read_sql(
            "metrics",
            &[("select", "id,code"), ("code", "eq.scope1"), ("limit", "5")],
        )
        .unwrap();
        assert!(st.sql.contains("\"metrics\".\"code\" = $1"), "{}", st.sql);
        assert!(st.sql.contains("LIMIT $2"), "{}", st.sql);
        assert_eq!(st.params, vec![Some("scope1".into()), Some("5".into())]);
        assert!(!st.sql.contains("scope1"));
    }

    #[test]
    fn every_operator_renders() {
        let cases = [
            ("eq.1", "= $1"),
            ("neq.1", "<> $1"),
            ("gt.1", "> $1"),
            ("gte.1", ">= $1"),
            ("lt.1", "< $1"),
            ("lte.1", "<= $1"),
            ("like.a*", "LIKE $1"),
            ("ilike.a*", "ILIKE $1"),
            ("match.^a", "~ $1"),
            ("imatch.^a", "~* $1"),
            ("is.null", "IS NULL"),
            ("is.true", "IS TRUE"),
            ("isdistinct.a", "IS DISTINCT FROM $1"),
            ("in.(a,b)", "= ANY ($1)"),
            ("cs.{a}", "@> $1"),
            ("cd.{a}", "<@ $1"),
            ("ov.{a}", "&& $1"),
            ("sl.[1,2)", "<< $1"),
            ("sr.[1,2)", ">> $1"),
            ("nxr.[1,2)", "&< $1"),
            ("nxl.[1,2)", "&> $1"),
            ("adj.[1,2)", "-|- $1"),
            ("not.eq.1", "NOT (\"metrics\".\"code\" = $1)"),
            ("eq(any).{a,b}", "= ANY ($1)"),
            ("like(all).{a*,b*}", "LIKE ALL ($1)"),
            ("fts.cat", "pg_catalog.to_tsvector(\"metrics\".\"code\") @@ pg_catalog.to_tsquery($1)"),
            ("plfts(english).cat", "pg_catalog.to_tsvector($1::regconfig, \"metrics\".\"code\") @@ pg_catalog.plainto_tsquery($1::regconfig, $2)"),
            ("phfts.cat", "phraseto_tsquery($1)"),
            ("wfts.cat", "websearch_to_tsquery($1)"),
        ];
        for (v, want) in cases {
            let st = read_sql("metrics", &[("code", v)]).unwrap();
            assert!(st.sql.contains(want), "{v}: {}", st.sql);
        }
        let st = read_sql("metrics", &[("doc", "fts.cat")]).unwrap();
        assert!(
            st.sql
                .contains("\"metrics\".\"doc\" @@ pg_catalog.to_tsquery($1)"),
            "{}",
            st.sql
        );
        let st = read_sql("metrics", &[("code", "in.()")]).unwrap();
        assert!(st.sql.contains("WHERE FALSE"), "{}", st.sql);
        let st = read_sql("metrics", &[("extra->a->>b", "eq.x")]).unwrap();
        assert!(
            st.sql
                .contains("((\"metrics\".\"extra\"->$1::text)->>$2::text) = $3"),
            "{}",
            st.sql
        );
    }

    #[test]
    fn logic_and_order() {
        let st = read_sql(
            "metrics",
            &[
                ("or", "(code.eq.a,and(id.gt.1,id.lt.5))"),
                ("order", "code.desc.nullslast,id"),
            ],
        )
        .unwrap();
        assert!(
            st.sql
                .contains("(\"metrics\".\"code\" = $1 OR (\"metrics\".\"id\" > $2 AND \"metrics\".\"id\" < $3))"),
            "{}",
            st.sql
        );
        assert!(
            st.sql
                .contains("ORDER BY \"metrics\".\"code\" DESC NULLS LAST, \"metrics\".\"id\""),
            "{}",
            st.sql
        );
    }

    #[test]
    fn embeds() {
        let st = read_sql(
            "reporting_entities",
            &[
                (
                    "select",
                    "name,org:organisations(name),data_points(value,metrics(code))",
                ),
                ("data_points.order", "period.desc"),
                ("data_points.limit", "3"),
            ],
        )
        .unwrap();
        assert!(st.sql.contains("row_to_json"), "{}", st.sql);
        assert!(st.sql.contains("json_agg(\"_e\")"), "{}", st.sql);
        assert!(st.sql.contains("AS \"org\""), "{}", st.sql);
        let st = read_sql(
            "reporting_entities",
            &[
                ("select", "name,organisations!inner(name)"),
                ("organisations.country", "eq.DE"),
            ],
        )
        .unwrap();
        assert!(
            st.sql
                .contains("EXISTS (SELECT 1 FROM \"esg\".\"organisations\""),
            "{}",
            st.sql
        );
        let st = read_sql(
            "reporting_entities",
            &[("select", "name,...organisations(org_name:name)")],
        )
        .unwrap();
        assert!(st.sql.contains("LEFT JOIN LATERAL"), "{}", st.sql);
        let st = read_sql("units", &[("select", "code,tags(label)")]).unwrap();
        assert!(st.sql.contains("\"esg\".\"unit_tags\""), "{}", st.sql);
        let st = read_sql(
            "reporting_entities",
            &[
                ("select", "name,organisations(name)"),
                ("order", "organisations(name).desc"),
            ],
        )
        .unwrap();
        assert!(st.sql.contains("ORDER BY (SELECT"), "{}", st.sql);
    }

    #[test]
    fn errors() {
        assert_eq!(
            read_sql("metrics", &[("nope", "eq.1")]).unwrap_err().code,
            "42703"
        );
        assert_eq!(
            read_sql("metrics", &[("select", "nope")]).unwrap_err().code,
            "42703"
        );
        // PostgreSQL's message names the relation's alias in the statement
        assert_eq!(
            read_sql("metrics", &[("select", "nope")])
                .unwrap_err()
                .message,
            "column metrics.nope does not exist"
        );
        assert_eq!(
            read_sql("metrics", &[("select", "code,data_points(nope)")])
                .unwrap_err()
                .message,
            "column data_points_1.nope does not exist"
        );
        assert_eq!(
            read_sql("metrics", &[("select", "id,organisations(*)")])
                .unwrap_err()
                .code,
            "PGRST200"
        );
        // a missing relationship is reported before an unknown column, as
        // PostgREST plans embeds before the database reads a column
        for pairs in [
            &[("select", "nope,organisations(*)")][..],
            &[("select", "id,organisations(*)"), ("order", "nope.asc")][..],
        ] {
            assert_eq!(read_sql("metrics", pairs).unwrap_err().code, "PGRST200");
        }
        // a self-reference by the table's name is the children, not ambiguous
        assert!(read_sql("organisations", &[("select", "id,organisations(*)")]).is_ok());
        assert_eq!(
            read_sql("metrics", &[("select", "id"), ("units.code", "eq.x")])
                .unwrap_err()
                .code,
            "PGRST108"
        );
        // the same name embedded twice: PostgREST's statement fails with 42712
        for select in [
            "code,data_points(id),data_points(value)",
            "code,x:data_points(id),x:units(code)",
        ] {
            let e = read_sql("metrics", &[("select", select)]).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (400, "42712"), "{select}");
        }
        let e = read_sql(
            "metrics",
            &[("select", "code,data_points(id),data_points(value)")],
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "table name \"metrics_data_points_1\" specified more than once"
        );
        // a name used once per level is fine
        assert!(read_sql(
            "metrics",
            &[("select", "code,a:data_points(id),b:data_points(value)")]
        )
        .is_ok());
        // the message names the first segment that is not embedded
        let e = read_sql(
            "metrics",
            &[
                ("select", "id,data_points(id)"),
                ("data_points.nope.id", "eq.1"),
            ],
        )
        .unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            (
                "PGRST108",
                "'nope' is not an embedded resource in this request"
            )
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("Verify that 'nope' is included in the 'select' query parameter.")
        );
        assert_eq!(
            read_sql("metrics", &[("select", "count()")])
                .unwrap_err()
                .code,
            "PGRST123"
        );
        // to-many spreads: arrays per column (PostgREST v13; with
        // aggregates enabled, as there)
        let s = demo();
        let orgs = s.table("esg", "organisations").unwrap().clone();
        let aggs = Options {
            aggregates: true,
            ..Options::default()
        };
        let st = read(
            &s,
            &orgs,
            &q(&[("select", "id,...reporting_entities(name,k:kind,*)")]),
            &aggs,
            false,
        )
        .unwrap();
        assert!(
            st.sql.contains(
                "COALESCE(pg_catalog.json_agg(\"_s\".\"name\"), '[]'::json) AS \"name\", \
                 COALESCE(pg_catalog.json_agg(\"_s\".\"k\"), '[]'::json) AS \"k\", \
                 COALESCE(pg_catalog.json_agg(\"_s\".\"id\"), '[]'::json) AS \"id\""
            ),
            "{}",
            st.sql
        );
        assert_eq!(
            st.sql.matches("json_agg(\"_s\".\"name\")").count(),
            1,
            "{}",
            st.sql
        );
        let s = demo();
        let t = s.table("esg", "organisations").unwrap().clone();
        let q1 = q(&[("select", "id,...reporting_entities(name.count())")]);
        let opts = Options {
            aggregates: true,
            ..Options::default()
        };
        assert_eq!(
            read(&s, &t, &q1, &opts, false).unwrap_err().code,
            "PGRST127"
        );
        assert_eq!(
            read_sql(
                "organisations",
                &[
                    ("select", "id,reporting_entities(name)"),
                    ("order", "reporting_entities(name)")
                ]
            )
            .unwrap_err()
            .code,
            "PGRST118"
        );
    }

    #[test]
    fn max_rows_caps_every_level_that_returns_rows() {
        let s = demo();
        let opts = Options {
            max_rows: Some(2),
            ..Options::default()
        };
        let metrics = s.table("esg", "metrics").unwrap().clone();
        let st = read(
            &s,
            &metrics,
            &q(&[
                ("select", "code,data_points(id)"),
                ("data_points.limit", "5"),
            ]),
            &opts,
            false,
        )
        .unwrap();
        // the to-many embed: the smaller of its limit and the cap; the top level: the cap
        assert_eq!(st.sql.matches(" LIMIT $").count(), 2, "{}", st.sql);
        assert!(
            st.params.contains(&Some("2".to_string())),
            "{:?}",
            st.params
        );
        assert!(
            !st.params.contains(&Some("5".to_string())),
            "{:?}",
            st.params
        );
        // a to-one embed is one row anyway: no second LIMIT
        let dp = s.table("esg", "data_points").unwrap().clone();
        let st = read(&s, &dp, &q(&[("select", "id,metrics(code)")]), &opts, false).unwrap();
        assert_eq!(st.sql.matches(" LIMIT $").count(), 1, "{}", st.sql);
        assert!(!st.sql.contains("LIMIT $1 LIMIT 1"), "{}", st.sql);
        // a to-one embed or spread paged by the client: its page, then one row
        for pairs in [
            &[("select", "id,metrics(code)"), ("metrics.limit", "1")][..],
            &[("select", "id,...metrics(code)"), ("metrics.offset", "1")][..],
        ] {
            let st = read(&s, &dp, &q(pairs), &opts, false).unwrap();
            assert!(st.sql.contains(") AS \"_o\" LIMIT 1)"), "{}", st.sql);
            assert!(!st.sql.contains(" LIMIT 1 LIMIT"), "{}", st.sql);
            assert!(!st.sql.contains("$1 LIMIT 1"), "{}", st.sql);
        }
    }

    #[test]
    fn aggregates_group_by() {
        let s = demo();
        let t = s.table("esg", "data_points").unwrap().clone();
        let opts = Options {
            aggregates: true,
            max_rows: Some(100),
            ..Options::default()
        };
        let agg_read =
            |select: &str| read(&s, &t, &q(&[("select", select)]), &opts, false).unwrap();
        let st = agg_read("metric_id,value.sum(),count()");
        assert!(
            st.sql.contains("GROUP BY \"data_points\".\"metric_id\""),
            "{}",
            st.sql
        );
        assert!(
            st.sql
                .contains("pg_catalog.sum(\"data_points\".\"value\") AS \"sum\""),
            "{}",
            st.sql
        );
        assert!(st.sql.contains("LIMIT $1"), "max rows: {}", st.sql);
        // a to-one spread in an aggregating level: its columns group, its
        // aggregates run over the level's rows (the spread gives raw values)
        let st = agg_read("...metrics(code,top:id.max()),total:value.sum(),count()");
        placeholders_match(&st);
        assert!(
            st.sql.contains(
                "SELECT \"metrics_1\".\"code\" AS \"code\", \"metrics_1\".\"id\" AS \"top\" FROM"
            ),
            "{}",
            st.sql
        );
        assert!(
            st.sql.contains(
                "\"metrics_2\".\"code\", pg_catalog.max(\"metrics_2\".\"top\") AS \"top\""
            ),
            "{}",
            st.sql
        );
        assert!(
            st.sql.contains("GROUP BY \"metrics_2\".\"code\""),
            "{}",
            st.sql
        );
        // a spread with an aggregate makes its level aggregate
        let st = agg_read("metric_id,...metrics(n:id.count())");
        assert!(
            st.sql.contains("GROUP BY \"data_points\".\"metric_id\""),
            "{}",
            st.sql
        );
        // without aggregates, a spread stays `alias.*`
        let st = agg_read("id,...metrics(code)");
        assert!(!st.sql.contains("GROUP BY"), "{}", st.sql);
        // ordering by a spread's grouped column reads it from the spread's
        // lateral (a correlated subquery would be ungrouped: 42803)
        let st = read(
            &s,
            &t,
            &q(&[
                ("select", "total:value.sum(),...metrics(code)"),
                ("order", "metrics(code).desc"),
            ]),
            &opts,
            false,
        )
        .unwrap();
        assert!(
            st.sql
                .contains("GROUP BY \"metrics_2\".\"code\" ORDER BY \"metrics_2\".\"code\" DESC"),
            "{}",
            st.sql
        );
        // a to-many spread aggregates (PostgREST v13): not without aggregates
        let no_aggs = Options {
            aggregates: false,
            ..opts.clone()
        };
        let m = s.table("esg", "metrics").unwrap().clone();
        let e = read(
            &s,
            &m,
            &q(&[("select", "code,...data_points(value)")]),
            &no_aggs,
            false,
        )
        .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "PGRST123"));
        assert!(read(
            &s,
            &m,
            &q(&[("select", "code,...data_points(value)")]),
            &opts,
            false
        )
        .is_ok());
    }

    #[test]
    fn embedded_count_without_parentheses() {
        // `rel(count)`: PostgREST's embedded count, also with aggregates off
        let st = read_sql("metrics", &[("select", "code,data_points(count)")]).unwrap();
        assert!(
            st.sql
                .contains("SELECT pg_catalog.count(*) AS \"count\" FROM \"esg\".\"data_points\""),
            "{}",
            st.sql
        );
        // with other columns, they group
        let st = read_sql(
            "metrics",
            &[("select", "code,data_points(metric_id,count)")],
        )
        .unwrap();
        assert!(
            st.sql.contains("GROUP BY \"data_points_1\".\"metric_id\""),
            "{}",
            st.sql
        );
        // at the top level too, `count` without such a column counts the
        // rows (PostgreSQL reads `metrics.count` as `count(metrics)`)
        let st = read_sql("metrics", &[("select", "count")]).unwrap();
        assert!(
            st.sql.contains("pg_catalog.count(*) AS \"count\""),
            "{}",
            st.sql
        );
        let st = read_sql("metrics", &[("select", "unit,count")]).unwrap();
        assert!(
            st.sql.contains("GROUP BY \"metrics\".\"unit\""),
            "{}",
            st.sql
        );
        // an explicit aggregate still needs db-aggregates-enabled
        let e = read_sql("metrics", &[("select", "code,data_points(count())")]).unwrap_err();
        assert_eq!(e.code, "PGRST123");
    }

    #[test]
    fn casts_are_canonical_and_quoted() {
        let st = read_sql(
            "metrics",
            &[("select", "id::text,x:id::double precision,tags::text[]")],
        )
        .unwrap();
        assert!(
            st.sql
                .contains("CAST(\"metrics\".\"id\" AS \"text\") AS \"id\""),
            "{}",
            st.sql
        );
        assert!(st.sql.contains("AS \"float8\") AS \"x\""), "{}", st.sql);
        assert!(st.sql.contains("AS \"text\"[])"), "{}", st.sql);
    }

    #[test]
    fn writes() {
        let s = demo();
        let t = s.table("esg", "metrics").unwrap().clone();
        let spec = InsertSpec {
            columns: vec!["code".into(), "name".into()],
            body: "[{\"code\":\"a\",\"name\":\"b\"}]".into(),
            present: None,
            resolution: Some(Resolution::MergeDuplicates),
        };
        let query = q(&[("on_conflict", "tenant_id,code"), ("select", "id,code")]);
        let st = insert(
            &s,
            &t,
            &query,
            &Options::default(),
            &spec,
            Returning::Representation,
        )
        .unwrap();
        assert!(
            st.sql
                .contains("json_populate_recordset(NULL::\"esg\".\"metrics\", $1::json)"),
            "{}",
            st.sql
        );
        assert!(
            st.sql.contains(
                "ON CONFLICT (\"tenant_id\", \"code\") DO UPDATE SET \"name\" = EXCLUDED.\"name\""
            ),
            "{}",
            st.sql
        );
        // the update path counts its rows; total_count is what was inserted
        assert!(
            st.sql
                .contains("EXCLUDED.\"name\" WHERE pg_catalog.set_config('pgrst.upsert_updates'"),
            "{}",
            st.sql
        );
        assert!(
            st.sql
                .contains(&format!("{UPSERT_INSERTED} AS total_count")),
            "{}",
            st.sql
        );
        // only key columns in the payload: a no-op update that returns the row
        let keys_only = InsertSpec {
            columns: vec!["tenant_id".into(), "code".into()],
            ..spec.clone()
        };
        let st = insert(
            &s,
            &t,
            &query,
            &Options::default(),
            &keys_only,
            Returning::Minimal,
        )
        .unwrap();
        assert!(
            st.sql.contains("DO UPDATE SET \"tenant_id\" = EXCLUDED.\"tenant_id\", \"code\" = EXCLUDED.\"code\""),
            "{}",
            st.sql
        );
        // ignore-duplicates counts nothing (always 201)
        let ignore = InsertSpec {
            resolution: Some(Resolution::IgnoreDuplicates),
            ..spec.clone()
        };
        let st = insert(
            &s,
            &t,
            &query,
            &Options::default(),
            &ignore,
            Returning::Minimal,
        )
        .unwrap();
        assert!(
            st.sql.contains("DO NOTHING") && !st.sql.contains("upsert_updates"),
            "{}",
            st.sql
        );
        // no conflict target: PostgREST ignores the resolution
        let mut no_pk = t.clone();
        no_pk.primary_key.clear();
        assert_eq!(
            upsert_resolution(&no_pk, &q(&[]), Some(Resolution::MergeDuplicates)),
            None
        );
        assert_eq!(
            upsert_resolution(&no_pk, &query, Some(Resolution::MergeDuplicates)),
            Some(Resolution::MergeDuplicates)
        );
        let st = insert(
            &s,
            &no_pk,
            &q(&[]),
            &Options::default(),
            &spec,
            Returning::Minimal,
        )
        .unwrap();
        assert!(!st.sql.contains("ON CONFLICT"), "{}", st.sql);
        let spec2 = InsertSpec {
            present: Some(vec![vec![true, false]]),
            ..spec.clone()
        };
        let st = insert(
            &s,
            &t,
            &q(&[]),
            &Options::default(),
            &spec2,
            Returning::Minimal,
        )
        .unwrap();
        // missing=default over rows lacking keys: one INSERT … SELECT over
        // the body in order, the rows' key sets one parameter; a column
        // without a default expression takes NULL
        assert!(
            st.sql.contains(
                "CASE WHEN pg_catalog.substr(\"pgrst_x\".\"m\", 2, 1) = '1' THEN \"pgrst_r\".\"name\" ELSE NULL END"
            ),
            "{}",
            st.sql
        );
        assert!(st.sql.contains("ORDER BY \"pgrst_x\".\"n\""), "{}", st.sql);
        assert!(
            st.params.contains(&Some("{\"10\"}".to_string())),
            "{:?}",
            st.params
        );
        // a default expression from the schema cache is what a row lacking
        // the key gets, and the statement's text does not grow with the rows
        let mut with_default = t.clone();
        with_default
            .columns
            .iter_mut()
            .find(|c| c.name == "name")
            .unwrap()
            .default_expr = Some("('unnamed'::text)::text".into());
        let many = InsertSpec {
            present: Some(vec![vec![true, false]; 500]),
            ..spec2.clone()
        };
        let a = insert(
            &s,
            &with_default,
            &q(&[]),
            &Options::default(),
            &spec2,
            Returning::Minimal,
        )
        .unwrap();
        let b = insert(
            &s,
            &with_default,
            &q(&[]),
            &Options::default(),
            &many,
            Returning::Minimal,
        )
        .unwrap();
        assert!(
            a.sql.contains("ELSE ('unnamed'::text)::text END"),
            "{}",
            a.sql
        );
        assert_eq!(a.sql, b.sql);
        let bad = InsertSpec {
            columns: vec!["nope".into()],
            ..spec
        };
        assert_eq!(
            insert(
                &s,
                &t,
                &q(&[]),
                &Options::default(),
                &bad,
                Returning::Minimal
            )
            .unwrap_err()
            .code,
            "PGRST204"
        );
        let st = update(
            &s,
            &t,
            &q(&[("code", "eq.a")]),
            &Options::default(),
            &["name".into()],
            &[],
            "{\"name\":\"x\"}",
            Returning::Minimal,
        )
        .unwrap();
        assert!(
            st.sql.contains(
                "UPDATE \"esg\".\"metrics\" AS \"metrics\" SET \"name\" = \"_b\".\"name\""
            ),
            "{}",
            st.sql
        );
        let st = delete(
            &s,
            &t,
            &q(&[("code", "eq.a")]),
            &Options::default(),
            Returning::Representation,
        )
        .unwrap();
        assert!(st.sql.starts_with("WITH pgrst_source AS (DELETE FROM \"esg\".\"metrics\" AS \"metrics\" WHERE \"metrics\".\"code\" = $1 RETURNING \"metrics\".*)"), "{}", st.sql);
    }

    #[test]
    fn limited_update_and_delete() {
        let s = demo();
        let t = s.table("esg", "metrics").unwrap().clone();
        let upd = |pairs: &[(&str, &str)]| {
            update(
                &s,
                &t,
                &q(pairs),
                &Options::default(),
                &["name".into()],
                &[],
                "{\"name\":\"x\"}",
                Returning::Minimal,
            )
        };
        let st = upd(&[
            ("code", "like.py*"),
            ("order", "id.desc"),
            ("limit", "2"),
            ("offset", "1"),
        ])
        .unwrap();
        assert!(
            st.sql.contains(
                "WHERE \"metrics\".\"code\" LIKE $2 AND (\"metrics\".\"tenant_id\", \"metrics\".\"id\") IN \
                 (SELECT \"metrics_1\".\"tenant_id\", \"metrics_1\".\"id\" FROM \"esg\".\"metrics\" AS \"metrics_1\" \
                 WHERE \"metrics_1\".\"code\" LIKE $3 ORDER BY \"metrics_1\".\"id\" DESC LIMIT $4 OFFSET $5) RETURNING"
            ),
            "{}",
            st.sql
        );
        assert_eq!(
            st.params[1..],
            [
                Some("py%".to_string()),
                Some("py%".to_string()),
                Some("2".to_string()),
                Some("1".to_string())
            ]
        );
        // without order: PGRST109, for limit and for offset alone
        for pairs in [
            &[("limit", "1")][..],
            &[("offset", "1")][..],
            &[("code", "eq.a"), ("limit", "1"), ("units.order", "code")][..],
        ] {
            let e = upd(pairs).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (400, "PGRST109"), "{pairs:?}");
            assert_eq!(
                e.message,
                "A 'limit' was applied without an explicit 'order'"
            );
            assert_eq!(
                e.hint.as_deref(),
                Some("Apply an 'order' using unique column(s)")
            );
        }
        // no paging: every matching row, as before
        let st = upd(&[("code", "eq.a"), ("order", "id")]).unwrap();
        assert!(!st.sql.contains(" IN ("), "{}", st.sql);
        // DELETE, and a table without a primary key goes by ctid
        let mut nopk = t.clone();
        nopk.primary_key.clear();
        let st = delete(
            &s,
            &nopk,
            &q(&[("order", "code"), ("limit", "1")]),
            &Options::default(),
            Returning::Representation,
        )
        .unwrap();
        assert!(
            st.sql.starts_with(
                "WITH pgrst_source AS (DELETE FROM \"esg\".\"metrics\" AS \"metrics\" WHERE (\"metrics\".\"ctid\") IN \
                 (SELECT \"metrics_1\".\"ctid\" FROM \"esg\".\"metrics\" AS \"metrics_1\" ORDER BY \"metrics_1\".\"code\" LIMIT $1) RETURNING \"metrics\".*)"
            ),
            "{}",
            st.sql
        );
        assert_eq!(st.params, vec![Some("1".to_string())]);
        assert_eq!(
            limit_cap(&nopk, &q(&[("order", "code"), ("limit", "1")])),
            None
        );
        // a table's system columns are columns: `order=ctid` pages it
        let st = delete(
            &s,
            &nopk,
            &q(&[("order", "ctid.desc"), ("limit", "1")]),
            &Options::default(),
            Returning::Minimal,
        )
        .unwrap();
        assert!(
            st.sql
                .contains("ORDER BY \"metrics_1\".\"ctid\" DESC LIMIT $1"),
            "{}",
            st.sql
        );
        // a view without a key has no ctid: rows are picked by the order
        // columns (PostgREST's way), and the handler caps them at the limit
        let mut view = nopk.clone();
        view.is_view = true;
        let paged = q(&[
            ("order", "code,code.desc,name"),
            ("limit", "2"),
            ("offset", "1"),
        ]);
        let st = delete(&s, &view, &paged, &Options::default(), Returning::Minimal).unwrap();
        assert!(
            st.sql.contains(
                "WHERE (\"metrics\".\"code\", \"metrics\".\"name\") IN (SELECT \"metrics_1\".\"code\", \"metrics_1\".\"name\" \
                 FROM \"esg\".\"metrics\" AS \"metrics_1\" ORDER BY"
            ),
            "{}",
            st.sql
        );
        assert_eq!(limit_cap(&view, &paged), Some(2));
        assert_eq!(limit_cap(&t, &paged), None);
        assert_eq!(
            limit_cap(&view, &q(&[("order", "code"), ("offset", "1")])),
            None
        );
        let e = delete(
            &s,
            &view,
            &q(&[("order", "ctid"), ("limit", "1")]),
            &Options::default(),
            Returning::Minimal,
        )
        .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "42703"));
        let e = limit_exceeded(3, 1);
        assert_eq!((e.status, e.code.as_str()), (400, "PGRST110"));
        assert_eq!(
            e.details.as_deref(),
            Some("Results contain 3 rows changed but the maximum number allowed is 1")
        );
        assert_eq!(
            delete(
                &s,
                &t,
                &q(&[("limit", "1")]),
                &Options::default(),
                Returning::Minimal
            )
            .unwrap_err()
            .code,
            "PGRST109"
        );
    }

    #[test]
    fn inner_embeds_keep_scan_order_and_their_paging() {
        // no paging: OFFSET 0, so the row query is not a semi-join (rows in
        // the parent's scan order, as PostgREST's lateral join gives them)
        let st = read_sql(
            "organisations",
            &[("select", "name,reporting_entities!inner(name)")],
        )
        .unwrap();
        let inner = st.sql.split("EXISTS (").nth(1).unwrap();
        assert!(inner.contains(" OFFSET 0)"), "{}", st.sql);
        // the embed's limit and offset decide whether a row is kept, as
        // PostgREST's `INNER JOIN LATERAL (… LIMIT … OFFSET …)` does
        let st = read_sql(
            "organisations",
            &[
                ("select", "name,reporting_entities!inner(name)"),
                ("reporting_entities.limit", "1"),
                ("reporting_entities.offset", "2"),
            ],
        )
        .unwrap();
        let inner = st.sql.split("EXISTS (").nth(1).unwrap();
        let tail = inner.split(')').next().unwrap();
        assert!(
            tail.contains(" LIMIT $") && tail.contains(" OFFSET $"),
            "{}",
            st.sql
        );
        assert!(!tail.contains("OFFSET 0"), "{}", st.sql);
        assert_eq!(
            st.params.iter().flatten().filter(|p| *p == "2").count(),
            2,
            "the embed's offset: in its rows and in the EXISTS: {:?}",
            st.params
        );
    }

    #[test]
    fn null_filter_on_embeds() {
        let base = [
            ("select", "name,reporting_entities(name)"),
            ("reporting_entities.kind", "eq.warehouse"),
        ];
        let with = |extra: (&'static str, &'static str)| {
            let mut v = base.to_vec();
            v.push(extra);
            read_sql("organisations", &v)
        };
        let exists = "EXISTS (SELECT 1 FROM \"esg\".\"reporting_entities\" AS \"reporting_entities_2\" WHERE \"reporting_entities_2\".\"tenant_id\" = \"organisations\".\"tenant_id\" AND \"reporting_entities_2\".\"organisation_id\" = \"organisations\".\"id\" AND \"reporting_entities_2\".\"kind\" = $2";
        let exists = format!("{exists} OFFSET 0)");
        let st = with(("reporting_entities", "is.null")).unwrap();
        assert!(
            st.sql.contains(&format!("WHERE NOT {exists}")),
            "{}",
            st.sql
        );
        // the count (and the planner's count query) filters the same way,
        // but lets the planner make it an anti-join: a count has no order
        let count_query = st.count_query.as_deref().unwrap();
        assert!(
            count_query.contains(&format!("NOT {}", exists.replace(" OFFSET 0)", ")"))),
            "{count_query}"
        );
        assert!(!count_query.contains('\0') && !st.sql.contains('\0'));
        assert_eq!(st.params[1], Some("warehouse".to_string()));
        for v in ["not.is.null", "is.not_null"] {
            let st = with(("reporting_entities", v)).unwrap();
            assert!(
                st.sql.contains(&format!("WHERE {exists}")),
                "{v}: {}",
                st.sql
            );
        }
        // inside or=, on an alias, and nested one level down
        let st = read_sql(
            "organisations",
            &[
                (
                    "select",
                    "name,re:reporting_entities(name,data_points(value))",
                ),
                ("or", "(re.is.null,name.eq.x)"),
                ("re.data_points", "not.is.null"),
            ],
        )
        .unwrap();
        assert!(
            st.sql
                .contains("(NOT EXISTS (SELECT 1 FROM \"esg\".\"reporting_entities\""),
            "{}",
            st.sql
        );
        assert!(
            st.sql
                .contains("EXISTS (SELECT 1 FROM \"esg\".\"data_points\""),
            "{}",
            st.sql
        );
        // not an embed of the request, or another operator: a column, which does not exist
        assert_eq!(
            read_sql("organisations", &[("reporting_entities", "is.null")])
                .unwrap_err()
                .code,
            "42703"
        );
        assert_eq!(
            with(("reporting_entities", "eq.1")).unwrap_err().code,
            "42703"
        );
        // a real column of that name stays a column filter
        let st = read_sql(
            "organisations",
            &[("select", "name"), ("parent_org_id", "is.null")],
        )
        .unwrap();
        assert!(
            st.sql
                .contains("\"organisations\".\"parent_org_id\" IS NULL"),
            "{}",
            st.sql
        );
    }

    #[test]
    fn stripped_nulls_body() {
        let s = demo();
        let t = s.table("esg", "metrics").unwrap().clone();
        let strip = Options {
            strip_nulls: true,
            ..Options::default()
        };
        let st = read(&s, &t, &q(&[]), &strip, false).unwrap();
        assert!(
            st.sql.contains(
                "coalesce(pg_catalog.json_strip_nulls(pg_catalog.json_agg(_postgrest_t)), '[]')::text AS body"
            ),
            "{}",
            st.sql
        );
        let st = read(&s, &t, &q(&[]), &Options::default(), false).unwrap();
        assert!(!st.sql.contains("json_strip_nulls"), "{}", st.sql);
        let st = delete(&s, &t, &q(&[]), &strip, Returning::Representation).unwrap();
        assert!(st.sql.contains("json_strip_nulls"), "{}", st.sql);
    }

    #[test]
    fn functions_returning_table_rows_embed() {
        let mut s = demo();
        let cols = s
            .table("esg", "reporting_entities")
            .unwrap()
            .columns
            .clone();
        let mut f = Function {
            returns_record: false,
            schema: "esg".into(),
            name: "entities_of".into(),
            args: vec![],
            returns_set: true,
            returns_void: false,
            result_columns: cols,
            return_table: Some(("esg".into(), "reporting_entities".into())),
            volatility: super::super::schema::Volatility::Stable,
            media_type: None,
            media_binary: false,
            settings: Vec::new(),
        };
        s.functions.push(f.clone());
        let query = q(&[
            ("select", "name,organisations(name)"),
            ("organisations.country", "eq.DE"),
        ]);
        let args = Args::Text(vec![]);
        let st = call(&s, &f, &args, &query, &Options::default(), false).unwrap();
        assert!(
            st.sql.contains("FROM \"esg\".\"organisations\" AS \"organisations_1\" WHERE \"organisations_1\".\"tenant_id\" = \"reporting_entities\".\"tenant_id\""),
            "{}",
            st.sql
        );
        assert!(
            st.sql
                .contains("\"esg\".\"entities_of\"() AS \"reporting_entities\""),
            "{}",
            st.sql
        );
        // a row type that is no table's (RETURNS TABLE): nothing to embed
        f.return_table = None;
        assert_eq!(
            call(&s, &f, &args, &query, &Options::default(), false)
                .unwrap_err()
                .code,
            "PGRST200"
        );
    }

    /// The demo schema plus `api.label(metrics) -> text`, `esg.data_points
    /// (metrics) -> SETOF data_points` and `esg.latest(metrics) -> SETOF
    /// data_points ROWS 1`, and `esg.metrics(data_points) -> SETOF metrics
    /// ROWS 1` overriding the foreign key.
    fn computed_schema() -> Schema {
        use super::super::schema::{ComputedField, ComputedRelationship};
        let mut s = demo();
        s.computed_fields.push(ComputedField {
            schema: "api".into(),
            name: "label".into(),
            table_schema: "esg".into(),
            table: "metrics".into(),
            data_type: "text".into(),
        });
        s.computed_fields.push(ComputedField {
            schema: "esg".into(),
            name: "words".into(),
            table_schema: "esg".into(),
            table: "metrics".into(),
            data_type: "tsvector".into(),
        });
        // a computed field hidden by a column of the same name
        s.computed_fields.push(ComputedField {
            schema: "esg".into(),
            name: "code".into(),
            table_schema: "esg".into(),
            table: "metrics".into(),
            data_type: "text".into(),
        });
        for (name, target, single) in [
            ("points_of", "data_points", false),
            ("latest", "data_points", true),
        ] {
            s.computed_relationships.push(ComputedRelationship {
                schema: "esg".into(),
                name: name.into(),
                table_schema: "esg".into(),
                table: "metrics".into(),
                target_schema: "esg".into(),
                target: target.into(),
                single_row: single,
            });
        }
        s.computed_relationships.push(ComputedRelationship {
            schema: "esg".into(),
            name: "metrics".into(),
            table_schema: "esg".into(),
            table: "data_points".into(),
            target_schema: "esg".into(),
            target: "metrics".into(),
            single_row: true,
        });
        s
    }

    #[test]
    fn computed_fields_and_relationships() {
        let s = computed_schema();
        let metrics = s.table("esg", "metrics").unwrap().clone();
        let opts = Options::default();
        let read_m = |pairs: &[(&str, &str)]| read(&s, &metrics, &q(pairs), &opts, false);
        // select, filter, order: the function called with the row; the value a parameter
        let st = read_m(&[
            ("select", "id,label,l:label,label->>x"),
            ("label", "eq.zqx"),
            ("order", "label.desc"),
        ])
        .unwrap();
        placeholders_match(&st);
        assert!(
            st.sql.contains(
                "\"api\".\"label\"(\"metrics\".*) AS \"label\", \"api\".\"label\"(\"metrics\".*) AS \"l\""
            ),
            "{}",
            st.sql
        );
        assert!(
            st.sql
                .contains("WHERE \"api\".\"label\"(\"metrics\".*) = $"),
            "{}",
            st.sql
        );
        assert!(
            st.sql
                .contains("ORDER BY \"api\".\"label\"(\"metrics\".*) DESC"),
            "{}",
            st.sql
        );
        assert!(!st.sql.contains("zqx"));
        // `*` is the columns only
        let st = read_m(&[("select", "*")]).unwrap();
        assert!(!st.sql.contains("label"), "{}", st.sql);
        // a column hides a computed field of the same name
        let st = read_m(&[("select", "code")]).unwrap();
        assert!(
            st.sql.contains("\"metrics\".\"code\" AS \"code\""),
            "{}",
            st.sql
        );
        assert!(!st.sql.contains("\"esg\".\"code\"("), "{}", st.sql);
        // a tsvector computed field is searched as it is
        let st = read_m(&[("words", "fts.coal")]).unwrap();
        assert!(
            st.sql
                .contains("\"esg\".\"words\"(\"metrics\".*) @@ pg_catalog.to_tsquery($"),
            "{}",
            st.sql
        );
        // computed fields of other tables are not this table's
        let dp = s.table("esg", "data_points").unwrap().clone();
        let e = read(&s, &dp, &q(&[("select", "label")]), &opts, false).unwrap_err();
        assert_eq!(e.code, "42703");

        // a to-many computed relationship: the function is the FROM item
        let st = read_m(&[
            ("select", "id,points_of(id,value),last:latest(period)"),
            ("points_of.value", "gt.5"),
            ("points_of.order", "period"),
        ])
        .unwrap();
        placeholders_match(&st);
        assert!(
            st.sql.contains(
                "FROM \"esg\".\"points_of\"(\"metrics\".*) AS \"data_points_1\" WHERE \"data_points_1\".\"value\" > $1 ORDER BY \"data_points_1\".\"period\")"
            ),
            "{}",
            st.sql
        );
        assert!(st.sql.contains("pg_catalog.json_agg"), "{}", st.sql);
        // to-one: an object
        assert!(
            st.sql.contains("row_to_json(\"_e\")::jsonb FROM (SELECT \"data_points_2\".\"period\" AS \"period\" FROM \"esg\".\"latest\"(\"metrics\".*) AS \"data_points_2\" LIMIT 1)"),
            "{}",
            st.sql
        );
        // !inner and the null filter, and ordering by a to-one computed relationship
        let st = read_m(&[
            ("select", "id,points_of!inner(id),latest(period)"),
            ("points_of.value", "gt.5"),
            ("latest", "not.is.null"),
            ("order", "latest(period).desc"),
        ])
        .unwrap();
        placeholders_match(&st);
        assert!(
            st.sql.contains(
                "EXISTS (SELECT 1 FROM \"esg\".\"points_of\"(\"metrics\".*) AS \"data_points_"
            ),
            "{}",
            st.sql
        );
        assert!(
            st.sql.contains(
                "EXISTS (SELECT 1 FROM \"esg\".\"latest\"(\"metrics\".*) AS \"data_points_"
            ),
            "{}",
            st.sql
        );
        assert!(
            st.sql.contains("ORDER BY (SELECT \"data_points_"),
            "{}",
            st.sql
        );
        // ordering by a to-many computed relationship is refused
        let e = read_m(&[("select", "id,points_of(id)"), ("order", "points_of(id)")]).unwrap_err();
        assert_eq!(e.code, "PGRST118");

        // a computed relationship named like a table overrides the foreign key
        let st = read(&s, &dp, &q(&[("select", "id,metrics(code)")]), &opts, false).unwrap();
        assert!(
            st.sql
                .contains("FROM \"esg\".\"metrics\"(\"data_points\".*) AS \"metrics_1\""),
            "{}",
            st.sql
        );
        // … unless a hint names the foreign key
        let st = read(
            &s,
            &dp,
            &q(&[("select", "id,metrics!data_points_metric_fkey(code)")]),
            &opts,
            false,
        )
        .unwrap();
        assert!(
            st.sql.contains("FROM \"esg\".\"metrics\" AS \"metrics_1\" WHERE \"metrics_1\".\"tenant_id\" = \"data_points\".\"tenant_id\""),
            "{}",
            st.sql
        );

        // the read-back of a write: the record cast to the table's row type
        let spec = InsertSpec {
            columns: vec!["code".into(), "name".into()],
            body: "[{\"code\":\"a\",\"name\":\"b\"}]".into(),
            present: None,
            resolution: None,
        };
        let st = insert(
            &s,
            &metrics,
            &q(&[("select", "id,label,points_of(id)")]),
            &opts,
            &spec,
            Returning::Representation,
        )
        .unwrap();
        assert!(
            st.sql.contains(
                "\"api\".\"label\"(CAST(ROW(\"metrics\".*) AS \"esg\".\"metrics\")) AS \"label\""
            ),
            "{}",
            st.sql
        );
        assert!(
            st.sql.contains(
                "\"esg\".\"points_of\"(CAST(ROW(\"metrics\".*) AS \"esg\".\"metrics\")) AS \"data_points_1\""
            ),
            "{}",
            st.sql
        );
        // a computed field is no column to write
        let bad = InsertSpec {
            columns: vec!["label".into()],
            ..spec
        };
        assert!(insert(&s, &metrics, &q(&[]), &opts, &bad, Returning::Minimal).is_err());
    }

    /// An immutable `esg.name(args)` returning one scalar.
    fn scalar_function(name: &str, args: Vec<super::super::schema::FunctionArg>) -> Function {
        Function {
            returns_record: false,
            schema: "esg".into(),
            name: name.into(),
            args,
            returns_set: false,
            returns_void: false,
            result_columns: vec![],
            return_table: None,
            volatility: super::super::schema::Volatility::Immutable,
            media_type: None,
            media_binary: false,
            settings: Vec::new(),
        }
    }

    #[test]
    fn setof_record_is_called_in_the_select_list() {
        let s = demo();
        let mut f = scalar_function("recs", vec![]);
        f.returns_set = true;
        f.returns_record = true;
        let st = call(
            &s,
            &f,
            &Args::Text(vec![]),
            &q(&[("limit", "2")]),
            &Options::default(),
            false,
        )
        .unwrap();
        // no `FROM recs() AS x`: that needs a column definition list
        assert!(
            st.sql
                .contains(r#"FROM (SELECT "esg"."recs"() AS "pgrst_scalar") AS "_s""#),
            "{}",
            st.sql
        );
        assert!(st.sql.contains("LIMIT $1"), "{}", st.sql);
    }

    #[test]
    fn variadic_and_single_object_calls() {
        use super::super::schema::FunctionArg;
        let mut s = demo();
        let arg = |name: &str, ty: &str, variadic: bool| FunctionArg {
            name: name.into(),
            data_type: ty.into(),
            variadic,
            ..Default::default()
        };
        let f = scalar_function;
        s.functions.push(f(
            "vari",
            vec![arg("name", "text", false), arg("v", "integer[]", true)],
        ));
        s.functions
            .push(f("obj", vec![arg("payload", "jsonb", false)]));
        s.functions.push(f("obj", vec![arg("a", "integer", false)]));
        let vari = s.functions.iter().find(|f| f.name == "vari").unwrap();
        // repeated keys: the variadic one becomes one array parameter, the
        // other keeps its last value; values never enter the SQL text
        let args = Args::Text(vec![
            ("name".into(), "first".into()),
            ("v".into(), "1".into()),
            ("name".into(), "last'; --".into()),
            ("v".into(), "2".into()),
        ]);
        let st = call(&s, vari, &args, &q(&[]), &Options::default(), false).unwrap();
        assert!(
            st.sql
                .contains(r#""esg"."vari"("name" := $1::text, VARIADIC "v" := $2::integer[])"#),
            "{}",
            st.sql
        );
        assert_eq!(
            st.params[..2],
            [
                Some("last'; --".to_string()),
                Some(r#"{"1","2"}"#.to_string())
            ]
        );
        assert!(!st.sql.contains("last'"));
        // by JSON body, too
        let args = Args::Json {
            names: vec!["v".into(), "name".into()],
            body: r#"{"v": [1], "name": "x"}"#.into(),
        };
        let st = call(&s, vari, &args, &q(&[]), &Options::default(), false).unwrap();
        assert!(
            st.sql
                .contains(r#"VARIADIC "v" := "_args"."v", "name" := "_args"."name""#),
            "{}",
            st.sql
        );
        // params=single-object: only the single json/jsonb parameter fits,
        // whatever the keys; without one, PostgREST's 404
        let found = find_function(&s, "esg", "obj", &["a".into()], None, true).unwrap();
        assert_eq!(found.args[0].name, "payload");
        let found = find_function(&s, "esg", "obj", &["a".into()], None, false).unwrap();
        assert_eq!(found.args[0].name, "a");
        let e = find_function(&s, "esg", "vari", &[], None, true).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (404, "PGRST202"));
        assert_eq!(
            e.message,
            "Could not find the function esg.vari in the schema cache"
        );
        assert_eq!(
            e.details.as_deref(),
            Some("Searched for the function esg.vari with a single json/jsonb parameter, but no matches were found in the schema cache.")
        );
        assert_eq!(e.hint, None);
    }

    #[test]
    fn single_unnamed_parameter_takes_the_raw_body() {
        use super::super::schema::FunctionArg;
        let mut s = demo();
        let f = |name: &str, args: Vec<(&str, &str)>| {
            let args = args
                .into_iter()
                .map(|(n, t)| FunctionArg {
                    name: n.into(),
                    data_type: t.into(),
                    ..Default::default()
                })
                .collect();
            scalar_function(name, args)
        };
        s.functions.push(f("doc", vec![("", "jsonb")]));
        s.functions.push(f("doc", vec![("x", "integer")]));
        s.functions.push(f("note", vec![("", "text")]));
        s.functions.push(f("poly", vec![]));
        s.functions.push(f("poly", vec![("", "text")]));
        let mut with_default = f("dflt", vec![("", "text")]);
        with_default.args[0].has_default = true;
        s.functions.push(with_default);
        s.functions.push(f("dflt", vec![]));
        // created text, xml, then a longer one, then integer
        s.functions.push(f("same", vec![("a", "text")]));
        s.functions.push(f("same", vec![("a", "xml")]));
        let mut longer = f("same", vec![("a", "text"), ("n", "integer")]);
        longer.args[1].has_default = true;
        s.functions.push(longer);
        s.functions.push(f("same", vec![("a", "integer")]));
        assert_eq!(raw_body_types("text/plain"), &["text"]);
        assert!(raw_body_types("text/csv").is_empty());
        let json = Some("application/json");
        let find = |name: &str, keys: &[&str], mime: Option<&str>| {
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            find_function(&s, "esg", name, &keys, mime, false)
        };
        // a JSON object whose keys fit a named overload goes there; other
        // keys fall back to the overload taking the raw body
        assert_eq!(find("doc", &["x"], json).unwrap().args[0].name, "x");
        let raw = find("doc", &["y"], json).unwrap();
        assert_eq!(raw.args[0].data_type, "jsonb");
        assert!(takes_raw_body(raw));
        // a text body reaches only a text parameter
        assert!(takes_raw_body(
            find("note", &[], Some("text/plain")).unwrap()
        ));
        let e = find("doc", &[], Some("text/plain")).unwrap_err();
        assert_eq!(e.code, "PGRST202");
        // no hint for a raw body, as PostgREST (`note` is one letter away)
        assert_eq!(e.hint, None);
        assert_eq!(
            find("nite", &[], Some("text/plain")).unwrap_err().hint,
            None
        );
        // an unnamed parameter is named "" (PostgREST): `{"": …}` reaches it
        // even with a JSON body and a text parameter; no body: the no-argument overload
        assert!(takes_raw_body(find("poly", &[""], json).unwrap()));
        assert!(find("poly", &[], None).unwrap().args.is_empty());
        // a text body never calls a function without parameters
        assert!(takes_raw_body(
            find("poly", &[], Some("text/plain")).unwrap()
        ));
        // both fit: 300 PGRST203 naming the candidates as PostgREST does
        let e = find("dflt", &[], None).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (300, "PGRST203"));
        assert_eq!(
            e.message,
            "Could not choose the best candidate function between: esg.dflt(), esg.dflt( => text)"
        );
        // listed in PostgREST's order, not the catalog's: fewer parameters
        // first, then by parameter name and type
        let e = find("same", &["a"], None).unwrap_err();
        assert_eq!(
            e.message,
            "Could not choose the best candidate function between: esg.same(a => integer), \
             esg.same(a => text), esg.same(a => xml), esg.same(a => text, n => integer)"
        );
        // none: PGRST202 with PostgREST's message, details and hint
        let e = find("nope", &[""], json).unwrap_err();
        assert_eq!(e.code, "PGRST202");
        assert_eq!(
            e.message,
            "Could not find the function esg.nope() in the schema cache"
        );
        assert_eq!(
            e.details.as_deref(),
            Some("Searched for the function esg.nope with parameter  or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.")
        );
        // a text parameter does not take a JSON body under another key
        assert_eq!(find("note", &["z"], json).unwrap_err().code, "PGRST202");
        let e = find("notes", &[], json).unwrap_err();
        assert_eq!(
            e.message,
            "Could not find the function esg.notes without parameters in the schema cache"
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("Perhaps you meant to call the function esg.note")
        );
        let e = find("doc", &["b", "a"], None).unwrap_err();
        assert_eq!(
            e.message,
            "Could not find the function esg.doc(a, b) in the schema cache"
        );
        assert_eq!(
            e.details.as_deref(),
            Some("Searched for the function esg.doc with parameters a, b, but no matches were found in the schema cache.")
        );
        let e = find("doc", &[], Some("application/octet-stream")).unwrap_err();
        assert_eq!(
            e.message,
            "Could not find the function esg.doc in the schema cache"
        );
        assert_eq!(
            e.details.as_deref(),
            Some("Searched for the function esg.doc with a single unnamed bytea parameter, but no matches were found in the schema cache.")
        );
        assert_eq!(short_type_name("character varying(20)"), "varchar");
        assert_eq!(short_type_name("integer[]"), "_int4");
        assert_eq!(short_type_name("esg.metrics"), "metrics");
        assert_eq!(short_type_name("uuid"), "uuid");
        // the body is a parameter, cast to the parameter's type
        let body = "'); DROP TABLE x; --";
        let st = call(
            &s,
            raw,
            &Args::Raw(body.into()),
            &q(&[]),
            &Options::default(),
            false,
        )
        .unwrap();
        assert!(st.sql.contains("\"esg\".\"doc\"($1::jsonb)"), "{}", st.sql);
        assert!(!st.sql.contains("DROP"), "{}", st.sql);
        assert_eq!(st.params[0].as_deref(), Some(body));
    }

    #[test]
    fn headers_only_and_count_plans() {
        let s = demo();
        let t = s.table("esg", "metrics").unwrap().clone();
        let spec = InsertSpec {
            columns: vec!["code".into()],
            body: "[{\"code\":\"a\"}]".into(),
            present: None,
            resolution: None,
        };
        let st = insert(
            &s,
            &t,
            &q(&[]),
            &Options::default(),
            &spec,
            Returning::HeadersOnly,
        )
        .unwrap();
        // the key columns are parameters, in column order
        assert_eq!(
            st.params,
            vec![
                Some(spec.body.clone()),
                Some("tenant_id".into()),
                Some("id".into())
            ]
        );
        assert!(
            st.sql
                .contains("json_each_text(pg_catalog.row_to_json(\"s\"))"),
            "{}",
            st.sql
        );
        assert!(st.sql.contains("WHERE \"j\".key IN ($2, $3)"), "{}", st.sql);
        assert!(
            st.sql.contains("CASE WHEN pg_catalog.count(*) = 1"),
            "{}",
            st.sql
        );
        // no primary key: nothing to locate
        let mut nopk = t.clone();
        nopk.primary_key.clear();
        let st = insert(
            &s,
            &nopk,
            &q(&[]),
            &Options::default(),
            &spec,
            Returning::HeadersOnly,
        )
        .unwrap();
        assert!(st.sql.contains("NULL::text AS body"), "{}", st.sql);
        assert!(!st.sql.contains("pgrst_location"), "{}", st.sql);

        // a read's count query uses only its own parameters, renumbered
        let query = q(&[
            ("select", "code,units(name)"),
            ("units.name", "eq.tonnes"),
            ("code", "eq.scope1"),
        ]);
        let st = read(&s, &t, &query, &Options::default(), false).unwrap();
        assert_eq!(count_plan(&st), None, "only built when asked for");
        let planned = Options {
            plan_count: true,
            ..Options::default()
        };
        let st = read(&s, &t, &query, &planned, false).unwrap();
        assert!(st.sql.contains("NULL::bigint AS total_count"), "{}", st.sql);
        let plan = count_plan(&st).unwrap();
        assert!(
            plan.sql
                .starts_with("EXPLAIN (FORMAT JSON) SELECT 1 FROM \"esg\".\"metrics\""),
            "{}",
            plan.sql
        );
        assert!(plan.sql.contains("= $1"), "{}", plan.sql);
        assert!(!plan.sql.contains("$2"), "{}", plan.sql);
        assert_eq!(plan.params, vec![Some("scope1".to_string())]);
        assert_eq!(plan.count_query, None);
        // count=estimated: the exact count stops at the cap
        let capped = Options {
            count_cap: Some(11),
            ..Options::default()
        };
        let st = read(&s, &t, &query, &capped, true).unwrap();
        assert!(st.sql.contains("LIMIT 11) AS _c)"), "{}", st.sql);
        // writes have no count query
        let st = delete(&s, &t, &q(&[]), &Options::default(), Returning::Minimal).unwrap();
        assert_eq!(count_plan(&st), None);
        // functions returning rows have one
        let f = find_function(&s, "esg", "metric_total", &["code".into()], None, false).unwrap();
        let args = Args::Text(vec![("code".into(), "scope1".into())]);
        let st = call(&s, f, &args, &q(&[]), &planned, false).unwrap();
        if !f.result_columns.is_empty() || f.returns_set {
            let plan = count_plan(&st).unwrap();
            assert!(
                plan.sql.starts_with("EXPLAIN (FORMAT JSON) SELECT 1 FROM"),
                "{}",
                plan.sql
            );
        }
    }

    #[test]
    fn compacting_parameters() {
        let params: Vec<Option<String>> =
            vec![Some("a".into()), Some("b".into()), None, Some("d".into())];
        let (sql, p) = compact_params(
            "SELECT 1 FROM \"t$1\" WHERE x = $4 AND y = '$2''$3' AND z = $3 AND w = $4",
            &params,
        );
        assert_eq!(
            sql,
            "SELECT 1 FROM \"t$1\" WHERE x = $1 AND y = '$2''$3' AND z = $2 AND w = $1"
        );
        assert_eq!(p, vec![Some("d".to_string()), None]);
        let (sql, p) = compact_params(
            "SELECT $10, $1",
            &(1..=10).map(|i| Some(i.to_string())).collect::<Vec<_>>(),
        );
        assert_eq!(sql, "SELECT $1, $2");
        assert_eq!(p, vec![Some("10".to_string()), Some("1".to_string())]);
    }

    #[test]
    fn csv_bodies_and_function_counts() {
        let s = demo();
        let t = s.table("esg", "metrics").unwrap().clone();
        // GeoJSON: a FeatureCollection through the schema cache's
        // st_asgeojson, whatever schema PostGIS is in
        let geo = Options {
            geojson: Some("\"gis\".\"st_asgeojson\"".into()),
            ..Options::default()
        };
        let st = read(&s, &t, &q(&[("select", "name,code")]), &geo, false).unwrap();
        assert!(
            st.sql.contains("'FeatureCollection'")
                && st
                    .sql
                    .contains("\"gis\".\"st_asgeojson\"(_postgrest_t)::json"),
            "{}",
            st.sql
        );
        let csv = Options {
            csv: true,
            ..Options::default()
        };
        let st = read(&s, &t, &q(&[("select", "name,code")]), &csv, false).unwrap();
        assert!(
            st.sql
                .contains("json_object_keys(pg_catalog.json_agg(_postgrest_t)->0)"),
            "{}",
            st.sql
        );
        assert!(
            st.sql.contains("json_agg(_postgrest_t::text)"),
            "{}",
            st.sql
        );
        let f = find_function(&s, "esg", "metric_total", &["code".into()], None, false).unwrap();
        let args = Args::Text(vec![("code".into(), "scope1".into())]);
        let st = call(&s, f, &args, &q(&[]), &Options::default(), true).unwrap();
        assert!(
            !st.sql.contains("SELECT NULL::bigint AS total_count"),
            "{}",
            st.sql
        );
        let st = call(&s, f, &args, &q(&[]), &Options::default(), false).unwrap();
        assert!(
            st.sql.contains("SELECT NULL::bigint AS total_count"),
            "{}",
            st.sql
        );
        // a scalar function's GeoJSON: the collection over its rows, not its value
        let st = call(&s, f, &args, &q(&[]), &geo, false).unwrap();
        assert!(
            st.sql.contains("'FeatureCollection'")
                && st
                    .sql
                    .contains("\"gis\".\"st_asgeojson\"(_postgrest_t)::json")
                && !st.sql.contains("->0"),
            "{}",
            st.sql
        );
    }

    #[test]
    fn functions() {
        let s = demo();
        let f = find_function(&s, "esg", "metric_total", &["code".into()], None, false).unwrap();
        let st = call(
            &s,
            f,
            &Args::Text(vec![("code".into(), "scope1".into())]),
            &q(&[]),
            &Options::default(),
            false,
        )
        .unwrap();
        assert!(
            st.sql
                .contains("\"esg\".\"metric_total\"(\"code\" := $1::text)"),
            "{}",
            st.sql
        );
        let st = call(
            &s,
            f,
            &Args::Json {
                names: vec!["code".into()],
                body: "{\"code\":\"x\"}".into(),
            },
            &q(&[]),
            &Options::default(),
            false,
        )
        .unwrap();
        assert!(
            st.sql
                .contains("json_to_record($1::json) AS \"_args\"(\"code\" text)"),
            "{}",
            st.sql
        );
        assert_eq!(
            find_function(&s, "esg", "metric_total", &[], None, false)
                .unwrap_err()
                .code,
            "PGRST202"
        );
        assert_eq!(
            find_function(&s, "esg", "nope", &[], None, false)
                .unwrap_err()
                .status,
            404
        );
    }

    fn op_strategy() -> impl Strategy<Value = Operator> {
        prop::sample::select(Operator::ALL.to_vec())
    }

    #[test]
    fn missing_default_columns_prune_and_fast_path() {
        let cols = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        // every row has every column: the plain path
        assert_eq!(
            missing_default_columns(cols(&["a", "b"]), vec![vec![true, true]; 3], false),
            (cols(&["a", "b"]), None)
        );
        // a column no row has is left out (it takes its DEFAULT exactly)…
        assert_eq!(
            missing_default_columns(cols(&["a", "b"]), vec![vec![true, false]; 2], false),
            (cols(&["a"]), None)
        );
        // …unless an upsert writes it
        assert_eq!(
            missing_default_columns(cols(&["a", "b"]), vec![vec![true, false]; 2], true),
            (cols(&["a", "b"]), Some(vec![vec![true, false]; 2]))
        );
        // rows that differ keep their flags, pruned alike
        assert_eq!(
            missing_default_columns(
                cols(&["a", "b", "c"]),
                vec![vec![true, false, false], vec![false, false, true]],
                false
            ),
            (
                cols(&["a", "c"]),
                Some(vec![vec![true, false], vec![false, true]])
            )
        );
        // objects without keys: one DEFAULT VALUES row would not do for two
        assert_eq!(
            missing_default_columns(cols(&["a"]), vec![vec![false]; 2], false),
            (cols(&["a"]), Some(vec![vec![false]; 2]))
        );
        assert_eq!(
            missing_default_columns(cols(&["a"]), vec![vec![false]], false),
            (cols(&[]), None)
        );
        assert_eq!(
            missing_default_columns(cols(&["a"]), vec![], false),
            (cols(&["a"]), None)
        );
    }

    proptest! {
        /// Whatever value a client sends, it is a parameter and never SQL text.
        #[test]
        fn values_never_reach_sql_text(op in op_strategy(), negate in any::<bool>(), v in "zq[^\\x00]{4,20}", col in prop::sample::select(vec!["code", "name", "id", "extra->>k"])) {
            let value = match op {
                Operator::Is => "null".to_string(),
                Operator::In => format!("({},\"{}\")", v.replace([',', ')', '"', '\\'], ""), v.replace(['"', '\\'], "")),
                _ => v.clone(),
            };
            let text = format!("{}{}.{}", if negate { "not." } else { "" }, op.name(), value);
            let pairs = vec![(col.to_string(), text), ("or".to_string(), format!("(code.eq.\"{}\")", v.replace(['"', '\\'], "")))];
            if let Ok(query) = parse_query(&pairs) {
                let s = demo();
                let t = s.table("esg", "metrics").unwrap().clone();
                if let Ok(st) = read(&s, &t, &query, &Options::default(), true) {
                    let core: String = v.chars().filter(|c| !matches!(c, ',' | ')' | '"' | '\\' | '*')).collect();
                    prop_assert!(!st.sql.contains(&core), "value {:?} leaked into {}", core, st.sql);
                    prop_assert!(!st.sql.contains("zq"));
                }
            }
        }

        /// Random query strings never panic the parser or the builder.
        #[test]
        fn hostile_input_never_panics(k in "[a-z_.>\\-]{0,12}", v in "\\PC{0,40}", sel in "[a-z_,:()!*.\\->\"]{0,30}") {
            let pairs = vec![(k, v), ("select".to_string(), sel)];
            if let Ok(query) = parse_query(&pairs) {
                let s = demo();
                let t = s.table("esg", "reporting_entities").unwrap().clone();
                let _ = read(&s, &t, &query, &Options::default(), true);
            }
        }

        /// Printing a filter and parsing it back gives the same filter.
        #[test]
        fn filters_round_trip(op in op_strategy(), negate in any::<bool>(), v in "[a-zA-Z0-9 %_]{0,12}", items in prop::collection::vec("[a-zA-Z0-9 ]{1,8}", 0..4)) {
            let (text, value) = match op {
                Operator::Is => ("null".to_string(), Value::Is(IsValue::Null)),
                Operator::In => (
                    format!("({})", items.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(",")),
                    Value::List(items.clone()),
                ),
                _ => (v.clone(), Value::Single(v.clone())),
            };
            let printed = format!("{}{}.{}", if negate { "not." } else { "" }, op.name(), text);
            let f = super::super::parse::parse_filter(Field::plain("code"), &printed).unwrap();
            prop_assert_eq!(f.op, op);
            prop_assert_eq!(f.negate, negate);
            prop_assert_eq!(f.value, value);
        }
    }
}
