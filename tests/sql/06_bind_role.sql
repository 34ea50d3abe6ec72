-- tenancy.bind_role / tenancy.unbind_role: a bound role always works in its
-- own tenant, whatever it sets; errors and audit entries.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(46);

SELECT tenancy.create_tenant('acme', 'Acme');
SELECT tenancy.create_tenant('acme-europe', 'Acme Europe', parent => 'acme');
SELECT tenancy.create_tenant('globex', 'Globex');
CREATE TEMP TABLE ids AS SELECT slug, id FROM tenancy.tenants;
GRANT SELECT ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.tid(s text) RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT id FROM ids WHERE slug = s $$;

CREATE ROLE tap06_app NOLOGIN;     GRANT tenancy_member TO tap06_app;
CREATE ROLE tap06_free NOLOGIN;    GRANT tenancy_member TO tap06_free;
CREATE ROLE tap06_super SUPERUSER NOLOGIN;
CREATE ROLE tap06_bypass BYPASSRLS NOLOGIN;
CREATE ROLE "Tap06 Quoted" NOLOGIN; GRANT tenancy_member TO "Tap06 Quoted";

CREATE SCHEMA t06;
CREATE TABLE t06.docs (id int, tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant());
SELECT tenancy.enable('t06.docs');
INSERT INTO t06.docs VALUES (1, pg_temp.tid('acme')), (2, pg_temp.tid('globex')), (3, pg_temp.tid('acme-europe'));

-- ---------------------------------------------------------------- bind
SELECT lives_ok($$SELECT tenancy.bind_role('tap06_app', 'acme')$$, 'bind_role by slug');
SELECT results_eq($$SELECT role::text COLLATE "default", tenant_id FROM tenancy.role_bindings$$,
                  $$VALUES ('tap06_app', pg_temp.tid('acme'))$$, 'role_bindings records the binding');
SELECT results_eq($$SELECT tenant_id, target FROM tenancy.audit_log WHERE action = 'bind_role'$$,
                  $$VALUES (pg_temp.tid('acme'), 'tap06_app')$$, 'bind_role writes an audit entry');

SET LOCAL ROLE tap06_app;
SELECT is(tenancy.current_tenant(), pg_temp.tid('acme'), 'a bound role has its tenant without setting anything');
SELECT results_eq($$SELECT id FROM t06.docs ORDER BY id$$, $$VALUES (1)$$, 'a bound role reads its tenant''s rows');
SET LOCAL tenancy.tenant_id = 'globex';
SELECT is(tenancy.current_tenant(), pg_temp.tid('acme'), 'a bound role ignores a GUC naming another tenant');
SELECT results_eq($$SELECT id FROM t06.docs ORDER BY id$$, $$VALUES (1)$$, 'and still reads only its own rows');
SELECT set_config('tenancy.tenant_id', pg_temp.tid('globex')::text, true);
SELECT is(tenancy.current_tenant(), pg_temp.tid('acme'), 'a bound role ignores a GUC with another tenant''s uuid');
SET LOCAL tenancy.tenant_id = 'Not Valid!';
SELECT is(tenancy.current_tenant(), pg_temp.tid('acme'), 'a bound role ignores even a malformed GUC');
SET LOCAL tenancy.tenant_id = '';
SELECT throws_ok($$SELECT tenancy.set_tenant('globex', true)$$, '42501',
                 'role tap06_app is bound to tenant acme and cannot switch to ''globex''', 'a bound role cannot switch tenants: 42501');
SELECT throws_ok($$SELECT tenancy.set_tenant('acme-europe', true)$$, '42501', NULL,
                 'a bound role cannot switch to its own subsidiary either: 42501');
SELECT is(tenancy.set_tenant('acme', true), pg_temp.tid('acme'), 'a bound role may set its own tenant');
SELECT lives_ok($$INSERT INTO t06.docs (id) VALUES (10)$$, 'a bound role inserts with the default tenant');
SELECT throws_ok(format($$INSERT INTO t06.docs VALUES (11, %L)$$, pg_temp.tid('globex')), '42501', NULL,
                 'a bound role cannot insert another tenant''s row');
SELECT throws_ok($$SELECT tenancy.bind_role('tap06_app', 'globex')$$, '42501', NULL, 'a member cannot rebind itself: 42501');
SELECT throws_ok($$SELECT tenancy.unbind_role('tap06_app')$$, '42501', NULL, 'a member cannot unbind itself: 42501');
RESET ROLE;
SELECT is((SELECT tenant_id FROM t06.docs WHERE id = 10), pg_temp.tid('acme'), 'the bound role''s insert belongs to its tenant');

