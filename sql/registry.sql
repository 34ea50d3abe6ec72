-- pg_tenancy registry and context: resolving tenants, the current tenant,
-- creating, suspending, resuming and dropping tenants, binding roles.

-- Is `t` a UUID, in any of the forms the uuid type accepts (32 hex digits, a
-- hyphen allowed after any group of four but the last, optional braces)?
-- Exactly the uuid input's grammar: a slug can never be read as an id
-- (core::slug::parse_uuid is the same rule).
CREATE FUNCTION tenancy._is_uuid(t text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
    SELECT t ~ '^(\{([0-9a-fA-F]{4}-?){7}[0-9a-fA-F]{4}\}|([0-9a-fA-F]{4}-?){7}[0-9a-fA-F]{4})$'
$$;

-- Find a tenant by uuid or slug; NULL when there is none. Raises 22023 when
-- the text is neither a uuid nor a well-formed slug.
CREATE FUNCTION tenancy._find(tenant text) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v uuid;
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'tenant must not be NULL',
            HINT = 'Pass the tenant''s uuid or slug.';
    END IF;
    IF tenancy._is_uuid(tenant) THEN
        SELECT t.id INTO v FROM tenancy.tenants t WHERE t.id = tenant::uuid;
    ELSIF tenancy.slug_problem(tenant) IS NULL THEN
        SELECT t.id INTO v FROM tenancy.tenants t WHERE t.slug = tenant;
    ELSE
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%L is neither a tenant uuid nor a valid tenant slug', tenant),
            DETAIL = pg_catalog.format('As a slug it %s.', tenancy.slug_problem(tenant)),
            HINT = 'Slugs are 2-63 lowercase letters, digits and hyphens, e.g. ''acme-europe''.';
    END IF;
    RETURN v;
END
$$;

-- Context resolution behind tenancy.current_tenant() (which caches it).
CREATE FUNCTION tenancy._resolve_context(session_oid oid, current_oid oid, setting text) RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v uuid;
BEGIN
    SELECT b.tenant_id INTO v FROM tenancy.role_bindings b WHERE b.role::oid = session_oid;
    IF NOT FOUND THEN
        SELECT b.tenant_id INTO v FROM tenancy.role_bindings b WHERE b.role::oid = current_oid;
    END IF;
    IF NOT FOUND THEN
        IF setting IS NULL OR setting = '' THEN
            RETURN NULL;
        END IF;
        IF NOT tenancy._is_uuid(setting) AND tenancy.slug_problem(setting) IS NOT NULL THEN
            RETURN NULL;  -- malformed: current_tenant() raises 22023 for it
        END IF;
        v := tenancy._find(setting);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tenancy.tenants t WHERE t.id = v AND t.status = 'active') THEN
        RETURN NULL;  -- unknown, suspended or archived: fail closed
    END IF;
    RETURN v;
END
$$;

-- A tenant and all its descendants.
CREATE FUNCTION tenancy._descendants(root uuid) RETURNS uuid[]
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE tree(id) AS (
        SELECT t.id FROM tenancy.tenants t WHERE t.id = root
        UNION
        SELECT c.id FROM tenancy.tenants c JOIN tree ON c.parent_id = tree.id
    )
    SELECT COALESCE(pg_catalog.array_agg(id), '{}'::uuid[]) FROM tree
$$;

-- The binding of a session user or current role, session user first.
CREATE FUNCTION tenancy._bound_tenant(session_oid oid, current_oid oid) RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT b.tenant_id FROM tenancy.role_bindings b
     WHERE b.role::oid IN (session_oid, current_oid)
     ORDER BY b.role::oid = session_oid DESC LIMIT 1
$$;

-- The context behind current_tenant() and visible_tenants() (which cache it):
-- the current tenant first, then its descendants; empty when there is none.
CREATE FUNCTION tenancy._context(session_oid oid, current_oid oid, setting text) RETURNS uuid[]
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v uuid := tenancy._resolve_context(session_oid, current_oid, setting);
BEGIN
    IF v IS NULL THEN
        RETURN '{}';
    END IF;
    RETURN ARRAY[v] || ARRAY(SELECT d FROM pg_catalog.unnest(tenancy._descendants(v)) d WHERE d <> v);
