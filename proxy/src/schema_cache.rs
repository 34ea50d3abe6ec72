//! Loading the schema cache from pg_catalog.

use serde_json::Value as Json;
use std::collections::HashMap;
use tenancy_core::postgrest::schema::{
    Column, ComputedField, ComputedRelationship, ForeignKey, Function, FunctionArg, KeyDepKind,
    MediaAggregate, Schema, Table, ViewKeyDep, Volatility, Writable,
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
            FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL), '[]')::text,
  pg_relation_is_updatable(c.oid::regclass, true)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
"#;

/// What a row gets for each column it leaves out, for `Prefer:
/// missing=default` over rows with different keys (see
/// [`Column::default_expr`]): the column's default, `nextval` of an identity
/// `BY DEFAULT`, else its domain's default — cast to the column's type.
/// A view column without a default of its own, on a view PostgreSQL inserts
/// through by itself (auto-updatable: not through `INSTEAD OF` triggers),
/// gets its base column's, as its `DEFAULT` does (`$2`–`$5`: the (view, view
/// column, base table, base column) quadruples of the exposed views). Run
/// with `search_path` = `pg_catalog` so that `pg_get_expr` and `format_type`
/// qualify every name: the expression is evaluated under each request's
/// search path. A column's own sequence (serial, identity) is named by oid,
/// so a role without `USAGE` on the sequence's schema — an API view over a
/// private table — can still take its next value, as `DEFAULT` can.
/// Identity `ALWAYS` and generated columns: none (PostgreSQL refuses a
/// value for them).
const DEFAULTS: &str = r#"
WITH src AS (
  SELECT a.attrelid AS rel, a.attnum AS col, a.attrelid AS srel, a.attnum AS scol
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
  UNION ALL
  SELECT m.view_id, m.view_col, m.tbl, m.tbl_col
  FROM unnest($2::oid[], $3::int4[], $4::oid[], $5::int4[]) AS m(view_id, view_col, tbl, tbl_col)
  JOIN pg_class vc ON vc.oid = m.view_id AND vc.relkind = 'v'
  WHERE (pg_relation_is_updatable(m.view_id, false) & 8) = 8
    AND NOT EXISTS (SELECT 1 FROM pg_attrdef vd WHERE vd.adrelid = m.view_id AND vd.adnum = m.view_col)
)
SELECT n.nspname::text, c.relname::text, ta.attname::text,
  '(' || CASE WHEN seq.objid IS NOT NULL
                   AND (a.attidentity = 'd'
                        OR pg_get_expr(d.adbin, d.adrelid) = format('nextval(%L::regclass)', seq.objid::regclass::text))
              THEN format('nextval(%s::oid::regclass)', seq.objid)
              ELSE coalesce(pg_get_expr(d.adbin, d.adrelid), pg_get_expr(t.typdefaultbin, 0)) END
      || ')::' || format_type(ta.atttypid, NULL)
FROM src
JOIN pg_class c ON c.oid = src.rel JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute ta ON ta.attrelid = src.rel AND ta.attnum = src.col AND NOT ta.attisdropped
JOIN pg_attribute a ON a.attrelid = src.srel AND a.attnum = src.scol AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN LATERAL (
  SELECT dep.objid FROM pg_depend dep JOIN pg_class sc ON sc.oid = dep.objid AND sc.relkind = 'S'
  WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
    AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum AND dep.deptype IN ('a', 'i')
  LIMIT 1) seq ON true
WHERE a.attgenerated = '' AND a.attidentity <> 'a'
  AND (a.attidentity = 'd' OR d.adbin IS NOT NULL OR (t.typtype = 'd' AND t.typdefaultbin IS NOT NULL))
"#;

