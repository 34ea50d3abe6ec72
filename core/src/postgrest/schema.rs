//! What the proxy knows about the database: the schema cache's model, and
//! relationship resolution for embedding (many-to-one, one-to-many,
//! one-to-one, many-to-many through a junction table).

use super::error::ApiError;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type(atttypid, NULL)`, e.g. `bigint`, `timestamp with time zone`.
    pub data_type: String,
    pub nullable: bool,
    pub has_default: bool,
    /// The value a row gets when it leaves the column out, as SQL of the
    /// column's type, fully qualified (the column's default, an identity's
    /// `nextval`, or its domain's default); `None` when there is none to
    /// write (no default: NULL; an identity `ALWAYS` or generated column).
    /// Read for `Prefer: missing=default` when rows differ in their keys.
    pub default_expr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    /// Every unique key (primary key included), for one-to-one detection.
    pub unique_keys: Vec<Vec<String>>,
    pub is_view: bool,
    /// The writes it takes (OPTIONS' `Allow`).
    pub writable: Writable,
}

/// Which writes a relation takes: PostgreSQL's `pg_relation_is_updatable`
/// (INSTEAD OF triggers included) — everything for a table, what an
/// auto-updatable view or its triggers allow, nothing for a materialized view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writable {
    pub insert: bool,
    pub update: bool,
    pub delete: bool,
}

impl Default for Writable {
    fn default() -> Self {
        Writable {
            insert: true,
            update: true,
            delete: true,
        }
    }
}

impl Writable {
    /// From `pg_relation_is_updatable(rel, true)`'s bits (1 << CMD_*).
    pub fn from_bits(bits: i32) -> Writable {
        Writable {
            update: bits & 4 != 0,
            insert: bits & 8 != 0,
            delete: bits & 16 != 0,
        }
    }
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub name: String,
    pub schema: String,
    pub table: String,
    pub columns: Vec<String>,
    pub ref_schema: String,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    /// Whether the referencing columns are unique (a one-to-one
    /// relationship); `None`: decided from the referencing table's unique keys.
    pub one_to_one: Option<bool>,
}

/// Which key of a base table a view's columns expose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDepKind {
    /// The table's primary key.
    PrimaryKey,
    /// The referencing columns of one of the table's foreign keys.
    ForeignKey,
    /// The referenced columns of a foreign key pointing at the table.
    ReferencedKey,
}

/// A key of a table whose every column a view shows (PostgREST's view key
/// dependency), found from the view definition's target list, through views
/// of views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewKeyDep {
    pub table_schema: String,
    pub table: String,
    pub view_schema: String,
    pub view: String,
    /// The constraint's name.
    pub constraint: String,
    pub kind: KeyDepKind,
    /// Each key column of the table with every view column that shows it.
    pub columns: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionArg {
    pub name: String,
    pub data_type: String,
    pub has_default: bool,
    /// `VARIADIC` (always the last input parameter; `data_type` is its
    /// array type): a repeated query-string key fills it, and a call by
    /// name has to say `VARIADIC "v" := …`.
    pub variadic: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    Immutable,
    Stable,
    Volatile,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub schema: String,
    pub name: String,
    pub args: Vec<FunctionArg>,
    pub returns_set: bool,
    pub returns_void: bool,
    /// It returns `record` without OUT parameters (`RETURNS SETOF record`):
    /// called in the select list, its rows become objects with the names
    /// the function's query gives them (a column definition list is unknown).
    pub returns_record: bool,
    /// Output columns when it returns rows (a table type or `RETURNS TABLE`);
    /// empty for a scalar.
    pub result_columns: Vec<Column>,
    /// The table or view (schema, name) whose row type it returns
    /// (`RETURNS [SETOF] tbl`): its rows embed through that relation's
    /// relationships, as in PostgREST.
    pub return_table: Option<(String, String)>,
    pub volatility: Volatility,
    /// PostgREST's media type handler: it returns a domain named like a
    /// media type (`CREATE DOMAIN "text/html" AS text`), or the any-handler
    /// domain `*/*`. Its value is the response body itself when `Accept`
    /// asks for that type.
    pub media_type: Option<String>,
    /// That domain is over `bytea` (the body is the bytes; else its text).
    pub media_binary: bool,
    /// Its `SET name = value` clauses (`pg_proc.proconfig`), names
    /// lowercase: those in `db-hoisted-tx-settings` apply to the whole
    /// transaction of an RPC call, `default_transaction_isolation` sets its
    /// isolation level.
    pub settings: Vec<(String, String)>,
}

impl Function {
    /// The settings of [`Function::settings`] named in `hoisted`, except
    /// the isolation level (which starts the transaction instead).
    pub fn hoisted_settings<'a>(
        &'a self,
        hoisted: &'a [String],
    ) -> impl Iterator<Item = &'a (String, String)> + 'a {
        self.settings
            .iter()
            .filter(move |(k, _)| k != "default_transaction_isolation" && hoisted.contains(k))
    }

    /// Its `SET default_transaction_isolation`, lowercase.
    pub fn isolation(&self) -> Option<String> {
        self.settings
            .iter()
            .find(|(k, _)| k == "default_transaction_isolation")
            .map(|(_, v)| v.trim().to_ascii_lowercase())
    }
}

/// The schema cache.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Which load of the catalog this is (a counter the loader sets):
    /// statements built from one load are never reused with another.
    pub generation: u64,
    pub tables: HashMap<(String, String), Table>,
    pub foreign_keys: Vec<ForeignKey>,
    pub functions: Vec<Function>,
    /// Functions of one row of a table or view that return a scalar:
    /// PostgREST's computed fields, selected, filtered and ordered like
    /// columns (never part of `*`).
    pub computed_fields: Vec<ComputedField>,
    /// Functions of one row of a table or view that return rows of a table
    /// or view: PostgREST's computed relationships, embedded by the
    /// function's name.
    pub computed_relationships: Vec<ComputedRelationship>,
    /// PostgREST's data representations: implicit casts through a function
    /// between a domain and `json` or `text` (`CREATE CAST (json AS color)
    /// WITH FUNCTION color(json) AS IMPLICIT`), keyed by (source, target)
    /// `format_type`, to the schema-qualified, quoted function. A column of
    /// such a domain is read through its `json` cast, written from the
    /// body through the `json` one, and filtered through the `text` one.
    pub data_reps: HashMap<(String, String), String>,
    /// Aggregates returning a media-type domain (`CREATE DOMAIN "text/xml"
    /// AS xml`): PostgREST's media type handlers for tables and views.
    pub media_aggregates: Vec<MediaAggregate>,
    /// PostGIS's `st_asgeojson(record)` (PostGIS ≥ 3), schema-qualified
    /// and quoted, when the extension is installed: `Accept:
    /// application/geo+json` answers a GeoJSON `FeatureCollection` of the
    /// rows through it, as PostgREST does.
    pub geojson: Option<String>,
}

/// `CREATE AGGREGATE agg(tbl | anyelement) (stype = "text/xml", …)` in an
/// exposed schema: a read of `tbl` (or of any relation, for `anyelement`)
/// that accepts its media type is answered with its value over the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaAggregate {
    pub schema: String,
    pub name: String,
    /// The domain's name: a media type, or `*/*`.
    pub media_type: String,
    /// The relation whose rows it takes; none for `anyelement`.
    pub target: Option<(String, String)>,
    /// The domain is over `bytea`.
    pub binary: bool,
}

/// `fn(tbl) RETURNS scalar` in an exposed schema: a virtual column of `tbl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputedField {
    /// The function.
    pub schema: String,
    pub name: String,
    /// The table or view whose row it takes.
    pub table_schema: String,
    pub table: String,
    /// `format_type` of its result.
    pub data_type: String,
}

