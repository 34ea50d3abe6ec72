-- Functions that write user tables with the extension owner's rights
-- (drop_tenant, clone_tenant) refuse tables whose triggers, defaults,
-- constraints or index expressions run code owned by a non-superuser —
-- also when reached through an operator or a domain — and tables with
-- rules, so a table owner cannot get code run as superuser. Temporary
-- tables cannot be managed; the registry of managed tables is written only
-- by the tables' owners; the tenant status functions cannot be misused.
-- setting() is for the tenancy roles only.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(36);

SELECT tenancy.create_tenant('hard-a', 'A');
CREATE SCHEMA t11;
CREATE TABLE t11.notes (id serial PRIMARY KEY, tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant(), body text);
SELECT tenancy.enable('t11.notes');
INSERT INTO t11.notes (tenant_id, body) SELECT id, 'n' FROM tenancy.tenants WHERE slug = 'hard-a';

CREATE ROLE tap11_owner NOLOGIN;
CREATE FUNCTION t11.who() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    CREATE TABLE IF NOT EXISTS t11.pwned AS SELECT current_user AS who, pg_catalog.current_setting('is_superuser') AS su;
    RETURN NULL;
END $$;
ALTER FUNCTION t11.who() OWNER TO tap11_owner;
CREATE TRIGGER notes_who AFTER INSERT OR DELETE ON t11.notes FOR EACH STATEMENT EXECUTE FUNCTION t11.who();

SELECT throws_ok($$SELECT tenancy.drop_tenant('hard-a', confirm => 'hard-a')$$, '42501', NULL,
                 'drop_tenant refuses a table whose trigger function a non-superuser owns');
SELECT is((SELECT count(*)::int FROM t11.notes), 1, '... and deletes nothing');
SELECT throws_ok($$SELECT tenancy.clone_tenant('hard-a', 'hard-b', 'B')$$, '42501', NULL,
                 'clone_tenant refuses it too');
SELECT is((SELECT count(*)::int FROM tenancy.tenants WHERE slug = 'hard-b'), 0, '... and creates no tenant');
SELECT is(to_regclass('t11.pwned'), NULL, 'the untrusted trigger never ran');

ALTER FUNCTION t11.who() OWNER TO CURRENT_USER;   -- a superuser vouches for it
DROP TRIGGER notes_who ON t11.notes;
SELECT lives_ok($$SELECT tenancy.drop_tenant('hard-a', confirm => 'hard-a')$$, 'without untrusted code drop_tenant works');

-- attack: the same function behind an operator, in a CHECK constraint
-- (pg_depend points at the operator, the operator at the function)
SELECT tenancy.create_tenant('hard-c', 'C');
INSERT INTO t11.notes (tenant_id, body) SELECT id, 'n' FROM tenancy.tenants WHERE slug = 'hard-c';
CREATE FUNCTION t11.evil_eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    CREATE TABLE IF NOT EXISTS t11.pwned AS SELECT current_user AS who;
    RETURN true;
END $$;
ALTER FUNCTION t11.evil_eq(text, text) OWNER TO tap11_owner;
CREATE OPERATOR t11.=~~= (FUNCTION = t11.evil_eq, LEFTARG = text, RIGHTARG = text);
ALTER TABLE t11.notes ADD CONSTRAINT harmless CHECK (body OPERATOR(t11.=~~=) 'x') NOT VALID;
SELECT throws_like($$SELECT tenancy.clone_tenant('hard-c', 'hard-d', 'D')$$,
                   '%runs function t11.evil_eq(text,text) owned by tap11_owner%',
                   'clone_tenant refuses a CHECK that calls a non-superuser''s function through an operator');
SELECT throws_ok($$SELECT tenancy.drop_tenant('hard-c', confirm => 'hard-c')$$, '42501', NULL, '... so does drop_tenant');
ALTER TABLE t11.notes DROP CONSTRAINT harmless;

