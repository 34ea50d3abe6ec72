-- Tenant registry: create_tenant, resolve, suspend_tenant, resume_tenant,
-- their errors (with SQLSTATE) and their audit entries.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(87);

-- ---------------------------------------------------------------- create
SELECT lives_ok(
    $$SELECT tenancy.create_tenant('acme', '  Acme Corp  ', plan => 'pro', industry => 'manufacturing',
                                   settings => '{"locale": "de"}')$$,
    'create_tenant with every argument');

SELECT is((SELECT count(*)::int FROM tenancy.tenants WHERE slug = 'acme'), 1, 'create_tenant inserts one registry row');
SELECT is((SELECT name FROM tenancy.tenants WHERE slug = 'acme'), 'Acme Corp', 'the name is stored trimmed');
SELECT is((SELECT plan FROM tenancy.tenants WHERE slug = 'acme'), 'pro', 'plan is stored');
SELECT is((SELECT industry FROM tenancy.tenants WHERE slug = 'acme'), 'manufacturing', 'industry is stored');
SELECT is((SELECT settings FROM tenancy.tenants WHERE slug = 'acme'), '{"locale": "de"}'::jsonb, 'settings are stored');
SELECT is((SELECT status FROM tenancy.tenants WHERE slug = 'acme'), 'active', 'a new tenant is active');
SELECT is((SELECT parent_id FROM tenancy.tenants WHERE slug = 'acme'), NULL, 'without parent a tenant is a root');

CREATE TEMP TABLE globex_ret AS SELECT tenancy.create_tenant('globex', 'Globex') AS id;
SELECT is((SELECT id FROM globex_ret), (SELECT id FROM tenancy.tenants WHERE slug = 'globex'),
          'create_tenant returns the new tenant''s uuid');
SELECT is((SELECT settings FROM tenancy.tenants WHERE slug = 'globex'), '{}'::jsonb, 'settings default to {}');
SELECT is((SELECT plan FROM tenancy.tenants WHERE slug = 'globex'), NULL, 'plan defaults to NULL');

SELECT lives_ok($$SELECT tenancy.create_tenant('acme-europe', 'Acme Europe', parent => 'acme')$$,
                'create_tenant with a parent given by slug');
SELECT is((SELECT parent_id FROM tenancy.tenants WHERE slug = 'acme-europe'),
          (SELECT id FROM tenancy.tenants WHERE slug = 'acme'), 'parent by slug is recorded');
SELECT lives_ok(format($$SELECT tenancy.create_tenant('acme-berlin', 'Acme Berlin', parent => %L)$$,
                       (SELECT id FROM tenancy.tenants WHERE slug = 'acme-europe')),
                'create_tenant with a parent given by uuid');
SELECT is((SELECT parent_id FROM tenancy.tenants WHERE slug = 'acme-berlin'),
          (SELECT id FROM tenancy.tenants WHERE slug = 'acme-europe'), 'parent by uuid is recorded');

SELECT lives_ok($$SELECT tenancy.create_tenant('ab', 'Two')$$, 'a 2-character slug is valid');
SELECT lives_ok(format($$SELECT tenancy.create_tenant(%L, 'Sixty-three')$$, repeat('a', 63)),
                'a 63-character slug is valid');
SELECT lives_ok($$SELECT tenancy.create_tenant('a1-b2-c3', 'Digits')$$, 'digits and single hyphens are valid');

-- ---------------------------------------------------------------- create: errors
CREATE TEMP TABLE counts_before AS
SELECT (SELECT count(*) FROM tenancy.tenants) AS tenants, (SELECT count(*) FROM tenancy.audit_log) AS audit;

SELECT throws_ok($$SELECT tenancy.create_tenant(NULL, 'x')$$, '22004', 'tenant slug must not be NULL',
                 'NULL slug: 22004');
SELECT throws_ok($$SELECT tenancy.create_tenant('Acme', 'x')$$, '22023', 'tenant slug ''Acme'' is invalid',
                 'uppercase slug: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('a', 'x')$$, '22023', 'tenant slug ''a'' is invalid',
                 'slug shorter than 2: 22023');
