-- pg_tenancy demo data: four tenants, one a subsidiary of another.
INSERT INTO esg.units (code, name) VALUES
    ('tCO2e', 'tonnes of CO2 equivalent'), ('MWh', 'megawatt hours'),
    ('m3', 'cubic metres'), ('t', 'tonnes'), ('pct', 'percent');

SELECT tenancy.create_tenant('acme', 'Acme Corporation', plan => 'enterprise', industry => 'manufacturing');
SELECT tenancy.create_tenant('acme-europe', 'Acme Europe GmbH', parent => 'acme', plan => 'enterprise', industry => 'manufacturing');
SELECT tenancy.create_tenant('globex', 'Globex Energy', plan => 'pro', industry => 'energy');
SELECT tenancy.create_tenant('initech', 'Initech Software', plan => 'starter', industry => 'software');

DO $$
DECLARE
    t record;
    org bigint;
    sub bigint;
BEGIN
    FOR t IN SELECT slug, name FROM tenancy.tenants ORDER BY slug LOOP
        PERFORM tenancy.set_tenant(t.slug, true);
        INSERT INTO esg.organisations (name, country) VALUES (t.name, 'US') RETURNING id INTO org;
        INSERT INTO esg.organisations (name, country, parent_org_id)
            VALUES (t.name || ' Operations', 'DE', org) RETURNING id INTO sub;
        INSERT INTO esg.reporting_entities (organisation_id, name, kind)
            SELECT CASE WHEN i % 2 = 0 THEN org ELSE sub END, t.name || ' site ' || i,
                   (ARRAY['plant', 'office', 'warehouse'])[1 + i % 3]
              FROM generate_series(1, 4) i;
        INSERT INTO esg.metrics (code, name, unit) VALUES
            ('scope1', 'Scope 1 emissions', 'tCO2e'), ('scope2', 'Scope 2 emissions', 'tCO2e'),
            ('energy', 'Energy consumption', 'MWh'), ('water', 'Water withdrawal', 'm3'),
            ('waste', 'Waste generated', 't');
        INSERT INTO esg.data_points (entity_id, metric_id, period, value)
            SELECT e.id, m.id, make_date(2025, month, 1), round((random() * 1000)::numeric, 2)
              FROM esg.reporting_entities e
             CROSS JOIN esg.metrics m
             CROSS JOIN generate_series(1, 12) month
             WHERE e.tenant_id = tenancy.current_tenant() AND m.tenant_id = tenancy.current_tenant();
    END LOOP;
END
$$;
SELECT tenancy.clear_tenant();

-- Demo logins: acme_app and globex_app are members bound to their tenant;
-- demo_viewer is a read-only viewer that picks its tenant with set_tenant;
-- demo_superadmin sees every tenant (each access audited).
DO $$
DECLARE r text[];
BEGIN
    FOREACH r SLICE 1 IN ARRAY ARRAY[['acme_app', 'tenancy_member'], ['globex_app', 'tenancy_member'],
                                     ['demo_viewer', 'tenancy_viewer'], ['demo_superadmin', 'tenancy_superadmin']] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r[1]) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r[1]);
        END IF;
        EXECUTE format('GRANT %I TO %I', r[2], r[1]);
    END LOOP;
END
$$;
SELECT tenancy.bind_role('acme_app', 'acme');
SELECT tenancy.bind_role('globex_app', 'globex');
