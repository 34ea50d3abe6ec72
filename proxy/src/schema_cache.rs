//! Loading the schema cache from pg_catalog.

use serde_json::Value as Json;
use tenancy_core::postgrest::schema::{
    Column, ForeignKey, Function, FunctionArg, Schema, Table, Volatility,
};

const TABLES: &str = r#"
SELECT n.nspname::text, c.relname::text, c.relkind::text,
  coalesce((SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, NULL),
              'nullable', NOT a.attnotnull,
              'default', a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]')::text,
  coalesce((SELECT json_agg(json_build_object('primary', i.indisprimary,
              'cols', (SELECT json_agg(a.attname ORDER BY k.ord)
                         FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum)))
            FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL), '[]')::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
"#;

const FKS: &str = r#"
SELECT con.conname::text, ns.nspname::text, cl.relname::text,
  (SELECT json_agg(a.attname ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY k(n, ord)
     JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n)::text,
  fns.nspname::text, fcl.relname::text,
  (SELECT json_agg(a.attname ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY k(n, ord)
     JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n)::text
FROM pg_constraint con
JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_namespace ns ON ns.oid = cl.relnamespace
JOIN pg_class fcl ON fcl.oid = con.confrelid JOIN pg_namespace fns ON fns.oid = fcl.relnamespace
WHERE con.contype = 'f' AND (ns.nspname = ANY($1) OR fns.nspname = ANY($1))
"#;

const FUNCTIONS: &str = r#"
SELECT n.nspname::text, p.proname::text, p.provolatile::text, p.proretset, p.prorettype = 'void'::regtype,
  coalesce(p.proargnames, '{}')::text[],
  coalesce(p.proargmodes::text[], '{}')::text[],
  ARRAY(SELECT format_type(u.t, NULL) FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY u(t, o) ORDER BY u.o),
  p.pronargs::int, p.pronargdefaults::int,
  coalesce((SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, NULL)) ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = rt.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '[]')::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_type rt ON rt.oid = p.prorettype
WHERE n.nspname = ANY($1) AND p.prokind = 'f'
"#;

fn col(j: &Json) -> Column {
    Column {
        name: j["name"].as_str().unwrap_or_default().to_string(),
        data_type: j["type"].as_str().unwrap_or("text").to_string(),
        nullable: j["nullable"].as_bool().unwrap_or(true),
        has_default: j["default"].as_bool().unwrap_or(false),
    }
}

fn strings(j: &Json) -> Vec<String> {
    j.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Read tables, views, keys, relationships and functions of `schemas`.
pub async fn load(
    client: &tokio_postgres::Client,
    schemas: &[String],
) -> Result<Schema, tokio_postgres::Error> {
    let mut s = Schema::default();
    for row in client.query(TABLES, &[&schemas]).await? {
        let cols: Json = serde_json::from_str(row.get::<_, &str>(3)).unwrap_or(Json::Null);
        let idx: Json = serde_json::from_str(row.get::<_, &str>(4)).unwrap_or(Json::Null);
        let mut t = Table {
            schema: row.get(0),
            name: row.get(1),
            is_view: row.get::<_, String>(2) == "v" || row.get::<_, String>(2) == "m",
            columns: cols
                .as_array()
                .map(|a| a.iter().map(col).collect())
                .unwrap_or_default(),
            ..Table::default()
        };
        for i in idx.as_array().into_iter().flatten() {
            let cols = strings(&i["cols"]);
            if i["primary"].as_bool() == Some(true) {
                t.primary_key = cols.clone();
            }
            t.unique_keys.push(cols);
        }
        s.tables.insert((t.schema.clone(), t.name.clone()), t);
    }
    for row in client.query(FKS, &[&schemas]).await? {
        s.foreign_keys.push(ForeignKey {
            name: row.get(0),
            schema: row.get(1),
            table: row.get(2),
            columns: strings(&serde_json::from_str(row.get::<_, &str>(3)).unwrap_or(Json::Null)),
            ref_schema: row.get(4),
            ref_table: row.get(5),
            ref_columns: strings(
                &serde_json::from_str(row.get::<_, &str>(6)).unwrap_or(Json::Null),
            ),
        });
    }
    for row in client.query(FUNCTIONS, &[&schemas]).await? {
        let names: Vec<String> = row.get(5);
        let modes: Vec<String> = row.get(6);
        let types: Vec<String> = row.get(7);
        let nargs: i32 = row.get(8);
        let ndefaults: i32 = row.get(9);
        let mut args = Vec::new();
        let mut outs = Vec::new();
        for (i, ty) in types.iter().enumerate() {
            let mode = modes.get(i).map(String::as_str).unwrap_or("i");
            let name = names.get(i).cloned().unwrap_or_default();
            match mode {
                "i" | "b" | "v" => {
                    args.push(FunctionArg {
                        name: name.clone(),
                        data_type: ty.clone(),
                        has_default: false,
                    });
                    if mode == "b" {
                        outs.push(Column {
                            name,
                            data_type: ty.clone(),
                            nullable: true,
                            has_default: false,
                        });
                    }
                }
                _ => outs.push(Column {
                    name,
                    data_type: ty.clone(),
                    nullable: true,
                    has_default: false,
                }),
            }
        }
        let nargs = nargs.max(0) as usize;
        for (i, a) in args.iter_mut().enumerate() {
            if i + (ndefaults.max(0) as usize) >= nargs {
                a.has_default = true;
            }
        }
        // Functions with unnamed input parameters cannot be called by name.
        if args.iter().any(|a| a.name.is_empty()) {
            continue;
        }
        let composite: Json = serde_json::from_str(row.get::<_, &str>(10)).unwrap_or(Json::Null);
        let mut result_columns: Vec<Column> = composite
            .as_array()
            .map(|a| a.iter().map(col).collect())
            .unwrap_or_default();
        if result_columns.is_empty() && outs.len() > 1
            || (!outs.is_empty()
                && row.get::<_, bool>(3)
                && result_columns.is_empty()
                && outs.len() == 1
                && modes.iter().any(|m| m == "t"))
        {
            result_columns = outs;
        }
        s.functions.push(Function {
            schema: row.get(0),
            name: row.get(1),
            args,
            returns_set: row.get(3),
            returns_void: row.get(4),
            result_columns,
            volatility: match row.get::<_, String>(2).as_str() {
                "i" => Volatility::Immutable,
                "s" => Volatility::Stable,
                _ => Volatility::Volatile,
            },
        });
    }
    Ok(s)
}