-- ---------------------------------------------------------------- rebind, suspension
SELECT lives_ok(format($$SELECT tenancy.bind_role('tap06_app', %L)$$, pg_temp.tid('globex')), 'rebinding by uuid replaces the binding');
SELECT is((SELECT count(*)::int FROM tenancy.role_bindings WHERE role = 'tap06_app'::regrole), 1, 'still one binding per role');
SET LOCAL ROLE tap06_app;
SELECT is(tenancy.current_tenant(), pg_temp.tid('globex'), 'the new binding takes effect at the next statement');
RESET ROLE;
SELECT tenancy.suspend_tenant('globex');
SET LOCAL ROLE tap06_app;
SELECT is(tenancy.current_tenant(), NULL, 'a role bound to a suspended tenant has no tenant');
SELECT is((SELECT count(*)::int FROM t06.docs), 0, 'and sees no rows');
RESET ROLE;
SELECT tenancy.resume_tenant('globex');

-- ---------------------------------------------------------------- unbind
SELECT lives_ok($$SELECT tenancy.unbind_role('tap06_app')$$, 'unbind_role');
SELECT is((SELECT count(*)::int FROM tenancy.role_bindings), 0, 'the binding is gone');
SELECT results_eq($$SELECT tenant_id, target FROM tenancy.audit_log WHERE action = 'unbind_role'$$,
                  $$VALUES (pg_temp.tid('globex'), 'tap06_app')$$, 'unbind_role writes an audit entry naming the old tenant');
SET LOCAL ROLE tap06_app;
SELECT is(tenancy.current_tenant(), pg_temp.tid('acme'), 'after unbind the GUC the role set earlier counts again');
SELECT tenancy.clear_tenant(true);
SELECT is(tenancy.current_tenant(), NULL, 'after unbind the role has no tenant by itself');
SELECT is(tenancy.set_tenant('acme-europe', true), pg_temp.tid('acme-europe'), 'after unbind the role may set any tenant');
SELECT is(tenancy.current_tenant(), pg_temp.tid('acme-europe'), 'and the GUC counts again');
RESET ROLE;
SELECT lives_ok($$SELECT tenancy.unbind_role('tap06_free')$$, 'unbinding an unbound role is a no-op');
SELECT is((SELECT count(*)::int FROM tenancy.audit_log WHERE action = 'unbind_role'), 1, 'a no-op unbind writes no audit entry');
SELECT lives_ok($$SELECT tenancy.bind_role('"Tap06 Quoted"', 'acme')$$, 'a role name needing quotes can be bound');

-- ---------------------------------------------------------------- errors
SELECT throws_ok($$SELECT tenancy.bind_role('tap06_super', 'acme')$$, '22023',
                 'role tap06_super has SUPERUSER: row level security never applies to it, so binding cannot confine it',
                 'binding a superuser: 22023');
SELECT throws_ok($$SELECT tenancy.bind_role('tap06_bypass', 'acme')$$, '22023',
                 'role tap06_bypass has BYPASSRLS: row level security never applies to it, so binding cannot confine it',
                 'binding a BYPASSRLS role: 22023');
CREATE ROLE tap06_sa LOGIN; GRANT tenancy_superadmin TO tap06_sa;
SELECT throws_ok($$SELECT tenancy.bind_role('tap06_sa', 'acme')$$, '22023',
                 'role tap06_sa is a member of tenancy_superadmin: its policies read every tenant, so binding cannot confine it',
                 'binding a super admin (its policies read every tenant): 22023');
SELECT throws_ok($$SELECT tenancy.bind_role('tenancy_member', 'acme')$$, '22023',
                 'tenancy_member is a pg_tenancy group role and cannot be bound to a tenant', 'binding a tenancy group role: 22023');
SELECT throws_ok($$SELECT tenancy.bind_role('tap06_no_such_role', 'acme')$$, '42704', NULL, 'binding an unknown role: 42704');
SELECT throws_ok($$SELECT tenancy.unbind_role('tap06_no_such_role')$$, '42704', NULL, 'unbinding an unknown role: 42704');
SELECT throws_ok($$SELECT tenancy.bind_role(NULL, 'acme')$$, '22004', 'role must not be NULL', 'binding NULL: 22004');
SELECT throws_ok($$SELECT tenancy.bind_role(0::regrole, 'acme')$$, '42704', 'role with OID 0 does not exist',
                 'binding a numeric OID no role has: 42704');
SELECT throws_ok($$SELECT tenancy.bind_role(4000000000::oid::regrole, 'acme')$$, '42704', NULL,
                 'binding another unused OID: 42704');
SELECT throws_ok($$SELECT tenancy.bind_role('tap06_free', 'nobody')$$, 'P0002', NULL, 'binding to an unknown tenant: P0002');
SELECT throws_ok($$SELECT tenancy.bind_role('tap06_free', 'Bad!')$$, '22023', NULL, 'binding to a malformed tenant ref: 22023');
SELECT throws_ok($$SELECT tenancy.bind_role('tap06_free', NULL)$$, '22004', NULL, 'binding to a NULL tenant: 22004');
SELECT is((SELECT count(*)::int FROM tenancy.role_bindings WHERE role::text <> '"Tap06 Quoted"'), 0, 'refused binds leave no binding');
SELECT is((SELECT count(*)::int FROM tenancy.audit_log WHERE action = 'bind_role'), 3, 'refused binds write no audit entry');

SELECT * FROM finish();
ROLLBACK;
