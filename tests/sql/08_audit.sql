-- The audit log: an entry from every mutating function, the hash chain,
-- verify_audit on an intact and on tampered chains, append-only for
-- everyone but the owner.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(66);

SELECT results_eq($$SELECT ok, entries, first_broken_seq, problem FROM tenancy.verify_audit()$$,
                  $$VALUES (true, 0::bigint, NULL::bigint, NULL::text)$$, 'an empty log verifies');

-- ---------------------------------------------------------------- one entry per mutating call
CREATE SCHEMA t08;
CREATE TABLE t08.docs (id int, tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant());
CREATE TABLE t08.units (code text);
CREATE ROLE tap08_app NOLOGIN; GRANT tenancy_member TO tap08_app;
CREATE ROLE tap08_sa NOLOGIN;  GRANT tenancy_superadmin TO tap08_sa;

SELECT tenancy.create_tenant('acme', 'Acme');                   -- 1
SELECT tenancy.create_tenant('globex', 'Globex');               -- 2
SELECT tenancy.suspend_tenant('globex');                        -- 3
SELECT tenancy.resume_tenant('globex');                         -- 4
SELECT tenancy.bind_role('tap08_app', 'acme');                  -- 5
SELECT tenancy.unbind_role('tap08_app');                        -- 6
SELECT tenancy.enable('t08.docs');                              -- 7
SELECT tenancy.register_reference('t08.units');                 -- 8
SELECT tenancy.disable('t08.units');                            -- 9
INSERT INTO t08.docs VALUES (1, tenancy.resolve('acme')), (2, tenancy.resolve('globex'));
SET LOCAL ROLE tap08_sa;
SELECT is((SELECT count(*)::int FROM t08.docs), 2, 'the super admin reads every tenant''s rows');   -- 10
SELECT is((SELECT count(*)::int FROM t08.docs), 2, 'a second read in the same transaction');
SELECT lives_ok($$UPDATE t08.docs SET id = id + 10 WHERE id = 2$$, 'the super admin updates any tenant''s row'); -- 11
RESET ROLE;
SELECT tenancy.drop_tenant('globex', confirm => 'globex');      -- 12

SELECT results_eq(
    $$SELECT seq, action, target FROM tenancy.audit_log ORDER BY seq$$,
    $$VALUES (1::bigint, 'create_tenant', 'acme'), (2, 'create_tenant', 'globex'), (3, 'suspend_tenant', 'globex'),
             (4, 'resume_tenant', 'globex'), (5, 'bind_role', 'tap08_app'), (6, 'unbind_role', 'tap08_app'),
             (7, 'enable', 't08.docs'), (8, 'register_reference', 't08.units'), (9, 'disable', 't08.units'),
             (10, 'superadmin_access', 't08.docs'), (11, 'superadmin_access', 't08.docs'), (12, 'drop_tenant', 'globex')$$,
    'every mutating function and each super-admin access writes one entry, in order');
SELECT results_eq(
    $$SELECT details, actor::text COLLATE "default", role::text COLLATE "default" FROM tenancy.audit_log WHERE action = 'superadmin_access' ORDER BY seq$$,
    $$VALUES ('{"command": "SELECT"}'::jsonb, session_user::text COLLATE "default", 'tap08_sa'), ('{"command": "UPDATE"}', session_user::text, 'tap08_sa')$$,
    'super-admin access entries record the command, the session user and the active role, once per command and table');
SELECT is((SELECT count(*)::int FROM tenancy.audit_log WHERE tenant_id = tenancy.resolve('acme')), 3,
          'entries carry the tenant they concern (create, bind, unbind of acme)');
SELECT ok((SELECT bool_and(at IS NOT NULL AND actor IS NOT NULL AND role IS NOT NULL AND length(hash) = 64 AND hash ~ '^[0-9a-f]+$')
             FROM tenancy.audit_log), 'every entry has when, who, role and a SHA-256 hex hash');

-- ---------------------------------------------------------------- the chain
SELECT is((SELECT prev_hash FROM tenancy.audit_log WHERE seq = 1), repeat('0', 64), 'the first entry links to the zero hash');
SELECT is((SELECT count(*)::int FROM tenancy.audit_log l JOIN tenancy.audit_log p ON p.seq = l.seq - 1 WHERE l.prev_hash = p.hash), 11,
          'every later entry carries the previous entry''s hash');