/// `fn(tbl) RETURNS [SETOF] target` in an exposed schema: a relationship
/// from `tbl` to `target` named `fn`. To-one when it returns one row (not
/// `SETOF`, or `ROWS 1`), to-many otherwise, as in PostgREST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputedRelationship {
    pub schema: String,
    pub name: String,
    pub table_schema: String,
    pub table: String,
    pub target_schema: String,
    pub target: String,
    pub single_row: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cardinality {
    ManyToOne,
    OneToMany,
    OneToOne,
    ManyToMany,
}

impl Cardinality {
    pub fn to_one(&self) -> bool {
        matches!(self, Cardinality::ManyToOne | Cardinality::OneToOne)
    }
}

/// How the parent reaches the target: `target.col = parent.col` pairs, or
/// through a junction table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relationship {
    pub target_schema: String,
    pub target: String,
    pub cardinality: Cardinality,
    pub constraint: String,
    /// (parent column, target column) for direct relationships.
    pub pairs: Vec<(String, String)>,
    /// For many-to-many: the junction table and (parent col, junction col),
    /// (target col, junction col) pairs.
    pub junction: Option<Junction>,
    /// For a computed relationship: the function (schema, name) that takes
    /// the parent's row and returns the target's rows (no `pairs`).
    pub function: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Junction {
    pub schema: String,
    pub table: String,
    pub parent_pairs: Vec<(String, String)>,
    pub target_pairs: Vec<(String, String)>,
    pub constraints: (String, String),
}

impl Schema {
    /// The aggregate answering a read of `schema.table` in `media` (a
    /// lowercase media type), as PostgREST looks it up: the relation's own
    /// handler for that type, then an `anyelement` one, then — unless a
    /// builtin answers the type (`builtin`) — the relation's `*/*` one. A
    /// relation's own handlers take its whole rows: only without `select`.
    pub fn media_aggregate(
        &self,
        schema: &str,
        table: &str,
        media: &str,
        default_select: bool,
        builtin: bool,
    ) -> Option<&MediaAggregate> {
        if self.media_aggregates.is_empty() {
            return None;
        }
        let own = |m: &str| {
            self.media_aggregates.iter().find(|a| {
                default_select
                    && a.media_type.eq_ignore_ascii_case(m)
                    && a.target
                        .as_ref()
                        .is_some_and(|(s, t)| s == schema && t == table)
            })
        };
        if media == "*/*" {
            return own("*/*");
        }
        own(media)
            .or_else(|| {
                self.media_aggregates
                    .iter()
                    .find(|a| a.target.is_none() && a.media_type.eq_ignore_ascii_case(media))
            })
            .or_else(|| if builtin { None } else { own("*/*") })
    }

    /// The function reading a value of `ty` as JSON (its data representation).
    pub fn rep_to_json(&self, ty: &str) -> Option<&str> {
        self.rep(ty, "json")
    }

    /// The function making a `ty` out of a JSON value of the request body.
    pub fn rep_from_json(&self, ty: &str) -> Option<&str> {
        self.rep("json", ty)
    }

    /// The function making a `ty` out of a filter's text value.
    pub fn rep_from_text(&self, ty: &str) -> Option<&str> {
        self.rep("text", ty)
    }

    fn rep(&self, from: &str, to: &str) -> Option<&str> {
        if self.data_reps.is_empty() {
            return None;
        }
        self.data_reps
            .get(&(from.to_string(), to.to_string()))
            .map(String::as_str)
    }

    pub fn table(&self, schema: &str, name: &str) -> Option<&Table> {
        self.tables.get(&(schema.to_string(), name.to_string()))
    }

    /// The computed field `name` of `schema.table` (a column of that name
    /// hides it, as in PostgreSQL). One in the table's own schema wins
    /// over one in another exposed schema.
    pub fn computed_field(&self, schema: &str, table: &str, name: &str) -> Option<&ComputedField> {
        let mut found = self
            .computed_fields
            .iter()
            .filter(|c| c.name == name && c.table_schema == schema && c.table == table);
        let first = found.next()?;
        if first.schema == schema {
            return Some(first);
        }
        Some(found.find(|c| c.schema == schema).unwrap_or(first))
    }

    fn is_view(&self, schema: &str, name: &str) -> bool {
        self.table(schema, name).is_some_and(|t| t.is_view)
    }

    /// Whether a foreign key's columns are unique (one-to-one).
    fn fk_unique(&self, fk: &ForeignKey) -> bool {
        fk.one_to_one.unwrap_or_else(|| {
            self.table(&fk.schema, &fk.table)
                .map(|t| t.unique_keys.iter().any(|k| same_set(k, &fk.columns)))
                .unwrap_or(false)
        })
    }

