//! The foreign-key graph of managed tables, and the set-based copy built on it.
//!
//! Two layers:
//!
//! 1. [`plan`]: pure graph logic. Given the tables and their foreign keys,
//!    an insertion order (referenced tables before referencing ones) and, for
//!    every foreign key, how it is satisfied: by that order, inside one
//!    statement (a self-reference: PostgreSQL checks non-deferred foreign
//!    keys at the end of the statement, and a whole table is copied by one
//!    `INSERT … SELECT`), by deferring it (when it is `DEFERRABLE`), or by
//!    inserting its columns as NULL and patching them afterwards (when they
//!    are nullable). Cycles between tables are broken with as few patches as
//!    the greedy choice finds; deferrable keys are preferred because they
//!    cost nothing.
//!
//! 2. [`copy_steps`]: the SQL that copies the rows of one or more tenants
//!    into new tenants, set-based: one `CREATE TEMP TABLE … AS SELECT` per
//!    key mapping (old key → new key, new keys from the column's own
//!    default), one `INSERT … SELECT` per table joining the mappings, one
//!    `UPDATE … FROM` per patched foreign key. Never row by row.
//!
//! Statement parameters (bound by the caller):
//! `$1 uuid[]` source tenant ids, `$2 uuid[]` new tenant ids (same order),
//! `$3 jsonb` the snapshot's `tables` object (only for [`Source::Snapshot`]).
//!
//! Key rules, per table:
//! - primary key includes the tenant column: ids stay as they are (the new
//!   tenant id makes them unique);
//! - otherwise the primary key is global: each key column gets a new value
//!   from its own default (serial, identity, `gen_random_uuid()`, any
//!   default), or, when the key column is itself a foreign key to a remapped
//!   key (a 1:1 extension table), the referenced row's new key;
//! - no primary key: rows are copied as they are.
//!
//! Every foreign-key column that references a remapped key gets the new key
//! (in the same table, across tables, through composite keys); one that
//! references a tenant column gets the new tenant; everything else is copied
//! byte for byte. Generated columns are not listed, so PostgreSQL recomputes
//! them. Ids stored inside jsonb, arrays or text are data, not keys: they are
//! copied unchanged.

use crate::ident::{quote_ident, quote_literal};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::fmt;

// ---------------------------------------------------------------------------
// Graph layer
// ---------------------------------------------------------------------------

/// One foreign key as the graph sees it: `referencing` rows point at
/// `referenced` rows (indexes into the table list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub referencing: usize,
    pub referenced: usize,
    /// Declared `DEFERRABLE`: its check can wait until all rows are in.
    pub deferrable: bool,
    /// Its columns may be inserted as NULL and patched afterwards.
    pub nullable: bool,
}

/// How one foreign key is satisfied during the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// The referenced table is inserted first.
    Ordered,
    /// Points into its own table: one statement inserts both ends, and the
    /// check runs at the end of that statement.
    SelfReference,
    /// `SET CONSTRAINTS … DEFERRED` before the inserts, `IMMEDIATE` after.
    Deferred,
    /// Inserted as NULL, then set by an `UPDATE` once every table is in.
    Patched,
}

/// Insertion order plus the handling of each edge (same index as the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub order: Vec<usize>,
    pub handling: Vec<Handling>,
}

/// A cycle that no deferrable or nullable foreign key breaks: the tables of
/// one strongly connected component of the unbreakable keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleError {
    pub tables: Vec<usize>,
}

/// Strongly connected components (Tarjan), each sorted, listed by smallest
/// member. `adj[v]` are the successors of `v`.
fn sccs(n: usize, adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct St<'a> {
        adj: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut St, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on[v] = true;
        for i in 0..s.adj[v].len() {
            let w = s.adj[v][i];
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().expect("tarjan stack");
                s.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            comp.sort_unstable();
            s.out.push(comp);
        }
    }
    let mut s = St {
        adj,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// Plan the copy of `n` tables linked by `edges`.
///
/// Self-references are satisfied within one statement. Cycles between
/// tables are broken by deferring every deferrable key inside the cycle, then,
/// while a cycle remains, by patching one nullable key of it (lowest edge
/// index first, so the plan is deterministic). The order is a topological
/// order of what remains, ties broken by table index.
pub fn plan(n: usize, edges: &[Edge]) -> Result<Plan, CycleError> {
    let mut handling: Vec<Handling> = edges
        .iter()
        .map(|e| {
            if e.referencing == e.referenced {
                Handling::SelfReference
            } else {
                Handling::Ordered
            }
        })
        .collect();
    loop {
        // Active graph: referenced -> referencing, for the Ordered edges.
        let mut adj = vec![Vec::new(); n];
        for (i, e) in edges.iter().enumerate() {
            if handling[i] == Handling::Ordered {
                adj[e.referenced].push(e.referencing);
            }
        }
        let Some(comp) = sccs(n, &adj).into_iter().find(|c| c.len() > 1) else {
            break;
        };
        let inside = |e: &Edge| {
            comp.binary_search(&e.referenced).is_ok() && comp.binary_search(&e.referencing).is_ok()
        };
        let mut deferred_any = false;
        for (i, e) in edges.iter().enumerate() {
            if handling[i] == Handling::Ordered && inside(e) && e.deferrable {
                handling[i] = Handling::Deferred;
                deferred_any = true;
            }
        }
        if deferred_any {
            continue;
        }
        match edges
            .iter()
            .enumerate()
            .find(|(i, e)| handling[*i] == Handling::Ordered && inside(e) && e.nullable)
        {
            Some((i, _)) => handling[i] = Handling::Patched,
            None => return Err(CycleError { tables: comp }),
        }
    }
    // Kahn's algorithm, smallest index first.
    let mut indegree = vec![0usize; n];
    let mut adj = vec![Vec::new(); n];
    for (i, e) in edges.iter().enumerate() {
        if handling[i] == Handling::Ordered {
            adj[e.referenced].push(e.referencing);
            indegree[e.referencing] += 1;
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&v| indegree[v] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(v)) = ready.pop() {
        order.push(v);
        for &w in &adj[v] {
            indegree[w] -= 1;
            if indegree[w] == 0 {
                ready.push(Reverse(w));
            }
        }
    }
    debug_assert_eq!(order.len(), n, "the remaining graph is acyclic");
    Ok(Plan { order, handling })
}

// ---------------------------------------------------------------------------
// Copy layer
// ---------------------------------------------------------------------------

/// One column of a table to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub not_null: bool,
    /// `GENERATED ALWAYS AS (…) STORED`: never inserted, recomputed.
    pub generated: bool,
    /// SQL expression giving a fresh value: the column default, or
    /// `nextval('<sequence>'::regclass)` for an identity column.
    pub fresh: Option<String>,
}

/// A table to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Quoted, schema-qualified name, e.g. `"esg"."metrics"`.
    pub name: String,
    /// Key of the table's rows in the snapshot's `tables` object.
    pub snapshot_key: String,
    pub tenant_column: String,
    /// Columns in table order, generated ones included (they are skipped).
    pub columns: Vec<Column>,
    /// Primary-key columns in key order; empty when there is none.
    pub primary_key: Vec<String>,
}

