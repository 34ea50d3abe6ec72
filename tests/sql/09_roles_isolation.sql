-- Isolation through the tenancy roles: tenant A can never read, change or
-- create B's rows; viewer, analyst, admin, superadmin and roles with mistaken
-- grants; no context; suspended tenant; views; hierarchical reads.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(58);

SELECT tenancy.create_tenant('alpha', 'Alpha');
SELECT tenancy.create_tenant('alpha-sub', 'Alpha Subsidiary', parent => 'alpha');
SELECT tenancy.create_tenant('beta', 'Beta');
CREATE TEMP TABLE ids AS SELECT slug, id FROM tenancy.tenants;
GRANT SELECT ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.tid(s text) RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT id FROM ids WHERE slug = s $$;

CREATE SCHEMA t09;
CREATE TABLE t09.docs (id int PRIMARY KEY, tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant(), body text);
CREATE TABLE t09.orgs (id int PRIMARY KEY, tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant(), name text);
SELECT tenancy.enable('t09.docs');
SELECT tenancy.enable('t09.orgs', hierarchical => true);
INSERT INTO t09.docs VALUES (1, pg_temp.tid('alpha'), 'a1'), (2, pg_temp.tid('alpha'), 'a2'),
                            (3, pg_temp.tid('beta'), 'b1'), (4, pg_temp.tid('alpha-sub'), 's1');
INSERT INTO t09.orgs VALUES (1, pg_temp.tid('alpha'), 'Alpha HQ'), (2, pg_temp.tid('alpha-sub'), 'Alpha Sub'),
                            (3, pg_temp.tid('beta'), 'Beta HQ');
CREATE VIEW t09.docs_owner_view AS SELECT * FROM t09.docs;
CREATE VIEW t09.docs_invoker_view WITH (security_invoker = true) AS SELECT * FROM t09.docs;
GRANT SELECT ON t09.docs_owner_view, t09.docs_invoker_view TO tenancy_member;

CREATE ROLE tap09_member NOLOGIN;   GRANT tenancy_member TO tap09_member;
CREATE ROLE tap09_admin NOLOGIN;    GRANT tenancy_admin TO tap09_admin;
CREATE ROLE tap09_viewer NOLOGIN;   GRANT tenancy_viewer TO tap09_viewer;
CREATE ROLE tap09_analyst NOLOGIN;  GRANT tenancy_analyst TO tap09_analyst;
CREATE ROLE tap09_sa NOLOGIN;       GRANT tenancy_superadmin TO tap09_sa;
CREATE ROLE tap09_outsider NOLOGIN; GRANT USAGE ON SCHEMA t09 TO tap09_outsider;
GRANT SELECT, INSERT, UPDATE, DELETE ON t09.docs TO tap09_outsider;   -- a DBA's mistake

-- ---------------------------------------------------------------- member, no context
SET LOCAL ROLE tap09_member;
SELECT is((SELECT count(*)::int FROM t09.docs), 0, 'member without context: no rows (fail closed)');
SELECT throws_ok($$INSERT INTO t09.docs (id, body) VALUES (10, 'x')$$, '42501', NULL,
                 'member without context: an insert with the default (no) tenant is refused');
SELECT throws_ok(format($$INSERT INTO t09.docs VALUES (10, %L, 'x')$$, pg_temp.tid('alpha')), '42501', NULL,
                 'member without context: an insert naming a tenant is refused by policy');
SELECT lives_ok($$UPDATE t09.docs SET body = 'hacked'$$, 'member without context: UPDATE runs ...');
SELECT lives_ok($$DELETE FROM t09.docs$$, 'member without context: DELETE runs ...');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM t09.docs WHERE body = 'hacked'), 0, '... but changes no row');
SELECT is((SELECT count(*)::int FROM t09.docs), 4, '... and deletes no row');

