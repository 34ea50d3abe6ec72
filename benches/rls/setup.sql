-- pg_tenancy RLS-overhead benchmark: the data set.
-- Run by scripts/bench.sh as a superuser in a fresh database, with
--   psql -v tenants=1000 -v role=bench_app -v demo_schema=demo/schema.sql
-- It builds the demo ESG schema (demo/schema.sql, unchanged) at scale, then
-- identical copies of the largest table (data_points) in schema bench:
--   bench.data_points_rls    managed with tenancy.enable (the default, flat policy)
--   bench.data_points_hier   managed with tenancy.enable(hierarchical => true)
--   bench.data_points_plain  no row level security at all
-- Same columns, defaults, foreign keys and indexes, same rows in the same
-- physical order. Per tenant: 2 organisations, 8 reporting entities,
-- 10 metrics, 25 monthly periods, so 8 * 10 * 25 = 2,000 data points; with
-- 1,000 tenants data_points holds 2,000,000 rows (and so does each copy).
\set ON_ERROR_STOP on
\set entities 8
\set metrics 10
\set months 25
\set per_tenant 2000

\echo '-- demo schema (demo/schema.sql)'
\i :demo_schema

INSERT INTO esg.units (code, name) VALUES
    ('tCO2e', 'tonnes of CO2 equivalent'), ('MWh', 'megawatt hours'),
    ('m3', 'cubic metres'), ('t', 'tonnes'), ('pct', 'percent');

\echo '-- tenants (tenancy.create_tenant, one call each)'
SELECT count(tenancy.create_tenant(
           format('bench-%s', lpad(k::text, 5, '0')), format('Bench Tenant %s', k),
           plan => (ARRAY['starter', 'pro', 'enterprise'])[1 + k % 3],
           industry => (ARRAY['manufacturing', 'energy', 'software', 'retail'])[1 + k % 4]))
  FROM generate_series(1, :tenants) k;

CREATE SCHEMA bench;
-- Tenant number k -> uuid, its first data point id and one of its entities.
CREATE TABLE bench.tenant_map (
    k         int PRIMARY KEY,
    tenant_id uuid NOT NULL UNIQUE,
    slug      text NOT NULL,
    first_id  bigint NOT NULL,
    entity_id uuid NOT NULL,
    metric_lo bigint NOT NULL
);
INSERT INTO bench.tenant_map
SELECT k, t.id, t.slug, (k - 1)::bigint * :per_tenant + 1,
       md5(format('bench-entity-%s-1', k))::uuid, (k - 1)::bigint * :metrics + 1
  FROM tenancy.tenants t, LATERAL (SELECT substr(t.slug, 7)::int AS k) s
 WHERE t.slug LIKE 'bench-%';

\echo '-- demo tables at scale (set-based, as superuser; keys checked below)'
-- Foreign keys are checked once, set-based, after the load instead of per row.
SET session_replication_role = replica;
INSERT INTO esg.organisations (tenant_id, id, parent_org_id, name, country) OVERRIDING SYSTEM VALUE
SELECT tenant_id, 2 * k - 1, NULL, format('Bench Tenant %s', k), 'US' FROM bench.tenant_map;
INSERT INTO esg.organisations (tenant_id, id, parent_org_id, name, country) OVERRIDING SYSTEM VALUE
SELECT tenant_id, 2 * k, 2 * k - 1, format('Bench Tenant %s Operations', k), 'DE' FROM bench.tenant_map;
INSERT INTO esg.reporting_entities (id, tenant_id, organisation_id, name, kind)
SELECT md5(format('bench-entity-%s-%s', k, e))::uuid, tenant_id, 2 * k - 1 + e % 2,
       format('Bench Tenant %s site %s', k, e), (ARRAY['plant', 'office', 'warehouse'])[1 + e % 3]
  FROM bench.tenant_map, generate_series(1, :entities) e;
INSERT INTO esg.metrics (tenant_id, id, code, name, unit) OVERRIDING SYSTEM VALUE
SELECT tenant_id, metric_lo + m - 1, c.code, c.name, c.unit
  FROM bench.tenant_map,
       (VALUES (1, 'scope1', 'Scope 1 emissions', 'tCO2e'), (2, 'scope2', 'Scope 2 emissions', 'tCO2e'),
               (3, 'scope3', 'Scope 3 emissions', 'tCO2e'), (4, 'energy', 'Energy consumption', 'MWh'),
               (5, 'renewable', 'Renewable energy share', 'pct'), (6, 'water', 'Water withdrawal', 'm3'),
               (7, 'water-recycled', 'Water recycled', 'm3'), (8, 'waste', 'Waste generated', 't'),
               (9, 'waste-recycled', 'Waste recycled', 't'), (10, 'hazardous', 'Hazardous waste', 't')) c(m, code, name, unit);
