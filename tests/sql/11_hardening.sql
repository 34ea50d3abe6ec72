-- Functions that read or write user tables for a super admin (drop_tenant,
-- clone_tenant, provision, create_template) run those statements as each
-- table's owner, so whatever code the owner attached — triggers, rules,
-- defaults, constraints, operators, domains, casts — runs with the owner's
-- rights and never as the extension owner (a superuser); a setting that
-- code changes does not outlive the statement, and a temporary object it
-- creates is refused. Temporary tables cannot be managed; the registry of
-- managed tables is written only by the tables' owners; the tenant status
-- functions cannot be misused. setting() is for the tenancy roles only.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(64);

SELECT tenancy.create_tenant('hard-a', 'A');
CREATE ROLE tap11_owner NOLOGIN;
CREATE SCHEMA t11;
GRANT USAGE ON SCHEMA t11 TO tap11_owner;
CREATE TABLE t11.notes (id serial PRIMARY KEY, tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant(), body text);
SELECT tenancy.enable('t11.notes');
ALTER TABLE t11.notes OWNER TO tap11_owner;
INSERT INTO t11.notes (tenant_id, body) SELECT id, 'n' FROM tenancy.tenants WHERE slug = 'hard-a';

-- What the owner's code sees, and its attempt to become superuser.
CREATE TABLE t11.seen (via text, who name, su text, escalated boolean);
GRANT INSERT ON t11.seen TO tap11_owner;
CREATE FUNCTION t11.escalate(via text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    ok boolean := true;
BEGIN
    BEGIN
        ALTER ROLE tap11_owner SUPERUSER;
    EXCEPTION WHEN insufficient_privilege THEN
        ok := false;
    END;
    INSERT INTO t11.seen VALUES (via, current_user,
        (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)::text, ok);
    RETURN true;
END $$;
ALTER FUNCTION t11.escalate(text) OWNER TO tap11_owner;
CREATE FUNCTION t11.who() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM t11.escalate(TG_NAME || ' ' || TG_OP);
    RETURN NULL;
END $$;
ALTER FUNCTION t11.who() OWNER TO tap11_owner;
-- An attack: a statement-level AFTER trigger on t11.notes (on `events`) whose
-- function, owned by the table's owner, runs `body`. Dropped with
-- pg_temp.detach(name).
CREATE FUNCTION pg_temp.attach(name text, body text, events text DEFAULT 'INSERT') RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE format('CREATE FUNCTION t11.%I() RETURNS trigger LANGUAGE plpgsql AS %L', name,
                   'BEGIN ' || body || ' RETURN NULL; END');
    EXECUTE format('ALTER FUNCTION t11.%I() OWNER TO tap11_owner', name);
    EXECUTE format('CREATE TRIGGER %I AFTER %s ON t11.notes FOR EACH STATEMENT EXECUTE FUNCTION t11.%I()', name, events, name);
END $f$;
CREATE FUNCTION pg_temp.detach(name text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE format('DROP TRIGGER %I ON t11.notes', name);
END $f$;
CREATE TRIGGER notes_who AFTER INSERT OR DELETE ON t11.notes FOR EACH STATEMENT EXECUTE FUNCTION t11.who();
-- ... and the table forces row level security on its owner too
ALTER TABLE t11.notes FORCE ROW LEVEL SECURITY;

SELECT lives_ok($$SELECT tenancy.clone_tenant('hard-a', 'hard-b', 'B')$$,
                'clone_tenant copies a table whose owner''s trigger tries to become superuser');
SELECT is((SELECT count(*)::int FROM t11.notes n JOIN tenancy.tenants t ON t.id = n.tenant_id WHERE t.slug = 'hard-b'), 1,
          '... the row is copied (FORCE ROW LEVEL SECURITY does not hold back the owner''s copy)');
SELECT is((SELECT pg_catalog.string_agg(pg_catalog.format('%s/%s/%s/%s', via, who, su, escalated), ', ' ORDER BY via) FROM t11.seen),
          'notes_who INSERT/tap11_owner/false/f',
                  '... the trigger ran as the table''s owner, not superuser, and could not escalate');
SELECT is((SELECT rolsuper FROM pg_roles WHERE rolname = 'tap11_owner'), false, '... the owner is no superuser');
SELECT lives_ok($$SELECT tenancy.drop_tenant('hard-b', confirm => 'hard-b')$$, 'drop_tenant deletes from it');
SELECT is((SELECT pg_catalog.string_agg(pg_catalog.format('%s/%s/%s/%s', via, who, su, escalated), ', ' ORDER BY via) FROM t11.seen WHERE via LIKE '%DELETE'),
          'notes_who DELETE/tap11_owner/false/f',
                  '... its delete trigger ran as the owner too');
SELECT is((SELECT count(*)::int FROM t11.notes n JOIN tenancy.tenants t ON t.id = n.tenant_id WHERE t.slug = 'hard-a'), 1,
          '... and the source tenant keeps its row');
DROP TRIGGER notes_who ON t11.notes;
TRUNCATE t11.seen;

-- the same function behind an operator, in a CHECK constraint
CREATE FUNCTION t11.evil_eq(a text, b text) RETURNS boolean LANGUAGE sql AS $$ SELECT t11.escalate('operator') $$;
ALTER FUNCTION t11.evil_eq(text, text) OWNER TO tap11_owner;
CREATE OPERATOR t11.=~~= (FUNCTION = t11.evil_eq, LEFTARG = text, RIGHTARG = text);
ALTER OPERATOR t11.=~~= (text, text) OWNER TO tap11_owner;
ALTER TABLE t11.notes ADD CONSTRAINT harmless CHECK (body OPERATOR(t11.=~~=) 'x') NOT VALID;
-- in a rule, and through query_to_xml (SQL text run by a built-in)
CREATE RULE notes_also AS ON INSERT TO t11.notes DO ALSO SELECT t11.escalate('rule');
ALTER TABLE t11.notes ADD CONSTRAINT sneaky CHECK (query_to_xml('SELECT t11.escalate(''query_to_xml'')', true, false, '') IS NOT NULL) NOT VALID;
TRUNCATE t11.seen;
SELECT lives_ok($$SELECT tenancy.clone_tenant('hard-a', 'hard-c', 'C')$$,
                'clone_tenant with the owner''s code behind an operator, a rule and query_to_xml');
SELECT set_eq($$SELECT DISTINCT via FROM t11.seen$$, ARRAY['operator', 'rule', 'query_to_xml'],
              '... every path ran');
SELECT is((SELECT count(*)::int FROM t11.seen WHERE who <> 'tap11_owner' OR su <> 'false' OR escalated), 0,
          '... each as the owner, none escalated');
ALTER TABLE t11.notes DROP CONSTRAINT harmless, DROP CONSTRAINT sneaky;
DROP RULE notes_also ON t11.notes;

-- a setting changed by the owner's code does not outlive its statement (a
-- search_path of the owner's schema would have the extension's next
-- statement resolve names and operators there)
ALTER TABLE t11.notes ALTER COLUMN body SET DEFAULT set_config('search_path', 't11, public', false);
SET LOCAL search_path = public;
SELECT lives_ok($$SELECT tenancy.clone_tenant('hard-a', 'hard-d', 'D', tables => ARRAY['t11.notes']::regclass[])$$,
                'clone_tenant with a default that changes search_path');
SELECT is(current_setting('search_path'), 'public', '... the caller''s search_path is unchanged');
ALTER TABLE t11.notes ALTER COLUMN body DROP DEFAULT;
RESET search_path;

-- a temporary object created by the owner's code would outlive the call in
-- the caller's session, found before permanent tables of the same name
SELECT pg_temp.attach('squat', 'CREATE TEMP TABLE IF NOT EXISTS tenants (id uuid);', 'INSERT OR DELETE');
SELECT throws_like($$SELECT tenancy.clone_tenant('hard-a', 'hard-e', 'E')$$,
                   '%created temporary relation%tenants%', 'clone_tenant refuses a trigger that creates a temporary table');
SELECT is((SELECT count(*)::int FROM tenancy.tenants WHERE slug = 'hard-e'), 0, '... and creates no tenant');
SELECT throws_like($$SELECT tenancy.drop_tenant('hard-d', confirm => 'hard-d')$$,
                   '%created temporary relation%', '... so does drop_tenant');
SELECT is(to_regclass('pg_temp.tenants'), NULL, '... and the temporary table is gone');
SELECT pg_temp.detach('squat');
-- so would a holdable cursor (its query runs at commit, as the caller) and a
-- prepared statement
SELECT pg_temp.attach('hold', $$EXECUTE 'DECLARE later CURSOR WITH HOLD FOR SELECT t11.escalate(''cursor'')';$$);
TRUNCATE t11.seen;
SELECT throws_like($$SELECT tenancy.clone_tenant('hard-a', 'hard-e', 'E')$$,
                   '%created holdable cursor later%', 'clone_tenant refuses a trigger that leaves a holdable cursor');
SELECT pg_temp.detach('hold');
SELECT pg_temp.attach('prep', $$EXECUTE 'PREPARE later AS SELECT t11.escalate(''prepared'')';$$);
SELECT throws_like($$SELECT tenancy.clone_tenant('hard-a', 'hard-e', 'E')$$,
                   '%created prepared statement later%', '... or a prepared statement');
SELECT pg_temp.detach('prep');
SELECT is((SELECT count(*)::int FROM t11.seen), 0, '... whose queries never ran');
-- DISCARD TEMP drops the extension's mapping tables (and the caller's own
-- temporary tables): the owner could put a view of its own in their place
SELECT pg_temp.attach('discard', 'DISCARD TEMP;');
SELECT throws_like($$SELECT tenancy.clone_tenant('hard-a', 'hard-e', 'E')$$,
                   '%dropped temporary relation%', '... so is a trigger that drops temporary tables (the mapping tables, the caller''s own)');