END
$$;

-- Look a tenant up for tenancy.resolve(): a bound caller sees only its own
-- tenant and its descendants, so it cannot enumerate the others.
CREATE FUNCTION tenancy._find_visible(tenant text, session_oid oid, current_oid oid) RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v     uuid := tenancy._find(tenant);
    bound uuid := tenancy._bound_tenant(session_oid, current_oid);
BEGIN
    IF v IS NOT NULL AND bound IS NOT NULL AND v <> ALL (tenancy._descendants(bound)) THEN
        RETURN NULL;
    END IF;
    RETURN v;
END
$$;

-- Validate a set_tenant() request; returns the tenant's uuid. Trusts the
-- role oids it is given, so only the extension owner runs it: set_tenant()
-- goes through tenancy._checked_tenant(), which passes the caller's own.
CREATE FUNCTION tenancy._check_set_tenant(tenant text, session_oid oid, current_oid oid) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v       uuid;
    v_bound uuid;
    v_role  regrole;
    v_status text;
BEGIN
    SELECT b.tenant_id, b.role INTO v_bound, v_role FROM tenancy.role_bindings b
     WHERE b.role::oid IN (session_oid, current_oid)
     ORDER BY b.role::oid = session_oid DESC LIMIT 1;
    -- A bound role learns nothing about other tenants: any other target,
    -- existing or not, is the same refusal.
    IF v_bound IS NOT NULL THEN
        v := tenancy._find(tenant);
    ELSE
        v := tenancy.resolve(tenant);
    END IF;
    IF v_bound IS NOT NULL AND v IS DISTINCT FROM v_bound THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('role %s is bound to tenant %s and cannot switch to %L',
                        v_role, (SELECT t.slug FROM tenancy.tenants t WHERE t.id = v_bound), tenant),
            HINT = 'A bound role always works in its own tenant; a super admin can change that with tenancy.unbind_role().';
    END IF;
    SELECT t.status INTO v_status FROM tenancy.tenants t WHERE t.id = v;
    IF v_status <> 'active' THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('tenant %L is %s', tenant, v_status),
            HINT = 'A suspended tenant sees and writes nothing; resume it with tenancy.resume_tenant().';
    END IF;
    RETURN v;
END
$$;

/*
 * Make `tenant` (uuid or slug) the current tenant of this session, or of the
 * current transaction when is_local. Returns its uuid.
 * Errors: 22023 malformed, P0002 unknown, 55000 not active, 42501 the role is
 * bound to another tenant. Like SET LOCAL, is_local outside a transaction
 * block lasts only for the statement making it; then it also clears the
 * session's tenant, so that no tenant set earlier on the connection (on a
 * pooled one, perhaps another client's) applies to the next statement:
 * fail closed. Use is_local after BEGIN.
 * Example: SELECT tenancy.set_tenant('acme');
 */
CREATE FUNCTION tenancy.set_tenant(tenant text, is_local boolean DEFAULT false) RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT pg_catalog.set_config('tenancy.tenant_id', '', false)
     WHERE COALESCE(is_local, false) AND NOT tenancy._in_transaction_block();
    SELECT pg_catalog.set_config('tenancy.tenant_id', tenancy._checked_tenant(tenant)::text,
             COALESCE(is_local, false))::uuid
$$;

/*
 * Leave the tenant context: afterwards tenant tables show no rows. is_local
 * outside a transaction block clears the session's tenant too (see
 * set_tenant).
 * Example: SELECT tenancy.clear_tenant();
 */
CREATE FUNCTION tenancy.clear_tenant(is_local boolean DEFAULT false) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT pg_catalog.set_config('tenancy.tenant_id', '',
             COALESCE(is_local, false) AND tenancy._in_transaction_block())::void
$$;

/*
 * Register a tenant. Returns its uuid.
 * Errors: 22023 invalid slug/name/settings, 23505 slug taken, P0002 unknown parent.
 * Example: SELECT tenancy.create_tenant('acme', 'Acme Corp', plan => 'pro', industry => 'manufacturing');
 *          SELECT tenancy.create_tenant('acme-europe', 'Acme Europe', parent => 'acme');
 */
