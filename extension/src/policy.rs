//! Glue between the catalog and `tenancy_core::policy`: reads the facts about
//! one table with SPI and returns the DDL the generator produces.

use crate::error::{raise, OrRaise};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use tenancy_core::policy::{
    generate, generate_disable, ColumnFacts, Kind, PolicyError, TableFacts,
};

/// The DDL that manages (`action` = 'tenant' or 'reference') or unmanages
/// (`action` = 'disable') table `relid`. Internal: `tenancy.policy_sql`,
/// `tenancy.enable`, `tenancy.disable` and `tenancy.register_reference` are
/// the public entry points.
#[pg_extern(stable, parallel_safe, name = "_policy_ddl")]
pub fn policy_ddl(
    relid: Option<pg_sys::Oid>,
    action: Option<&str>,
    tenant_column: Option<&str>,
    hierarchical: Option<bool>,
) -> String {
    let (Some(relid), Some(action)) = (relid, action) else {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "table and action must not be NULL",
            Some("Call tenancy.policy_sql(), tenancy.enable() or tenancy.register_reference() instead."),
        )
    };
    let facts = Spi::connect(|c| -> Result<Option<TableFacts>, pgrx::spi::SpiError> {
        let rel = c.select(
            "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
            Some(1),
            &[relid.into()],
        )?;
        let rel = if rel.is_empty() { (None, None) } else { rel.first().get_two::<String, String>()? };
        let (Some(schema), Some(name)) = rel else { return Ok(None) };
        let column_name = tenant_column.unwrap_or("tenant_id").to_string();
        let column = c.select(
            "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef \
             FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1 AND a.attname = $2 \
             AND a.attnum > 0 AND NOT a.attisdropped",
            Some(1),
            &[relid.into(), column_name.clone().into()],
        )?;
        let column = if column.is_empty() {
            (None, None, None)
        } else {
            column.first().get_three::<String, bool, bool>()?
        };
        let column = match column {
            (Some(type_name), Some(not_null), Some(has_default)) => {
                Some(ColumnFacts { type_name, not_null, has_default })
            }
            _ => None,
        };
        let has_tenant_index = c
            .select(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a \
                 ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                 WHERE i.indrelid = $1 AND a.attname = $2)",
                Some(1),
                &[relid.into(), column_name.clone().into()],
            )?
            .first()
            .get_one::<bool>()?
            .unwrap_or(false);
        let mut existing_policies = Vec::new();
        for row in c.select(
            "SELECT polname::text FROM pg_catalog.pg_policy WHERE polrelid = $1 ORDER BY 1",
            None,
            &[relid.into()],
        )? {
            if let Some(p) = row.get::<String>(1)? {
                existing_policies.push(p);
            }
        }
        let mut owned_sequences = Vec::new();
        for row in c.select(
            "SELECT sn.nspname::text, s.relname::text FROM pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
             JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace \
             WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass \
             AND d.refobjid = $1 AND d.deptype IN ('a', 'i') ORDER BY 1, 2",
            None,
            &[relid.into()],
        )? {
            if let (Some(s), Some(n)) = (row.get::<String>(1)?, row.get::<String>(2)?) {
                owned_sequences.push((s, n));
            }
        }
        let kind = if action == "reference" {
            Kind::Reference
        } else {
            Kind::Tenant { column: column_name, hierarchical: hierarchical.unwrap_or(false) }
        };
        Ok(Some(TableFacts { schema, name, kind, column, has_tenant_index, existing_policies, owned_sequences }))
    })
    .or_raise("reading the table's catalog entries");
    let Some(facts) = facts else {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation with OID {} does not exist", relid.to_u32()),
            None,
        )
    };
    let ddl = match action {
        "tenant" | "reference" => generate(&facts).unwrap_or_else(|e| match e {
            PolicyError::ColumnType { .. } => raise(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!("{e} on table {}.{}", facts.schema, facts.name),
                Some("The tenant column must be of type uuid; pass tenant_column => to use another column."),
            ),
            PolicyError::ColumnName { .. } => raise(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                e.to_string(),
                Some("Give the name of a uuid column, e.g. tenant_column => 'tenant_id'."),
            ),
        }),
        "disable" => generate_disable(&facts),
        other => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown policy action {other:?}"),
            Some("Use 'tenant', 'reference' or 'disable'."),
        ),
    };
    ddl.join("\n")
}

