-- Templates and provisioning: tenancy.create_template, tenancy.templates,
-- tenancy.drop_template, tenancy.provision, tenancy.provision_many and
-- settings inheritance through tenancy.setting; tampering and every error.
BEGIN;
SELECT plan(59);

CREATE SCHEMA t21;
-- A small ESG-like schema: composite-key self-referencing organisations,
-- uuid-key sites, bigserial data points with a generated column, composite
-- tenant-aware metrics, and a leaf table used to test a disabled table.
CREATE TABLE t21.orgs (tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, parent_id bigint, name text NOT NULL,
    PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, parent_id) REFERENCES t21.orgs (tenant_id, id));
CREATE TABLE t21.sites (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id uuid NOT NULL, org_id bigint NOT NULL,
    name text NOT NULL, UNIQUE (tenant_id, id), FOREIGN KEY (tenant_id, org_id) REFERENCES t21.orgs (tenant_id, id));
CREATE TABLE t21.metrics (tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, code text NOT NULL,
    PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, code));
CREATE TABLE t21.points (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL, site_id uuid NOT NULL, metric_id bigint NOT NULL,
    value numeric NOT NULL, pct numeric GENERATED ALWAYS AS (value / 10) STORED,
    FOREIGN KEY (tenant_id, site_id) REFERENCES t21.sites (tenant_id, id),
    FOREIGN KEY (tenant_id, metric_id) REFERENCES t21.metrics (tenant_id, id));
CREATE TABLE t21.notes (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL, body text);
SELECT bool_and(tenancy.enable(t) IS NOT NULL) AS enabled
  FROM unnest(ARRAY['t21.orgs', 't21.sites', 't21.metrics', 't21.points', 't21.notes']::regclass[]) t \gset

-- Content with keys replaced by what they point at.
CREATE FUNCTION t21.canon(t uuid) RETURNS SETOF text LANGUAGE sql AS $$
    SELECT 'org|' || o.name || '|' || COALESCE(p.name, '-') FROM t21.orgs o
      LEFT JOIN t21.orgs p ON p.tenant_id = o.tenant_id AND p.id = o.parent_id WHERE o.tenant_id = t
    UNION ALL SELECT 'site|' || s.name || '|' || o.name FROM t21.sites s JOIN t21.orgs o ON o.tenant_id = s.tenant_id AND o.id = s.org_id
      WHERE s.tenant_id = t
    UNION ALL SELECT 'metric|' || m.code FROM t21.metrics m WHERE m.tenant_id = t
    UNION ALL SELECT concat_ws('|', 'point', s.name, m.code, p.value, p.pct) FROM t21.points p
      JOIN t21.sites s ON s.tenant_id = p.tenant_id AND s.id = p.site_id
      JOIN t21.metrics m ON m.tenant_id = p.tenant_id AND m.id = p.metric_id WHERE p.tenant_id = t
    UNION ALL SELECT 'note|' || n.body FROM t21.notes n WHERE n.tenant_id = t
$$;
CREATE FUNCTION t21.rows(t uuid) RETURNS bigint LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM t21.orgs WHERE tenant_id = t) + (SELECT count(*) FROM t21.sites WHERE tenant_id = t)
         + (SELECT count(*) FROM t21.metrics WHERE tenant_id = t) + (SELECT count(*) FROM t21.points WHERE tenant_id = t)
         + (SELECT count(*) FROM t21.notes WHERE tenant_id = t)
$$;

SELECT tenancy.create_tenant('t21-src', 'Template Source', industry => 'energy',
                             settings => '{"locale": "en", "currency": "EUR", "fy_start": 1}') AS src \gset
DO $$
DECLARE
    t uuid := (SELECT id FROM tenancy.tenants WHERE slug = 't21-src');
    o1 bigint; o2 bigint;
