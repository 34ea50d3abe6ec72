-- tenancy.check_isolation: each kind of finding is reported with its fix,
-- and running the fix makes the finding go away.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(165);

SELECT tenancy.create_tenant('acme', 'Acme');
CREATE SCHEMA t07;
CREATE TABLE t07.ledger (id int, tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant(), amount numeric);
CREATE TABLE t07.orgledger (id int, org uuid NOT NULL, amount numeric);
CREATE TABLE t07.units (code text PRIMARY KEY);
SELECT tenancy.enable('t07.ledger');
SELECT tenancy.enable('t07.orgledger', tenant_column => 'org');
SELECT tenancy.register_reference('t07.units');

-- Findings about this file's objects (the linter looks at the whole database).
CREATE FUNCTION pg_temp.findings() RETURNS TABLE (severity text, object text, problem text, fix text)
LANGUAGE sql AS $$
    SELECT * FROM tenancy.check_isolation() f
     WHERE f.object ~ 't07[._]|tap07|tenancy\.(current_tenant|visible_tenants)'
$$;
-- The fix of the one finding on `obj` whose problem matches `pat`.
CREATE FUNCTION pg_temp.fix_of(obj text, pat text) RETURNS text LANGUAGE sql AS $$
    SELECT f.fix FROM pg_temp.findings() f WHERE f.object = obj AND f.problem ~ pat
$$;
CREATE FUNCTION pg_temp.has_finding(obj text, pat text) RETURNS boolean LANGUAGE sql AS $$
    SELECT EXISTS (SELECT 1 FROM pg_temp.findings() f WHERE f.object = obj AND f.problem ~ pat)
$$;

SELECT is_empty($$SELECT * FROM pg_temp.findings()$$, 'freshly enabled tables have no findings');

-- ---------------------------------------------------------------- RLS not enabled
ALTER TABLE t07.ledger DISABLE ROW LEVEL SECURITY;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.ledger' AND problem ~ 'not enabled'$$,
                  $$VALUES ('error', 'ALTER TABLE t07.ledger ENABLE ROW LEVEL SECURITY;')$$,
                  'RLS disabled: error with an ENABLE fix');
SELECT lives_ok(pg_temp.fix_of('t07.ledger', 'not enabled'), 'the ENABLE fix runs');
SELECT ok(NOT pg_temp.has_finding('t07.ledger', 'not enabled'), 'after the fix the finding is gone');

-- ---------------------------------------------------------------- RLS not forced
ALTER TABLE t07.ledger NO FORCE ROW LEVEL SECURITY;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.ledger' AND problem ~ 'not forced'$$,
                  $$VALUES ('error', 'ALTER TABLE t07.ledger FORCE ROW LEVEL SECURITY;')$$,
                  'RLS not forced: error with a FORCE fix');
SELECT lives_ok(pg_temp.fix_of('t07.ledger', 'not forced'), 'the FORCE fix runs');
SELECT ok(NOT pg_temp.has_finding('t07.ledger', 'not forced'), 'after the fix the finding is gone');

-- ---------------------------------------------------------------- generated policy missing
DROP POLICY tenancy_tenant_select ON t07.orgledger;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.orgledger' AND problem ~ 'policies are missing'$$,
                  $$VALUES ('error', 'SELECT tenancy.enable(''t07.orgledger'', ''org'');')$$,
                  'a generated policy dropped: error with an enable fix that keeps the column');
SELECT lives_ok(pg_temp.fix_of('t07.orgledger', 'policies are missing'), 'the enable fix runs');
SELECT ok(NOT pg_temp.has_finding('t07.orgledger', 'policies are missing'), 'after the fix the finding is gone');
SELECT is((SELECT tenant_column::text FROM tenancy.managed_tables WHERE relid = 't07.orgledger'::regclass), 'org',
          'the fix kept the tenant column');

-- the restrictive analyst / viewer policies are generated policies too: without
-- them a mistaken GRANT lets an analyst read raw rows or a viewer write
DROP POLICY tenancy_analyst_no_rows ON t07.ledger;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.ledger' AND problem ~ 'policies are missing'$$,
                  $$VALUES ('error', 'SELECT tenancy.enable(''t07.ledger'', ''tenant_id'');')$$,
                  'the analyst''s restrictive policy dropped: reported as a missing generated policy');
SELECT tenancy.enable('t07.ledger');
DROP POLICY tenancy_viewer_no_update ON t07.ledger;
SELECT ok(pg_temp.has_finding('t07.ledger', 'policies are missing'),
          'a viewer''s restrictive policy dropped: reported as a missing generated policy');
SELECT tenancy.enable('t07.ledger');

-- ---------------------------------------------------------------- permissive user policy without tenant
CREATE POLICY tap07_open ON t07.ledger FOR SELECT USING (true);
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'policy tap07_open on t07.ledger'$$,
                  $$VALUES ('error', 'DROP POLICY tap07_open ON t07.ledger;')$$,
                  'a permissive policy not restricting by tenant: error with a DROP fix');
SELECT lives_ok(pg_temp.fix_of('policy tap07_open on t07.ledger', 'does not restrict by tenant'), 'the DROP POLICY fix runs');
SELECT ok(NOT pg_temp.has_finding('policy tap07_open on t07.ledger', '.'), 'after the fix the finding is gone');
CREATE POLICY tap07_scoped ON t07.ledger FOR SELECT USING (tenant_id = tenancy.current_tenant() AND amount > 0);
SELECT ok(NOT pg_temp.has_finding('policy tap07_scoped on t07.ledger', '.'), 'a permissive policy that uses the tenant is not flagged');
CREATE POLICY tap07_restrict ON t07.ledger AS RESTRICTIVE FOR SELECT USING (amount > 0);
SELECT ok(NOT pg_temp.has_finding('policy tap07_restrict on t07.ledger', '.'), 'a restrictive policy without tenant is not flagged');
DROP POLICY tap07_scoped ON t07.ledger;
DROP POLICY tap07_restrict ON t07.ledger;
-- shapes that mention the comparison but let other tenants' rows through
CREATE POLICY tap07_coalesce ON t07.ledger FOR SELECT USING (tenant_id = COALESCE(tenancy.current_tenant(), tenant_id));
CREATE POLICY tap07_notfalse ON t07.ledger FOR SELECT USING ((tenant_id = tenancy.current_tenant()) IS NOT FALSE);
CREATE POLICY tap07_literal ON t07.ledger FOR SELECT USING ('(tenant_id = tenancy.current_tenant())' IS NOT NULL);
CREATE POLICY tap07_orbranch ON t07.ledger FOR SELECT USING (tenant_id = tenancy.current_tenant() OR amount > 1000);
CREATE POLICY tap07_anycheck ON t07.ledger FOR UPDATE USING (tenant_id = tenancy.current_tenant()) WITH CHECK (true);
CREATE POLICY tap07_nested ON t07.ledger FOR SELECT USING (amount > 1000 OR (amount > 0 AND tenant_id = tenancy.current_tenant() AND amount < 10));
CREATE POLICY tap07_setting ON t07.ledger FOR SELECT USING (tenant_id = current_setting('tenancy.tenant_id', true)::uuid);
SELECT set_eq($$SELECT object FROM pg_temp.findings() WHERE severity = 'error' AND problem ~ 'does not restrict by tenant'$$,
              ARRAY['policy tap07_coalesce on t07.ledger', 'policy tap07_notfalse on t07.ledger', 'policy tap07_literal on t07.ledger',
                    'policy tap07_orbranch on t07.ledger', 'policy tap07_anycheck on t07.ledger', 'policy tap07_nested on t07.ledger',
                    'policy tap07_setting on t07.ledger'],
              'COALESCE, IS NOT FALSE, a quoted comparison, an OR branch (also around an AND), an open WITH CHECK, the raw setting (a bound role can SET it): each an error');