/// A foreign key between two tables being copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// Quoted, schema-qualified constraint name (for `SET CONSTRAINTS`).
    pub name: String,
    pub referencing: usize,
    pub referenced: usize,
    /// (referencing column, referenced column) pairs.
    pub columns: Vec<(String, String)>,
    pub deferrable: bool,
    /// `MATCH FULL`: all columns NULL or none.
    pub match_full: bool,
}

/// Where the source rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The live tables: rows whose tenant column is in `$1`.
    Tables,
    /// A snapshot: `jsonb_populate_recordset(NULL::table, $3 -> key)`.
    Snapshot,
}

/// What a step does (the caller counts the rows of `Insert` steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Defer,
    Map,
    Setup,
    Fill,
    Insert,
    Patch,
    Check,
    Drop,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Defer => "defer",
            StepKind::Map => "map",
            StepKind::Setup => "setup",
            StepKind::Fill => "fill",
            StepKind::Insert => "insert",
            StepKind::Patch => "patch",
            StepKind::Check => "check",
            StepKind::Drop => "drop",
        }
    }

    /// Whether the step runs as the owner of its table: every step that
    /// reads or writes a user table, and so may run code its owner attached
    /// (triggers, defaults, constraints, casts). The others — creating,
    /// granting and dropping the mapping tables, deferring constraints — run
    /// no user code.
    pub fn runs_as_owner(self) -> bool {
        matches!(
            self,
            StepKind::Fill | StepKind::Insert | StepKind::Patch | StepKind::Check
        )
    }
}

/// One SQL statement of the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    /// Index of the table the step writes, if any.
    pub table: Option<usize>,
    pub sql: String,
}

/// Why a set of tables cannot be copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyError {
    /// A global primary-key column with no default to draw new values from.
    KeyWithoutDefault { table: String, column: String },
    /// A foreign key references some but not all columns of a remapped key.
    PartialKeyReference { constraint: String, table: String },
    /// A foreign key names a column the table does not have (to copy).
    UnknownColumn { table: String, column: String },
    /// A cycle of foreign keys none of which is deferrable or nullable.
    Cycle { tables: Vec<String> },
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::KeyWithoutDefault { table, column } => write!(
                f,
                "primary key column {column} of {table} is global (it does not include the tenant column) and has no default to draw new keys from"
            ),
            CopyError::PartialKeyReference { constraint, table } => write!(
                f,
                "foreign key {constraint} references only part of the primary key of {table}, which gets new keys"
            ),
            CopyError::UnknownColumn { table, column } => write!(f, "table {table} has no column {column} to copy"),
            CopyError::Cycle { tables } => write!(
                f,
                "the foreign keys between {} form a cycle that no deferrable or nullable foreign key breaks",
                tables.join(", ")
            ),
        }
    }
}

impl std::error::Error for CopyError {}

/// Where a remapped key column's new value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeySource {
    /// The column's own default.
    Fresh(String),
    /// The new key of the row it references: (foreign key, referenced key position).
    ViaFk(usize, usize),
}

/// Per-table derived facts.
#[derive(Debug, Clone)]
struct Derived {
    /// Remapped key columns (empty: ids stay).
    remap: Vec<String>,
    sources: Vec<KeySource>,
    /// The table needs a mapping table (its remapped key is referenced, or a
    /// patched foreign key must find the new rows).
    mapped: bool,
}

/// How each foreign-key column pair is rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PairRule {
    /// Referenced column is the tenant column: map the tenant.
    Tenant,
    /// Referenced column is remapped key position `j` of the referenced table.
    Key(usize),
    /// Copied as is.
    Same,
}

fn map_name(table: usize) -> String {
    quote_ident(&format!("_tenancy_map_{table}"))
}

fn column<'a>(t: &'a Table, name: &str) -> Option<&'a Column> {
    t.columns.iter().find(|c| c.name == name)
}

