-- tenancy.enable and tenancy.policy_sql: the column, default, NOT NULL, index,
-- RLS, the 12 policies, grants, idempotence, stale and user policies,
-- hierarchical tables, and every error.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(80);

SELECT tenancy.create_tenant('acme', 'Acme');
CREATE SCHEMA t03;

-- ---------------------------------------------------------------- dry run
CREATE TABLE t03.docs (id serial PRIMARY KEY, body text);
CREATE TEMP TABLE dry AS SELECT tenancy.policy_sql('t03.docs') AS ddl;
SELECT hasnt_column('t03', 'docs', 'tenant_id', 'policy_sql is a dry run: no column is added');
SELECT is((SELECT count(*)::int FROM pg_policy WHERE polrelid = 't03.docs'::regclass), 0,
          'policy_sql is a dry run: no policy is created');
SELECT is((SELECT count(*)::int FROM tenancy.managed_tables), 0, 'policy_sql is a dry run: nothing is registered');
SELECT is((SELECT count(*)::int FROM tenancy.audit_log), 1, 'policy_sql writes no audit entry (only create_tenant''s)');
SELECT ok((SELECT ddl FROM dry) LIKE 'ALTER TABLE "t03"."docs" ADD COLUMN "tenant_id" uuid NOT NULL DEFAULT tenancy.current_tenant();%',
          'policy_sql starts by adding the missing tenant column');

-- ---------------------------------------------------------------- enable on a fresh table
CREATE TEMP TABLE ran AS SELECT tenancy.enable('t03.docs') AS ddl;
SELECT is((SELECT ddl FROM ran), (SELECT ddl FROM dry), 'enable runs exactly the DDL policy_sql showed');

SELECT has_column('t03', 'docs', 'tenant_id', 'enable adds the tenant column');
SELECT col_type_is('t03', 'docs', 'tenant_id', 'uuid', 'the tenant column is a uuid');
SELECT col_not_null('t03', 'docs', 'tenant_id', 'the tenant column is NOT NULL');
SELECT is((SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
            WHERE d.adrelid = 't03.docs'::regclass AND a.attname = 'tenant_id'),
          'tenancy.current_tenant()', 'the tenant column defaults to the current tenant');
SELECT is((SELECT count(*)::int FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = 't03.docs'::regclass AND a.attname = 'tenant_id'), 1,
          'enable creates an index leading with the tenant column');
SELECT ok((SELECT relrowsecurity FROM pg_class WHERE oid = 't03.docs'::regclass), 'row level security is enabled');
SELECT ok((SELECT relforcerowsecurity FROM pg_class WHERE oid = 't03.docs'::regclass), 'row level security is forced');

SELECT results_eq(
    $$SELECT policyname::text COLLATE "default", permissive, roles::text COLLATE "default", cmd FROM pg_policies WHERE schemaname = 't03' AND tablename = 'docs' ORDER BY 1$$,
    $$VALUES ('tenancy_analyst_no_rows', 'RESTRICTIVE', '{tenancy_analyst}', 'ALL'),
             ('tenancy_superadmin_delete', 'PERMISSIVE', '{tenancy_superadmin}', 'DELETE'),
             ('tenancy_superadmin_insert', 'PERMISSIVE', '{tenancy_superadmin}', 'INSERT'),
             ('tenancy_superadmin_select', 'PERMISSIVE', '{tenancy_superadmin}', 'SELECT'),
             ('tenancy_superadmin_update', 'PERMISSIVE', '{tenancy_superadmin}', 'UPDATE'),
             ('tenancy_tenant_delete', 'PERMISSIVE', '{public}', 'DELETE'),
             ('tenancy_tenant_insert', 'PERMISSIVE', '{public}', 'INSERT'),
             ('tenancy_tenant_select', 'PERMISSIVE', '{public}', 'SELECT'),
             ('tenancy_tenant_update', 'PERMISSIVE', '{public}', 'UPDATE'),
             ('tenancy_viewer_no_delete', 'RESTRICTIVE', '{tenancy_viewer}', 'DELETE'),
             ('tenancy_viewer_no_insert', 'RESTRICTIVE', '{tenancy_viewer}', 'INSERT'),
             ('tenancy_viewer_no_update', 'RESTRICTIVE', '{tenancy_viewer}', 'UPDATE')$$,
    'enable creates the 12 policies: per command and per role, restrictive for viewer and analyst');