-- ---------------------------------------------------------------- member of alpha
SET LOCAL ROLE tap09_member;
SELECT tenancy.set_tenant('alpha', true);
SELECT results_eq($$SELECT id FROM t09.docs ORDER BY id$$, $$VALUES (1), (2)$$, 'alpha reads only its own rows');
SELECT is_empty(format($$SELECT * FROM t09.docs WHERE tenant_id = %L$$, pg_temp.tid('beta')),
                'alpha asking for beta''s rows by tenant_id gets nothing');
SELECT is_empty($$SELECT * FROM t09.docs WHERE id = 3$$, 'alpha asking for beta''s row by id gets nothing');
SELECT is_empty($$SELECT * FROM t09.docs WHERE id = 4$$, 'alpha cannot read its subsidiary''s rows on a flat table');
SELECT results_eq($$UPDATE t09.docs SET body = 'hacked' WHERE id = 3 RETURNING id$$, $$SELECT 1 WHERE false$$,
                  'alpha updating beta''s row: 0 rows');
SELECT results_eq($$DELETE FROM t09.docs WHERE id = 3 RETURNING id$$, $$SELECT 1 WHERE false$$,
                  'alpha deleting beta''s row: 0 rows');
SELECT results_eq($$DELETE FROM t09.docs WHERE tenant_id <> tenancy.current_tenant() RETURNING id$$, $$SELECT 1 WHERE false$$,
                  'alpha deleting every other tenant''s rows: 0 rows');
SELECT throws_ok(format($$INSERT INTO t09.docs VALUES (10, %L, 'x')$$, pg_temp.tid('beta')), '42501',
                 'new row violates row-level security policy for table "docs"', 'alpha inserting a row with beta''s tenant_id: 42501');
SELECT throws_ok(format($$UPDATE t09.docs SET tenant_id = %L WHERE id = 1$$, pg_temp.tid('beta')), '42501', NULL,
                 'alpha moving its own row to beta: 42501');
SELECT throws_ok(format($$INSERT INTO t09.docs VALUES (11, %L, 'x') ON CONFLICT (id) DO NOTHING$$, pg_temp.tid('beta')), '42501', NULL,
                 'alpha upserting with beta''s tenant_id: 42501');
SELECT lives_ok($$INSERT INTO t09.docs (id, body) VALUES (12, 'new')$$, 'alpha inserts with the default tenant');
SELECT lives_ok($$UPDATE t09.docs SET body = 'edited' WHERE id = 1$$, 'alpha updates its own row');
SELECT lives_ok($$DELETE FROM t09.docs WHERE id = 2$$, 'alpha deletes its own row');
SELECT throws_ok($$TRUNCATE t09.docs$$, '42501', NULL, 'a member cannot TRUNCATE (it would bypass RLS): 42501');
SELECT results_eq($$SELECT id FROM t09.docs_invoker_view ORDER BY id$$, $$VALUES (1), (12)$$,
                  'a security_invoker view shows only alpha''s rows');
SELECT set_config('tenancy.tenant_id', pg_temp.tid('beta')::text, true);
SELECT results_eq($$SELECT id, body FROM t09.docs ORDER BY id$$, $$VALUES (3, 'b1')$$,
                  'switching the (unbound) context to beta shows only beta''s row, untouched');
RESET ROLE;
SELECT results_eq($$SELECT id, tenant_id, body FROM t09.docs ORDER BY id$$,
                  $$VALUES (1, pg_temp.tid('alpha'), 'edited'), (3, pg_temp.tid('beta'), 'b1'),
                           (4, pg_temp.tid('alpha-sub'), 's1'), (12, pg_temp.tid('alpha'), 'new')$$,
                  'as superuser: only alpha''s own rows were changed');
-- a view owned by a superuser without security_invoker is the leak the linter warns about
SET LOCAL ROLE tap09_member;
SELECT tenancy.set_tenant('alpha', true);
SELECT is((SELECT count(*)::int FROM t09.docs_owner_view), 4,
          'a view without security_invoker owned by a superuser shows every tenant (why the linter flags it)');
