-- A bound login learns nothing about other tenants: resolve() hides them,
-- set_tenant() refuses any other target the same way whether it exists or
-- not, and the internal lookup functions are not executable.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(16);

SELECT tenancy.create_tenant('enum-a', 'A');
SELECT tenancy.create_tenant('enum-a-sub', 'A sub', parent => 'enum-a');
SELECT tenancy.create_tenant('enum-b', 'B');
CREATE ROLE tap10_bound NOLOGIN;  GRANT tenancy_member TO tap10_bound;
CREATE ROLE tap10_free NOLOGIN;   GRANT tenancy_member TO tap10_free;
SELECT tenancy.bind_role('tap10_bound', 'enum-a');
CREATE TEMP TABLE tap10_ids AS SELECT slug, id FROM tenancy.tenants;
GRANT SELECT ON tap10_ids TO PUBLIC;

SET LOCAL ROLE tap10_bound;
SELECT is(tenancy.bound_tenant(), (SELECT tenancy.current_tenant()), 'bound_tenant() is the bound tenant');
SELECT is(tenancy.resolve('enum-a-sub') IS NOT NULL, true, 'a bound role resolves its own descendants');
SELECT throws_ok($$SELECT tenancy.resolve('enum-b')$$, 'P0002', $$tenant 'enum-b' does not exist$$,
                 'another tenant looks unknown to a bound role');
SELECT throws_ok($$SELECT tenancy.set_tenant('enum-b')$$, '42501', NULL, 'switching to an existing tenant: 42501');
SELECT throws_ok($$SELECT tenancy.set_tenant('no-such-tenant')$$, '42501', NULL,
                 'switching to a missing tenant: the same 42501, so existence does not leak');
SELECT throws_ok($$SELECT tenancy._context(0, 0, 'enum-b')$$, '42501', NULL, '_context is not executable');
SELECT throws_ok($$SELECT tenancy._descendants(tenancy.current_tenant())$$, '42501', NULL, '_descendants is not executable');
SELECT throws_ok($$SELECT tenancy._resolve_context(0, 0, 'enum-b')$$, '42501', NULL, '_resolve_context is not executable');
SELECT throws_ok($$SELECT tenancy._find('enum-b')$$, '42501', NULL, '_find is not executable');
SELECT throws_ok($$SELECT tenancy._check_set_tenant('enum-b', 0, 0)$$, '42501', NULL,
                 '_check_set_tenant (it trusts the role oids passed) is not executable');
SELECT throws_ok($$SELECT tenancy._checked_tenant('enum-b')$$, '42501', NULL,
                 '_checked_tenant checks the caller''s own binding');
RESET ROLE;

SET LOCAL ROLE tap10_free;
SELECT is(tenancy.bound_tenant(), NULL, 'an unbound role has no bound tenant');
SELECT is(tenancy.resolve('enum-b'), (SELECT id FROM tap10_ids WHERE slug = 'enum-b'),
          'an unbound (trusted) role resolves any tenant');
SELECT throws_ok($$SELECT tenancy.resolve(NULL)$$, '22004', NULL, 'NULL tenant: 22004');
-- A forged oid cannot reveal another role's binding: the checker that takes
-- oids is not callable, and the one that is uses the caller's own roles.
SELECT throws_ok(pg_catalog.format($$SELECT tenancy._check_set_tenant('enum-b', %s, %s)$$,
                                   'tap10_bound'::regrole::oid, 'tap10_bound'::regrole::oid),
                 '42501', 'permission denied for function _check_set_tenant',
                 'an unbound role cannot ask about tap10_bound''s binding with its oid');
SELECT is(tenancy.set_tenant('enum-b'), (SELECT id FROM tap10_ids WHERE slug = 'enum-b'),
          'set_tenant still switches an unbound role');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