BEGIN
    INSERT INTO t21.orgs (tenant_id, name) VALUES (t, 'HQ') RETURNING id INTO o1;
    INSERT INTO t21.orgs (tenant_id, name, parent_id) VALUES (t, 'Plant division', o1) RETURNING id INTO o2;
    INSERT INTO t21.sites (tenant_id, org_id, name) SELECT t, CASE WHEN i % 2 = 0 THEN o1 ELSE o2 END, 'site ' || i
      FROM generate_series(1, 4) i;
    INSERT INTO t21.metrics (tenant_id, code) VALUES (t, 'scope1'), (t, 'scope2'), (t, 'energy');
    INSERT INTO t21.points (tenant_id, site_id, metric_id, value)
        SELECT t, s.id, m.id, p * 10 FROM t21.sites s, t21.metrics m, generate_series(1, 3) p
         WHERE s.tenant_id = t AND m.tenant_id = t;
    INSERT INTO t21.notes (tenant_id, body) VALUES (t, 'welcome');
END
$$;
CREATE TEMP TABLE t21_original AS SELECT c FROM t21.canon(:'src') c;

-- create_template
SELECT tenancy.create_template('t21-basic', 't21-src', description => 'ESG starter') AS tpl \gset
SELECT is((SELECT rows FROM tenancy.templates WHERE name = 't21-basic'), 46::bigint, 'create_template snapshots every row of the source (46)');
SELECT is((SELECT row_counts FROM tenancy.templates WHERE name = 't21-basic'),
          '{"t21.orgs": 2, "t21.sites": 4, "t21.metrics": 3, "t21.points": 36, "t21.notes": 1}'::jsonb, 'with rows per table');
SELECT is((SELECT industry FROM tenancy.templates WHERE id = :'tpl'), 'energy', 'industry defaults to the source tenant''s');
SELECT is((SELECT row(times_used, tenants)::text FROM tenancy.templates WHERE id = :'tpl'), '(0,0)', 'a new template has not been used');
SELECT is((SELECT details -> 'rows' FROM tenancy.audit_log WHERE action = 'create_template' ORDER BY seq DESC LIMIT 1),
          (SELECT row_counts FROM tenancy.templates WHERE id = :'tpl'), 'create_template is audited with rows per table');
SELECT ok((SELECT checksum ~ '^[0-9a-f]{64}$' FROM tenancy.templates WHERE id = :'tpl'), 'the template carries a SHA-256 checksum');

-- The template is independent of later changes to its source.
DELETE FROM t21.points WHERE tenant_id = :'src';
UPDATE t21.sites SET name = 'renamed' WHERE tenant_id = :'src';
UPDATE tenancy.tenants SET settings = '{"locale": "xx"}' WHERE id = :'src';

-- provision
SELECT tenancy.provision('t21-basic', 't21-new', 'New Co', plan => 'pro', settings => '{"locale": "de", "extra": true}') AS new \gset
SELECT is(t21.rows(:'new'), 46::bigint, 'provision copies every template row, whatever happened to the source since');
SELECT bag_eq(format('SELECT * FROM t21.canon(%L)', :'new'), 'SELECT c FROM t21_original',
              'the provisioned content equals the snapshot after mapping keys');
SELECT is((SELECT count(*) FROM t21.sites s WHERE s.tenant_id = :'new' AND s.id IN (SELECT id FROM t21.sites WHERE tenant_id = :'src')),
          0::bigint, 'global keys get new values');
SELECT is((SELECT count(*) FROM t21.points p JOIN t21.sites s ON s.id = p.site_id WHERE p.tenant_id = :'new' AND s.tenant_id <> :'new'),
          0::bigint, 'every foreign key points inside the new tenant');
SELECT ok((SELECT bool_and(pct = value / 10) FROM t21.points WHERE tenant_id = :'new'), 'generated columns are recomputed');
SELECT is((SELECT settings FROM tenancy.tenants WHERE id = :'new'),
          '{"locale": "de", "currency": "EUR", "fy_start": 1, "extra": true}'::jsonb,
          'settings = the template''s settings overlaid by the given ones');
