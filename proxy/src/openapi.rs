//! `GET /`: the OpenAPI (Swagger 2.0) description of the request's schema,
//! as PostgREST's `openapi-mode = follow-privileges` gives it: only the
//! tables, views and functions the request's role may use, each table with
//! the methods its privileges allow, checked in the database as that role.
//!
//! The document follows PostgREST's `Response/OpenAPI.hs`: `info` (title
//! and description from the schema's comment), `host`/`basePath`, a path
//! per table or view (`get`, `post`, `patch`, `delete`) and per function
//! (`/rpc/name`: `get` with query parameters unless volatile, `post` with
//! the arguments object), `definitions` with one object per table (column
//! types as PostgreSQL names them in `format`, `required` for NOT NULL
//! columns, primary and foreign key notes and comments in `description`)
//! and the shared `parameters` the operations refer to.

use crate::auth::Identity;
use crate::config::ProxyUri;
use crate::db;
use crate::AppState;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value as Json};
use std::sync::Arc;
use tenancy_core::postgrest::schema::{Schema, Table};
use tenancy_core::postgrest::ApiError;

/// What the request's role may see of `$1` (everything when `$2`,
/// `openapi-mode = ignore-privileges`), as JSON texts: the schema's
/// comment, its relations (privileges per method, columns with
/// PostgREST's type names) and the functions it may execute. Run with an
/// empty search_path, so that types outside pg_catalog are qualified.
const INTROSPECT: &str = r#"
SELECT
  (SELECT d.description FROM pg_catalog.pg_namespace n
     JOIN pg_catalog.pg_description d ON d.objoid = n.oid AND d.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
    WHERE n.nspname = $1),
  coalesce((SELECT pg_catalog.json_agg(r ORDER BY r.name) FROM (
    SELECT c.relname AS name,
      pg_catalog.obj_description(c.oid, 'pg_class') AS description,
      $2 OR pg_catalog.has_table_privilege(c.oid, 'SELECT') OR pg_catalog.has_any_column_privilege(c.oid, 'SELECT') AS can_select,
      ($2 OR pg_catalog.has_table_privilege(c.oid, 'INSERT') OR pg_catalog.has_any_column_privilege(c.oid, 'INSERT'))
        AND (c.relkind IN ('r', 'p') OR (c.relkind IN ('v', 'f') AND (pg_catalog.pg_relation_is_updatable(c.oid, true) & 8) = 8)) AS can_insert,
      ($2 OR pg_catalog.has_table_privilege(c.oid, 'UPDATE') OR pg_catalog.has_any_column_privilege(c.oid, 'UPDATE'))
        AND (c.relkind IN ('r', 'p') OR (c.relkind IN ('v', 'f') AND (pg_catalog.pg_relation_is_updatable(c.oid, true) & 4) = 4)) AS can_update,
      ($2 OR pg_catalog.has_table_privilege(c.oid, 'DELETE'))
        AND (c.relkind IN ('r', 'p') OR (c.relkind IN ('v', 'f') AND (pg_catalog.pg_relation_is_updatable(c.oid, true) & 16) = 16)) AS can_delete,
      coalesce((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
          'name', a.attname,
          'description', pg_catalog.col_description(c.oid, a.attnum),
          'nullable', NOT (a.attnotnull OR (t.typtype = 'd' AND t.typnotnull)),
          'type', CASE
              WHEN t.typtype = 'd' AND bt.typnamespace = 'pg_catalog'::pg_catalog.regnamespace
                THEN pg_catalog.format_type(t.typbasetype, NULL)
              WHEN t.typtype <> 'd' AND t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace
                THEN pg_catalog.format_type(a.atttypid, NULL)
              ELSE pg_catalog.format_type(a.atttypid, a.atttypmod) END,
          'max_length', CASE WHEN coalesce(bt.oid, t.oid) IN ('pg_catalog.bpchar'::pg_catalog.regtype, 'pg_catalog.varchar'::pg_catalog.regtype)
                              AND coalesce(nullif(t.typtypmod, -1), a.atttypmod) > 4
                             THEN coalesce(nullif(t.typtypmod, -1), a.atttypmod) - 4 END,
          'default', CASE
              WHEN t.typbasetype <> 0 THEN pg_catalog.pg_get_expr(t.typdefaultbin, 0)
              WHEN a.attidentity = 'd' THEN pg_catalog.format('nextval(%s)', pg_catalog.quote_literal(
                pg_catalog.pg_get_serial_sequence(pg_catalog.format('%I.%I', n.nspname, c.relname), a.attname)))
              WHEN a.attgenerated = 's' THEN NULL
              ELSE pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) END,
          'enum', (SELECT pg_catalog.json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e
                    WHERE e.enumtypid = coalesce(bt.oid, t.oid))
        ) ORDER BY a.attnum)
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_catalog.pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
        LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS columns
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'f', 'p') AND NOT c.relispartition
  ) r WHERE r.can_select OR r.can_insert OR r.can_update OR r.can_delete), '[]')::text,
  coalesce((SELECT pg_catalog.json_agg(f ORDER BY f.name, f.nargs) FROM (
    SELECT p.proname AS name, p.pronargs AS nargs,
      pg_catalog.obj_description(p.oid, 'pg_proc') AS description,
      p.provolatile = 'v' AS volatile,
      coalesce((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
          'name', x.name,
          -- a type of the function's own schema is named bare, as PostgREST
          'type', CASE WHEN pg_catalog.starts_with(x.type::pg_catalog.regtype::text, pg_catalog.quote_ident(n.nspname) || '.')
                  THEN pg_catalog.substr(x.type::pg_catalog.regtype::text, pg_catalog.length(pg_catalog.quote_ident(n.nspname)) + 2)
                  ELSE x.type::pg_catalog.regtype::text END,
          'required', x.k <= p.pronargs - p.pronargdefaults, 'variadic', x.mode = 'v') ORDER BY x.k)
        FROM (SELECT u.name, u.type, u.mode, row_number() OVER (ORDER BY u.idx) AS k
              FROM unnest(coalesce(p.proallargtypes, p.proargtypes::pg_catalog.oid[]),
                          coalesce(p.proargmodes, pg_catalog.array_fill('i'::"char", ARRAY[p.pronargs])),
                          p.proargnames) WITH ORDINALITY AS u(type, mode, name, idx)
              WHERE u.mode IN ('i', 'b', 'v')) x), '[]') AS args
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = $1 AND p.prokind = 'f' AND ($2 OR pg_catalog.has_function_privilege(p.oid, 'EXECUTE'))
  ) f), '[]')::text
