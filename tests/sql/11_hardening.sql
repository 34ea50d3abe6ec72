-- Functions that write user tables with the extension owner's rights
-- (drop_tenant, clone_tenant) refuse tables whose triggers, defaults,
-- constraints or index expressions run code owned by a non-superuser, so a
-- table owner cannot get code run as superuser. setting() is for the
-- tenancy roles only.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(8);

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