/// Record what `enable` (`kind` = 'tenant'), `register_reference`
/// ('reference') or `disable` ('disable') just did to `tbl` in
/// `tenancy.managed_tables`, and its audit entry — both written as the
/// extension owner, so neither the registry nor the audit log is writable by
/// the callers of those functions. Accepted only when it is true: the
/// calling role owns the table (those functions' DDL needs that too), and
/// the table has the generated policies of its kind (for 'disable': none of
/// them). Internal; called by the three functions.
#[pg_extern(volatile, parallel_unsafe, name = "_registry_write")]
pub fn registry_write(
    tbl: pg_sys::Oid,
    kind: &str,
    tenant_column: Option<&str>,
    hierarchical: Option<bool>,
) {
    let (_, current) = crate::context::invoker();
    let names: &[&str] = match kind {
        "tenant" => &tenancy_core::policy::TENANT_POLICIES,
        "reference" => &tenancy_core::policy::REFERENCE_POLICIES,
        "disable" => &[],
        _ => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown registry change {kind:?}"),
            Some("tenancy._registry_write is internal: use tenancy.enable(), register_reference() or disable()."),
        ),
    };
    let all: Vec<&str> = tenancy_core::policy::TENANT_POLICIES
        .iter()
        .chain(tenancy_core::policy::REFERENCE_POLICIES.iter())
        .copied()
        .collect();
    let (owns, n_all, n_kind) = crate::context::as_owner(|| {
        Spi::get_three_with_args::<bool, i64, i64>(
            "SELECT pg_catalog.pg_has_role($1, c.relowner, 'USAGE'), \
                    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_policy p \
                      WHERE p.polrelid = c.oid AND p.polname = ANY ($2)), \
                    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_policy p \
                      WHERE p.polrelid = c.oid AND p.polname = ANY ($3)) \
               FROM (SELECT 1) AS one LEFT JOIN pg_catalog.pg_class c \
                 ON c.oid = $4 AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't'",
            &[
                current.into(),
                all.into(),
                names.to_vec().into(),
                tbl.into(),
            ],
        )
    })
    .or_raise("checking the table");
    if owns != Some(true) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "only the owner of a permanent table can change its entry in tenancy.managed_tables",
            Some("Use tenancy.enable(), tenancy.register_reference() or tenancy.disable() as the table's owner."),
        );
    }
    // tenant / reference: every generated policy of the kind, none of the
    // other kind's; disable: none at all
    let consistent = n_all == n_kind && n_kind == Some(names.len() as i64);
    if !consistent {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "tenancy._registry_write records only what enable(), register_reference() or disable() did",
            Some("Use those functions; they create or drop the generated policies first."),
        );
    }
    crate::context::as_owner(|| {
        let details = match kind {
            "tenant" => serde_json::json!({
                "tenant_column": tenant_column,
                "hierarchical": hierarchical.unwrap_or(false),
            }),
            _ => serde_json::json!({}),
        };
        let action = match kind {
            "tenant" => "enable",
            "reference" => "register_reference",
            _ => "disable",
        };
        let sql = match kind {
            "tenant" => {
                "INSERT INTO tenancy.managed_tables AS mt (relid, kind, tenant_column, hierarchical, policies) \
                 VALUES ($1, 'tenant', $2, $3, tenancy._policy_fingerprint($1)) \
                 ON CONFLICT (relid) DO UPDATE SET kind = 'tenant', tenant_column = EXCLUDED.tenant_column, \
                     hierarchical = EXCLUDED.hierarchical, policies = EXCLUDED.policies, \
                     managed_at = pg_catalog.now(), managed_by = session_user"
            }
            "reference" => {
                "INSERT INTO tenancy.managed_tables AS mt (relid, kind, policies) \
                 VALUES ($1, 'reference', tenancy._policy_fingerprint($1)) \
                 ON CONFLICT (relid) DO UPDATE SET policies = EXCLUDED.policies, \
                     managed_at = pg_catalog.now(), managed_by = session_user"
            }
            _ => {
                "WITH d AS (DELETE FROM tenancy.managed_tables mt WHERE mt.relid = $1 RETURNING 1) \
                 SELECT pg_catalog.count(*) FROM d WHERE $2::pg_catalog.text IS NULL OR $3"
            }
        };
        let args = [tbl.into(), tenant_column.into(), hierarchical.unwrap_or(false).into()];
        if kind == "disable" {
            if Spi::get_one_with_args::<i64>(sql, &args)? != Some(1) {
                raise(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "the table is not managed by pg_tenancy",
                    Some("SELECT relid, kind FROM tenancy.managed_tables lists the managed tables."),
                );
            }
        } else {
            Spi::run_with_args(sql, &args)?;
        }
        Spi::run_with_args(
            "SELECT tenancy._audit($1, NULL, $2::pg_catalog.regclass::pg_catalog.text, $3)",
            &[
                action.into(),
                tbl.into(),
                pgrx::JsonB(details).into(),
            ],
        )
    })
    .or_raise("recording the registry change");
}
