//! The row-level-security policy generator.
//!
//! Given the facts the extension reads from the catalog about one table, this
//! module produces the exact DDL `tenancy.enable`, `tenancy.register_reference`
//! and `tenancy.disable` run (and `tenancy.policy_sql` shows). Design rules:
//!
//! * one policy per command and per role group, never an `OR` of roles in one
//!   policy (an `OR` stops the planner from using the tenant index);
//! * the tenant is compared against `(SELECT tenancy.current_tenant())`, an
//!   init-plan evaluated once per statement, so the comparison is an index
//!   condition against a constant;
//! * tenant policies apply `TO PUBLIC`, so any role that does not bypass RLS
//!   is confined, whatever it was granted; viewer and analyst restrictions
//!   are `RESTRICTIVE` policies, so a mistaken `GRANT` cannot widen them;
//! * every identifier is quoted; the only literal is the table's own name.

use crate::ident::{quote_ident, quote_literal, quote_qualified};
use std::fmt;

pub const ROLE_SUPERADMIN: &str = "tenancy_superadmin";
pub const ROLE_ADMIN: &str = "tenancy_admin";
pub const ROLE_MEMBER: &str = "tenancy_member";
pub const ROLE_VIEWER: &str = "tenancy_viewer";
pub const ROLE_ANALYST: &str = "tenancy_analyst";
/// Every policy this generator creates starts with this prefix; policies
/// with other names belong to the user and are never touched.
pub const POLICY_PREFIX: &str = "tenancy_";

/// The policies [`generate`] creates on a tenant table.
pub const TENANT_POLICIES: [&str; 12] = [
    "tenancy_tenant_select",
    "tenancy_tenant_insert",
    "tenancy_tenant_update",
    "tenancy_tenant_delete",
    "tenancy_superadmin_select",
    "tenancy_superadmin_insert",
    "tenancy_superadmin_update",
    "tenancy_superadmin_delete",
    "tenancy_viewer_no_insert",
    "tenancy_viewer_no_update",
    "tenancy_viewer_no_delete",
    "tenancy_analyst_no_rows",
];
/// The policies [`generate`] creates on a reference table.
pub const REFERENCE_POLICIES: [&str; 4] = [
    "tenancy_reference_select",
    "tenancy_reference_insert",
    "tenancy_reference_update",
    "tenancy_reference_delete",
];

/// What a table is to the extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Rows belong to one tenant each, named by `column`.
    Tenant { column: String, hierarchical: bool },
    /// Shared master data: everyone reads, only the super admin writes.
    Reference,
}

/// The tenant column as it exists today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnFacts {
    /// `format_type` of the column, e.g. `uuid`.
    pub type_name: String,
    pub not_null: bool,
    pub has_default: bool,
}

/// Catalog facts about one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFacts {
    pub schema: String,
    pub name: String,
    pub kind: Kind,
    /// The tenant column, when it exists (ignored for reference tables).
    pub column: Option<ColumnFacts>,
    /// An index whose first key column is the tenant column exists.
    pub has_tenant_index: bool,
    /// Names of every policy currently on the table.
    pub existing_policies: Vec<String>,
    /// Sequences owned by the table's columns (schema, name): serial columns
    /// need `USAGE` granted for inserts to work.
    pub owned_sequences: Vec<(String, String)>,
}

/// Why no DDL can be generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The tenant column exists with a type other than uuid.
    ColumnType { column: String, found: String },
    /// The tenant column name is empty or too long for an identifier.
    ColumnName { column: String },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::ColumnType { column, found } => {
                write!(f, "tenant column \"{column}\" has type {found}, not uuid")
            }
            PolicyError::ColumnName { column } => write!(
                f,
                "tenant column name {column:?} is not a valid identifier (1 to 63 bytes)"
            ),
        }
    }
}

/// The context expression policies compare against, evaluated once.
pub const CURRENT_TENANT: &str = "(SELECT tenancy.current_tenant())";
/// Current tenant and its descendants, evaluated once, as a uuid[].
pub const VISIBLE_TENANTS: &str = "(SELECT tenancy.visible_tenants())";

fn drop_ours(f: &TableFacts, table: &str, out: &mut Vec<String>) {
    let mut ours: Vec<&String> = f
        .existing_policies
        .iter()
        .filter(|p| p.starts_with(POLICY_PREFIX))
        .collect();
    ours.sort();
    for p in ours {
        out.push(format!(
            "DROP POLICY IF EXISTS {} ON {table};",
            quote_ident(p)
        ));
    }
}