SELECT is((SELECT row(plan, industry)::text FROM tenancy.tenants WHERE id = :'new'), '(pro,energy)', 'plan as given, industry from the template');
SELECT is((SELECT row(times_used, tenants)::text FROM tenancy.templates WHERE id = :'tpl'), '(1,1)', 'templates counts the use');
SELECT is((SELECT details -> 'rows' FROM tenancy.audit_log WHERE action = 'provision' ORDER BY seq DESC LIMIT 1),
          '{"t21.orgs": 2, "t21.sites": 4, "t21.metrics": 3, "t21.points": 36, "t21.notes": 1}'::jsonb,
          'provision is audited with rows per table');
SELECT is((SELECT tenant_id FROM tenancy.audit_log WHERE action = 'provision' ORDER BY seq DESC LIMIT 1), :'new'::uuid,
          'the audit entry names the new tenant');

-- Settings inheritance through tenancy.setting(key): own value wins over the parent chain.
SELECT tenancy.provision('t21-basic', 't21-kid', 'Kid', parent => 't21-new', settings => '{"locale": "fr"}') AS kid \gset
SELECT tenancy.create_tenant('t21-grandkid', 'Grandkid', parent => 't21-kid', settings => '{"theme": "dark"}') AS grandkid \gset
UPDATE tenancy.tenants SET settings = settings - 'currency' WHERE id = :'kid';
SELECT is((SELECT parent_id FROM tenancy.tenants WHERE id = :'kid'), :'new'::uuid, 'provision with parent => places the tenant in the tree');
SELECT tenancy.set_tenant('t21-grandkid') IS NOT NULL AS ctx \gset
SELECT is(tenancy.setting('theme'), '"dark"'::jsonb, 'setting: the tenant''s own value');
SELECT is(tenancy.setting('locale'), '"fr"'::jsonb, 'setting: the parent''s value when the tenant has none');
SELECT is(tenancy.setting('currency'), '"EUR"'::jsonb, 'setting: the grandparent''s value when neither has one');
SELECT is(tenancy.setting('nothing'), NULL::jsonb, 'setting: NULL when no tenant on the chain has the key');
SELECT tenancy.set_tenant('t21-kid') IS NOT NULL AS ctx \gset
SELECT is(tenancy.setting('locale'), '"fr"'::jsonb, 'setting: own value wins over the parent''s');
SELECT tenancy.clear_tenant() IS NULL AS ctx \gset
SELECT is(tenancy.setting('locale'), NULL::jsonb, 'setting: NULL without a current tenant');
SELECT throws_ok($$SELECT tenancy.setting(NULL)$$, '22004', NULL, 'setting(NULL): 22004');
CREATE ROLE t21_member NOLOGIN;
GRANT tenancy_member TO t21_member;
SET ROLE t21_member;
SELECT tenancy.set_tenant('t21-grandkid') IS NOT NULL AS ctx \gset
SELECT tenancy.setting('currency') AS member_currency,
       (SELECT count(*) FROM tenancy.tenants WHERE slug = 't21-new') AS member_sees_parent \gset
SELECT tenancy.clear_tenant() IS NULL AS ctx \gset
RESET ROLE;
SELECT is(:'member_currency'::text, '"EUR"'::text, 'setting: a member reads inherited values it cannot see in the registry');
SELECT is(:'member_sees_parent'::int, 0, '(the member indeed cannot read its ancestors'' registry rows)');
-- inside a SECURITY DEFINER function owned by a role bound to a tenant,
-- setting() reads the settings of the tenant current_tenant() names there,
-- not of the tenant the caller set
CREATE ROLE t21_owner NOLOGIN;
GRANT tenancy_member TO t21_owner;
SELECT tenancy.bind_role('t21_owner', 't21-kid');
CREATE FUNCTION public.t21_ctx() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
    AS $$ SELECT tenancy.current_tenant()::text || ' ' || COALESCE(tenancy.setting('theme')::text, 'none') $$;