/// Every foreign key (views may expose tables of any schema), with whether
/// its columns are unique (one-to-one). Not the copies PostgreSQL keeps on
/// partitions (`conparentid`): a partitioned table relates through its
/// parent's key only, so its partitions add no relationships (and no
/// ambiguity), as in PostgREST.
const FKS: &str = r#"
SELECT con.conname::text, ns.nspname::text, cl.relname::text,
  (SELECT json_agg(a.attname ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY k(n, ord)
     JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n)::text,
  fns.nspname::text, fcl.relname::text,
  (SELECT json_agg(a.attname ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY k(n, ord)
     JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n)::text,
  EXISTS (SELECT 1 FROM pg_index i
          WHERE i.indrelid = con.conrelid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
            AND ARRAY(SELECT x FROM unnest(i.indkey::int2[]) x ORDER BY x)
                = ARRAY(SELECT x FROM unnest(con.conkey) x ORDER BY x))
FROM pg_constraint con
JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_namespace ns ON ns.oid = cl.relnamespace
JOIN pg_class fcl ON fcl.oid = con.confrelid JOIN pg_namespace fns ON fns.oid = fcl.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND ns.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY ns.nspname, cl.relname, con.conname
"#;

/// The definitions (`_RETURN` rules) of views: of the exposed schemas
/// (`$1`), or the views they read from (`$2`, by oid).
const VIEWS: &str = r#"
SELECT c.oid, r.ev_action::text
FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE r.rulename = '_RETURN' AND c.relkind IN ('v', 'm')
  AND (n.nspname = ANY($1) OR c.oid = ANY($2::oid[]))
"#;

/// From (view, view column, base table, base column) quadruples to the
/// primary and foreign keys whose every column a view shows: `p` a primary
/// key, `f` a foreign key's referencing columns, `r` its referenced ones.
const KEY_DEPS: &str = r#"
WITH m AS (
  SELECT * FROM unnest($1::oid[], $2::int4[], $3::oid[], $4::int4[]) AS m(view_id, view_col, tbl, tbl_col)
),
shown AS (
  SELECT m.view_id, m.tbl, m.tbl_col, array_agg(va.attname::text ORDER BY va.attnum) AS view_cols
  FROM m JOIN pg_attribute va ON va.attrelid = m.view_id AND va.attnum = m.view_col AND NOT va.attisdropped
  GROUP BY m.view_id, m.tbl, m.tbl_col
),
keys AS (
  SELECT con.oid AS con_id, con.conname, CASE con.contype WHEN 'p' THEN 'p' ELSE 'f' END AS kind,
         con.conrelid AS tbl, k.attnum, k.ord, cardinality(con.conkey) AS ncol
  FROM pg_constraint con CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
  WHERE con.contype IN ('p', 'f') AND con.conrelid IN (SELECT tbl FROM m)
  UNION ALL
  SELECT con.oid, con.conname, 'r', con.confrelid, k.attnum, k.ord, cardinality(con.confkey)
  FROM pg_constraint con CROSS JOIN LATERAL unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
  WHERE con.contype = 'f' AND con.confrelid IN (SELECT tbl FROM m)
)
SELECT tn.nspname::text, t.relname::text, vn.nspname::text, v.relname::text, keys.conname::text, keys.kind,
  json_agg(json_build_object('column', ta.attname, 'view_columns', shown.view_cols) ORDER BY keys.ord)::text
FROM shown
JOIN keys ON keys.tbl = shown.tbl AND keys.attnum = shown.tbl_col
JOIN pg_class t ON t.oid = shown.tbl JOIN pg_namespace tn ON tn.oid = t.relnamespace
JOIN pg_attribute ta ON ta.attrelid = shown.tbl AND ta.attnum = shown.tbl_col
JOIN pg_class v ON v.oid = shown.view_id JOIN pg_namespace vn ON vn.oid = v.relnamespace
GROUP BY tn.nspname, t.relname, vn.nspname, v.relname, keys.con_id, keys.conname, keys.kind, keys.ncol
HAVING count(*) = keys.ncol
"#;

const FUNCTIONS: &str = r#"
SELECT n.nspname::text, p.proname::text, p.provolatile::text, p.proretset, p.prorettype = 'void'::regtype,
  coalesce(p.proargnames, '{}')::text[],
  coalesce(p.proargmodes::text[], '{}')::text[],
  ARRAY(SELECT format_type(u.t, NULL) FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY u(t, o) ORDER BY u.o),
  p.pronargs::int, p.pronargdefaults::int,
  coalesce((SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, NULL)) ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = r.relid AND a.attnum > 0 AND NOT a.attisdropped), '[]')::text,
  (SELECT json_build_array(cn.nspname, c.relname) FROM pg_class c JOIN pg_namespace cn ON cn.oid = c.relnamespace
    WHERE c.oid = r.relid AND c.relkind IN ('r', 'v', 'm', 'f', 'p'))::text,
  CASE WHEN rt.typtype = 'd' AND (rt.typname::text = '*/*'
    OR rt.typname::text ~ '^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$')
    THEN rt.typname::text END,
  rt.typtype = 'd' AND rt.typbasetype = 'bytea'::regtype,
  p.prorettype = 'record'::regtype,
  coalesce(p.proconfig, '{}')::text[]
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_type rt ON rt.oid = p.prorettype
-- the row type it returns, also through a domain over it (PostgREST embeds those)
CROSS JOIN LATERAL (SELECT CASE WHEN rt.typtype = 'd'
  THEN (SELECT b.typrelid FROM pg_type b WHERE b.oid = rt.typbasetype) ELSE rt.typrelid END AS relid) r
