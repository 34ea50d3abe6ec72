-- pg_tenancy isolation: enable / disable / register_reference / policy_sql.
-- The DDL comes from tenancy_core::policy (through tenancy._policy_ddl), so
-- policy_sql shows exactly what enable runs.

-- Refuse what cannot be managed; shared by every entry point.
CREATE FUNCTION tenancy._check_table(tbl regclass) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_kind        char;
    v_ns          name;
    v_persistence char;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'table must not be NULL';
    END IF;
    SELECT c.relkind, n.nspname, c.relpersistence INTO v_kind, v_ns, v_persistence
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42P01', MESSAGE = pg_catalog.format('table with OID %s does not exist', tbl::oid);
    END IF;
    IF v_kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION USING ERRCODE = '42809',
            MESSAGE = pg_catalog.format('%s is not a table', tbl),
            HINT = 'Row level security applies to tables; for a view, manage its base tables and create it WITH (security_invoker = true).';
    END IF;
    -- a temporary table vanishes with its session without an sql_drop event,
    -- leaving its registry row behind (and it is a table any role can create
    -- in its own pg_temp schema, to have super-admin functions write it)
    IF v_persistence = 't' THEN
        RAISE EXCEPTION USING ERRCODE = '42809',
            MESSAGE = pg_catalog.format('%s is a temporary table', tbl),
            HINT = 'pg_tenancy manages permanent tables only: a temporary one is private to its session and ends with it.';
    END IF;
    IF v_ns IN ('pg_catalog', 'information_schema', 'tenancy') OR v_ns LIKE E'pg\\_toast%' THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('%s belongs to schema %s, which pg_tenancy does not manage', tbl, v_ns);
    END IF;
END
$$;

/*
 * The DDL tenancy.enable would run for `tbl` (a dry run). Arguments left NULL
 * take the table's current settings (or the defaults tenant_id / false); for
 * a reference table it shows register_reference's DDL.
 * Example: SELECT tenancy.policy_sql('esg.data_points');
 */
CREATE FUNCTION tenancy.policy_sql(tbl regclass, tenant_column name DEFAULT NULL, hierarchical boolean DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE SET quote_all_identifiers = off AS $$
DECLARE
    m record;
BEGIN
    PERFORM tenancy._check_table(tbl);
    SELECT * INTO m FROM tenancy.managed_tables mt WHERE mt.relid = tbl;
    IF m.kind = 'reference' AND tenant_column IS NULL AND hierarchical IS NULL THEN
        RETURN tenancy._policy_ddl(tbl, 'reference', NULL, NULL);
    END IF;
    RETURN tenancy._policy_ddl(tbl, 'tenant',
                               COALESCE(tenant_column, m.tenant_column, 'tenant_id'),
                               COALESCE(hierarchical, m.hierarchical, false));
END
$$;

-- The generated policies (tenancy_*) of `tbl` as they are now: per policy
-- its command, permissive flag, role names and deparsed USING / WITH CHECK
-- expressions, with a fixed search_path so the text is the same whoever
-- asks. enable / register_reference record it; check_isolation compares.
CREATE FUNCTION tenancy._policy_fingerprint(tbl oid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp SET quote_all_identifiers = off SET standard_conforming_strings = on AS $$
    SELECT COALESCE(pg_catalog.jsonb_object_agg(p.polname, pg_catalog.jsonb_build_array(
               p.polcmd, p.polpermissive,
               -- roles by name (PUBLIC as public), not by OID: the record is
               -- dumped with the database and must match after a restore
               -- into a cluster whose roles have other OIDs
               (SELECT pg_catalog.array_agg(x.name ORDER BY x.name)::text
                  FROM (SELECT CASE WHEN r.o = 0 THEN 'public' ELSE COALESCE(pg_catalog.quote_ident(a.rolname), r.o::text) END
                          FROM pg_catalog.unnest(p.polroles) AS r(o)
                          LEFT JOIN pg_catalog.pg_roles a ON a.oid = r.o) AS x(name)),
               pg_catalog.pg_get_expr(p.polqual, p.polrelid), pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))), '{}')
      FROM pg_catalog.pg_policy p
     WHERE p.polrelid = tbl AND p.polname LIKE E'tenancy\\_%'
$$;

/*
 * Put `tbl` under tenant isolation: add the tenant column if missing
 * (defaulting to the current tenant), an index on it, ENABLE and FORCE row
 * level security, one policy per command and role, and grants to the tenancy
 * roles. Idempotent: re-running regenerates the policies. Returns the DDL run.
 * hierarchical => true lets a parent tenant read (not write) its descendants'
 * rows. Needs table ownership and tenancy_superadmin (or a superuser).
 * Errors: 42P01/42809 not a table, 42804 tenant column not uuid, 55000 table
 * is a reference table or has rows but no tenant column and no context.
 * Example: SELECT tenancy.enable('esg.data_points');
 *          SELECT tenancy.enable('esg.organisations', hierarchical => true);
 */
CREATE FUNCTION tenancy.enable(tbl regclass, tenant_column name DEFAULT 'tenant_id', hierarchical boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql VOLATILE SET quote_all_identifiers = off AS $$
DECLARE
    v_ddl  text;
    v_kind text;
BEGIN
    PERFORM tenancy._check_table(tbl);
    IF tenant_column IS NULL OR tenant_column = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'tenant_column must not be NULL or empty',
            HINT = 'Omit it to use tenant_id.';
    END IF;
    SELECT mt.kind INTO v_kind FROM tenancy.managed_tables mt WHERE mt.relid = tbl;
    IF v_kind = 'reference' THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('%s is registered as a reference table', tbl),
            HINT = pg_catalog.format('Run SELECT tenancy.disable(%L) first to turn it into a tenant table.', tbl::text);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = tbl AND a.attname = tenant_column AND a.attnum > 0 AND NOT a.attisdropped)
       AND tenancy.current_tenant() IS NULL THEN
        EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM %s)', tbl) INTO STRICT v_kind;
        IF v_kind::boolean THEN
            RAISE EXCEPTION USING ERRCODE = '55000',
                MESSAGE = pg_catalog.format('%s has rows but no column %I, and no tenant is current to own them', tbl, tenant_column),
                HINT = 'Set the owner first with SELECT tenancy.set_tenant(''<tenant>''), or add and fill the column yourself.';
        END IF;
    END IF;
    v_ddl := tenancy.policy_sql(tbl, tenant_column, COALESCE(hierarchical, false));
    EXECUTE v_ddl;
    -- the registry row and its audit entry, as the extension owner
    PERFORM tenancy._registry_write(tbl, 'tenant', tenant_column, COALESCE(hierarchical, false));
    RETURN v_ddl;
