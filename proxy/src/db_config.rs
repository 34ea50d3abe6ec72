//! In-database configuration (PostgREST's `db-config` and `db-pre-config`):
//! `pgrst.*` settings of the login role, read at start and on
//! `NOTIFY pgrst, 'reload config'`, winning over flags, environment and file.
//!
//! ```sql
//! ALTER ROLE authenticator SET pgrst.db_schemas = 'tenant1, tenant2';
//! ALTER ROLE authenticator IN DATABASE app SET pgrst.db_max_rows = '1000';
//! NOTIFY pgrst, 'reload config';
//! ```
//!
//! Priority, as in PostgREST: the role's setting in this database, then the
//! role's setting for all databases, then what the `db-pre-config` function
//! sets with `set_config('pgrst.…', …, true)`.

use crate::Config;

/// The settings that may come from the database (PostgREST v12's list),
/// by their names after `pgrst.`.
pub const KEYS: &[&str] = &[
    "db_aggregates_enabled",
    "db_anon_role",
    "db_extra_search_path",
    "db_hoisted_tx_settings",
    "db_max_rows",
    "db_plan_enabled",
    "db_pre_request",
    "db_prepared_statements",
    "db_root_spec",
    "db_schemas",
    "db_tx_end",
    "jwt_aud",
    "jwt_cache_max_lifetime",
    "jwt_role_claim_key",
    "jwt_secret",
    "jwt_secret_is_base64",
    "openapi_mode",
    "openapi_security_active",
    "openapi_server_proxy_uri",
    "server_cors_allowed_origins",
    "server_timing_enabled",
    "server_trace_header",
];

/// The role's `pgrst.*` settings, this database's before every database's.
const ROLE_SETTINGS: &str = r#"
WITH setting AS (
  SELECT s.setdatabase AS database, pg_catalog.unnest(s.setconfig) AS kv
  FROM pg_catalog.pg_db_role_setting s
  WHERE s.setrole = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = session_user)
    AND s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))
), pair AS (
  SELECT database, pg_catalog.split_part(kv, '=', 1) AS k, pg_catalog.substr(kv, pg_catalog.strpos(kv, '=') + 1) AS v
  FROM setting
)
SELECT DISTINCT ON (k) pg_catalog.substr(k, 7) AS key, v
FROM pair WHERE k = ANY($1::text[])
ORDER BY k, database DESC
"#;

/// `(key, value)` of the settings the database holds, keys without the
/// `pgrst.` prefix. Run in one transaction that is rolled back (the
/// pre-config function's `set_config` calls are local to it).
pub async fn read(
    client: &tokio_postgres::Client,
    pre_config: Option<&str>,
) -> Result<Vec<(String, String)>, String> {
    let err = |e: tokio_postgres::Error| crate::pg::error_chain(&e);
    let names: Vec<String> = KEYS.iter().map(|k| format!("pgrst.{k}")).collect();
    client.batch_execute("BEGIN READ ONLY").await.map_err(err)?;
    let res = async {
        let mut out: Vec<(String, String)> = Vec::new();
        if let Some(f) = pre_config {
            client
                .batch_execute(&format!("SELECT {}()", crate::db::qualified_function(f)))
                .await
                .map_err(|e| format!("db-pre-config {f}: {}", err(e)))?;
            let rows = client
                .query_typed(
                    "SELECT k, pg_catalog.current_setting(k, true) FROM pg_catalog.unnest($1::text[]) AS k",
                    &[(&names, tokio_postgres::types::Type::TEXT_ARRAY)],
                )
                .await
                .map_err(err)?;
            for r in rows {
                let (k, v): (String, Option<String>) = (r.get(0), r.get(1));
                // unset, or set to '' by the function: not a setting
                if let Some(v) = v.filter(|v| !v.is_empty()) {
                    out.push((k["pgrst.".len()..].to_string(), v));
                }
            }
        }
        let rows = client
            .query_typed(
                ROLE_SETTINGS,
                &[(&names, tokio_postgres::types::Type::TEXT_ARRAY)],
            )
            .await
            .map_err(err)?;
        for r in rows {
            let (k, v): (String, String) = (r.get(0), r.get(1));
            out.retain(|(o, _)| *o != k);
            out.push((k, v));
        }
        Ok::<_, String>(out)
    }
    .await;
    let end = client.batch_execute("ROLLBACK").await;
    let out = res?;
    end.map_err(err)?;
    Ok(out)
}

