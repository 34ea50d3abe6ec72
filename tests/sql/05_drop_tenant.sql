-- tenancy.drop_tenant: confirmation, children, the rows deleted per table,
-- foreign keys between managed tables (a cycle too), and foreign keys from
-- unmanaged tables that must abort everything.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(36);

SELECT tenancy.create_tenant('acme', 'Acme');
SELECT tenancy.create_tenant('acme-europe', 'Acme Europe', parent => 'acme');
SELECT tenancy.create_tenant('acme-berlin', 'Acme Berlin', parent => 'acme-europe');
SELECT tenancy.create_tenant('globex', 'Globex');
SELECT tenancy.create_tenant('lonely', 'Lonely');
SELECT tenancy.create_tenant('pinned', 'Pinned');
CREATE TEMP TABLE ids AS SELECT slug, id FROM tenancy.tenants;
CREATE FUNCTION pg_temp.tid(s text) RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT id FROM ids WHERE slug = s $$;

CREATE SCHEMA t05;
-- a composite-key table with a self reference (subsidiary organisations)
CREATE TABLE t05.orgs (
    tenant_id uuid NOT NULL, id int, parent_id int,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, parent_id) REFERENCES t05.orgs (tenant_id, id)
);
-- two tables referencing each other: a cycle
CREATE TABLE t05.a (tenant_id uuid NOT NULL, id int, b_id int, PRIMARY KEY (tenant_id, id));
CREATE TABLE t05.b (tenant_id uuid NOT NULL, id int, a_id int NOT NULL, PRIMARY KEY (tenant_id, id),
                    FOREIGN KEY (tenant_id, a_id) REFERENCES t05.a (tenant_id, id));
ALTER TABLE t05.a ADD FOREIGN KEY (tenant_id, b_id) REFERENCES t05.b (tenant_id, id);
-- a child table with a single-column key referencing orgs
CREATE TABLE t05.sites (id serial PRIMARY KEY, tenant_id uuid NOT NULL, org_id int NOT NULL,
                        FOREIGN KEY (tenant_id, org_id) REFERENCES t05.orgs (tenant_id, id));
SELECT tenancy.enable('t05.orgs');
SELECT tenancy.enable('t05.a');
SELECT tenancy.enable('t05.b');
SELECT tenancy.enable('t05.sites');