SELECT results_eq(
    $$SELECT policyname::text COLLATE "default", qual COLLATE "default", with_check COLLATE "default" FROM pg_policies
       WHERE schemaname = 't03' AND tablename = 'docs' AND policyname LIKE 'tenancy\_tenant\_%' ORDER BY 1$$,
    $$VALUES ('tenancy_tenant_delete', '(tenant_id = ( SELECT tenancy.current_tenant() AS current_tenant))', NULL),
             ('tenancy_tenant_insert', NULL, '(tenant_id = ( SELECT tenancy.current_tenant() AS current_tenant))'),
             ('tenancy_tenant_select', '(tenant_id = ( SELECT tenancy.current_tenant() AS current_tenant))', NULL),
             ('tenancy_tenant_update', '(tenant_id = ( SELECT tenancy.current_tenant() AS current_tenant))',
                                       '(tenant_id = ( SELECT tenancy.current_tenant() AS current_tenant))')$$,
    'tenant policies compare the column with (SELECT tenancy.current_tenant()), no OR');
SELECT is((SELECT count(*)::int FROM pg_policies WHERE schemaname = 't03' AND tablename = 'docs'
             AND (coalesce(qual, '') || coalesce(with_check, '')) ~* '\mOR\M'), 0, 'no generated policy uses OR');

SELECT ok(has_table_privilege('tenancy_member', 't03.docs', 'SELECT, INSERT, UPDATE, DELETE')
          AND has_table_privilege('tenancy_member', 't03.docs', 'SELECT')
          AND has_table_privilege('tenancy_member', 't03.docs', 'INSERT')
          AND has_table_privilege('tenancy_member', 't03.docs', 'UPDATE')
          AND has_table_privilege('tenancy_member', 't03.docs', 'DELETE'), 'tenancy_member may read and write');
SELECT ok(has_table_privilege('tenancy_admin', 't03.docs', 'SELECT') AND has_table_privilege('tenancy_admin', 't03.docs', 'INSERT')
          AND has_table_privilege('tenancy_admin', 't03.docs', 'UPDATE') AND has_table_privilege('tenancy_admin', 't03.docs', 'DELETE'),
          'tenancy_admin may read and write');
SELECT ok(has_table_privilege('tenancy_superadmin', 't03.docs', 'SELECT') AND has_table_privilege('tenancy_superadmin', 't03.docs', 'INSERT')
          AND has_table_privilege('tenancy_superadmin', 't03.docs', 'UPDATE') AND has_table_privilege('tenancy_superadmin', 't03.docs', 'DELETE'),
          'tenancy_superadmin may read and write');
SELECT ok(has_table_privilege('tenancy_viewer', 't03.docs', 'SELECT'), 'tenancy_viewer may read');
SELECT ok(NOT has_table_privilege('tenancy_viewer', 't03.docs', 'INSERT') AND NOT has_table_privilege('tenancy_viewer', 't03.docs', 'UPDATE')
          AND NOT has_table_privilege('tenancy_viewer', 't03.docs', 'DELETE') AND NOT has_table_privilege('tenancy_viewer', 't03.docs', 'TRUNCATE'),
          'tenancy_viewer may not write');
SELECT ok(NOT has_table_privilege('tenancy_analyst', 't03.docs', 'SELECT') AND NOT has_table_privilege('tenancy_analyst', 't03.docs', 'INSERT')
          AND NOT has_table_privilege('tenancy_analyst', 't03.docs', 'UPDATE') AND NOT has_table_privilege('tenancy_analyst', 't03.docs', 'DELETE'),
          'tenancy_analyst has no privilege on raw tenant rows');
SELECT ok(NOT has_table_privilege('tenancy_member', 't03.docs', 'TRUNCATE'), 'nobody is granted TRUNCATE');
SELECT ok(has_schema_privilege('tenancy_member', 't03', 'USAGE') AND has_schema_privilege('tenancy_viewer', 't03', 'USAGE'),
          'member and viewer get USAGE on the schema');
SELECT ok(has_sequence_privilege('tenancy_member', 't03.docs_id_seq', 'USAGE'), 'writers may use the serial''s sequence');
SELECT results_eq($$SELECT kind, tenant_column::text COLLATE "default", hierarchical FROM tenancy.managed_tables WHERE relid = 't03.docs'::regclass$$,
                  $$VALUES ('tenant', 'tenant_id', false)$$, 'enable records the table in managed_tables');