END
$$;

/*
 * Register `tbl` as shared master data: every tenant reads all rows, only
 * tenancy_superadmin writes. Returns the DDL run.
 * Example: SELECT tenancy.register_reference('esg.units');
 */
CREATE FUNCTION tenancy.register_reference(tbl regclass) RETURNS text
LANGUAGE plpgsql VOLATILE SET quote_all_identifiers = off AS $$
DECLARE
    v_ddl  text;
BEGIN
    PERFORM tenancy._check_table(tbl);
    IF EXISTS (SELECT 1 FROM tenancy.managed_tables mt WHERE mt.relid = tbl AND mt.kind = 'tenant') THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('%s is a tenant table', tbl),
            HINT = pg_catalog.format('Run SELECT tenancy.disable(%L) first; its rows would become visible to every tenant.', tbl::text);
    END IF;
    v_ddl := tenancy._policy_ddl(tbl, 'reference', NULL, NULL);
    EXECUTE v_ddl;
    PERFORM tenancy._registry_write(tbl, 'reference', NULL, NULL);
    RETURN v_ddl;
END
$$;

/*
 * Take `tbl` out of pg_tenancy's management: drop its policies and the
 * tenancy roles' grants. Row level security stays ENABLED with no policy
 * left, so non-owners see nothing (closed, not open); FORCE is lifted so the
 * owner reaches the rows. Returns the DDL run.
 * Example: SELECT tenancy.disable('esg.data_points');
 */
CREATE FUNCTION tenancy.disable(tbl regclass) RETURNS text
LANGUAGE plpgsql VOLATILE SET quote_all_identifiers = off AS $$
DECLARE
    v_ddl text;
BEGIN
    PERFORM tenancy._check_table(tbl);
    IF NOT EXISTS (SELECT 1 FROM tenancy.managed_tables mt WHERE mt.relid = tbl) THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('%s is not managed by pg_tenancy', tbl),
            HINT = 'SELECT relid, kind FROM tenancy.managed_tables lists the managed tables.';
    END IF;
    v_ddl := tenancy._policy_ddl(tbl, 'disable', NULL, NULL);
    EXECUTE v_ddl;
    PERFORM tenancy._registry_write(tbl, 'disable', NULL, NULL);
    RAISE NOTICE '% keeps row level security enabled with no policies: only its owner can read it now', tbl
        USING HINT = pg_catalog.format('To open it to all grantees: ALTER TABLE %s DISABLE ROW LEVEL SECURITY;', tbl);
    RETURN v_ddl;
END
$$;

-- Forget tables that are dropped.
CREATE FUNCTION tenancy._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM tenancy.managed_tables mt
     WHERE mt.relid::oid IN (SELECT d.objid FROM pg_catalog.pg_event_trigger_dropped_objects() d
                              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0);
END
$$;
CREATE EVENT TRIGGER tenancy_forget_dropped_tables ON sql_drop EXECUTE FUNCTION tenancy._on_sql_drop();