RESET ROLE;
SELECT ok(EXISTS (SELECT 1 FROM tenancy.check_isolation() WHERE object = 't09.docs_owner_view'),
          'and the linter does flag that view');

-- ---------------------------------------------------------------- hierarchical reads
SET LOCAL ROLE tap09_member;
SELECT tenancy.set_tenant('alpha', true);
SELECT results_eq($$SELECT id FROM t09.orgs ORDER BY id$$, $$VALUES (1), (2)$$, 'hierarchical: the parent reads its subsidiary''s rows');
SELECT results_eq($$UPDATE t09.orgs SET name = 'taken over' WHERE id = 2 RETURNING id$$, $$SELECT 1 WHERE false$$,
                  'hierarchical: the parent cannot update its subsidiary''s rows');
SELECT results_eq($$DELETE FROM t09.orgs WHERE id = 2 RETURNING id$$, $$SELECT 1 WHERE false$$,
                  'hierarchical: the parent cannot delete its subsidiary''s rows');
SELECT throws_ok(format($$INSERT INTO t09.orgs VALUES (10, %L, 'x')$$, pg_temp.tid('alpha-sub')), '42501', NULL,
                 'hierarchical: the parent cannot insert rows for its subsidiary');
SELECT tenancy.set_tenant('alpha-sub', true);
SELECT results_eq($$SELECT id FROM t09.orgs ORDER BY id$$, $$VALUES (2)$$, 'hierarchical: the subsidiary does not read its parent');
SELECT tenancy.set_tenant('beta', true);
SELECT results_eq($$SELECT id FROM t09.orgs ORDER BY id$$, $$VALUES (3)$$, 'hierarchical: an unrelated tenant reads only its own');
RESET ROLE;
SELECT is((SELECT name FROM t09.orgs WHERE id = 2), 'Alpha Sub', 'the subsidiary''s row is unchanged');

-- ---------------------------------------------------------------- suspended tenant
SELECT tenancy.suspend_tenant('beta');
SET LOCAL ROLE tap09_member;
SELECT set_config('tenancy.tenant_id', pg_temp.tid('beta')::text, true);
SELECT is((SELECT count(*)::int FROM t09.docs), 0, 'a suspended tenant''s context sees nothing');
SELECT throws_ok(format($$INSERT INTO t09.docs VALUES (20, %L, 'x')$$, pg_temp.tid('beta')), '42501', NULL,
                 'a suspended tenant''s context writes nothing');
SELECT results_eq($$UPDATE t09.docs SET body = 'x' RETURNING id$$, $$SELECT 1 WHERE false$$,
                  'a suspended tenant''s context updates nothing');
SELECT throws_ok($$SELECT tenancy.set_tenant('beta', true)$$, '55000', NULL, 'and cannot be set again: 55000');
RESET ROLE;
SELECT tenancy.resume_tenant('beta');
SET LOCAL ROLE tap09_member;
SELECT results_eq($$SELECT id FROM t09.docs ORDER BY id$$, $$VALUES (3)$$, 'after resume the tenant sees its rows again');
RESET ROLE;

-- ---------------------------------------------------------------- admin
SET LOCAL ROLE tap09_admin;
SELECT tenancy.set_tenant('beta', true);
SELECT results_eq($$SELECT id FROM t09.docs ORDER BY id$$, $$VALUES (3)$$, 'an admin reads only its tenant');
SELECT lives_ok($$INSERT INTO t09.docs (id, body) VALUES (30, 'b2')$$, 'an admin writes in its tenant');
SELECT throws_ok(format($$INSERT INTO t09.docs VALUES (31, %L, 'x')$$, pg_temp.tid('alpha')), '42501', NULL,
                 'an admin cannot write into another tenant');
RESET ROLE;