/// The settings of one role the login role can switch to (PostgREST's
/// impersonated role settings), applied as transaction-local settings to
/// every request that runs as that role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleSettings {
    /// `(name, value)` as `ALTER ROLE … SET` stored them.
    pub settings: Vec<(String, String)>,
    /// Its `default_transaction_isolation`, lowercase, when set.
    pub isolation: Option<String>,
}

/// `ALTER ROLE r [IN DATABASE d] SET name = value` of the roles the login
/// role is a direct member of, this database's value before every
/// database's; only settings the login role may set (context `user`, or
/// `GRANT SET ON PARAMETER` on PostgreSQL 15+), as PostgREST.
const IMPERSONATED_SETTINGS: &str = r#"
WITH kv AS (
  SELECT r.rolname::text AS role, s.setdatabase AS database,
    pg_catalog.split_part(x, '=', 1) AS k, pg_catalog.substr(x, pg_catalog.strpos(x, '=') + 1) AS v
  FROM pg_catalog.pg_auth_members m
  JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
  JOIN pg_catalog.pg_db_role_setting s ON s.setrole = r.oid
    AND s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))
  CROSS JOIN LATERAL pg_catalog.unnest(s.setconfig) AS x
  WHERE m.member = (SELECT u.oid FROM pg_catalog.pg_roles u WHERE u.rolname = session_user)
)
SELECT DISTINCT ON (kv.role, kv.k) kv.role, kv.k, kv.v
FROM kv JOIN pg_catalog.pg_settings ps ON ps.name = kv.k AND (ps.context = 'user' __PRIVILEGE__)
ORDER BY kv.role, kv.k, kv.database DESC
"#;

/// Read [`RoleSettings`] of every role the login role can switch to.
pub async fn role_settings(
    client: &tokio_postgres::Client,
) -> Result<std::collections::HashMap<String, RoleSettings>, String> {
    let err = |e: tokio_postgres::Error| crate::pg::error_chain(&e);
    let version: i32 = client
        .query_one(
            "SELECT pg_catalog.current_setting('server_version_num')::int4",
            &[],
        )
        .await
        .map_err(err)?
        .get(0);
    let privilege = match version >= 150000 {
        true => "OR pg_catalog.has_parameter_privilege(session_user, ps.name, 'SET')",
        false => "",
    };
    let sql = IMPERSONATED_SETTINGS.replace("__PRIVILEGE__", privilege);
    let mut out: std::collections::HashMap<String, RoleSettings> = Default::default();
    for r in client.query(sql.as_str(), &[]).await.map_err(err)? {
        let (role, k, v): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let entry = out.entry(role).or_default();
        if k == "default_transaction_isolation" {
            entry.isolation = Some(v.to_ascii_lowercase());
        } else {
            entry.settings.push((k, v));
        }
    }
    Ok(out)
}