-- id = first_id + ((month * entities) + entity - 1) * metrics + metric - 1:
-- each tenant's rows are one contiguous id range, in physical order.
INSERT INTO esg.data_points (id, tenant_id, entity_id, metric_id, period, value)
SELECT first_id + ((p * :entities) + e - 1) * :metrics + m - 1, tenant_id,
       md5(format('bench-entity-%s-%s', k, e))::uuid, metric_lo + m - 1,
       (date '2023-01-01' + make_interval(months => p))::date,
       ((k * 7919 + p * 104729 + e * 1299709 + m * 15485863) % 100000) / 100.0
  FROM bench.tenant_map, generate_series(0, :months - 1) p, generate_series(1, :entities) e,
       generate_series(1, :metrics) m
 ORDER BY 1;
RESET session_replication_role;
SELECT setval(pg_get_serial_sequence('esg.organisations', 'id'), 2 * :tenants);
SELECT setval(pg_get_serial_sequence('esg.metrics', 'id'), :metrics * :tenants);
SELECT setval(pg_get_serial_sequence('esg.data_points', 'id'), :per_tenant * :tenants);
-- The foreign keys the load skipped, checked set-based: all counts must be 0.
SELECT (SELECT count(*) FROM esg.organisations o WHERE o.parent_org_id IS NOT NULL AND NOT EXISTS
           (SELECT 1 FROM esg.organisations p WHERE p.tenant_id = o.tenant_id AND p.id = o.parent_org_id))
     + (SELECT count(*) FROM esg.reporting_entities r WHERE NOT EXISTS
           (SELECT 1 FROM esg.organisations o WHERE o.tenant_id = r.tenant_id AND o.id = r.organisation_id))
     + (SELECT count(*) FROM esg.metrics m WHERE NOT EXISTS (SELECT 1 FROM esg.units u WHERE u.code = m.unit))
     + (SELECT count(*) FROM esg.data_points d WHERE NOT EXISTS
           (SELECT 1 FROM esg.reporting_entities r WHERE r.tenant_id = d.tenant_id AND r.id = d.entity_id)
           OR NOT EXISTS (SELECT 1 FROM esg.metrics m WHERE m.tenant_id = d.tenant_id AND m.id = d.metric_id))
       AS broken_keys \gset
SELECT :broken_keys = 0 AS keys_ok \gset
\if :keys_ok
\else
    \echo 'error: the generated data breaks' :broken_keys 'foreign keys'
    SELECT 1/0;
\endif

\echo '-- identical copies of esg.data_points'
-- The demo table's shape (demo/schema.sql) plus one index for the period
-- range scans; enable() adds no index of its own because (tenant_id, period)
-- already starts with the tenant column.
CREATE FUNCTION bench.make_copy(tbl text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($ddl$
        CREATE TABLE bench.%1$I (
            id        bigserial PRIMARY KEY,
            tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant(),
            entity_id uuid NOT NULL,
            metric_id bigint NOT NULL,
            period    date NOT NULL,
            value     numeric NOT NULL
        );
        INSERT INTO bench.%1$I SELECT id, tenant_id, entity_id, metric_id, period, value
          FROM esg.data_points ORDER BY id;
        SELECT setval(pg_get_serial_sequence('bench.%1$I', 'id'), (SELECT max(id) FROM bench.%1$I));
        CREATE INDEX %2$I ON bench.%1$I (tenant_id, period);
        ALTER TABLE bench.%1$I
            ADD FOREIGN KEY (tenant_id, entity_id) REFERENCES esg.reporting_entities (tenant_id, id),
            ADD FOREIGN KEY (tenant_id, metric_id) REFERENCES esg.metrics (tenant_id, id);
        $ddl$, tbl, tbl || '_tenant_period_idx');
END
$$;
SELECT bench.make_copy('data_points_rls');
SELECT bench.make_copy('data_points_hier');
SELECT bench.make_copy('data_points_plain');
DROP FUNCTION bench.make_copy(text);

SELECT tenancy.enable('bench.data_points_rls') IS NOT NULL AS enabled;
SELECT tenancy.enable('bench.data_points_hier', hierarchical => true) IS NOT NULL AS enabled;

\echo '-- the benchmark login: a plain member (not a superuser: superusers bypass RLS)'
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') AS need_role \gset
\if :need_role
    CREATE ROLE :"role" LOGIN;
\endif
ALTER ROLE :"role" NOSUPERUSER NOBYPASSRLS;
SET client_min_messages = warning;  -- "already a member" when the role exists
GRANT tenancy_member TO :"role";
RESET client_min_messages;
GRANT USAGE ON SCHEMA bench TO :"role";
GRANT SELECT, INSERT ON bench.data_points_plain TO :"role";
GRANT USAGE ON SEQUENCE bench.data_points_plain_id_seq TO :"role";

CREATE TABLE bench.meta (
    tenants    int NOT NULL,
    per_tenant int NOT NULL,
    version    text NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO bench.meta (tenants, per_tenant, version) VALUES (:tenants, :per_tenant, :'version');