"#;

/// The relations and functions of a schema the request's role may use.
#[derive(Debug, Default)]
struct Visible {
    schema_comment: Option<String>,
    relations: Vec<Json>,
    functions: Vec<Json>,
}

/// Read what the role sees, in a read-only transaction as that role (the
/// same `set_config` of the role as a request's statement).
async fn visible(st: &AppState, identity: &Identity, schema: &str) -> Result<Visible, ApiError> {
    let auth = identity.authenticated;
    let ignore_privileges =
        st.live().config.openapi() == crate::config::OpenApiMode::IgnorePrivileges;
    let mut client = db::connection(st).await?;
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|e| db::db_error(&e, auth))?;
    tx.query(
        "SELECT pg_catalog.set_config('role', $1, true), pg_catalog.set_config('search_path', '', true)",
        &[&identity.role],
    )
    .await
    .map_err(|e| db::db_error(&e, auth))?;
    let row = tx
        .query_one(INTROSPECT, &[&schema, &ignore_privileges])
        .await
        .map_err(|e| db::db_error(&e, auth))?;
    let list = |i: usize| -> Vec<Json> {
        match serde_json::from_str::<Json>(row.get::<_, &str>(i)) {
            Ok(Json::Array(a)) => a,
            _ => Vec::new(),
        }
    };
    let out = Visible {
        schema_comment: row.get(0),
        relations: list(1),
        functions: list(2),
    };
    tx.rollback().await.map_err(|e| db::db_error(&e, auth))?;
    Ok(out)
}