SELECT results_eq($$SELECT target, details FROM tenancy.audit_log WHERE action = 'enable'$$,
                  $$VALUES ('t03.docs', '{"tenant_column": "tenant_id", "hierarchical": false}'::jsonb)$$,
                  'enable writes an audit entry naming the table and its settings');

-- ---------------------------------------------------------------- idempotent re-run, stale and user policies
CREATE POLICY tenancy_stale ON t03.docs AS RESTRICTIVE FOR SELECT USING (true);
CREATE POLICY my_rule ON t03.docs AS RESTRICTIVE FOR SELECT USING (body IS DISTINCT FROM 'secret');
TRUNCATE dry;
INSERT INTO dry SELECT tenancy.policy_sql('t03.docs');
TRUNCATE ran;
INSERT INTO ran SELECT tenancy.enable('t03.docs');
SELECT is((SELECT ddl FROM ran), (SELECT ddl FROM dry), 're-run: enable runs exactly what policy_sql showed');
SELECT ok((SELECT ddl FROM ran) NOT LIKE '%ADD COLUMN%' AND (SELECT ddl FROM ran) NOT LIKE '%CREATE INDEX%'
          AND (SELECT ddl FROM ran) NOT LIKE '%SET DEFAULT%' AND (SELECT ddl FROM ran) NOT LIKE '%SET NOT NULL%',
          're-run: nothing is added to the column and no second index is built');
SELECT ok((SELECT ddl FROM ran) LIKE '%DROP POLICY IF EXISTS "tenancy_stale" ON "t03"."docs";%',
          're-run drops stale tenancy_* policies');
SELECT ok((SELECT ddl FROM ran) NOT LIKE '%my_rule%', 're-run DDL does not mention the user''s policy');
SELECT is((SELECT count(*)::int FROM pg_policy WHERE polrelid = 't03.docs'::regclass AND polname LIKE 'tenancy\_%'), 12,
          're-run leaves exactly the 12 generated policies');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = 't03.docs'::regclass AND polname = 'tenancy_stale'),
          'the stale tenancy_ policy is gone');
SELECT ok(EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = 't03.docs'::regclass AND polname = 'my_rule'),
          'the user''s policy is untouched');
SELECT is((SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 't03.docs'::regclass AND polname = 'my_rule'),
          '(body IS DISTINCT FROM ''secret''::text)', 'the user''s policy keeps its expression');
SELECT is((SELECT count(*)::int FROM pg_index WHERE indrelid = 't03.docs'::regclass), 2,
          're-run creates no extra index (primary key + tenant index)');
SELECT is((SELECT count(*)::int FROM tenancy.managed_tables WHERE relid = 't03.docs'::regclass), 1,
          're-run keeps one managed_tables row');

-- ---------------------------------------------------------------- existing nullable column without default
CREATE TABLE t03.notes (tenant_id uuid, note text);
SELECT ok(tenancy.policy_sql('t03.notes') LIKE
          'ALTER TABLE "t03"."notes" ALTER COLUMN "tenant_id" SET DEFAULT tenancy.current_tenant();' || chr(10) ||
          'ALTER TABLE "t03"."notes" ALTER COLUMN "tenant_id" SET NOT NULL;' || chr(10) ||
          'CREATE INDEX ON "t03"."notes" ("tenant_id");%', 'policy_sql sets default and NOT NULL on an existing column');
SELECT lives_ok($$SELECT tenancy.enable('t03.notes')$$, 'enable on a table with a nullable uuid tenant column');
SELECT col_not_null('t03', 'notes', 'tenant_id', 'enable makes the existing column NOT NULL');
SELECT col_has_default('t03', 'notes', 'tenant_id', 'enable gives the existing column a default');

-- ---------------------------------------------------------------- another column name
CREATE TABLE t03.custom (org uuid NOT NULL, x int);
CREATE INDEX ON t03.custom (org, x);
SELECT lives_ok($$SELECT tenancy.enable('t03.custom', tenant_column => 'org')$$, 'enable with tenant_column => org');
SELECT is((SELECT qual FROM pg_policies WHERE schemaname = 't03' AND tablename = 'custom' AND policyname = 'tenancy_tenant_select'),
          '(org = ( SELECT tenancy.current_tenant() AS current_tenant))', 'policies use the given column');