-- a tenant column that needs quotes (EF Core's and Prisma's "TenantId"): the
-- generated policies pass, a policy on another quoted column does not
CREATE TABLE t07."Docs" ("TenantId" uuid NOT NULL, "OwnerId" uuid, body text);
SELECT tenancy.enable('t07."Docs"', 'TenantId');
CREATE INDEX ON t07."Docs" ("TenantId");
SELECT is_empty($$SELECT * FROM pg_temp.findings() WHERE object ~ 'Docs'$$, 'a quoted tenant column: the generated policies are not flagged');
CREATE POLICY tap07_owner ON t07."Docs" FOR SELECT USING ("OwnerId" = tenancy.current_tenant());
CREATE POLICY tap07_owner_and ON t07."Docs" FOR SELECT USING ("OwnerId" = tenancy.current_tenant() AND body IS NOT NULL);
CREATE POLICY tap07_quoted_ok ON t07."Docs" FOR SELECT USING ("TenantId" = tenancy.current_tenant() AND "OwnerId" IS NOT NULL);
SELECT set_eq($$SELECT object FROM pg_temp.findings() WHERE object ~ 'Docs' AND problem ~ 'does not restrict by tenant'$$,
              ARRAY['policy tap07_owner on t07."Docs"', 'policy tap07_owner_and on t07."Docs"'],
              'a quoted tenant column: another quoted column compared with the tenant is an error, the tenant column is not');
DROP TABLE t07."Docs";
-- a write policy on a reference table for roles beyond the super admin
CREATE POLICY tap07_ref_ins ON t07.units FOR INSERT TO PUBLIC WITH CHECK (true);
CREATE POLICY tap07_ref_sa ON t07.units FOR UPDATE TO tenancy_superadmin USING (true);
CREATE POLICY tap07_ref_read ON t07.units FOR SELECT TO PUBLIC USING (code <> 'x');
SELECT results_eq($$SELECT object, severity, fix FROM pg_temp.findings() WHERE problem ~ 'reference table'$$,
                  $$VALUES ('policy tap07_ref_ins on t07.units', 'error', 'DROP POLICY tap07_ref_ins ON t07.units;')$$,
                  'a reference table: a write policy for everyone is an error, the super admin''s and a read policy are not');
SELECT lives_ok(pg_temp.fix_of('policy tap07_ref_ins on t07.units', 'reference table'), 'the DROP POLICY fix runs');
SELECT ok(NOT pg_temp.has_finding('policy tap07_ref_ins on t07.units', '.'), 'after the fix the finding is gone');
DROP POLICY tap07_ref_sa ON t07.units;
DROP POLICY tap07_ref_read ON t07.units;
-- the linter reads the same under standard_conforming_strings = off (its
-- patterns are E'' literals)
SET LOCAL standard_conforming_strings = off;
SELECT set_eq($$SELECT object FROM pg_temp.findings() WHERE severity = 'error' AND problem ~ 'does not restrict by tenant'$$,
              ARRAY['policy tap07_nested on t07.ledger', 'policy tap07_setting on t07.ledger', 'policy tap07_coalesce on t07.ledger',
                    'policy tap07_notfalse on t07.ledger', 'policy tap07_literal on t07.ledger', 'policy tap07_orbranch on t07.ledger',
                    'policy tap07_anycheck on t07.ledger'],
              'standard_conforming_strings off: the same findings');
SET LOCAL standard_conforming_strings = on;
DROP POLICY tap07_nested ON t07.ledger;
DROP POLICY tap07_setting ON t07.ledger;
DROP POLICY tap07_coalesce ON t07.ledger;
DROP POLICY tap07_notfalse ON t07.ledger;
DROP POLICY tap07_literal ON t07.ledger;
DROP POLICY tap07_orbranch ON t07.ledger;
DROP POLICY tap07_anycheck ON t07.ledger;
CREATE POLICY tap07_conj ON t07.ledger FOR UPDATE USING (amount > 0 AND tenant_id = tenancy.current_tenant() AND amount < 10)
    WITH CHECK (tenant_id = tenancy.current_tenant());
SELECT ok(NOT pg_temp.has_finding('policy tap07_conj on t07.ledger', '.'),
          'the comparison as a middle conjunct is a restriction');
DROP POLICY tap07_conj ON t07.ledger;

-- ---------------------------------------------------------------- rules, unmanaged parents
CREATE TABLE t07.archive (LIKE t07.ledger);
CREATE RULE tap07_copy AS ON INSERT TO t07.ledger DO ALSO INSERT INTO t07.archive SELECT NEW.*;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'rule tap07_copy on t07.ledger'$$,
                  $$VALUES ('error', 'DROP RULE tap07_copy ON t07.ledger;')$$,
                  'a rule on a managed table (it can copy rows out of reach of the policies): error');
SELECT lives_ok(pg_temp.fix_of('rule tap07_copy on t07.ledger', 'rule'), 'the DROP RULE fix runs');
DROP TABLE t07.archive;
CREATE TABLE t07.up (tenant_id uuid NOT NULL, x int NOT NULL) PARTITION BY LIST (x);
CREATE TABLE t07.up1 PARTITION OF t07.up FOR VALUES IN (1);
SELECT tenancy.enable('t07.up1');
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.up1' AND problem ~ 'not managed'$$,
                  $$VALUES ('error', 'SELECT tenancy.enable(''t07.up'', ''tenant_id'');')$$,
                  'a managed partition of an unmanaged parent (reading the parent skips its policies): error');
SELECT lives_ok(pg_temp.fix_of('t07.up1', 'not managed'), 'the enable fix runs');
SELECT ok(NOT pg_temp.has_finding('t07.up1', 'partition or child'), 'after the fix the finding is gone');
DROP TABLE t07.up;

-- ---------------------------------------------------------------- OR in a policy
CREATE POLICY tap07_or ON t07.ledger AS RESTRICTIVE FOR SELECT USING (tenant_id = tenancy.current_tenant() OR amount IS NULL);
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'policy tap07_or on t07.ledger'$$,
                  $$VALUES ('warning', 'DROP POLICY tap07_or ON t07.ledger; -- then create one policy per role (CREATE POLICY ... TO role)')$$,
                  'OR in a policy: warning with a fix');