fn roles(list: &[&str]) -> String {
    list.iter()
        .map(|r| quote_ident(r))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The DDL that puts a table under the extension's management.
pub fn generate(f: &TableFacts) -> Result<Vec<String>, PolicyError> {
    let table = quote_qualified(&f.schema, &f.name);
    let mut out = Vec::new();
    match &f.kind {
        Kind::Tenant {
            column,
            hierarchical,
        } => {
            if column.is_empty() || column.len() > 63 {
                return Err(PolicyError::ColumnName {
                    column: column.clone(),
                });
            }
            let col = quote_ident(column);
            match &f.column {
                None => out.push(format!(
                    "ALTER TABLE {table} ADD COLUMN {col} uuid NOT NULL DEFAULT tenancy.current_tenant();"
                )),
                Some(c) => {
                    if c.type_name != "uuid" {
                        return Err(PolicyError::ColumnType {
                            column: column.clone(),
                            found: c.type_name.clone(),
                        });
                    }
                    if !c.has_default {
                        out.push(format!(
                            "ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT tenancy.current_tenant();"
                        ));
                    }
                    if !c.not_null {
                        out.push(format!("ALTER TABLE {table} ALTER COLUMN {col} SET NOT NULL;"));
                    }
                }
            }
            if !f.has_tenant_index {
                out.push(format!("CREATE INDEX ON {table} ({col});"));
            }
            out.push(format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;"));
            out.push(format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY;"));
            drop_ours(f, &table, &mut out);

            let eq = format!("{col} = {CURRENT_TENANT}");
            let read = if *hierarchical {
                format!("{col} = ANY ({VISIBLE_TENANTS}::uuid[])")
            } else {
                eq.clone()
            };
            out.push(format!(
                "CREATE POLICY tenancy_tenant_select ON {table} AS PERMISSIVE FOR SELECT TO PUBLIC USING ({read});"
            ));
            out.push(format!(
                "CREATE POLICY tenancy_tenant_insert ON {table} AS PERMISSIVE FOR INSERT TO PUBLIC WITH CHECK ({eq});"
            ));
            out.push(format!(
                "CREATE POLICY tenancy_tenant_update ON {table} AS PERMISSIVE FOR UPDATE TO PUBLIC USING ({eq}) WITH CHECK ({eq});"
            ));
            out.push(format!(
                "CREATE POLICY tenancy_tenant_delete ON {table} AS PERMISSIVE FOR DELETE TO PUBLIC USING ({eq});"
            ));
            let lit = quote_literal(&table);
            let sa = quote_ident(ROLE_SUPERADMIN);
            let access = |cmd: &str| {
                format!(
                    "(SELECT tenancy.superadmin_access({lit}::regclass, {}))",
                    quote_literal(cmd)
                )
            };
            out.push(format!(
                "CREATE POLICY tenancy_superadmin_select ON {table} AS PERMISSIVE FOR SELECT TO {sa} USING ({});",
                access("SELECT")
            ));
            out.push(format!(
                "CREATE POLICY tenancy_superadmin_insert ON {table} AS PERMISSIVE FOR INSERT TO {sa} WITH CHECK ({});",
                access("INSERT")
            ));
            out.push(format!(
                "CREATE POLICY tenancy_superadmin_update ON {table} AS PERMISSIVE FOR UPDATE TO {sa} USING ({}) WITH CHECK (true);",
                access("UPDATE")
            ));
            out.push(format!(
                "CREATE POLICY tenancy_superadmin_delete ON {table} AS PERMISSIVE FOR DELETE TO {sa} USING ({});",
                access("DELETE")
            ));
            let viewer = quote_ident(ROLE_VIEWER);
            out.push(format!(
                "CREATE POLICY tenancy_viewer_no_insert ON {table} AS RESTRICTIVE FOR INSERT TO {viewer} WITH CHECK (false);"
            ));
            out.push(format!(
                "CREATE POLICY tenancy_viewer_no_update ON {table} AS RESTRICTIVE FOR UPDATE TO {viewer} USING (false);"
            ));
            out.push(format!(
                "CREATE POLICY tenancy_viewer_no_delete ON {table} AS RESTRICTIVE FOR DELETE TO {viewer} USING (false);"
            ));
            out.push(format!(
                "CREATE POLICY tenancy_analyst_no_rows ON {table} AS RESTRICTIVE FOR ALL TO {} USING (false) WITH CHECK (false);",
                quote_ident(ROLE_ANALYST)
            ));
            let writers = roles(&[ROLE_SUPERADMIN, ROLE_ADMIN, ROLE_MEMBER]);
            out.push(format!(
                "GRANT USAGE ON SCHEMA {} TO {writers}, {viewer};",
                quote_ident(&f.schema)
            ));
            out.push(format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {writers};"
            ));
            out.push(format!("GRANT SELECT ON {table} TO {viewer};"));
            out.push(format!(
                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {table} FROM {viewer};"
            ));
            out.push(format!(
                "REVOKE ALL ON {table} FROM {};",
                quote_ident(ROLE_ANALYST)
            ));
            grant_sequences(f, &writers, &mut out);
        }
        Kind::Reference => {
            out.push(format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;"));
            out.push(format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY;"));
            drop_ours(f, &table, &mut out);
            let sa = quote_ident(ROLE_SUPERADMIN);
            out.push(format!(
                "CREATE POLICY tenancy_reference_select ON {table} AS PERMISSIVE FOR SELECT TO PUBLIC USING (true);"
            ));
            out.push(format!(
                "CREATE POLICY tenancy_reference_insert ON {table} AS PERMISSIVE FOR INSERT TO {sa} WITH CHECK (true);"
            ));
            out.push(format!(
                "CREATE POLICY tenancy_reference_update ON {table} AS PERMISSIVE FOR UPDATE TO {sa} USING (true) WITH CHECK (true);"
            ));
            out.push(format!(
                "CREATE POLICY tenancy_reference_delete ON {table} AS PERMISSIVE FOR DELETE TO {sa} USING (true);"
            ));
            let all = roles(&[
                ROLE_SUPERADMIN,
                ROLE_ADMIN,
                ROLE_MEMBER,
                ROLE_VIEWER,
                ROLE_ANALYST,
            ]);
            let others = roles(&[ROLE_ADMIN, ROLE_MEMBER, ROLE_VIEWER, ROLE_ANALYST]);
            out.push(format!(
                "GRANT USAGE ON SCHEMA {} TO {all};",
                quote_ident(&f.schema)
            ));
            out.push(format!("GRANT SELECT ON {table} TO {all};"));
            out.push(format!("GRANT INSERT, UPDATE, DELETE ON {table} TO {sa};"));
            out.push(format!(
                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {table} FROM {others};"
            ));
            grant_sequences(f, &sa, &mut out);
        }
    }
    Ok(out)
}

fn grant_sequences(f: &TableFacts, to: &str, out: &mut Vec<String>) {
    for (s, n) in &f.owned_sequences {
        out.push(format!(
            "GRANT USAGE, SELECT ON SEQUENCE {} TO {to};",
            quote_qualified(s, n)
        ));
    }
}

/// The DDL that takes a table out of management. RLS stays enabled (with no
/// policies left, non-owners read nothing: closed, not open) and FORCE is
/// lifted so the owner can reach the rows; the tenancy roles lose their grants.
pub fn generate_disable(f: &TableFacts) -> Vec<String> {
    let table = quote_qualified(&f.schema, &f.name);
    let mut out = Vec::new();
    drop_ours(f, &table, &mut out);
    let all = roles(&[
        ROLE_SUPERADMIN,
        ROLE_ADMIN,
        ROLE_MEMBER,
        ROLE_VIEWER,
        ROLE_ANALYST,
    ]);
    out.push(format!(
        "REVOKE SELECT, INSERT, UPDATE, DELETE ON {table} FROM {all};"
    ));
    out.push(format!("ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts(kind: Kind) -> TableFacts {
        TableFacts {
            schema: "esg".into(),
            name: "data_points".into(),
            kind,
            column: Some(ColumnFacts {
                type_name: "uuid".into(),
                not_null: true,
                has_default: true,
            }),
            has_tenant_index: true,
            existing_policies: vec![],
            owned_sequences: vec![],
        }
    }

    fn tenant(h: bool) -> Kind {
        Kind::Tenant {
            column: "tenant_id".into(),
            hierarchical: h,
        }
    }

    #[test]
    fn tenant_policies_are_per_command_without_or() {
        let ddl = generate(&facts(tenant(false))).unwrap();
        let policies: Vec<_> = ddl
            .iter()
            .filter(|s| s.starts_with("CREATE POLICY"))
            .collect();
        assert_eq!(policies.len(), 12);
        let names: Vec<&str> = policies
            .iter()
            .map(|p| p.split_whitespace().nth(2).unwrap())
            .collect();
        assert_eq!(
            names, TENANT_POLICIES,
            "the names the registry writer checks"
        );
        for p in &policies {
            assert!(!p.to_uppercase().contains(" OR "), "{p}");
        }
        assert!(ddl.contains(
            &"ALTER TABLE \"esg\".\"data_points\" FORCE ROW LEVEL SECURITY;".to_string()
        ));
        let select = policies
            .iter()
            .find(|p| p.contains("tenancy_tenant_select"))
            .unwrap();
        assert!(select.contains("USING (\"tenant_id\" = (SELECT tenancy.current_tenant()))"));
        assert!(!ddl
            .iter()
            .any(|s| s.contains("ADD COLUMN") || s.contains("CREATE INDEX")));
    }

    #[test]
    fn missing_column_index_default_and_not_null_are_added() {
        let mut f = facts(tenant(false));
        f.column = None;
        f.has_tenant_index = false;
        let ddl = generate(&f).unwrap();
        assert!(ddl[0]
            .contains("ADD COLUMN \"tenant_id\" uuid NOT NULL DEFAULT tenancy.current_tenant()"));
        assert!(ddl[1].starts_with("CREATE INDEX ON"));
        f.column = Some(ColumnFacts {
            type_name: "uuid".into(),
            not_null: false,
            has_default: false,
        });
        let ddl = generate(&f).unwrap();
        assert!(ddl[0].contains("SET DEFAULT tenancy.current_tenant()"));
        assert!(ddl[1].contains("SET NOT NULL"));
    }

    #[test]
    fn hierarchical_reads_descendants_but_writes_own() {
        let ddl = generate(&facts(tenant(true))).unwrap().join("\n");
        assert!(ddl.contains("FOR SELECT TO PUBLIC USING (\"tenant_id\" = ANY ((SELECT tenancy.visible_tenants())::uuid[]))"));
        assert!(ddl.contains(
            "FOR UPDATE TO PUBLIC USING (\"tenant_id\" = (SELECT tenancy.current_tenant()))"
        ));
    }

    #[test]
    fn wrong_column_type_is_refused() {
        let mut f = facts(tenant(false));
        f.column = Some(ColumnFacts {
            type_name: "text".into(),
            not_null: true,
            has_default: false,
        });
        assert_eq!(
            generate(&f),
            Err(PolicyError::ColumnType {
                column: "tenant_id".into(),
                found: "text".into()
            })
        );
        f.kind = Kind::Tenant {
            column: String::new(),
            hierarchical: false,
        };
        assert!(matches!(generate(&f), Err(PolicyError::ColumnName { .. })));
    }

    #[test]
    fn rerun_drops_only_our_policies() {
        let mut f = facts(tenant(false));
        f.existing_policies = vec![
            "tenancy_tenant_select".into(),
            "user_policy".into(),
            "tenancy_old".into(),
        ];
        let ddl = generate(&f).unwrap();
        let drops: Vec<_> = ddl
            .iter()
            .filter(|s| s.starts_with("DROP POLICY"))
            .collect();
        assert_eq!(drops.len(), 2);
        assert!(drops.iter().all(|d| !d.contains("user_policy")));
    }

    #[test]
    fn reference_tables_read_by_all_written_by_superadmin() {
        let ddl = generate(&facts(Kind::Reference)).unwrap().join("\n");
        assert!(ddl.contains("FOR SELECT TO PUBLIC USING (true)"));
        assert!(ddl.contains("FOR INSERT TO \"tenancy_superadmin\" WITH CHECK (true)"));
        assert!(!ddl.contains("current_tenant"));
        let names: Vec<&str> = ddl
            .lines()
            .filter(|s| s.starts_with("CREATE POLICY"))
            .map(|p| p.split_whitespace().nth(2).unwrap())
            .collect();
        assert_eq!(
            names, REFERENCE_POLICIES,
            "the names the registry writer checks"
        );
    }

    #[test]
    fn disable_keeps_rls_on_and_revokes() {
        let mut f = facts(tenant(false));
        f.existing_policies = vec!["tenancy_tenant_select".into()];
        let ddl = generate_disable(&f);
        assert!(ddl[0].starts_with("DROP POLICY IF EXISTS \"tenancy_tenant_select\""));
        assert!(ddl.iter().any(|s| s.starts_with("REVOKE")));
        assert!(!ddl.iter().any(|s| s.contains("DISABLE ROW LEVEL SECURITY")));
    }

    proptest! {
        /// Whatever the names, every identifier in the output is quoted: the
        /// hostile text only ever appears inside a quoted identifier or literal.
        #[test]
        fn hostile_names_stay_quoted(schema in "\\PC{1,20}", name in "\\PC{1,20}", col in "[^\\x00]{1,20}") {
            let f = TableFacts {
                schema: schema.clone(), name: name.clone(),
                kind: Kind::Tenant { column: col.clone(), hierarchical: false },
                column: None, has_tenant_index: false,
                existing_policies: vec![], owned_sequences: vec![],
            };
            if let Ok(ddl) = generate(&f) {
                let q = quote_qualified(&schema, &name);
                for stmt in &ddl {
                    let schema_grant = format!("GRANT USAGE ON SCHEMA {} TO ", quote_ident(&schema));
                    prop_assert!(stmt.contains(&q) || stmt.starts_with(&schema_grant), "{}", stmt);
                    // Removing the quoted names, no quote char is left unbalanced.
                    let rest = stmt.replace(&quote_literal(&q), "").replace(&q, "")
                        .replace(&schema_grant, "").replace(&quote_ident(&col), "");
                    prop_assert_eq!(rest.matches('"').count() % 2, 0, "{}", stmt);
                    prop_assert_eq!(rest.matches('\'').count() % 2, 0, "{}", stmt);
                }
            }
        }
    }
}
