-- Tenant context: set_tenant, clear_tenant, current_tenant, visible_tenants,
-- the tenancy.tenant_id setting, suspension and fail-closed behaviour.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(50);

SELECT tenancy.create_tenant('acme', 'Acme');
SELECT tenancy.create_tenant('acme-europe', 'Acme Europe', parent => 'acme');
SELECT tenancy.create_tenant('acme-berlin', 'Acme Berlin', parent => 'acme-europe');
SELECT tenancy.create_tenant('acme-asia', 'Acme Asia', parent => 'acme');
SELECT tenancy.create_tenant('globex', 'Globex');
SELECT tenancy.create_tenant('frozen', 'Frozen');
SELECT tenancy.suspend_tenant('frozen');
SELECT tenancy.create_tenant('old', 'Old');
UPDATE tenancy.tenants SET status = 'archived' WHERE slug = 'old';

CREATE TEMP TABLE ids AS SELECT slug, id FROM tenancy.tenants;
GRANT SELECT ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.tid(s text) RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT id FROM ids WHERE slug = s $$;

-- ---------------------------------------------------------------- function properties
SELECT is((SELECT provolatile::text || proparallel::text FROM pg_proc WHERE oid = 'tenancy.current_tenant()'::regprocedure),
          'ss', 'current_tenant is STABLE and PARALLEL SAFE');
SELECT is((SELECT provolatile::text FROM pg_proc WHERE oid = 'tenancy.visible_tenants()'::regprocedure),
          's', 'visible_tenants is STABLE');
SELECT is((SELECT provolatile::text FROM pg_proc WHERE oid = 'tenancy.set_tenant(text, boolean)'::regprocedure),
          'v', 'set_tenant is VOLATILE');

-- ---------------------------------------------------------------- no context: fail closed
SELECT is(tenancy.current_tenant(), NULL, 'no context: current_tenant is NULL');
SELECT is(tenancy.visible_tenants(), '{}'::uuid[], 'no context: visible_tenants is empty');

-- ---------------------------------------------------------------- set_tenant
SELECT is(tenancy.set_tenant('acme', true), pg_temp.tid('acme'), 'set_tenant by slug returns the uuid');
SELECT is(tenancy.current_tenant(), pg_temp.tid('acme'), 'current_tenant follows set_tenant');
SELECT is(current_setting('tenancy.tenant_id'), pg_temp.tid('acme')::text, 'set_tenant stores the uuid in tenancy.tenant_id');
SELECT is(tenancy.set_tenant(pg_temp.tid('globex')::text, true), pg_temp.tid('globex'), 'set_tenant by uuid');
SELECT is(tenancy.current_tenant(), pg_temp.tid('globex'), 'switching tenants changes current_tenant');
SELECT is(tenancy.set_tenant('acme', NULL), pg_temp.tid('acme'), 'set_tenant with is_local NULL works (session)');
SELECT is(tenancy.current_tenant(), pg_temp.tid('acme'), 'session-level set_tenant is in effect');

SELECT throws_ok($$SELECT tenancy.set_tenant('nobody')$$, 'P0002', 'tenant ''nobody'' does not exist',
                 'set_tenant of an unknown tenant: P0002');
SELECT throws_ok($$SELECT tenancy.set_tenant('00000000-0000-0000-0000-000000000000')$$, 'P0002', NULL,
                 'set_tenant of an unknown uuid: P0002');