SELECT lives_ok(pg_temp.fix_of('policy tap07_or on t07.ledger', 'OR'), 'the fix runs');
SELECT ok(NOT pg_temp.has_finding('policy tap07_or on t07.ledger', '.'), 'after the fix the finding is gone');
CREATE POLICY tap07_order ON t07.ledger AS RESTRICTIVE FOR SELECT USING (tenant_id IS NOT NULL AND amount IS NOT NULL);
SELECT ok(NOT pg_temp.has_finding('policy tap07_order on t07.ledger', 'OR'), 'AND without OR is not flagged');
DROP POLICY tap07_order ON t07.ledger;

-- ---------------------------------------------------------------- missing tenant index
DROP INDEX t07.ledger_tenant_id_idx;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.ledger' AND problem ~ 'no index'$$,
                  $$VALUES ('warning', 'CREATE INDEX ON t07.ledger (tenant_id);')$$,
                  'missing tenant index: warning with a CREATE INDEX fix');
SELECT lives_ok(pg_temp.fix_of('t07.ledger', 'no index'), 'the CREATE INDEX fix runs');
SELECT ok(NOT pg_temp.has_finding('t07.ledger', 'no index'), 'after the fix the finding is gone');

-- ---------------------------------------------------------------- nullable tenant column
ALTER TABLE t07.ledger ALTER COLUMN tenant_id DROP NOT NULL;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.ledger' AND problem ~ 'allows NULL'$$,
                  $$VALUES ('warning', 'ALTER TABLE t07.ledger ALTER COLUMN tenant_id SET NOT NULL;')$$,
                  'nullable tenant column: warning with a SET NOT NULL fix');
SELECT lives_ok(pg_temp.fix_of('t07.ledger', 'allows NULL'), 'the SET NOT NULL fix runs');
SELECT ok(NOT pg_temp.has_finding('t07.ledger', 'allows NULL'), 'after the fix the finding is gone');

-- ---------------------------------------------------------------- unmanaged table with a tenant-looking column
CREATE TABLE t07.stray (id int, tenant_id uuid);
CREATE TABLE t07.stray_org (id int, org uuid);
CREATE TABLE t07.plain (id int);
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.stray'$$,
                  $$VALUES ('warning', 'SELECT tenancy.enable(''t07.stray'', ''tenant_id'');')$$,
                  'unmanaged table with tenant_id in a tenant schema: warning with an enable fix');
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.stray_org'$$,
                  $$VALUES ('warning', 'SELECT tenancy.enable(''t07.stray_org'', ''org'');')$$,
                  'unmanaged table with a custom tenant column name: flagged too');
SELECT ok(NOT pg_temp.has_finding('t07.plain', '.'), 'a table without a tenant column is not flagged');
SELECT lives_ok(pg_temp.fix_of('t07.stray', 'is not managed'), 'the enable fix runs');
SELECT lives_ok(pg_temp.fix_of('t07.stray_org', 'is not managed'), 'the enable fix with the custom column runs');
SELECT ok(NOT pg_temp.has_finding('t07.stray', '.') AND NOT pg_temp.has_finding('t07.stray_org', '.'), 'after the fixes the findings are gone');
SELECT is((SELECT tenant_column::text FROM tenancy.managed_tables WHERE relid = 't07.stray_org'::regclass), 'org',
          'the fix managed the table by its own tenant column');

-- ---------------------------------------------------------------- unmanaged partition of a managed table
CREATE TABLE t07.events (tenant_id uuid NOT NULL, at date NOT NULL, what text) PARTITION BY RANGE (at);
SELECT tenancy.enable('t07.events');
CREATE TABLE t07.events_2024 PARTITION OF t07.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.events_2024'$$,
                  $$VALUES ('error', 'SELECT tenancy.enable(''t07.events_2024'', ''tenant_id'');')$$,
                  'unmanaged partition: error with an enable fix (and no duplicate tenant-column warning)');
SELECT lives_ok(pg_temp.fix_of('t07.events_2024', 'partition'), 'the enable fix runs');
SELECT ok(NOT pg_temp.has_finding('t07.events_2024', '.'), 'after the fix the finding is gone');

-- ---------------------------------------------------------------- views
CREATE VIEW t07.ledger_view AS SELECT id, amount FROM t07.ledger;
CREATE VIEW t07.ledger_safe WITH (security_invoker = true) AS SELECT id, amount FROM t07.ledger;
CREATE VIEW t07.units_view AS SELECT code FROM t07.units;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.ledger_view'$$,
                  $$VALUES ('error', 'ALTER VIEW t07.ledger_view SET (security_invoker = true);')$$,
                  'view over a managed table without security_invoker: error with a fix');
SELECT ok(NOT pg_temp.has_finding('t07.ledger_safe', '.'), 'a security_invoker view is not flagged');
SELECT ok(NOT pg_temp.has_finding('t07.units_view', '.'), 'a view over a reference table is not flagged');
SELECT lives_ok(pg_temp.fix_of('t07.ledger_view', 'security_invoker'), 'the ALTER VIEW fix runs');
SELECT ok(NOT pg_temp.has_finding('t07.ledger_view', '.'), 'after the fix the finding is gone');
CREATE MATERIALIZED VIEW t07.ledger_mv AS SELECT id, amount FROM t07.ledger WITH NO DATA;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.ledger_mv'$$,
                  $$VALUES ('error', 'DROP MATERIALIZED VIEW t07.ledger_mv;')$$,
                  'materialized view over a managed table: error with a DROP fix');
SELECT lives_ok(pg_temp.fix_of('t07.ledger_mv', 'materialized'), 'the DROP fix runs');
SELECT ok(NOT pg_temp.has_finding('t07.ledger_mv', '.'), 'after the fix the finding is gone');

-- ---------------------------------------------------------------- SECURITY DEFINER function
CREATE FUNCTION t07.total() RETURNS numeric LANGUAGE sql SECURITY DEFINER AS $$ SELECT sum(amount) FROM t07.ledger $$;
CREATE FUNCTION t07.total_invoker() RETURNS numeric LANGUAGE sql AS $$ SELECT sum(amount) FROM t07.ledger $$;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'function t07.total()'$$,
                  $$VALUES ('warning', 'ALTER FUNCTION t07.total() SECURITY INVOKER;')$$,
                  'SECURITY DEFINER function reading a managed table: warning with a fix');
SELECT ok(NOT pg_temp.has_finding('function t07.total_invoker()', '.'), 'a SECURITY INVOKER function is not flagged');
SELECT lives_ok(pg_temp.fix_of('function t07.total()', 'SECURITY DEFINER'), 'the SECURITY INVOKER fix runs');
SELECT ok(NOT pg_temp.has_finding('function t07.total()', '.'), 'after the fix the finding is gone');