SELECT hasnt_column('t03', 'custom', 'tenant_id', 'no tenant_id column is added when another column is named');
SELECT is((SELECT count(*)::int FROM pg_index WHERE indrelid = 't03.custom'::regclass), 1,
          'an existing index leading with the column is reused');
SELECT is((SELECT tenant_column::text COLLATE "default" FROM tenancy.managed_tables WHERE relid = 't03.custom'::regclass), 'org',
          'managed_tables records the column');
SELECT is(tenancy.policy_sql('t03.custom'), tenancy.policy_sql('t03.custom', 'org', false),
          'policy_sql without arguments uses the recorded column');

-- ---------------------------------------------------------------- hierarchical
CREATE TABLE t03.orgs (id int, tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant());
SELECT lives_ok($$SELECT tenancy.enable('t03.orgs', hierarchical => true)$$, 'enable hierarchical');
SELECT is((SELECT qual FROM pg_policies WHERE schemaname = 't03' AND tablename = 'orgs' AND policyname = 'tenancy_tenant_select'),
          '(tenant_id = ANY (( SELECT tenancy.visible_tenants() AS visible_tenants)::uuid[]))',
          'hierarchical: reads compare with the visible tenants');
SELECT results_eq(
    $$SELECT qual COLLATE "default", with_check COLLATE "default" FROM pg_policies WHERE schemaname = 't03' AND tablename = 'orgs'
       AND policyname IN ('tenancy_tenant_update', 'tenancy_tenant_delete', 'tenancy_tenant_insert') ORDER BY policyname$$,
    $$VALUES ('(tenant_id = ( SELECT tenancy.current_tenant() AS current_tenant))', NULL),
             (NULL, '(tenant_id = ( SELECT tenancy.current_tenant() AS current_tenant))'),
             ('(tenant_id = ( SELECT tenancy.current_tenant() AS current_tenant))',
              '(tenant_id = ( SELECT tenancy.current_tenant() AS current_tenant))')$$,
    'hierarchical: writes stay on the current tenant only');
SELECT ok((SELECT hierarchical FROM tenancy.managed_tables WHERE relid = 't03.orgs'::regclass), 'managed_tables records hierarchical');
SELECT ok(tenancy.policy_sql('t03.orgs') LIKE '%USING ("tenant_id" = ANY ((SELECT tenancy.visible_tenants())::uuid[]))%',
          'policy_sql without arguments keeps the recorded hierarchical setting');
SELECT is(tenancy.policy_sql('t03.orgs'), tenancy.enable('t03.orgs', hierarchical => true),
          'hierarchical re-run runs what policy_sql shows');
SELECT lives_ok($$SELECT tenancy.enable('t03.orgs')$$, 're-enable without hierarchical');
SELECT ok(NOT (SELECT hierarchical FROM tenancy.managed_tables WHERE relid = 't03.orgs'::regclass)
          AND (SELECT qual FROM pg_policies WHERE schemaname = 't03' AND tablename = 'orgs' AND policyname = 'tenancy_tenant_select')
              = '(tenant_id = ( SELECT tenancy.current_tenant() AS current_tenant))',
          're-enabling without hierarchical narrows reads again');

-- ---------------------------------------------------------------- rows but no tenant column
CREATE TABLE t03.legacy (x int);
INSERT INTO t03.legacy VALUES (1), (2);
SELECT throws_ok($$SELECT tenancy.enable('t03.legacy')$$, '55000',
                 't03.legacy has rows but no column tenant_id, and no tenant is current to own them',
                 'rows, no column, no context: 55000');
SELECT hasnt_column('t03', 'legacy', 'tenant_id', 'the refused enable added nothing');
SELECT tenancy.set_tenant('acme', true);
SELECT lives_ok($$SELECT tenancy.enable('t03.legacy')$$, 'with a current tenant enable adopts the existing rows');
SELECT results_eq($$SELECT x, tenant_id FROM t03.legacy ORDER BY x$$,
                  $$VALUES (1, tenancy.resolve('acme')), (2, tenancy.resolve('acme'))$$,
                  'existing rows belong to the tenant that was current');
SELECT tenancy.clear_tenant(true);
CREATE TABLE t03.empty_legacy (x int);
SELECT lives_ok($$SELECT tenancy.enable('t03.empty_legacy')$$, 'an empty table needs no context');

