//! Glue between the catalog and `tenancy_core::fkgraph`: reads the managed
//! tables' columns, keys and foreign keys with SPI and returns the set-based
//! copy statements that `tenancy.clone_tenant` and `tenancy.provision` run
//! (see `sql/provision.sql`).

use crate::error::{raise, OrRaise};
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use std::collections::HashMap;
use tenancy_core::fkgraph::{copy_steps, Column, CopyError, ForeignKey, Source, Table};

type SpiResult<T> = Result<T, pgrx::spi::SpiError>;

/// Facts about one managed tenant table.
fn read_table(c: &pgrx::spi::SpiClient<'_>, relid: pg_sys::Oid) -> SpiResult<Option<Table>> {
    let head = c.select(
        "SELECT pg_catalog.format('%I.%I', n.nspname, k.relname), m.tenant_column::text \
         FROM pg_catalog.pg_class k JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace \
         JOIN tenancy.managed_tables m ON m.relid = k.oid AND m.kind = 'tenant' WHERE k.oid = $1",
        Some(1),
        &[relid.into()],
    )?;
    if head.is_empty() {
        return Ok(None);
    }
    let (Some(name), Some(tenant_column)) = head.first().get_two::<String, String>()? else {
        return Ok(None);
    };
    let mut columns = Vec::new();
    for row in c.select(
        "SELECT a.attname::text, a.attnotnull, a.attgenerated <> '', \
                CASE WHEN a.attgenerated <> '' THEN NULL \
                     WHEN a.attidentity <> '' THEN pg_catalog.format('pg_catalog.nextval(%L::regclass)', \
                          pg_catalog.pg_get_serial_sequence(pg_catalog.format('%I.%I', n.nspname, k.relname), a.attname)) \
                     ELSE pg_catalog.pg_get_expr(d.adbin, d.adrelid) END \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class k ON k.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace \
         LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        None,
        &[relid.into()],
    )? {
        columns.push(Column {
            name: row.get::<String>(1)?.unwrap_or_default(),
            not_null: row.get::<bool>(2)?.unwrap_or(false),
            generated: row.get::<bool>(3)?.unwrap_or(false),
            fresh: row.get::<String>(4)?,
        });
    }
    let mut primary_key = Vec::new();
    for row in c.select(
        "SELECT a.attname::text FROM pg_catalog.pg_index i \
         CROSS JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
        None,
        &[relid.into()],
    )? {
        primary_key.push(row.get::<String>(1)?.unwrap_or_default());
    }
    Ok(Some(Table {
        snapshot_key: name.clone(),
        name,
        tenant_column,
        columns,
        primary_key,
    }))
}

/// The foreign keys declared on `relid`: (constraint name, referenced table,
/// referenced table's name, whether it is a managed tenant table, column
/// pairs, deferrable, match full).
type RawFk = (
    String,
    pg_sys::Oid,
    String,
    bool,
    Vec<(String, String)>,
    bool,
    bool,
);

fn read_fks(c: &pgrx::spi::SpiClient<'_>, relid: pg_sys::Oid) -> SpiResult<Vec<RawFk>> {
    let mut out = Vec::new();
    for row in c.select(
        "SELECT pg_catalog.format('%I.%I', n.nspname, con.conname), con.confrelid, con.confrelid::regclass::text, \
                EXISTS (SELECT 1 FROM tenancy.managed_tables m WHERE m.relid = con.confrelid AND m.kind = 'tenant'), \
                ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(con.conkey) WITH ORDINALITY u(n, o) \
                      JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = u.n ORDER BY u.o), \
                ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY u(n, o) \
                      JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = u.n ORDER BY u.o), \
                con.condeferrable, con.confmatchtype = 'f' \
         FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_namespace n ON n.oid = con.connamespace \
         WHERE con.conrelid = $1 AND con.contype = 'f' AND con.conparentid = 0 ORDER BY con.conname",
        None,
        &[relid.into()],
    )? {
        let from: Vec<String> = row.get::<Vec<String>>(5)?.unwrap_or_default();
        let to: Vec<String> = row.get::<Vec<String>>(6)?.unwrap_or_default();
        out.push((
            row.get::<String>(1)?.unwrap_or_default(),
            row.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
            row.get::<String>(3)?.unwrap_or_default(),
            row.get::<bool>(4)?.unwrap_or(false),
            from.into_iter().zip(to).collect(),
            row.get::<bool>(7)?.unwrap_or(false),
            row.get::<bool>(8)?.unwrap_or(false),
        ));
    }
    Ok(out)
}