/// The tables a copy must write, with each foreign key classified, checked
/// against the key rules. `single` is true when exactly one tenant is copied
/// (the tenant column then becomes the constant `$2[1]`).
pub fn copy_steps(
    tables: &[Table],
    fks: &[ForeignKey],
    source: Source,
    single: bool,
) -> Result<Vec<Step>, CopyError> {
    let n = tables.len();
    // Columns named by foreign keys must exist.
    for fk in fks {
        for (rc, pc) in &fk.columns {
            for (t, c) in [(fk.referencing, rc), (fk.referenced, pc)] {
                if column(&tables[t], c).is_none() {
                    return Err(CopyError::UnknownColumn {
                        table: tables[t].name.clone(),
                        column: c.clone(),
                    });
                }
            }
        }
    }
    // Remapped keys.
    let mut derived: Vec<Derived> = Vec::with_capacity(n);
    for t in tables {
        let global = !t.primary_key.is_empty() && !t.primary_key.contains(&t.tenant_column);
        let remap: Vec<String> = if global {
            t.primary_key.clone()
        } else {
            Vec::new()
        };
        derived.push(Derived {
            remap,
            sources: Vec::new(),
            mapped: false,
        });
    }
    // Pair rules per foreign key.
    let mut rules: Vec<Vec<PairRule>> = Vec::with_capacity(fks.len());
    for fk in fks {
        let p = &tables[fk.referenced];
        let premap = &derived[fk.referenced].remap;
        let mut r = Vec::with_capacity(fk.columns.len());
        let mut covered = 0;
        for (_, pc) in &fk.columns {
            if *pc == p.tenant_column {
                r.push(PairRule::Tenant);
            } else if let Some(j) = premap.iter().position(|k| k == pc) {
                covered += 1;
                r.push(PairRule::Key(j));
            } else {
                r.push(PairRule::Same);
            }
        }
        if covered > 0 && covered < premap.len() {
            return Err(CopyError::PartialKeyReference {
                constraint: fk.name.clone(),
                table: p.name.clone(),
            });
        }
        rules.push(r);
    }
    let remaps_key = |fi: usize| rules[fi].iter().any(|r| matches!(r, PairRule::Key(_)));
    // Sources of new key values.
    for ti in 0..n {
        let t = &tables[ti];
        let mut sources = Vec::new();
        for k in derived[ti].remap.clone() {
            let via = fks.iter().enumerate().find_map(|(fi, fk)| {
                if fk.referencing != ti || fk.referenced == ti {
                    return None;
                }
                fk.columns
                    .iter()
                    .zip(&rules[fi])
                    .find_map(|((rc, _), rule)| match rule {
                        PairRule::Key(j) if *rc == k => Some(KeySource::ViaFk(fi, *j)),
                        _ => None,
                    })
            });
            let src = match via {
                Some(s) => s,
                None => match column(t, &k).and_then(|c| c.fresh.clone()) {
                    Some(expr) => KeySource::Fresh(expr),
                    None => {
                        return Err(CopyError::KeyWithoutDefault {
                            table: t.name.clone(),
                            column: k,
                        })
                    }
                },
            };
            sources.push(src);
        }
        derived[ti].sources = sources;
    }
    // Graph and plan.
    let key_cols = |ti: usize| -> BTreeSet<&str> {
        let t = &tables[ti];
        t.primary_key
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(t.tenant_column.as_str()))
            .collect()
    };
    let patch_columns = |fi: usize| -> Vec<String> {
        let fk = &fks[fi];
        let keys = key_cols(fk.referencing);
        fk.columns
            .iter()
            .map(|(rc, _)| rc.clone())
            .filter(|rc| !keys.contains(rc.as_str()))
            .collect()
    };
    let edges: Vec<Edge> = fks
        .iter()
        .enumerate()
        .map(|(fi, fk)| {
            let t = &tables[fk.referencing];
            let pcs = patch_columns(fi);
            let nullable = !t.primary_key.is_empty()
                && !pcs.is_empty()
                && pcs
                    .iter()
                    .all(|c| column(t, c).is_some_and(|c| !c.not_null))
                && (!fk.match_full || pcs.len() == fk.columns.len());
            Edge {
                referencing: fk.referencing,
                referenced: fk.referenced,
                deferrable: fk.deferrable,
                nullable,
            }
        })
        .collect();
    let plan = plan(n, &edges).map_err(|e| CopyError::Cycle {
        tables: e.tables.iter().map(|&i| tables[i].name.clone()).collect(),
    })?;
    // Which tables need a mapping table.
    for (fi, fk) in fks.iter().enumerate() {
        if remaps_key(fi) {
            derived[fk.referenced].mapped = true;
        }
        if plan.handling[fi] == Handling::Patched && !derived[fk.referencing].remap.is_empty() {
            derived[fk.referencing].mapped = true;
        }
    }
    // Map creation order: a map whose keys come through a foreign key needs
    // the referenced map first. Key columns are NOT NULL, so such keys are
    // never patched; a cycle of them cannot be copied.
    let map_edges: Vec<Edge> = derived
        .iter()
        .enumerate()
        .flat_map(|(ti, d)| {
            d.sources.iter().filter_map(move |s| match s {
                KeySource::ViaFk(fi, _) => Some(Edge {
                    referencing: ti,
                    referenced: fks[*fi].referenced,
                    deferrable: false,
                    nullable: false,
                }),
                KeySource::Fresh(_) => None,
            })
        })
        .collect();
    let map_order = plan_order(n, &map_edges, tables)?;

    let new_tenant_of = |expr: &str| format!("($2)[pg_catalog.array_position($1, {expr})]");
    let own_tenant = |t: &Table| {
        if single {
            "($2)[1]".to_string()
        } else {
            new_tenant_of(&format!("s.{}", quote_ident(&t.tenant_column)))
        }
    };
    let from_source = |t: &Table| -> (String, String) {
        match source {
            Source::Tables => (
                format!("{} s", t.name),
                if single {
                    format!("s.{} = ($1)[1]", quote_ident(&t.tenant_column))
                } else {
                    format!("s.{} = ANY ($1)", quote_ident(&t.tenant_column))
                },
            ),
            Source::Snapshot => (
                format!(
                    "pg_catalog.jsonb_populate_recordset(NULL::{}, $3 -> {}) s",
                    t.name,
                    quote_literal(&t.snapshot_key)
                ),
                "true".to_string(),
            ),
        }
    };
    // `LEFT JOIN map f<i> ON …` for a foreign key whose referenced key is remapped.
    let fk_join = |fi: usize| -> String {
        let fk = &fks[fi];
        let alias = format!("f{fi}");
        let conds: Vec<String> = fk
            .columns
            .iter()
            .zip(&rules[fi])
            .filter_map(|((rc, _), rule)| match rule {
                PairRule::Key(j) => Some(format!("{alias}.o{j} = s.{}", quote_ident(rc))),
                _ => None,
            })
            .collect();
        format!(
            " LEFT JOIN pg_temp.{} {alias} ON {}",
            map_name(fk.referenced),
            conds.join(" AND ")
        )
    };
    let own_join = |ti: usize| -> String {
        let conds: Vec<String> = derived[ti]
            .remap
            .iter()
            .enumerate()
            .map(|(j, k)| format!("k.o{j} = s.{}", quote_ident(k)))
            .collect();
        format!(
            " JOIN pg_temp.{} k ON {}",
            map_name(ti),
            conds.join(" AND ")
        )
    };
    // The new value of referencing column `rc` of foreign key `fi`.
    let fk_value = |fi: usize, pair: usize| -> String {
        let rc = &fks[fi].columns[pair].0;
        match rules[fi][pair] {
            PairRule::Tenant => new_tenant_of(&format!("s.{}", quote_ident(rc))),
            PairRule::Key(j) => format!("f{fi}.n{j}"),
            PairRule::Same => format!("s.{}", quote_ident(rc)),
        }
    };

    let mut steps = Vec::new();
    let deferred: Vec<usize> = (0..fks.len())
        .filter(|&fi| plan.handling[fi] == Handling::Deferred)
        .collect();
    let mut deferred_names: Vec<&str> = deferred.iter().map(|&fi| fks[fi].name.as_str()).collect();
    deferred_names.sort_unstable();
    deferred_names.dedup();
    if !deferred_names.is_empty() {
        steps.push(Step {
            kind: StepKind::Defer,
            table: None,
            sql: format!("SET CONSTRAINTS {} DEFERRED", deferred_names.join(", ")),
        });
    }
    // Mapping tables.
    let mut fills: Vec<(usize, String, String)> = Vec::new();
    for &ti in &map_order {
        let d = &derived[ti];
        if !d.mapped {
            continue;
        }
        let t = &tables[ti];
        let (from, filter) = from_source(t);
        let mut joins = String::new();
        let mut cols = Vec::new();
        for (j, k) in d.remap.iter().enumerate() {
            cols.push(format!("s.{} AS o{j}", quote_ident(k)));
        }
        for (j, src) in d.sources.iter().enumerate() {
            match src {
                KeySource::Fresh(expr) => cols.push(format!("{expr} AS n{j}")),
                KeySource::ViaFk(fi, pj) => {
                    let join = fk_join(*fi);
                    if !joins.contains(&join) {
                        joins.push_str(&join);
                    }
                    cols.push(format!("f{fi}.n{pj} AS n{j}"));
                }
            }
        }
        let m = map_name(ti);
        let select = format!(
            "SELECT {} FROM {from}{joins} WHERE {filter}",
            cols.join(", ")
        );
        // The mapping table is made empty by the extension owner (analysing
        // the query runs nothing), keyed on the old key (one new key per old
        // key: no owner's code can add a second mapping that would duplicate
        // another owner's rows), filled by the table's owner (its key
        // defaults are its code) and readable by every owner whose rows it
        // remaps. Writable only while the mappings are filled.
        steps.push(Step {
            kind: StepKind::Map,
            table: Some(ti),
            sql: format!("CREATE TEMP TABLE {m} AS {select} WITH NO DATA"),
        });
        let olds: Vec<String> = (0..d.remap.len()).map(|j| format!("o{j}")).collect();
        steps.push(Step {
            kind: StepKind::Setup,
            table: Some(ti),
            sql: format!("ALTER TABLE pg_temp.{m} ADD UNIQUE ({})", olds.join(", ")),
        });
        steps.push(Step {
            kind: StepKind::Setup,
            table: Some(ti),
            sql: format!("GRANT SELECT, INSERT ON pg_temp.{m} TO PUBLIC"),
        });
        fills.push((ti, m, select));
    }
    // The fills, one after another (each as its table's owner), then the
    // mapping tables closed to writes: the statements that run owners' code
    // follow each other with nothing in between that changes the session.
    for (ti, m, select) in &fills {
        steps.push(Step {
            kind: StepKind::Fill,
            table: Some(*ti),
            sql: format!("INSERT INTO pg_temp.{m} {select}"),
        });
    }
    for (ti, m, _) in &fills {
        steps.push(Step {
            kind: StepKind::Setup,
            table: Some(*ti),
            sql: format!("REVOKE INSERT ON pg_temp.{m} FROM PUBLIC"),
        });
    }
    // Inserts.
    for &ti in &plan.order {
        let t = &tables[ti];
        let d = &derived[ti];
        let (from, filter) = from_source(t);
        let mut joins = String::new();
        if d.mapped {
            joins.push_str(&own_join(ti));
        }
        let mut names = Vec::new();
        let mut values = Vec::new();
        for c in t.columns.iter().filter(|c| !c.generated) {
            let q = quote_ident(&c.name);
            let value = if c.name == t.tenant_column {
                Some(own_tenant(t))
            } else if let Some(j) = d.remap.iter().position(|k| *k == c.name) {
                if d.mapped {
                    Some(format!("k.n{j}"))
                } else {
                    match &d.sources[j] {
                        KeySource::Fresh(_) => None, // the default fills it
                        KeySource::ViaFk(fi, pj) => {
                            let join = fk_join(*fi);
                            if !joins.contains(&join) {
                                joins.push_str(&join);
                            }
                            Some(format!("f{fi}.n{pj}"))
                        }
                    }
                }
            } else {
                // A foreign-key column? Patched keys insert NULL first.
                let mut v = None;
                for (fi, fk) in fks
                    .iter()
                    .enumerate()
                    .filter(|(_, fk)| fk.referencing == ti)
                {
                    let Some(pair) = fk.columns.iter().position(|(rc, _)| *rc == c.name) else {
                        continue;
                    };
                    if plan.handling[fi] == Handling::Patched {
                        v = Some("NULL".to_string());
                        break;
                    }
                    if v.is_none() {
                        if remaps_key(fi) {
                            let join = fk_join(fi);
                            if !joins.contains(&join) {
                                joins.push_str(&join);
                            }
                        }
                        v = Some(fk_value(fi, pair));
                    }
                }
                Some(v.unwrap_or_else(|| format!("s.{q}")))
            };
            if let Some(v) = value {
                names.push(q);
                values.push(v);
            }
        }
        steps.push(Step {
            kind: StepKind::Insert,
            table: Some(ti),
            sql: format!(
                "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {from}{joins} WHERE {filter}",
                t.name,
                names.join(", "),
                values.join(", ")
            ),
        });
    }
    // Patches.
    for (fi, fk) in fks.iter().enumerate() {
        if plan.handling[fi] != Handling::Patched {
            continue;
        }
        let ti = fk.referencing;
        let t = &tables[ti];
        let d = &derived[ti];
        let (from, filter) = from_source(t);
        let mut joins = String::new();
        let mut matches = Vec::new();
        if d.remap.is_empty() {
            // Ids stay: the new row is (new tenant, same key).
            for k in &t.primary_key {
                let q = quote_ident(k);
                if *k == t.tenant_column {
                    matches.push(format!("t.{q} = {}", own_tenant(t)));
                } else {
                    matches.push(format!("t.{q} = s.{q}"));
                }
            }
        } else {
            joins.push_str(&own_join(ti));
            for (j, k) in d.remap.iter().enumerate() {
                matches.push(format!("t.{} = k.n{j}", quote_ident(k)));
            }
        }
        if remaps_key(fi) {
            joins.push_str(&fk_join(fi));
        }
        let pcs = patch_columns(fi);
        let mut sets = Vec::new();
        let mut present = Vec::new();
        for (pair, (rc, _)) in fk.columns.iter().enumerate() {
            if pcs.contains(rc) {
                sets.push(format!("{} = {}", quote_ident(rc), fk_value(fi, pair)));
                present.push(format!("s.{} IS NOT NULL", quote_ident(rc)));
            }
        }
        steps.push(Step {
            kind: StepKind::Patch,
            table: Some(ti),
            sql: format!(
                "UPDATE {} t SET {} FROM {from}{joins} WHERE {filter} AND {} AND ({})",
                t.name,
                sets.join(", "),
                matches.join(" AND "),
                present.join(" OR ")
            ),
        });
    }
    // The deferred keys are checked one by one, each as the owner of its
    // referencing table: `SET CONSTRAINTS … IMMEDIATE` fires what is pending
    // under that name, which may include a constraint trigger of the same
    // name.
    let mut checked: Vec<&str> = Vec::new();
    for &fi in &deferred {
        let name = fks[fi].name.as_str();
        if checked.contains(&name) {
            continue;
        }
        checked.push(name);
        steps.push(Step {
            kind: StepKind::Check,
            table: Some(fks[fi].referencing),
            sql: format!("SET CONSTRAINTS {name} IMMEDIATE"),
        });
    }
    for &ti in &map_order {
        if derived[ti].mapped {
            steps.push(Step {
                kind: StepKind::Drop,
                table: Some(ti),
                sql: format!("DROP TABLE pg_temp.{}", map_name(ti)),
            });
        }
    }
    Ok(steps)
}