-- ---------------------------------------------------------------- roles that bypass RLS in a tenancy role
CREATE ROLE tap07_bypass BYPASSRLS NOLOGIN;
GRANT tenancy_member TO tap07_bypass;
CREATE ROLE tap07_super SUPERUSER NOLOGIN;
GRANT tenancy_viewer TO tap07_super;
SELECT results_eq($$SELECT severity, problem, fix FROM pg_temp.findings() WHERE object = 'role tap07_bypass'$$,
                  $$VALUES ('error', 'role has BYPASSRLS and is a member of tenancy_member: row level security never applies to it',
                            'ALTER ROLE tap07_bypass NOBYPASSRLS;')$$,
                  'BYPASSRLS role in a tenancy role: error with a NOBYPASSRLS fix');
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'role tap07_super'$$,
                  $$VALUES ('error', 'ALTER ROLE tap07_super NOSUPERUSER;')$$,
                  'SUPERUSER role in a tenancy role: error with a NOSUPERUSER fix');
SELECT lives_ok(pg_temp.fix_of('role tap07_bypass', 'BYPASSRLS'), 'the NOBYPASSRLS fix runs');
SELECT lives_ok(pg_temp.fix_of('role tap07_super', 'SUPERUSER'), 'the NOSUPERUSER fix runs');
SELECT ok(NOT pg_temp.has_finding('role tap07_bypass', '.') AND NOT pg_temp.has_finding('role tap07_super', '.'),
          'after the fixes the findings are gone');
-- membership through an intermediate group role counts just the same
CREATE ROLE tap07_app_group NOLOGIN;
GRANT tenancy_member TO tap07_app_group;
CREATE ROLE tap07_indirect BYPASSRLS NOLOGIN;
GRANT tap07_app_group TO tap07_indirect;
SELECT is(pg_temp.fix_of('role tap07_indirect', 'BYPASSRLS'), 'ALTER ROLE tap07_indirect NOBYPASSRLS;',
          'a BYPASSRLS role in a tenancy role through a group: flagged too');
ALTER ROLE tap07_indirect NOBYPASSRLS;

-- ---------------------------------------------------------------- VOLATILE context functions
ALTER FUNCTION tenancy.current_tenant() VOLATILE;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'function tenancy.current_tenant()'$$,
                  $$VALUES ('error', 'ALTER FUNCTION tenancy.current_tenant() STABLE;')$$,
                  'VOLATILE current_tenant: error with a STABLE fix');
SELECT lives_ok(pg_temp.fix_of('function tenancy.current_tenant()', 'VOLATILE'), 'the STABLE fix runs');
SELECT ok(NOT pg_temp.has_finding('function tenancy.current_tenant()', '.'), 'after the fix the finding is gone');
CREATE FUNCTION t07.my_tenant() RETURNS uuid LANGUAGE sql VOLATILE AS $$ SELECT tenancy.current_tenant() $$;
CREATE POLICY tap07_volatile ON t07.ledger AS RESTRICTIVE FOR SELECT USING (tenant_id = t07.my_tenant());
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'function t07.my_tenant()'$$,
                  $$VALUES ('error', 'ALTER FUNCTION t07.my_tenant() STABLE;')$$,
                  'a VOLATILE function used in a policy of a managed table: error with a STABLE fix');
SELECT lives_ok(pg_temp.fix_of('function t07.my_tenant()', 'VOLATILE'), 'the STABLE fix runs');
SELECT ok(NOT pg_temp.has_finding('function t07.my_tenant()', '.'), 'after the fix the finding is gone');
DROP POLICY tap07_volatile ON t07.ledger;

-- ---------------------------------------------------------------- TRUNCATE granted
CREATE ROLE tap07_etl NOLOGIN;
GRANT TRUNCATE ON t07.ledger TO tap07_etl;
GRANT TRUNCATE ON t07.ledger TO PUBLIC;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.ledger' AND problem ~ 'TRUNCATE' ORDER BY fix$$,
                  $$VALUES ('error', 'REVOKE TRUNCATE ON t07.ledger FROM PUBLIC;'), ('error', 'REVOKE TRUNCATE ON t07.ledger FROM tap07_etl;')$$,
                  'TRUNCATE granted (to a role, to PUBLIC): errors with REVOKE fixes');
SELECT lives_ok(pg_temp.fix_of('t07.ledger', 'role tap07_etl can TRUNCATE'), 'the REVOKE fix for the role runs');
SELECT lives_ok(pg_temp.fix_of('t07.ledger', 'role PUBLIC can TRUNCATE'), 'the REVOKE fix for PUBLIC runs');
SELECT ok(NOT pg_temp.has_finding('t07.ledger', 'TRUNCATE'), 'after the fixes the findings are gone');

-- ---------------------------------------------------------------- a policy on the context, not the row
CREATE POLICY tap07_any_tenant ON t07.ledger FOR SELECT USING (tenancy.current_tenant() IS NOT NULL);
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'policy tap07_any_tenant on t07.ledger'$$,
                  $$VALUES ('error', 'DROP POLICY tap07_any_tenant ON t07.ledger;')$$,
                  'a permissive policy that checks only that some tenant is set (every tenant''s rows): error');
SELECT lives_ok(pg_temp.fix_of('policy tap07_any_tenant on t07.ledger', 'restrict by tenant'), 'the DROP POLICY fix runs');

CREATE POLICY tap07_both ON t07.ledger FOR SELECT USING (tenant_id IS NOT NULL AND tenancy.current_tenant() IS NOT NULL);
CREATE POLICY tenancy_tenant_select_all ON t07.ledger FOR SELECT USING (true);
SELECT set_eq($$SELECT object FROM pg_temp.findings() WHERE problem ~ 'restrict by tenant'$$,
              ARRAY['policy tap07_both on t07.ledger', 'policy tenancy_tenant_select_all on t07.ledger'],
              'naming the tenant column without comparing it, or a tenancy_-like name, is no restriction');
DROP POLICY tap07_both ON t07.ledger;
DROP POLICY tenancy_tenant_select_all ON t07.ledger;
-- a generated policy altered by the table's owner
ALTER POLICY tenancy_tenant_select ON t07.ledger USING (true);
ALTER POLICY tenancy_superadmin_update ON t07.ledger TO PUBLIC;
SELECT results_eq($$SELECT object, fix FROM pg_temp.findings() WHERE problem ~ 'restrict by tenant' AND object ~ '^policy tenancy_' ORDER BY 1$$,
                  $$VALUES ('policy tenancy_superadmin_update on t07.ledger', 'SELECT tenancy.enable(''t07.ledger'', ''tenant_id'');  -- re-creates the generated policies'),
                           ('policy tenancy_tenant_select on t07.ledger', 'SELECT tenancy.enable(''t07.ledger'', ''tenant_id'');  -- re-creates the generated policies')$$,
                  'generated policies altered to USING (true), or to reach every role: errors, fixed by enable');