SELECT is((SELECT count(*)::int FROM tenancy.audit_log
            WHERE hash = tenancy._audit_entry_hash(seq, at, actor, role, tenant_id, action, target, details, prev_hash)), 12,
          'every hash is the digest of the entry''s content and the previous hash');
SELECT is((SELECT count(DISTINCT hash)::int FROM tenancy.audit_log), 12, 'hashes are distinct');
SELECT is(tenancy.audit_digest(ARRAY['a', NULL]) = tenancy.audit_digest(ARRAY['a', '']), false,
          'the digest tells NULL from an empty field');
SELECT is(tenancy.audit_digest(ARRAY['ab', 'c']) = tenancy.audit_digest(ARRAY['a', 'bc']), false,
          'the digest is not fooled by moving text between fields');
SELECT results_eq($$SELECT seq, hash FROM tenancy.audit_head$$,
                  $$SELECT seq, hash FROM tenancy.audit_log ORDER BY seq DESC LIMIT 1$$, 'the head records the newest entry');
SELECT results_eq($$SELECT ok, entries, first_broken_seq, problem FROM tenancy.verify_audit()$$,
                  $$VALUES (true, 12::bigint, NULL::bigint, NULL::text)$$, 'the intact chain verifies');

-- ---------------------------------------------------------------- tampering as the owner (restored after each case)
CREATE TEMP TABLE saved AS SELECT * FROM tenancy.audit_log;

UPDATE tenancy.audit_log SET details = '{"name": "Evil"}' WHERE seq = 5;
SELECT results_eq($$SELECT ok, entries, first_broken_seq, problem FROM tenancy.verify_audit()$$,
                  $$VALUES (false, 4::bigint, 5::bigint, 'entry 5 was modified after it was written')$$,
                  'an edited entry is reported as the first broken one');
UPDATE tenancy.audit_log l SET details = s.details FROM saved s WHERE l.seq = s.seq AND l.seq = 5;
SELECT ok((SELECT ok FROM tenancy.verify_audit()), 'restored: verifies again');

UPDATE tenancy.audit_log SET actor = 'someone_else' WHERE seq = 1;
SELECT is((SELECT first_broken_seq FROM tenancy.verify_audit()), 1::bigint, 'an edited actor in the first entry is caught');
UPDATE tenancy.audit_log l SET actor = s.actor FROM saved s WHERE l.seq = s.seq AND l.seq = 1;

UPDATE tenancy.audit_log SET at = at - interval '1 microsecond' WHERE seq = 12;
SELECT is((SELECT first_broken_seq FROM tenancy.verify_audit()), 12::bigint, 'a backdated newest entry is caught');
UPDATE tenancy.audit_log l SET at = s.at FROM saved s WHERE l.seq = s.seq AND l.seq = 12;

UPDATE tenancy.audit_log SET tenant_id = NULL WHERE seq = 3;
SELECT is((SELECT first_broken_seq FROM tenancy.verify_audit()), 3::bigint, 'a field set to NULL is caught');
UPDATE tenancy.audit_log l SET tenant_id = s.tenant_id FROM saved s WHERE l.seq = s.seq AND l.seq = 3;

-- rewrite an entry and recompute its own hash: the next entry no longer links
UPDATE tenancy.audit_log SET target = 'innocent',
       hash = tenancy._audit_entry_hash(seq, at, actor, role, tenant_id, action, 'innocent', details, prev_hash) WHERE seq = 7;
SELECT results_eq($$SELECT ok, entries, first_broken_seq, problem FROM tenancy.verify_audit()$$,
                  $$VALUES (false, 7::bigint, 8::bigint, 'entry 8 does not link to entry 7: the chain was rewritten')$$,
                  'a rewritten entry with a recomputed hash breaks the next link');
UPDATE tenancy.audit_log l SET target = s.target, hash = s.hash FROM saved s WHERE l.seq = s.seq AND l.seq = 7;
SELECT ok((SELECT ok FROM tenancy.verify_audit()), 'restored: verifies again');

DELETE FROM tenancy.audit_log WHERE seq = 6;
SELECT results_eq($$SELECT ok, entries, first_broken_seq, problem FROM tenancy.verify_audit()$$,
                  $$VALUES (false, 5::bigint, 6::bigint, 'entry 6 is missing (the next entry is 7): entries were deleted')$$,
                  'a deleted middle entry is reported as a gap');
INSERT INTO tenancy.audit_log SELECT * FROM saved WHERE seq = 6;
SELECT ok((SELECT ok FROM tenancy.verify_audit()), 'restored: verifies again');