/// PostgREST's Swagger type for a PostgreSQL type name (`None`: any JSON).
fn swagger_type(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "character varying" | "character" | "text" => "string",
        "boolean" => "boolean",
        "smallint" | "integer" | "bigint" => "integer",
        "numeric" | "real" | "double precision" => "number",
        "json" | "jsonb" => return None,
        t if t.ends_with("[]") => "array",
        _ => "string",
    })
}

/// `type`, `format` and (for arrays) `items` of a property.
fn typed(ty: &str) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("format".into(), json!(ty));
    if let Some(t) = swagger_type(ty) {
        m.insert("type".into(), json!(t));
    }
    if let Some(elem) = ty.strip_suffix("[]") {
        let mut items = Map::new();
        if let Some(t) = swagger_type(elem) {
            items.insert("type".into(), json!(t));
        }
        m.insert("items".into(), Json::Object(items));
    }
    m
}

/// A column default as a JSON value, as PostgREST shows it: for string
/// types the literal without its cast and quotes, otherwise the default's
/// text when it is JSON (a number, `true`), else nothing.
fn default_value(ty: &str, default: &str) -> Option<Json> {
    if swagger_type(ty) == Some("string") {
        let d = default
            .strip_suffix(&format!("::{ty}"))
            .map(|d| d.trim_matches('\''))
            .unwrap_or(default);
        Some(Json::String(d.to_string()))
    } else {
        serde_json::from_str(default).ok()
    }
}

/// A comment's first line (the summary) and the rest (the description).
fn summary_and_description(comment: Option<&str>) -> (Option<String>, Option<String>) {
    match comment {
        None => (None, None),
        Some(c) => match c.split_once('\n') {
            None => (Some(c.to_string()), None),
            Some((first, rest)) => {
                let rest = rest.trim_start_matches('\n');
                (
                    Some(first.to_string()),
                    (!rest.is_empty()).then(|| rest.to_string()),
                )
            }
        },
    }
}

fn text(v: &Json, k: &str) -> Option<String> {
    v.get(k).and_then(Json::as_str).map(str::to_string)
}

/// The single-column foreign key a column is, as `(table, column)`:
/// tables before views, as PostgREST picks it.
fn foreign_key_of(schema: &Schema, table: &Table, column: &str) -> Option<(String, String)> {
    let mut fks: Vec<_> = schema
        .foreign_keys
        .iter()
        .filter(|f| {
            f.schema == table.schema
                && f.table == table.name
                && f.columns.len() == 1
                && f.columns[0] == column
                && schema.table(&f.ref_schema, &f.ref_table).is_some()
        })
        .collect();
    fks.sort_by_key(|f| {
        schema
            .table(&f.ref_schema, &f.ref_table)
            .is_some_and(|t| t.is_view)
    });
    fks.first()
        .map(|f| (f.ref_table.clone(), f.ref_columns[0].clone()))
}

/// One definition: the table's columns as properties.
fn definition(schema: &Schema, table: &Table, rel: &Json) -> Json {
    let mut props = Map::new();
    let mut required = Vec::new();
    for c in rel["columns"].as_array().into_iter().flatten() {
        let Some(name) = text(c, "name") else {
            continue;
        };
        let ty = text(c, "type").unwrap_or_else(|| "text".into());
        let mut p = typed(&ty);
        if let Some(d) = text(c, "default").and_then(|d| default_value(&ty, &d)) {
            p.insert("default".into(), d);
        }
        if let Some(Json::Array(e)) = c.get("enum") {
            p.insert("enum".into(), Json::Array(e.clone()));
        }
        if let Some(n) = c.get("max_length").and_then(Json::as_i64) {
            p.insert("maxLength".into(), json!(n));
        }
        let mut notes = vec!["Note:".to_string()];
        if table.primary_key.contains(&name) {
            notes.push("This is a Primary Key.<pk/>".into());
        }
        if let Some((ft, fc)) = foreign_key_of(schema, table, &name) {
            notes.push(format!(
                "This is a Foreign Key to `{ft}.{fc}`.<fk table='{ft}' column='{fc}'/>"
            ));
        }
        let comment = text(c, "description");
        let description = if notes.len() > 1 {
            Some(format!(
                "{}{}",
                comment.map(|c| format!("{c}\n\n")).unwrap_or_default(),
                notes.join("\n")
            ))
        } else {
            comment
        };
        if let Some(d) = description {
            p.insert("description".into(), json!(d));
        }
        if c.get("nullable") == Some(&Json::Bool(false)) {
            required.push(json!(name));
        }
        props.insert(name, Json::Object(p));
    }
    let mut d = Map::new();
    if let Some(c) = text(rel, "description") {
        d.insert("description".into(), json!(c));
    }
    d.insert("type".into(), json!("object"));
    d.insert("properties".into(), Json::Object(props));
    if !required.is_empty() {
        d.insert("required".into(), Json::Array(required));
    }
    Json::Object(d)
}