SELECT lives_ok(pg_temp.fix_of('policy tenancy_tenant_select on t07.ledger', 'restrict by tenant'), 'the enable fix runs');
SELECT ok(NOT pg_temp.has_finding('policy tenancy_superadmin_update on t07.ledger', '.'), 'after the fix both findings are gone');
-- a generated policy altered so that it still compares the tenant column
-- with the context (and leaks anyway), or a restrictive one loosened: they
-- differ from what enable recorded
ALTER POLICY tenancy_tenant_select ON t07.ledger USING (tenant_id = tenancy.current_tenant() OR true);
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'policy tenancy_tenant_select on t07.ledger' AND problem ~ 'changed after'$$,
                  $$VALUES ('error', 'SELECT tenancy.enable(''t07.ledger'', ''tenant_id'');  -- re-creates the generated policies')$$,
                  'a generated policy altered to OR true (still comparing the tenant column): error, changed since enable');
SELECT lives_ok(pg_temp.fix_of('policy tenancy_tenant_select on t07.ledger', 'changed after'), 'the enable fix runs');
SELECT ok(NOT pg_temp.has_finding('policy tenancy_tenant_select on t07.ledger', '.'), 'after the fix the finding is gone');
ALTER POLICY tenancy_viewer_no_insert ON t07.ledger WITH CHECK (true);
SELECT ok(pg_temp.has_finding('policy tenancy_viewer_no_insert on t07.ledger', 'changed after'),
          'a restrictive generated policy loosened: error');
SELECT lives_ok(pg_temp.fix_of('policy tenancy_viewer_no_insert on t07.ledger', 'changed after'), '... fixed by enable');
CREATE ROLE "tap07 Odd""Role" NOLOGIN;
GRANT TRUNCATE ON t07.ledger TO "tap07 Odd""Role";
SELECT lives_ok((SELECT fix FROM pg_temp.findings() WHERE object = 't07.ledger' AND problem ~ 'TRUNCATE'),
                'the REVOKE TRUNCATE fix runs for a role whose name needs quoting');

-- ---------------------------------------------------------------- BYPASSRLS role with a grant
CREATE ROLE tap07_reporting NOLOGIN BYPASSRLS;
GRANT SELECT ON t07.ledger TO tap07_reporting;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'role tap07_reporting'$$,
                  $$VALUES ('error', 'ALTER ROLE tap07_reporting NOBYPASSRLS;')$$,
                  'a BYPASSRLS role granted SELECT on a tenant table (no tenancy role): error');
SELECT lives_ok(pg_temp.fix_of('role tap07_reporting', 'BYPASSRLS'), 'the NOBYPASSRLS fix runs');
SELECT ok(NOT pg_temp.has_finding('role tap07_reporting', '.'), 'after the fix the finding is gone');

-- ---------------------------------------------------------------- foreign key without the tenant column
CREATE TABLE t07.customers (id int PRIMARY KEY, tenant_id uuid NOT NULL);
CREATE TABLE t07.orders (id int PRIMARY KEY, tenant_id uuid NOT NULL, customer_id int REFERENCES t07.customers (id));
SELECT tenancy.enable('t07.customers');
SELECT tenancy.enable('t07.orders');
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'constraint orders_customer_id_fkey on t07.orders'$$,
                  $$VALUES ('error', 'ALTER TABLE t07.customers ADD UNIQUE (tenant_id, id); ALTER TABLE t07.orders DROP CONSTRAINT orders_customer_id_fkey, ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (tenant_id, customer_id) REFERENCES t07.customers (tenant_id, id);')$$,
                  'a foreign key between tenant tables without the tenant column: error, fixed by a composite key');
SELECT lives_ok(pg_temp.fix_of('constraint orders_customer_id_fkey on t07.orders', 'foreign key'), 'the composite-key fix runs');
SELECT ok(NOT pg_temp.has_finding('constraint orders_customer_id_fkey on t07.orders', '.'), 'after the fix the finding is gone');
INSERT INTO t07.customers VALUES (1, tenancy.resolve('acme'));
SELECT throws_ok($$INSERT INTO t07.orders VALUES (1, gen_random_uuid(), 1)$$, '23503', NULL,
                 '... and an order can no longer point at a customer of another tenant');

-- ---------------------------------------------------------------- owned by a role requests run as
CREATE ROLE tap07_api NOLOGIN; GRANT tenancy_member TO tap07_api; GRANT USAGE ON SCHEMA t07 TO tap07_api;
ALTER TABLE t07.ledger OWNER TO tap07_api;
SELECT results_eq($$SELECT severity, problem, fix FROM pg_temp.findings() WHERE object = 't07.ledger' AND problem ~ 'owner'$$,
                  $$VALUES ('error', 'owner tap07_api is a role requests run as (member of a pg_tenancy role): as owner it can lift row level security and read or write every tenant''s rows',
                            'ALTER TABLE t07.ledger OWNER TO postgres;')$$,
                  'a managed table owned by a member of tenancy_member: error, fixed by giving it to the schema owner');
-- what the finding is about: the owner lifts FORCE and reads every tenant
SELECT tenancy.create_tenant('tap07-other', 'Other');
INSERT INTO t07.ledger (id, tenant_id, amount) VALUES (700, tenancy.resolve('tap07-other'), 1);
SET LOCAL ROLE tap07_api;
ALTER TABLE t07.ledger NO FORCE ROW LEVEL SECURITY;
SELECT is((SELECT count(*)::int FROM t07.ledger WHERE id = 700), 1, '... (as owner it reads another tenant''s row after NO FORCE)');
ALTER TABLE t07.ledger FORCE ROW LEVEL SECURITY;
RESET ROLE;
DELETE FROM t07.ledger WHERE id = 700;
SELECT lives_ok(pg_temp.fix_of('t07.ledger', 'owner'), 'the OWNER TO fix runs');
SELECT ok(NOT pg_temp.has_finding('t07.ledger', 'owner'), 'after the fix the finding is gone');
SET LOCAL ROLE tap07_api;
SELECT throws_ok($$ALTER TABLE t07.ledger NO FORCE ROW LEVEL SECURITY$$, '42501', NULL, '... and the member cannot lift FORCE any more');
RESET ROLE;
-- a bound login owning the table, and a member of the owner role
CREATE ROLE tap07_bound LOGIN; SELECT tenancy.bind_role('tap07_bound', 'acme');
CREATE ROLE tap07_owner NOLOGIN;
ALTER TABLE t07.orgledger OWNER TO tap07_bound;
ALTER TABLE t07.units OWNER TO tap07_owner;
GRANT tap07_owner TO tap07_api;
SELECT results_eq($$SELECT object, problem, fix FROM pg_temp.findings() WHERE problem ~ 'owner' ORDER BY 1$$,
                  $$VALUES ('t07.orgledger', 'owner tap07_bound is a role requests run as (bound to a tenant): as owner it can lift row level security and read or write every tenant''s rows',
                            'ALTER TABLE t07.orgledger OWNER TO postgres;'),
                           ('t07.units', 'role tap07_api, which requests run as, is a member of its owner tap07_owner: it can act as the owner and lift row level security',
                            'REVOKE tap07_owner FROM tap07_api;')$$,
                  'owned by a bound login; a reference table whose owner role a member holds: errors');