-- ---------------------------------------------------------------- viewer
SET LOCAL ROLE tap09_viewer;
SELECT tenancy.set_tenant('alpha', true);
SELECT results_eq($$SELECT id FROM t09.docs ORDER BY id$$, $$VALUES (1), (12)$$, 'a viewer reads its tenant''s rows');
SELECT throws_ok($$INSERT INTO t09.docs (id, body) VALUES (40, 'x')$$, '42501', NULL, 'a viewer cannot insert');
SELECT throws_ok($$UPDATE t09.docs SET body = 'x'$$, '42501', NULL, 'a viewer cannot update');
SELECT throws_ok($$DELETE FROM t09.docs$$, '42501', NULL, 'a viewer cannot delete');
RESET ROLE;
GRANT INSERT, UPDATE, DELETE ON t09.docs TO tenancy_viewer;   -- a DBA's mistake
SET LOCAL ROLE tap09_viewer;
SELECT throws_ok($$INSERT INTO t09.docs (id, body) VALUES (40, 'x')$$, '42501',
                 'new row violates row-level security policy "tenancy_viewer_no_insert" for table "docs"',
                 'a viewer with a mistaken INSERT grant is still refused by policy');
SELECT results_eq($$UPDATE t09.docs SET body = 'x' RETURNING id$$, $$SELECT 1 WHERE false$$,
                  'a viewer with a mistaken UPDATE grant updates nothing');
SELECT results_eq($$DELETE FROM t09.docs RETURNING id$$, $$SELECT 1 WHERE false$$,
                  'a viewer with a mistaken DELETE grant deletes nothing');
RESET ROLE;

-- ---------------------------------------------------------------- analyst
SET LOCAL ROLE tap09_analyst;
SELECT tenancy.set_tenant('alpha', true);
SELECT throws_ok($$SELECT * FROM t09.docs$$, '42501', NULL, 'an analyst cannot read raw tenant rows');
RESET ROLE;
GRANT USAGE ON SCHEMA t09 TO tenancy_analyst;   -- a DBA's mistake
GRANT SELECT, INSERT ON t09.docs TO tenancy_analyst;
SET LOCAL ROLE tap09_analyst;
SELECT is((SELECT count(*)::int FROM t09.docs), 0, 'an analyst with a mistaken SELECT grant still reads no rows');
SELECT throws_ok($$INSERT INTO t09.docs (id, body) VALUES (50, 'x')$$, '42501', NULL,
                 'an analyst with a mistaken INSERT grant cannot write');
RESET ROLE;

-- ---------------------------------------------------------------- a role outside the tenancy roles with direct grants
SET LOCAL ROLE tap09_outsider;
SELECT tenancy.clear_tenant(true);
SELECT is((SELECT count(*)::int FROM t09.docs), 0, 'a directly granted role without context sees nothing');
SELECT tenancy.set_tenant('beta', true);
SELECT results_eq($$SELECT id FROM t09.docs ORDER BY id$$, $$VALUES (3), (30)$$,
                  'a directly granted role is confined to its tenant like anyone else');
SELECT throws_ok(format($$INSERT INTO t09.docs VALUES (60, %L, 'x')$$, pg_temp.tid('alpha')), '42501', NULL,
                 'a directly granted role cannot write into another tenant');
RESET ROLE;

-- ---------------------------------------------------------------- super admin
SET LOCAL ROLE tap09_sa;
SELECT tenancy.clear_tenant(true);
SELECT is((SELECT count(*)::int FROM t09.docs), 5, 'the super admin sees every tenant''s rows without context');
SELECT lives_ok(format($$INSERT INTO t09.docs VALUES (70, %L, 'by sa')$$, pg_temp.tid('beta')), 'the super admin writes into any tenant');
SELECT is((SELECT count(*)::int FROM tenancy.tenants), 3, 'the super admin sees the whole registry');
RESET ROLE;
SELECT results_eq($$SELECT details->>'command' FROM tenancy.audit_log WHERE action = 'superadmin_access' AND target = 't09.docs' ORDER BY seq$$,
                  $$VALUES ('SELECT'), ('INSERT')$$, 'the super admin''s cross-tenant access is audited');

SELECT * FROM finish();
ROLLBACK;