SELECT throws_ok(format($$SELECT tenancy.create_tenant(%L, 'x')$$, repeat('a', 64)), '22023', NULL,
                 'slug longer than 63: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('-acme', 'x')$$, '22023', NULL, 'slug starting with a hyphen: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('acme-', 'x')$$, '22023', NULL, 'slug ending with a hyphen: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('ac--me', 'x')$$, '22023', NULL, 'slug with a double hyphen: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('acme_eu', 'x')$$, '22023', NULL, 'slug with an underscore: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('', 'x')$$, '22023', NULL, 'empty slug: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('0123456789abcdef0123456789abcdef', 'x')$$, '22023', NULL,
                 'slug that has the form of a uuid: 22023');
-- attack: a tenant signing up with another tenant's id minus a hyphen (the
-- uuid type takes a hyphen after any group of four) must not get that slug —
-- resolve, set_tenant and bind_role would read it as the other tenant's id
SELECT throws_ok(pg_catalog.format($$SELECT tenancy.create_tenant(%L, 'Evil')$$,
                 (SELECT overlay(id::text placing '' from 9 for 1) FROM tenancy.tenants WHERE slug = 'globex')),
                 '22023', NULL, 'slug = another tenant''s uuid without its first hyphen: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('0123-4567-89ab-cdef-0123-4567-89ab-cdef', 'x')$$, '22023', NULL,
                 'slug = a uuid hyphenated every four digits: 22023');