WHERE n.nspname = ANY($1) AND p.prokind = 'f'
ORDER BY p.oid
"#;

/// PostgREST's data representations: implicit function casts between a
/// domain and json/text that the loading role may execute.
const DATA_REPS: &str = r#"
SELECT format_type(c.castsource, NULL), format_type(c.casttarget, NULL),
  quote_ident(pn.nspname) || '.' || quote_ident(p.proname)
FROM pg_cast c
JOIN pg_type src ON src.oid = c.castsource
JOIN pg_type dst ON dst.oid = c.casttarget
JOIN pg_proc p ON p.oid = c.castfunc JOIN pg_namespace pn ON pn.oid = p.pronamespace
WHERE c.castcontext = 'i' AND c.castmethod = 'f' AND has_function_privilege(c.castfunc, 'execute')
  AND ((src.typtype = 'd' AND c.casttarget IN ('json'::regtype, 'text'::regtype))
    OR (dst.typtype = 'd' AND c.castsource IN ('json'::regtype, 'text'::regtype)))
"#;

/// PostGIS's `st_asgeojson(record)` (PostGIS ≥ 3): a function of the
/// `postgis` extension, found wherever it is installed, executable by the
/// loading role.
const GEOJSON: &str = r#"
SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname)
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'postgis'
WHERE p.proname = 'st_asgeojson' AND p.pronargs >= 1 AND p.proargtypes[0] = 'record'::regtype
  AND has_function_privilege(p.oid, 'execute')
ORDER BY p.pronargs
LIMIT 1
"#;

/// Aggregates of one argument (a relation's row type or `anyelement`) in
/// the exposed schemas returning a media-type domain: PostgREST's media type
/// handlers for tables and views.
const MEDIA_AGGREGATES: &str = r#"
SELECT n.nspname::text, p.proname::text, rt.typname::text,
  (SELECT json_build_array(cn.nspname, c.relname) FROM pg_class c JOIN pg_namespace cn ON cn.oid = c.relnamespace
    WHERE c.oid = at.typrelid AND c.relkind IN ('r', 'v', 'm', 'f', 'p'))::text,
  at.oid = 'anyelement'::regtype,
  rt.typbasetype = 'bytea'::regtype
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_type rt ON rt.oid = p.prorettype
JOIN pg_type at ON at.oid = p.proargtypes[0]
WHERE n.nspname = ANY($1) AND p.prokind = 'a' AND p.pronargs = 1 AND rt.typtype = 'd'
  AND (rt.typname::text = '*/*'
    OR rt.typname::text ~ '^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$')
ORDER BY p.oid
"#;