-- ---------------------------------------------------------------- names that need quoting
CREATE SCHEMA "T03 Mixed";
CREATE TABLE "T03 Mixed"."Odd Table" (id serial, "Org Id" uuid, note text);
SELECT lives_ok($$SELECT tenancy.enable('"T03 Mixed"."Odd Table"', tenant_column => 'Org Id')$$,
                'enable on a schema, table and column that need quoting');
SELECT is((SELECT qual FROM pg_policies WHERE schemaname = 'T03 Mixed' AND tablename = 'Odd Table' AND policyname = 'tenancy_tenant_select'),
          '("Org Id" = ( SELECT tenancy.current_tenant() AS current_tenant))', 'the quoted column is used in the policies');
CREATE ROLE tap03_writer NOLOGIN;
GRANT tenancy_member TO tap03_writer;
SET LOCAL ROLE tap03_writer;
SELECT tenancy.set_tenant('acme', true);
SELECT lives_ok($$INSERT INTO "T03 Mixed"."Odd Table" (note) VALUES ('hello')$$, 'a member inserts through the quoted names (schema, sequence grants)');
SELECT results_eq($$SELECT note FROM "T03 Mixed"."Odd Table"$$, $$VALUES ('hello')$$, 'and reads its row back');
RESET ROLE;
SELECT tenancy.clear_tenant(true);

-- ---------------------------------------------------------------- errors
CREATE TABLE t03.textcol (tenant_id text);
SELECT throws_ok($$SELECT tenancy.enable('t03.textcol')$$, '42804',
                 'tenant column "tenant_id" has type text, not uuid on table t03.textcol', 'tenant column of type text: 42804');
SELECT throws_ok($$SELECT tenancy.policy_sql('t03.textcol')$$, '42804', NULL, 'policy_sql refuses it too: 42804');
CREATE VIEW t03.v AS SELECT * FROM t03.docs;
SELECT throws_ok($$SELECT tenancy.enable('t03.v')$$, '42809', 't03.v is not a table', 'enable on a view: 42809');
SELECT throws_ok($$SELECT tenancy.policy_sql('t03.v')$$, '42809', 't03.v is not a table', 'policy_sql on a view: 42809');
CREATE SEQUENCE t03.s;
SELECT throws_ok($$SELECT tenancy.enable('t03.s')$$, '42809', NULL, 'enable on a sequence: 42809');
SELECT throws_ok($$SELECT tenancy.enable('tenancy.tenants')$$, '42501',
                 'tenancy.tenants belongs to schema tenancy, which pg_tenancy does not manage', 'enable on tenancy.tenants: 42501');
SELECT throws_ok($$SELECT tenancy.enable('pg_catalog.pg_class')$$, '42501', NULL, 'enable on a catalog: 42501');
SELECT throws_ok($$SELECT tenancy.enable(NULL)$$, '22004', 'table must not be NULL', 'enable(NULL): 22004');
SELECT throws_ok($$SELECT tenancy.enable('t03.docs', tenant_column => NULL)$$, '22004', NULL, 'tenant_column NULL: 22004');
SELECT throws_ok($$SELECT tenancy.enable('t03.docs', tenant_column => '')$$, '22004', NULL, 'tenant_column empty: 22004');
SELECT throws_ok($$SELECT tenancy.enable('t03.nope')$$, '42P01', NULL, 'unknown table name: 42P01');
SELECT throws_ok($$SELECT tenancy.enable(999999999::oid::regclass)$$, '42P01', 'table with OID 999999999 does not exist',
                 'unknown table oid: 42P01');
SELECT throws_ok($$SELECT tenancy.policy_sql(999999999::oid::regclass)$$, '42P01', NULL, 'policy_sql of an unknown oid: 42P01');

CREATE ROLE tap03_member NOLOGIN;
GRANT tenancy_member TO tap03_member;
SET LOCAL ROLE tap03_member;
SELECT throws_ok($$SELECT tenancy.enable('t03.legacy')$$, '42501', NULL, 'a member cannot call enable: 42501');
SELECT throws_ok($$SELECT tenancy.policy_sql('t03.legacy')$$, '42501', NULL, 'a member cannot call policy_sql: 42501');
RESET ROLE;

SELECT is((SELECT count(*)::int FROM tenancy.audit_log WHERE action = 'enable'), 10,
          'one enable audit entry per successful enable, none for refused ones');

SELECT * FROM finish();
ROLLBACK;