DELETE FROM tenancy.audit_log WHERE seq = 1;
SELECT is((SELECT first_broken_seq FROM tenancy.verify_audit()), 1::bigint, 'a deleted first entry is reported');
INSERT INTO tenancy.audit_log SELECT * FROM saved WHERE seq = 1;

DELETE FROM tenancy.audit_log WHERE seq IN (11, 12);
SELECT results_eq($$SELECT ok, entries, first_broken_seq, problem FROM tenancy.verify_audit()$$,
                  $$VALUES (false, 10::bigint, 11::bigint,
                            'the chain head records 12 entries but the log ends at 10: the newest entries were removed')$$,
                  'deleting the newest entries is caught through the head');
INSERT INTO tenancy.audit_log SELECT * FROM saved WHERE seq IN (11, 12);

CREATE TEMP TABLE saved_head AS SELECT * FROM tenancy.audit_head;
DELETE FROM tenancy.audit_head;
SELECT results_eq($$SELECT ok, first_broken_seq, problem FROM tenancy.verify_audit()$$,
                  $$VALUES (false, 12::bigint, 'the chain head is missing: the newest entries cannot be vouched for')$$,
                  'a deleted head is reported');
INSERT INTO tenancy.audit_head SELECT * FROM saved_head;
SELECT results_eq($$SELECT ok, entries, first_broken_seq, problem FROM tenancy.verify_audit()$$,
                  $$VALUES (true, 12::bigint, NULL::bigint, NULL::text)$$, 'everything restored: the chain verifies');

-- new entries keep extending the restored chain
SELECT tenancy.create_tenant('initech', 'Initech');
SELECT is((SELECT prev_hash FROM tenancy.audit_log WHERE seq = 13), (SELECT hash FROM tenancy.audit_log WHERE seq = 12),
          'a new entry links to the newest one');
SELECT ok((SELECT ok FROM tenancy.verify_audit()), 'and the chain verifies');

-- ---------------------------------------------------------------- append-only for everyone but the owner
CREATE ROLE tap08_dba NOLOGIN;
GRANT tenancy_superadmin TO tap08_dba;
-- a DBA's mistake: table privileges beyond SELECT
GRANT UPDATE, DELETE, TRUNCATE, INSERT ON tenancy.audit_log, tenancy.audit_head TO tap08_dba;
SET LOCAL ROLE tap08_dba;
SELECT throws_ok($$UPDATE tenancy.audit_log SET details = '{}' WHERE seq = 1$$, '42501',
                 'UPDATE on audit_log is not allowed: the audit log is append-only', 'UPDATE by a non-owner: 42501');
SELECT throws_ok($$DELETE FROM tenancy.audit_log WHERE seq = 1$$, '42501',
                 'DELETE on audit_log is not allowed: the audit log is append-only', 'DELETE by a non-owner: 42501');
SELECT throws_ok($$TRUNCATE tenancy.audit_log$$, '42501',
                 'TRUNCATE on audit_log is not allowed: the audit log is append-only', 'TRUNCATE by a non-owner: 42501');
SELECT throws_ok($$UPDATE tenancy.audit_head SET seq = 0$$, '42501', NULL, 'moving the head by a non-owner: 42501');
SELECT throws_ok($$DELETE FROM tenancy.audit_head$$, '42501', NULL, 'deleting the head by a non-owner: 42501');
SELECT results_eq($$SELECT ok, entries FROM tenancy.verify_audit()$$, $$VALUES (true, 13::bigint)$$,
                  'a super admin may verify the chain, which is untouched');
SELECT is((SELECT count(*)::int FROM tenancy.audit_log), 13, 'a super admin may read the log');
RESET ROLE;

SET LOCAL ROLE tap08_app;
SELECT throws_ok($$SELECT * FROM tenancy.audit_log$$, '42501', NULL, 'a member cannot read the log: 42501');
SELECT throws_ok($$UPDATE tenancy.audit_log SET details = '{}'$$, '42501', NULL, 'a member cannot update the log: 42501');
SELECT throws_ok($$INSERT INTO tenancy.audit_log VALUES (99, now(), 'x', 'x', NULL, 'forged', NULL, '{}', 'x', 'x')$$, '42501', NULL,
                 'a member cannot insert forged entries: 42501');