/// Functions of exactly one parameter whose type is the row type of a
/// relation in the cache: computed fields (a scalar result) and computed
/// relationships (rows of a relation: to-one without `SETOF` or with
/// `ROWS 1`), as PostgREST finds them.
const COMPUTED: &str = r#"
SELECT n.nspname::text, p.proname::text, an.nspname::text, ac.relname::text,
  format_type(p.prorettype, NULL),
  (SELECT json_build_array(cn.nspname, c.relname) FROM pg_class c JOIN pg_namespace cn ON cn.oid = c.relnamespace
    WHERE c.oid = rt.typrelid AND c.relkind IN ('r', 'v', 'm', 'f', 'p'))::text,
  NOT p.proretset OR p.prorows = 1,
  p.prorettype = 'void'::regtype OR p.prorettype = 'trigger'::regtype, p.proretset
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_type at ON at.oid = p.proargtypes[0]
JOIN pg_class ac ON ac.oid = at.typrelid AND ac.relkind IN ('r', 'v', 'm', 'f', 'p')
JOIN pg_namespace an ON an.oid = ac.relnamespace
JOIN pg_type rt ON rt.oid = p.prorettype
WHERE n.nspname = ANY($1) AND p.prokind = 'f' AND p.pronargs = 1
ORDER BY 1, 2, 3, 4
"#;

/// One unnamed parameter of a type a raw request body can be
/// (`tenancy_core::postgrest::sql::raw_body_type`).
fn raw_body_function(args: &[FunctionArg]) -> bool {
    matches!(args, [a] if a.name.is_empty()
        && tenancy_core::postgrest::sql::RAW_BODY_TYPES.contains(&a.data_type.as_str()))
}