/// Apply database settings to `c`. Values are parsed as the command line
/// parses them (`true`/`false`, numbers); a bad one is an error naming the
/// setting, and `c` is left as it was.
pub fn apply(c: &mut Config, pairs: &[(String, String)]) -> Result<(), String> {
    use clap::Parser;
    if pairs.is_empty() {
        return Ok(());
    }
    let mut args = vec!["tenancy-proxy".to_string()];
    for (k, v) in pairs {
        if !KEYS.contains(&k.as_str()) {
            return Err(format!("pgrst.{k}: not a setting the database can hold"));
        }
        args.push(format!("--{}={v}", k.replace('_', "-")));
    }
    let f = Config::try_parse_from(&args).map_err(|e| {
        let e = e.to_string();
        let first = e.lines().next().unwrap_or_default().to_string();
        format!("settings from the database (pgrst.*): {first}")
    })?;
    let mut n = c.clone();
    for (k, _) in pairs {
        match k.as_str() {
            "db_aggregates_enabled" => n.db_aggregates_enabled = f.db_aggregates_enabled,
            "db_anon_role" => n.db_anon_role = f.db_anon_role.clone(),
            "db_extra_search_path" => n.db_extra_search_path = f.db_extra_search_path.clone(),
            "db_hoisted_tx_settings" => n.db_hoisted_tx_settings = f.db_hoisted_tx_settings.clone(),
            "db_max_rows" => n.db_max_rows = f.db_max_rows,
            "db_plan_enabled" => n.db_plan_enabled = f.db_plan_enabled,
            "db_pre_request" => n.db_pre_request = f.db_pre_request.clone(),
            "db_prepared_statements" => n.db_prepared_statements = f.db_prepared_statements,
            "db_root_spec" => n.db_root_spec = f.db_root_spec.clone(),
            "db_schemas" => n.db_schemas = f.db_schemas.clone(),
            "db_tx_end" => n.db_tx_end = f.db_tx_end.clone(),
            "jwt_aud" => n.jwt_aud = f.jwt_aud.clone(),
            "jwt_cache_max_lifetime" => n.jwt_cache_max_lifetime = f.jwt_cache_max_lifetime,
            "jwt_role_claim_key" => n.jwt_role_claim_key = f.jwt_role_claim_key.clone(),
            "jwt_secret" => n.jwt_secret = f.jwt_secret.clone(),
            "jwt_secret_is_base64" => n.jwt_secret_is_base64 = f.jwt_secret_is_base64,
            "openapi_mode" => n.openapi_mode = f.openapi_mode.clone(),
            "openapi_security_active" => n.openapi_security_active = f.openapi_security_active,
            "openapi_server_proxy_uri" => {
                n.openapi_server_proxy_uri = f.openapi_server_proxy_uri.clone()
            }
            "server_cors_allowed_origins" => {
                n.server_cors_allowed_origins = f.server_cors_allowed_origins.clone()
            }
            "server_timing_enabled" => n.server_timing_enabled = f.server_timing_enabled,
            "server_trace_header" => n.server_trace_header = f.server_trace_header.clone(),
            _ => unreachable!("checked against KEYS"),
        }
    }
    n.validate()?;
    *c = n;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn database_settings_override_the_rest() {
        let mut c = Config::for_uri("postgresql://a@localhost/db", "api");
        c.db_max_rows = Some(10);
        c.jwt_aud = Some("keep".into());
        apply(
            &mut c,
            &pairs(&[
                ("db_schemas", "t1, t2"),
                ("db_max_rows", "1000"),
                ("db_aggregates_enabled", "true"),
                ("openapi_mode", "ignore-privileges"),
                ("db_tx_end", "rollback-allow-override"),
            ]),
        )
        .unwrap();
        assert_eq!(c.schemas(), ["t1", "t2"]);
        assert_eq!(c.db_max_rows, Some(1000));
        assert!(c.db_aggregates_enabled);
        assert_eq!(c.openapi_mode, "ignore-privileges");
        assert_eq!(c.db_tx_end, "rollback-allow-override");
        // untouched
        assert_eq!(c.jwt_aud.as_deref(), Some("keep"));
        assert_eq!(c.db_uri, "postgresql://a@localhost/db");
        // every key is a flag
        for k in KEYS {
            let flag = k.replace('_', "-");
            assert!(
                <Config as clap::CommandFactory>::command()
                    .get_arguments()
                    .any(|a| a.get_long() == Some(flag.as_str())),
                "{k}"
            );
        }
    }

    #[test]
    fn bad_database_settings_change_nothing() {
        let mut c = Config::for_uri("postgresql://a@localhost/db", "api");
        let before = format!("{c:?}");
        for bad in [
            &[("db_max_rows", "many")][..],
            &[("db_schemas", "x"), ("openapi_mode", "sometimes")][..],
            &[("db_uri", "postgresql://elsewhere")][..],
            &[("db_aggregates_enabled", "perhaps")][..],
            &[("db_tx_end", "rolback")][..],
        ] {
            let e = apply(&mut c, &pairs(bad)).unwrap_err();
            assert!(e.contains("pgrst") || e.contains("openapi-mode"), "{e}");
            assert_eq!(format!("{c:?}"), before);
        }
    }
}