ALTER FUNCTION public.t21_ctx() OWNER TO t21_owner;
GRANT EXECUTE ON FUNCTION public.t21_ctx() TO t21_member;
SET ROLE t21_member;
SELECT tenancy.set_tenant('t21-grandkid') IS NOT NULL AS ctx \gset
SELECT public.t21_ctx() AS definer_ctx \gset
SELECT tenancy.clear_tenant() IS NULL AS ctx \gset
RESET ROLE;
SELECT is(:'definer_ctx', :'kid' || ' none',
          'setting() resolves the tenant as current_tenant() does, also inside a bound owner''s SECURITY DEFINER function');
SELECT tenancy.unbind_role('t21_owner');

-- provision_many: 100 tenants, all or nothing.
SELECT count(*) AS bulk FROM tenancy.provision_many('t21-basic',
    (SELECT jsonb_agg(jsonb_build_object('slug', 't21-bulk-' || i, 'name', 'Bulk ' || i, 'plan', 'starter',
                                         'settings', jsonb_build_object('n', i)) ORDER BY i)
       FROM generate_series(1, 100) i)) \gset
SELECT is(:bulk::int, 100, 'provision_many returns 100 ids');
SELECT is((SELECT count(*) FROM tenancy.tenants WHERE slug LIKE 't21-bulk-%'), 100::bigint, 'and 100 tenants exist');
SELECT is((SELECT count(DISTINCT t21.rows(id)) FROM tenancy.tenants WHERE slug LIKE 't21-bulk-%'), 1::bigint,
          'every bulk tenant has the same rows');
SELECT is((SELECT sum(t21.rows(id)) FROM tenancy.tenants WHERE slug LIKE 't21-bulk-%'), 4600::numeric, '46 rows each');
SELECT is((SELECT count(DISTINCT id) FROM t21.sites WHERE tenant_id IN (SELECT id FROM tenancy.tenants WHERE slug LIKE 't21-bulk-%')),
          400::bigint, 'each bulk tenant got its own site keys');
SELECT is((SELECT settings ->> 'n' FROM tenancy.tenants WHERE slug = 't21-bulk-42'), '42', 'per-tenant settings are applied');
SELECT is((SELECT row(times_used, tenants)::text FROM tenancy.templates WHERE id = :'tpl'), '(102,102)', 'templates counts every use');
SELECT is((SELECT jsonb_array_length(details -> 'tenants') FROM tenancy.audit_log WHERE action = 'provision_many' ORDER BY seq DESC LIMIT 1),
          100, 'provision_many is audited');
SELECT throws_ok($$SELECT * FROM tenancy.provision_many('t21-basic',
    '[{"slug": "t21-m1", "name": "M1"}, {"slug": "t21-m2", "name": "M2"}, {"slug": "t21-m1", "name": "again"}]')$$,
    '23505', NULL, 'provision_many with a duplicate slug: 23505');
SELECT is((SELECT count(*) FROM tenancy.tenants WHERE slug IN ('t21-m1', 't21-m2')), 0::bigint,
          'provision_many is all or nothing: no tenant of the failed batch remains');
SELECT throws_like($$SELECT * FROM tenancy.provision_many('t21-basic', '[{"slug": "t21-m1", "name": "M1"}, {"slug": "t21-m3"}]')$$,
    'tenants[1] (t21-m3):%', 'the error names the failing element');
SELECT throws_ok($$SELECT * FROM tenancy.provision_many('t21-basic', '{"slug": "x"}')$$, '22023', NULL, 'tenants not an array: 22023');
SELECT throws_ok($$SELECT * FROM tenancy.provision_many('t21-basic', '[1]')$$, '22023', NULL, 'an element not an object: 22023');

-- Tampering: a changed snapshot (or checksum) is refused before anything is written.
UPDATE tenancy.template_store SET snapshot = jsonb_set(snapshot, '{tables,t21.metrics,0,code}', '"evil"') WHERE id = :'tpl';
SELECT throws_ok($$SELECT tenancy.provision('t21-basic', 't21-evil', 'Evil')$$, 'XX001', NULL, 'tampered snapshot: XX001');
SELECT throws_ok($$SELECT * FROM tenancy.provision_many('t21-basic', '[{"slug": "t21-evil", "name": "Evil"}]')$$, 'XX001', NULL,
                 'tampered snapshot in provision_many: XX001');