    /// Give views the keys and relationships of the tables their columns
    /// come from, as PostgREST does ("embedding views"): a view showing a
    /// table's whole primary key gets it as its own; a view showing a
    /// foreign key's referencing (referenced) columns gets the relationship
    /// from (to) the view, and two such views one between them. A key a
    /// view shows twice gives one relationship per column choice (which
    /// makes embedding it ambiguous). `base` is every foreign key the views
    /// may draw on (also between tables of unexposed schemas); only
    /// relationships whose both ends are in [`Schema::tables`] are added.
    pub fn add_view_relationships(&mut self, deps: &[ViewKeyDep], base: &[ForeignKey]) {
        const MAX_CHOICES: usize = 64;
        // Every way of picking one view column for each key column, in the
        // order of `key`; none when the view lacks a key column.
        fn choices(dep: &ViewKeyDep, key: &[String]) -> Vec<Vec<String>> {
            let mut out: Vec<Vec<String>> = vec![Vec::new()];
            for k in key {
                let Some((_, cols)) = dep.columns.iter().find(|(c, _)| c == k) else {
                    return Vec::new();
                };
                let mut next = Vec::new();
                for prefix in &out {
                    for c in cols {
                        let mut p = prefix.clone();
                        p.push(c.clone());
                        next.push(p);
                    }
                }
                next.truncate(MAX_CHOICES);
                out = next;
            }
            if key.is_empty() {
                Vec::new()
            } else {
                out
            }
        }
        // Primary keys of views.
        let view_keys: Vec<((String, String), Vec<String>)> = self
            .tables
            .values()
            .filter(|t| t.is_view)
            .filter_map(|v| {
                let mut pk = Vec::new();
                for d in deps.iter().filter(|d| {
                    d.kind == KeyDepKind::PrimaryKey
                        && d.view_schema == v.schema
                        && d.view == v.name
                }) {
                    let key: Vec<String> = d.columns.iter().map(|(c, _)| c.clone()).collect();
                    if let Some(first) = choices(d, &key).into_iter().next() {
                        pk.extend(first);
                    }
                }
                (!pk.is_empty()).then(|| ((v.schema.clone(), v.name.clone()), pk))
            })
            .collect();
        for (k, pk) in view_keys {
            if let Some(v) = self.tables.get_mut(&k) {
                if v.primary_key.is_empty() {
                    v.primary_key = pk.clone();
                }
                if !v.unique_keys.iter().any(|u| same_set(u, &pk)) {
                    v.unique_keys.push(pk);
                }
            }
        }
        // Relationships through views.
        let mut derived = Vec::new();
        for fk in base {
            let one_to_one = Some(self.fk_unique(fk));
            let mut from_views: Vec<(&ViewKeyDep, Vec<String>)> = Vec::new();
            let mut to_views: Vec<(&ViewKeyDep, Vec<String>)> = Vec::new();
            for d in deps.iter().filter(|d| d.constraint == fk.name) {
                match d.kind {
                    KeyDepKind::ForeignKey
                        if d.table_schema == fk.schema && d.table == fk.table =>
                    {
                        from_views.extend(choices(d, &fk.columns).into_iter().map(|c| (d, c)))
                    }
                    KeyDepKind::ReferencedKey
                        if d.table_schema == fk.ref_schema && d.table == fk.ref_table =>
                    {
                        to_views.extend(choices(d, &fk.ref_columns).into_iter().map(|c| (d, c)))
                    }
                    _ => {}
                }
            }
            let edge = |schema: &str,
                        table: &str,
                        columns: &[String],
                        rs: &str,
                        rt: &str,
                        rc: &[String]| ForeignKey {
                name: fk.name.clone(),
                schema: schema.to_string(),
                table: table.to_string(),
                columns: columns.to_vec(),
                ref_schema: rs.to_string(),
                ref_table: rt.to_string(),
                ref_columns: rc.to_vec(),
                one_to_one,
            };
            for (v, cols) in &from_views {
                derived.push(edge(
                    &v.view_schema,
                    &v.view,
                    cols,
                    &fk.ref_schema,
                    &fk.ref_table,
                    &fk.ref_columns,
                ));
            }
            for (v, cols) in &to_views {
                derived.push(edge(
                    &fk.schema,
                    &fk.table,
                    &fk.columns,
                    &v.view_schema,
                    &v.view,
                    cols,
                ));
            }
            for (a, acols) in &from_views {
                for (b, bcols) in &to_views {
                    derived.push(edge(
                        &a.view_schema,
                        &a.view,
                        acols,
                        &b.view_schema,
                        &b.view,
                        bcols,
                    ));
                }
            }
        }
        for d in derived {
            if self.table(&d.schema, &d.table).is_some()
                && self.table(&d.ref_schema, &d.ref_table).is_some()
                && !self.foreign_keys.contains(&d)
            {
                self.foreign_keys.push(d);
            }
        }
    }

    /// Every relationship from `schema.table` to something `name` designates:
    /// a table or view name, a foreign key name, or (many-to-one) a foreign
    /// key column. `hint` narrows by constraint name, column or junction.
    pub fn relationships(
        &self,
        schema: &str,
        table: &str,
        name: &str,
        hint: Option<&str>,
    ) -> Vec<Relationship> {
        // A computed relationship of that name overrides the detected ones
        // (PostgREST's "overriding relationships"); a hint designates a
        // foreign key, so it only looks at those.
        if hint.is_none() {
            let computed: Vec<Relationship> = self
                .computed_relationships
                .iter()
                .filter(|c| c.name == name && c.table_schema == schema && c.table == table)
                .map(|c| Relationship {
                    target_schema: c.target_schema.clone(),
                    target: c.target.clone(),
                    cardinality: if c.single_row {
                        Cardinality::ManyToOne
                    } else {
                        Cardinality::OneToMany
                    },
                    constraint: c.name.clone(),
                    pairs: Vec::new(),
                    junction: None,
                    function: Some((c.schema.clone(), c.name.clone())),
                })
                .collect();
            if !computed.is_empty() {
                return computed;
            }
        }
        // Every relationship of `schema.table`, then PostgREST's findRel
        // filter over them.
        let mut all: Vec<(Relationship, bool)> = Vec::new(); // (rel, origin holds the fk)
                                                             // A direct relationship over `fk`: from its table (`holds_fk`, many-to-one)
                                                             // or from the referenced one (one-to-many); one-to-one when unique.
        let direct = |fk: &ForeignKey, holds_fk: bool| {
            let (target_schema, target, own, theirs, many) = if holds_fk {
                (
                    &fk.ref_schema,
                    &fk.ref_table,
                    &fk.columns,
                    &fk.ref_columns,
                    Cardinality::ManyToOne,
                )
            } else {
                (
                    &fk.schema,
                    &fk.table,
                    &fk.ref_columns,
                    &fk.columns,
                    Cardinality::OneToMany,
                )
            };
            Relationship {
                target_schema: target_schema.clone(),
                target: target.clone(),
                cardinality: if self.fk_unique(fk) {
                    Cardinality::OneToOne
                } else {
                    many
                },
                constraint: fk.name.clone(),
                pairs: own.iter().cloned().zip(theirs.iter().cloned()).collect(),
                junction: None,
                function: None,
            }
        };
        for fk in &self.foreign_keys {
            // only what `name` can designate at all (the target, the
            // constraint or a column of the key) is built
            if fk.schema == schema
                && fk.table == table
                && (fk.ref_table == name || fk.name == name || fk.columns.iter().any(|c| c == name))
            {
                all.push((direct(fk, true), true));
            }
            if fk.ref_schema == schema
                && fk.ref_table == table
                && (fk.table == name || fk.name == name || fk.ref_columns.iter().any(|c| c == name))
            {
                all.push((direct(fk, false), false));
            }
        }
        // many-to-many: a junction with one fk to us and one to the target,
        // both fully inside the junction's primary key.
        // (In foreign key order, which the schema cache loads sorted.)
        for a in &self.foreign_keys {
            if a.ref_schema != schema || a.ref_table != table {
                continue;
            }
            let Some(j) = self.table(&a.schema, &a.table) else {
                continue;
            };
            let in_pk = |f: &ForeignKey| f.columns.iter().all(|c| j.primary_key.contains(c));
            if j.primary_key.is_empty() || !in_pk(a) {
                continue;
            }
            for b in &self.foreign_keys {
                if std::ptr::eq(a, b)
                    || b.ref_table != name
                    || b.schema != j.schema
                    || b.table != j.name
                    || !in_pk(b)
                {
                    continue;
                }
                let pairs = |f: &ForeignKey| -> Vec<(String, String)> {
                    f.ref_columns
                        .iter()
                        .cloned()
                        .zip(f.columns.iter().cloned())
                        .collect()
                };
                all.push((
                    Relationship {
                        target_schema: b.ref_schema.clone(),
                        target: b.ref_table.clone(),
                        cardinality: Cardinality::ManyToMany,
                        constraint: format!("{}+{}", a.name, b.name),
                        pairs: Vec::new(),
                        junction: Some(Junction {
                            schema: j.schema.clone(),
                            table: j.name.clone(),
                            parent_pairs: pairs(a),
                            target_pairs: pairs(b),
                            constraints: (a.name.clone(), b.name.clone()),
                        }),
                        function: None,
                    },
                    false,
                ));
            }
        }
        let mut found: Vec<Relationship> = all
            .into_iter()
            .filter(|(r, holds_fk)| {
                relationship_matches(
                    r,
                    *holds_fk,
                    schema,
                    table,
                    name,
                    hint,
                    self.is_view(&r.target_schema, &r.target),
                )
            })
            .map(|(r, _)| r)
            .collect();
        // PostgREST keeps each table's relationships sorted (its derived
        // order): by target, self-reference last, one-to-many, many-to-one,
        // one-to-one, many-to-many, then constraint (junction) and columns;
        // PGRST201 lists the candidates in that order
        found.sort_by_cached_key(|r| {
            let rank = match r.cardinality {
                Cardinality::OneToMany => 0,
                Cardinality::ManyToOne => 1,
                Cardinality::OneToOne => 2,
                Cardinality::ManyToMany => 3,
            };
            let is_self = r.target_schema == schema && r.target == table;
            let detail = match &r.junction {
                Some(j) => (
                    vec![
                        j.schema.clone(),
                        j.table.clone(),
                        j.constraints.0.clone(),
                        j.constraints.1.clone(),
                    ],
                    [j.parent_pairs.clone(), j.target_pairs.clone()].concat(),
                ),
                None => (vec![r.constraint.clone()], r.pairs.clone()),
            };
            (
                r.target_schema.clone(),
                r.target.clone(),
                is_self,
                rank,
                detail,
            )
        });
        found
    }