SELECT throws_ok($$SELECT tenancy._audit('forged', NULL, NULL, '{}')$$, '42501', NULL,
                 'a member cannot call the audit writer: 42501');
SELECT throws_ok($$SELECT * FROM tenancy.verify_audit()$$, '42501', NULL, 'a member cannot run verify_audit: 42501');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM tenancy.audit_log), 13, 'no refused attempt added or removed an entry');
SELECT throws_ok($$SELECT tenancy._audit(NULL, NULL, NULL)$$, '22004', 'audit action must not be empty', 'an entry needs an action: 22004');

-- attack: a super admin's first access to a table inside a savepoint that is
-- rolled back takes its audit entry along; the next access (the real one)
-- must still be audited
SET LOCAL ROLE tap08_sa;
SAVEPOINT probe;
DELETE FROM t08.docs WHERE id = -1;
ROLLBACK TO SAVEPOINT probe;
DELETE FROM t08.docs WHERE id = 1;
RESET ROLE;
SELECT is((SELECT count(*)::int FROM tenancy.audit_log WHERE action = 'superadmin_access' AND details->>'command' = 'DELETE'), 1,
          'a super admin''s access after a rolled-back savepoint is audited');

-- the entry's tenant is the context the super admin works in, resolved by
-- superadmin_access itself (no caller passes it)
SELECT tenancy.create_tenant('hooli', 'Hooli');
SET LOCAL ROLE tap08_sa;
SELECT tenancy.set_tenant('acme', true);
INSERT INTO t08.docs VALUES (99, tenancy.resolve('hooli'));
RESET ROLE;
SELECT is((SELECT tenant_id FROM tenancy.audit_log WHERE action = 'superadmin_access' AND details->>'command' = 'INSERT'),
          tenancy.resolve('acme'), 'a super admin''s access entry records the tenant context it worked in (acme, writing hooli''s row)');
SELECT set_config('tenancy.tenant_id', '', true);

-- attack: a super admin forging entries. The writer is the extension
-- owner's; the registry's entries come from a trigger on the registry, and
-- superadmin_access files only an access that happens.
SELECT count(*) AS entries_before FROM tenancy.audit_log \gset
SET LOCAL ROLE tap08_sa;
SELECT throws_ok($$SELECT tenancy._audit('drop_tenant', NULL, 'acme', '{}')$$, '42501', NULL,
                 'a super admin cannot call the audit writer: 42501');
SELECT throws_ok($$SELECT tenancy._audit_registry_change()$$, NULL, NULL,
                 'nor the registry''s trigger function');
SELECT throws_ok($$SELECT tenancy.superadmin_access('pg_catalog.pg_class'::regclass, 'SELECT')$$, '42501',
                 'tenancy.superadmin_access is for the generated super-admin policies', 'no access entry for a table without the policy: 42501');
SELECT throws_ok($$SELECT tenancy.superadmin_access('t08.docs'::regclass, 'TRUNCATE')$$, '42501',
                 'tenancy.superadmin_access is for the generated super-admin policies', 'no access entry for another command: 42501');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM tenancy.audit_log), :entries_before, 'no forged entry was written');

-- the registry is written only through enable / register_reference /
-- disable (as the extension owner, with their audit entries): a table's owner
-- cannot write it directly, and the registry writer records only what is true
CREATE TABLE t08.owned (id int, tenant_id uuid NOT NULL);
ALTER TABLE t08.owned OWNER TO tap08_sa;
GRANT USAGE, CREATE ON SCHEMA t08 TO tap08_sa;
SET LOCAL ROLE tap08_sa;
SELECT tenancy.enable('t08.owned');
SELECT throws_ok($$UPDATE tenancy.managed_tables SET hierarchical = true WHERE relid = 't08.owned'::regclass$$, '42501', NULL,
                 'the owner of a managed table cannot edit its registry row directly');
SELECT throws_ok($$SELECT tenancy._registry_write('t08.owned'::regclass, 'disable', NULL, NULL)$$, '42501',
                 'tenancy._registry_write records only what enable(), register_reference() or disable() did',
                 'nor file a disable while its generated policies are in place');
SELECT throws_ok($$SELECT tenancy._registry_write('t08.owned'::regclass, 'reference', NULL, NULL)$$, '42501', NULL,
                 'nor turn it into a reference table in the registry alone');