CREATE FUNCTION tenancy.create_tenant(
    slug text, name text, parent text DEFAULT NULL, plan text DEFAULT NULL,
    industry text DEFAULT NULL, settings jsonb DEFAULT '{}'
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id     uuid;
    v_parent uuid;
BEGIN
    IF slug IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'tenant slug must not be NULL';
    END IF;
    IF tenancy.slug_problem(slug) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('tenant slug %L is invalid', slug),
            DETAIL = pg_catalog.format('A slug %s.', tenancy.slug_problem(slug)),
            HINT = 'Slugs are 2-63 lowercase letters, digits and hyphens, e.g. ''acme-europe''.';
    END IF;
    IF name IS NULL OR pg_catalog.length(pg_catalog.btrim(name)) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('tenant name %L is invalid', name),
            HINT = 'Give a display name of 1 to 200 characters.';
    END IF;
    IF settings IS NULL OR pg_catalog.jsonb_typeof(settings) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('tenant settings must be a JSON object, not %s', COALESCE(pg_catalog.jsonb_typeof(settings), 'NULL')),
            HINT = 'For example settings => ''{"locale": "de"}''.';
    END IF;
    IF parent IS NOT NULL THEN
        v_parent := tenancy.resolve(parent);
    END IF;
    INSERT INTO tenancy.tenants (slug, name, parent_id, plan, industry, settings)
         VALUES (slug, pg_catalog.btrim(name), v_parent, plan, industry, settings)
    ON CONFLICT ON CONSTRAINT tenants_slug_key DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '23505',
            MESSAGE = pg_catalog.format('tenant slug %L is already taken', slug),
            HINT = 'Choose another slug; SELECT slug FROM tenancy.tenants lists the taken ones.';
    END IF;
    PERFORM tenancy._audit('create_tenant', v_id, slug,
        pg_catalog.jsonb_build_object('name', pg_catalog.btrim(name), 'parent_id', v_parent,
                                      'plan', plan, 'industry', industry, 'settings', settings));
    RETURN v_id;
END
$$;

-- Move a tenant between statuses; shared by suspend_tenant and resume_tenant.
CREATE FUNCTION tenancy._set_status(tenant text, from_status text, to_status text, action text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id uuid;
    v_status text;
BEGIN
    -- callable by the super admin (suspend/resume_tenant run as the caller):
    -- only the two transitions, each under its own name in the audit log
    IF (from_status, to_status, action) IS DISTINCT FROM ('active', 'suspended', 'suspend_tenant')
       AND (from_status, to_status, action) IS DISTINCT FROM ('suspended', 'active', 'resume_tenant') THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = 'tenancy._set_status is internal',
            HINT = 'Use tenancy.suspend_tenant() or tenancy.resume_tenant().';
    END IF;
    v_id := tenancy.resolve(tenant);
    SELECT t.status INTO v_status FROM tenancy.tenants t WHERE t.id = v_id FOR UPDATE;
    IF v_status = to_status THEN
        RAISE NOTICE 'tenant % is already %', tenant, to_status;
        RETURN v_id;
    END IF;
    IF v_status <> from_status THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('tenant %L is %s, not %s', tenant, v_status, from_status),
            HINT = 'Only active tenants can be suspended and only suspended tenants resumed.';
    END IF;
    UPDATE tenancy.tenants t SET status = to_status, updated_at = pg_catalog.now() WHERE t.id = v_id;
    PERFORM tenancy._audit(action, v_id, tenant, pg_catalog.jsonb_build_object('from', v_status, 'to', to_status));
    RETURN v_id;
END
$$;

/*
 * Suspend a tenant: from the next statement on, its context (set or bound)
 * sees no rows and writes none, in every session. Data is kept.
 * Example: SELECT tenancy.suspend_tenant('acme');
 */
CREATE FUNCTION tenancy.suspend_tenant(tenant text) RETURNS uuid
LANGUAGE sql VOLATILE AS $$ SELECT tenancy._set_status(tenant, 'active', 'suspended', 'suspend_tenant') $$;

/*
 * Resume a suspended tenant.
 * Example: SELECT tenancy.resume_tenant('acme');
 */
CREATE FUNCTION tenancy.resume_tenant(tenant text) RETURNS uuid
LANGUAGE sql VOLATILE AS $$ SELECT tenancy._set_status(tenant, 'suspended', 'active', 'resume_tenant') $$;

-- Functions that write user tables as the extension owner (drop_tenant,
-- clone_tenant, provision) run the code those writes reach with the owner's
-- (superuser) rights: triggers and their WHEN clauses, defaults and generated
-- columns, check and domain constraints, index expressions and predicates —
-- and whatever functions these reach through operators, casts and types
-- (a CHECK on `col OPERATOR(my.=~) 'x'` depends on the operator, the operator
-- on its function; a column of a domain type runs the domain's CHECK; a range
-- type's subtype_diff runs in its GiST index). Refuse when any function so
-- reached belongs to a role that is not a superuser: otherwise a table owner
-- could run code as superuser by having a super admin drop or clone a tenant.
-- Rules are refused outright: a rule's actions run as the writing user and
-- can write further tables, whose own code this walk does not follow.
-- The walk follows pg_depend from the tables' attached objects to what they
-- use (functions, operators, types, relations of composite types), and from
-- each type to its domain constraints. It cannot see functions called
-- dynamically from a superuser-owned function's body.
CREATE FUNCTION tenancy._refuse_untrusted_code(tables oid[]) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v     record;
    v_all oid[];
BEGIN
    -- every table the writes reach: the tables and their inheritance
    -- descendants (partitions and children get the rows routed to them or
    -- deleted through the parent)
    WITH RECURSIVE d(relid) AS (
        SELECT t FROM pg_catalog.unnest(tables) AS t
        UNION
        SELECT i.inhrelid FROM d JOIN pg_catalog.pg_inherits i ON i.inhparent = d.relid
    )
    SELECT pg_catalog.array_agg(d.relid ORDER BY d.relid) INTO v_all
      FROM d JOIN pg_catalog.pg_class c ON c.oid = d.relid;
    IF v_all IS NULL THEN
        RETURN;
    END IF;
    -- no new trigger, rule, constraint or index between this check and the
    -- writes (they all take a lock this one conflicts with); rows may still
    -- be written meanwhile
    EXECUTE 'LOCK TABLE ' || (SELECT pg_catalog.string_agg(x::regclass::text, ', ') FROM pg_catalog.unnest(v_all) x)
         || ' IN SHARE UPDATE EXCLUSIVE MODE';
    SELECT c.oid::regclass AS tbl, w.rulename INTO v
      FROM pg_catalog.unnest(v_all) AS t(relid)
      JOIN pg_catalog.pg_class c ON c.oid = t.relid
      JOIN pg_catalog.pg_rewrite w ON w.ev_class = c.oid
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('%s has rule %I', v.tbl, v.rulename),
            DETAIL = 'pg_tenancy writes this table with the extension owner''s rights; a rule''s actions would run with them.',
            HINT = pg_catalog.format('Drop the rule (DROP RULE %I ON %s), e.g. in favour of a trigger whose function a superuser owns.', v.rulename, v.tbl);
    END IF;
    WITH RECURSIVE attached(classid, objid, tbl) AS (
        SELECT 'pg_catalog.pg_class'::regclass::oid, c.oid, c.oid            -- the table: its column types
          FROM pg_catalog.unnest(v_all) AS t(relid) JOIN pg_catalog.pg_class c ON c.oid = t.relid
        UNION ALL
        SELECT 'pg_catalog.pg_trigger'::regclass::oid, g.oid, g.tgrelid
          FROM pg_catalog.pg_trigger g WHERE g.tgrelid = ANY (v_all) AND NOT g.tgisinternal
        UNION ALL
        SELECT 'pg_catalog.pg_attrdef'::regclass::oid, a.oid, a.adrelid
          FROM pg_catalog.pg_attrdef a WHERE a.adrelid = ANY (v_all)
        UNION ALL
        SELECT 'pg_catalog.pg_constraint'::regclass::oid, k.oid, k.conrelid
          FROM pg_catalog.pg_constraint k WHERE k.conrelid = ANY (v_all)
        UNION ALL
        SELECT 'pg_catalog.pg_class'::regclass::oid, i.indexrelid, i.indrelid
          FROM pg_catalog.pg_index i WHERE i.indrelid = ANY (v_all)
    ), edge(classid, objid, refclassid, refobjid) AS (
        SELECT d.classid, d.objid, d.refclassid, d.refobjid FROM pg_catalog.pg_depend d
         WHERE d.refclassid IN ('pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_operator'::regclass,
                                'pg_catalog.pg_type'::regclass, 'pg_catalog.pg_class'::regclass,
                                'pg_catalog.pg_cast'::regclass)
        UNION ALL   -- a domain's constraints run wherever the domain is a column's type
        SELECT 'pg_catalog.pg_type'::regclass::oid, k.contypid, 'pg_catalog.pg_constraint'::regclass::oid, k.oid
          FROM pg_catalog.pg_constraint k WHERE k.contypid <> 0
        UNION ALL   -- a type's casts run when its values are converted (to_jsonb of a row in templates)
        SELECT 'pg_catalog.pg_type'::regclass::oid, c.castsource, 'pg_catalog.pg_proc'::regclass::oid, c.castfunc
          FROM pg_catalog.pg_cast c WHERE c.castfunc <> 0
    ), walk(classid, objid, tbl) AS (
        SELECT a.classid, a.objid, a.tbl FROM attached a
        UNION
        SELECT e.refclassid, e.refobjid, w.tbl
          FROM walk w JOIN edge e ON e.classid = w.classid AND e.objid = w.objid
    ), expr(tbl, node) AS (
        -- pg_depend records no dependency on built-in (pinned) functions, so
        -- the expressions themselves are read for the functions they call
        SELECT w.tbl, k.conbin::text FROM walk w JOIN pg_catalog.pg_constraint k
            ON w.classid = 'pg_catalog.pg_constraint'::regclass AND k.oid = w.objid AND k.conbin IS NOT NULL
        UNION ALL
        SELECT w.tbl, a.adbin::text FROM walk w JOIN pg_catalog.pg_attrdef a
            ON w.classid = 'pg_catalog.pg_attrdef'::regclass AND a.oid = w.objid
        UNION ALL
        SELECT w.tbl, COALESCE(i.indexprs::text, '') || COALESCE(i.indpred::text, '') FROM walk w JOIN pg_catalog.pg_index i
            ON w.classid = 'pg_catalog.pg_class'::regclass AND i.indexrelid = w.objid
        UNION ALL
        SELECT w.tbl, g.tgqual::text FROM walk w JOIN pg_catalog.pg_trigger g
            ON w.classid = 'pg_catalog.pg_trigger'::regclass AND g.oid = w.objid AND g.tgqual IS NOT NULL
    ), called(tbl, fn) AS (
        SELECT w.tbl, w.objid FROM walk w WHERE w.classid = 'pg_catalog.pg_proc'::regclass
        UNION
        SELECT x.tbl, m[2]::oid FROM expr x, pg_catalog.regexp_matches(x.node, ':(funcid|opfuncid) ([0-9]+)', 'g') m
         WHERE m[2] <> '0'
        UNION
        SELECT x.tbl, o.oprcode::oid FROM expr x, pg_catalog.regexp_matches(x.node, ':opno ([0-9]+)', 'g') m
          JOIN pg_catalog.pg_operator o ON o.oid = m[1]::oid
    )
    SELECT w.tbl::regclass AS tbl, p.oid::regprocedure AS fn, r.rolname, r.rolsuper INTO v
      FROM called w
      JOIN pg_catalog.pg_proc p ON p.oid = w.fn
      JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
     WHERE NOT r.rolsuper
        -- built-in (C) functions that act beyond their arguments — run SQL
        -- text, change settings, touch files or other sessions (set_config,
        -- query_to_xml, dblink, lo_export, pg_read_file, …) — would do so as
        -- superuser: only the usual volatile defaults are allowed
        OR (p.prolang IN (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname IN ('internal', 'c'))
            AND p.provolatile = 'v'
            AND p.proname NOT IN ('nextval', 'currval', 'lastval', 'gen_random_uuid', 'random', 'clock_timestamp',
                                  'timeofday', 'txid_current', 'pg_current_xact_id', 'uuid_generate_v1',
                                  'uuid_generate_v1mc', 'uuid_generate_v4'))
        -- the stable ones that read whole tables or schemas (and the views in them)
        OR (p.pronamespace = 'pg_catalog'::regnamespace AND p.proname ~ '^(table|schema|database)_to_xml')
     LIMIT 1;
    IF FOUND AND NOT v.rolsuper THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('%s runs function %s owned by %s, which is not a superuser', v.tbl, v.fn, v.rolname),
            DETAIL = 'pg_tenancy writes this table with the extension owner''s rights, so the function would run as a superuser (reached through a trigger, default, constraint, index, operator, cast or type of the table, or of a partition or child).',
            HINT = pg_catalog.format('Have a superuser review and own that function (ALTER FUNCTION %s OWNER TO postgres), or drop what uses it.', v.fn);
    ELSIF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('%s runs built-in function %s, which would act with superuser rights', v.tbl, v.fn),
            DETAIL = 'pg_tenancy writes this table with the extension owner''s rights; this function runs SQL, changes settings or reaches beyond its arguments.',
            HINT = 'Move the call into a function a superuser owns and has reviewed, or drop what uses it.';
    END IF;
END
$$;

/*
 * Delete a tenant and its rows in every managed table. `confirm` must repeat
 * the tenant's slug. A tenant with child tenants is refused unless with_children,
 * which drops the whole subtree. Roles bound to a dropped tenant make it fail
 * (unbind them first). All rows go in one statement, so foreign
 * keys between managed tables (even cycles) are satisfied at its end; a
 * foreign key from an unmanaged table aborts everything (nothing is deleted).
 * Returns the rows deleted per table.
 * Example: SELECT tenancy.drop_tenant('globex', confirm => 'globex');
 */
CREATE FUNCTION tenancy.drop_tenant(tenant text, confirm text, with_children boolean DEFAULT false) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id       uuid := tenancy.resolve(tenant);
    v_slug     text;
    v_ids      uuid[];
    v_children text;
    v_sql      text := '';
    v_sel      text := '';
    v_counts   jsonb := '{}';
    r          record;
    i          int := 0;
BEGIN
    SELECT t.slug INTO v_slug FROM tenancy.tenants t WHERE t.id = v_id FOR UPDATE;
    IF confirm IS DISTINCT FROM v_slug THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('drop_tenant(%L) needs confirm => %L', tenant, v_slug),
            HINT = 'Repeat the tenant''s slug in confirm to show you mean it: every row of the tenant is deleted.';
    END IF;
    v_ids := tenancy._descendants(v_id);
    IF pg_catalog.cardinality(v_ids) > 1 AND NOT COALESCE(with_children, false) THEN
        SELECT pg_catalog.string_agg(t.slug, ', ' ORDER BY t.slug) INTO v_children
          FROM tenancy.tenants t WHERE t.id = ANY (v_ids) AND t.id <> v_id;
        RAISE EXCEPTION USING ERRCODE = '2BP01',
            MESSAGE = pg_catalog.format('tenant %L has child tenants: %s', v_slug, v_children),
            HINT = 'Drop the children first, or pass with_children => true to drop the whole subtree.';
    END IF;
    SELECT pg_catalog.string_agg(b.role::text, ', ' ORDER BY b.role::text) INTO v_children
      FROM tenancy.role_bindings b WHERE b.tenant_id = ANY (v_ids);
    IF v_children IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '2BP01',
            MESSAGE = pg_catalog.format('roles are bound to tenant %L: %s', v_slug, v_children),
            HINT = 'Unbind them with tenancy.unbind_role() (or drop the roles) first: an unbound login could choose any tenant.';
    END IF;
    PERFORM tenancy._refuse_untrusted_code(ARRAY(
        SELECT m.relid::oid FROM tenancy.managed_tables m WHERE m.kind = 'tenant'));
    -- (a partition whose parent is managed too goes with the parent's DELETE)
    FOR r IN SELECT m.relid, m.tenant_column FROM tenancy.managed_tables m
              WHERE m.kind = 'tenant'
                AND m.relid::oid = ANY (tenancy._without_covered_partitions(ARRAY(
                        SELECT t.relid::oid FROM tenancy.managed_tables t WHERE t.kind = 'tenant')))
              ORDER BY m.relid::text LOOP
        i := i + 1;
        v_sql := v_sql || pg_catalog.format('%s d%s AS (DELETE FROM %s WHERE %I = ANY ($1) RETURNING 1)',
                                            CASE WHEN i = 1 THEN 'WITH' ELSE ',' END, i, r.relid, r.tenant_column);
        v_sel := v_sel || pg_catalog.format('%s %L, (SELECT pg_catalog.count(*) FROM d%s)',
                                            CASE WHEN i = 1 THEN '' ELSE ',' END, r.relid::text, i);
    END LOOP;
    IF i > 0 THEN
        EXECUTE v_sql || ' SELECT pg_catalog.jsonb_build_object(' || v_sel || ')' INTO v_counts USING v_ids;
    END IF;
    DELETE FROM tenancy.tenants t WHERE t.id = ANY (v_ids);
    PERFORM tenancy._audit('drop_tenant', v_id, v_slug,
        pg_catalog.jsonb_build_object('tenants', pg_catalog.to_jsonb(v_ids), 'rows', v_counts));
    RETURN v_counts;
END
$$;

/*
 * Pin a login role to a tenant: whatever that role sets in
 * tenancy.tenant_id, tenancy.current_tenant() returns this tenant.
 * Errors: 42704 unknown role, 22023 superuser / BYPASSRLS / tenancy group role.
 * Example: SELECT tenancy.bind_role('acme_app', 'acme');
 */
CREATE FUNCTION tenancy.bind_role(role regrole, tenant text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id uuid;
    v_r  record;
BEGIN
    IF role IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'role must not be NULL';
    END IF;
    SELECT r.rolname, r.rolsuper, r.rolbypassrls INTO v_r FROM pg_catalog.pg_roles r WHERE r.oid = role;
    IF v_r.rolname IN ('tenancy_superadmin', 'tenancy_admin', 'tenancy_member', 'tenancy_viewer', 'tenancy_analyst') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s is a pg_tenancy group role and cannot be bound to a tenant', role),
            HINT = 'Bind the login roles that are members of it.';
    END IF;
    IF v_r.rolsuper OR v_r.rolbypassrls THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('role %s has %s: row level security never applies to it, so binding cannot confine it',
                                        role, CASE WHEN v_r.rolsuper THEN 'SUPERUSER' ELSE 'BYPASSRLS' END),
            HINT = pg_catalog.format('Bind an ordinary login role, or first run ALTER ROLE %s NOBYPASSRLS NOSUPERUSER.', role);
    END IF;
    v_id := tenancy.resolve(tenant);
    INSERT INTO tenancy.role_bindings (role, tenant_id) VALUES (role, v_id)
    ON CONFLICT ON CONSTRAINT role_bindings_pkey DO UPDATE SET tenant_id = EXCLUDED.tenant_id, bound_at = pg_catalog.now();
    PERFORM tenancy._audit('bind_role', v_id, role::text, '{}');
END
$$;

/*
 * Remove a role's tenant binding (a no-op with a NOTICE when it has none).
 * Example: SELECT tenancy.unbind_role('acme_app');
 */
CREATE FUNCTION tenancy.unbind_role(role regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id uuid;
BEGIN
    DELETE FROM tenancy.role_bindings b WHERE b.role = unbind_role.role RETURNING b.tenant_id INTO v_id;
    IF v_id IS NULL THEN
        RAISE NOTICE 'role % is not bound to a tenant', role;
        RETURN;
    END IF;
    PERFORM tenancy._audit('unbind_role', v_id, role::text, '{}');
END
$$;

-- Registry visibility: members see their own tenant and its descendants.
CREATE POLICY tenancy_registry_own ON tenancy.tenants FOR SELECT TO PUBLIC
    USING (id = ANY ((SELECT tenancy.visible_tenants())::uuid[]));
CREATE POLICY tenancy_registry_superadmin ON tenancy.tenants FOR SELECT TO tenancy_superadmin
    USING (true);
