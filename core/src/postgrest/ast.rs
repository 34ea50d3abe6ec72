//! The parsed form of a PostgREST request's query string.

/// `->` (json) or `->>` (text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrow {
    Json,
    Text,
}

/// One step of a JSON path: `->key`, `->>0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonStep {
    pub arrow: Arrow,
    pub key: JsonKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonKey {
    Name(String),
    Index(i64),
}

/// A column with an optional JSON path: `data->a->>b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub path: Vec<JsonStep>,
}

impl Field {
    pub fn plain(name: &str) -> Self {
        Field {
            name: name.to_string(),
            path: Vec::new(),
        }
    }

    /// The name PostgREST gives the output column: the last JSON key of the
    /// path (indexes skipped: `data->0->a->>2` is `a`), or the column.
    pub fn output_name(&self) -> String {
        self.path
            .iter()
            .rev()
            .find_map(|step| match &step.key {
                JsonKey::Name(n) => Some(n.clone()),
                JsonKey::Index(_) => None,
            })
            .unwrap_or_else(|| self.name.clone())
    }
}

/// Aggregate functions in `select` (`count()`, `amount.sum()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Sum,
    Avg,
    Max,
    Min,
}

impl Aggregate {
    pub fn sql(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Sum => "sum",
            Aggregate::Avg => "avg",
            Aggregate::Max => "max",
            Aggregate::Min => "min",
        }
    }
}

/// How an embedded resource joins its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Left,
    Inner,
}

/// One item of `select=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectItem {
    /// `*`
    Star,
    /// `alias:col->path::cast`, `col.sum()`, `count()`
    Column {
        field: Field,
        alias: Option<String>,
        cast: Option<String>,
        aggregate: Option<Aggregate>,
        aggregate_cast: Option<String>,
    },
    /// `alias:rel!hint!inner(...)`, `...rel(...)`
    Embed(Embed),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embed {
    pub name: String,
    pub alias: Option<String>,
    pub hint: Option<String>,
    pub join: Option<JoinKind>,
    pub spread: bool,
    pub select: Vec<SelectItem>,
}

impl Embed {
    /// The name filters and the output use: the alias, else the relation.
    pub fn label(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

/// Horizontal filter operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    Match,
    Imatch,
    Is,
    IsDistinct,
    In,
    Fts,
    Plfts,
    Phfts,
    Wfts,
    Cs,
    Cd,
    Ov,
    Sl,
    Sr,
    Nxr,
    Nxl,
    Adj,
}

impl Operator {
    pub const ALL: [Operator; 25] = [
        Operator::Eq,
        Operator::Neq,
        Operator::Gt,
        Operator::Gte,
        Operator::Lt,
        Operator::Lte,
        Operator::Like,
        Operator::Ilike,
        Operator::Match,
        Operator::Imatch,
        Operator::Is,
        Operator::IsDistinct,
        Operator::In,
        Operator::Fts,
        Operator::Plfts,
        Operator::Phfts,
        Operator::Wfts,
        Operator::Cs,
        Operator::Cd,
        Operator::Ov,
        Operator::Sl,
        Operator::Sr,
        Operator::Nxr,
        Operator::Nxl,
        Operator::Adj,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operator::Eq => "eq",
            Operator::Neq => "neq",
            Operator::Gt => "gt",
            Operator::Gte => "gte",
            Operator::Lt => "lt",
            Operator::Lte => "lte",
            Operator::Like => "like",
            Operator::Ilike => "ilike",
            Operator::Match => "match",
            Operator::Imatch => "imatch",
            Operator::Is => "is",
            Operator::IsDistinct => "isdistinct",
            Operator::In => "in",
            Operator::Fts => "fts",
            Operator::Plfts => "plfts",
            Operator::Phfts => "phfts",
            Operator::Wfts => "wfts",
            Operator::Cs => "cs",
            Operator::Cd => "cd",
            Operator::Ov => "ov",
            Operator::Sl => "sl",
            Operator::Sr => "sr",
            Operator::Nxr => "nxr",
            Operator::Nxl => "nxl",
            Operator::Adj => "adj",
        }
    }

    pub fn from_name(s: &str) -> Option<Operator> {
        Operator::ALL.iter().copied().find(|o| o.name() == s)
    }

    /// Operators that accept `(any)` / `(all)`.
    pub fn quantifiable(self) -> bool {
        matches!(
            self,
            Operator::Eq
                | Operator::Gt
                | Operator::Gte
                | Operator::Lt
                | Operator::Lte
                | Operator::Like
                | Operator::Ilike
                | Operator::Match
                | Operator::Imatch
        )
    }

    pub fn is_fts(self) -> bool {
        matches!(
            self,
            Operator::Fts | Operator::Plfts | Operator::Phfts | Operator::Wfts
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    Any,
    All,
}

/// The right-hand side of `is.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsValue {
    Null,
    NotNull,
    True,
    False,
    Unknown,
}

/// A filter's value as the client wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// One literal (for `like`, `*` already turned into `%`).
    Single(String),
    /// `in.(a,b)` or a quantified `{a,b}`.
    List(Vec<String>),
    Is(IsValue),
}

/// `[not.]op[(any|all)][(lang)].value` on a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: Field,
    pub negate: bool,
    pub op: Operator,
    pub quantifier: Option<Quantifier>,
    /// Text search configuration of `fts(english)`.
    pub language: Option<String>,
    pub value: Value,
}

/// A boolean tree of filters from `or=`/`and=`, or a single filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Filter(Filter),
    Group {
        or: bool,
        negate: bool,
        children: Vec<Condition>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    First,
    Last,
}

/// One term of `order=`: `col->x.desc.nullslast`, or `rel(col).asc` on a to-one embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerm {
    pub relation: Option<String>,
    pub field: Field,
    pub direction: Option<Direction>,
    pub nulls: Option<Nulls>,
}

/// Conditions, order and paging that apply at one level of the embed tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Level {
    pub conditions: Vec<Condition>,
    pub order: Vec<OrderTerm>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// Everything a read (or the read-back of a write) asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub select: Vec<SelectItem>,
    /// Root level.
    pub root: Level,
    /// Levels of embedded resources, keyed by the path of embed labels.
    pub embedded: Vec<(Vec<String>, Level)>,
    /// `columns=` of a write.
    pub columns: Option<Vec<String>>,
    /// `on_conflict=` of an upsert.
    pub on_conflict: Option<Vec<String>>,
}

impl Query {
    pub fn level(&self, path: &[String]) -> Option<&Level> {
        if path.is_empty() {
            return Some(&self.root);
        }
        self.embedded
            .iter()
            .find(|(p, _)| p.as_slice() == path)
            .map(|(_, l)| l)
    }

    pub fn level_mut(&mut self, path: &[String]) -> &mut Level {
        if path.is_empty() {
            return &mut self.root;
        }
        if let Some(i) = self.embedded.iter().position(|(p, _)| p.as_slice() == path) {
            return &mut self.embedded[i].1;
        }
        self.embedded.push((path.to_vec(), Level::default()));
        &mut self.embedded.last_mut().expect("just pushed").1
    }
}