fn col(j: &Json) -> Column {
    Column {
        name: j["name"].as_str().unwrap_or_default().to_string(),
        data_type: j["type"].as_str().unwrap_or("text").to_string(),
        nullable: j["nullable"].as_bool().unwrap_or(true),
        has_default: j["default"].as_bool().unwrap_or(false),
        default_expr: None,
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
    // Every type name the cache keeps is spliced into statements run under
    // each request's search path (`json_to_recordset(…) AS _(col type)`,
    // RPC arguments, defaults): read with `search_path` = `pg_catalog`,
    // `format_type` and `pg_get_expr` qualify every name outside it
    // (`public.user_status`), so a request whose path puts another schema
    // with a type of the same name first still means the column's type.
    // The connection's own search path is restored at the end (the proxy
    // loads inside a transaction: on an error the rollback undoes the SET).
    client
        .batch_execute("SET search_path TO pg_catalog")
        .await?;
    for row in client.query(TABLES, &[&schemas]).await? {
        let cols: Json = serde_json::from_str(row.get::<_, &str>(3)).unwrap_or(Json::Null);
        let idx: Json = serde_json::from_str(row.get::<_, &str>(4)).unwrap_or(Json::Null);
        let mut t = Table {
            schema: row.get(0),
            name: row.get(1),
            is_view: row.get::<_, String>(2) == "v" || row.get::<_, String>(2) == "m",
            writable: Writable::from_bits(row.get(5)),
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
    let mut all_fks = Vec::new();
    for row in client.query(FKS, &[]).await? {
        all_fks.push(ForeignKey {
            name: row.get(0),
            schema: row.get(1),
            table: row.get(2),
            columns: strings(&serde_json::from_str(row.get::<_, &str>(3)).unwrap_or(Json::Null)),
            ref_schema: row.get(4),
            ref_table: row.get(5),
            ref_columns: strings(
                &serde_json::from_str(row.get::<_, &str>(6)).unwrap_or(Json::Null),
            ),
            one_to_one: Some(row.get(7)),
        });
    }
    s.foreign_keys = all_fks
        .iter()
        .filter(|f| schemas.contains(&f.schema) || schemas.contains(&f.ref_schema))
        .cloned()
        .collect();
    let (deps, quads) = view_key_deps(client, schemas).await?;
    s.add_view_relationships(&deps, &all_fks);
    let views: Vec<u32> = quads.iter().map(|q| q.0).collect();
    let view_cols: Vec<i32> = quads.iter().map(|q| q.1).collect();
    let tables: Vec<u32> = quads.iter().map(|q| q.2).collect();
    let table_cols: Vec<i32> = quads.iter().map(|q| q.3).collect();
    let defaults = client
        .query(
            DEFAULTS,
            &[&schemas, &views, &view_cols, &tables, &table_cols],
        )
        .await?;
    for row in defaults {
        let (schema, table, column): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        if let Some(c) = s
            .tables
            .get_mut(&(schema, table))
            .and_then(|t| t.columns.iter_mut().find(|c| c.name == column))
        {
            c.default_expr = row.get(3);
        }
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
                        variadic: mode == "v",
                    });
                    if mode == "b" {
                        outs.push(Column {
                            name,
                            data_type: ty.clone(),
                            nullable: true,
                            has_default: false,
                            default_expr: None,
                        });
                    }
                }
                _ => outs.push(Column {
                    name,
                    data_type: ty.clone(),
                    nullable: true,
                    has_default: false,
                    default_expr: None,
                }),
            }
        }
        let nargs = nargs.max(0) as usize;
        for (i, a) in args.iter_mut().enumerate() {
            if i + (ndefaults.max(0) as usize) >= nargs {
                a.has_default = true;
            }
        }
        // Functions with unnamed input parameters cannot be called by name;
        // one unnamed json/jsonb/text/xml/bytea parameter takes the raw body
        // of a POST (PostgREST's single unnamed parameter).
        if args.iter().any(|a| a.name.is_empty()) && !raw_body_function(&args) {
            continue;
        }
        // pg_tenancy's internal helpers (`tenancy._…`) are not an API: with
        // `tenancy` exposed, its functions are reachable, those are not
        if row.get::<_, &str>(0) == "tenancy" && row.get::<_, &str>(1).starts_with('_') {
            continue;
        }
        let composite: Json = serde_json::from_str(row.get::<_, &str>(10)).unwrap_or(Json::Null);
        let mut result_columns: Vec<Column> = composite
            .as_array()
            .map(|a| a.iter().map(col).collect())
            .unwrap_or_default();
        // OUT / INOUT parameters make a row, even a single one
        // (`{"num_plus_one": 6}`, as PostgREST), and so does RETURNS TABLE
        let out_params = modes.iter().any(|m| m == "o" || m == "b");
        if result_columns.is_empty() && (outs.len() > 1 || out_params && outs.len() == 1)
            || (!outs.is_empty()
                && row.get::<_, bool>(3)
                && result_columns.is_empty()
                && outs.len() == 1
                && modes.iter().any(|m| m == "t"))
        {
            result_columns = outs;
        }
        // the table or view whose row type it returns (for embedding)
        let return_table = row
            .get::<_, Option<&str>>(11)
            .and_then(|t| serde_json::from_str::<(String, String)>(t).ok());
        s.functions.push(Function {
            schema: row.get(0),
            name: row.get(1),
            args,
            returns_set: row.get(3),
            returns_void: row.get(4),
            // `record` without OUT parameters (those make result columns)
            returns_record: row.get::<_, bool>(14) && result_columns.is_empty(),
            result_columns,
            return_table,
            volatility: match row.get::<_, String>(2).as_str() {
                "i" => Volatility::Immutable,
                "s" => Volatility::Stable,
                _ => Volatility::Volatile,
            },
            media_type: row.get(12),
            media_binary: row.get(13),
            settings: row
                .get::<_, Vec<String>>(15)
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
        });
    }
    for row in client.query(MEDIA_AGGREGATES, &[&schemas]).await? {
        let target = row
            .get::<_, Option<&str>>(3)
            .and_then(|t| serde_json::from_str::<(String, String)>(t).ok());
        // a row type of a relation the cache knows, or anyelement
        if target.is_none() && !row.get::<_, bool>(4) {
            continue;
        }
        s.media_aggregates.push(MediaAggregate {
            schema: row.get(0),
            name: row.get(1),
            media_type: row.get(2),
            target,
            binary: row.get(5),
        });
    }
    for row in client.query(DATA_REPS, &[]).await? {
        s.data_reps.insert((row.get(0), row.get(1)), row.get(2));
    }
    s.geojson = client.query_opt(GEOJSON, &[]).await?.map(|r| r.get(0));
    for row in client.query(COMPUTED, &[&schemas]).await? {
        let (table_schema, table): (String, String) = (row.get(2), row.get(3));
        if s.table(&table_schema, &table).is_none() || row.get::<_, bool>(7) {
            continue;
        }
        let (schema, name): (String, String) = (row.get(0), row.get(1));
        match row
            .get::<_, Option<&str>>(5)
            .and_then(|t| serde_json::from_str::<(String, String)>(t).ok())
        {
            // rows of a relation the cache knows: a computed relationship
            Some((target_schema, target)) => {
                if s.table(&target_schema, &target).is_some() {
                    s.computed_relationships.push(ComputedRelationship {
                        schema,
                        name,
                        table_schema,
                        table,
                        target_schema,
                        target,
                        single_row: row.get(6),
                    });
                }
            }
            // a set of scalars is no column
            None if row.get::<_, bool>(8) => {}
            None => s.computed_fields.push(ComputedField {
                schema,
                name,
                table_schema,
                table,
                data_type: row.get(4),
            }),
        }
    }
    client.batch_execute("RESET search_path").await?;
    Ok(s)
}