/// A topological order of `edges` (nothing breakable), as table names on error.
fn plan_order(n: usize, edges: &[Edge], tables: &[Table]) -> Result<Vec<usize>, CopyError> {
    plan(n, edges)
        .map(|p| p.order)
        .map_err(|e| CopyError::Cycle {
            tables: e.tables.iter().map(|&i| tables[i].name.clone()).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(referencing: usize, referenced: usize, deferrable: bool, nullable: bool) -> Edge {
        Edge {
            referencing,
            referenced,
            deferrable,
            nullable,
        }
    }

    #[test]
    fn chain_is_ordered_referenced_first() {
        // 2 -> 1 -> 0 (2 references 1, 1 references 0)
        let p = plan(3, &[e(2, 1, false, false), e(1, 0, false, false)]).unwrap();
        assert_eq!(p.order, vec![0, 1, 2]);
        assert_eq!(p.handling, vec![Handling::Ordered, Handling::Ordered]);
        let p = plan(3, &[e(0, 1, false, false), e(1, 2, false, false)]).unwrap();
        assert_eq!(p.order, vec![2, 1, 0]);
    }

    #[test]
    fn self_reference_needs_no_break() {
        let p = plan(1, &[e(0, 0, false, false)]).unwrap();
        assert_eq!(p.order, vec![0]);
        assert_eq!(p.handling, vec![Handling::SelfReference]);
    }

    #[test]
    fn two_table_cycle_prefers_deferral_then_patch() {
        let p = plan(2, &[e(0, 1, false, true), e(1, 0, true, false)]).unwrap();
        assert_eq!(p.handling, vec![Handling::Ordered, Handling::Deferred]);
        assert_eq!(p.order, vec![1, 0]);
        let p = plan(2, &[e(0, 1, false, false), e(1, 0, false, true)]).unwrap();
        assert_eq!(p.handling, vec![Handling::Ordered, Handling::Patched]);
        assert_eq!(p.order, vec![1, 0]);
    }

    #[test]
    fn unbreakable_cycle_is_reported() {
        let err = plan(
            3,
            &[
                e(0, 1, false, false),
                e(1, 2, false, false),
                e(2, 0, false, false),
            ],
        )
        .unwrap_err();
        assert_eq!(err.tables, vec![0, 1, 2]);
    }

    fn col(name: &str, not_null: bool, fresh: Option<&str>) -> Column {
        Column {
            name: name.into(),
            not_null,
            generated: false,
            fresh: fresh.map(Into::into),
        }
    }

    fn demo() -> (Vec<Table>, Vec<ForeignKey>) {
        let orgs = Table {
            name: "\"esg\".\"organisations\"".into(),
            snapshot_key: "esg.organisations".into(),
            tenant_column: "tenant_id".into(),
            columns: vec![
                col("tenant_id", true, None),
                col("id", true, Some("nextval('o')")),
                col("parent_org_id", false, None),
            ],
            primary_key: vec!["tenant_id".into(), "id".into()],
        };
        let entities = Table {
            name: "\"esg\".\"reporting_entities\"".into(),
            snapshot_key: "esg.reporting_entities".into(),
            tenant_column: "tenant_id".into(),
            columns: vec![
                col("id", true, Some("gen_random_uuid()")),
                col("tenant_id", true, None),
                col("organisation_id", true, None),
            ],
            primary_key: vec!["id".into()],
        };
        let points = Table {
            name: "\"esg\".\"data_points\"".into(),
            snapshot_key: "esg.data_points".into(),
            tenant_column: "tenant_id".into(),
            columns: vec![
                col("id", true, Some("nextval('p')")),
                col("tenant_id", true, None),
                col("entity_id", true, None),
                Column {
                    name: "twice".into(),
                    not_null: false,
                    generated: true,
                    fresh: None,
                },
            ],
            primary_key: vec!["id".into()],
        };
        let fks = vec![
            ForeignKey {
                name: "\"esg\".\"dp_entity\"".into(),
                referencing: 2,
                referenced: 1,
                columns: vec![
                    ("tenant_id".into(), "tenant_id".into()),
                    ("entity_id".into(), "id".into()),
                ],
                deferrable: false,
                match_full: false,
            },
            ForeignKey {
                name: "\"esg\".\"re_org\"".into(),
                referencing: 1,
                referenced: 0,
                columns: vec![
                    ("tenant_id".into(), "tenant_id".into()),
                    ("organisation_id".into(), "id".into()),
                ],
                deferrable: false,
                match_full: false,
            },
            ForeignKey {
                name: "\"esg\".\"org_parent\"".into(),
                referencing: 0,
                referenced: 0,
                columns: vec![
                    ("tenant_id".into(), "tenant_id".into()),
                    ("parent_org_id".into(), "id".into()),
                ],
                deferrable: false,
                match_full: false,
            },
        ];
        (vec![orgs, entities, points], fks)
    }

    #[test]
    fn demo_copy_statements() {
        let (tables, fks) = demo();
        let steps = copy_steps(&tables, &fks, Source::Tables, true).unwrap();
        let sql: Vec<(StepKind, &str)> = steps.iter().map(|s| (s.kind, s.sql.as_str())).collect();
        assert_eq!(
            sql,
            vec![
                (
                    StepKind::Map,
                    "CREATE TEMP TABLE \"_tenancy_map_1\" AS SELECT s.\"id\" AS o0, gen_random_uuid() AS n0 \
                     FROM \"esg\".\"reporting_entities\" s WHERE s.\"tenant_id\" = ($1)[1] WITH NO DATA"
                ),
                (
                    StepKind::Setup,
                    "ALTER TABLE pg_temp.\"_tenancy_map_1\" ADD UNIQUE (o0)"
                ),
                (
                    StepKind::Setup,
                    "GRANT SELECT, INSERT ON pg_temp.\"_tenancy_map_1\" TO PUBLIC"
                ),
                (
                    StepKind::Fill,
                    "INSERT INTO pg_temp.\"_tenancy_map_1\" SELECT s.\"id\" AS o0, gen_random_uuid() AS n0 \
                     FROM \"esg\".\"reporting_entities\" s WHERE s.\"tenant_id\" = ($1)[1]"
                ),
                (
                    StepKind::Setup,
                    "REVOKE INSERT ON pg_temp.\"_tenancy_map_1\" FROM PUBLIC"
                ),
                (
                    StepKind::Insert,
                    "INSERT INTO \"esg\".\"organisations\" (\"tenant_id\", \"id\", \"parent_org_id\") OVERRIDING SYSTEM VALUE \
                     SELECT ($2)[1], s.\"id\", s.\"parent_org_id\" FROM \"esg\".\"organisations\" s WHERE s.\"tenant_id\" = ($1)[1]"
                ),
                (
                    StepKind::Insert,
                    "INSERT INTO \"esg\".\"reporting_entities\" (\"id\", \"tenant_id\", \"organisation_id\") OVERRIDING SYSTEM VALUE \
                     SELECT k.n0, ($2)[1], s.\"organisation_id\" FROM \"esg\".\"reporting_entities\" s \
                     JOIN pg_temp.\"_tenancy_map_1\" k ON k.o0 = s.\"id\" WHERE s.\"tenant_id\" = ($1)[1]"
                ),
                (
                    StepKind::Insert,
                    "INSERT INTO \"esg\".\"data_points\" (\"tenant_id\", \"entity_id\") OVERRIDING SYSTEM VALUE \
                     SELECT ($2)[1], f0.n0 FROM \"esg\".\"data_points\" s \
                     LEFT JOIN pg_temp.\"_tenancy_map_1\" f0 ON f0.o0 = s.\"entity_id\" WHERE s.\"tenant_id\" = ($1)[1]"
                ),
                (StepKind::Drop, "DROP TABLE pg_temp.\"_tenancy_map_1\""),
            ]
        );
    }

    #[test]
    fn snapshot_source_and_many_tenants() {
        let (tables, fks) = demo();
        let steps = copy_steps(&tables, &fks, Source::Snapshot, false).unwrap();
        let insert = &steps
            .iter()
            .find(|s| s.kind == StepKind::Insert && s.table == Some(0))
            .unwrap()
            .sql;
        assert!(insert.contains("jsonb_populate_recordset(NULL::\"esg\".\"organisations\", $3 -> 'esg.organisations') s"));
        assert!(insert.contains("($2)[pg_catalog.array_position($1, s.\"tenant_id\")]"));
    }

    #[test]
    fn cycle_with_nullable_key_is_patched() {
        // a.b_id -> b.id (nullable), b.a_id -> a.id (not null); global serial keys.
        let a = Table {
            name: "\"a\"".into(),
            snapshot_key: "a".into(),
            tenant_column: "tenant_id".into(),
            columns: vec![
                col("id", true, Some("nextval('a')")),
                col("tenant_id", true, None),
                col("b_id", false, None),
            ],
            primary_key: vec!["id".into()],
        };
        let b = Table {
            name: "\"b\"".into(),
            snapshot_key: "b".into(),
            tenant_column: "tenant_id".into(),
            columns: vec![
                col("id", true, Some("nextval('b')")),
                col("tenant_id", true, None),
                col("a_id", true, None),
            ],
            primary_key: vec!["id".into()],
        };
        let fks = vec![
            ForeignKey {
                name: "\"a_b\"".into(),
                referencing: 0,
                referenced: 1,
                columns: vec![("b_id".into(), "id".into())],
                deferrable: false,
                match_full: false,
            },
            ForeignKey {
                name: "\"b_a\"".into(),
                referencing: 1,
                referenced: 0,
                columns: vec![("a_id".into(), "id".into())],
                deferrable: false,
                match_full: false,
            },
        ];
        let steps = copy_steps(&[a, b], &fks, Source::Tables, true).unwrap();
        let kinds: Vec<(StepKind, Option<usize>)> =
            steps.iter().map(|s| (s.kind, s.table)).collect();
        assert_eq!(
            kinds,
            vec![
                (StepKind::Map, Some(0)),
                (StepKind::Setup, Some(0)),
                (StepKind::Setup, Some(0)),
                (StepKind::Map, Some(1)),
                (StepKind::Setup, Some(1)),
                (StepKind::Setup, Some(1)),
                (StepKind::Fill, Some(0)),
                (StepKind::Fill, Some(1)),
                (StepKind::Setup, Some(0)),
                (StepKind::Setup, Some(1)),
                (StepKind::Insert, Some(0)),
                (StepKind::Insert, Some(1)),
                (StepKind::Patch, Some(0)),
                (StepKind::Drop, Some(0)),
                (StepKind::Drop, Some(1)),
            ]
        );
        assert!(steps[10].sql.contains("SELECT k.n0, ($2)[1], NULL FROM"));
        assert_eq!(
            steps[12].sql,
            "UPDATE \"a\" t SET \"b_id\" = f0.n0 FROM \"a\" s JOIN pg_temp.\"_tenancy_map_0\" k ON k.o0 = s.\"id\" \
             LEFT JOIN pg_temp.\"_tenancy_map_1\" f0 ON f0.o0 = s.\"b_id\" WHERE s.\"tenant_id\" = ($1)[1] \
             AND t.\"id\" = k.n0 AND (s.\"b_id\" IS NOT NULL)"
        );
    }

    #[test]
    fn one_to_one_key_follows_its_parent() {
        let users = Table {
            name: "\"users\"".into(),
            snapshot_key: "users".into(),
            tenant_column: "tenant_id".into(),
            columns: vec![
                col("id", true, Some("gen_random_uuid()")),
                col("tenant_id", true, None),
            ],
            primary_key: vec!["id".into()],
        };
        let profiles = Table {
            name: "\"profiles\"".into(),
            snapshot_key: "profiles".into(),
            tenant_column: "tenant_id".into(),
            columns: vec![col("user_id", true, None), col("tenant_id", true, None)],
            primary_key: vec!["user_id".into()],
        };
        let fks = vec![ForeignKey {
            name: "\"p_u\"".into(),
            referencing: 1,
            referenced: 0,
            columns: vec![("user_id".into(), "id".into())],
            deferrable: false,
            match_full: false,
        }];
        let steps = copy_steps(&[users, profiles], &fks, Source::Tables, true).unwrap();
        let insert = &steps
            .iter()
            .find(|s| s.kind == StepKind::Insert && s.table == Some(1))
            .unwrap()
            .sql;
        assert!(
            insert.contains(
                "SELECT f0.n0, ($2)[1] FROM \"profiles\" s LEFT JOIN pg_temp.\"_tenancy_map_0\" f0"
            ),
            "{insert}"
        );
    }

    #[test]
    fn errors() {
        let (mut tables, fks) = demo();
        tables[1].columns[0].fresh = None;
        assert_eq!(
            copy_steps(&tables, &fks, Source::Tables, true).unwrap_err(),
            CopyError::KeyWithoutDefault {
                table: "\"esg\".\"reporting_entities\"".into(),
                column: "id".into()
            }
        );
        let (mut tables, mut fks) = demo();
        tables[1].primary_key = vec!["id".into(), "organisation_id".into()];
        tables[1].columns[2].fresh = Some("0".into());
        fks[0].columns = vec![("entity_id".into(), "id".into())];
        assert!(matches!(
            copy_steps(&tables, &fks, Source::Tables, true),
            Err(CopyError::PartialKeyReference { .. })
        ));
        let (tables, mut fks) = demo();
        fks[0].columns[1].0 = "nope".into();
        assert!(matches!(
            copy_steps(&tables, &fks, Source::Tables, true),
            Err(CopyError::UnknownColumn { .. })
        ));
    }

    /// Random graphs: n tables, edges with random flags (self-loops included).
    fn graph() -> impl Strategy<Value = (usize, Vec<Edge>)> {
        (1usize..9).prop_flat_map(|n| {
            let edge =
                (0..n, 0..n, any::<bool>(), any::<bool>()).prop_map(|(a, b, d, nl)| e(a, b, d, nl));
            (Just(n), proptest::collection::vec(edge, 0..20))
        })
    }

    /// Does the graph restricted to `keep` edges have a cycle between distinct tables?
    fn has_cycle(n: usize, edges: &[Edge], keep: impl Fn(&Edge) -> bool) -> bool {
        let mut adj = vec![Vec::new(); n];
        for x in edges
            .iter()
            .filter(|x| keep(x) && x.referencing != x.referenced)
        {
            adj[x.referenced].push(x.referencing);
        }
        sccs(n, &adj).iter().any(|c| c.len() > 1)
    }

    proptest! {
        /// Every foreign key is satisfiable by the plan: ordered keys have the
        /// referenced table first, only deferrable keys are deferred, only
        /// nullable keys are patched, and the order is a permutation.
        #[test]
        fn every_fk_is_satisfied((n, edges) in graph()) {
            let unbreakable = |x: &Edge| !x.deferrable && !x.nullable;
            match plan(n, &edges) {
                Ok(p) => {
                    let mut seen = p.order.clone();
                    seen.sort_unstable();
                    prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
                    let mut pos = vec![0; n];
                    for (i, &t) in p.order.iter().enumerate() { pos[t] = i; }
                    for (x, h) in edges.iter().zip(&p.handling) {
                        match h {
                            Handling::Ordered => prop_assert!(pos[x.referenced] < pos[x.referencing]),
                            Handling::SelfReference => prop_assert_eq!(x.referenced, x.referencing),
                            Handling::Deferred => prop_assert!(x.deferrable),
                            Handling::Patched => prop_assert!(x.nullable && !x.deferrable),
                        }
                    }
                    prop_assert!(!has_cycle(n, &edges, unbreakable));
                }
                Err(err) => {
                    // Only when a cycle of unbreakable keys really exists, and
                    // the reported tables contain one.
                    prop_assert!(has_cycle(n, &edges, unbreakable));
                    let inside = |x: &Edge| unbreakable(x)
                        && err.tables.contains(&x.referencing) && err.tables.contains(&x.referenced);
                    prop_assert!(has_cycle(n, &edges, inside));
                }
            }
        }

        /// A DAG (every key points to a lower index) needs no breaking at all.
        #[test]
        fn dags_are_only_ordered(n in 1usize..12, raw in proptest::collection::vec((0usize..12, 0usize..12, any::<bool>()), 0..30)) {
            let edges: Vec<Edge> = raw.into_iter()
                .map(|(a, b, d)| (a % n, b % n, d))
                .filter(|(a, b, _)| a > b)
                .map(|(a, b, d)| e(a, b, d, true))
                .collect();
            let p = plan(n, &edges).unwrap();
            prop_assert!(p.handling.iter().all(|h| *h == Handling::Ordered));
        }

        /// A ring of any length with one breakable key is always planned, and
        /// only that key is broken.
        #[test]
        fn rings_break_at_the_breakable_key(n in 2usize..10, at in 0usize..10, deferrable in any::<bool>()) {
            let at = at % n;
            let edges: Vec<Edge> = (0..n)
                .map(|i| e(i, (i + 1) % n, i == at && deferrable, i == at && !deferrable))
                .collect();
            let p = plan(n, &edges).unwrap();
            for (i, h) in p.handling.iter().enumerate() {
                let want = if i != at { Handling::Ordered } else if deferrable { Handling::Deferred } else { Handling::Patched };
                prop_assert_eq!(*h, want);
            }
        }
    }
}