SELECT is((SELECT count(*) FROM tenancy.tenants WHERE slug = 't21-evil'), 0::bigint, 'nothing is written from a tampered template');
SELECT tenancy.create_template('t21-other', 't21-new', tables => ARRAY['t21.orgs', 't21.notes']::regclass[]) AS tpl2 \gset
UPDATE tenancy.template_store SET checksum = repeat('0', 64) WHERE id = :'tpl2';
SELECT throws_ok($$SELECT tenancy.provision('t21-other', 't21-evil', 'Evil')$$, 'XX001', NULL, 'tampered checksum: XX001');

-- Other errors.
SELECT throws_ok($$SELECT tenancy.provision('t21-nope', 't21-x', 'X')$$, 'P0002', NULL, 'unknown template: P0002');
SELECT throws_ok($$SELECT tenancy.create_template('t21-basic', 't21-src')$$, '23505', NULL, 'template name taken: 23505');
SELECT throws_ok($$SELECT tenancy.create_template(NULL, 't21-src')$$, '22004', NULL, 'template name NULL: 22004');
SELECT throws_ok($$SELECT tenancy.create_template('t21-x', 't21-nobody')$$, 'P0002', NULL, 'create_template from an unknown tenant: P0002');
CREATE TABLE t21.loose (id int, tenant_id uuid);
SELECT throws_ok($$SELECT tenancy.create_template('t21-x', 't21-src', tables => ARRAY['t21.loose']::regclass[])$$, '55000', NULL,
                 'create_template of a table that is not managed: 55000');
SELECT tenancy.create_template('t21-notes', 't21-src', tables => ARRAY['t21.notes']::regclass[]) IS NOT NULL AS n \gset
SELECT throws_ok($$SELECT tenancy.provision('t21-notes', 't21-new', 'X')$$, '23505', NULL, 'provision with a slug taken: 23505');
SELECT throws_ok($$SELECT tenancy.provision('t21-notes', 't21-x', 'X', parent => 't21-nobody')$$, 'P0002', NULL, 'provision under an unknown parent: P0002');
SELECT throws_ok($$SELECT tenancy.provision('t21-notes', 't21-x', 'X', settings => '[1]')$$, '22023', NULL, 'provision with settings not an object: 22023');
SET client_min_messages = warning;
SELECT tenancy.disable('t21.notes') IS NOT NULL AS d \gset
RESET client_min_messages;
SELECT throws_ok($$SELECT tenancy.provision('t21-notes', 't21-x', 'X')$$, '55000', NULL, 'a template table no longer managed: 55000');
SELECT is((SELECT count(*) FROM tenancy.tenants WHERE slug = 't21-x'), 0::bigint, 'failed provisioning leaves no tenant');

-- drop_template
SELECT tenancy.drop_template('t21-basic') IS NULL AS dropped \gset
SELECT is((SELECT count(*) FROM tenancy.templates WHERE name = 't21-basic'), 0::bigint, 'drop_template removes the template');
SELECT is(t21.rows(:'new'), 46::bigint, 'tenants provisioned from it keep their rows');
SELECT throws_ok($$SELECT tenancy.drop_template('t21-basic')$$, 'P0002', NULL, 'drop_template of an unknown template: P0002');

-- Who may call.
CREATE ROLE t21_admin NOLOGIN;
GRANT tenancy_admin TO t21_admin;
SET ROLE t21_admin;
SELECT throws_ok($$SELECT tenancy.provision('t21-other', 't21-y', 'Y')$$, '42501', NULL, 'tenancy_admin may not provision: 42501');
SELECT throws_ok($$SELECT count(*) FROM tenancy.templates$$, '42501', NULL, 'tenancy_admin may not read templates: 42501');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
