-- tenancy.register_reference and tenancy.disable.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(44);

SELECT tenancy.create_tenant('acme', 'Acme');
SELECT tenancy.create_tenant('globex', 'Globex');
CREATE SCHEMA t04;
CREATE TABLE t04.units (id serial PRIMARY KEY, code text UNIQUE NOT NULL);
INSERT INTO t04.units (code) VALUES ('kg'), ('kWh'), ('t CO2e');
CREATE TABLE t04.items (id int, tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant(), label text);
INSERT INTO t04.items VALUES (1, tenancy.resolve('acme'), 'a1'), (2, tenancy.resolve('globex'), 'g1');
SELECT tenancy.enable('t04.items');

CREATE ROLE tap04_member NOLOGIN;  GRANT tenancy_member TO tap04_member;
CREATE ROLE tap04_viewer NOLOGIN;  GRANT tenancy_viewer TO tap04_viewer;
CREATE ROLE tap04_analyst NOLOGIN; GRANT tenancy_analyst TO tap04_analyst;
CREATE ROLE tap04_sa NOLOGIN;      GRANT tenancy_superadmin TO tap04_sa;
CREATE ROLE tap04_mistake NOLOGIN; GRANT tenancy_member TO tap04_mistake;

-- ---------------------------------------------------------------- register_reference
CREATE TEMP TABLE ran AS SELECT tenancy.register_reference('t04.units') AS ddl;
SELECT ok((SELECT ddl FROM ran) LIKE 'ALTER TABLE "t04"."units" ENABLE ROW LEVEL SECURITY;%' AND (SELECT ddl FROM ran) NOT LIKE '%DROP POLICY%',
          'register_reference returns the DDL it ran');
CREATE TEMP TABLE dry AS SELECT tenancy.policy_sql('t04.units') AS ddl;
SELECT ok((SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = 't04.units'::regclass),
          'reference table: RLS enabled and forced');
SELECT results_eq(
    $$SELECT polname::text COLLATE "default", polcmd::text, polroles::regrole[]::text COLLATE "default", pg_get_expr(polqual, polrelid) COLLATE "default"
        FROM pg_policy WHERE polrelid = 't04.units'::regclass ORDER BY 1$$,
    $$VALUES ('tenancy_reference_delete', 'd', '{tenancy_superadmin}', 'true'),
             ('tenancy_reference_insert', 'a', '{tenancy_superadmin}', NULL),
             ('tenancy_reference_select', 'r', '{-}', 'true'),
             ('tenancy_reference_update', 'w', '{tenancy_superadmin}', 'true')$$,
    'reference table: everyone reads, only the super admin writes');
SELECT hasnt_column('t04', 'units', 'tenant_id', 'a reference table gets no tenant column');
SELECT ok(has_table_privilege('tenancy_member', 't04.units', 'SELECT') AND has_table_privilege('tenancy_viewer', 't04.units', 'SELECT')
          AND has_table_privilege('tenancy_analyst', 't04.units', 'SELECT') AND has_table_privilege('tenancy_admin', 't04.units', 'SELECT'),
          'every tenancy role may read a reference table');
SELECT ok(NOT has_table_privilege('tenancy_member', 't04.units', 'INSERT') AND NOT has_table_privilege('tenancy_admin', 't04.units', 'UPDATE')
          AND NOT has_table_privilege('tenancy_viewer', 't04.units', 'DELETE'), 'only the super admin is granted writes');
SELECT ok(has_table_privilege('tenancy_superadmin', 't04.units', 'INSERT') AND has_sequence_privilege('tenancy_superadmin', 't04.units_id_seq', 'USAGE'),
          'the super admin may insert (and use the serial)');
SELECT results_eq($$SELECT kind, tenant_column FROM tenancy.managed_tables WHERE relid = 't04.units'::regclass$$,
                  $$VALUES ('reference', NULL::name)$$, 'managed_tables records a reference table');
SELECT is((SELECT target FROM tenancy.audit_log WHERE action = 'register_reference'), 't04.units',
          'register_reference writes an audit entry');

SET LOCAL ROLE tap04_member;
SELECT is((SELECT count(*)::int FROM t04.units), 3, 'a member without context reads every reference row');
SELECT tenancy.set_tenant('acme', true);
SELECT is((SELECT count(*)::int FROM t04.units), 3, 'a member with context reads every reference row');
SELECT throws_ok($$INSERT INTO t04.units (code) VALUES ('lb')$$, '42501', NULL, 'a member cannot insert reference rows');
SELECT throws_ok($$UPDATE t04.units SET code = 'x'$$, '42501', NULL, 'a member cannot update reference rows');
SELECT throws_ok($$DELETE FROM t04.units$$, '42501', NULL, 'a member cannot delete reference rows');
RESET ROLE;
SET LOCAL ROLE tap04_analyst;
SELECT is((SELECT count(*)::int FROM t04.units), 3, 'an analyst reads reference rows');
RESET ROLE;
-- a DBA grants writes by mistake: the policies still refuse them
GRANT INSERT, UPDATE, DELETE ON t04.units TO tap04_mistake;
SET LOCAL ROLE tap04_mistake;
SELECT throws_ok($$INSERT INTO t04.units (id, code) VALUES (100, 'lb')$$, '42501',
                 'new row violates row-level security policy for table "units"', 'a mistaken INSERT grant: refused by policy');