SELECT lives_ok(pg_temp.fix_of('t07.orgledger', 'owner'), 'the OWNER TO fix runs');
SELECT lives_ok(pg_temp.fix_of('t07.units', 'owner'), 'the REVOKE fix runs');
SELECT ok(NOT pg_temp.has_finding('t07.orgledger', 'owner') AND NOT pg_temp.has_finding('t07.units', 'owner'),
          'after the fixes the findings are gone');
SELECT tenancy.unbind_role('tap07_bound');

-- ---------------------------------------------------------------- visible_tenants() in user policies
CREATE POLICY tap07_family_write ON t07.ledger FOR UPDATE
    USING (tenant_id = ANY (tenancy.visible_tenants())) WITH CHECK (tenant_id = ANY (tenancy.visible_tenants()));
CREATE POLICY tap07_family_read ON t07.orgledger FOR SELECT USING (org = ANY (tenancy.visible_tenants()));
SELECT results_eq($$SELECT object, severity, problem, fix FROM pg_temp.findings() WHERE problem ~ 'visible_tenants' ORDER BY 1$$,
                  $$VALUES ('policy tap07_family_read on t07.orgledger', 'error',
                            'permissive policy uses tenancy.visible_tenants() on a table enabled without hierarchical => true: a parent tenant reads its descendants'' rows',
                            'DROP POLICY tap07_family_read ON t07.orgledger;'),
                           ('policy tap07_family_write on t07.ledger', 'error',
                            'permissive write policy uses tenancy.visible_tenants(): a parent tenant can write its descendants'' rows',
                            'DROP POLICY tap07_family_write ON t07.ledger;')$$,
                  'visible_tenants() in a write policy, and in a read policy of a non-hierarchical table: errors');
SELECT lives_ok(pg_temp.fix_of('policy tap07_family_write on t07.ledger', 'visible_tenants'), 'the DROP POLICY fix runs');
SELECT lives_ok(pg_temp.fix_of('policy tap07_family_read on t07.orgledger', 'visible_tenants'), '... for both');
SELECT tenancy.enable('t07.orgledger', tenant_column => 'org', hierarchical => true);
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_temp.findings() WHERE problem ~ 'visible_tenants'),
          'the generated hierarchical read policy (visible_tenants) is not reported');
SELECT tenancy.enable('t07.orgledger', tenant_column => 'org');

-- ---------------------------------------------------------------- SECURITY DEFINER: whole words, triggers
CREATE FUNCTION t07.fmt() RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT 'see t07_ledgers, subledger, ledger_x' $$;
SELECT ok(NOT pg_temp.has_finding('function t07.fmt()', '.'), 'a SECURITY DEFINER function naming ledger only inside longer words: not reported');
CREATE FUNCTION t07.dyn() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE n bigint; BEGIN EXECUTE 'SELECT count(*) FROM t07."ledger"' INTO n; RETURN n; END $$;
SELECT ok(pg_temp.has_finding('function t07.dyn()', 'SECURITY DEFINER'), 'one naming it in dynamic SQL (quoted): reported');
DROP FUNCTION t07.fmt(); DROP FUNCTION t07.dyn();
CREATE TABLE t07.sink (LIKE t07.ledger);
CREATE FUNCTION t07.copy_out() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN INSERT INTO t07.sink SELECT NEW.*; RETURN NEW; END $$;
CREATE TRIGGER tap07_copy AFTER INSERT ON t07.ledger FOR EACH ROW EXECUTE FUNCTION t07.copy_out();
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'trigger tap07_copy on t07.ledger' AND problem ~ 'SECURITY DEFINER'$$,
                  $$VALUES ('warning', 'ALTER FUNCTION t07.copy_out() SECURITY INVOKER;')$$,
                  'a trigger on a managed table calling a SECURITY DEFINER function: warning');
SELECT lives_ok(pg_temp.fix_of('trigger tap07_copy on t07.ledger', 'SECURITY DEFINER'), 'the SECURITY INVOKER fix runs');
SELECT ok(NOT pg_temp.has_finding('trigger tap07_copy on t07.ledger', 'SECURITY DEFINER'), 'after the fix the finding is gone');
SELECT ok(pg_temp.has_finding('trigger tap07_copy on t07.ledger', 'writes to t07.sink'), '... (the copy into the unmanaged t07.sink is still reported)');
DROP TRIGGER tap07_copy ON t07.ledger; DROP TABLE t07.sink; DROP FUNCTION t07.copy_out();

-- ---------------------------------------------------------------- binding of a dropped role
CREATE ROLE tap07_gone LOGIN; SELECT tenancy.bind_role('tap07_gone', 'acme');
CREATE TEMP TABLE tap07_gone_oid AS SELECT 'tap07_gone'::regrole::oid AS oid;
SAVEPOINT drop_bound;
SELECT throws_ok($$DROP ROLE tap07_gone$$, '2BP01', NULL, 'a bound role cannot be dropped (it holds the binding''s grant)');
ROLLBACK TO SAVEPOINT drop_bound;
-- DROP OWNED BY takes that grant along: the binding is left to a bare OID
DROP OWNED BY tap07_gone;
DROP ROLE tap07_gone;
SELECT results_eq($$SELECT severity, problem, fix FROM tenancy.check_isolation()
                     WHERE object = 'role binding ' || (SELECT oid FROM tap07_gone_oid)$$,
                  $$SELECT 'error', format('the bound role (OID %s) no longer exists: a role that gets this OID, here or in a cluster this database is restored into, is bound to the tenant', oid), format('SELECT tenancy.unbind_role(%L);', oid::text) FROM tap07_gone_oid$$,
                  'a binding left by a dropped role: error with an unbind fix');
SELECT lives_ok((SELECT fix FROM tenancy.check_isolation() WHERE object = 'role binding ' || (SELECT oid FROM tap07_gone_oid)), 'the unbind fix runs');
SELECT ok(NOT EXISTS (SELECT 1 FROM tenancy.role_bindings b WHERE b.role::oid = (SELECT oid FROM tap07_gone_oid)),
          'after the fix the binding is gone');

-- ---------------------------------------------------------------- bindings against the audit log
CREATE ROLE tap07_lost LOGIN; SELECT tenancy.bind_role('tap07_lost', 'acme');
-- what a restore whose COPY of role_bindings failed leaves: no row, the audit
-- log still says bound
DELETE FROM tenancy.role_bindings WHERE role = 'tap07_lost'::regrole;
SELECT results_eq($$SELECT severity, problem, fix FROM pg_temp.findings() WHERE object = 'role tap07_lost'$$,
                  $$SELECT 'error', format('was bound to tenant acme by bind_role (audit entry %s) but has no binding now: it can choose any tenant',
                                           (SELECT max(seq) FROM tenancy.audit_log WHERE action = 'bind_role' AND target = 'tap07_lost')),
                           'SELECT tenancy.bind_role(''tap07_lost'', ''acme'');'$$,
                  'a binding the audit log has and role_bindings lost: error, fixed by binding again');