CREATE FUNCTION pg_temp.fill(s text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE t uuid := pg_temp.tid(s);
BEGIN
    INSERT INTO t05.orgs VALUES (t, 1, NULL), (t, 2, 1), (t, 3, 2);
    INSERT INTO t05.sites (tenant_id, org_id) VALUES (t, 3), (t, 2);
    INSERT INTO t05.a VALUES (t, 1, NULL);
    INSERT INTO t05.b VALUES (t, 1, 1);
    UPDATE t05.a SET b_id = 1 WHERE tenant_id = t;
END $$;
SELECT pg_temp.fill(slug) FROM ids;

CREATE FUNCTION pg_temp.rows_of(s text) RETURNS int LANGUAGE sql AS $$
    SELECT ((SELECT count(*) FROM t05.orgs WHERE tenant_id = pg_temp.tid(s)) + (SELECT count(*) FROM t05.sites WHERE tenant_id = pg_temp.tid(s))
          + (SELECT count(*) FROM t05.a WHERE tenant_id = pg_temp.tid(s)) + (SELECT count(*) FROM t05.b WHERE tenant_id = pg_temp.tid(s)))::int
$$;
SELECT is(pg_temp.rows_of('globex'), 7, 'setup: every tenant has 7 rows');

-- ---------------------------------------------------------------- confirmation and children
SELECT throws_ok($$SELECT tenancy.drop_tenant('globex', confirm => 'acme')$$, '22023',
                 'drop_tenant(''globex'') needs confirm => ''globex''', 'wrong confirm: 22023');
SELECT throws_ok($$SELECT tenancy.drop_tenant('globex', confirm => NULL)$$, '22023', NULL, 'NULL confirm: 22023');
SELECT throws_ok(format($$SELECT tenancy.drop_tenant(%L, confirm => %L)$$, pg_temp.tid('globex'), pg_temp.tid('globex')), '22023', NULL,
                 'confirm must be the slug, not the uuid: 22023');
SELECT throws_ok($$SELECT tenancy.drop_tenant('nobody', confirm => 'nobody')$$, 'P0002', NULL, 'unknown tenant: P0002');
SELECT throws_ok($$SELECT tenancy.drop_tenant('Bad!', confirm => 'Bad!')$$, '22023', NULL, 'malformed tenant ref: 22023');
SELECT throws_ok($$SELECT tenancy.drop_tenant('acme', confirm => 'acme')$$, '2BP01',
                 'tenant ''acme'' has child tenants: acme-berlin, acme-europe', 'a tenant with children: 2BP01');
SELECT throws_ok($$SELECT tenancy.drop_tenant('acme-europe', confirm => 'acme-europe', with_children => false)$$, '2BP01', NULL,
                 'a tenant with a grandchild-bearing child: 2BP01');
SELECT is((SELECT count(*)::int FROM tenancy.tenants), 6, 'refused drops delete no tenant');
SELECT is(pg_temp.rows_of('acme') + pg_temp.rows_of('globex'), 14, 'refused drops delete no row');
SELECT is((SELECT count(*)::int FROM tenancy.audit_log WHERE action = 'drop_tenant'), 0, 'refused drops write no audit entry');

-- ---------------------------------------------------------------- a leaf tenant, by uuid, cycle and self reference
CREATE TEMP TABLE res AS SELECT tenancy.drop_tenant(pg_temp.tid('globex')::text, confirm => 'globex') AS counts;
SELECT is((SELECT counts FROM res), '{"t05.a": 1, "t05.b": 1, "t05.orgs": 3, "t05.sites": 2}'::jsonb,
          'drop_tenant returns the rows deleted per managed table (FK cycle and self reference included)');
SELECT is(pg_temp.rows_of('globex'), 0, 'every row of the dropped tenant is gone');
SELECT ok(NOT EXISTS (SELECT 1 FROM tenancy.tenants WHERE slug = 'globex'), 'the tenant is gone from the registry');
SELECT is(pg_temp.rows_of('acme') + pg_temp.rows_of('lonely') + pg_temp.rows_of('acme-berlin'), 21, 'other tenants keep their rows');
SELECT results_eq(
    $$SELECT tenant_id, target, details FROM tenancy.audit_log WHERE action = 'drop_tenant'$$,
    $$SELECT pg_temp.tid('globex'), 'globex',
             jsonb_build_object('tenants', jsonb_build_array(pg_temp.tid('globex')),
                                'rows', '{"t05.a": 1, "t05.b": 1, "t05.orgs": 3, "t05.sites": 2}'::jsonb)$$,
    'drop_tenant writes an audit entry with the tenants and row counts');

-- ---------------------------------------------------------------- a subtree
CREATE ROLE tap05_app NOLOGIN;
CREATE ROLE tap05_app2 NOLOGIN;
SELECT tenancy.bind_role('tap05_app', 'acme-berlin');
SELECT tenancy.bind_role('tap05_app2', 'acme');
SELECT throws_ok($$SELECT tenancy.drop_tenant('acme', confirm => 'acme', with_children => true)$$, '2BP01',
                 'roles are bound to tenant ''acme'': tap05_app, tap05_app2',
                 'roles bound anywhere in the subtree refuse the drop: 2BP01');
SELECT is(pg_temp.rows_of('acme') + pg_temp.rows_of('acme-berlin'), 14, 'the refused drop deleted no row');
SELECT is((SELECT count(*)::int FROM tenancy.role_bindings), 2, 'and kept the bindings');
SELECT tenancy.unbind_role('tap05_app');
SELECT tenancy.unbind_role('tap05_app2');
TRUNCATE res;
INSERT INTO res SELECT tenancy.drop_tenant('acme', confirm => 'acme', with_children => true);
SELECT is((SELECT counts FROM res), '{"t05.a": 3, "t05.b": 3, "t05.orgs": 9, "t05.sites": 6}'::jsonb,
          'with_children: the counts cover the whole subtree');
SELECT is((SELECT count(*)::int FROM tenancy.tenants WHERE slug LIKE 'acme%'), 0, 'with_children drops the tenant and all descendants');
SELECT is(pg_temp.rows_of('acme') + pg_temp.rows_of('acme-europe') + pg_temp.rows_of('acme-berlin'), 0,
          'with_children deletes the rows of every tenant in the subtree');
SELECT is(pg_temp.rows_of('lonely'), 7, 'an unrelated tenant keeps its rows');
SELECT is((SELECT jsonb_array_length(details->'tenants') FROM tenancy.audit_log WHERE action = 'drop_tenant' AND target = 'acme'), 3,
          'the audit entry lists every dropped tenant');

-- ---------------------------------------------------------------- a reference table is not touched
CREATE TABLE t05.units (code text PRIMARY KEY);
INSERT INTO t05.units VALUES ('kg');
SELECT tenancy.register_reference('t05.units');
TRUNCATE res;
INSERT INTO res SELECT tenancy.drop_tenant('lonely', confirm => 'lonely');
SELECT ok(NOT (SELECT counts FROM res) ? 't05.units', 'reference tables are not part of drop_tenant');
SELECT is((SELECT count(*)::int FROM t05.units), 1, 'reference rows are kept');

-- ---------------------------------------------------------------- FK from an unmanaged table aborts everything
CREATE TABLE t05.invoices (id int PRIMARY KEY, tenant_ref uuid, org_id int,
                           FOREIGN KEY (tenant_ref, org_id) REFERENCES t05.orgs (tenant_id, id));
INSERT INTO t05.invoices VALUES (1, pg_temp.tid('pinned'), 1);
SELECT throws_ok($$SELECT tenancy.drop_tenant('pinned', confirm => 'pinned')$$, '23503', NULL,
                 'a foreign key from an unmanaged table aborts drop_tenant: 23503');
SELECT is(pg_temp.rows_of('pinned'), 7, 'nothing of the tenant was deleted');
SELECT ok(EXISTS (SELECT 1 FROM tenancy.tenants WHERE slug = 'pinned'), 'the tenant is still registered');
SELECT is((SELECT count(*)::int FROM tenancy.audit_log WHERE action = 'drop_tenant' AND target = 'pinned'), 0,
          'the aborted drop wrote no audit entry');
DELETE FROM t05.invoices;
SELECT lives_ok($$SELECT tenancy.drop_tenant('pinned', confirm => 'pinned')$$, 'once the reference is gone the drop succeeds');

-- ---------------------------------------------------------------- quoted names and another tenant column
SELECT tenancy.create_tenant('quoted', 'Quoted');
SELECT tenancy.create_tenant('bystander', 'Bystander');
CREATE SCHEMA "T05 Mixed";
CREATE TABLE "T05 Mixed"."Odd Table" (id int, "Org Id" uuid NOT NULL);
SELECT tenancy.enable('"T05 Mixed"."Odd Table"', tenant_column => 'Org Id');
INSERT INTO "T05 Mixed"."Odd Table" VALUES (1, tenancy.resolve('quoted')), (2, tenancy.resolve('quoted')), (3, tenancy.resolve('bystander'));
TRUNCATE res;
INSERT INTO res SELECT tenancy.drop_tenant('quoted', confirm => 'quoted');
SELECT is((SELECT counts->'"T05 Mixed"."Odd Table"' FROM res), '2'::jsonb,
          'rows are deleted by the table''s own tenant column, under a quoted name');
SELECT results_eq($$SELECT id FROM "T05 Mixed"."Odd Table"$$, $$VALUES (3)$$, 'other tenants'' rows in that table are kept');

-- ---------------------------------------------------------------- no managed tables
SELECT tenancy.create_tenant('bare', 'Bare');
SELECT tenancy.disable(relid) FROM tenancy.managed_tables;
SELECT is(tenancy.drop_tenant('bare', confirm => 'bare'), '{}'::jsonb, 'with no managed tables drop_tenant returns {}');

CREATE ROLE tap05_sa NOLOGIN; GRANT tenancy_superadmin TO tap05_sa;
CREATE ROLE tap05_member NOLOGIN; GRANT tenancy_member TO tap05_member;
SELECT tenancy.create_tenant('last', 'Last');
SET LOCAL ROLE tap05_member;
SELECT throws_ok($$SELECT tenancy.drop_tenant('last', confirm => 'last')$$, '42501', NULL, 'a member cannot drop tenants: 42501');
RESET ROLE;
SET LOCAL ROLE tap05_sa;
SELECT lives_ok($$SELECT tenancy.drop_tenant('last', confirm => 'last')$$, 'a super admin drops tenants');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