SELECT is((SELECT count(*)::int FROM tenancy.tenants WHERE name = 'Evil'), 0, 'no look-alike tenant was created');
CREATE FUNCTION pg_temp.uuid_input_ok(t text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM t::uuid; RETURN true; EXCEPTION WHEN invalid_text_representation THEN RETURN false; END $$;
SELECT is(pg_catalog.array_agg(tenancy._is_uuid(t) = pg_temp.uuid_input_ok(t) ORDER BY t),
          pg_catalog.array_fill(true, ARRAY[8]),
          '_is_uuid agrees with the uuid type''s input')
  FROM unnest(ARRAY['0123456789abcdef0123456789abcdef', '01234567-89ab-cdef-0123-456789abcdef',
                    '0123-4567-89ab-cdef-0123-4567-89ab-cdef', '{0123456789abcdef0123456789abcdef}',
                    '0123456789abcdef0123456789abcde-f', '-0123456789abcdef0123456789abcdef',
                    ' 01234567-89ab-cdef-0123-456789abcdef', '{01234567-89ab-cdef-0123-456789abcdef']) AS t;
SELECT throws_ok($$SELECT tenancy.create_tenant('acme', 'Another Acme')$$, '23505',
                 'tenant slug ''acme'' is already taken', 'taken slug: 23505');
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', '')$$, '22023', 'tenant name '''' is invalid',
                 'empty name: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', '   ')$$, '22023', NULL, 'blank name: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', E'\t\n \r')$$, '22023', NULL, 'a name of tabs and newlines: 22023');
SELECT throws_ok(format($$SELECT tenancy.create_tenant('initech', 'Initech', plan => %L)$$, repeat('p', 101)), '22001',
                 'tenant plan is longer than 100 characters', 'a plan longer than 100: 22001');
SELECT throws_ok(format($$SELECT tenancy.create_tenant('initech', 'Initech', industry => %L)$$, repeat('i', 101)), '22001',
                 'tenant industry is longer than 100 characters', 'an industry longer than 100: 22001');
-- labels that mislead whoever lists tenants
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', E'\u00a0\u200b\u3000\ufeff')$$, '22023',
                 'tenant name has no visible character', 'a name of no-break, zero-width and ideographic spaces: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', E'Acme\x1b[2J\x1b[31mGlobex')$$, '22023',
                 'tenant name contains control characters', 'a name with terminal escapes: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', E'\u202eproC emcA')$$, '22023',
                 'tenant name contains bidirectional override, isolate or tag characters', 'a name with a right-to-left override: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', 'Initech', industry => repeat(E'\u200b', 5))$$, '22023',
                 'tenant industry has no visible character', 'an industry of zero-width spaces: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', 'Initech', plan => E'pro\n')$$, '22023',
                 'tenant plan contains control characters', 'a plan with a newline: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', 'Initech', settings => jsonb_build_object('blob', repeat('x', 300000)))$$, '22001',
                 NULL, 'settings over 256 kB: 22001');
SELECT is(tenancy._label_problem(E'\u3164\u2800'), 'has no visible character', 'Hangul filler and Braille blank: nothing visible');
SELECT is(tenancy._label_problem(E'Acme\U000E0041\U000E0042'), 'contains bidirectional override, isolate or tag characters',
          'tag characters (text hidden inside a name): refused');
SELECT is(tenancy._label_problem(E'株式会社 Ōsaka – Ünïcode (日本)'), NULL,
          'a name in other scripts, with punctuation: fine');
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', NULL)$$, '22023', 'tenant name NULL is invalid',
                 'NULL name: 22023');
SELECT throws_ok(format($$SELECT tenancy.create_tenant('initech', %L)$$, repeat('n', 201)), '22023', NULL,
                 'name longer than 200: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', 'Initech', settings => '[1]')$$, '22023',
                 'tenant settings must be a JSON object, not array', 'settings that are an array: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', 'Initech', settings => NULL)$$, '22023',
                 'tenant settings must be a JSON object, not NULL', 'NULL settings: 22023');
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', 'Initech', parent => 'nobody')$$, 'P0002',
                 'tenant ''nobody'' does not exist', 'unknown parent: P0002');
SELECT throws_ok($$SELECT tenancy.create_tenant('initech', 'Initech', parent => 'Not A Slug')$$, '22023', NULL,
                 'malformed parent: 22023');

SELECT is((SELECT count(*) FROM tenancy.tenants), (SELECT tenants FROM counts_before),
          'failed create_tenant calls leave no tenants row');
SELECT is((SELECT count(*) FROM tenancy.audit_log), (SELECT audit FROM counts_before),
          'failed create_tenant calls leave no audit entry');
SELECT is((SELECT name FROM tenancy.tenants WHERE slug = 'acme'), 'Acme Corp',
          'a refused duplicate does not change the existing tenant');

-- ---------------------------------------------------------------- resolve
SELECT is(tenancy.resolve('acme'), (SELECT id FROM tenancy.tenants WHERE slug = 'acme'), 'resolve by slug');
SELECT is(tenancy.resolve((SELECT id::text FROM tenancy.tenants WHERE slug = 'acme')),
          (SELECT id FROM tenancy.tenants WHERE slug = 'acme'), 'resolve by uuid');
SELECT is(tenancy.resolve((SELECT upper(id::text) FROM tenancy.tenants WHERE slug = 'acme')),
          (SELECT id FROM tenancy.tenants WHERE slug = 'acme'), 'resolve by uppercase uuid');
SELECT is(tenancy.resolve((SELECT '{' || replace(id::text, '-', '') || '}' FROM tenancy.tenants WHERE slug = 'acme')),
          (SELECT id FROM tenancy.tenants WHERE slug = 'acme'), 'resolve by braced uuid without hyphens');
SELECT throws_ok($$SELECT tenancy.resolve('nobody')$$, 'P0002', 'tenant ''nobody'' does not exist',
                 'resolve of an unknown slug: P0002');
SELECT throws_ok($$SELECT tenancy.resolve('00000000-0000-0000-0000-000000000000')$$, 'P0002', NULL,
                 'resolve of an unknown uuid: P0002');
SELECT throws_ok($$SELECT tenancy.resolve('Not A Slug')$$, '22023',
                 '''Not A Slug'' is neither a tenant uuid nor a valid tenant slug', 'resolve of a malformed ref: 22023');
SELECT throws_ok($$SELECT tenancy.resolve(NULL)$$, '22004', 'tenant must not be NULL', 'resolve of NULL: 22004');

-- ---------------------------------------------------------------- suspend / resume
SELECT is(tenancy.suspend_tenant('globex'), (SELECT id FROM tenancy.tenants WHERE slug = 'globex'),
          'suspend_tenant returns the tenant''s uuid');
SELECT is((SELECT status FROM tenancy.tenants WHERE slug = 'globex'), 'suspended', 'suspend_tenant sets status suspended');
SELECT lives_ok($$SELECT tenancy.suspend_tenant('globex')$$, 'suspending a suspended tenant is a no-op');
SELECT is((SELECT count(*)::int FROM tenancy.audit_log WHERE action = 'suspend_tenant'), 1,
          'a no-op suspend writes no audit entry');
SELECT is(tenancy.resume_tenant((SELECT id::text FROM tenancy.tenants WHERE slug = 'globex')),
          (SELECT id FROM tenancy.tenants WHERE slug = 'globex'), 'resume_tenant by uuid returns the uuid');
SELECT is((SELECT status FROM tenancy.tenants WHERE slug = 'globex'), 'active', 'resume_tenant sets status active');
SELECT lives_ok($$SELECT tenancy.resume_tenant('globex')$$, 'resuming an active tenant is a no-op');
SELECT is((SELECT count(*)::int FROM tenancy.audit_log WHERE action = 'resume_tenant'), 1,
          'a no-op resume writes no audit entry');

UPDATE tenancy.tenants SET status = 'archived' WHERE slug = 'ab';
SELECT throws_ok($$SELECT tenancy.suspend_tenant('ab')$$, '55000', 'tenant ''ab'' is archived, not active',
                 'suspending an archived tenant: 55000');
SELECT throws_ok($$SELECT tenancy.resume_tenant('ab')$$, '55000', 'tenant ''ab'' is archived, not suspended',
                 'resuming an archived tenant: 55000');
SELECT throws_ok($$SELECT tenancy.suspend_tenant('nobody')$$, 'P0002', NULL, 'suspending an unknown tenant: P0002');
SELECT throws_ok($$SELECT tenancy.resume_tenant('Bad Ref')$$, '22023', NULL, 'resuming a malformed ref: 22023');

-- ---------------------------------------------------------------- audit entries
SELECT is((SELECT count(*)::int FROM tenancy.audit_log WHERE action = 'create_tenant'), 7,
          'one create_tenant audit entry per created tenant');
SELECT results_eq(
    $$SELECT tenant_id, target, details->>'name', details->>'plan', details->'settings'
        FROM tenancy.audit_log WHERE action = 'create_tenant' AND target = 'acme'$$,
    $$SELECT id, 'acme', 'Acme Corp', 'pro', '{"locale": "de"}'::jsonb FROM tenancy.tenants WHERE slug = 'acme'$$,
    'the create_tenant entry names the tenant and its attributes');
SELECT is((SELECT details->>'parent_id' FROM tenancy.audit_log WHERE action = 'create_tenant' AND target = 'acme-europe'),
          (SELECT id::text FROM tenancy.tenants WHERE slug = 'acme'), 'the create_tenant entry records the parent');
SELECT results_eq(
    $$SELECT tenant_id, details FROM tenancy.audit_log WHERE action IN ('suspend_tenant', 'resume_tenant') ORDER BY seq$$,
    $$VALUES ((SELECT id FROM tenancy.tenants WHERE slug = 'globex'), '{"from": "active", "to": "suspended"}'::jsonb),
             ((SELECT id FROM tenancy.tenants WHERE slug = 'globex'), '{"from": "suspended", "to": "active"}'::jsonb)$$,
    'suspend and resume entries record the tenant and the transition');
SELECT is((SELECT actor FROM tenancy.audit_log WHERE action = 'create_tenant' AND target = 'acme'), session_user,
          'the entry records who did it');

-- ---------------------------------------------------------------- privileges
CREATE ROLE tap01_member NOLOGIN;
GRANT tenancy_member TO tap01_member;
CREATE ROLE tap01_sa NOLOGIN;
GRANT tenancy_superadmin TO tap01_sa;

CREATE TEMP TABLE acme_id AS SELECT id FROM tenancy.tenants WHERE slug = 'acme';
GRANT SELECT ON acme_id TO PUBLIC;
SET LOCAL ROLE tap01_member;
SELECT throws_ok($$SELECT tenancy.create_tenant('sneaky', 'Sneaky')$$, '42501', NULL,
                 'a member cannot create tenants: 42501');
SELECT throws_ok($$SELECT tenancy.suspend_tenant('acme')$$, '42501', NULL, 'a member cannot suspend tenants: 42501');
SELECT throws_ok($$SELECT tenancy.resume_tenant('acme')$$, '42501', NULL, 'a member cannot resume tenants: 42501');
SELECT is(tenancy.resolve('acme'), (SELECT id FROM acme_id), 'any role may resolve a tenant');
RESET ROLE;

SET LOCAL ROLE tap01_sa;
SELECT lives_ok($$SELECT tenancy.create_tenant('initech', 'Initech')$$, 'a super admin creates a tenant');
RESET ROLE;
SELECT is((SELECT actor || '/' || role FROM tenancy.audit_log WHERE action = 'create_tenant' AND target = 'initech'),
          session_user || '/tap01_sa', 'the entry records the session user and the active role');

SELECT * FROM finish();
ROLLBACK;