SELECT tenancy.disable('t08.owned');
RESET ROLE;
SELECT results_eq($$SELECT action, target, details FROM tenancy.audit_log WHERE target = 't08.owned' ORDER BY seq$$,
                  $$VALUES ('enable', 't08.owned', '{"tenant_column": "tenant_id", "hierarchical": false}'::jsonb),
                           ('disable', 't08.owned', '{}'::jsonb)$$,
                  'enable and disable: one entry each');
DROP TABLE t08.owned;

-- (an entry for an access that does not happen — a direct call, a policy
-- on another table naming this one — is refused: tests/e2e audit_chain.rs;
-- it needs a table this transaction has not locked, so not here)

-- attack: types a super admin puts in pg_temp (found before pg_catalog's for
-- unqualified type names) must never run as the extension owner when
-- superadmin_access writes the entry
CREATE TABLE t08.more (id int, tenant_id uuid NOT NULL DEFAULT tenancy.current_tenant());
SELECT tenancy.enable('t08.more');
INSERT INTO t08.more VALUES (1, tenancy.resolve('acme'));
CREATE TABLE pg_temp.seen (who name);
GRANT ALL ON pg_temp.seen TO PUBLIC;
CREATE FUNCTION pg_temp.spy(anyelement) RETURNS boolean LANGUAGE sql AS
    $$ INSERT INTO pg_temp.seen VALUES (current_user) RETURNING true $$;
GRANT EXECUTE ON FUNCTION pg_temp.spy(anyelement) TO PUBLIC;
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.spy(VALUE));
CREATE DOMAIN pg_temp.uuid AS pg_catalog.uuid CHECK (pg_temp.spy(VALUE));
CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (pg_temp.spy(VALUE));
CREATE DOMAIN pg_temp.regclass AS pg_catalog.regclass CHECK (pg_temp.spy(VALUE));
CREATE DOMAIN pg_temp.name AS pg_catalog.name CHECK (pg_temp.spy(VALUE));
SET LOCAL ROLE tap08_sa;
SELECT lives_ok($$SELECT count(*) FROM t08.more$$, 'a super admin reads a managed table with shadowing types in pg_temp');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM pg_temp.seen WHERE who <> 'tap08_sa'), 0,
          '... and none of them ran as anyone else (the entry is written with a pinned search_path)');
SELECT is((SELECT count(*)::int FROM tenancy.audit_log WHERE target = 't08.more' AND action = 'superadmin_access'), 1,
          '... the access is audited all the same');
SELECT ok(NOT (SELECT rolsuper FROM pg_roles WHERE rolname = 'tap08_sa'), '... and the super admin is no superuser');
DROP DOMAIN pg_temp.text, pg_temp.uuid, pg_temp.jsonb, pg_temp.regclass, pg_temp.name;

-- a super admin locks rows (SELECT … FOR UPDATE / FOR SHARE applies the
-- UPDATE policies): allowed and audited as UPDATE; the entry names the table
-- schema-qualified whatever the reader's search_path
SET LOCAL ROLE tap08_sa;
SET LOCAL search_path = t08, public;
SELECT lives_ok($$SELECT id FROM more FOR UPDATE$$, 'a super admin''s SELECT … FOR UPDATE');
SELECT lives_ok($$SELECT id FROM more FOR KEY SHARE$$, '... and FOR KEY SHARE');
RESET ROLE;
RESET search_path;
SELECT is((SELECT target FROM tenancy.audit_log WHERE action = 'superadmin_access' AND details->>'command' = 'UPDATE' AND target LIKE '%more'),
          't08.more', '... audited as UPDATE on t08.more (qualified, though t08 was on the reader''s path)');
-- quote_all_identifiers changes neither entries nor enable()
SET LOCAL quote_all_identifiers = on;
CREATE TABLE t08.quoted (id int, tenant_id uuid NOT NULL);
SELECT lives_ok($$SELECT tenancy.enable('t08.quoted')$$, 'enable with quote_all_identifiers on');
INSERT INTO t08.quoted VALUES (1, tenancy.resolve('acme'));
SET LOCAL ROLE tap08_sa;
SELECT is((SELECT count(*)::int FROM t08.quoted), 1, 'a super admin reads it');
RESET ROLE;
SELECT is((SELECT array_agg(target ORDER BY seq) FROM tenancy.audit_log WHERE target LIKE '%quoted%'),
          ARRAY['t08.quoted', 't08.quoted'], '... entries name the table unquoted (enable, access)');
SET LOCAL quote_all_identifiers = off;

SELECT * FROM finish();
ROLLBACK;