    /// PostgREST's hint for a table `name` not in `schema`: the closest
    /// table or view name there.
    pub fn table_hint(&self, schema: &str, name: &str) -> Option<String> {
        let mut names: Vec<&str> = self
            .tables
            .keys()
            .filter(|(s, _)| s == schema)
            .map(|(_, n)| n.as_str())
            .collect();
        names.sort_unstable();
        super::fuzzy::best_match(&names, name)
            .map(|t| format!("Perhaps you meant the table '{schema}.{t}'"))
    }

    /// PostgREST's hint for no relationship between `table` and `name`: a
    /// related table close to `name` (not `name` itself), or — when `table`
    /// has no relationships — a table with relationships close to `table`.
    fn relationship_hint(&self, schema: &str, table: &str, name: &str) -> Option<String> {
        let related_to = |s: &str, t: &str| -> Vec<&str> {
            let mut out: Vec<&str> = Vec::new();
            for fk in &self.foreign_keys {
                if fk.schema == s && fk.table == t {
                    out.push(&fk.ref_table);
                }
                if fk.ref_schema == s && fk.ref_table == t {
                    out.push(&fk.table);
                }
            }
            for a in &self.foreign_keys {
                if a.ref_schema == s && a.ref_table == t {
                    out.extend(
                        self.foreign_keys
                            .iter()
                            .filter(|b| {
                                b.schema == a.schema && b.table == a.table && b.name != a.name
                            })
                            .map(|b| b.ref_table.as_str()),
                    );
                }
            }
            out.extend(
                self.computed_relationships
                    .iter()
                    .filter(|c| c.table_schema == s && c.table == t)
                    .map(|c| c.target.as_str()),
            );
            out
        };
        let children = related_to(schema, table);
        if !children.is_empty() {
            return super::fuzzy::matches(&children, name)
                .into_iter()
                .find(|(score, _)| *score < 1.0)
                .map(|(_, c)| format!("Perhaps you meant '{c}' instead of '{name}'."));
        }
        let mut parents: Vec<&str> = self
            .tables
            .keys()
            .filter(|(s, t)| s == schema && !related_to(s, t).is_empty())
            .map(|(_, t)| t.as_str())
            .collect();
        parents.sort_unstable();
        super::fuzzy::best_match(&parents, table)
            .map(|p| format!("Perhaps you meant '{p}' instead of '{table}'."))
    }

    /// The one relationship an embed designates, or PGRST200 / PGRST201.
    pub fn relationship(
        &self,
        schema: &str,
        table: &str,
        name: &str,
        hint: Option<&str>,
    ) -> Result<Relationship, ApiError> {
        let mut rels = self.relationships(schema, table, name, hint);
        match rels.len() {
            0 => Err(ApiError::no_relationship(
                table,
                name,
                hint,
                schema,
                self.relationship_hint(schema, table, name),
            )),
            1 => Ok(rels.remove(0)),
            _ => {
                // PostgREST's details: one object per candidate
                let cols = |c: Vec<&str>| format!("({})", c.join(", "));
                let details: Vec<serde_json::Value> = rels
                    .iter()
                    .map(|r| {
                        let (cardinality, relationship) = match (&r.junction, &r.function) {
                            (_, Some(_)) => return serde_json::json!({}),
                            (Some(j), _) => (
                                "many-to-many",
                                format!(
                                    "{} using {}{} and {}{}",
                                    j.table,
                                    j.constraints.0,
                                    cols(j.parent_pairs.iter().map(|(_, c)| c.as_str()).collect()),
                                    j.constraints.1,
                                    cols(j.target_pairs.iter().map(|(_, c)| c.as_str()).collect()),
                                ),
                            ),
                            (None, None) => (
                                match r.cardinality {
                                    Cardinality::ManyToOne => "many-to-one",
                                    Cardinality::OneToMany => "one-to-many",
                                    Cardinality::OneToOne => "one-to-one",
                                    Cardinality::ManyToMany => "many-to-many",
                                },
                                format!(
                                    "{} using {table}{} and {}{}",
                                    r.constraint,
                                    cols(r.pairs.iter().map(|(p, _)| p.as_str()).collect()),
                                    r.target,
                                    cols(r.pairs.iter().map(|(_, t)| t.as_str()).collect()),
                                ),
                            ),
                        };
                        serde_json::json!({
                            "cardinality": cardinality,
                            "embedding": format!("{table} with {}", r.target),
                            "relationship": relationship,
                        })
                    })
                    .collect();
                let choices: Vec<String> = rels
                    .iter()
                    .map(|r| match &r.junction {
                        Some(j) => format!("'{}!{}'", r.target, j.table),
                        None => format!("'{}!{}'", r.target, r.constraint),
                    })
                    .collect();
                Err(ApiError::new(
                    300,
                    "PGRST201",
                    format!("Could not embed because more than one relationship was found for '{table}' and '{name}'"),
                )
                .details_as_json(serde_json::Value::Array(details).to_string())
                .hint(format!(
                    "Try changing '{name}' to one of the following: {}. Find the desired relationship in the 'details' key.",
                    choices.join(", ")
                )))
            }
        }
    }
}