/// One output column of a view: its number and, when it is a plain column
/// of a relation, that relation's oid and column number (`resorigtbl`,
/// `resorigcol`; 0 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TargetEntry {
    resno: i32,
    table: u32,
    column: i32,
}

/// An item of PostgreSQL's node-tree text (`pg_node_tree`): a token, a
/// `( … )` list or a `{ … }` node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Token(String),
    List(Vec<Item>),
    Node(Vec<Item>),
}

/// Parse node-tree text the way PostgreSQL's `pg_strtok` reads it: blanks
/// separate tokens, `(){}` are tokens of their own, a backslash makes the
/// next character ordinary. `None` if the brackets do not balance.
fn parse_node_tree(text: &str) -> Option<Item> {
    let mut stack: Vec<(char, Vec<Item>)> = vec![('^', Vec::new())];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\n' | '\t' | '\r' => {}
            '(' | '{' => stack.push((c, Vec::new())),
            ')' | '}' => {
                let (open, items) = stack.pop()?;
                let item = match (open, c) {
                    ('(', ')') => Item::List(items),
                    ('{', '}') => Item::Node(items),
                    _ => return None,
                };
                stack.last_mut()?.1.push(item);
            }
            _ => {
                let mut tok = String::new();
                let mut c = c;
                loop {
                    if c == '\\' {
                        if let Some(n) = chars.next() {
                            tok.push(n);
                        }
                    } else {
                        tok.push(c);
                    }
                    match chars.peek() {
                        Some(' ' | '\n' | '\t' | '\r' | '(' | ')' | '{' | '}') | None => break,
                        Some(_) => c = chars.next().unwrap_or(' '),
                    }
                }
                stack.last_mut()?.1.push(Item::Token(tok));
            }
        }
    }
    let (_, mut items) = stack.pop()?;
    if !stack.is_empty() || items.len() != 1 {
        return None;
    }
    items.pop()
}

/// The target list of a view's `_RETURN` rule (`pg_rewrite.ev_action`):
/// where each output column comes from.
fn view_targets(ev_action: &str) -> Vec<TargetEntry> {
    let Some(Item::List(queries)) = parse_node_tree(ev_action) else {
        return Vec::new();
    };
    let Some(Item::Node(query)) = queries.first() else {
        return Vec::new();
    };
    if !matches!(query.first(), Some(Item::Token(t)) if t == "QUERY") {
        return Vec::new();
    }
    // Only the query's own fields are at this level (nested nodes are
    // items of their own), so `:targetList` cannot be a column name here.
    let Some(Item::List(entries)) = query
        .iter()
        .position(|i| matches!(i, Item::Token(t) if t == ":targetList"))
        .and_then(|p| query.get(p + 1))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries {
        let Item::Node(fields) = e else { continue };
        if !matches!(fields.first(), Some(Item::Token(t)) if t == "TARGETENTRY") {
            continue;
        }
        // Every TARGETENTRY field is one item: read them as `:key value`
        // pairs, so a column named `:resno` stays a value.
        let mut entry = TargetEntry {
            resno: 0,
            table: 0,
            column: 0,
        };
        let mut junk = false;
        for pair in fields[1..].chunks(2) {
            let (Some(Item::Token(k)), Some(Item::Token(v))) = (pair.first(), pair.get(1)) else {
                continue;
            };
            match k.as_str() {
                ":resno" => entry.resno = v.parse().unwrap_or(0),
                ":resorigtbl" => entry.table = v.parse().unwrap_or(0),
                ":resorigcol" => entry.column = v.parse().unwrap_or(0),
                ":resjunk" => junk = v == "true",
                _ => {}
            }
        }
        if !junk && entry.resno > 0 {
            out.push(entry);
        }
    }
    out
}