SELECT lives_ok(pg_temp.fix_of('role tap07_lost', 'no binding now'), 'the bind_role fix runs');
SELECT ok(NOT pg_temp.has_finding('role tap07_lost', '.'), 'after the fix the finding is gone');
-- a binding the audit log never saw (a dump from a cluster where the OID was
-- another role's, or a row written by hand)
CREATE ROLE tap07_stray LOGIN;
INSERT INTO tenancy.role_bindings (role, tenant_id) VALUES ('tap07_stray', tenancy.resolve('acme'));
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'role tap07_stray'$$,
                  $$VALUES ('warning', 'SELECT tenancy.bind_role(''tap07_stray'', ''acme'');  -- if it belongs there (records it); else SELECT tenancy.unbind_role(''tap07_stray'');')$$,
                  'a binding with no bind_role in the audit log: warning');
SELECT lives_ok($$SELECT tenancy.unbind_role('tap07_stray')$$, 'unbinding it');
SELECT ok(NOT pg_temp.has_finding('role tap07_stray', '.'), 'after the fix the finding is gone');
SELECT tenancy.unbind_role('tap07_lost');
SELECT ok(NOT pg_temp.has_finding('role tap07_lost', '.'), 'an unbound role the audit log shows unbound: nothing to report');

-- ---------------------------------------------------------------- grants missing (a restore with --no-acl)
REVOKE ALL ON t07.ledger FROM tenancy_viewer;
SELECT results_eq($$SELECT severity, problem, fix FROM pg_temp.findings() WHERE object = 't07.ledger' AND problem ~ 'grants'$$,
                  $$VALUES ('warning', 'tenancy_viewer has no SELECT on it: the grants pg_tenancy gives are missing (a restore with --no-acl, or a REVOKE)',
                            'SELECT tenancy.enable(''t07.ledger'', ''tenant_id'');')$$,
                  'a tenancy role without SELECT on a managed table: warning, fixed by enable');
SELECT lives_ok(pg_temp.fix_of('t07.ledger', 'grants'), 'the enable fix runs');
SELECT ok(NOT pg_temp.has_finding('t07.ledger', 'grants'), 'after the fix the finding is gone');

-- ---------------------------------------------------------------- fingerprints name roles, not OIDs
SELECT is((SELECT policies->'tenancy_superadmin_select'->>2 FROM tenancy.managed_tables WHERE relid = 't07.ledger'::regclass),
          '{tenancy_superadmin}', 'the recorded fingerprint names the policy''s roles (OIDs differ in a cluster the dump is restored into)');

-- ---------------------------------------------------------------- second attack round
-- TRUNCATE on a reference table empties the shared master data
GRANT TRUNCATE ON t07.units TO tenancy_member;
SELECT results_eq($$SELECT severity, problem, fix FROM pg_temp.findings() WHERE object = 't07.units' AND problem ~ 'TRUNCATE'$$,
                  $$VALUES ('error', 'role tenancy_member can TRUNCATE it: TRUNCATE ignores row level security and empties the data every tenant shares',
                            'REVOKE TRUNCATE ON t07.units FROM tenancy_member;')$$,
                  'TRUNCATE granted on a reference table: error');
SELECT lives_ok(pg_temp.fix_of('t07.units', 'TRUNCATE'), 'the REVOKE fix runs');
-- a SECURITY DEFINER function reading a managed table through a view
CREATE VIEW t07.ledger_v WITH (security_invoker = true) AS SELECT * FROM t07.ledger;
CREATE FUNCTION t07.via_view() RETURNS numeric LANGUAGE sql SECURITY DEFINER AS $$ SELECT sum(amount) FROM t07.ledger_v $$;
SELECT results_eq($$SELECT severity, problem FROM pg_temp.findings() WHERE object = 'function t07.via_view()'$$,
                  $$VALUES ('warning', 'SECURITY DEFINER function refers to managed table t07.ledger (through view t07.ledger_v): it runs with its owner''s rights')$$,
                  'a SECURITY DEFINER function reading a managed table through a view: warning');
DROP FUNCTION t07.via_view(); DROP VIEW t07.ledger_v;
-- a table owned by a login (an application connecting as its tables' owner)
CREATE ROLE tap07_applogin LOGIN;
ALTER TABLE t07.orgledger OWNER TO tap07_applogin;
SELECT results_eq($$SELECT severity, problem, fix FROM pg_temp.findings() WHERE object = 't07.orgledger' AND problem ~ 'owner'$$,
                  $$VALUES ('error', 'owner tap07_applogin can log in: a session as the owner can lift row level security and read or write every tenant''s rows',
                            'ALTER TABLE t07.orgledger OWNER TO postgres;')$$,
                  'a managed table owned by a login role: error');
SELECT lives_ok(pg_temp.fix_of('t07.orgledger', 'owner'), 'the OWNER TO fix runs');
-- CREATEROLE grants itself tenancy_superadmin
CREATE ROLE tap07_cr NOLOGIN CREATEROLE; GRANT tenancy_admin TO tap07_cr;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'role tap07_cr'$$,
                  $$VALUES ('error', 'ALTER ROLE tap07_cr NOCREATEROLE;')$$,
                  'a tenancy role member with CREATEROLE: error');
SELECT lives_ok(pg_temp.fix_of('role tap07_cr', 'CREATEROLE'), 'the NOCREATEROLE fix runs');
-- bindings that confine nothing: a super admin granted after the binding, an
-- inheriting member granted after it
CREATE ROLE tap07_later LOGIN; SELECT tenancy.bind_role('tap07_later', 'acme');
GRANT tenancy_superadmin TO tap07_later;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'role tap07_later'$$,
                  $$VALUES ('error', 'REVOKE tenancy_superadmin FROM tap07_later;')$$,
                  'a bound role made a super admin later: error');
SELECT lives_ok(pg_temp.fix_of('role tap07_later', 'tenancy_superadmin'), 'the REVOKE fix runs');
CREATE ROLE tap07_heir LOGIN; GRANT tap07_later TO tap07_heir;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 'role tap07_later'$$,
                  $$VALUES ('warning', 'SELECT tenancy.bind_role(''tap07_heir'', ''acme'');  -- or ALTER ROLE tap07_heir NOINHERIT')$$,
                  'a member inheriting a bound role, granted after the binding: warning');
SELECT lives_ok(pg_temp.fix_of('role tap07_later', 'inherits'), 'the bind_role fix runs');
SELECT ok(NOT pg_temp.has_finding('role tap07_later', '.'), 'after the fixes the findings are gone');
SELECT tenancy.unbind_role('tap07_heir'); SELECT tenancy.unbind_role('tap07_later');
-- the caller's settings change nothing
SET LOCAL quote_all_identifiers = on;
SELECT is_empty($$SELECT * FROM pg_temp.findings()$$, 'quote_all_identifiers on: no false findings');
SET LOCAL quote_all_identifiers = off;
-- a long tenant-restricting policy is read in linear time
DO $$ BEGIN
    EXECUTE format('CREATE POLICY tap07_long ON t07.ledger FOR SELECT USING (tenant_id = tenancy.current_tenant() AND id <> ALL (ARRAY[%s]))',
                   (SELECT string_agg(g::text, ',') FROM generate_series(100000, 130000) g));