-- attack: a domain whose CHECK calls the function, as a column's type
CREATE FUNCTION t11.evil_ok(t text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    CREATE TABLE IF NOT EXISTS t11.pwned AS SELECT current_user AS who;
    RETURN true;
END $$;
ALTER FUNCTION t11.evil_ok(text) OWNER TO tap11_owner;
CREATE DOMAIN t11.body_text AS text CHECK (VALUE IS NULL OR t11.evil_ok(VALUE));
ALTER TABLE t11.notes ADD COLUMN extra t11.body_text;
SELECT throws_like($$SELECT tenancy.clone_tenant('hard-c', 'hard-d', 'D')$$,
                   '%runs function t11.evil_ok(text) owned by tap11_owner%',
                   'clone_tenant refuses a column whose domain''s CHECK calls a non-superuser''s function');
ALTER TABLE t11.notes DROP COLUMN extra;

-- attack: a rule (its actions run as the writing user)
CREATE RULE notes_also AS ON INSERT TO t11.notes DO ALSO SELECT t11.evil_ok('x');
SELECT throws_like($$SELECT tenancy.clone_tenant('hard-c', 'hard-d', 'D')$$,
                   '%t11.notes has rule notes_also%', 'clone_tenant refuses a table with a rule');
SELECT throws_ok($$SELECT tenancy.drop_tenant('hard-c', confirm => 'hard-c')$$, '42501', NULL, '... so does drop_tenant');
DROP RULE notes_also ON t11.notes;
SELECT is(to_regclass('t11.pwned'), NULL, 'no untrusted function ever ran');
SELECT is((SELECT count(*)::int FROM tenancy.tenants WHERE slug = 'hard-d'), 0, '... and no tenant was created');
SELECT lives_ok($$SELECT tenancy.clone_tenant('hard-c', 'hard-d', 'D')$$, 'without them clone_tenant works');

-- attack: a temporary table (any role can make one, and it leaves no sql_drop
-- event when its session ends)
CREATE TEMP TABLE scratch (tenant_id uuid NOT NULL, x int);
SELECT throws_ok($$SELECT tenancy.enable('pg_temp.scratch')$$, '42809', NULL, 'enable refuses a temporary table');
SELECT throws_ok($$SELECT tenancy.register_reference('pg_temp.scratch')$$, '42809', NULL, '... so does register_reference');

-- attack: a super admin writing the registry of managed tables directly, to
-- have a table it cannot read (it does not own) copied into a template, or to
-- take one out of drop_tenant
CREATE ROLE tap11_sa NOLOGIN; GRANT tenancy_superadmin TO tap11_sa;
CREATE TABLE t11.payroll (tenant_id uuid NOT NULL, salary int);
INSERT INTO t11.payroll SELECT id, 100000 FROM tenancy.tenants WHERE slug = 'hard-c';
SET LOCAL ROLE tap11_sa;
SELECT throws_ok($$INSERT INTO tenancy.managed_tables (relid, kind, tenant_column) VALUES ('t11.payroll', 'tenant', 'tenant_id')$$,
                 '42501', 'only the owner of t11.payroll can change its entry in tenancy.managed_tables',
                 'a super admin cannot register a table it does not own');
SELECT throws_ok($$DELETE FROM tenancy.managed_tables WHERE relid = 't11.notes'::regclass$$, '42501', NULL,
                 'a super admin cannot unregister a table it does not own');
SELECT throws_ok($$UPDATE tenancy.managed_tables SET tenant_column = 'body' WHERE relid = 't11.notes'::regclass$$, '42501', NULL,
                 '... nor change its entry');
-- attack: the status helper under a false name, or to a status it does not
-- handle (un-archiving)
SELECT throws_ok($$SELECT tenancy._set_status('hard-c', 'active', 'archived', 'resume_tenant')$$, '42501',
                 'tenancy._set_status is internal', 'the status helper only does suspend and resume');
SELECT throws_ok($$SELECT tenancy._set_status('hard-c', 'active', 'suspended', 'resume_tenant')$$, '42501', NULL,
                 '... each under its own name');
RESET ROLE;
SELECT is((SELECT status FROM tenancy.tenants WHERE slug = 'hard-c'), 'active', 'the tenant''s status is unchanged');
SELECT is((SELECT count(*)::int FROM tenancy.managed_tables WHERE relid = 't11.notes'::regclass), 1,
          'the registry is unchanged');

-- attack: code on a partition or an inheritance child (rows are routed to
-- them, or deleted through the parent), even when they are not managed
CREATE FUNCTION t11.who_else() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    CREATE TABLE IF NOT EXISTS t11.pwned AS SELECT current_user AS who;
    RETURN NULL;
END $$;
ALTER FUNCTION t11.who_else() OWNER TO tap11_owner;
CREATE TABLE t11.ev (tenant_id uuid NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE t11.ev_2025 PARTITION OF t11.ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
SELECT tenancy.enable('t11.ev');
CREATE TRIGGER ev_who AFTER DELETE ON t11.ev_2025 FOR EACH STATEMENT EXECUTE FUNCTION t11.who_else();
SELECT throws_like($$SELECT tenancy.drop_tenant('hard-d', confirm => 'hard-d')$$,
                   '%t11.ev_2025 runs function t11.who_else() owned by tap11_owner%',
                   'drop_tenant refuses an untrusted trigger on an unmanaged partition of a managed table');
DROP TABLE t11.ev;
CREATE TABLE t11.kids () INHERITS (t11.notes);
CREATE TRIGGER kids_who AFTER DELETE ON t11.kids FOR EACH STATEMENT EXECUTE FUNCTION t11.who_else();
SELECT throws_like($$SELECT tenancy.drop_tenant('hard-d', confirm => 'hard-d')$$,
                   '%t11.kids runs function t11.who_else() owned by tap11_owner%',
                   '... and on an inheritance child');
SELECT throws_ok($$SELECT tenancy.clone_tenant('hard-c', 'hard-e', 'E')$$, '0A000',
                 't11.notes has inheritance child t11.kids, which is not a partition',
                 'clone_tenant refuses a table with an inheritance child (its rows would move into the parent)');
DROP TABLE t11.kids;

-- attack: built-in functions that act beyond their arguments, which no
-- dependency records (built-ins are pinned): SQL text run as superuser, a
-- setting changed under the copy's feet
ALTER TABLE t11.notes ADD CONSTRAINT sneaky CHECK (query_to_xml('SELECT 1', true, false, '') IS NOT NULL) NOT VALID;
SELECT throws_like($$SELECT tenancy.clone_tenant('hard-c', 'hard-e', 'E')$$,
                   '%runs built-in function query_to_xml(text,boolean,boolean,text)%',
                   'clone_tenant refuses a CHECK calling query_to_xml');
ALTER TABLE t11.notes DROP CONSTRAINT sneaky;
ALTER TABLE t11.notes ALTER COLUMN body SET DEFAULT set_config('search_path', 't11, pg_catalog', true);
SELECT throws_like($$SELECT tenancy.drop_tenant('hard-d', confirm => 'hard-d')$$,
                   '%runs built-in function set_config(text,text,boolean)%',
                   'drop_tenant refuses a default calling set_config');
ALTER TABLE t11.notes ALTER COLUMN body DROP DEFAULT;

-- attack: a cast of a column's type to json, which create_template's
-- to_jsonb() runs
CREATE TYPE t11.tier AS ENUM ('gold', 'silver');
CREATE FUNCTION t11.tier_json(t11.tier) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    CREATE TABLE IF NOT EXISTS t11.pwned AS SELECT current_user AS who;
    RETURN '"x"'::json;
END $$;
ALTER FUNCTION t11.tier_json(t11.tier) OWNER TO tap11_owner;
CREATE CAST (t11.tier AS json) WITH FUNCTION t11.tier_json(t11.tier);
ALTER TABLE t11.notes ADD COLUMN tier t11.tier;
SELECT throws_like($$SELECT tenancy.create_template('hard-tpl', 'hard-c')$$,
                   '%runs function t11.tier_json(t11.tier) owned by tap11_owner%',
                   'create_template refuses a column type with an untrusted cast');
ALTER TABLE t11.notes DROP COLUMN tier;
SELECT is(to_regclass('t11.pwned'), NULL, 'none of them ran');

-- attack: the registry of managed tables naming an oid no table has yet
-- (claimed ahead of a table someone else creates), or a temporary view
SET LOCAL ROLE tap11_sa;
SELECT throws_ok($$INSERT INTO tenancy.managed_tables (relid, kind, tenant_column) VALUES (4000000000::oid::regclass, 'tenant', 'tenant_id')$$,
                 '42809', NULL, 'a registry row for an oid that is no table: refused');
CREATE TEMP VIEW loot AS SELECT NULL::uuid AS tenant_id;
SELECT throws_ok($$INSERT INTO tenancy.managed_tables (relid, kind, tenant_column) VALUES ('pg_temp.loot', 'tenant', 'tenant_id')$$,
                 '42809', NULL, 'a registry row for a temporary view the super admin owns: refused');
RESET ROLE;

-- internal helpers given NULLs: a clear error, not a crash
SELECT throws_ok($$SELECT * FROM tenancy._copy_steps(NULL, true, NULL)$$, '22004', NULL, '_copy_steps(NULL): 22004');
SELECT throws_ok($$SELECT tenancy._policy_ddl(NULL, 'tenant', NULL, NULL)$$, '22004', NULL, '_policy_ddl(NULL): 22004');

CREATE ROLE tap11_outsider NOLOGIN;
CREATE ROLE tap11_member NOLOGIN; GRANT tenancy_member TO tap11_member;
SET LOCAL ROLE tap11_outsider;
SELECT throws_ok($$SELECT tenancy.setting('locale')$$, '42501', NULL, 'a role outside the tenancy roles cannot call setting()');
RESET ROLE;
SET LOCAL ROLE tap11_member;
SELECT lives_ok($$SELECT tenancy.setting('locale')$$, 'a tenancy member can');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