SELECT pg_temp.detach('discard');
-- a deferred constraint trigger would fire at commit with the caller's
-- rights: refused, on the copied table or on one its owner's code writes
CREATE CONSTRAINT TRIGGER notes_late AFTER INSERT OR DELETE ON t11.notes DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION t11.who();
TRUNCATE t11.seen;
SELECT throws_like($$SELECT tenancy.clone_tenant('hard-a', 'hard-e', 'E')$$,
                   '%deferred constraint trigger or uniqueness check on t11.notes has events pending%',
                   'clone_tenant refuses a deferred constraint trigger (it would run at commit as the caller)');
SELECT throws_like($$SELECT tenancy.drop_tenant('hard-d', confirm => 'hard-d')$$,
                   '%deferred constraint trigger or uniqueness check on t11.notes has events pending%', '... so does drop_tenant');
DROP TRIGGER notes_late ON t11.notes;
CREATE TABLE t11.side (x int);
ALTER TABLE t11.side OWNER TO tap11_owner;
CREATE CONSTRAINT TRIGGER side_late AFTER INSERT ON t11.side DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION t11.who();
SELECT pg_temp.attach('to_side', 'INSERT INTO t11.side VALUES (1);');
SELECT throws_like($$SELECT tenancy.clone_tenant('hard-a', 'hard-e', 'E')$$,
                   '%deferred constraint trigger or uniqueness check on t11.side has events pending%',
                   '... also on another table the owner''s code writes');