SELECT lives_ok($$UPDATE t04.units SET code = 'x'$$, 'a mistaken UPDATE grant runs ...');
SELECT lives_ok($$DELETE FROM t04.units$$, 'a mistaken DELETE grant runs ...');
RESET ROLE;
SELECT results_eq($$SELECT code FROM t04.units ORDER BY id$$, $$VALUES ('kg'), ('kWh'), ('t CO2e')$$,
                  '... but changes no reference row');
SET LOCAL ROLE tap04_sa;
SELECT lives_ok($$INSERT INTO t04.units (code) VALUES ('lb')$$, 'the super admin inserts reference rows');
SELECT lives_ok($$UPDATE t04.units SET code = 'LB' WHERE code = 'lb'$$, 'the super admin updates reference rows');
RESET ROLE;
SELECT is((SELECT code FROM t04.units WHERE code = 'LB'), 'LB', 'the super admin''s write landed');

SELECT is(tenancy.register_reference('t04.units'), (SELECT ddl FROM dry),
          'register_reference re-run: runs what policy_sql of the reference table showed');
SELECT is((SELECT count(*)::int FROM pg_policy WHERE polrelid = 't04.units'::regclass), 4, 'still 4 policies after a re-run');

SELECT throws_ok($$SELECT tenancy.enable('t04.units')$$, '55000', 't04.units is registered as a reference table',
                 'enable on a reference table: 55000');
SELECT throws_ok($$SELECT tenancy.register_reference('t04.items')$$, '55000', 't04.items is a tenant table',
                 'register_reference on a tenant table: 55000');
CREATE VIEW t04.v AS SELECT 1 AS one;
SELECT throws_ok($$SELECT tenancy.register_reference('t04.v')$$, '42809', NULL, 'register_reference on a view: 42809');
SELECT throws_ok($$SELECT tenancy.register_reference(NULL)$$, '22004', NULL, 'register_reference(NULL): 22004');
SELECT throws_ok($$SELECT tenancy.register_reference('tenancy.audit_log')$$, '42501', NULL,
                 'register_reference on a tenancy table: 42501');

-- ---------------------------------------------------------------- disable a tenant table
CREATE POLICY my_rule ON t04.items AS RESTRICTIVE FOR SELECT USING (label IS NOT NULL);
CREATE TEMP TABLE off AS SELECT tenancy.disable('t04.items') AS ddl;
SELECT is((SELECT count(*)::int FROM pg_policy WHERE polrelid = 't04.items'::regclass AND polname LIKE 'tenancy\_%'), 0,
          'disable drops every generated policy');
SELECT ok(EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = 't04.items'::regclass AND polname = 'my_rule'),
          'disable keeps the user''s policy');
SELECT ok((SELECT relrowsecurity AND NOT relforcerowsecurity FROM pg_class WHERE oid = 't04.items'::regclass),
          'disable leaves RLS enabled (closed) but no longer forced');
SELECT ok(NOT has_table_privilege('tenancy_member', 't04.items', 'SELECT') AND NOT has_table_privilege('tenancy_viewer', 't04.items', 'SELECT')
          AND NOT has_table_privilege('tenancy_superadmin', 't04.items', 'SELECT') AND NOT has_table_privilege('tenancy_admin', 't04.items', 'INSERT'),
          'disable revokes the tenancy roles'' grants');
SELECT is((SELECT count(*)::int FROM tenancy.managed_tables WHERE relid = 't04.items'::regclass), 0,
          'disable removes the table from managed_tables');
SELECT ok((SELECT ddl FROM off) LIKE '%ALTER TABLE "t04"."items" NO FORCE ROW LEVEL SECURITY;%', 'disable returns the DDL it ran');
SELECT is((SELECT target FROM tenancy.audit_log WHERE action = 'disable'), 't04.items', 'disable writes an audit entry');
SELECT results_eq($$SELECT id FROM t04.items ORDER BY id$$, $$VALUES (1), (2)$$, 'the rows are kept');
-- a leftover direct grant: RLS stays on with no tenant policy, so still nothing
GRANT SELECT ON t04.items TO tap04_mistake;
SET LOCAL ROLE tap04_mistake;
SELECT is((SELECT count(*)::int FROM t04.items), 0, 'after disable a grantee sees no rows (closed, not open)');
RESET ROLE;
SELECT throws_ok($$SELECT tenancy.disable('t04.items')$$, '55000', 't04.items is not managed by pg_tenancy',
                 'disable of an unmanaged table: 55000');

-- ---------------------------------------------------------------- disable a reference table, then re-manage
SELECT lives_ok($$SELECT tenancy.disable('t04.units')$$, 'disable a reference table');
SELECT is((SELECT count(*)::int FROM pg_policy WHERE polrelid = 't04.units'::regclass), 0, 'its policies are gone');
SELECT lives_ok($$SELECT tenancy.register_reference('t04.items')$$, 'a disabled tenant table may become a reference table');
SELECT throws_ok($$SELECT tenancy.disable('t04.v')$$, '42809', NULL, 'disable of a view: 42809');

-- ---------------------------------------------------------------- dropping a managed table forgets it
DROP TABLE t04.items;
SELECT is((SELECT count(*)::int FROM tenancy.managed_tables WHERE relid::text LIKE 't04.%'), 0,
          'a dropped managed table is forgotten');

SELECT * FROM finish();
ROLLBACK;