END $$;
SELECT ok(length(pg_get_expr(polqual, polrelid)) > 200000, 'a policy of over 200 kB') FROM pg_policy WHERE polname = 'tap07_long';
CREATE TEMP TABLE tap07_t AS SELECT clock_timestamp() AS t0;
SELECT ok(NOT pg_temp.has_finding('policy tap07_long on t07.ledger', '.'), '... restricts by tenant');
SELECT ok(clock_timestamp() - (SELECT t0 FROM tap07_t) < interval '20 seconds', '... and the linter reads it in seconds, not hours');
DROP POLICY tap07_long ON t07.ledger;

-- ---------------------------------------------------------------- triggers copying rows out
CREATE TABLE t07.history (LIKE t07.ledger);
CREATE FUNCTION t07.keep_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN NEW.amount := NEW.amount; END IF;
    INSERT INTO t07.history SELECT NEW.*;
    RETURN NEW;
END $$;
CREATE TRIGGER tap07_history AFTER INSERT OR UPDATE ON t07.ledger FOR EACH ROW EXECUTE FUNCTION t07.keep_history();
SELECT results_eq($$SELECT severity, problem, fix FROM pg_temp.findings() WHERE object = 'trigger tap07_history on t07.ledger'$$,
                  $$VALUES ('warning', 'trigger function t07.keep_history() writes to t07.history, which is not managed: the rows it copies there are outside row level security',
                            'SELECT tenancy.enable(''t07.history'');  -- if t07.history holds tenant rows; else make the trigger write none')$$,
                  'an invoker trigger copying rows into an unmanaged table: warning');
SELECT lives_ok(pg_temp.fix_of('trigger tap07_history on t07.ledger', 'writes to'), 'the enable fix runs');
SELECT ok(NOT pg_temp.has_finding('trigger tap07_history on t07.ledger', '.'), 'after the fix the finding is gone');
DROP TRIGGER tap07_history ON t07.ledger;
SELECT tenancy.disable('t07.history'); DROP TABLE t07.history; DROP FUNCTION t07.keep_history();

-- ---------------------------------------------------------------- third attack round
-- a renamed bound role stays bound under its OID; a new login taking its old
-- name is not "a lost binding"
CREATE ROLE tap07_ren LOGIN; SELECT tenancy.bind_role('tap07_ren', 'acme');
ALTER ROLE tap07_ren RENAME TO tap07_ren_old;
CREATE ROLE tap07_ren LOGIN;
SELECT ok(NOT pg_temp.has_finding('role tap07_ren', 'no binding now'), 'a new login with a bound role''s old name: not reported as a lost binding');
SELECT results_eq($$SELECT severity FROM pg_temp.findings() WHERE object = 'role tap07_ren_old'$$, $$VALUES ('warning')$$,
                  'the renamed bound role: a warning (renamed since)');
SELECT lives_ok(pg_temp.fix_of('role tap07_ren_old', 'audit log has no bind_role'), 'its fix (bind_role under the new name) runs');
SELECT ok(NOT pg_temp.has_finding('role tap07_ren_old', '.'), 'after the fix the finding is gone');
SELECT tenancy.unbind_role('tap07_ren_old');
-- the tenant comparison written the other way round is a restriction
CREATE POLICY tap07_rev ON t07.ledger FOR SELECT USING (tenancy.current_tenant() = tenant_id);
SELECT ok(NOT pg_temp.has_finding('policy tap07_rev on t07.ledger', '.'), 'current_tenant() = tenant_id: a restriction');
DROP POLICY tap07_rev ON t07.ledger;
-- a login that can act as the owner (the NOLOGIN owner the fixes suggest,
-- with the application login as its member)
CREATE ROLE tap07_own NOLOGIN; CREATE ROLE tap07_django LOGIN; GRANT tap07_own TO tap07_django;
ALTER TABLE t07.orgledger OWNER TO tap07_own;
SELECT results_eq($$SELECT severity, fix FROM pg_temp.findings() WHERE object = 't07.orgledger' AND problem ~ 'can act as'$$,
                  $$VALUES ('warning', 'REVOKE tap07_own FROM tap07_django;  -- unless only migrations log in as tap07_django')$$,
                  'a login that is a member of the owner role: warning');
SELECT lives_ok(pg_temp.fix_of('t07.orgledger', 'can act as'), 'the REVOKE fix runs');
ALTER TABLE t07.orgledger OWNER TO postgres;
-- many AND-ed clauses are read in linear time too
DO $$ BEGIN
    EXECUTE format('CREATE POLICY tap07_many ON t07.ledger FOR SELECT USING (tenant_id = tenancy.current_tenant() AND %s)',
                   (SELECT string_agg(format('id <> %s', g), ' AND ') FROM generate_series(1, 20000) g));
END $$;
DO $$ BEGIN
    EXECUTE format('CREATE POLICY tap07_many_last ON t07.ledger FOR SELECT USING (%s AND tenant_id = tenancy.current_tenant())',
                   (SELECT string_agg(format('id <> %s', g), ' AND ') FROM generate_series(1, 20000) g));
END $$;
UPDATE tap07_t SET t0 = clock_timestamp();
SELECT ok(NOT pg_temp.has_finding('policy tap07_many on t07.ledger', '.'), 'a policy of 20,000 AND-ed clauses restricts by tenant');
SELECT ok(NOT pg_temp.has_finding('policy tap07_many_last on t07.ledger', '.'), '... also with the tenant comparison last');
SELECT ok(clock_timestamp() - (SELECT t0 FROM tap07_t) < interval '20 seconds', '... both read in seconds');
DROP POLICY tap07_many ON t07.ledger;
DROP POLICY tap07_many_last ON t07.ledger;
-- a binding to a tenant that no longer exists (no foreign key: parallel restores)
CREATE ROLE tap07_orphan LOGIN;
INSERT INTO tenancy.role_bindings (role, tenant_id) VALUES ('tap07_orphan', gen_random_uuid());
SELECT results_eq($$SELECT severity, fix FROM tenancy.check_isolation() WHERE object = 'role binding tap07_orphan' AND problem ~ 'does not exist'$$,
                  $$VALUES ('warning', format('SELECT tenancy.unbind_role(%L);', 'tap07_orphan'::regrole::oid::text))$$,
                  'a binding to a tenant that does not exist: warning');
SELECT lives_ok((SELECT fix FROM tenancy.check_isolation() WHERE object = 'role binding tap07_orphan' AND problem ~ 'does not exist'), 'the unbind fix runs');

-- ---------------------------------------------------------------- all clean again
SELECT is_empty($$SELECT * FROM pg_temp.findings()$$, 'after every fix there is nothing left to report');

CREATE ROLE tap07_member NOLOGIN; GRANT tenancy_member TO tap07_member;
SET LOCAL ROLE tap07_member;
SELECT throws_ok($$SELECT * FROM tenancy.check_isolation()$$, '42501', NULL, 'a member cannot run the linter: 42501');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