SELECT pg_temp.detach('to_side');
SELECT is((SELECT count(*)::int FROM t11.seen), 0, '... and the deferred triggers never ran');
-- the recheck of a deferrable exclusion constraint evaluates its index
-- expressions at commit: refused too (foreign keys are not)
CREATE FUNCTION t11.k(v text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF pg_catalog.current_setting('t11.collide', true) IS DISTINCT FROM 'on' THEN
        RETURN (pg_catalog.random() * 1e9)::int;   -- (a lie, as an attacker's would be)
    END IF;
    PERFORM t11.escalate('recheck');
    RETURN 1;
END $$;
ALTER FUNCTION t11.k(text) OWNER TO tap11_owner;
ALTER TABLE t11.notes ADD CONSTRAINT notes_once EXCLUDE USING btree ((t11.k(body)) WITH =) DEFERRABLE INITIALLY DEFERRED;
INSERT INTO t11.notes (tenant_id, body) SELECT id, 'n2' FROM tenancy.tenants WHERE slug = 'hard-a';
TRUNCATE t11.seen;
SET LOCAL t11.collide = 'on';   -- the copies of hard-a's two rows collide: a recheck is queued
SELECT throws_like($$SELECT tenancy.clone_tenant('hard-a', 'hard-e', 'E')$$,
                   '%uniqueness check on t11.notes has events pending%',
                   'clone_tenant refuses a deferred exclusion constraint whose recheck would run at commit');
RESET t11.collide;
ALTER TABLE t11.notes DROP CONSTRAINT notes_once;
DELETE FROM t11.notes WHERE body = 'n2';
-- a holdable cursor under a name like the server's own portals
SELECT pg_temp.attach('hold2', $$EXECUTE 'DECLARE "<unnamed portal 424242>" CURSOR WITH HOLD FOR SELECT t11.escalate(''cursor'')';$$);
SELECT throws_like($$SELECT tenancy.clone_tenant('hard-a', 'hard-e', 'E')$$,
                   '%created holdable cursor "<unnamed portal 424242>"%', '... and a holdable cursor named like an internal portal');
SELECT pg_temp.detach('hold2');
SELECT is((SELECT count(*)::int FROM t11.seen WHERE via IN ('recheck', 'cursor') AND who <> 'tap11_owner'), 0,
          '... none of it ran as anyone but the owner');
-- prepared statements are not transactional: a trigger that replaces one of
-- the caller's (its driver would run it next, as the caller) and then fails
SELECT pg_temp.attach('swap', $$DEALLOCATE tap11_mine; PREPARE tap11_mine AS SELECT t11.escalate('prepared');
                                RAISE EXCEPTION 'duplicate key value' USING ERRCODE = '23505';$$);
PREPARE tap11_mine AS SELECT 1;
SELECT throws_ok($$SELECT tenancy.clone_tenant('hard-a', 'hard-e', 'E')$$, '23505', NULL, 'a trigger that swaps a prepared statement and fails');
SELECT is((SELECT count(*)::int FROM pg_prepared_statements WHERE name = 'tap11_mine'), 0,
          '... leaves no statement of its making under the caller''s name (deallocated)');
SELECT pg_temp.detach('swap');
-- a cursor the caller left open could be read or moved by the table's code
DECLARE tap11_cur CURSOR FOR SELECT 1;
SELECT throws_ok($$SELECT tenancy.clone_tenant('hard-a', 'hard-e', 'E')$$, '24000', 'cursor "tap11_cur" is open',
                 'clone_tenant refuses to run a table''s code while a cursor is open');
CLOSE tap11_cur;

-- a table name with a backslash and a quote, with standard_conforming_strings
-- off in the caller's session: the names in the generated statements are
-- quoted so they read back the same (E'' strings), nothing of them runs
CREATE TABLE t11."we\'ird" (tenant_id uuid NOT NULL, v int);
SELECT tenancy.enable('t11."we\''ird"');
INSERT INTO t11."we\'ird" SELECT id, 7 FROM tenancy.tenants WHERE slug = 'hard-a';
SET LOCAL standard_conforming_strings = off;
SELECT lives_ok($$SELECT tenancy.create_template('odd-tpl', 'hard-a', ARRAY['t11."we\\''ird"']::regclass[])$$,
                'create_template of a table whose name has a backslash and a quote, standard_conforming_strings off');
SELECT lives_ok($$SELECT tenancy.provision('odd-tpl', 'hard-g', 'G')$$, '... and provision from it');
RESET standard_conforming_strings;
SELECT is((SELECT sum(v)::int FROM t11."we\'ird" w JOIN tenancy.tenants t ON t.id = w.tenant_id WHERE t.slug = 'hard-g'), 7,
          '... the row is there');
DROP TABLE t11."we\'ird";

-- a cast of a column's type to json, which create_template's to_jsonb() runs
CREATE TYPE t11.tier AS ENUM ('gold', 'silver');
ALTER TYPE t11.tier OWNER TO tap11_owner;
CREATE FUNCTION t11.tier_json(t11.tier) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    PERFORM t11.escalate('cast');
    RETURN pg_catalog.to_json($1::text);
END $$;
ALTER FUNCTION t11.tier_json(t11.tier) OWNER TO tap11_owner;
CREATE CAST (t11.tier AS json) WITH FUNCTION t11.tier_json(t11.tier);
ALTER TABLE t11.notes ADD COLUMN tier t11.tier DEFAULT 'gold';
-- and a domain whose CHECK calls it, which provisioning from a template runs
-- when it reads the snapshot's values back
CREATE DOMAIN t11.body_text AS text CHECK (VALUE IS NULL OR t11.escalate('domain'));
ALTER DOMAIN t11.body_text OWNER TO tap11_owner;
ALTER TABLE t11.notes ADD COLUMN extra t11.body_text;
ALTER TABLE t11.notes NO FORCE ROW LEVEL SECURITY;
SET LOCAL ROLE tap11_owner;
UPDATE t11.notes SET extra = 'e';
RESET ROLE;
TRUNCATE t11.seen;
SELECT lives_ok($$SELECT tenancy.create_template('hard-tpl', 'hard-a')$$, 'create_template reads a column with the owner''s cast');
SELECT is((SELECT pg_catalog.string_agg(pg_catalog.format('%s/%s/%s/%s', via, who, su, escalated), ', ' ORDER BY via) FROM t11.seen),
          'cast/tap11_owner/false/f', '... which ran as the owner');
TRUNCATE t11.seen;
SELECT lives_ok($$SELECT tenancy.provision('hard-tpl', 'hard-f', 'F')$$, 'provision from it runs the domain''s CHECK');
SELECT is((SELECT pg_catalog.string_agg(pg_catalog.format('%s/%s/%s/%s', via, who, su, escalated), ', ' ORDER BY via) FROM t11.seen),
          'domain/tap11_owner/false/f', '... as the owner');
ALTER TABLE t11.notes DROP COLUMN tier, DROP COLUMN extra;

-- drop_tenant with tables of two owners, one referencing the other: each
-- owner's statement as that owner, the referencing table first
CREATE ROLE tap11_other NOLOGIN;
GRANT USAGE ON SCHEMA t11 TO tap11_other;
CREATE TABLE t11.cats (tenant_id uuid NOT NULL, id int NOT NULL, PRIMARY KEY (tenant_id, id));
CREATE TABLE t11.pets (tenant_id uuid NOT NULL, cat_id int NOT NULL, FOREIGN KEY (tenant_id, cat_id) REFERENCES t11.cats);
SELECT tenancy.enable('t11.cats');
SELECT tenancy.enable('t11.pets');
ALTER TABLE t11.cats OWNER TO tap11_other;
ALTER TABLE t11.pets OWNER TO tap11_owner;
INSERT INTO t11.cats SELECT id, 1 FROM tenancy.tenants WHERE slug = 'hard-d';
INSERT INTO t11.pets SELECT id, 1 FROM tenancy.tenants WHERE slug = 'hard-d';
SELECT is((SELECT tenancy.drop_tenant('hard-d', confirm => 'hard-d') -> 't11.pets')::int, 1,
          'drop_tenant across two owners deletes the referencing table''s rows');
SELECT is((SELECT count(*)::int FROM t11.cats c LEFT JOIN tenancy.tenants t ON t.id = c.tenant_id WHERE t.id IS NULL), 0,
          '... and the referenced table''s');
-- a cycle of foreign keys across owners cannot be deleted owner by owner
ALTER TABLE t11.cats ADD COLUMN pet_cat int;
ALTER TABLE t11.pets ADD UNIQUE (tenant_id, cat_id);
ALTER TABLE t11.cats ADD FOREIGN KEY (tenant_id, pet_cat) REFERENCES t11.pets (tenant_id, cat_id);
SELECT throws_ok($$SELECT tenancy.drop_tenant('hard-c', confirm => 'hard-c')$$, '0A000', NULL,
                 'a cycle of foreign keys across owners: 0A000');
SELECT is((SELECT count(*)::int FROM t11.notes n JOIN tenancy.tenants t ON t.id = n.tenant_id WHERE t.slug = 'hard-c'), 1,
          '... and nothing is deleted');
ALTER TABLE t11.cats OWNER TO tap11_owner;
SELECT lives_ok($$SELECT tenancy.drop_tenant('hard-c', confirm => 'hard-c')$$, '... one owner: one statement, the cycle is fine');
DROP TABLE t11.pets, t11.cats;
SELECT tenancy.create_tenant('hard-c', 'C');
INSERT INTO t11.notes (tenant_id, body) SELECT id, 'n' FROM tenancy.tenants WHERE slug = 'hard-c';

-- internal: only the extension owner may run statements as a table's owner
CREATE ROLE tap11_sa NOLOGIN; GRANT tenancy_superadmin TO tap11_sa;
-- a template of a table its owner keeps from the super admins: refused
REVOKE SELECT ON t11.notes FROM tenancy_superadmin;
SET LOCAL ROLE tap11_sa;
SELECT throws_ok($$SELECT tenancy.create_template('sa-tpl', 'hard-a')$$, '42501', NULL,
                 'create_template refuses a table the calling super admin may not read');
RESET ROLE;
GRANT SELECT ON t11.notes TO tenancy_superadmin;
-- ... or rows of it that a restrictive policy hides from the super admins
CREATE POLICY tap11_hide ON t11.notes AS RESTRICTIVE FOR SELECT TO tenancy_superadmin USING (body <> 'n');
SET LOCAL ROLE tap11_sa;
SELECT throws_like($$SELECT tenancy.create_template('sa-tpl', 'hard-a')$$, '%row level security hides 1 of the 1 rows%',
                   '... or rows a restrictive policy hides from the caller');
RESET ROLE;
DROP POLICY tap11_hide ON t11.notes;
SET LOCAL ROLE tap11_sa;
SELECT lives_ok($$SELECT tenancy.create_template('sa-tpl', 'hard-a')$$, 'with the rows visible the super admin makes the template');
SELECT throws_ok($$SELECT tenancy._exec_as_owner('t11.notes'::regclass, 'SELECT 1', NULL, NULL, NULL::jsonb, NULL)$$, '42501', NULL,
                 'a super admin cannot call _exec_as_owner');
SELECT throws_ok($$SELECT tenancy._query_as_owner('t11.notes'::regclass, 'SELECT NULL::jsonb', NULL, NULL)$$, '42501', NULL,
                 '... nor _query_as_owner');
RESET ROLE;

-- attack: a temporary table (any role can make one, and it leaves no sql_drop
-- event when its session ends)
CREATE TEMP TABLE scratch (tenant_id uuid NOT NULL, x int);
SELECT throws_ok($$SELECT tenancy.enable('pg_temp.scratch')$$, '42809', NULL, 'enable refuses a temporary table');
SELECT throws_ok($$SELECT tenancy.register_reference('pg_temp.scratch')$$, '42809', NULL, '... so does register_reference');

-- attack: a super admin writing the registry of managed tables directly, to
-- have a table it cannot read (it does not own) copied into a template, or to
-- take one out of drop_tenant
CREATE TABLE t11.payroll (tenant_id uuid NOT NULL, salary int);
INSERT INTO t11.payroll SELECT id, 100000 FROM tenancy.tenants WHERE slug = 'hard-c';
SET LOCAL ROLE tap11_sa;
SELECT throws_ok($$INSERT INTO tenancy.managed_tables (relid, kind, tenant_column) VALUES ('t11.payroll', 'tenant', 'tenant_id')$$,
                 '42501', NULL, 'a super admin cannot write the registry directly');
SELECT throws_ok($$SELECT tenancy._registry_write('t11.payroll'::regclass, 'tenant', 'tenant_id', false)$$,
                 '42501', 'only the owner of a permanent table can change its entry in tenancy.managed_tables',
                 'nor register a table it does not own through the registry writer');
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

-- a table with inheritance children that are not partitions cannot be copied
CREATE TABLE t11.kids () INHERITS (t11.notes);
SELECT throws_ok($$SELECT tenancy.clone_tenant('hard-c', 'hard-e', 'E')$$, '0A000',
                 't11.notes has inheritance child t11.kids, which is not a partition',
                 'clone_tenant refuses a table with an inheritance child (its rows would move into the parent)');
DROP TABLE t11.kids;

-- attack: the registry of managed tables naming an oid no table has yet
-- (claimed ahead of a table someone else creates), or a temporary view
SET LOCAL ROLE tap11_sa;
SELECT throws_ok($$SELECT tenancy._registry_write(4000000000::oid, 'tenant', 'tenant_id', false)$$,
                 '42501', NULL, 'a registry row for an oid that is no table: refused');
CREATE TEMP VIEW loot AS SELECT NULL::uuid AS tenant_id;
SELECT throws_ok($$SELECT tenancy._registry_write('pg_temp.loot'::regclass, 'tenant', 'tenant_id', false)$$,
                 '42501', NULL, 'a registry row for a temporary view the super admin owns: refused');
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