fn param_ref(name: &str) -> Json {
    json!({ "$ref": format!("#/parameters/{name}") })
}

/// The path of a table or view: its methods, by privilege.
fn table_path(name: &str, rel: &Json, columns: &[String]) -> Json {
    let (summary, description) = summary_and_description(rel["description"].as_str());
    let op = |params: Vec<String>, responses: Json| {
        let mut o = Map::new();
        o.insert("tags".into(), json!([name]));
        if let Some(s) = &summary {
            o.insert("summary".into(), json!(s));
        }
        if let Some(d) = &description {
            o.insert("description".into(), json!(d));
        }
        o.insert(
            "parameters".into(),
            Json::Array(params.iter().map(|p| param_ref(p)).collect()),
        );
        o.insert("responses".into(), responses);
        Json::Object(o)
    };
    let filters: Vec<String> = columns
        .iter()
        .map(|c| format!("rowFilter.{name}.{c}"))
        .collect();
    let with = |extra: &[&str]| -> Vec<String> {
        filters
            .iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let mut item = Map::new();
    let allowed = |k: &str| rel[k].as_bool() == Some(true);
    if allowed("can_select") {
        item.insert(
            "get".into(),
            op(
                with(&[
                    "select",
                    "order",
                    "range",
                    "rangeUnit",
                    "offset",
                    "limit",
                    "preferCount",
                ]),
                json!({
                    "200": {
                        "description": "OK",
                        "schema": { "type": "array", "items": { "$ref": format!("#/definitions/{name}") } }
                    },
                    "206": { "description": "Partial Content" }
                }),
            ),
        );
    }
    if allowed("can_insert") {
        item.insert(
            "post".into(),
            op(
                vec![format!("body.{name}"), "select".into(), "preferPost".into()],
                json!({ "201": { "description": "Created" } }),
            ),
        );
    }
    if allowed("can_update") {
        item.insert(
            "patch".into(),
            op(
                with(&[&format!("body.{name}"), "preferReturn"]),
                json!({ "204": { "description": "No Content" } }),
            ),
        );
    }
    if allowed("can_delete") {
        item.insert(
            "delete".into(),
            op(
                with(&["preferReturn"]),
                json!({ "204": { "description": "No Content" } }),
            ),
        );
    }
    Json::Object(item)
}

/// The path of a function: `get` (unless volatile) with its arguments as
/// query parameters, `post` with them as a JSON object.
fn function_path(f: &Json) -> Json {
    let name = f["name"].as_str().unwrap_or_default();
    let args: Vec<&Json> = f["args"].as_array().into_iter().flatten().collect();
    let (summary, description) = summary_and_description(f["description"].as_str());
    let base = || {
        let mut o = Map::new();
        if let Some(s) = &summary {
            o.insert("summary".into(), json!(s));
        }
        if let Some(d) = &description {
            o.insert("description".into(), json!(d));
        }
        o.insert("tags".into(), json!([format!("(rpc) {name}")]));
        o.insert(
            "produces".into(),
            json!([
                "application/json",
                "application/vnd.pgrst.object+json;nulls=stripped",
                "application/vnd.pgrst.object+json"
            ]),
        );
        o.insert(
            "responses".into(),
            json!({ "200": { "description": "OK" } }),
        );
        o
    };
    let mut props = Map::new();
    let mut required = Vec::new();
    let mut query_params = Vec::new();
    for a in &args {
        let n = a["name"].as_str().unwrap_or_default();
        let ty = a["type"].as_str().unwrap_or("text");
        let req = a["required"].as_bool().unwrap_or(false);
        props.insert(n.to_string(), Json::Object(typed(ty)));
        if req {
            required.push(json!(n));
        }
        let mut p = Map::new();
        p.insert("name".into(), json!(n));
        p.insert("required".into(), json!(req));
        p.insert("in".into(), json!("query"));
        if a["variadic"].as_bool() == Some(true) {
            let elem = ty.strip_suffix("[]").unwrap_or(ty);
            p.insert("type".into(), json!(swagger_type(ty).unwrap_or("string")));
            let mut items = Map::new();
            items.insert("format".into(), json!(elem));
            if let Some(t) = swagger_type(elem) {
                items.insert("type".into(), json!(t));
            }
            p.insert("items".into(), Json::Object(items));
            p.insert("collectionFormat".into(), json!("multi"));
        } else {
            p.insert("format".into(), json!(ty));
            // Arrays are `{a,b}` text in a query string; any type needs one.
            let t = match swagger_type(ty) {
                Some("array") | None => "string",
                Some(t) => t,
            };
            p.insert("type".into(), json!(t));
        }
        query_params.push(Json::Object(p));
    }
    let mut body = Map::new();
    if let Some(d) = f["description"].as_str() {
        body.insert("description".into(), json!(d));
    }
    body.insert("type".into(), json!("object"));
    body.insert("properties".into(), Json::Object(props));
    if !required.is_empty() {
        body.insert("required".into(), Json::Array(required));
    }
    let mut post = base();
    post.insert(
        "parameters".into(),
        json!([
            { "name": "args", "required": true, "in": "body", "schema": Json::Object(body) },
            param_ref("preferParams"),
        ]),
    );
    let mut item = Map::new();
    if f["volatile"].as_bool() != Some(true) {
        let mut get = base();
        get.insert("parameters".into(), Json::Array(query_params));
        item.insert("get".into(), Json::Object(get));
    }
    item.insert("post".into(), Json::Object(post));
    Json::Object(item)
}

fn query_param(name: &str, description: &str) -> Json {
    json!({ "name": name, "description": description, "required": false, "in": "query", "type": "string" })
}

fn prefer_param(values: &[&str]) -> Json {
    let mut p = Map::new();
    p.insert("name".into(), json!("Prefer"));
    p.insert("description".into(), json!("Preference"));
    p.insert("required".into(), json!(false));
    p.insert("in".into(), json!("header"));
    p.insert("type".into(), json!("string"));
    if !values.is_empty() {
        p.insert("enum".into(), json!(values));
    }
    Json::Object(p)
}

/// A table's name and its columns with their descriptions.
type TableColumns = (String, Vec<(String, Option<String>)>);

/// The shared parameters (PostgREST's `makeParamDefs`), with the `Prefer`
/// values this proxy understands.
fn parameters(tables: &[TableColumns]) -> Map<String, Json> {
    let ret = [
        "return=representation",
        "return=minimal",
        "return=headers-only",
    ];
    let mut post: Vec<&str> = ret.to_vec();
    post.extend([
        "resolution=ignore-duplicates",
        "resolution=merge-duplicates",
    ]);
    let mut m = Map::new();
    m.insert(
        "preferParams".into(),
        prefer_param(&["params=single-object"]),
    );
    m.insert("preferReturn".into(), prefer_param(&ret));
    m.insert(
        "preferCount".into(),
        prefer_param(&["count=exact", "count=planned", "count=estimated"]),
    );
    m.insert("preferPost".into(), prefer_param(&post));
    m.insert("select".into(), query_param("select", "Filtering Columns"));
    m.insert(
        "on_conflict".into(),
        query_param("on_conflict", "On Conflict"),
    );
    m.insert("order".into(), query_param("order", "Ordering"));
    m.insert(
        "range".into(),
        json!({ "name": "Range", "description": "Limiting and Pagination", "required": false, "in": "header", "type": "string" }),
    );
    m.insert(
        "rangeUnit".into(),
        json!({ "name": "Range-Unit", "description": "Limiting and Pagination", "required": false, "in": "header", "type": "string", "default": "items" }),
    );
    m.insert(
        "offset".into(),
        query_param("offset", "Limiting and Pagination"),
    );
    m.insert(
        "limit".into(),
        query_param("limit", "Limiting and Pagination"),
    );
    for (t, cols) in tables {
        m.insert(
            format!("body.{t}"),
            json!({ "name": t, "description": t, "required": false, "in": "body",
                    "schema": { "$ref": format!("#/definitions/{t}") } }),
        );
        for (c, comment) in cols {
            let mut p = Map::new();
            p.insert("name".into(), json!(c));
            if let Some(d) = comment {
                p.insert("description".into(), json!(d));
            }
            p.insert("required".into(), json!(false));
            p.insert("in".into(), json!("query"));
            p.insert("type".into(), json!("string"));
            m.insert(format!("rowFilter.{t}.{c}"), Json::Object(p));
        }
    }
    m
}

/// The `host` of the document: `server-host:server-port`, a wildcard host
/// as `0.0.0.0` (PostgREST's `escapeHostName`).
fn host(st: &AppState) -> String {
    let h = match st.config.server_host.as_str() {
        "*" | "*4" | "!4" | "*6" | "!6" => "0.0.0.0",
        h => h,
    };
    format!("{h}:{}", st.config.server_port)
}

/// The document from what the role sees and the schema cache (only what
/// the cache knows is reachable through the API).
fn document(st: &AppState, schema: &Schema, ns: &str, seen: &Visible) -> Json {
    let mut paths = Map::new();
    paths.insert(
        "/".into(),
        json!({ "get": {
            "tags": ["Introspection"],
            "summary": "OpenAPI description (this document)",
            "produces": ["application/openapi+json", "application/json"],
            "responses": { "200": { "description": "OK" } }
        } }),
    );
    let mut defs = Map::new();
    let mut param_tables = Vec::new();
    for rel in &seen.relations {
        let Some(name) = rel["name"].as_str() else {
            continue;
        };
        let Some(table) = schema.table(ns, name) else {
            continue;
        };
        let cols: Vec<(String, Option<String>)> = rel["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((text(c, "name")?, text(c, "description"))))
            .collect();
        let names: Vec<String> = cols.iter().map(|(n, _)| n.clone()).collect();
        paths.insert(format!("/{name}"), table_path(name, rel, &names));
        defs.insert(name.to_string(), definition(schema, table, rel));
        param_tables.push((name.to_string(), cols));
    }
    // One path per function name: of its overloads the role may execute,
    // the one with the most parameters (as PostgREST's map keeps it).
    for f in &seen.functions {
        let Some(name) = f["name"].as_str() else {
            continue;
        };
        if !schema
            .functions
            .iter()
            .any(|c| c.schema == ns && c.name == name)
        {
            continue;
        }
        // an overload that cannot be called by name (unnamed parameters,
        // other than one raw-body parameter) is not in the schema cache:
        // not documented either
        let args = f["args"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let unnamed = |a: &Json| a["name"].as_str().is_none_or(str::is_empty);
        let raw_body = matches!(args, [a] if unnamed(a)
            && a["type"].as_str().is_some_and(|t| tenancy_core::postgrest::sql::RAW_BODY_TYPES.contains(&t)));
        if args.iter().any(unnamed) && !raw_body {
            continue;
        }
        paths.insert(format!("/rpc/{name}"), function_path(f));
    }
    let (title, description) = summary_and_description(seen.schema_comment.as_deref());
    // PostgREST v12's list, the null-stripping singular variant included
    let media = [
        "application/json",
        "application/vnd.pgrst.object+json;nulls=stripped",
        "application/vnd.pgrst.object+json",
        "text/csv",
    ];
    // `openapi-server-proxy-uri`: where clients reach the API (validated at startup)
    let (scheme, host, base_path) = match st
        .live()
        .config
        .openapi_server_proxy_uri
        .as_deref()
        .and_then(|u| ProxyUri::parse(u).ok())
    {
        Some(u) => (u.scheme, u.host, u.base_path),
        None => ("http".to_string(), host(st), "/".to_string()),
    };
    let mut doc = json!({
        "swagger": "2.0",
        "info": {
            "description": description.unwrap_or_else(|| "This is a dynamic API generated by tenancy-proxy, a PostgREST-compatible server.".into()),
            "title": title.unwrap_or_else(|| "tenancy-proxy API".into()),
            "version": env!("CARGO_PKG_VERSION"),
        },
        "externalDocs": {
            "description": "PostgREST Documentation",
            "url": "https://postgrest.org/en/v12/references/api.html",
        },
        "host": host,
        "basePath": base_path,
        "schemes": [scheme],
        "consumes": media,
        "produces": media,
        "paths": paths,
        "definitions": defs,
        "parameters": parameters(&param_tables),
    });
    if st.live().config.openapi_security_active {
        doc["security"] = json!([{ "JWT": [] }]);
        doc["securityDefinitions"] = json!({ "JWT": {
            "description": "Add the token prepending \"Bearer \" (without quotes) to it",
            "in": "header",
            "name": "Authorization",
            "type": "apiKey",
        } });
    }
    doc
}

/// Whether an `Accept` header admits the OpenAPI document: PostgREST
/// produces it for `application/openapi+json`, `application/json` and `*/*`.
fn acceptable(accept: Option<&str>) -> bool {
    let Some(a) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return true;
    };
    a.split(',').any(|part| {
        let m = part.split(';').next().unwrap_or("").trim();
        m.eq_ignore_ascii_case("application/openapi+json")
            || m.eq_ignore_ascii_case("application/json")
            || m == "*/*"
    })
}

/// Answer `GET /` (or `HEAD /`) for the request's role and schema.
pub async fn respond(
    st: &Arc<AppState>,
    identity: &Identity,
    ns: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if *method != Method::GET && *method != Method::HEAD {
        return Err(ApiError::new(
            405,
            "PGRST117",
            format!("Unsupported HTTP method: {method}"),
        ));
    }
    if st.live().config.openapi() == crate::config::OpenApiMode::Disabled {
        return Err(ApiError::new(
            404,
            "PGRST126",
            "Root endpoint metadata is disabled",
        ));
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if !acceptable(accept) {
        return Err(ApiError::new(
            406,
            "PGRST107",
            format!(
                "None of these media types are available: {}",
                accept.unwrap_or_default()
            ),
        ));
    }
    let seen = visible(st, identity, ns).await?;
    let doc = document(st, &st.schema(), ns, &seen);
    let body = if *method == Method::HEAD {
        String::new()
    } else {
        doc.to_string()
    };
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openapi+json; charset=utf-8"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_defaults_and_comments() {
        assert_eq!(swagger_type("bigint"), Some("integer"));
        assert_eq!(swagger_type("jsonb"), None);
        assert_eq!(swagger_type("text[]"), Some("array"));
        assert_eq!(swagger_type("uuid"), Some("string"));
        assert_eq!(
            Json::Object(typed("integer[]")),
            json!({ "format": "integer[]", "type": "array", "items": { "type": "integer" } })
        );
        assert_eq!(default_value("text", "'site'::text"), Some(json!("site")));
        assert_eq!(default_value("integer", "42"), Some(json!(42)));
        assert_eq!(default_value("bigint", "nextval('esg.s'::regclass)"), None);
        assert_eq!(
            default_value("uuid", "gen_random_uuid()"),
            Some(json!("gen_random_uuid()"))
        );
        assert_eq!(
            summary_and_description(Some("Title\n\nLonger text")),
            (Some("Title".into()), Some("Longer text".into()))
        );
        assert_eq!(
            summary_and_description(Some("One line")),
            (Some("One line".into()), None)
        );
        assert!(acceptable(None));
        assert!(acceptable(Some("application/openapi+json")));
        assert!(acceptable(Some("text/html, application/json;q=0.9")));
        assert!(!acceptable(Some("text/csv")));
        assert!(!acceptable(Some("application/vnd.pgrst.object+json")));
    }
}
