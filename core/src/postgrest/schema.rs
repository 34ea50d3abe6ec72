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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionArg {
    pub name: String,
    pub data_type: String,
    pub has_default: bool,
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
    /// Output columns when it returns rows (a table type or `RETURNS TABLE`);
    /// empty for a scalar.
    pub result_columns: Vec<Column>,
    pub volatility: Volatility,
}

/// The schema cache.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub tables: HashMap<(String, String), Table>,
    pub foreign_keys: Vec<ForeignKey>,
    pub functions: Vec<Function>,
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
    pub fn table(&self, schema: &str, name: &str) -> Option<&Table> {
        self.tables.get(&(schema.to_string(), name.to_string()))
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
        let mut out = Vec::new();
        for fk in &self.foreign_keys {
            // many-to-one (or one-to-one when the fk columns are unique)
            if fk.schema == schema && fk.table == table {
                let by_name =
                    fk.ref_table == name || fk.name == name || fk.columns.iter().any(|c| c == name);
                if by_name {
                    let unique = self
                        .table(schema, table)
                        .map(|t| t.unique_keys.iter().any(|k| same_set(k, &fk.columns)))
                        .unwrap_or(false);
                    out.push(Relationship {
                        target_schema: fk.ref_schema.clone(),
                        target: fk.ref_table.clone(),
                        cardinality: if unique {
                            Cardinality::OneToOne
                        } else {
                            Cardinality::ManyToOne
                        },
                        constraint: fk.name.clone(),
                        pairs: fk
                            .columns
                            .iter()
                            .cloned()
                            .zip(fk.ref_columns.iter().cloned())
                            .collect(),
                        junction: None,
                    });
                }
            }
            // one-to-many (or one-to-one)
            if fk.ref_schema == schema
                && fk.ref_table == table
                && (fk.table == name || fk.name == name)
            {
                let unique = self
                    .table(&fk.schema, &fk.table)
                    .map(|t| t.unique_keys.iter().any(|k| same_set(k, &fk.columns)))
                    .unwrap_or(false);
                out.push(Relationship {
                    target_schema: fk.schema.clone(),
                    target: fk.table.clone(),
                    cardinality: if unique {
                        Cardinality::OneToOne
                    } else {
                        Cardinality::OneToMany
                    },
                    constraint: fk.name.clone(),
                    pairs: fk
                        .ref_columns
                        .iter()
                        .cloned()
                        .zip(fk.columns.iter().cloned())
                        .collect(),
                    junction: None,
                });
            }
        }
        // many-to-many: a junction with one fk to us and one to the target,
        // both fully inside the junction's primary key.
        for j in self.tables.values() {
            let jfks: Vec<&ForeignKey> = self
                .foreign_keys
                .iter()
                .filter(|f| f.schema == j.schema && f.table == j.name)
                .collect();
            for a in &jfks {
                for b in &jfks {
                    if std::ptr::eq(*a, *b) {
                        continue;
                    }
                    if a.ref_schema == schema && a.ref_table == table && b.ref_table == name {
                        let in_pk =
                            |f: &ForeignKey| f.columns.iter().all(|c| j.primary_key.contains(c));
                        if in_pk(a) && in_pk(b) && !j.primary_key.is_empty() {
                            out.push(Relationship {
                                target_schema: b.ref_schema.clone(),
                                target: b.ref_table.clone(),
                                cardinality: Cardinality::ManyToMany,
                                constraint: format!("{}+{}", a.name, b.name),
                                pairs: Vec::new(),
                                junction: Some(Junction {
                                    schema: j.schema.clone(),
                                    table: j.name.clone(),
                                    parent_pairs: a
                                        .ref_columns
                                        .iter()
                                        .cloned()
                                        .zip(a.columns.iter().cloned())
                                        .collect(),
                                    target_pairs: b
                                        .ref_columns
                                        .iter()
                                        .cloned()
                                        .zip(b.columns.iter().cloned())
                                        .collect(),
                                    constraints: (a.name.clone(), b.name.clone()),
                                }),
                            });
                        }
                    }
                }
            }
        }
        if let Some(h) = hint {
            out.retain(|r| {
                r.constraint == h
                    || match r.cardinality {
                        Cardinality::ManyToOne => r.pairs.iter().any(|(p, _)| p == h),
                        _ => r.pairs.iter().any(|(_, t)| t == h),
                    }
                    || r.junction.as_ref().is_some_and(|j| {
                        j.table == h || j.constraints.0 == h || j.constraints.1 == h
                    })
            });
            // A self-referencing key: a column hint means the parent (many-to-one),
            // the constraint name the children (one-to-many), as in PostgREST.
            if out.len() == 2 && out[0].constraint == out[1].constraint {
                let want_children = out[0].constraint == h;
                out.retain(|r| r.cardinality.to_one() != want_children);
            }
        }
        out
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
        // A direct relationship wins over many-to-many through a junction
        // only when it is the sole direct one.
        if rels.len() > 1 {
            let direct: Vec<Relationship> = rels
                .iter()
                .filter(|r| r.junction.is_none())
                .cloned()
                .collect();
            if direct.len() == 1 && hint.is_none() && direct[0].target == name {
                rels = direct;
            }
        }
        match rels.len() {
            0 => Err(ApiError::no_relationship(table, name, schema)),
            1 => Ok(rels.remove(0)),
            _ => {
                let details: Vec<String> = rels
                    .iter()
                    .map(|r| {
                        format!(
                            "{{\"cardinality\": \"{}\", \"embedding\": \"{}.{} with {}.{}\", \"relationship\": \"{}\"}}",
                            match r.cardinality {
                                Cardinality::ManyToOne => "many-to-one",
                                Cardinality::OneToMany => "one-to-many",
                                Cardinality::OneToOne => "one-to-one",
                                Cardinality::ManyToMany => "many-to-many",
                            },
                            schema,
                            table,
                            r.target_schema,
                            r.target,
                            r.constraint
                        )
                    })
                    .collect();
                Err(ApiError::new(
                    300,
                    "PGRST201",
                    format!("Could not embed because more than one relationship was found for '{table}' and '{name}'"),
                )
                .details(format!("[{}]", details.join(", ")))
                .hint(format!(
                    "Try changing '{name}' to one of the relationship names listed in the details, e.g. '{name}!{}'",
                    rels[0].constraint
                )))
            }
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
            schema: "esg".into(),
            name: "metric_total".into(),
            args: vec![FunctionArg {
                name: "code".into(),
                data_type: "text".into(),
                has_default: false,
            }],
            returns_set: false,
            returns_void: false,
            result_columns: vec![],
            volatility: Volatility::Stable,
        }];
        s
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

    #[test]
    fn ambiguity_and_hints() {
        let s = demo();
        let e = s
            .relationship("esg", "organisations", "organisations", None)
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (300, "PGRST201"));
        let r = s
            .relationship(
                "esg",
                "organisations",
                "organisations",
                Some("parent_org_id"),
            )
            .unwrap();
        assert_eq!(r.cardinality, Cardinality::ManyToOne);
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
}
