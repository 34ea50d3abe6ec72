-- pg_tenancy registry and context: resolving tenants, the current tenant,
-- creating, suspending, resuming and dropping tenants, binding roles.

-- Is `t` a UUID, in any of the forms the uuid type accepts (32 hex digits, a
-- hyphen allowed after any group of four but the last, optional braces)?
-- Exactly the uuid input's grammar: a slug can never be read as an id
-- (core::slug::parse_uuid is the same rule).
CREATE FUNCTION tenancy._is_uuid(t text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
    SELECT t ~ E'^(\\{([0-9a-fA-F]{4}-?){7}[0-9a-fA-F]{4}\\}|([0-9a-fA-F]{4}-?){7}[0-9a-fA-F]{4})$'
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
    IF name IS NULL OR pg_catalog.length(pg_catalog.btrim(name, E' \t\n\r\f\x0b')) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('tenant name %L is invalid', name),
            HINT = 'Give a display name of 1 to 200 characters (not only spaces).';
    END IF;
    IF tenancy._label_problem(name) IS NOT NULL OR tenancy._label_problem(plan) IS NOT NULL
       OR tenancy._label_problem(industry) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('tenant %s %s',
                CASE WHEN tenancy._label_problem(name) IS NOT NULL THEN 'name'
                     WHEN tenancy._label_problem(plan) IS NOT NULL THEN 'plan' ELSE 'industry' END,
                COALESCE(tenancy._label_problem(name), tenancy._label_problem(plan), tenancy._label_problem(industry))),
            HINT = 'Names and labels are text people read: no control, bidirectional override or only invisible characters.';
    END IF;
    IF pg_catalog.length(plan) > 100 OR pg_catalog.length(industry) > 100 THEN
        RAISE EXCEPTION USING ERRCODE = '22001',
            MESSAGE = pg_catalog.format('tenant %s is longer than 100 characters',
                                        CASE WHEN pg_catalog.length(plan) > 100 THEN 'plan' ELSE 'industry' END),
            HINT = 'Plans and industries are short labels, e.g. plan => ''pro'', industry => ''manufacturing''.';
    END IF;
    IF pg_catalog.octet_length(settings::text) > 262144 THEN
        RAISE EXCEPTION USING ERRCODE = '22001',
            MESSAGE = pg_catalog.format('tenant settings are %s bytes, more than 256 kB', pg_catalog.octet_length(settings::text)),
            HINT = 'Settings are configuration (locale, feature flags, limits); keep documents in a managed table.';
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
         VALUES (slug, pg_catalog.btrim(name, E' \t\n\r\f\x0b'), v_parent, plan, industry, settings)
    ON CONFLICT ON CONSTRAINT tenants_slug_key DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '23505',
            MESSAGE = pg_catalog.format('tenant slug %L is already taken', slug),
            HINT = 'Choose another slug; SELECT slug FROM tenancy.tenants lists the taken ones.';
    END IF;
    PERFORM tenancy._audit('create_tenant', v_id, slug,
        pg_catalog.jsonb_build_object('name', pg_catalog.btrim(name, E' \t\n\r\f\x0b'), 'parent_id', v_parent,
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

-- Functions that read or write user tables for a super admin (drop_tenant,
-- clone_tenant, provision, create_template) run each such statement as the
-- table's owner (tenancy._exec_as_owner / _query_as_owner, Rust): the code a
-- table's owner attached to it — triggers, rules, defaults, constraints,
-- casts — runs with that owner's rights, never the extension owner's. What
-- PostgreSQL's security-restricted operations also forbid, and the owner
-- switch cannot, is checked around each such statement instead: the session
-- objects below must be the same before and after (none created, none
-- dropped — a temporary relation or type is found before permanent ones of
-- the same name, a holdable cursor's query runs at commit, a mapping table
-- dropped with DISCARD TEMP could be replaced), and no deferred constraint
-- trigger may have events pending (they would fire at commit as the caller).
-- (Temporary functions and operators are left out: pg_temp is never searched
-- for them, and scanning pg_proc per statement was most of the check's cost.)
CREATE FUNCTION tenancy._session_objects() RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT COALESCE(pg_catalog.array_agg(o.x ORDER BY o.x), '{}')
      FROM (SELECT pg_catalog.format('temporary relation %s (oid %s)', c.oid::regclass, c.oid) AS x
              FROM pg_catalog.pg_class c WHERE c.relnamespace = pg_catalog.pg_my_temp_schema()
            UNION ALL
            SELECT pg_catalog.format('temporary type %s (oid %s)', t.oid::regtype, t.oid)
              FROM pg_catalog.pg_type t WHERE t.typnamespace = pg_catalog.pg_my_temp_schema()

            UNION ALL
            -- (the query text too: a cursor or statement closed and made again
            -- under the same name in the same top-level statement has the
            -- same creation time)
            SELECT pg_catalog.format('%scursor %I (%s, %s)', CASE WHEN k.is_holdable THEN 'holdable ' ELSE '' END,
                                     k.name, k.creation_time, pg_catalog.md5(k.statement))
              FROM pg_catalog.pg_cursors k   -- all of them: any role can name one '<unnamed portal 1>'
            UNION ALL
            SELECT pg_catalog.format('prepared statement %I (%s, %s, %s)', p.name, p.prepare_time,
                                     pg_catalog.md5(p.statement), p.parameter_types)
              FROM pg_catalog.pg_prepared_statements p
            UNION ALL
            SELECT pg_catalog.format('LISTEN on channel %I', l.l)
              FROM pg_catalog.pg_listening_channels() l) o
$$;

-- After a statement run as a table's owner failed: its transactional
-- leftovers went with the (sub)transaction, but prepared statements are not
-- transactional. One the table's code made, or replaced under the name of
-- one of the caller's (its driver's statement cache would run it next, with
-- the caller's rights), is deallocated before the error goes on.
CREATE FUNCTION tenancy._undo_prepared(before text[]) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name text;
BEGIN
    FOR v_name IN SELECT p.name FROM pg_catalog.pg_prepared_statements p
                   WHERE pg_catalog.format('prepared statement %I (%s, %s, %s)', p.name, p.prepare_time,
                                           pg_catalog.md5(p.statement), p.parameter_types) <> ALL (COALESCE(before, '{}'))
    LOOP
        EXECUTE pg_catalog.format('DEALLOCATE %I', v_name);
    END LOOP;
END
$$;

/*
 * Delete a tenant and its rows in every managed table. `confirm` must repeat
 * the tenant's slug. A tenant with child tenants is refused unless with_children,
 * which drops the whole subtree. Roles bound to a dropped tenant make it fail
 * (unbind them first). The rows of each table owner's tables go in one
 * statement, run as that owner (so its triggers run with its rights), so
 * foreign keys between them (even cycles) are satisfied at its end; the
 * owners go in foreign-key order (referencing tables first); a cycle of
 * foreign keys across owners (0A000) or a foreign key from an unmanaged
 * table aborts everything (nothing is deleted).
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
    v_tabs     oid[];
    v_owners   oid[];
    v_owner    oid;
    v_first    oid;
    v_objs     text[];
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
            HINT = 'Unbind them with tenancy.unbind_role() first (a bound role cannot be dropped; a number is the OID of one dropped before: tenancy.unbind_role(''<oid>'')): an unbound login could choose any tenant.';
    END IF;
    -- (a partition whose parent is managed too goes with the parent's DELETE)
    v_tabs := tenancy._without_covered_partitions(ARRAY(
        SELECT m.relid::oid FROM tenancy.managed_tables m WHERE m.kind = 'tenant'));
    v_owners := ARRAY(SELECT DISTINCT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = ANY (v_tabs));
    WHILE pg_catalog.cardinality(v_owners) > 0 LOOP
        -- next: an owner none of whose tables another remaining owner's table references
        SELECT o INTO v_owner FROM pg_catalog.unnest(v_owners) o
         WHERE NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_constraint k
                  JOIN pg_catalog.pg_class a ON a.oid = k.conrelid
                  JOIN pg_catalog.pg_class b ON b.oid = k.confrelid
                 WHERE k.contype = 'f' AND k.conrelid = ANY (v_tabs) AND k.confrelid = ANY (v_tabs)
                   AND b.relowner = o AND a.relowner <> o AND a.relowner = ANY (v_owners))
         ORDER BY o LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = '0A000',
                MESSAGE = pg_catalog.format('the managed tables of roles %s reference each other in a cycle of foreign keys',
                    (SELECT pg_catalog.string_agg(o::regrole::text, ', ' ORDER BY o::regrole::text) FROM pg_catalog.unnest(v_owners) o)),
                DETAIL = 'drop_tenant deletes each owner''s tables in one statement run as that owner, owners in foreign-key order.',
                HINT = 'Give the tables of the cycle one owner (ALTER TABLE … OWNER TO), or declare one of the foreign keys DEFERRABLE.';
        END IF;
        v_sql := '';
        v_sel := '';
        i := 0;
        v_first := NULL;
        FOR r IN SELECT m.relid, m.tenant_column FROM tenancy.managed_tables m
                   JOIN pg_catalog.pg_class c ON c.oid = m.relid
                  WHERE m.relid::oid = ANY (v_tabs) AND c.relowner = v_owner
                  ORDER BY m.relid::text LOOP
            i := i + 1;
            v_first := COALESCE(v_first, r.relid::oid);
            v_sql := v_sql || pg_catalog.format('%s d%s AS (DELETE FROM %s WHERE %I = ANY ($1) RETURNING 1)',
                                                CASE WHEN i = 1 THEN 'WITH' ELSE ',' END, i, r.relid, r.tenant_column);
            v_sel := v_sel || pg_catalog.format('%s %L, (SELECT pg_catalog.count(*) FROM d%s)',
                                                CASE WHEN i = 1 THEN '' ELSE ',' END, r.relid::text, i);
        END LOOP;
        v_objs := COALESCE(v_objs, tenancy._session_objects());
        BEGIN
            v_counts := v_counts || tenancy._query_as_owner(v_first,
                v_sql || ' SELECT pg_catalog.jsonb_build_object(' || v_sel || ')', v_ids, v_objs);
        EXCEPTION WHEN OTHERS THEN
            PERFORM tenancy._undo_prepared(v_objs);
            RAISE;
        END;
        v_owners := pg_catalog.array_remove(v_owners, v_owner);
    END LOOP;
    DELETE FROM tenancy.template_uses u WHERE u.tenant_id = ANY (v_ids);
    DELETE FROM tenancy.tenants t WHERE t.id = ANY (v_ids);
    PERFORM tenancy._audit('drop_tenant', v_id, v_slug,
        pg_catalog.jsonb_build_object('tenants', pg_catalog.to_jsonb(v_ids), 'rows', v_counts));
    RETURN v_counts;
END
$$;

-- A bound role holds EXECUTE on this no-op, granted by bind_role and revoked
-- by unbind_role: the grant is a shared dependency, so DROP ROLE of a bound
-- role fails ("privileges for function tenancy._bound_role_unbind_first()")
-- instead of leaving its bare OID in role_bindings, where it blocks
-- drop_tenant and, in a dump restored into another cluster, binds whichever
-- role has that OID there.
CREATE FUNCTION tenancy._bound_role_unbind_first() RETURNS void
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT $$;
COMMENT ON FUNCTION tenancy._bound_role_unbind_first() IS
    'pg_tenancy: held by every role bound with tenancy.bind_role, so that it cannot be dropped while bound; run tenancy.unbind_role first';

/*
 * Pin a login role to a tenant: whatever that role sets in
 * tenancy.tenant_id, tenancy.current_tenant() returns this tenant.
 * Errors: 42704 unknown role, 22023 superuser / BYPASSRLS / tenancy group role.
 * Example: SELECT tenancy.bind_role('acme_app', 'acme');
 */
CREATE FUNCTION tenancy.bind_role(role regrole, tenant text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET quote_all_identifiers = off AS $$
DECLARE
    v_id uuid;
    v_r  record;
BEGIN
    IF role IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'role must not be NULL';
    END IF;
    SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolcanlogin INTO v_r FROM pg_catalog.pg_roles r WHERE r.oid = role;
    IF NOT FOUND THEN
        -- a numeric regrole ('0', '123456') is not checked for existence
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = pg_catalog.format('role with OID %s does not exist', role::oid),
            HINT = 'Name the role: SELECT tenancy.bind_role(''acme_app'', ''acme'').';
    END IF;
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
    IF pg_catalog.pg_has_role(role, 'tenancy_superadmin', 'MEMBER') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('role %s is a member of tenancy_superadmin: its policies read every tenant, so binding cannot confine it', role),
            HINT = pg_catalog.format('Bind an ordinary login role, or first run REVOKE tenancy_superadmin FROM %s.', role);
    END IF;
    v_id := tenancy.resolve(tenant);
    -- a binding confines the session user or the current role it names, not
    -- the roles that are members of it and use its rights without SET ROLE
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.member
                WHERE m.roleid = role AND r.rolinherit) THEN
        RAISE WARNING 'binding %: its members that inherit it are not bound', role
            USING DETAIL = pg_catalog.format('A binding applies to a session whose login or current role is %s. Members: %s.', role,
                (SELECT pg_catalog.string_agg(r.rolname::text, ', ' ORDER BY r.rolname)
                   FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.member
                  WHERE m.roleid = role AND r.rolinherit)),
                  HINT = 'Bind each login role, or make the members NOINHERIT so that they must SET ROLE.';
    END IF;
    INSERT INTO tenancy.role_bindings (role, tenant_id) VALUES (role, v_id)
    ON CONFLICT ON CONSTRAINT role_bindings_pkey DO UPDATE SET tenant_id = EXCLUDED.tenant_id, bound_at = pg_catalog.now();
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION tenancy._bound_role_unbind_first() TO %s', role);
    PERFORM tenancy._audit('bind_role', v_id, role::text, pg_catalog.jsonb_build_object('role_oid', role::oid));
END
$$;

/*
 * Remove a role's tenant binding (a no-op with a NOTICE when it has none).
 * Example: SELECT tenancy.unbind_role('acme_app');
 */
CREATE FUNCTION tenancy.unbind_role(role regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET quote_all_identifiers = off AS $$
DECLARE
    v_id uuid;
BEGIN
    DELETE FROM tenancy.role_bindings b WHERE b.role = unbind_role.role RETURNING b.tenant_id INTO v_id;
    IF v_id IS NULL THEN
        RAISE NOTICE 'role % is not bound to a tenant', role;
        RETURN;
    END IF;
    -- (a binding whose role is gone, a bare OID, has no grant left to revoke)
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = role) THEN
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION tenancy._bound_role_unbind_first() FROM %s', role);
    END IF;
    PERFORM tenancy._audit('unbind_role', v_id, role::text, pg_catalog.jsonb_build_object('role_oid', role::oid));
END
$$;

-- Registry visibility: members see their own tenant and its descendants.
CREATE POLICY tenancy_registry_own ON tenancy.tenants FOR SELECT TO PUBLIC
    USING (id = ANY ((SELECT tenancy.visible_tenants())::uuid[]));
CREATE POLICY tenancy_registry_superadmin ON tenancy.tenants FOR SELECT TO tenancy_superadmin
    USING (true);