/// The statements that copy the rows of `tables` (managed tenant tables) from
/// the source tenants `$1` into the new tenants `$2`. Internal: run by
/// `tenancy.clone_tenant`, `tenancy.provision` and shown by
/// `tenancy.clone_plan`.
///
/// `single` tells that exactly one tenant is copied. `snapshot_columns`
/// (`{"schema.table": ["col", ...]}`) switches the source to a template
/// snapshot in `$3`; only the listed columns are copied, the others take
/// their defaults.
///
/// `run_as_owner_of` names the table whose owner runs the step (see
/// `owner_exec.rs`); NULL for the steps that run no code of a table.
///
/// ```sql
/// SELECT * FROM tenancy._copy_steps(ARRAY['esg.metrics'::regclass::oid], true, NULL);
/// ```
#[pg_extern(stable, parallel_safe, name = "_copy_steps")]
// (the column names must stay in the signature, where pgrx reads them)
#[allow(clippy::type_complexity)]
pub fn copy_steps_sql(
    tables: Option<Vec<pg_sys::Oid>>,
    single: Option<bool>,
    snapshot_columns: Option<JsonB>,
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(kind, String),
        name!(tbl, Option<String>),
        name!(statement, String),
        name!(run_as_owner_of, Option<pg_sys::Oid>),
    ),
> {
    let (Some(mut relids), Some(single)) = (tables, single) else {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "tables and single must not be NULL",
            Some("Call tenancy.clone_plan() to see a clone's statements."),
        )
    };
    relids.sort_unstable_by_key(|o| o.to_u32());
    relids.dedup();
    let (mut facts, raw_fks) = Spi::connect(|c| -> SpiResult<(Vec<Table>, Vec<Vec<RawFk>>)> {
        let mut facts = Vec::with_capacity(relids.len());
        let mut fks = Vec::with_capacity(relids.len());
        for &relid in &relids {
            match read_table(c, relid)? {
                Some(t) => facts.push(t),
                None => raise(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("table with OID {} is not a managed tenant table", relid.to_u32()),
                    Some("SELECT relid FROM tenancy.managed_tables WHERE kind = 'tenant' lists the tables that can be copied."),
                ),
            }
            fks.push(read_fks(c, relid)?);
        }
        Ok((facts, fks))
    })
    .or_raise("reading the managed tables' catalog entries");

    let index: HashMap<u32, usize> = relids
        .iter()
        .enumerate()
        .map(|(i, o)| (o.to_u32(), i))
        .collect();
    let mut fks = Vec::new();
    for (ti, raw) in raw_fks.into_iter().enumerate() {
        for (name, confrelid, conf_name, conf_managed, columns, deferrable, match_full) in raw {
            match index.get(&confrelid.to_u32()) {
                Some(&referenced) => {
                    fks.push(ForeignKey { name, referencing: ti, referenced, columns, deferrable, match_full })
                }
                None if conf_managed => raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!(
                        "{} references {conf_name} (foreign key {name}), which is not among the tables to copy",
                        facts[ti].name
                    ),
                    Some("Add the referenced table to tables =>, or leave tables => NULL to copy every managed table."),
                ),
                None => {} // reference data or an unmanaged table: values copied as they are
            }
        }
    }
    let source = match &snapshot_columns {
        None => Source::Tables,
        Some(JsonB(cols)) => {
            for t in &mut facts {
                let listed: Vec<&str> = cols
                    .get(&t.snapshot_key)
                    .and_then(|v| v.as_array())
                    .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                t.columns
                    .retain(|c| c.generated || listed.contains(&c.name.as_str()));
            }
            Source::Snapshot
        }
    };
    let steps = copy_steps(&facts, &fks, source, single).unwrap_or_else(|e| {
        let hint = match &e {
            CopyError::KeyWithoutDefault { .. } => {
                "Give the key column a default (identity, serial, DEFAULT gen_random_uuid()), or make the primary key (tenant_id, id)."
            }
            CopyError::PartialKeyReference { .. } => "Reference the whole primary key, or make the primary key include the tenant column.",
            CopyError::UnknownColumn { .. } => "The table changed since the template was made; recreate the template with tenancy.create_template().",
            CopyError::Cycle { .. } => "Declare one of the foreign keys in the cycle DEFERRABLE, or make one of its columns nullable.",
        };
        let code = match &e {
            CopyError::UnknownColumn { .. } => PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            _ => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        };
        raise(code, e.to_string(), Some(hint))
    });
    let names: Vec<String> = facts.iter().map(|t| t.snapshot_key.clone()).collect();
    TableIterator::new(steps.into_iter().enumerate().map(move |(i, s)| {
        (
            i as i32 + 1,
            s.kind.as_str().to_string(),
            s.table.map(|t| names[t].clone()),
            s.sql,
            s.table
                .filter(|_| s.kind.runs_as_owner())
                .map(|t| relids[t]),
        )
    }))
}
