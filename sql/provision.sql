-- pg_tenancy provisioning: deep clone of a tenant, templates (checksummed
-- snapshots of a tenant's rows), provisioning one or many tenants from a
-- template, and settings inherited along the tenant tree.
--
-- Who may call: tenancy_superadmin (and superusers). These functions create
-- tenants in the registry and write rows of tenants other than the caller's,
-- which is the super admin's remit; tenancy_admin is confined to its own
-- tenant and gets no EXECUTE. They run SECURITY DEFINER so that they read the
-- source and write the copy past row level security, and every call is
-- recorded in the audit log (with the real caller) and rows per table.
--
-- The copy itself is set-based (tenancy._copy_steps, built by
-- tenancy_core::fkgraph): one mapping table per remapped key, one
-- INSERT ... SELECT per table in foreign-key order, one UPDATE per foreign key
-- patched to break a cycle. Key rules:
--   * a primary key that includes the tenant column keeps its ids;
--   * a global key (serial, identity, uuid default, any default) gets new
--     values from the column's own default, and every foreign key that
--     pointed at an old key points at the new one (same table, other tables,
--     composite keys);
--   * other columns are copied byte for byte; generated columns are
--     recomputed; ids stored inside jsonb, arrays or text are data and are
--     NOT remapped.

-- The key of a table in snapshots and messages: "schema.table", quoted as needed.
CREATE FUNCTION tenancy._table_key(tbl oid) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = tbl
$$;

-- The partitions in `tables` whose partitioned parent (or an ancestor) is in
-- `tables` too are left out: reading the parent reads their rows and writing
-- it routes rows to them, so copying both would copy those rows twice.
CREATE FUNCTION tenancy._without_covered_partitions(tables oid[]) RETURNS oid[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT COALESCE(pg_catalog.array_agg(x ORDER BY x), '{}')
      FROM pg_catalog.unnest(tables) AS x
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_partition_ancestors(x::regclass) a
                        WHERE a.relid::oid <> x AND a.relid::oid = ANY (tables))
$$;

-- Tables with inheritance children that are not partitions cannot be copied:
-- reading the parent reads the children's rows, and writing them back through
-- the parent would move them into it (partitions are routed, see above).
CREATE FUNCTION tenancy._refuse_inheritance(tables oid[]) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v record;
BEGIN
    SELECT i.inhparent::regclass AS parent, i.inhrelid::regclass AS child INTO v
      FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = ANY (tables) AND NOT c.relispartition
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '0A000',
            MESSAGE = pg_catalog.format('%s has inheritance child %s, which is not a partition', v.parent, v.child),
            HINT = 'Copying through the parent would move the child''s rows into it; use declarative partitioning, or leave the parent out of tables =>.';
    END IF;
END
$$;

-- The managed tenant tables to copy: all of them when `tables` is NULL,
-- otherwise the given ones, each checked. Sorted, without duplicates.
CREATE FUNCTION tenancy._tenant_tables(tables regclass[]) RETURNS oid[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_out  oid[];
    v_kind text;
    t      regclass;
BEGIN
    IF tables IS NULL THEN
        SELECT COALESCE(pg_catalog.array_agg(m.relid::oid ORDER BY m.relid::oid), '{}') INTO v_out
          FROM tenancy.managed_tables m WHERE m.kind = 'tenant';
        PERFORM tenancy._refuse_inheritance(v_out);
        RETURN tenancy._without_covered_partitions(v_out);
    END IF;
    IF pg_catalog.cardinality(tables) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'tables must not be an empty array',
            HINT = 'Leave tables => NULL to copy every managed tenant table.';
    END IF;
    FOREACH t IN ARRAY tables LOOP
        IF t IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'tables must not contain NULL';
        END IF;
        SELECT m.kind INTO v_kind FROM tenancy.managed_tables m WHERE m.relid = t;
        IF v_kind IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = '55000',
                MESSAGE = pg_catalog.format('%s is not managed by pg_tenancy', t),
                HINT = pg_catalog.format('Put it under tenant isolation first: SELECT tenancy.enable(%L);', t::text);
        ELSIF v_kind = 'reference' THEN
            RAISE EXCEPTION USING ERRCODE = '55000',
                MESSAGE = pg_catalog.format('%s is a reference table: its rows are shared by every tenant and never copied', t),
                HINT = 'Leave it out of tables =>.';
        END IF;
    END LOOP;
    SELECT pg_catalog.array_agg(DISTINCT x::oid ORDER BY x::oid) INTO v_out FROM pg_catalog.unnest(tables) x;
    PERFORM tenancy._refuse_inheritance(v_out);
    RETURN tenancy._without_covered_partitions(v_out);
END
$$;

/*
 * The statements a clone of `tables` (NULL: every managed tenant table) runs,
 * in order, without running them: a dry run of tenancy.clone_tenant.
 * Parameters in the statements: $1 source tenant ids, $2 new tenant ids.
 * Kinds: defer / map (an empty old key -> new key table) / setup (its key,
 * grants) / fill (the mapping filled) / insert / patch (cycle broken by NULL-then-UPDATE) /
 * check (a deferred key checked) / drop (mapping tables). run_as is the role
 * a step runs as: the owner of the table it reads and writes, so the code
 * attached to a table (triggers, defaults, constraints) runs with its
 * owner's rights; NULL for the steps that run no user code.
 * Errors: 55000 table not managed, 22023 a copied table references a managed
 * table left out, 0A000 key without default or unbreakable cycle.
 * Example: SELECT step, kind, run_as, statement FROM tenancy.clone_plan();
 */
CREATE FUNCTION tenancy.clone_plan(tables regclass[] DEFAULT NULL)
RETURNS TABLE (step int, kind text, tbl text, statement text, run_as regrole)
LANGUAGE sql STABLE AS $$
    SELECT s.step, s.kind, s.tbl, s.statement, c.relowner::regrole
      FROM tenancy._copy_steps(tenancy._tenant_tables(tables), true, NULL) s
      LEFT JOIN pg_catalog.pg_class c ON c.oid = s.run_as_owner_of
     ORDER BY s.step
$$;

-- One step of a copy (tenancy._copy_steps), held in an array while it runs.
CREATE TYPE tenancy._copy_step AS (step int, kind text, tbl text, statement text, run_as_owner_of oid);

-- Run the copy of `tables` from tenants old_ids to new_ids (parallel arrays);
-- from the live tables, or from `snapshot` (a template's snapshot) when given.
-- Each statement that reads or writes a table runs as that table's owner
-- (tenancy._exec_as_owner). Returns the rows inserted per table.
CREATE FUNCTION tenancy._run_copy(tables oid[], old_ids uuid[], new_ids uuid[], snapshot jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r        tenancy._copy_step;
    v_total  int;
    v_done   int := 0;
    v_n      bigint;
    v_counts jsonb := '{}';
    v_rows   jsonb := snapshot -> 'tables';
    v_objs   text[];
    v_steps  tenancy._copy_step[];
BEGIN
    IF pg_catalog.cardinality(old_ids) IS DISTINCT FROM pg_catalog.cardinality(new_ids)
       OR NULL::uuid = ANY (old_ids) OR NULL::uuid = ANY (new_ids) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'old and new tenant ids must be arrays of equal length without NULL';
    END IF;
    v_total := pg_catalog.cardinality(tables);
    -- The steps are read into an array first, not walked with a cursor: the
    -- code a step runs as a table's owner could MOVE an open cursor (portals
    -- have no owner) and have steps skipped.
    SELECT pg_catalog.array_agg(ROW(s.step, s.kind, s.tbl, s.statement, s.run_as_owner_of)::tenancy._copy_step
                                ORDER BY s.step) INTO v_steps
      FROM tenancy._copy_steps(tables, pg_catalog.cardinality(old_ids) = 1, snapshot -> 'columns') s;
    FOREACH r IN ARRAY COALESCE(v_steps, '{}') LOOP
        IF r.run_as_owner_of IS NULL THEN
            EXECUTE r.statement USING old_ids, new_ids, v_rows;
            v_objs := NULL;   -- the session's objects may have changed
        ELSE
            -- (an owner's statement leaves them as they were, or fails)
            v_objs := COALESCE(v_objs, tenancy._session_objects());
            BEGIN
                v_n := tenancy._exec_as_owner(r.run_as_owner_of, r.statement, old_ids, new_ids, v_rows, v_objs);
            EXCEPTION WHEN OTHERS THEN
                PERFORM tenancy._undo_prepared(v_objs);
                RAISE;
            END;
        END IF;
        IF r.kind = 'insert' THEN
            v_counts := v_counts || pg_catalog.jsonb_build_object(r.tbl, v_n);
            v_done := v_done + 1;
            -- progress for psql users and the proxy's job status
            RAISE NOTICE USING MESSAGE = pg_catalog.format('tenancy progress: table %s/%s: copied %s rows into %s',
                v_done, v_total, v_n, r.tbl);
        END IF;
    END LOOP;
    RETURN v_counts;
END
$$;

/*
 * Deep-copy tenant `source` (uuid or slug) into a new tenant `new_slug` /
 * `new_name` with the same parent, plan, industry and settings, copying every
 * row it owns in `tables` (NULL: every managed tenant table). Global keys get
 * new values and every foreign key is remapped (see the top of this file);
 * keys that include the tenant column keep their ids; ids inside jsonb are
 * not remapped. With include_children, the source's descendant tenants are
 * cloned too, under the clone: a child slug 'acme-europe' of 'acme' becomes
 * '<new_slug>-europe' (other slugs get '<new_slug>-' prepended).
 * All or nothing: on any error, no tenant and no row of the clone remains.
 * Audited as clone_tenant with the rows per table. Caller: tenancy_superadmin.
 * Errors: P0002 unknown source, 22023 invalid slug/name or a referenced table
 * left out of tables, 23505 slug taken, 55000 table not managed, 0A000 key
 * without default or a cycle of NOT NULL non-deferrable foreign keys.
 * Example: SELECT tenancy.clone_tenant('acme', 'acme-copy', 'Acme (copy)');
 *          SELECT tenancy.clone_tenant('acme', 'acme-2', 'Acme 2', include_children => true);
 */
CREATE FUNCTION tenancy.clone_tenant(
    source text, new_slug text, new_name text,
    tables regclass[] DEFAULT NULL, include_children boolean DEFAULT false
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_src     tenancy.tenants;
    v_tables  oid[] := tenancy._tenant_tables(tables);
    v_old     uuid[];
    v_new     uuid[] := '{}';
    v_id      uuid;
    v_counts  jsonb;
    v_map     jsonb := '{}';
    c         record;
    t         oid;
    v_tid     uuid;
    v_tcol    name;
    v_objs    text[];
    v_all     bigint;
    v_seen    bigint;
    v_caller  name := COALESCE(NULLIF(pg_catalog.current_setting('role'), 'none'), session_user);
BEGIN
    v_id := tenancy.resolve(source);
    SELECT * INTO v_src FROM tenancy.tenants t WHERE t.id = v_id;
    v_id := tenancy.create_tenant(new_slug, new_name, parent => v_src.parent_id::text, plan => v_src.plan,
                                  industry => v_src.industry, settings => v_src.settings);
    v_old := ARRAY[v_src.id];
    v_new := ARRAY[v_id];
    IF COALESCE(include_children, false) THEN
        -- Descendants, parents before children.
        FOR c IN WITH RECURSIVE tree(id, depth) AS (
                     SELECT t.id, 0 FROM tenancy.tenants t WHERE t.parent_id = v_src.id
                     UNION ALL
                     SELECT t.id, tree.depth + 1 FROM tenancy.tenants t JOIN tree ON t.parent_id = tree.id
                      WHERE tree.depth < 64)  -- guard against a parent_id loop edited in by hand
                 SELECT t.*, tree.depth FROM tree JOIN tenancy.tenants t ON t.id = tree.id
                  ORDER BY tree.depth, t.slug LOOP
            v_old := v_old || c.id;
            v_new := v_new || tenancy.create_tenant(
                CASE WHEN pg_catalog.starts_with(c.slug, v_src.slug || '-')
                     THEN new_slug || pg_catalog.substr(c.slug, pg_catalog.length(v_src.slug) + 1)
                     ELSE new_slug || '-' || c.slug END,
                c.name,
                parent => (v_new[pg_catalog.array_position(v_old, c.parent_id)])::text,
                plan => c.plan, industry => c.industry, settings => c.settings);
        END LOOP;
    END IF;
    -- Every source row must be one the caller reads itself: the copies
    -- belong to a new tenant, outside whatever restrictive policy hid the
    -- originals from the caller (create_template refuses the same).
    FOREACH t IN ARRAY v_tables LOOP
        SELECT m.tenant_column INTO v_tcol FROM tenancy.managed_tables m WHERE m.relid = t;
        FOREACH v_tid IN ARRAY v_old LOOP
            v_objs := COALESCE(v_objs, tenancy._session_objects());
            BEGIN
                v_all := (tenancy._query_as_owner(t, pg_catalog.format(
                    'SELECT pg_catalog.to_jsonb(pg_catalog.count(*)) FROM %s s WHERE s.%I = ($1)[1]',
                    t::regclass, v_tcol), ARRAY[v_tid], v_objs))::bigint;
                v_seen := tenancy._count_as_caller(t, v_tcol, v_tid, v_objs);
            EXCEPTION WHEN OTHERS THEN
                PERFORM tenancy._undo_prepared(v_objs);
                RAISE;
            END;
            IF v_seen < v_all THEN
                RAISE EXCEPTION USING ERRCODE = '42501',
                    MESSAGE = pg_catalog.format('row level security hides %s of the %s rows of tenant %L in %s from role %s',
                        v_all - v_seen, v_all, (SELECT x.slug FROM tenancy.tenants x WHERE x.id = v_tid), t::regclass, v_caller),
                    DETAIL = 'The copies would belong to a new tenant, outside the policy that hides the originals.',
                    HINT = 'Leave the table out (tables => ...), or have its owner let the super admins read those rows.';
            END IF;
        END LOOP;
    END LOOP;
    v_counts := tenancy._run_copy(v_tables, v_old, v_new);
    -- (multi-argument unnest is syntax, it cannot be schema-qualified)
    SELECT pg_catalog.jsonb_object_agg(o::text, n) INTO v_map FROM unnest(v_old, v_new) AS u(o, n);
    PERFORM tenancy._audit('clone_tenant', v_id, new_slug,
        pg_catalog.jsonb_build_object('source', v_src.id, 'source_slug', v_src.slug,
                                      'tenants', v_map, 'rows', v_counts));
    RETURN v_id;
END
$$;

-- Templates: a self-contained snapshot of one tenant's rows plus its
-- settings, checksummed. The checksum covers the whole snapshot; a template
-- whose snapshot no longer matches it is refused (XX001).
CREATE TABLE tenancy.template_store (
    id               uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    name             text NOT NULL UNIQUE
                     CONSTRAINT template_name_valid CHECK (pg_catalog.length(pg_catalog.btrim(name)) BETWEEN 1 AND 100),
    industry         text,
    description      text,
    source_tenant_id uuid,          -- no foreign key: a template outlives its source
    source_slug      text,
    tables           text[] NOT NULL,
    row_counts       jsonb NOT NULL,
    snapshot         jsonb NOT NULL,
    checksum         text NOT NULL,
    times_used       bigint NOT NULL DEFAULT 0,
    last_used_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by       name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE tenancy.template_store IS 'pg_tenancy: tenant templates (snapshot + SHA-256). Use tenancy.create_template / drop_template; read tenancy.templates.';

CREATE TABLE tenancy.template_uses (
    -- (no foreign keys, for pg_restore -j as with role_bindings: drop_tenant
    -- and drop_template delete the rows they concerned themselves)
    tenant_id      uuid PRIMARY KEY,
    template_id    uuid NOT NULL,
    provisioned_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX template_uses_template_id_idx ON tenancy.template_uses (template_id);
COMMENT ON TABLE tenancy.template_uses IS 'pg_tenancy: which live tenant was provisioned from which template';

SELECT pg_catalog.pg_extension_config_dump('tenancy.template_store', '');
SELECT pg_catalog.pg_extension_config_dump('tenancy.template_uses', '');

/*
 * The templates, without their snapshots, with usage counts:
 * times_used (every provisioning, ever) and tenants (live tenants made from it).
 * Example: SELECT name, industry, rows, times_used, tenants FROM tenancy.templates;
 */
CREATE VIEW tenancy.templates WITH (security_invoker = true) AS
SELECT s.id, s.name, s.industry, s.description, s.source_tenant_id, s.source_slug, s.tables, s.row_counts,
       (SELECT COALESCE(pg_catalog.sum(v::bigint), 0) FROM pg_catalog.jsonb_each_text(s.row_counts) AS e(k, v))::bigint AS rows,
       pg_catalog.jsonb_typeof(s.snapshot -> 'settings') IS NOT NULL AS has_settings,
       s.checksum, s.times_used,
       (SELECT pg_catalog.count(*) FROM tenancy.template_uses u WHERE u.template_id = s.id) AS tenants,
       s.last_used_at, s.created_at, s.created_by
  FROM tenancy.template_store s;

-- SHA-256 of a snapshot (jsonb text is canonical: sorted keys, fixed spacing).
CREATE FUNCTION tenancy._template_checksum(snapshot jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
    SELECT tenancy.audit_digest(ARRAY['pg_tenancy.template.v1', snapshot::text])
$$;

/*
 * Store a template named `name`: a self-contained snapshot of the rows tenant
 * `from_tenant` owns in `tables` (NULL: every managed tenant table), its
 * settings, and a SHA-256 checksum. Later changes to the source do not change
 * the template. industry defaults to the source tenant's.
 * Returns the template's id. Audited as create_template with rows per table.
 * Errors: 22004/22023 missing or invalid name, 23505 name taken, P0002
 * unknown tenant, 55000 table not managed, 22023/0A000 as clone_plan.
 * Example: SELECT tenancy.create_template('esg-starter', 'acme', industry => 'manufacturing',
 *                                         description => 'Metrics and sites of a typical plant');
 */
CREATE FUNCTION tenancy.create_template(
    name text, from_tenant text, tables regclass[] DEFAULT NULL,
    industry text DEFAULT NULL, description text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_src     tenancy.tenants;
    v_tables  oid[];
    v_key     text;
    v_rows    jsonb;
    v_cols    jsonb := '{}';
    v_data    jsonb := '{}';
    v_counts  jsonb := '{}';
    v_snap    jsonb;
    v_id      uuid;
    t         oid;
    v_tcol    name;
    v_objs    text[];
    v_seen    bigint;
    v_caller  name := COALESCE(NULLIF(pg_catalog.current_setting('role'), 'none'), session_user);
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'template name must not be NULL';
    END IF;
    IF pg_catalog.length(pg_catalog.btrim(name)) NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format('template name %L is invalid', name),
            HINT = 'Give a name of 1 to 100 characters, e.g. ''esg-starter''.';
    END IF;
    IF COALESCE(tenancy._label_problem(name), tenancy._label_problem(industry)) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('template %s %s',
                CASE WHEN tenancy._label_problem(name) IS NOT NULL THEN 'name' ELSE 'industry' END,
                COALESCE(tenancy._label_problem(name), tenancy._label_problem(industry))),
            HINT = 'Names and labels are text people read: no control, bidirectional override or only invisible characters.';
    END IF;
    IF EXISTS (SELECT 1 FROM tenancy.template_store s WHERE s.name = create_template.name) THEN
        RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = pg_catalog.format('template %L already exists', name),
            HINT = 'Choose another name, or drop the old one with tenancy.drop_template().';
    END IF;
    v_id := tenancy.resolve(from_tenant);
    SELECT * INTO v_src FROM tenancy.tenants x WHERE x.id = v_id;
    v_tables := tenancy._tenant_tables(tables);
    FOREACH t IN ARRAY v_tables LOOP
        v_key := tenancy._table_key(t);
        -- the template's rows are readable by every super admin: only from
        -- a table the caller may read itself (the owner can withhold one)
        IF NOT pg_catalog.has_table_privilege(v_caller, t, 'SELECT') THEN
            RAISE EXCEPTION USING ERRCODE = '42501',
                MESSAGE = pg_catalog.format('role %s may not read %s, so it cannot make a template of its rows', v_caller, t::regclass),
                DETAIL = 'A template stores the rows in tenancy.template_store, which every super admin reads.',
                HINT = pg_catalog.format('Leave the table out (tables => ...), or have its owner GRANT SELECT ON %s TO %I.', t::regclass, v_caller);
        END IF;
        SELECT m.tenant_column INTO v_tcol FROM tenancy.managed_tables m WHERE m.relid = t;
        -- read as the table's owner: reading rows as JSON runs the casts of
        -- their columns' types, which are the owner's choice
        v_objs := COALESCE(v_objs, tenancy._session_objects());
        BEGIN
            v_rows := tenancy._query_as_owner(t, pg_catalog.format(
                'SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(s)), ''[]'') FROM %s s WHERE s.%I = ($1)[1]',
                t::regclass, v_tcol), ARRAY[v_src.id], v_objs);
            -- ... and every one of those rows visible to the caller: row level
            -- security (a restrictive policy) may hide some from it
            v_seen := tenancy._count_as_caller(t, v_tcol, v_src.id, v_objs);
        EXCEPTION WHEN OTHERS THEN
            PERFORM tenancy._undo_prepared(v_objs);
            RAISE;
        END;
        IF v_seen < pg_catalog.jsonb_array_length(v_rows) THEN
            RAISE EXCEPTION USING ERRCODE = '42501',
                MESSAGE = pg_catalog.format('row level security hides %s of the %s rows of tenant %L in %s from role %s',
                    pg_catalog.jsonb_array_length(v_rows) - v_seen, pg_catalog.jsonb_array_length(v_rows), v_src.slug, t::regclass, v_caller),
                DETAIL = 'A template stores the rows in tenancy.template_store, which every super admin reads.',
                HINT = 'Leave the table out (tables => ...), or have its owner let the super admins read those rows.';
        END IF;
        v_data := v_data || pg_catalog.jsonb_build_object(v_key, v_rows);
        v_counts := v_counts || pg_catalog.jsonb_build_object(v_key, pg_catalog.jsonb_array_length(v_rows));
        v_cols := v_cols || pg_catalog.jsonb_build_object(v_key, (
            SELECT COALESCE(pg_catalog.jsonb_agg(a.attname ORDER BY a.attnum), '[]')
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = t AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''));
    END LOOP;
    -- Refuse now what could never be provisioned (keys without default, cycles).
    PERFORM pg_catalog.count(*) FROM tenancy._copy_steps(v_tables, true, v_cols);
    v_snap := pg_catalog.jsonb_build_object('format', 1, 'source_tenant', v_src.id, 'settings', v_src.settings,
                                            'columns', v_cols, 'tables', v_data);
    INSERT INTO tenancy.template_store (name, industry, description, source_tenant_id, source_slug,
                                        tables, row_counts, snapshot, checksum)
         VALUES (pg_catalog.btrim(name), COALESCE(industry, v_src.industry), description, v_src.id, v_src.slug,
                 ARRAY(SELECT tenancy._table_key(x) FROM pg_catalog.unnest(v_tables) x), v_counts, v_snap,
                 tenancy._template_checksum(v_snap))
      RETURNING id INTO v_id;
    PERFORM tenancy._audit('create_template', v_src.id, pg_catalog.btrim(name),
        pg_catalog.jsonb_build_object('template_id', v_id, 'rows', v_counts));
    RETURN v_id;
END
$$;

/*
 * Delete a template. Tenants provisioned from it keep their rows.
 * Errors: P0002 unknown template.
 * Example: SELECT tenancy.drop_template('esg-starter');
 */
CREATE FUNCTION tenancy.drop_template(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id uuid;
BEGIN
    DELETE FROM tenancy.template_store s WHERE s.name = drop_template.name RETURNING s.id INTO v_id;
    DELETE FROM tenancy.template_uses u WHERE u.template_id = v_id;
    IF v_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = pg_catalog.format('template %L does not exist', name),
            HINT = 'SELECT name FROM tenancy.templates lists the templates.';
    END IF;
    PERFORM tenancy._audit('drop_template', NULL, name, pg_catalog.jsonb_build_object('template_id', v_id));
END
$$;

-- A template, verified: it exists (P0002), its snapshot matches its checksum
-- (XX001), and its tables still exist (42P01) and are managed (55000).
-- Returns the template row; `tables` receives the table oids.
CREATE FUNCTION tenancy._verified_template(template text, OUT tpl tenancy.template_store, OUT tables oid[])
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_key text;
    v_oid oid;
BEGIN
    IF template IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'template must not be NULL';
    END IF;
    SELECT * INTO tpl FROM tenancy.template_store s WHERE s.name = template;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = pg_catalog.format('template %L does not exist', template),
            HINT = 'SELECT name FROM tenancy.templates lists the templates.';
    END IF;
    IF tenancy._template_checksum(tpl.snapshot) IS DISTINCT FROM tpl.checksum THEN
        RAISE EXCEPTION USING ERRCODE = 'XX001',
            MESSAGE = pg_catalog.format('template %L is corrupt: its content no longer matches its checksum', template),
            DETAIL = pg_catalog.format('stored %s, computed %s', tpl.checksum, tenancy._template_checksum(tpl.snapshot)),
            HINT = 'The snapshot was changed outside pg_tenancy. Drop it and create it again with tenancy.create_template().';
    END IF;
    tables := '{}';
    FOR v_key IN SELECT k FROM pg_catalog.jsonb_object_keys(tpl.snapshot -> 'tables') k ORDER BY k LOOP
        v_oid := pg_catalog.to_regclass(v_key)::oid;
        IF v_oid IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = '42P01',
                MESSAGE = pg_catalog.format('table %s of template %L no longer exists', v_key, template),
                HINT = 'Recreate the template from a tenant with tenancy.create_template().';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM tenancy.managed_tables m WHERE m.relid = v_oid AND m.kind = 'tenant') THEN
            RAISE EXCEPTION USING ERRCODE = '55000',
                MESSAGE = pg_catalog.format('table %s of template %L is no longer a managed tenant table', v_key, template),
                HINT = pg_catalog.format('SELECT tenancy.enable(%L);', v_key);
        END IF;
        tables := tables || v_oid;
    END LOOP;
END
$$;

-- Provision one tenant from a verified template.
CREATE FUNCTION tenancy._provision(
    tpl tenancy.template_store, tables oid[], slug text, name text, parent text, plan text, settings jsonb
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id     uuid;
    v_counts jsonb;
BEGIN
    IF settings IS NULL OR pg_catalog.jsonb_typeof(settings) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('settings must be a JSON object, not %s', COALESCE(pg_catalog.jsonb_typeof(settings), 'NULL')),
            HINT = 'For example settings => ''{"locale": "de"}''; it is laid over the template''s settings.';
    END IF;
    v_id := tenancy.create_tenant(slug, name, parent => parent, plan => plan, industry => tpl.industry,
                                  settings => COALESCE(tpl.snapshot -> 'settings', '{}') || settings);
    v_counts := tenancy._run_copy(tables, ARRAY[(tpl.snapshot ->> 'source_tenant')::uuid], ARRAY[v_id], tpl.snapshot);
    INSERT INTO tenancy.template_uses (tenant_id, template_id) VALUES (v_id, tpl.id);
    UPDATE tenancy.template_store s SET times_used = s.times_used + 1, last_used_at = pg_catalog.now() WHERE s.id = tpl.id;
    PERFORM tenancy._audit('provision', v_id, slug,
        pg_catalog.jsonb_build_object('template', tpl.name, 'template_id', tpl.id, 'checksum', tpl.checksum,
                                      'rows', v_counts));
    RETURN v_id;
END
$$;

/*
 * Create tenant `slug` / `name` from template `template`: its rows are a copy
 * of the template's snapshot (new global keys, foreign keys remapped, as
 * clone_tenant), its industry the template's, its settings the template's
 * settings overlaid (top-level keys, jsonb ||) by `settings`. The template's
 * checksum is verified first. All or nothing. Audited as provision.
 * Caller: tenancy_superadmin.
 * Errors: P0002 unknown template or parent, XX001 template corrupt (tampered),
 * 42P01/55000 a template table is gone or no longer managed, 22023 invalid
 * slug/name/settings, 23505 slug taken.
 * Example: SELECT tenancy.provision('esg-starter', 'umbrella', 'Umbrella Corp',
 *                                   plan => 'pro', settings => '{"locale": "de"}');
 */
CREATE FUNCTION tenancy.provision(
    template text, slug text, name text, parent text DEFAULT NULL, plan text DEFAULT NULL,
    settings jsonb DEFAULT '{}'
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v        record;
    v_tpl    tenancy.template_store;
    v_tables oid[];
BEGIN
    SELECT * INTO v FROM tenancy._verified_template(template);
    v_tpl := v.tpl;
    v_tables := v.tables;
    RETURN tenancy._provision(v_tpl, v_tables, slug, name, parent, plan, settings);
END
$$;

/*
 * Provision many tenants from one template in one call: `tenants` is a JSON
 * array of objects {"slug", "name", "parent"?, "plan"?, "settings"?}.
 * All or nothing: if any tenant fails (slug taken, invalid name, ...), none
 * is created, and the error names the failing element (tenants[i], 0-based)
 * with the original SQLSTATE. Returns the new ids in input order.
 * Errors: as provision, plus 22023 when tenants is not an array of objects.
 * Example: SELECT * FROM tenancy.provision_many('esg-starter',
 *            '[{"slug": "north", "name": "North Ltd"}, {"slug": "south", "name": "South Ltd", "plan": "pro"}]');
 */
CREATE FUNCTION tenancy.provision_many(template text, tenants jsonb) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v       record;
    v_tpl   tenancy.template_store;
    v_tables oid[];
    e       jsonb;
    n       int;
    i       int := 0;
    v_ids   uuid[] := '{}';
    v_state text;
    v_msg   text;
    v_hint  text;
    v_det   text;
BEGIN
    IF tenants IS NULL OR pg_catalog.jsonb_typeof(tenants) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('tenants must be a JSON array, not %s', COALESCE(pg_catalog.jsonb_typeof(tenants), 'NULL')),
            HINT = 'For example ''[{"slug": "north", "name": "North Ltd"}]''.';
    END IF;
    SELECT * INTO v FROM tenancy._verified_template(template);
    v_tpl := v.tpl;
    v_tables := v.tables;
    -- (a loop over the array, not a query: a cursor could be moved by the
    -- code of a table the provisioning writes)
    FOR n IN 0 .. pg_catalog.jsonb_array_length(tenants) - 1 LOOP
        e := tenants -> n;
        IF pg_catalog.jsonb_typeof(e) <> 'object' THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = pg_catalog.format('tenants[%s] must be a JSON object, not %s', i, pg_catalog.jsonb_typeof(e)),
                HINT = 'Each element is {"slug": ..., "name": ..., "parent"?, "plan"?, "settings"?}.';
        END IF;
        BEGIN
            v_ids := v_ids || tenancy._provision(v_tpl, v_tables, e ->> 'slug', e ->> 'name', e ->> 'parent',
                                                 e ->> 'plan', COALESCE(e -> 'settings', '{}'));
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT,
                                    v_hint = PG_EXCEPTION_HINT, v_det = PG_EXCEPTION_DETAIL;
            RAISE EXCEPTION USING ERRCODE = v_state,
                MESSAGE = pg_catalog.format('tenants[%s] (%s): %s', i, COALESCE(e ->> 'slug', 'no slug'), v_msg),
                DETAIL = COALESCE(NULLIF(v_det, ''), 'Nothing was provisioned: provision_many is all or nothing.'),
                HINT = COALESCE(NULLIF(v_hint, ''), 'Fix that element and call again.');
        END;
        i := i + 1;
        RAISE NOTICE USING MESSAGE = pg_catalog.format('tenancy progress: tenant %s/%s: provisioned %s',
            i, pg_catalog.jsonb_array_length(tenants), e ->> 'slug');
    END LOOP;
    PERFORM tenancy._audit('provision_many', NULL, v_tpl.name,
        pg_catalog.jsonb_build_object('template_id', v_tpl.id, 'tenants', pg_catalog.to_jsonb(v_ids)));
    RETURN QUERY SELECT x FROM pg_catalog.unnest(v_ids) x;
END
$$;

/*
 * The value of setting `key` for tenant `tenant`: its own settings win, then
 * its parent's, up the tenant tree; NULL when none has the key. Internal (the
 * extension owner's): tenancy.setting(key) calls it for the current tenant,
 * resolved in Rust exactly as tenancy.current_tenant() resolves it.
 */
CREATE FUNCTION tenancy._setting_of(tenant uuid, key text) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE chain(id, parent_id, settings, depth) AS (
        SELECT t.id, t.parent_id, t.settings, 0 FROM tenancy.tenants t WHERE t.id = _setting_of.tenant
        UNION ALL
        SELECT t.id, t.parent_id, t.settings, c.depth + 1
          FROM tenancy.tenants t JOIN chain c ON t.id = c.parent_id WHERE c.depth < 64)
    SELECT c.settings -> _setting_of.key FROM chain c WHERE c.settings ? _setting_of.key ORDER BY c.depth LIMIT 1
$$;