/// Follow each column of each view of `exposed` through views of views to
/// the base relation column it shows: (view, view column, table, column).
fn resolve_view_columns(
    targets: &HashMap<u32, Vec<TargetEntry>>,
    exposed: &[u32],
) -> Vec<(u32, i32, u32, i32)> {
    let mut out = Vec::new();
    for v in exposed {
        for e in targets.get(v).into_iter().flatten() {
            let (mut table, mut column) = (e.table, e.column);
            let mut hops = 0;
            while table != 0 && hops < 64 {
                let Some(inner) = targets.get(&table) else {
                    break;
                };
                match inner.iter().find(|t| t.resno == column) {
                    Some(t) => (table, column) = (t.table, t.column),
                    None => table = 0,
                }
                hops += 1;
            }
            if table != 0 && column > 0 && !targets.contains_key(&table) {
                out.push((*v, e.resno, table, column));
            }
        }
    }
    out
}

/// The primary and foreign keys the views of `schemas` show, as PostgREST
/// finds them: from each view's target list (`resorigtbl`/`resorigcol`),
/// recursively through views of views.
/// Also returns the (view, view column, base table, base column)
/// quadruples it found (see [`DEFAULTS`]).
async fn view_key_deps(
    client: &tokio_postgres::Client,
    schemas: &[String],
) -> Result<(Vec<ViewKeyDep>, Vec<(u32, i32, u32, i32)>), tokio_postgres::Error> {
    let mut targets: HashMap<u32, Vec<TargetEntry>> = HashMap::new();
    let mut exposed: Vec<u32> = Vec::new();
    // Oids asked for by number so far (tables among them are not loaded).
    let mut asked: Vec<u32> = Vec::new();
    let mut batch: Vec<u32> = Vec::new();
    for round in 0..16 {
        let names: &[String] = if round == 0 { schemas } else { &[] };
        for row in client.query(VIEWS, &[&names, &batch]).await? {
            let oid: u32 = row.get(0);
            if round == 0 {
                exposed.push(oid);
            }
            targets.insert(oid, view_targets(row.get::<_, &str>(1)));
        }
        // The relations views read from that are not loaded yet: views of
        // other schemas (or tables, which the query skips).
        batch = targets
            .values()
            .flatten()
            .map(|t| t.table)
            .filter(|t| *t != 0 && !targets.contains_key(t) && !asked.contains(t))
            .collect();
        batch.sort_unstable();
        batch.dedup();
        if batch.is_empty() {
            break;
        }
        asked.extend(&batch);
    }
    let quads = resolve_view_columns(&targets, &exposed);
    if quads.is_empty() {
        return Ok((Vec::new(), quads));
    }
    let views: Vec<u32> = quads.iter().map(|q| q.0).collect();
    let view_cols: Vec<i32> = quads.iter().map(|q| q.1).collect();
    let tables: Vec<u32> = quads.iter().map(|q| q.2).collect();
    let table_cols: Vec<i32> = quads.iter().map(|q| q.3).collect();
    let rows = client
        .query(KEY_DEPS, &[&views, &view_cols, &tables, &table_cols])
        .await?;
    let mut deps = Vec::new();
    for row in rows {
        let cols: Json = serde_json::from_str(row.get::<_, &str>(6)).unwrap_or(Json::Null);
        deps.push(ViewKeyDep {
            table_schema: row.get(0),
            table: row.get(1),
            view_schema: row.get(2),
            view: row.get(3),
            constraint: row.get(4),
            kind: match row.get::<_, &str>(5) {
                "p" => KeyDepKind::PrimaryKey,
                "f" => KeyDepKind::ForeignKey,
                _ => KeyDepKind::ReferencedKey,
            },
            columns: cols
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    (
                        c["column"].as_str().unwrap_or_default().to_string(),
                        strings(&c["view_columns"]),
                    )
                })
                .collect(),
        });
    }
    Ok((deps, quads))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What PostgreSQL 15 stores for
    /// `CREATE VIEW v AS SELECT id, 1 AS "a b", name AS ":resno", (SELECT 2) AS s FROM t`.
    const EV_ACTION: &str = r#"({QUERY :commandType 1 :querySource 0 :canSetTag true :utilityStmt <> :resultRelation 0 :hasAggs false :hasSubLinks true :cteList <> :rtable ({RANGETBLENTRY :alias <> :eref {ALIAS :aliasname t :colnames ("id" ":targetList")} :rtekind 0 :relid 16390 :relkind r :securityQuals <>}) :jointree {FROMEXPR :fromlist ({RANGETBLREF :rtindex 1}) :quals <>} :targetList ({TARGETENTRY :expr {VAR :varno 1 :varattno 1 :vartype 20 :location 7} :resno 1 :resname id :ressortgroupref 0 :resorigtbl 16390 :resorigcol 1 :resjunk false} {TARGETENTRY :expr {CONST :consttype 23 :constlen 4 :constbyval true :constisnull false :location 11 :constvalue 4 [ 1 0 0 0 0 0 0 0 ]} :resno 2 :resname a\ b :ressortgroupref 0 :resorigtbl 0 :resorigcol 0 :resjunk false} {TARGETENTRY :expr {VAR :varno 1 :varattno 2 :vartype 25 :location 20} :resno 3 :resname :resno :ressortgroupref 0 :resorigtbl 16390 :resorigcol 2 :resjunk false} {TARGETENTRY :expr {SUBLINK :subLinkType 4 :subselect {QUERY :commandType 1 :targetList ({TARGETENTRY :expr {CONST :consttype 23} :resno 1 :resname \?column\? :ressortgroupref 0 :resorigtbl 0 :resorigcol 0 :resjunk false}) :stmt_len 0} :location 40} :resno 4 :resname s :ressortgroupref 0 :resorigtbl 0 :resorigcol 0 :resjunk false}) :override 0 :onConflict <> :stmt_location 0 :stmt_len 80})"#;

    #[test]
    fn reads_target_lists() {
        let t = view_targets(EV_ACTION);
        assert_eq!(
            t,
            vec![
                TargetEntry {
                    resno: 1,
                    table: 16390,
                    column: 1
                },
                TargetEntry {
                    resno: 2,
                    table: 0,
                    column: 0
                },
                TargetEntry {
                    resno: 3,
                    table: 16390,
                    column: 2
                },
                TargetEntry {
                    resno: 4,
                    table: 0,
                    column: 0
                },
            ]
        );
        assert!(view_targets("").is_empty());
        assert!(view_targets("({QUERY :targetList (").is_empty());
        assert!(view_targets("({QUERY :targetList <>})").is_empty());
        assert_eq!(
            parse_node_tree(r"(a\ b \(c)"),
            Some(Item::List(vec![
                Item::Token("a b".into()),
                Item::Token("(c".into())
            ]))
        );
    }

    #[test]
    fn follows_views_of_views() {
        let mut targets = HashMap::new();
        // view 2 over table 1 (columns 1, 2); view 3 over view 2 (its column 2, then 1)
        targets.insert(
            2,
            vec![
                TargetEntry {
                    resno: 1,
                    table: 1,
                    column: 1,
                },
                TargetEntry {
                    resno: 2,
                    table: 1,
                    column: 2,
                },
            ],
        );
        targets.insert(
            3,
            vec![
                TargetEntry {
                    resno: 1,
                    table: 2,
                    column: 2,
                },
                TargetEntry {
                    resno: 2,
                    table: 2,
                    column: 1,
                },
                TargetEntry {
                    resno: 3,
                    table: 0,
                    column: 0,
                },
            ],
        );
        let mut r = resolve_view_columns(&targets, &[3, 2]);
        r.sort();
        assert_eq!(
            r,
            vec![(2, 1, 1, 1), (2, 2, 1, 2), (3, 1, 1, 2), (3, 2, 1, 1)]
        );
    }
}