SELECT throws_ok($$SELECT tenancy.set_tenant('Bad Ref!')$$, '22023',
                 '''Bad Ref!'' is neither a tenant uuid nor a valid tenant slug', 'set_tenant of a malformed ref: 22023');
SELECT throws_ok($$SELECT tenancy.set_tenant(NULL)$$, '22004', 'tenant must not be NULL', 'set_tenant(NULL): 22004');
SELECT throws_ok($$SELECT tenancy.set_tenant('frozen')$$, '55000', 'tenant ''frozen'' is suspended',
                 'set_tenant of a suspended tenant: 55000');
SELECT throws_ok($$SELECT tenancy.set_tenant('old')$$, '55000', 'tenant ''old'' is archived',
                 'set_tenant of an archived tenant: 55000');
SELECT is(tenancy.current_tenant(), pg_temp.tid('acme'), 'a refused set_tenant keeps the previous context');

-- ---------------------------------------------------------------- clear_tenant
SELECT lives_ok($$SELECT tenancy.clear_tenant(true)$$, 'clear_tenant(true)');
SELECT is(tenancy.current_tenant(), NULL, 'after clear_tenant(true) there is no tenant');
SELECT is(current_setting('tenancy.tenant_id'), '', 'clear_tenant empties tenancy.tenant_id');
SELECT tenancy.set_tenant('acme', true);
SELECT lives_ok($$SELECT tenancy.clear_tenant()$$, 'clear_tenant()');
SELECT is(tenancy.current_tenant(), NULL, 'after clear_tenant() there is no tenant');

-- ---------------------------------------------------------------- the raw setting
SET LOCAL tenancy.tenant_id = 'globex';
SELECT is(tenancy.current_tenant(), pg_temp.tid('globex'), 'SET tenancy.tenant_id to a slug works');
SELECT set_config('tenancy.tenant_id', pg_temp.tid('acme')::text, true);
SELECT is(tenancy.current_tenant(), pg_temp.tid('acme'), 'SET tenancy.tenant_id to a uuid works');
SET LOCAL tenancy.tenant_id = 'ghost';
SELECT is(tenancy.current_tenant(), NULL, 'an unknown slug in the setting: NULL (fail closed)');
SET LOCAL tenancy.tenant_id = '00000000-0000-0000-0000-000000000000';
SELECT is(tenancy.current_tenant(), NULL, 'an unknown uuid in the setting: NULL (fail closed)');
SET LOCAL tenancy.tenant_id = 'frozen';
SELECT is(tenancy.current_tenant(), NULL, 'a suspended tenant in the setting: NULL');
SET LOCAL tenancy.tenant_id = 'old';
SELECT is(tenancy.current_tenant(), NULL, 'an archived tenant in the setting: NULL');
SET LOCAL tenancy.tenant_id = 'Not Valid!';
SELECT throws_ok($$SELECT tenancy.current_tenant()$$, '22023', NULL, 'a malformed setting raises 22023');
SELECT throws_like($$SELECT tenancy.current_tenant()$$, 'tenancy.tenant_id is set to %Not Valid!%neither a tenant uuid nor a valid slug',
                   'the error names the setting and its value (every time, not only the first)');
SET LOCAL tenancy.tenant_id = '';
SELECT is(tenancy.current_tenant(), NULL, 'an empty setting: NULL');

-- ---------------------------------------------------------------- suspension takes effect at once
SELECT tenancy.set_tenant('globex', true);
SELECT is(tenancy.current_tenant(), pg_temp.tid('globex'), 'globex is current');
SELECT tenancy.suspend_tenant('globex');
SELECT is(tenancy.current_tenant(), NULL, 'after suspend_tenant the same context resolves to NULL');
SELECT is(tenancy.visible_tenants(), '{}'::uuid[], 'and sees no tenants');
SELECT tenancy.resume_tenant('globex');
SELECT is(tenancy.current_tenant(), pg_temp.tid('globex'), 'after resume_tenant the context is back');
UPDATE tenancy.tenants SET status = 'archived' WHERE slug = 'globex';
SELECT is(tenancy.current_tenant(), NULL, 'a direct registry change is seen by the next statement');
UPDATE tenancy.tenants SET status = 'active' WHERE slug = 'globex';
-- a suspension inside a subtransaction that is rolled back must not stick in the cache
DO $$
BEGIN
    BEGIN
        PERFORM tenancy.suspend_tenant('globex');
        IF tenancy.current_tenant() IS NOT NULL THEN
            RAISE EXCEPTION 'suspension not seen inside the subtransaction';
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'undo';
    EXCEPTION WHEN raise_exception THEN
        IF SQLERRM <> 'undo' THEN RAISE; END IF;
    END;
END
$$;
SELECT is(tenancy.current_tenant(), pg_temp.tid('globex'), 'a suspension rolled back with its subtransaction leaves the context active');
SELECT is((SELECT status FROM tenancy.tenants WHERE slug = 'globex'), 'active', 'and the tenant active');

-- ---------------------------------------------------------------- visible_tenants
SELECT tenancy.set_tenant('acme', true);
SELECT is((SELECT array_agg(x ORDER BY x) FROM unnest(tenancy.visible_tenants()) x),
          (SELECT array_agg(id ORDER BY id) FROM ids WHERE slug IN ('acme', 'acme-europe', 'acme-berlin', 'acme-asia')),
          'a root sees itself and all its descendants');
SELECT tenancy.set_tenant('acme-europe', true);
SELECT is((SELECT array_agg(x ORDER BY x) FROM unnest(tenancy.visible_tenants()) x),
          (SELECT array_agg(id ORDER BY id) FROM ids WHERE slug IN ('acme-europe', 'acme-berlin')),
          'a subsidiary sees itself and its own subtree, not its parent or siblings');
SELECT tenancy.set_tenant('acme-berlin', true);
SELECT is(tenancy.visible_tenants(), ARRAY[pg_temp.tid('acme-berlin')], 'a leaf sees only itself');
SELECT tenancy.set_tenant('globex', true);
SELECT is(tenancy.visible_tenants(), ARRAY[pg_temp.tid('globex')], 'an unrelated root sees only itself');

-- ---------------------------------------------------------------- registry visibility
CREATE ROLE tap02_member NOLOGIN;
GRANT tenancy_member TO tap02_member;
CREATE ROLE tap02_plain NOLOGIN;
SET LOCAL ROLE tap02_member;
SELECT tenancy.clear_tenant(true);
SELECT is((SELECT count(*)::int FROM tenancy.tenants), 0, 'a member without context sees no registry rows');
SELECT is(tenancy.set_tenant('acme-europe', true), pg_temp.tid('acme-europe'), 'a member may set its tenant');
SELECT results_eq($$SELECT slug FROM tenancy.tenants ORDER BY slug$$,
                  $$VALUES ('acme-berlin'), ('acme-europe')$$,
                  'a member sees its own tenant and descendants in the registry');
SELECT throws_ok($$UPDATE tenancy.tenants SET status = 'active'$$, '42501', NULL,
                 'a member cannot write the registry: 42501');
RESET ROLE;
SET LOCAL ROLE tap02_plain;
SELECT is(tenancy.current_tenant(), pg_temp.tid('acme-europe'), 'current_tenant is callable by any role');
SELECT throws_ok($$SELECT count(*) FROM tenancy.tenants$$, '42501', NULL,
                 'a role outside the tenancy roles cannot read the registry: 42501');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
