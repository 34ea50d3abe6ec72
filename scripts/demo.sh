#!/usr/bin/env bash
# make run: set up everything, start the cluster, (re)create the demo database,
# (re)start tenancy-proxy on it (scripts/proxy.sh) and print a JWT per demo tenant.
source "$(dirname "$0")/common.sh"
"$ROOT/scripts/deps.sh"
"$ROOT/scripts/install.sh"
"$ROOT/scripts/cluster.sh" start
DB="${DEMO_DB:-pg_tenancy_demo}"
"$ROOT/scripts/proxy.sh" stop   # it holds connections to the database we recreate
log "creating demo database $DB"
psql_db postgres -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" -c "CREATE DATABASE \"$DB\""
psql_db "$DB" -f "$ROOT/demo/schema.sql" >/dev/null
psql_db "$DB" -f "$ROOT/demo/data.sql" >/dev/null
psql_db "$DB" -c "SELECT slug, name, (SELECT slug FROM tenancy.tenants p WHERE p.id = t.parent_id) AS parent, plan FROM tenancy.tenants t ORDER BY slug"
URL="$(db_url "$DB")"
BASE="${URL%/*}"; BASE="${BASE#postgresql://}"; BASE="${BASE#*@}"
cat <<TXT

pg_tenancy demo is ready.  Connect:
  psql "$URL"

Try:
  -- as the DBA (superuser: RLS does not apply to superusers)
  SELECT * FROM tenancy.check_isolation();
  SELECT tenancy.policy_sql('esg.data_points');
  SELECT * FROM tenancy.verify_audit();

  -- as an application login bound to tenant acme (sees acme + acme-europe data points)
  psql "postgresql://acme_app@$BASE/$DB" -c "SELECT tenancy.current_tenant(), count(*) FROM esg.data_points"
  -- a viewer choosing its tenant
  psql "postgresql://demo_viewer@$BASE/$DB" -c "SELECT tenancy.set_tenant('globex'); SELECT name FROM esg.organisations"
  -- no tenant: no rows (fail closed)
  psql "postgresql://demo_viewer@$BASE/$DB" -c "SELECT count(*) FROM esg.data_points"

TXT
"$ROOT/scripts/proxy.sh" start
echo
echo "Stop the proxy and the cluster with: make stop"
