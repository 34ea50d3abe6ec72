-- Benchmark schema for benches/clone/run.sh: six FK-linked tables with
-- global keys (bigserial, identity, uuid), a self-referencing tree and a
-- jsonb column. `bc` is managed by pg_tenancy; `bb` is an identical,
-- unmanaged mirror used by the baseline (plain INSERT ... SELECT, same
-- primary keys, indexes and foreign keys, no remapping).
CREATE EXTENSION IF NOT EXISTS pg_tenancy;

CREATE FUNCTION public.bench_tables(s text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($ddl$
        CREATE SCHEMA %1$I;
        CREATE TABLE %1$I.orgs (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL,
            parent_id bigint REFERENCES %1$I.orgs (id), name text NOT NULL);
        CREATE TABLE %1$I.sites (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id uuid NOT NULL,
            org_id bigint NOT NULL REFERENCES %1$I.orgs (id), name text NOT NULL, country text);
        CREATE TABLE %1$I.assets (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL,
            site_id uuid NOT NULL REFERENCES %1$I.sites (id), name text NOT NULL, kind text);
        CREATE TABLE %1$I.metrics (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id uuid NOT NULL,
            code text NOT NULL, unit text NOT NULL);
        CREATE TABLE %1$I.readings (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL,
            asset_id bigint NOT NULL REFERENCES %1$I.assets (id), metric_id bigint NOT NULL REFERENCES %1$I.metrics (id),
            period date NOT NULL, value numeric NOT NULL, meta jsonb);
        CREATE TABLE %1$I.comments (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL,
            reading_id bigint NOT NULL REFERENCES %1$I.readings (id), body text NOT NULL);
        CREATE INDEX ON %1$I.orgs (tenant_id); CREATE INDEX ON %1$I.sites (tenant_id);
        CREATE INDEX ON %1$I.assets (tenant_id); CREATE INDEX ON %1$I.metrics (tenant_id);
        CREATE INDEX ON %1$I.readings (tenant_id); CREATE INDEX ON %1$I.comments (tenant_id);
        -- foreign-key columns indexed, as in any real schema (deletes stay fast)
        CREATE INDEX ON %1$I.orgs (parent_id); CREATE INDEX ON %1$I.sites (org_id);
        CREATE INDEX ON %1$I.assets (site_id); CREATE INDEX ON %1$I.readings (asset_id);
        CREATE INDEX ON %1$I.readings (metric_id); CREATE INDEX ON %1$I.comments (reading_id);
    $ddl$, s);
END
$$;
SELECT public.bench_tables('bc');
SELECT public.bench_tables('bb');
SELECT tenancy.enable(t) FROM unnest(ARRAY['bc.orgs', 'bc.sites', 'bc.assets', 'bc.metrics', 'bc.readings', 'bc.comments']::regclass[]) t;

-- Fill tenant t with orgs (a tree), sites, assets, metrics, readings, comments.
CREATE FUNCTION public.bench_seed(t uuid, n_orgs int, n_sites int, n_assets int, n_metrics int, n_readings int, n_comments int)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bc.orgs (tenant_id, name) SELECT t, 'org ' || i FROM generate_series(1, n_orgs) i;
    UPDATE bc.orgs o SET parent_id = p.id
      FROM (SELECT id, row_number() OVER (ORDER BY id) rn FROM bc.orgs WHERE tenant_id = t) c
      JOIN (SELECT id, row_number() OVER (ORDER BY id) rn FROM bc.orgs WHERE tenant_id = t) p ON p.rn = c.rn / 2
     WHERE o.id = c.id AND c.rn > 1;
    INSERT INTO bc.sites (tenant_id, org_id, name, country)
        SELECT t, o.id, 'site ' || i, (ARRAY['DE', 'US', 'FR'])[1 + i % 3]
          FROM generate_series(1, n_sites) i
          JOIN (SELECT id, row_number() OVER (ORDER BY id) rn FROM bc.orgs WHERE tenant_id = t) o ON o.rn = 1 + i % n_orgs;
    INSERT INTO bc.assets (tenant_id, site_id, name, kind)
        SELECT t, s.id, 'asset ' || i, (ARRAY['boiler', 'meter', 'truck'])[1 + i % 3]
          FROM generate_series(1, n_assets) i
          JOIN (SELECT id, row_number() OVER (ORDER BY id) rn FROM bc.sites WHERE tenant_id = t) s ON s.rn = 1 + i % n_sites;
    INSERT INTO bc.metrics (tenant_id, code, unit) SELECT t, 'm' || i, 'kWh' FROM generate_series(1, n_metrics) i;
    INSERT INTO bc.readings (tenant_id, asset_id, metric_id, period, value, meta)
        SELECT t, a.id, m.id, date '2025-01-01' + (i % 365), (i % 1000) * 1.25, jsonb_build_object('src', 'meter', 'i', i)
          FROM generate_series(1, n_readings) i
          JOIN (SELECT id, row_number() OVER (ORDER BY id) rn FROM bc.assets WHERE tenant_id = t) a ON a.rn = 1 + i % n_assets
          JOIN (SELECT id, row_number() OVER (ORDER BY id) rn FROM bc.metrics WHERE tenant_id = t) m ON m.rn = 1 + i % n_metrics;
    INSERT INTO bc.comments (tenant_id, reading_id, body)
        SELECT t, r.id, 'checked ' || i
          FROM generate_series(1, n_comments) i
          JOIN (SELECT id, row_number() OVER (ORDER BY id) rn FROM bc.readings WHERE tenant_id = t) r ON r.rn = 1 + (i * 7) % n_readings;
END
$$;

-- The baseline: the physical floor of copying the tenant inside Postgres,
-- one plain INSERT ... SELECT per table into the mirror, no remapping.
CREATE FUNCTION public.bench_baseline(t uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bb.orgs SELECT * FROM bc.orgs WHERE tenant_id = t;
    INSERT INTO bb.sites SELECT * FROM bc.sites WHERE tenant_id = t;
    INSERT INTO bb.assets SELECT * FROM bc.assets WHERE tenant_id = t;
    INSERT INTO bb.metrics OVERRIDING SYSTEM VALUE SELECT * FROM bc.metrics WHERE tenant_id = t;
    INSERT INTO bb.readings SELECT * FROM bc.readings WHERE tenant_id = t;
    INSERT INTO bb.comments SELECT * FROM bc.comments WHERE tenant_id = t;
END
$$;