/// PostgREST's `findRel` test of one relationship of `schema.table` against
/// an embed `name!hint`:
/// - without a hint, `name` is the target table or view, or (targets that
///   are tables) the constraint name or the single fk column;
/// - with a hint, `name` is the target and the hint its constraint, single
///   column on either side, or junction table;
/// - a self-reference (one fk, both directions) is read by convention: the
///   table's name means the children (one-to-many), the fk column's name the
///   parent (many-to-one), and a hint on the table's name is the children's
///   fk column (`children:family_tree!parent`).
///
/// Beyond PostgREST (which cannot embed these at all): any column of a
/// composite key counts as its column, a self one-to-one follows the same
/// convention, a self many-to-many is reached through its junction (or the
/// junction's key to the parent row) as a hint, and a junction's
/// constraint names are hints too.
fn relationship_matches(
    r: &Relationship,
    holds_fk: bool,
    schema: &str,
    table: &str,
    name: &str,
    hint: Option<&str>,
    target_is_view: bool,
) -> bool {
    // PostgREST only knows single-column keys here; a column of a composite
    // key (`tenant_id, parent_id`, the usual shape in a multi-tenant schema)
    // designates it too.
    let fk_single_col = |h: &str| r.pairs.iter().any(|(o, _)| o == h);
    let fk_ref_single_col = |h: &str| r.pairs.iter().any(|(_, t)| t == h);
    let direct = r.junction.is_none();
    let constraint = |h: &str| direct && r.constraint == h;
    let junction = |h: &str| {
        r.junction
            .as_ref()
            .is_some_and(|j| j.table == h || j.constraints.0 == h || j.constraints.1 == h)
    };
    let is_self = r.target_schema == schema && r.target == table;
    if is_self {
        if let Some(j) = &r.junction {
            // the junction (both directions: 300 for a symmetric one), or
            // the junction's key to the parent row, which picks a direction
            return r.target == name && hint.is_some_and(|h| j.table == h || j.constraints.0 == h);
        }
        return match hint {
            None => (r.target == name && !holds_fk) || (fk_single_col(name) && holds_fk),
            Some(h) => r.target == name && !holds_fk && (fk_ref_single_col(h) || constraint(h)),
        };
    }
    match hint {
        None => r.target == name || (!target_is_view && (constraint(name) || fk_single_col(name))),
        Some(h) => {
            r.target == name
                && (constraint(h) || fk_single_col(h) || fk_ref_single_col(h) || junction(h))
        }
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn col(name: &str, ty: &str) -> Column {
        Column {
            name: name.into(),
            data_type: ty.into(),
            nullable: true,
            has_default: false,
            default_expr: None,
        }
    }

    fn fk(name: &str, table: &str, cols: &[&str], rt: &str, rcols: &[&str]) -> ForeignKey {
        ForeignKey {
            name: name.into(),
            schema: "esg".into(),
            table: table.into(),
            columns: cols.iter().map(|s| s.to_string()).collect(),
            ref_schema: "esg".into(),
            ref_table: rt.into(),
            ref_columns: rcols.iter().map(|s| s.to_string()).collect(),
            one_to_one: None,
        }
    }

    /// The demo schema (plus a junction table), as the proxy would load it.
    pub fn demo() -> Schema {
        let mut s = Schema::default();
        let mut add = |name: &str, cols: &[(&str, &str)], pk: &[&str], uniques: &[&[&str]]| {
            let pk: Vec<String> = pk.iter().map(|s| s.to_string()).collect();
            let mut uk = vec![pk.clone()];
            for u in uniques {
                uk.push(u.iter().map(|s| s.to_string()).collect());
            }
            s.tables.insert(
                ("esg".into(), name.into()),
                Table {
                    schema: "esg".into(),
                    name: name.into(),
                    columns: cols.iter().map(|(n, t)| col(n, t)).collect(),
                    primary_key: pk,
                    unique_keys: uk,
                    is_view: false,
                    writable: Default::default(),
                },
            );
        };
        add(
            "units",
            &[("code", "text"), ("name", "text")],
            &["code"],
            &[],
        );
        add(
            "organisations",
            &[
                ("tenant_id", "uuid"),
                ("id", "bigint"),
                ("parent_org_id", "bigint"),
                ("name", "text"),
                ("country", "text"),
            ],
            &["tenant_id", "id"],
            &[],
        );
        add(
            "reporting_entities",
            &[
                ("id", "uuid"),
                ("tenant_id", "uuid"),
                ("organisation_id", "bigint"),
                ("name", "text"),
                ("kind", "text"),
            ],
            &["id"],
            &[&["tenant_id", "id"]],
        );
        add(
            "metrics",
            &[
                ("tenant_id", "uuid"),
                ("id", "bigint"),
                ("code", "text"),
                ("name", "text"),
                ("unit", "text"),
                ("doc", "tsvector"),
                ("tags", "text[]"),
                ("extra", "jsonb"),
            ],
            &["tenant_id", "id"],
            &[&["tenant_id", "code"]],
        );
        add(
            "data_points",
            &[
                ("id", "bigint"),
                ("tenant_id", "uuid"),
                ("entity_id", "uuid"),
                ("metric_id", "bigint"),
                ("period", "date"),
                ("value", "numeric"),
            ],
            &["id"],
            &[],
        );
        add("tags", &[("id", "bigint"), ("label", "text")], &["id"], &[]);
        add(
            "unit_tags",
            &[("unit_code", "text"), ("tag_id", "bigint")],
            &["unit_code", "tag_id"],
            &[],
        );
        s.foreign_keys = vec![
            fk(
                "organisations_parent_fkey",
                "organisations",
                &["tenant_id", "parent_org_id"],
                "organisations",
                &["tenant_id", "id"],
            ),
            fk(
                "reporting_entities_org_fkey",
                "reporting_entities",
                &["tenant_id", "organisation_id"],
                "organisations",
                &["tenant_id", "id"],
            ),
            fk(
                "metrics_unit_fkey",
                "metrics",
                &["unit"],
                "units",
                &["code"],
            ),
            fk(
                "data_points_entity_fkey",
                "data_points",
                &["tenant_id", "entity_id"],
                "reporting_entities",
                &["tenant_id", "id"],
            ),
            fk(
                "data_points_metric_fkey",
                "data_points",
                &["tenant_id", "metric_id"],
                "metrics",
                &["tenant_id", "id"],
            ),
            fk(
                "unit_tags_unit_fkey",
                "unit_tags",
                &["unit_code"],
                "units",
                &["code"],
            ),
            fk(
                "unit_tags_tag_fkey",
                "unit_tags",
                &["tag_id"],
                "tags",
                &["id"],
            ),
        ];
        s.functions = vec![Function {
            returns_record: false,
            schema: "esg".into(),
            name: "metric_total".into(),
            args: vec![FunctionArg {
                name: "code".into(),
                data_type: "text".into(),
                ..Default::default()
            }],
            returns_set: false,
            returns_void: false,
            result_columns: vec![],
            return_table: None,
            volatility: Volatility::Stable,
            media_type: None,
            media_binary: false,
            settings: Vec::new(),
        }];
        s
    }

    #[test]
    fn media_aggregates_are_looked_up_as_postgrest_does() {
        let agg = |name: &str, mt: &str, target: Option<&str>| MediaAggregate {
            schema: "esg".into(),
            name: name.into(),
            media_type: mt.into(),
            target: target.map(|t| ("esg".to_string(), t.to_string())),
            binary: false,
        };
        let s = Schema {
            media_aggregates: vec![
                agg("tsv", "text/tab-separated-values", Some("words")),
                agg("any_tsv", "text/tab-separated-values", None),
                agg("json_words", "application/json", Some("words")),
                agg("anything", "*/*", Some("words")),
            ],
            ..Schema::default()
        };
        let find = |table: &str, mt: &str, default_select: bool, builtin: bool| {
            s.media_aggregate("esg", table, mt, default_select, builtin)
                .map(|a| a.name.as_str())
        };
        // the relation's own handler first, then anyelement's
        assert_eq!(
            find("words", "text/tab-separated-values", true, false),
            Some("tsv")
        );
        assert_eq!(
            find("other", "text/tab-separated-values", true, false),
            Some("any_tsv")
        );
        // own handlers take whole rows: with a select, only anyelement's
        assert_eq!(
            find("words", "text/tab-separated-values", false, false),
            Some("any_tsv")
        );
        // a relation may override a builtin type
        assert_eq!(
            find("words", "application/json", true, true),
            Some("json_words")
        );
        assert_eq!(find("other", "application/json", true, true), None);
        // */*: the relation's own; any other type falls back to it unless
        // a builtin answers that type
        assert_eq!(find("words", "*/*", true, true), Some("anything"));
        assert_eq!(find("words", "magic/number", true, false), Some("anything"));
        assert_eq!(find("words", "text/csv", true, true), None);
        assert_eq!(find("words", "magic/number", false, false), None);
        assert_eq!(
            Schema::default().media_aggregate("esg", "words", "*/*", true, true),
            None
        );
    }

    #[test]
    fn hints_suggest_close_names() {
        let s = demo();
        assert_eq!(
            s.table_hint("esg", "metric").as_deref(),
            Some("Perhaps you meant the table 'esg.metrics'")
        );
        assert_eq!(s.table_hint("esg", "zzzzqqq"), None);
        assert_eq!(s.table_hint("other", "metrics"), None);
        let hint = |t: &str, n: &str| s.relationship("esg", t, n, None).unwrap_err().hint;
        assert_eq!(
            hint("data_points", "metricz").as_deref(),
            Some("Perhaps you meant 'metrics' instead of 'metricz'.")
        );
        assert_eq!(hint("data_points", "xyzzy"), None);
        // no relationship from an unknown table: the closest related table
        assert_eq!(
            hint("data_pointz", "metrics").as_deref(),
            Some("Perhaps you meant 'data_points' instead of 'data_pointz'.")
        );
        // an existing related name scores 1 and is no suggestion
        let e = s.relationship("esg", "units", "units", None).unwrap_err();
        assert_ne!(
            e.hint.as_deref(),
            Some("Perhaps you meant 'units' instead of 'units'.")
        );
    }

    #[test]
    fn finds_each_cardinality() {
        let s = demo();
        let r = s
            .relationship("esg", "reporting_entities", "organisations", None)
            .unwrap();
        assert_eq!(r.cardinality, Cardinality::ManyToOne);
        assert_eq!(
            r.pairs,
            vec![
                ("tenant_id".into(), "tenant_id".into()),
                ("organisation_id".into(), "id".into())
            ]
        );
        let r = s
            .relationship("esg", "organisations", "reporting_entities", None)
            .unwrap();
        assert_eq!(r.cardinality, Cardinality::OneToMany);
        let r = s.relationship("esg", "units", "tags", None).unwrap();
        assert_eq!(r.cardinality, Cardinality::ManyToMany);
        let r = s
            .relationship("esg", "data_points", "entity_id", None)
            .unwrap();
        assert_eq!(r.target, "reporting_entities");
    }

    /// `first` references `second` twice; `tree` references itself.
    /// Tables of `esg` with integer columns and `id` as their key.
    fn add_int_tables(s: &mut Schema, tables: &[(&str, &[&str])]) {
        for (name, cols) in tables {
            s.tables.insert(
                ("esg".into(), name.to_string()),
                Table {
                    schema: "esg".into(),
                    name: name.to_string(),
                    columns: cols.iter().map(|c| col(c, "int4")).collect(),
                    primary_key: vec!["id".into()],
                    unique_keys: vec![vec!["id".into()]],
                    is_view: false,
                    writable: Default::default(),
                },
            );
        }
    }

    fn two_keys_and_a_tree() -> Schema {
        let mut s = demo();
        add_int_tables(
            &mut s,
            &[
                ("first", &["id", "second_id_1", "second_id_2"]),
                ("second", &["id"]),
                ("tree", &["id", "parent"]),
            ],
        );
        s.foreign_keys.extend([
            fk(
                "first_second_id_1_fkey",
                "first",
                &["second_id_1"],
                "second",
                &["id"],
            ),
            fk(
                "first_second_id_2_fkey",
                "first",
                &["second_id_2"],
                "second",
                &["id"],
            ),
            fk("tree_parent_fkey", "tree", &["parent"], "tree", &["id"]),
        ]);
        s
    }

    #[test]
    fn ambiguous_candidates_in_postgrests_order() {
        // agents -> departments (many-to-one) and departments.head -> agents
        // (one-to-many from agents): PostgREST sorts one-to-many first, even
        // though the many-to-one key sorts first by name
        let mut s = two_keys_and_a_tree();
        add_int_tables(
            &mut s,
            &[
                ("agents", &["id", "department_id"]),
                ("departments", &["id", "head_id"]),
            ],
        );
        s.foreign_keys.extend([
            fk(
                "agents_department_id_fkey",
                "agents",
                &["department_id"],
                "departments",
                &["id"],
            ),
            fk(
                "departments_head_id_fkey",
                "departments",
                &["head_id"],
                "agents",
                &["id"],
            ),
        ]);
        let order: Vec<(Cardinality, String)> = s
            .relationships("esg", "agents", "departments", None)
            .into_iter()
            .map(|r| (r.cardinality, r.constraint))
            .collect();
        assert_eq!(
            order,
            vec![
                (
                    Cardinality::OneToMany,
                    "departments_head_id_fkey".to_string()
                ),
                (
                    Cardinality::ManyToOne,
                    "agents_department_id_fkey".to_string()
                ),
            ]
        );
    }

    #[test]
    fn ambiguity_and_hints() {
        let s = two_keys_and_a_tree();
        let e = s.relationship("esg", "first", "second", None).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (300, "PGRST201"));
        // PostgREST's wording: details a JSON array, the hint listing every choice
        assert!(e.details_json);
        let details: serde_json::Value =
            serde_json::from_str(e.details.as_deref().unwrap()).unwrap();
        assert_eq!(
            details,
            serde_json::json!([
                {"cardinality": "many-to-one", "embedding": "first with second",
                 "relationship": "first_second_id_1_fkey using first(second_id_1) and second(id)"},
                {"cardinality": "many-to-one", "embedding": "first with second",
                 "relationship": "first_second_id_2_fkey using first(second_id_2) and second(id)"}
            ])
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("Try changing 'second' to one of the following: 'second!first_second_id_1_fkey', 'second!first_second_id_2_fkey'. Find the desired relationship in the 'details' key.")
        );
        // a constraint, a column of either side, or the column as the target
        for (name, hint) in [
            ("second", Some("first_second_id_2_fkey")),
            ("second", Some("second_id_2")),
            ("second_id_2", None),
            ("first_second_id_2_fkey", None),
        ] {
            let r = s.relationship("esg", "first", name, hint).unwrap();
            assert_eq!(r.constraint, "first_second_id_2_fkey", "{name} {hint:?}");
        }
        // `id` is a column of both keys' targets: still ambiguous
        let e = s
            .relationship("esg", "first", "second", Some("id"))
            .unwrap_err();
        assert_eq!(e.code, "PGRST201");
        // an unknown hint is named in the details
        let e = s
            .relationship("esg", "first", "second", Some("space"))
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "PGRST200"));
        assert_eq!(
            e.details.as_deref(),
            Some("Searched for a foreign key relationship between 'first' and 'second' using the hint 'space' in the schema 'esg', but no matches were found.")
        );
    }

    #[test]
    fn self_references_follow_postgrests_convention() {
        let s = two_keys_and_a_tree();
        // the table's name: the children; the key column: the parent
        let r = s.relationship("esg", "tree", "tree", None).unwrap();
        assert_eq!(r.cardinality, Cardinality::OneToMany);
        assert_eq!(r.pairs, pairs(&[("id", "parent")]));
        let r = s.relationship("esg", "tree", "parent", None).unwrap();
        assert_eq!(r.cardinality, Cardinality::ManyToOne);
        assert_eq!(r.pairs, pairs(&[("parent", "id")]));
        // a hint on the table's name: the children's column or the constraint
        for hint in ["parent", "tree_parent_fkey"] {
            let r = s.relationship("esg", "tree", "tree", Some(hint)).unwrap();
            assert_eq!(r.cardinality, Cardinality::OneToMany, "{hint}");
        }
        // the referenced column is no hint for a self-reference (PostgREST)
        let e = s
            .relationship("esg", "tree", "tree", Some("id"))
            .unwrap_err();
        assert_eq!(e.code, "PGRST200");
        // a many-to-many from a table to itself: through its junction
        let mut s = s;
        s.tables.insert(
            ("esg".into(), "follows".into()),
            Table {
                schema: "esg".into(),
                name: "follows".into(),
                columns: vec![col("follower", "int4"), col("followed", "int4")],
                primary_key: vec!["follower".into(), "followed".into()],
                unique_keys: vec![vec!["follower".into(), "followed".into()]],
                is_view: false,
                writable: Default::default(),
            },
        );
        s.foreign_keys.extend([
            fk(
                "follows_follower_fkey",
                "follows",
                &["follower"],
                "tree",
                &["id"],
            ),
            fk(
                "follows_followed_fkey",
                "follows",
                &["followed"],
                "tree",
                &["id"],
            ),
        ]);
        // without a hint the table's name is still the children
        let r = s.relationship("esg", "tree", "tree", None).unwrap();
        assert_eq!(r.cardinality, Cardinality::OneToMany);
        // the junction has two directions; its key to the parent picks one
        let e = s
            .relationship("esg", "tree", "tree", Some("follows"))
            .unwrap_err();
        assert_eq!(e.code, "PGRST201");
        let r = s
            .relationship("esg", "tree", "tree", Some("follows_follower_fkey"))
            .unwrap();
        let j = r.junction.unwrap();
        assert_eq!(j.parent_pairs, pairs(&[("id", "follower")]));
        assert_eq!(j.target_pairs, pairs(&[("id", "followed")]));
        // the composite self-reference of the demo: a column of the key
        // names the parent, the table the children
        let s = demo();
        let r = s
            .relationship("esg", "organisations", "parent_org_id", None)
            .unwrap();
        assert_eq!(r.cardinality, Cardinality::ManyToOne);
        let r = s
            .relationship("esg", "organisations", "organisations", None)
            .unwrap();
        assert_eq!(r.cardinality, Cardinality::OneToMany);
        let r = s
            .relationship(
                "esg",
                "organisations",
                "organisations",
                Some("organisations_parent_fkey"),
            )
            .unwrap();
        assert_eq!(r.cardinality, Cardinality::OneToMany);
        let e = s
            .relationship("esg", "units", "organisations", None)
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "PGRST200"));
    }

    fn add_view(s: &mut Schema, name: &str, cols: &[&str]) {
        s.tables.insert(
            ("esg".into(), name.into()),
            Table {
                schema: "esg".into(),
                name: name.into(),
                columns: cols.iter().map(|c| col(c, "text")).collect(),
                is_view: true,
                ..Table::default()
            },
        );
    }

    fn dep(
        table: &str,
        view: &str,
        constraint: &str,
        kind: KeyDepKind,
        cols: &[(&str, &[&str])],
    ) -> ViewKeyDep {
        ViewKeyDep {
            table_schema: "esg".into(),
            table: table.into(),
            view_schema: "esg".into(),
            view: view.into(),
            constraint: constraint.into(),
            kind,
            columns: cols
                .iter()
                .map(|(c, vs)| (c.to_string(), vs.iter().map(|v| v.to_string()).collect()))
                .collect(),
        }
    }

    /// The demo plus `dp_view` (data points without their entity) and
    /// `metrics_v` (metrics with `id` renamed `metric_key`).
    fn with_views() -> Schema {
        use KeyDepKind::*;
        let mut s = demo();
        add_view(
            &mut s,
            "dp_view",
            &["id", "tenant_id", "metric_id", "value"],
        );
        add_view(
            &mut s,
            "metrics_v",
            &["tenant_id", "metric_key", "code", "unit"],
        );
        let deps = vec![
            dep(
                "data_points",
                "dp_view",
                "data_points_pkey",
                PrimaryKey,
                &[("id", &["id"])],
            ),
            dep(
                "data_points",
                "dp_view",
                "data_points_metric_fkey",
                ForeignKey,
                &[("tenant_id", &["tenant_id"]), ("metric_id", &["metric_id"])],
            ),
            dep(
                "metrics",
                "metrics_v",
                "metrics_pkey",
                PrimaryKey,
                &[("tenant_id", &["tenant_id"]), ("id", &["metric_key"])],
            ),
            dep(
                "metrics",
                "metrics_v",
                "data_points_metric_fkey",
                ReferencedKey,
                &[("tenant_id", &["tenant_id"]), ("id", &["metric_key"])],
            ),
            dep(
                "metrics",
                "metrics_v",
                "metrics_unit_fkey",
                ForeignKey,
                &[("unit", &["unit"])],
            ),
        ];
        let base = s.foreign_keys.clone();
        s.add_view_relationships(&deps, &base);
        s
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn views_get_their_tables_relationships() {
        let s = with_views();
        // view → table
        let r = s.relationship("esg", "dp_view", "metrics", None).unwrap();
        assert_eq!(r.cardinality, Cardinality::ManyToOne);
        assert_eq!(r.constraint, "data_points_metric_fkey");
        assert_eq!(
            r.pairs,
            pairs(&[("tenant_id", "tenant_id"), ("metric_id", "id")])
        );
        // table → view, with the view's column names
        let r = s
            .relationship("esg", "data_points", "metrics_v", None)
            .unwrap();
        assert_eq!(r.cardinality, Cardinality::ManyToOne);
        assert_eq!(
            r.pairs,
            pairs(&[("tenant_id", "tenant_id"), ("metric_id", "metric_key")])
        );
        let r = s
            .relationship("esg", "metrics_v", "data_points", None)
            .unwrap();
        assert_eq!(r.cardinality, Cardinality::OneToMany);
        assert_eq!(
            r.pairs,
            pairs(&[("tenant_id", "tenant_id"), ("metric_key", "metric_id")])
        );
        let r = s.relationship("esg", "metrics", "dp_view", None).unwrap();
        assert_eq!(r.cardinality, Cardinality::OneToMany);
        // view → view, both ways
        let r = s.relationship("esg", "dp_view", "metrics_v", None).unwrap();
        assert_eq!(r.cardinality, Cardinality::ManyToOne);
        assert_eq!(
            r.pairs,
            pairs(&[("tenant_id", "tenant_id"), ("metric_id", "metric_key")])
        );
        let r = s.relationship("esg", "metrics_v", "dp_view", None).unwrap();
        assert_eq!(r.cardinality, Cardinality::OneToMany);
        // a view's own foreign key to a table, and back
        let r = s.relationship("esg", "metrics_v", "units", None).unwrap();
        assert_eq!(r.pairs, pairs(&[("unit", "code")]));
        let r = s.relationship("esg", "units", "metrics_v", None).unwrap();
        assert_eq!(r.cardinality, Cardinality::OneToMany);
        // hints work as for tables
        let r = s
            .relationship(
                "esg",
                "dp_view",
                "metrics_v",
                Some("data_points_metric_fkey"),
            )
            .unwrap();
        assert_eq!(r.target, "metrics_v");
        // the view's primary key comes from its table's
        assert_eq!(
            s.table("esg", "metrics_v").unwrap().primary_key,
            vec!["tenant_id".to_string(), "metric_key".to_string()]
        );
        assert_eq!(
            s.table("esg", "dp_view").unwrap().primary_key,
            vec!["id".to_string()]
        );
        // a constraint name designates the table, never a view
        let r = s
            .relationship("esg", "data_points", "data_points_metric_fkey", None)
            .unwrap();
        assert_eq!(r.target, "metrics");
        let r = s
            .relationship("esg", "metrics", "data_points_metric_fkey", None)
            .unwrap();
        assert_eq!(r.target, "data_points");
        // dp_view lacks entity_id: no relationship to the entities
        let e = s
            .relationship("esg", "dp_view", "reporting_entities", None)
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "PGRST200"));
        // the tables' own relationships are unchanged
        let r = s
            .relationship("esg", "data_points", "metrics", None)
            .unwrap();
        assert_eq!(
            r.pairs,
            pairs(&[("tenant_id", "tenant_id"), ("metric_id", "id")])
        );
    }

    #[test]
    fn a_key_a_view_shows_twice_is_ambiguous() {
        let mut s = demo();
        add_view(&mut s, "metrics_twice", &["tenant_id", "id", "id_again"]);
        let deps = vec![dep(
            "metrics",
            "metrics_twice",
            "data_points_metric_fkey",
            KeyDepKind::ReferencedKey,
            &[("tenant_id", &["tenant_id"]), ("id", &["id", "id_again"])],
        )];
        let base = s.foreign_keys.clone();
        s.add_view_relationships(&deps, &base);
        let e = s
            .relationship("esg", "data_points", "metrics_twice", None)
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (300, "PGRST201"));
        assert!(e
            .details
            .as_deref()
            .unwrap_or("")
            .contains("data_points with metrics_twice"));
        // the constraint does not tell them apart; a column does
        let e = s
            .relationship(
                "esg",
                "data_points",
                "metrics_twice",
                Some("data_points_metric_fkey"),
            )
            .unwrap_err();
        assert_eq!(e.code, "PGRST201");
        let r = s
            .relationship("esg", "data_points", "metrics_twice", Some("id_again"))
            .unwrap();
        assert_eq!(
            r.pairs,
            pairs(&[("tenant_id", "tenant_id"), ("metric_id", "id_again")])
        );
    }

    #[test]
    fn one_to_one_and_junctions_through_views() {
        use KeyDepKind::*;
        let mut s = demo();
        // profiles: one per entity (its key is the foreign key)
        s.tables.insert(
            ("esg".into(), "profiles".into()),
            Table {
                schema: "esg".into(),
                name: "profiles".into(),
                columns: vec![col("entity_id", "uuid"), col("bio", "text")],
                primary_key: vec!["entity_id".into()],
                unique_keys: vec![vec!["entity_id".into()]],
                is_view: false,
                writable: Default::default(),
            },
        );
        s.foreign_keys.push(fk(
            "profiles_entity_fkey",
            "profiles",
            &["entity_id"],
            "reporting_entities",
            &["id"],
        ));
        add_view(&mut s, "profiles_v", &["ent", "bio"]);
        add_view(&mut s, "unit_tags_v", &["unit_code", "tag_id"]);
        let deps = vec![
            dep(
                "profiles",
                "profiles_v",
                "profiles_entity_fkey",
                ForeignKey,
                &[("entity_id", &["ent"])],
            ),
            dep(
                "unit_tags",
                "unit_tags_v",
                "unit_tags_pkey",
                PrimaryKey,
                &[("unit_code", &["unit_code"]), ("tag_id", &["tag_id"])],
            ),
            dep(
                "unit_tags",
                "unit_tags_v",
                "unit_tags_unit_fkey",
                ForeignKey,
                &[("unit_code", &["unit_code"])],
            ),
            dep(
                "unit_tags",
                "unit_tags_v",
                "unit_tags_tag_fkey",
                ForeignKey,
                &[("tag_id", &["tag_id"])],
            ),
        ];
        let base = s.foreign_keys.clone();
        s.add_view_relationships(&deps, &base);
        // the base key's one-to-one carries over, though the view has no key
        let r = s
            .relationship("esg", "profiles_v", "reporting_entities", None)
            .unwrap();
        assert_eq!(r.cardinality, Cardinality::OneToOne);
        let r = s
            .relationship("esg", "reporting_entities", "profiles_v", None)
            .unwrap();
        assert_eq!(r.cardinality, Cardinality::OneToOne);
        assert_eq!(r.pairs, pairs(&[("id", "ent")]));
        // a view can be a junction: two junctions now, told apart by name
        let e = s.relationship("esg", "units", "tags", None).unwrap_err();
        assert_eq!(e.code, "PGRST201");
        let r = s
            .relationship("esg", "units", "tags", Some("unit_tags_v"))
            .unwrap();
        assert_eq!(r.junction.unwrap().table, "unit_tags_v");
        let r = s
            .relationship("esg", "units", "tags", Some("unit_tags"))
            .unwrap();
        assert_eq!(r.junction.unwrap().table, "unit_tags");
    }

    #[test]
    fn view_relationships_need_both_ends_exposed() {
        let mut s = demo();
        add_view(&mut s, "metrics_v", &["tenant_id", "id"]);
        // a foreign key between hidden tables, shown by an exposed view
        let hidden = ForeignKey {
            name: "secret_fkey".into(),
            schema: "private".into(),
            table: "secrets".into(),
            columns: vec!["metric_id".into()],
            ref_schema: "private".into(),
            ref_table: "hidden".into(),
            ref_columns: vec!["id".into()],
            one_to_one: Some(false),
        };
        let deps = vec![ViewKeyDep {
            table_schema: "private".into(),
            table: "secrets".into(),
            view_schema: "esg".into(),
            view: "metrics_v".into(),
            constraint: "secret_fkey".into(),
            kind: KeyDepKind::ForeignKey,
            columns: vec![("metric_id".into(), vec!["id".into()])],
        }];
        let before = s.foreign_keys.len();
        s.add_view_relationships(&deps, &[hidden]);
        assert_eq!(s.foreign_keys.len(), before);
    }
}
